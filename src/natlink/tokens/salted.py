"""The block-salted encoding: comparison tokens that are equal only inside one block.

Why
---
A deterministic token per field (:func:`natlink.tokens.encode.tokenise`) hides values from
dictionary attacks but not from *counting*: the commonest family-name token is SMITH's, and the
attack suite (``benchmarks/attacks``) recovers most given names that way. Here equal values give
equal tokens only inside one block of one blocking rule, so a column's global frequencies are
those of (block, value) pairs and say nothing. Measured in ``benchmarks/encodings/RESULTS.md``
and ``benchmarks/attacks`` (before/after table).

What a provider exports
-----------------------
For blocking rule ``i`` of the model (its columns name token specs, ``tk_dob`` -> ``dob``) and
every compared field ``f``, per record::

    inner_f       = HMAC(K["salted:inner/" + purpose_f], value_f)      never leaves the provider
    block_i       = HMAC(K["salted:block/" + rule_i], inner_a || inner_b ...)[:32]
    tk_f__r<i>    = HMAC(K["salted:salt/" + purpose_f], block_i || inner_f)[:16]

``value_f`` is exactly what :data:`~natlink.tokens.encode.TOKEN_SPECS` hashes (same normalised
input) and ``purpose_f`` that spec's purpose, so the swapped date of birth still compares with the
plain date inside a block. Inner tokens are fixed-length (64 hex), so concatenations are
unambiguous. A block key is 128 bits (unique across the population); a salted token 64 bits
(it only has to differ from the others of its block; the engine compares 64-bit hashes anyway).

The token table keeps one row per record: bookkeeping and kept columns, ``tk_block__r<i>`` per
rule (NULL when a field of the rule is missing: the record is not in that rule's blocks) and
``tk_<field>__r<i>`` per rule and compared field. :class:`SaltedScheme` names those columns and is
recorded in the manifest (rules, fields, fingerprint): the tokens depend on the blocking rules, so
a model with other rules needs a re-tokenise, and is refused (:func:`check_model`).

No Bloom filters, no standalone low-information token (sex, initial, year) and no term-frequency
information are exported; u-probabilities are computed at the provider as a handful of rates per
comparison level (:func:`natlink.linkage.salted_training.provider_u`), shipped in the manifest.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Protocol, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.config.model import ModelConfig
from natlink.errors import EncodingSpecError
from natlink.config.identifiers import IdentifierKind
from natlink.tokens.encode import TOKEN_SPECS, TokenSpec, normalised, token_specs
from natlink.tokens.hmac_sha256 import PadColumns, key_frame
from natlink.tokens.keys import KeyMaterial

__all__ = [
    "ENCODING",
    "SCHEMA_VERSION",
    "InnerSource",
    "SaltedScheme",
    "block_probe",
    "encode",
    "inner_tokens",
]

ENCODING = "salted"
# Bump when a salted token would change for the same input, key and scheme.
SCHEMA_VERSION = "natlink.tokens/salted-1"
BLOCK = "block"
_SIDE_COLUMN = re.compile(r"\b(tk_[a-z0-9_]+?)_[lr]\b")
_RULE_COLUMN = re.compile(r"\bl\.`?(tk_[a-z0-9_]+)`?")
_BLOCK_HEX = 32
_TOKEN_HEX = 16


def _strip(column: str) -> str:
    if not C.is_token(column):
        raise EncodingSpecError(f"salted encoding: {column!r} is not a token column (tk_*)")
    return column[len(C.TOKEN_PREFIX):]


@dataclass(frozen=True)
class SaltedScheme:
    """Which rules block and which token fields are compared (names of token specs, no ``tk_``).

    ``specs``: the token specs the fields resolve to, where tokens are made (a provider: the
    built-in ones and those of its dataset's declared identifiers, :meth:`for_identifiers`).
    None where no token is made (the centre reads schemes from settings and manifests): names
    only. Not part of the scheme's identity (equality, fingerprint)."""

    rules: tuple[tuple[str, ...], ...]
    fields: tuple[str, ...]
    specs: tuple[TokenSpec, ...] | None = field(default=TOKEN_SPECS, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.rules:
            raise EncodingSpecError("salted encoding: the model has no blocking rules for prediction")
        if self.specs is not None:
            known = {s.name for s in self.specs}
            unknown = sorted(({f for r in self.rules for f in r} | set(self.fields)) - known)
            if unknown:
                raise EncodingSpecError(
                    f"salted encoding: no token spec for {unknown}; known: {sorted(known)} "
                    "(declare the identifier in the dataset's identifiers, natlink.config.identifiers; "
                    "natlink probe: give that dataset's config, --dataset)"
                )

    def for_identifiers(self, identifiers: Mapping[str, IdentifierKind] | None) -> "SaltedScheme":
        """This scheme with the token specs of a dataset's identifiers (refused when a field is none of them)."""
        return replace(self, specs=token_specs(identifiers))

    def spec(self, name: str) -> TokenSpec:
        by_name = {s.name: s for s in (self.specs if self.specs is not None else TOKEN_SPECS)}
        if name not in by_name:
            raise EncodingSpecError(f"salted encoding: no token spec for {name!r} here (a scheme read at the centre names fields only)")
        return by_name[name]

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> "SaltedScheme":
        """The scheme of Splink settings (a trained model): rules ``l.a = r.a AND ...``, compared fields."""
        rules = []
        for rule in settings.get("blocking_rules_to_generate_predictions", []):
            sql = rule["blocking_rule"] if isinstance(rule, Mapping) else rule
            rules.append(tuple(_strip(c) for c in _RULE_COLUMN.findall(sql)))
        text = json.dumps(settings.get("comparisons", []))
        return cls(rules=tuple(rules), fields=tuple(dict.fromkeys(_strip(c) for c in _SIDE_COLUMN.findall(text))), specs=None)

    @classmethod
    def from_model(cls, cfg: ModelConfig, specs: Sequence[TokenSpec] | None = TOKEN_SPECS) -> "SaltedScheme":
        """The scheme of a model config (``conf/model*.yaml``); ``specs`` as in the class (None:
        names only, bound to a dataset's identifiers later by :meth:`for_identifiers`)."""
        fields: list[str] = []
        for comparison in cfg.comparisons:
            for level in comparison.levels:
                if level.exact:
                    fields.append(_strip(level.exact))
                elif level.sql:
                    fields += [_strip(c) for c in _SIDE_COLUMN.findall(level.sql)]
                else:
                    raise EncodingSpecError(f"salted encoding: comparison {comparison.name!r} has a Bloom filter level; salted tables carry no Bloom filters")
        rules = tuple(tuple(_strip(c) for c in (r if isinstance(r, list) else _RULE_COLUMN.findall(r))) for r in cfg.blocking_rules_for_prediction)
        return cls(rules=rules, fields=tuple(dict.fromkeys(fields)), specs=tuple(specs) if specs is not None else None)

    @classmethod
    def from_manifest(cls, data: Mapping[str, Any]) -> "SaltedScheme":
        enc = data.get("encoding") or {}
        scheme = cls(rules=tuple(tuple(r) for r in enc["rules"]), fields=tuple(enc["fields"]), specs=None)
        if enc.get("fingerprint") != scheme.fingerprint:
            raise EncodingSpecError(f"manifest of {data.get('dataset')!r}: its encoding fingerprint does not match its rules and fields")
        return scheme

    def rule_name(self, i: int) -> str:
        return "+".join(self.rules[i])

    @property
    def fingerprint(self) -> str:
        text = json.dumps({"schema": SCHEMA_VERSION, "rules": self.rules, "fields": self.fields}, sort_keys=True)
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:32]

    def as_dict(self) -> dict[str, Any]:
        return {"kind": ENCODING, "rules": [list(r) for r in self.rules], "fields": list(self.fields), "fingerprint": self.fingerprint}

    # Column names --------------------------------------------------------------------------
    @staticmethod
    def block_column(i: int) -> str:
        return f"{C.token(BLOCK)}__r{i}"

    @staticmethod
    def salted_column(field: str, i: int) -> str:
        return f"{C.token(field)}__r{i}"

    def rule_columns(self, i: int) -> dict[str, str]:
        """Model token column -> this table's column, for rule ``i``."""
        return {C.token(f): self.salted_column(f, i) for f in self.fields}

    @property
    def columns(self) -> list[str]:
        """Every token column of a salted table, in table order."""
        out = []
        for i in range(len(self.rules)):
            out += [self.block_column(i), *self.rule_columns(i).values()]
        return out

    def column_purposes(self, prefix: str = "") -> dict[str, str]:
        """Token column -> key purpose (what the manifest records; readers keep purposes apart)."""
        out = {}
        for i in range(len(self.rules)):
            out[self.block_column(i)] = f"{prefix}salted:block/{self.rule_name(i)}"
            out.update({self.salted_column(f, i): f"{prefix}salted:salt/{self.spec(f).purpose}/r{i}" for f in self.fields})
        return out

    @property
    def inner_fields(self) -> list[str]:
        return list(dict.fromkeys([*[f for r in self.rules for f in r], *self.fields]))

    def key_purposes(self, prefix: str = "") -> list[str]:
        wanted = {f"salted:inner/{self.spec(f).purpose}" for f in self.inner_fields}
        wanted |= {f"salted:salt/{self.spec(f).purpose}" for f in self.fields}
        wanted |= {f"salted:block/{self.rule_name(i)}" for i in range(len(self.rules))}
        return sorted(prefix + p for p in wanted)


def _all_present(cols: Sequence[Column]) -> Column:
    cond = F.lit(True)
    for c in cols:
        cond = cond & c.isNotNull()
    return cond


def _inner_name(field: str) -> str:
    return f"__natlink_inner_{field}"


class InnerSource(Protocol):
    """Where inner tokens come from when not from the local key: ``attach`` adds one column per
    (column name, key purpose, value column) to a normalised frame. The key service's OPRF
    (:class:`natlink.keyservice.spark.ServiceInnerTokens`) is one; None means local HMAC."""

    def attach(self, stage: DataFrame, items: Sequence[tuple[str, str, Column]]) -> DataFrame: ...


def _with_inner(df: DataFrame, key: KeyMaterial, scheme: SaltedScheme, prefix: str, hmac_implementation: str | None,
                inner_source: InnerSource | None = None, identifiers: Mapping[str, IdentifierKind] | None = None):
    purposes = scheme.key_purposes(prefix)
    pads = PadColumns(purposes, hmac_implementation)
    keys = key_frame(df.sparkSession, key, purposes)
    spec = scheme.spec
    if inner_source is not None:
        items = [(_inner_name(f), f"{prefix}salted:inner/{spec(f).purpose}", spec(f).value()) for f in scheme.inner_fields]
        stage = inner_source.attach(normalised(df, identifiers), items).crossJoin(F.broadcast(keys))
        return stage.select(*df.columns, *keys.columns, *[F.col(_inner_name(f)) for f in scheme.inner_fields]), pads, keys.columns
    stage = normalised(df, identifiers).crossJoin(F.broadcast(keys))
    inner = [
        pads.hmac(f"{prefix}salted:inner/{spec(f).purpose}", spec(f).value()).alias(_inner_name(f))
        for f in scheme.inner_fields
    ]
    return stage.select(*df.columns, *keys.columns, *inner), pads, keys.columns


def inner_tokens(df: DataFrame, key: KeyMaterial, scheme: SaltedScheme, *, project: str | None = None, hmac_implementation: str | None = None,
                 identifiers: Mapping[str, IdentifierKind] | None = None) -> DataFrame:
    """``df``'s bookkeeping columns and one deterministic token per field, named as the model's
    columns (``tk_<field>``). For the provider's own aggregates (u-probabilities) only: these
    tokens are never written or exported (their frequencies are those of the values)."""
    prefix = f"project:{project}/" if project else ""
    stage, _, _ = _with_inner(df, key, scheme, prefix, hmac_implementation, identifiers=identifiers)
    keep = [c for c in (C.DATASET, C.RECORD_ID) if c in df.columns]
    return stage.select(*keep, *[F.col(_inner_name(f)).alias(C.token(f)) for f in scheme.inner_fields])


def encode(
    df: DataFrame,
    key: KeyMaterial,
    scheme: SaltedScheme,
    *,
    keep: Sequence[str],
    project: str | None = None,
    hmac_implementation: str | None = None,
    inner_source: InnerSource | None = None,
    identifiers: Mapping[str, IdentifierKind] | None = None,
) -> DataFrame:
    """The salted token table of a standardised frame: ``keep`` columns, then :attr:`SaltedScheme.columns`.

    ``inner_source``: where the inner tokens come from (None: ``HMAC(K[salted:inner/P], v)`` under
    ``key``; the key service: its OPRF, with ``key`` the providers' encoding key for the rest)."""
    prefix = f"project:{project}/" if project else ""
    stage, pads, pad_columns = _with_inner(df, key, scheme, prefix, hmac_implementation, inner_source, identifiers)
    blocks = []
    for i, rule in enumerate(scheme.rules):
        parts = [F.col(_inner_name(f)) for f in rule]
        digest = pads.hmac(f"{prefix}salted:block/{scheme.rule_name(i)}", F.concat(*parts))
        blocks.append(F.when(_all_present(parts), F.substring(digest, 1, _BLOCK_HEX)).alias(scheme.block_column(i)))
    inner_columns = [_inner_name(f) for f in scheme.inner_fields]
    # Block keys first (one projection), so each salted token reads a column, not the HMAC again.
    with_blocks = stage.select(*keep, *pad_columns, *inner_columns, *blocks)
    out = []
    for i in range(len(scheme.rules)):
        block = F.col(scheme.block_column(i))
        out.append(block)
        for f in scheme.fields:
            inner = F.col(_inner_name(f))
            salted = pads.hmac(f"{prefix}salted:salt/{scheme.spec(f).purpose}", F.concat(block, inner))
            out.append(F.when(block.isNotNull() & inner.isNotNull(), F.substring(salted, 1, _TOKEN_HEX)).alias(scheme.salted_column(f, i)))
    return with_blocks.select(*[F.col(c) for c in keep], *out)


def block_probe(key: KeyMaterial, scheme: SaltedScheme, column: str, value: str, *, project: str | None = None,
                inner: Callable[[str, str], str] | None = None) -> str:
    """The block key of ``value`` (already normalised, as tokenise normalises it) under the
    prediction rule that is ``column`` alone: the probe ``natlink discover`` takes on salted
    tables. Made by the key holder (a provider), never at the linkage centre.

    ``inner``: (purpose, value) -> the inner token, when it does not come from ``key`` (federated
    mode: the key service's OPRF, :func:`natlink.keyservice.manage.block_probe`; ``key`` is then
    the service encoding key)."""
    import hmac

    field = column[len(C.TOKEN_PREFIX):] if C.is_token(column) else column
    alone = [i for i, rule in enumerate(scheme.rules) if rule == (field,)]
    if not alone:
        raise EncodingSpecError(f"{column!r} is not a prediction rule on its own, so it has no block key")
    prefix = f"project:{project}/" if project else ""
    purpose = f"{prefix}salted:inner/{scheme.spec(field).purpose}"
    if inner is None:
        inner_hex = hmac.new(key.subkey(purpose), value.encode("utf-8"), hashlib.sha256).hexdigest()
    else:
        inner_hex = inner(purpose, value)
    block = hmac.new(key.subkey(f"{prefix}salted:block/{scheme.rule_name(alone[0])}"), inner_hex.encode(), hashlib.sha256).hexdigest()
    return block[:_BLOCK_HEX]
