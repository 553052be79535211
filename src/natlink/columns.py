"""Canonical column names: the only place their spellings live."""

from __future__ import annotations

# Record keys and bookkeeping
RECORD_ID = "record_id"
DATASET = "dataset"
UNIQUE_ID = "unique_id"  # dataset + record id: the key Splink sees
PERSON_ID = "person_id"
TRUE_PERSON_ID = "true_person_id"  # synthetic truth only; never in linkage inputs
REGION = "region"
RUN_ID = "run_id"
NODE_ID = "node_id"  # a record's number within one link run (unique-id order); pairs carry node_id_l/_r
CLUSTER_NODE = "cluster_node"  # a cluster's smallest node id: names it within one run
RECORD_HASH = "record_hash"  # xxhash64 of a record's tokens: tells an incremental run what changed


def block_size(rule: int) -> str:
    """Records in a record's block of prediction rule ``rule`` (a link run's column, natlink.linkage.block_splits)."""
    return f"block_size_r{rule}"


def block_split(rule: int) -> str:
    """A record's block key of prediction rule ``rule`` after its large blocks are split (a link run's column)."""
    return f"block_split_r{rule}"

REASON = "reason"

# Canonical identifier columns (plaintext: exist only before tokenise)
NHS_NUMBER = "nhs_number"
GIVEN_NAME = "given_name"
FAMILY_NAME = "family_name"
DATE_OF_BIRTH = "date_of_birth"
SEX = "sex"
POSTCODE = "postcode"

IDENTIFIERS = (NHS_NUMBER, GIVEN_NAME, FAMILY_NAME, DATE_OF_BIRTH, SEX, POSTCODE)

# Non-identifying event fields carried through tokenise unchanged
EVENT_DATE = "event_date"
CONDITION_CODE = "condition_code"
AGE_BAND = "age_band"  # e.g. "40-49": derived from the date of birth at the provider (which never leaves)

TOKEN_PREFIX = "tk_"


def token(name: str) -> str:
    """Name of the token column derived from a canonical or derived field."""
    return f"{TOKEN_PREFIX}{name}"


def is_token(column: str) -> bool:
    return column.startswith(TOKEN_PREFIX)

# Derived by standardise (plaintext: exist only before tokenise)
GIVEN_NAME_OTHER = "given_name_other"  # second and later given names, space separated
FAMILY_NAME_FIRST = "family_name_first"  # first part of a multi-part family name (SMITH of SMITH-JONES)
FAMILY_NAME_LAST = "family_name_last"  # last part of a multi-part family name
POSTCODE_AREA = "postcode_area"  # LS
POSTCODE_DISTRICT = "postcode_district"  # LS1 (the outward code)
POSTCODE_SECTOR = "postcode_sector"  # LS1 4

# Onboarding bookkeeping
SOURCE_FILE = "source_file"
STAGE = "stage"  # quarantine: onboarding | tokenise
FLAG_SUFFIX = "_flag"


def flag(name: str) -> str:
    """Name of the column that says why ``name`` was set to NULL (NULL when it was not)."""
    return f"{name}{FLAG_SUFFIX}"


# Columns standardise derives from the identifiers (plaintext: exist only before tokenise)
DERIVED_COLUMNS: tuple[str, ...] = (
    GIVEN_NAME_OTHER,
    FAMILY_NAME_FIRST,
    FAMILY_NAME_LAST,
    POSTCODE_AREA,
    POSTCODE_DISTRICT,
    POSTCODE_SECTOR,
    *[flag(c) for c in IDENTIFIERS],
)
