"""The block-salted encoding: comparison tokens that are equal only inside one block.

For each blocking rule ``r`` of the model (its columns name natlink token specs, ``tk_dob`` ->
``dob``), and each record whose rule fields are all present::

    inner_f   = HMAC(K["fh/inner/" + purpose_f], value_f)          never leaves the provider
    bk_r      = HMAC(K["fh/block/" + r], inner_a || inner_b ...)    the rule's block key
    tk_{r,f}  = HMAC(K["fh/salt/" + purpose_f], bk_r || inner_f)    one per comparison field f

``value_f`` is exactly what natlink's :data:`~natlink.tokens.encode.TOKEN_SPECS` hash today (the
same normalised input), and ``purpose_f`` is that spec's key purpose, so the swapped date of birth
still compares with the plain date. The inner tokens are fixed-length, which makes the
concatenations unambiguous without a separator. Every HMAC is natlink's
(:mod:`natlink.tokens.hmac_sha256`: pads in a broadcast key frame, never a literal) under
``KeyMaterial.subkey(purpose)``; no Python UDF.

The exported table has one row per (record, rule): the record key (dataset, record id), the rule
number, ``bk`` and the ``tk_*`` comparison columns under the model's own names, so today's model
settings score it unchanged once blocking is ``l.bk = r.bk``. A value appearing in two blocks gets
two unrelated tokens, so a column's global frequencies are those of (block, value) pairs.

``record_key="per_rule"`` replaces the record id by a keyed pseudonym per rule (the centre then
cannot tell which rows of two rules are one record; measured in :mod:`.leakage`, not linked here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.tokens.encode import TOKEN_SPECS
from natlink.tokens.hmac_sha256 import PadColumns, key_frame
from natlink.tokens.keys import KeyMaterial

RULE = "rule"
BLOCK_KEY = "bk"
SPECS = {s.name: s for s in TOKEN_SPECS}


@dataclass(frozen=True)
class SaltedSpec:
    """Which rules block and which fields are compared (names of natlink token specs)."""

    rules: tuple[tuple[str, ...], ...]
    fields: tuple[str, ...]

    @classmethod
    def from_model(cls, cfg) -> "SaltedSpec":
        """Rules and compared fields of a :class:`natlink.config.ModelConfig` (``tk_`` stripped)."""
        import re

        from natlink.linkage.settings import splink_settings

        def strip(column: str) -> str:
            return column[len(C.TOKEN_PREFIX):]

        rules = tuple(tuple(strip(c) for c in rule) for rule in cfg.blocking_rules_for_prediction)
        text = str(splink_settings(cfg)["comparisons"])
        used = dict.fromkeys(strip(c) for c in re.findall(r"\b(tk_[a-z0-9_]+?)_[lr]\b", text))
        unknown = [f for r in rules for f in r if f not in SPECS] + [f for f in used if f not in SPECS]
        if unknown:
            raise ValueError(f"salted encoding: no token spec for {sorted(set(unknown))}")
        return cls(rules=rules, fields=tuple(used))

    def rule_name(self, i: int) -> str:
        return "+".join(self.rules[i])


def purposes(spec: SaltedSpec, record_key: str = "shared") -> list[str]:
    """Every subkey purpose the encoder uses (inner, block, salt; per-rule record pseudonyms)."""
    needed = {f for r in spec.rules for f in r} | set(spec.fields)
    out = {f"fh/inner/{SPECS[f].purpose}" for f in needed} | {f"fh/salt/{SPECS[f].purpose}" for f in spec.fields}
    out |= {f"fh/block/{spec.rule_name(i)}" for i in range(len(spec.rules))}
    if record_key == "per_rule":
        out |= {f"fh/record/{spec.rule_name(i)}" for i in range(len(spec.rules))}
    return sorted(out)


def _all_present(cols: Sequence[Column]) -> Column:
    cond = F.lit(True)
    for c in cols:
        cond = cond & c.isNotNull()
    return cond


def encode(plain: DataFrame, key: KeyMaterial, spec: SaltedSpec, *, record_key: str = "shared", hmac_implementation: str | None = None) -> DataFrame:
    """One row per (record, rule with all its fields present): dataset, record_id, rule, bk, tk_*.

    ``plain``: dataset, record_id and the normalised canonical identifiers (a provider's frame).
    """
    if record_key not in ("shared", "per_rule"):
        raise ValueError(f"record_key must be 'shared' or 'per_rule', not {record_key!r}")
    wanted = purposes(spec, record_key)
    pads = PadColumns(wanted, hmac_implementation)
    keys = key_frame(plain.sparkSession, key, wanted)
    joined = plain.crossJoin(F.broadcast(keys))
    needed = list(dict.fromkeys([f for r in spec.rules for f in r] + list(spec.fields)))
    # Stage 1: inner tokens (fixed length) of every field a rule or a comparison reads.
    inner = {f: f"__fh_inner_{f}" for f in needed}
    pad_cols = keys.columns  # the padded subkeys travel as columns, never as literals
    stage = joined.select(
        C.DATASET, C.RECORD_ID, *pad_cols,
        *[pads.hmac(f"fh/inner/{SPECS[f].purpose}", SPECS[f].value()).alias(inner[f]) for f in needed],
    )
    # Stage 2: per rule, the block key and the salted tokens, as one struct; exploded to rows.
    per_rule = []
    for i, rule in enumerate(spec.rules):
        name = spec.rule_name(i)
        parts = [F.col(inner[f]) for f in rule]
        bk = F.when(_all_present(parts), pads.hmac(f"fh/block/{name}", F.concat(*parts)))
        rk = (
            pads.hmac(f"fh/record/{name}", F.concat_ws("/", F.col(C.DATASET), F.col(C.RECORD_ID)))
            if record_key == "per_rule" else F.col(C.RECORD_ID)
        )
        per_rule.append((i, bk, rk))
    bk_cols = [bk.alias(f"__fh_bk{i}") for i, bk, _ in per_rule]
    rk_cols = [rk.alias(f"__fh_rk{i}") for i, _, rk in per_rule]
    stage2 = stage.select(C.DATASET, C.RECORD_ID, *pad_cols, *inner.values(), *bk_cols, *rk_cols)
    structs = []
    for i, _, _ in per_rule:
        bk = F.col(f"__fh_bk{i}")
        tokens = [
            F.when(bk.isNotNull(), pads.hmac(f"fh/salt/{SPECS[f].purpose}", F.concat(bk, F.col(inner[f])))).alias(SPECS[f].column)
            for f in spec.fields
        ]
        structs.append(F.struct(F.col(f"__fh_rk{i}").alias(C.RECORD_ID), F.lit(i).alias(RULE), bk.alias(BLOCK_KEY), *tokens))
    rows = stage2.select(C.DATASET, F.explode(F.array(*structs)).alias("r")).where(F.col(f"r.{BLOCK_KEY}").isNotNull())
    return rows.select(C.DATASET, "r.*")
