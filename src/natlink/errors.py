"""One base error for natlink; every failure a user can act on is a named subclass.

Messages name the file, column, count and what was expected. They never carry a
plaintext identifier, key material or a key-derived secret: callers pass counts,
column names and paths only.
"""

from __future__ import annotations


class NatlinkError(Exception):
    """Base class of every error natlink raises on purpose."""


class ConfigError(NatlinkError):
    """A configuration file is missing, malformed or has unknown keys."""


class SchemaError(NatlinkError):
    """Input columns are missing, unexpected or of the wrong type."""


class InputDataError(NatlinkError):
    """Input data cannot be used (empty file, unreadable rows, bad encoding)."""


class KeyMaterialError(NatlinkError):
    """Key material cannot be resolved or is unsafe (never includes the key itself)."""


class FingerprintMismatchError(NatlinkError):
    """Inputs or a model were produced under different keys."""


class DeltaTableError(NatlinkError):
    """A Delta table cannot be read or written as asked."""


class DeltaConflictError(DeltaTableError):
    """A write lost a race with a concurrent writer to the same table: nothing of it was committed."""


class ModelError(NatlinkError):
    """A linkage model is missing, invalid or incompatible with the data."""


class TrainingError(ModelError):
    """Training cannot give a usable model from these data and this model config (says what to change)."""


class UntrainedLevelError(TrainingError):
    """A comparison level was left without m or u: it names the comparison and level, how many pairs
    training looked at without seeing it, and what to change (more pairs, another EM blocking rule,
    or ``training.allow_unobserved``)."""


class EmptyTrainingRuleError(TrainingError):
    """A training blocking rule (EM or deterministic) gives no record pairs in the training sample."""


class BlockingBudgetError(NatlinkError):
    """A blocking rule would generate more comparisons than the configured budget."""


class ClusteringError(NatlinkError):
    """Connected components could not be computed as asked (no convergence within the round limit)."""


class ComponentTooLargeError(ClusteringError):
    """A component that breaks a cannot-link rule is too large to split on the driver (counts only, never ids)."""


class ReconciliationError(NatlinkError):
    """Rows in != rows out + rows quarantined."""


class QuarantineReasonError(NatlinkError):
    """A quarantine stage or reason outside the one vocabulary of :mod:`natlink.store.quarantine`."""


class ReportError(NatlinkError):
    """A report cannot be made (unknown run, missing tables) or would not be safe to share."""


class NotTokenTableError(SchemaError):
    """An input offered for linkage is not a natlink token table (no manifest, plaintext, wrong columns)."""


class CorruptInputFileError(InputDataError):
    """A file a job reads is missing, unreadable or truncated (named, with what was expected)."""


class DiscoveryRefusedError(InputDataError):
    """A discovery lookup outside what is allowed (a column not allow-listed, a token shared by a group)."""


class RunIdentityError(InputDataError):
    """A run id already used with different inputs, model or settings (says what differs)."""


class CarryIdsError(InputDataError):
    """Person ids cannot be carried from the tables folder given (``--carry-ids-from``): it has no
    completed run, its runs were made under the inputs' own key fingerprint (no key rotation), none
    of its records is among the inputs, or the new linkage already has a completed run."""


# --- a provider's source (raised before any Spark job reads data rows) ---------------------


class SourceNotFoundError(InputDataError):
    """The source path does not exist or holds no data files."""


class EmptyInputError(InputDataError):
    """The source has no data rows (0-byte files, or a header and nothing else)."""


class InvalidEncodingError(InputDataError):
    """A file's header cannot be decoded with the configured encoding."""


class UnusableColumnError(InputDataError):
    """A mapped identifier column has no usable value in any row (all blank or all invalid)."""


class QuarantineLimitError(InputDataError):
    """More rows were quarantined than the dataset's ``quarantine.max_fraction`` allows."""


class MissingColumnsError(SchemaError):
    """Mapped columns are absent from the source."""


class UnexpectedColumnsError(SchemaError):
    """The source has columns the mapping does not know (``schema_checks.unexpected_columns: error``)."""


class ColumnTypeError(SchemaError):
    """A mapped column has a type that cannot hold what it is mapped to."""


class HeaderMismatchError(SchemaError):
    """The files of one CSV source do not share one header (column drift inside a delivery)."""


# --- tokens: keyed encodings ------------------------------------------------------------------


class EncodingSpecError(ConfigError):
    """A token or Bloom filter specification is invalid (its parameters are out of range)."""


class HmacImplementationError(ConfigError):
    """The HMAC implementation asked for (argument or ``NATLINK_HMAC``) is not auto, jvm or native."""


class JvmHmacUnavailableError(NatlinkError):
    """The JVM HMAC function was required, but natlink-jvm.jar is not loadable in the Spark session."""


# --- keys, manifests and what may leave a provider (issue 15) ---------------------------------


class KeyReferenceError(KeyMaterialError):
    """A key *reference* (``env:NAME``, ``file:PATH``, a registered scheme) was expected and something
    else was given, e.g. a raw key: refused without echoing it (its length and kind at most)."""


class WeakKeyError(KeyMaterialError):
    """Key material that is not random enough (text, repeated or patterned bytes, few distinct bytes),
    or a labelled test key without the explicit test opt-in (``NATLINK_ALLOW_TEST_KEYS=1``)."""


class ManifestSignatureError(NotTokenTableError):
    """A token-table manifest is unsigned, edited after signing, signed by a key no trusted signer
    holds, or signed by a signer not trusted for its dataset; or a manifest cannot be signed."""


class TokenTableChangedError(NotTokenTableError):
    """A token table's files are not those its signed manifest binds (edited, appended, rewritten)."""


class IdentifierInEventColumnError(InputDataError):
    """An event or kept column holds values that look like identifiers (NHS numbers, postcodes,
    the record's own date of birth or names): refused before anything is written."""


class EncodingMismatchError(ModelError):
    """A model and token tables disagree on the block-salted encoding (rules, fields), or token
    tables of different encodings are linked together: re-tokenise, or use the model they were made for."""


# --- the key service: providers tokenise without holding the master key (issue 17) ----------


class KeyServiceError(NatlinkError):
    """The pseudonymisation key service or its client failed (never carries a value, a blinded
    element, an output or a credential)."""


class KeyServiceUnavailableError(KeyServiceError):
    """The key service could not be reached, or kept failing, after the client's retries."""


class KeyServiceAuthError(KeyServiceError):
    """The key service refused the provider's credential (HTTP 401), or the provider is not allowed
    the purpose or key version it asked for (HTTP 403)."""


class KeyServiceRateLimitedError(KeyServiceError):
    """The provider went over its evaluations per window at the key service (HTTP 429)."""


class KeyServiceRequestError(KeyServiceError):
    """The key service refused a request as malformed (HTTP 400/404/410/413), naming what was wrong."""


class KeyServiceProofError(KeyServiceError):
    """The key service's answer did not verify against the provider's pinned public key (a wrong
    key, a key version not pinned, or a forged or corrupted batch proof)."""
