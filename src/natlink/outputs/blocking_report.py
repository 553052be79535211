"""What each prediction rule costs and finds (``natlink blocking``): the analysis to choose rules by.

For the token tables a link would read, with the model's prediction rules and the link settings'
large-block splits (``link.split_large_blocks``, :mod:`natlink.linkage.block_splits`), per rule:

* comparisons (pairs of its key groups, as the link's budget counts them) and per record, before
  and after its large blocks are split, and its largest blocks (sizes only, never a key);
* recall: the share of true pairs (two records of one person) the rule makes, and its marginal
  recall, the share that it alone makes (no other rule would compare them), so a rule that costs
  much and adds nothing shows as such; and the union of all rules (blocking recall).

True pairs come from a truth table (dataset, record_id, true_person_id) when there is one, else
from NHS-number pseudo-truth (records sharing an NHS-number token). Against pseudo-truth the rule on
the NHS number finds every pair by construction: the other rules' recall then says how they would
do for records without a number, and marginal recall is counted without that rule.
"""

from __future__ import annotations

from functools import reduce
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.config.link import LinkConfig
from natlink.linkage import block_splits, blocking, constraints, engine, model_store, salted_training
from natlink.outputs.evaluate import nhs_pseudo_truth
from natlink.spark.scratch import Scratch
from natlink.tokens.reader import as_manifests, load_tokens

TRUTH = "truth"
PSEUDO_TRUTH = "NHS-number pseudo-truth"


def analyse_job(spark, *, manifests: list, model_path, link_cfg: LinkConfig, truth: DataFrame | None = None, top: int = 5) -> dict[str, Any]:
    """:func:`analyse` on the token tables of ``manifests`` with the trained model at ``model_path``."""
    loaded = as_manifests(manifests)
    tokens, fingerprint = load_tokens(spark, loaded)
    settings, _meta = model_store.load(model_path, key_fingerprint=fingerprint)
    return analyse(tokens, settings, link_cfg, scheme=salted_training.check_scheme(loaded, settings), truth=truth, top=top)


def analyse(
    tokens: DataFrame, settings: dict[str, Any], link_cfg: LinkConfig, *, scheme: Any = None, truth: DataFrame | None = None, top: int = 5
) -> dict[str, Any]:
    """The analysis as a JSON-able dict: ``records``, ``judge``, ``true_pairs``, ``union_recall``,
    ``rules`` (one dict per prediction rule) and ``block_splits`` (the split counts)."""
    spark = tokens.sparkSession
    rules = blocking.rules_from_settings(settings, scheme)
    nhs = constraints.nhs_key(rules) or (C.token(C.NHS_NUMBER) if C.token(C.NHS_NUMBER) in tokens.columns else None)
    with Scratch(spark) as scratch:
        keyed, split, splits = engine.split_blocks(tokens, rules, link_cfg, scratch)
        judge = truth if truth is not None else nhs_pseudo_truth(tokens, nhs)
        keys = list(dict.fromkeys(k for r in [*rules, *split] for k in r.keys))
        slim = keyed.select(C.DATASET, C.RECORD_ID, *engine.compact_columns(keyed, keys), *[s.size_column for s in splits])
        records = scratch.materialise(
            slim.join(judge.select(C.DATASET, C.RECORD_ID, C.TRUE_PERSON_ID), [C.DATASET, C.RECORD_ID], "left")
            .withColumn(C.NODE_ID, F.monotonically_increasing_id()),
            "blocking_records",
        )
        n = records.count()
        before = blocking.count_comparisons(records, rules)
        after = blocking.count_comparisons(records, split)
        largest = _largest_blocks(records, rules, top)
        pairs = true_pairs(records, keys, scratch)
        without = next((i for i, r in enumerate(rules) if truth is None and r.model_keys == (C.token(C.NHS_NUMBER),)), None)
        found = pair_recall(pairs, split, without)
        split_counts = block_splits.counts(records, splits)
    total = found["true_pairs"]
    out_rules = []
    for i, rule in enumerate(rules):
        out_rules.append({
            "rule": "[" + ", ".join(rule.model_keys) + "]",
            "comparisons": after[i], "per_record": after[i] / n if n else 0.0,
            "comparisons_unsplit": before[i], "largest_blocks": largest[i],
            "recall": found[f"rule_{i}"] / total if total else None,
            "marginal_recall": found[f"only_{i}"] / total if total and i != without else None,
        })
    return {
        "records": n, "judge": TRUTH if truth is not None else PSEUDO_TRUTH, "true_pairs": total,
        "union_recall": found["union"] / total if total else None,
        "comparisons_per_record": sum(after) / n if n else 0.0, "rules": out_rules, "block_splits": split_counts,
    }


def _largest_blocks(records: DataFrame, rules: list[blocking.Rule], top: int) -> list[list[int]]:
    """Per rule, the sizes of its ``top`` largest blocks (before any split), in one job."""
    parts = []
    for i, rule in enumerate(rules):
        present = reduce(lambda a, b: a & b, [F.col(k).isNotNull() for k in rule.keys])
        sizes = records.where(present).groupBy(*rule.keys).agg(F.count(F.lit(1)).alias("n"))
        parts.append(sizes.orderBy(F.desc("n")).limit(top).select(F.lit(i).alias("rule"), "n"))
    got: dict[int, list[int]] = {i: [] for i in range(len(rules))}
    for row in reduce(DataFrame.unionByName, parts).collect():
        got[row["rule"]].append(int(row["n"]))
    return [sorted(got[i], reverse=True) for i in range(len(rules))]


def true_pairs(records: DataFrame, keys: list[str], scratch: Scratch) -> DataFrame:
    """Every pair of ``records`` of one true person (each once), with both sides' ``keys`` (``<key>_l``,
    ``<key>_r``), materialised in ``scratch``: the input of :func:`pair_recall`."""
    side = records.where(F.col(C.TRUE_PERSON_ID).isNotNull()).select(C.TRUE_PERSON_ID, C.NODE_ID, *keys)
    left = side.select(*[F.col(c).alias(f"{c}_l") for c in side.columns])
    right = side.select(*[F.col(c).alias(f"{c}_r") for c in side.columns])
    same = (F.col(f"{C.TRUE_PERSON_ID}_l") == F.col(f"{C.TRUE_PERSON_ID}_r")) & (F.col(f"{C.NODE_ID}_l") < F.col(f"{C.NODE_ID}_r"))
    return scratch.materialise(left.join(right, same), "blocking_true_pairs")


def pair_recall(pairs: DataFrame, rules: list[blocking.Rule], without: int | None) -> dict[str, int]:
    """True pairs in all, made by each rule, made by each rule alone (``without``'s pairs not counted
    as another rule's), and made by any rule."""

    def made(rule: blocking.Rule) -> Column:
        return reduce(lambda a, b: a & b, [F.coalesce(F.col(f"{k}_l") == F.col(f"{k}_r"), F.lit(False)) for k in rule.keys])

    each = [made(r) for r in rules]
    aggs = [F.count(F.lit(1)).alias("true_pairs"), F.sum(reduce(lambda a, b: a | b, each).cast("long")).alias("union")]
    for i, m in enumerate(each):
        others = [o for j, o in enumerate(each) if j not in (i, without)]
        alone = m & ~reduce(lambda a, b: a | b, others) if others else m
        aggs += [F.sum(m.cast("long")).alias(f"rule_{i}"), F.sum(alone.cast("long")).alias(f"only_{i}")]
    row = pairs.agg(*aggs).first()
    return {k: int(row[k] or 0) for k in row.asDict()}
