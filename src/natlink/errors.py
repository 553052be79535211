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


class ModelError(NatlinkError):
    """A linkage model is missing, invalid or incompatible with the data."""


class BlockingBudgetError(NatlinkError):
    """A blocking rule would generate more comparisons than the configured budget."""


class ReconciliationError(NatlinkError):
    """Rows in != rows out + rows quarantined."""


class NotTokenTableError(SchemaError):
    """An input offered for linkage is not a natlink token table (no manifest, plaintext, wrong columns)."""
