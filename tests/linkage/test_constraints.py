"""Clusters that do not chain: cannot-link rules split a component at its weakest edges.

The split itself (numpy) and its Spark driver are checked on hand-made edge lists; both engines
are checked end to end on hand-made token records whose match weights are worked out below.
Tokens are opaque strings (no identifiers).
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.config import DatasetConfig, LinkConfig
from natlink.config.link import CannotLink
from natlink.errors import ClusteringError, ComponentTooLargeError
from natlink.linkage import clustering, constraints
from natlink.linkage import engine as link
from natlink.spark.scratch import Scratch
from natlink.tokens import reader

NHS = C.token(C.NHS_NUMBER)
RULES = constraints.Rules(datasets=("registry",), nhs_column=NHS, max_component_edges=1000)


def _split(edges: list[tuple[int, int, float]], attrs: dict[int, tuple[int, int | None]], rules=RULES):
    """Components of ``edges`` with the rules applied; attrs: node -> (dataset code, NHS token or None)."""
    src = np.array([e[0] for e in edges], np.int64)
    dst = np.array([e[1] for e in edges], np.int64)
    weight = np.array([e[2] for e in edges], np.float64)
    nodes, component = clustering.label_components(src, dst)
    code = np.array([attrs.get(n, (0, None))[0] for n in nodes.tolist()], np.int64)
    token = [attrs.get(n, (0, None))[1] for n in nodes.tolist()]
    nhs = np.array([t or 0 for t in token], np.int64)
    has = np.array([t is not None for t in token], bool)
    out, counts = constraints.split_components(rules, nodes, component, src, dst, weight, code, nhs, has)
    return dict(zip(nodes.tolist(), out.tolist())), counts


def test_a_chain_is_cut_at_its_weakest_edge_by_nhs_tokens_and_by_a_one_row_per_person_dataset():
    # A(0)-B(1) 9.0, B-C(2) 1.5 (weakest, in the middle), C-D(3) 8.0: A and D carry different NHS
    # tokens, so the strongest-first union joins A-B and C-D and refuses B-C.
    chain = [(0, 1, 9.0), (1, 2, 1.5), (2, 3, 8.0)]
    parts, counts = _split(chain, {0: (0, 111), 3: (0, 222)})
    assert parts == {0: 0, 1: 0, 2: 2, 3: 2}
    assert counts == constraints.SplitCounts(components_split=1, edges_dropped=1, records_in_split_components=4, persons_added=1)
    # The same chain where A and D are two rows of the one-row-per-person dataset (code 1).
    assert _split(chain, {0: (1, None), 3: (1, None)})[0] == {0: 0, 1: 0, 2: 2, 3: 2}
    # One NHS token on both ends, or one registry row only: nothing breaks a rule, nothing changes.
    assert _split(chain, {0: (0, 111), 3: (0, 111)}) == ({n: 0 for n in range(4)}, constraints.SplitCounts())
    assert _split(chain, {0: (1, None), 3: (0, None)})[0] == {n: 0 for n in range(4)}


def test_a_cycle_loses_every_edge_that_would_join_the_conflicting_sides():
    # A(10)-B(11) 7, B-C(12) 2, C-D(13) 6, D-A 1: A (N1) and C (N2) conflict. Strongest first: A-B,
    # C-D join; B-C would put N1 with N2, refused; D-A likewise: two edges dropped, {A,B} {C,D}.
    cycle = [(10, 11, 7.0), (11, 12, 2.0), (12, 13, 6.0), (10, 13, 1.0)]
    parts, counts = _split(cycle, {10: (0, 1), 12: (0, 2)})
    assert parts == {10: 10, 11: 10, 12: 12, 13: 12}
    assert (counts.edges_dropped, counts.persons_added) == (2, 1)
    # Three NHS tokens on a star around a hub without one: the hub goes with its strongest edge.
    star = [(20, 21, 3.0), (20, 22, 5.0), (20, 23, 4.0)]
    parts, counts = _split(star, {21: (0, 7), 22: (0, 8), 23: (0, 9)})
    assert parts == {20: 20, 22: 20, 21: 21, 23: 23} and counts.edges_dropped == 2


def test_components_without_a_conflict_come_out_exactly_as_connected_components():
    rng = random.Random(5)
    edges = [(rng.randrange(400), rng.randrange(400), rng.uniform(0, 20)) for _ in range(500)]
    edges = [(min(a, b), max(a, b), w) for a, b, w in edges if a != b]
    nodes, component = clustering.label_components(np.array([e[0] for e in edges]), np.array([e[1] for e in edges]))
    plain = dict(zip(nodes.tolist(), component.tolist()))
    # Tokens per component (one each) and registry rows in distinct components: no conflict anywhere.
    comp_of = plain
    attrs = {n: (0, 1000 + c) for n, c in comp_of.items() if n % 3 == 0}
    first_in = {}
    for n, c in sorted(comp_of.items()):
        first_in.setdefault(c, n)
    attrs.update({n: (1, attrs.get(n, (0, None))[1]) for n in first_in.values()})
    parts, counts = _split(edges, attrs)
    assert parts == plain and counts == constraints.SplitCounts()


def test_the_split_is_deterministic_whatever_the_edge_order_and_ignores_float_noise():
    rng = random.Random(11)
    edges = []
    for base in range(0, 300, 10):  # 30 chains of 10 nodes, both ends with different tokens
        edges += [(base + i, base + i + 1, float(rng.choice([2, 3, 5]))) for i in range(9)]
        edges += [(base, base + 5, 3.0), (base + 2, base + 9, 2.0)]
    attrs = {base: (0, base + 1) for base in range(0, 300, 10)}
    attrs.update({base + 9: (0, base + 2) for base in range(0, 300, 10)})
    attrs.update({base + 4: (1, None) for base in range(0, 300, 10)})
    attrs.update({base + 7: (1, None) for base in range(0, 300, 10)})
    expected, counts = _split(edges, attrs)
    assert counts.components_split == 30 and counts.edges_dropped >= 60
    for seed in range(5):
        shuffled = edges[:]
        random.Random(seed).shuffle(shuffled)
        # Another engine's weights differ in the last bits (< 1e-9): the same order, the same persons.
        noisy = [(b, a, w + random.Random(seed + i).uniform(-1e-10, 1e-10)) for i, (a, b, w) in enumerate(shuffled)]
        assert _split(noisy, attrs) == (expected, counts)


def test_the_split_at_a_higher_threshold_is_the_clusters_of_the_edges_within_the_lower_thresholds_persons():
    # What the report's and the notebook's threshold sweeps rely on (natlink.outputs.evaluate.within_clusters):
    # linking once at the lowest threshold and keeping the edges within its persons gives, at every
    # higher threshold, exactly the persons the split would give there.
    rng = random.Random(17)
    edges = []
    for base in range(0, 400, 8):  # 50 groups of 8 records, 14 random edges each
        pairs = {tuple(sorted(rng.sample(range(base, base + 8), 2))) for _ in range(14)}
        edges += [(a, b, round(rng.uniform(0, 10), 3)) for a, b in sorted(pairs)]
    attrs = {n: (1 if rng.random() < 0.15 else 0, rng.choice([None, None, None, 1, 2])) for n in range(400)}
    low, counts = _split(edges, attrs)
    assert counts.components_split > 20 and counts.edges_dropped > 40  # the rules bite
    for cut in (2.0, 5.0, 8.0):
        above = [e for e in edges if e[2] >= cut]
        direct, _ = _split(above, attrs)
        within = [e for e in above if low[e[0]] == low[e[1]]]
        src, dst = np.array([e[0] for e in within]), np.array([e[1] for e in within])
        labelled, component = clustering.label_components(src, dst)
        sweep = dict(zip(labelled.tolist(), component.tolist()))
        # The same partition of the records at the edges' ends (labels are each part's smallest node).
        ends = set(direct) | set(sweep)
        assert {n: direct.get(n, n) for n in ends} == {n: sweep.get(n, n) for n in ends}, cut


def test_a_conflicting_component_too_large_for_the_driver_is_refused_by_name():
    chain = [(i, i + 1, 1.0 + i % 3) for i in range(50)]
    small = constraints.Rules(datasets=(), nhs_column=NHS, max_component_edges=49)
    with pytest.raises(ComponentTooLargeError, match="50 edges, over cannot_link.max_component_edges") as err:
        _split(chain, {0: (0, 1), 50: (0, 2)}, rules=small)
    assert isinstance(err.value, ClusteringError)
    # The same component without a conflict is not split, so its size does not matter.
    assert _split(chain, {0: (0, 1), 50: (0, 1)}, rules=small)[1] == constraints.SplitCounts()


def test_rules_follow_the_config_and_the_columns_at_hand():
    assert constraints.Rules.of(CannotLink(), ["dataset", NHS]) == constraints.Rules((), NHS, CannotLink().max_component_edges)
    assert constraints.Rules.of(CannotLink(), ["dataset"]) is None  # no NHS tokens, no one-row datasets
    assert constraints.Rules.of(CannotLink(enabled=False, one_row_per_person=["registry"]), [NHS]) is None
    assert constraints.Rules.of(CannotLink(nhs_number=False, one_row_per_person=["registry"]), [NHS]).nhs_column is None
    registry = DatasetConfig(name="registry", source={"path": "x"}, record_id="id", columns={"nhs_number": "n"}, one_row_per_person=True)
    gp = DatasetConfig(name="gp", source={"path": "x"}, record_id="id", columns={"nhs_number": "n"})
    assert gp.one_row_per_person is False
    assert LinkConfig().declaring([gp, registry]).cannot_link.one_row_per_person == ["registry"]
    assert LinkConfig(cannot_link={"one_row_per_person": ["registry"]}).declaring([registry]).cannot_link.one_row_per_person == ["registry"]


def test_spark_enforce_equals_the_in_process_split(spark):
    rng = random.Random(3)
    edges, attrs = [], {}
    for base in range(0, 2000, 20):
        size = rng.randrange(2, 20)
        edges += [(base + i, base + rng.randrange(i + 1, size), round(rng.uniform(0, 15), 3)) for i in range(size - 1)]
        for i in range(size):
            roll = rng.random()
            if roll < 0.15:
                attrs[base + i] = (0, rng.choice([1, 2, 3]))
            elif roll < 0.25:
                attrs[base + i] = (1, None)
    expected, counts = _split(edges, attrs)
    assert counts.components_split > 10
    edges_df = spark.createDataFrame(edges, f"{clustering.SRC} long, {clustering.DST} long, match_weight double")
    records = spark.createDataFrame(
        [(n, "registry" if attrs.get(n, (0, None))[0] else "hes", attrs.get(n, (0, None))[1]) for n in sorted({e[0] for e in edges} | {e[1] for e in edges})],
        f"{C.NODE_ID} long, {C.DATASET} string, {NHS} long",
    )
    # Components on Spark's side (here from the driver, to keep the test short), then the split ...
    comps = clustering.components(edges_df, method="driver")
    split, spark_counts = constraints.enforce(comps, edges_df, records, RULES)
    assert dict(tuple(r) for r in split.collect()) == expected and spark_counts == counts
    # ... and components and split in one driver pass, as the Spark engine runs them under the bound.
    cfg = CannotLink(one_row_per_person=["registry"], max_component_edges=RULES.max_component_edges)
    split, driver_counts = constraints.components(edges_df, records, cfg, method="driver")
    assert dict(tuple(r) for r in split.collect()) == expected and driver_counts == counts
    plain, none = constraints.components(edges_df, records, cfg.model_copy(update={"enabled": False}), method="driver")
    assert dict(tuple(r) for r in plain.collect()) == dict(tuple(r) for r in comps.collect()) and none == constraints.SplitCounts()
    too_small = constraints.Rules(("registry",), NHS, max_component_edges=3)
    with pytest.raises(ComponentTooLargeError):
        constraints.enforce(comps, edges_df, records, too_small)


# --- both engines, end to end ----------------------------------------------------------------


def _settings() -> dict:
    def exact(col: str, m: float, u: float) -> list[dict]:
        return [
            {"sql_condition": f"{col}_l IS NULL OR {col}_r IS NULL", "label_for_charts": "null", "is_null_level": True},
            {"sql_condition": f"{col}_l = {col}_r", "label_for_charts": "exact", "m_probability": m, "u_probability": u},
            {"sql_condition": "ELSE", "label_for_charts": "other", "m_probability": 1 - m, "u_probability": 1 - u},
        ]

    return {
        "link_type": "dedupe_only",
        "unique_id_column_name": C.UNIQUE_ID,
        "probability_two_random_records_match": 0.002,
        "comparisons": [
            {"output_column_name": "nhs", "comparison_levels": exact(NHS, 0.98, 0.0001)},
            {"output_column_name": "family_name", "comparison_levels": exact("tk_family_name", 0.95, 0.02)},
            {"output_column_name": "dob", "comparison_levels": exact("tk_dob", 0.97, 0.001)},
            {"output_column_name": "postcode", "comparison_levels": exact("tk_postcode", 0.8, 0.01)},
        ],
        "blocking_rules_to_generate_predictions": ["l.tk_family_name = r.tk_family_name"],
        "retain_matching_columns": False,
        "retain_intermediate_calculation_columns": False,
        "additional_columns_to_retain": [],
    }


def _w(m: float, u: float) -> float:
    return math.log2(m / u)


# Match weights (prior log2(0.002/0.998) = -8.96): surname, dob and postcode agree: +12.8;
# surname and dob agree, postcode differs: +4.2 (a link at probability 0.5); the same with two
# different NHS tokens: -1.4 (no link).
PRIOR = math.log2(0.002 / 0.998)
STRONG = PRIOR + _w(0.95, 0.02) + _w(0.97, 0.001) + _w(0.8, 0.01)
WEAK = PRIOR + _w(0.95, 0.02) + _w(0.97, 0.001) + _w(0.2, 0.99)
CROSS_NHS = WEAK + _w(0.02, 0.9999)
assert STRONG > WEAK > 0 > CROSS_NHS

# Two lookalikes (same surname and date of birth, different postcodes): x1 (NHS N1) = x2, y1 = y2
# (NHS N2). Edges: x1-x2 and y1-y2 strong; x1-y1, x2-y1, x2-y2 weak; x1-y2 none (tokens differ).
# Chained: one cluster of 4. Guarded: the strong edges join, every weak one would join N1 with N2.
# A death registration r1 = hospital record h1, and a second registration r2 like them but for the
# postcode: r1-h1 strong, h1-r2 and r1-r2 weak -> {r1, h1}, {r2}. A clean trio c1 = c2 = c3 stays one.
ROWS = [
    ("gp", "x1", "nhs-1", "fam-a", "dob-a", "pc-1"),
    ("hes", "x2", None, "fam-a", "dob-a", "pc-1"),
    ("hes", "y1", None, "fam-a", "dob-a", "pc-2"),
    ("gp", "y2", "nhs-2", "fam-a", "dob-a", "pc-2"),
    ("registry", "r1", None, "fam-b", "dob-b", "pc-3"),
    ("hes", "h1", None, "fam-b", "dob-b", "pc-3"),
    ("registry", "r2", None, "fam-b", "dob-b", "pc-4"),
    ("gp", "c1", "nhs-3", "fam-c", "dob-c", "pc-5"),
    ("hes", "c2", "nhs-3", "fam-c", "dob-c", "pc-5"),
    ("registry", "c3", None, "fam-c", "dob-c", "pc-5"),
    ("gp", "s1", "nhs-4", "fam-d", "dob-d", "pc-6"),
]
GUARDED = {frozenset({"x1", "x2"}), frozenset({"y1", "y2"}), frozenset({"r1", "h1"}), frozenset({"r2"}), frozenset({"c1", "c2", "c3"}), frozenset({"s1"})}
CHAINED = {frozenset({"x1", "x2", "y1", "y2"}), frozenset({"r1", "h1", "r2"}), frozenset({"c1", "c2", "c3"}), frozenset({"s1"})}


def _tokens(spark, rows=ROWS):
    schema = f"{C.DATASET} string, {C.RECORD_ID} string, {NHS} string, tk_family_name string, tk_dob string, tk_postcode string"
    return reader.with_unique_id(spark.createDataFrame(rows, schema).withColumn(C.REGION, F.lit("R1")))


def _link(spark, engine: str, cannot_link: dict, rows=ROWS):
    cfg = LinkConfig(threshold_match_probability=0.5, engine=engine, cannot_link=cannot_link)
    with Scratch(spark) as scratch:
        result = link.link(_tokens(spark, rows), _settings(), cfg, scratch, n_records=len(rows))
        got = result.clusters.select(C.RECORD_ID, link.CLUSTER_NODE).collect()
        edges = {tuple(sorted(r)): w for *r, w in result.edges.select("unique_id_l", "unique_id_r", "match_weight").collect()}
    clusters: dict[int, set] = {}
    for rid, node in got:
        clusters.setdefault(node, set()).add(rid)
    return {frozenset(v) for v in clusters.values()}, result, edges


@pytest.mark.parametrize("engine", ["spark", "in_process"])
def test_both_engines_cut_a_constructed_chain_into_the_expected_persons(spark, engine):
    guard = {"one_row_per_person": ["registry"]}
    persons, result, edges = _link(spark, engine, guard)
    assert result.engine == engine
    # The edges are as worked out above: 5 strong, c1-c2 strong with agreeing NHS tokens, 5 weak,
    # none across NHS tokens.
    expected = [STRONG] * 5 + [STRONG + _w(0.98, 0.0001)] + [WEAK] * 5
    assert sorted(round(w, 6) for w in edges.values()) == sorted(round(w, 6) for w in expected)
    assert persons == GUARDED
    assert result.cannot_link == {"components_split": 2, "edges_dropped": 5, "records_in_split_components": 7, "persons_added": 2}
    # Switched off: today's connected components, the chain and all.
    chained, off, _ = _link(spark, engine, {"enabled": False})
    assert chained == CHAINED and off.cannot_link == constraints.SplitCounts().as_dict()
    # Shuffled rows (other node ids for nobody: ids follow unique-id order) give the same persons.
    again, _, _ = _link(spark, engine, guard, rows=random.Random(2).sample(ROWS, len(ROWS)))
    assert again == persons


# The unguarded variant only shows the chain the guard prevents: slow (it repeats the Spark work).
@pytest.mark.parametrize("guard", [True, pytest.param(False, marks=pytest.mark.slow)], ids=["guarded", "chained"])
def test_the_incremental_rerun_splits_what_a_delivery_chains(spark, tmp_path, guard):
    """Run 1 (hand-made, as a guarded full run gives it) lacks y1 and y2; the delivery brings them.
    Their edges touch person x, so x is re-clustered with them: guarded, y1-y2 stay apart from
    x1-x2 (3 weak edges dropped); unguarded, the four chain into one person, as before."""
    import json

    from natlink.linkage import blocking, incremental, scoring
    from natlink.store import delta

    def hashed(df):
        return df.withColumn(C.RECORD_HASH, F.xxhash64(*[F.col(c) for c in sorted(df.columns) if c.startswith("tk_")]))

    settings = _settings()
    model, rules = scoring.compile_model(settings), blocking.rules_from_settings(settings)
    cfg = LinkConfig(threshold_match_probability=0.5, engine="spark", cannot_link={"one_row_per_person": ["registry"], "enabled": guard})
    first = [r for r in ROWS if r[1] not in ("y1", "y2")]
    people = {"x1": "P-x", "x2": "P-x", "r1": "P-r", "h1": "P-r", "r2": "P-r2", "c1": "P-c", "c2": "P-c", "c3": "P-c", "s1": "P-s"}
    tables = tmp_path / "tables"
    with Scratch(spark) as scratch:
        v1 = hashed(_tokens(spark, first))
        first_cfg = cfg.model_copy(update={"engine": "in_process", "cannot_link": CannotLink(one_row_per_person=["registry"])})
        edges = link.link(v1, settings, first_cfg, scratch, n_records=len(first)).edges
        clusters = v1.withColumn(C.PERSON_ID, F.create_map(*[F.lit(x) for kv in people.items() for x in kv])[F.col(C.RECORD_ID)])
        versions = {
            "clusters": delta.write(clusters.select(C.UNIQUE_ID, C.DATASET, C.RECORD_ID, C.REGION, C.RECORD_HASH, C.PERSON_ID), str(tables / "clusters"), mode="overwrite").version,
            "edges": delta.write(edges.select(*incremental.EDGE_COLUMNS), str(tables / "edges"), mode="overwrite").version,
        }
        records = link.prepare_records(hashed(_tokens(spark)), model, rules, scratch, extra=[C.RECORD_HASH])
        out, _edges, _events, counts = incremental.link_incremental(
            spark, records, model, rules, cfg, tables, {"versions": json.dumps(versions)}, "r2", {}, scratch
        )
        persons: dict[str, set] = {}
        for rid, pid in out.select(C.RECORD_ID, C.PERSON_ID).collect():
            persons.setdefault(pid, set()).add(rid)
    got = {frozenset(v) for v in persons.values()}
    assert counts["records_by_status"] == {"new": 2, "same": 9}
    if guard:
        assert got == GUARDED
        assert counts["cannot_link"] == {"components_split": 1, "edges_dropped": 3, "records_in_split_components": 4, "persons_added": 1}
    else:
        assert got == (GUARDED - {frozenset({"x1", "x2"}), frozenset({"y1", "y2"})}) | {frozenset({"x1", "x2", "y1", "y2"})}
        assert counts["cannot_link"] == constraints.SplitCounts().as_dict()
