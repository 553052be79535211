"""The linkage centre's one way in: token tables read through their manifests, refused when unsafe.

:func:`load_tokens` is what train, link, evaluate and discover call. It refuses (named errors,
before any linkage work) anything that is not a natlink token table with a valid manifest, inputs
made under different keys, and plaintext identifier columns.
"""

from __future__ import annotations

from typing import Any, Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.errors import InputDataError
from natlink.tokens.tokenise import TokenManifest, as_manifest, read_token_tables

__all__ = ["as_manifests", "load_tokens", "with_unique_id"]


def as_manifests(manifests: Sequence[Any]) -> list[TokenManifest]:
    """Manifests from manifest objects, mappings or manifest file paths."""
    return [as_manifest(m) for m in manifests]


def with_unique_id(tokens: DataFrame) -> DataFrame:
    """Splink's key: dataset and record id joined (record ids are unique within a dataset)."""
    return tokens.withColumn(C.UNIQUE_ID, F.concat_ws(":", F.col(C.DATASET), F.col(C.RECORD_ID)))


def load_tokens(spark, manifests: Sequence[Any]) -> tuple[DataFrame, str]:
    """Union of token tables (manifests, paths or mappings) with Splink's unique id, and their key fingerprint.

    Refused unless every input is a token table with a valid manifest and all were made under
    one key (:func:`natlink.tokens.tokenise.read_token_tables`).
    """
    items = as_manifests(manifests)
    union = read_token_tables(spark, items)
    plain = sorted(set(union.columns) & set(C.IDENTIFIERS))
    if plain:
        raise InputDataError(f"inputs hold plaintext identifier columns {plain}; link takes token tables only")
    return with_unique_id(union), items[0].key_fingerprint
