"""natlink's own attack suite (benchmarks/attacks), fast: a few thousand persons.

The expectations marked BASELINE describe today's encoding (schema natlink.tokens/2), against
which the attacks succeed. When the hardened encoding of issue 15 lands, flip each BASELINE
assertion to its TARGET (the numbers in the comments): any name field under 2%, a correct unique
combination under 0.1%, no key found. Cross-project joins are already measured on the research
extracts of ``natlink extract`` (random per-project ids, shuffled rows): the joins natlink's
extracts could carry (row position, person order, ids) must stay at chance (TARGET, asserted);
what the projects' shared allow-listed columns give is marked RESIDUAL (by design: the
allow-lists govern it, docs/threat_model.md).

The block-salted encoding (``natlink.tokens.salted``, ``conf/model.yaml``) is the hardened
encoding: the same suite against its tables (every rule slice and block key) must meet the name-field
and re-identification TARGETs where the deterministic tables of the same population do not
(``test_salted_*``; at 100,000 persons: benchmarks/attacks/after.md).
"""

from __future__ import annotations

import hashlib
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import poisson

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from attacks import align, bloom, crossproject, inputs, keyguess, public, score  # noqa: E402
from attacks.prepare import PROJECTS, prepare  # noqa: E402
from attacks.run import Report, attack_table  # noqa: E402

PERSONS = 3000
# A join that carries nothing gets each unit right by a rare, nearly independent event: its number
# of correct joins is close to Poisson with mean chance x units (for person order: the fixed points
# of a random matching, Poisson(1)). "At chance" is asserted as under that Poisson's
# 1-in-a-million upper tail: at most 9 hits where 1 is expected (the rekey extracts joined all).
CHANCE_TAIL = 1e-6


def at_chance(join: crossproject.Join) -> bool:
    return join.hits <= poisson.isf(CHANCE_TAIL, max(join.expected, 1e-9))


# ---------------------------------------------------------------------------------------------
# The pieces, on hand-made data (no Spark)


def test_assignment_prefers_the_candidate_whose_cell_counts_fit():
    # Two tokens, two candidates, two cells. Token 0 is seen 90/10 across cells, token 1 10/90;
    # candidate A is expected 85/15, B 15/85: the only sensible pairing is 0->A, 1->B, even though
    # both tokens have the same total count (so rank alignment alone could not tell them apart).
    counts = np.array([[90.0, 10.0], [10.0, 90.0]])
    expected = np.array([[85.0, 15.0], [15.0, 85.0]])
    assert align.assign(counts, expected).tolist() == [0, 1]
    # A token seen once fits no frequent candidate: it is left unlisted (-1), not forced onto one.
    assert align.assign(np.array([[1.0, 0.0]]), np.array([[400.0, 100.0]])).tolist() == [-1]


def test_bloom_positions_learnt_from_known_names_decode_held_out_noisy_filters():
    # Filters made here with random bigram -> position maps (10 positions per bigram in 1024 bits,
    # as today), for the 300 most common published family names. The attacker learns the map
    # from the clean filters of the first 250 names only, then decodes the other 50 from filters
    # with 8 random positions flipped, against a dictionary of all 300. A held-out name is
    # decodable when all its bigrams occur in the training names; those must come out right.
    from scipy import sparse

    names = [r["name"] for r in public.read_table("family_names.csv")][:300]
    rng = np.random.default_rng(7)
    grams = sorted({b for n in names for b in bloom.bigrams(n)})
    positions = {b: rng.choice(1024, size=10, replace=False) for b in grams}

    def filt(name, flips=0):
        out = np.zeros(1024, dtype=np.float32)
        for b in bloom.bigrams(name):
            out[positions[b]] = 1
        flip = rng.choice(1024, size=flips, replace=False)
        out[flip] = 1 - out[flip]
        return out

    train, held_out = names[:250], names[250:]
    learnt = bloom.learn(train, sparse.csr_matrix(np.array([filt(n) for n in train])))
    seen = {b for n in train for b in bloom.bigrams(n)}
    decodable = [n for n in held_out if set(bloom.bigrams(n)) <= seen]
    assert len(decodable) >= 20  # 24 of the 50 with this seed: the rest have a bigram never seen
    observed = sparse.csr_matrix(np.array([filt(n, flips=8) for n in decodable]))
    best, dice = bloom.best_match(observed, bloom.predicted(names, learnt, 1024))
    decoded = [names[i] for i in best]
    assert np.mean([d == n for d, n in zip(decoded, decodable)]) >= 0.9


def test_filters_without_an_exact_token_are_aligned_as_tokens_then_decoded():
    # A future encoding with Bloom filters only (no exact token, no noise): 4000 records of 60
    # published family names drawn by their published weights, plus 40 records of 40 rare
    # names (each once). The suite must align the filters by frequency, as tokens, and keep that
    # where its Bloom decode is not sure. Counts alone (no initial or phonetic tokens to nest in)
    # place the names whose counts stand apart: all records of SMITH, JONES and WILLIAMS, and a
    # third of all records (0.37 with this seed), against 0.02 for a random pick among the 60.
    rows = public.read_table("family_names.csv")[:60]
    names = [r["name"] for r in rows]
    weights = np.array([float(r["weight"]) for r in rows])
    rng = np.random.default_rng(3)
    rare = [r["name"] for r in public.read_table("family_names.csv")[200:240]]
    drawn = list(rng.choice(names, size=4000, p=weights / weights.sum())) + rare
    grams = sorted({b for n in names + rare for b in bloom.bigrams(n)})
    positions = {b: rng.choice(1024, size=10, replace=False) for b in grams}
    filt = {n: sorted({int(p) for b in bloom.bigrams(n) for p in positions[b]}) for n in set(drawn)}
    table = inputs.from_rows(
        "future", {"columns": {"blooms": {"bf_family_name": {"bits": 1024}}}},
        pd.DataFrame({"record_id": [f"r{i}" for i in range(len(drawn))], "bf_family_name": [filt[n] for n in drawn]}),
    )
    listed = pd.DataFrame({"family_name": names + rare, "w": np.r_[weights / weights.sum() * 0.99, np.full(40, 0.01 / 40)]})
    blocks = [public.Block("family", listed)]
    mapping = align.map_columns(table, blocks)
    assert mapping == {"bf_family_name": "family_name"}
    (result,) = bloom.bloom_attack(table, align.Decoded(), blocks, mapping)
    assert result.exact_column is None
    decoded = pd.Series(result.values)
    truth = pd.Series(drawn)
    top = truth.isin(["SMITH", "JONES", "WILLIAMS"])
    assert (decoded[top] == truth[top]).all()
    assert (decoded == truth).mean() > 0.3


def test_join_share_counts_ties_as_a_uniform_pick():
    # Labels of A and B; A0's partner is B1 (label 7, unique in B): 1. A1's partner B0 has label 5,
    # shared with B2: 1/2. A2's partner B2 has label 5 but A2 has label 9: 0. Total 1.5 / 3.
    a, b = np.array([7, 5, 9], dtype=np.uint64), np.array([5, 7, 5], dtype=np.uint64)
    assert crossproject.expected_correct(a, b, np.array([1, 0, 2])) == pytest.approx(0.5)


def _hand_extract(project: str, rows: pd.DataFrame, ids: dict[int, str]) -> inputs.Extract:
    frame = rows.assign(project_person_id=rows["person"].map(ids))[["project_person_id", "age_band", "region", "ltc_codes"]]
    return inputs.Extract(project, {}, {"gp": frame.reset_index(drop=True)})


def _partner(a: inputs.Extract, b: inputs.Extract, a_ids: dict[int, str], b_ids: dict[int, str]) -> np.ndarray:
    person_of = {v: k for k, v in a_ids.items()}
    b_index = {pid: i for i, pid in enumerate(b.persons)}
    return np.array([b_index[b_ids[person_of[pid]]] for pid in a.persons])


def test_extract_joins_find_order_and_values_and_nothing_else():
    # 200 persons with 1-3 gp rows each (1 + p % 3). Persons 0-49 each have a code nobody else
    # has; persons 50-199 all have the same values, so only their row count (1, 2 or 3: 50 persons
    # each) tells them apart. Profile, by hand: 50 unique persons + 150 persons at 1/50 = 53/200.
    # Row counts alone: three groups (67, 67, 66 persons), each person 1/size: 3/200.
    rows = pd.DataFrame(
        [(p, "40-49", "LONDON", f"C{p}" if p < 50 else "X") for p in range(200) for _ in range(1 + p % 3)],
        columns=["person", "age_band", "region", "ltc_codes"],
    )
    # Rekey-like extracts: the same row order in both, per-project ids: order joins everything.
    ids_a, ids_b = ({p: f"{tag}{p}" for p in range(200)} for tag in ("a", "b"))
    a, b = _hand_extract("a", rows, ids_a), _hand_extract("b", rows, ids_b)
    joined = crossproject.cross_project(a, b, _partner(a, b, ids_a, ids_b))
    assert joined["row position"].share == 1.0 and joined["person order"].share == 1.0
    assert joined["person id"].share == 0.0
    assert joined["profile"].share == pytest.approx(53 / 200) and joined["row counts"].share == pytest.approx(3 / 200)
    # Extract-like: rows shuffled independently, fresh random ids. Order and ids join at chance;
    # what the values give is unchanged (a multiset has no order).
    rng = np.random.default_rng(11)
    ids_a, ids_b = ({p: str(uuid.UUID(bytes=rng.bytes(16), version=4)) for p in range(200)} for _ in range(2))
    a = _hand_extract("a", rows.iloc[rng.permutation(len(rows))], ids_a)
    b = _hand_extract("b", rows.iloc[rng.permutation(len(rows))], ids_b)
    joined = crossproject.cross_project(a, b, _partner(a, b, ids_a, ids_b))
    assert at_chance(joined["row position"]) and at_chance(joined["person order"])
    assert joined["person order"].chance == pytest.approx(1 / 200)
    assert joined["person id"].share == 0.0
    assert joined["profile"].share == pytest.approx(53 / 200) and joined["row counts"].share == pytest.approx(3 / 200)
    assert joined["profile"].share >= joined["shared values, one row"].share
    # Restricted to fewer columns: only the row counts tell persons apart without the codes.
    only = {cols: crossproject.profile_by_columns(a, b, _partner(a, b, ids_a, ids_b), list(cols)).share
            for cols in [(), ("age_band", "region"), ("ltc_codes",)]}
    assert only == {(): pytest.approx(3 / 200), ("age_band", "region"): pytest.approx(3 / 200), ("ltc_codes",): pytest.approx(53 / 200)}


def test_class_assignment_has_the_optimum_of_the_hungarian_assignment_of_every_token():
    # Salted tables have ~one token per record per column, so groups are solved by count classes
    # (align._assign_classes). On random problems with many equal tokens, the classes' linear
    # programme must reach the same total cost as the Hungarian assignment of the tokens, give a
    # class at most as many values as it has tokens, and each value to one token at most.
    rng = np.random.default_rng(0)
    for _ in range(25):
        n_tok, n_val, n_cells = int(rng.integers(5, 80)), int(rng.integers(3, 40)), int(rng.integers(1, 3))
        counts = rng.integers(0, 3, size=(n_tok, n_cells)).astype(float)
        cost = align._poisson(counts, rng.gamma(1, 2, size=(n_val, n_cells)))
        unlisted = align._poisson(counts, np.full((1, n_cells), 0.05))[:, 0]
        chosen = align._assign_cost(cost, unlisted)
        hungarian = sum(cost[i, j] if j >= 0 else unlisted[i] for i, j in enumerate(chosen))
        first, _, size = align._classes([counts], n_tok)
        taken = align._assign_classes(cost[first], unlisted[first], size)
        by_class = unlisted.sum() + sum(cost[first][c, v] - unlisted[first][c] for c in range(len(size)) for v in taken[c])
        assert by_class == pytest.approx(hungarian)
        assert all(len(t) <= k for t, k in zip(taken, size))
        values = np.concatenate(taken)
        assert len(values) == len(set(values.tolist()))


def test_top_pairs_of_two_independent_features_are_the_cross_products_top_without_building_it():
    # A (surname, date of birth) block key's public distribution has ~300M values: the attacker keeps
    # the most probable ones (public.top_product). On random distributions with ties, its masses are
    # exactly the top k of the full cross product, each pair's mass the product of its two.
    rng = np.random.default_rng(7)
    for na, nb, k in [(50, 70, 100), (7, 3, 1000), (300, 200, 5000), (40, 40, 1599), (1, 1, 5)]:
        pa = pd.DataFrame({"a": [f"a{i}" for i in range(na)], "w": rng.dirichlet(np.ones(na))})
        pb = pd.DataFrame({"b": [f"b{i}" for i in range(nb)], "w": np.repeat(rng.dirichlet(np.ones((nb + 1) // 2)), 2)[:nb]})
        full = pa.merge(pb.rename(columns={"w": "wb"}), how="cross")
        full["w"] = full["w"] * full["wb"]
        top = public.top_product(pa, pb, "a", "b", k)
        assert len(top) == min(k, na * nb)
        assert np.sort(top["w"].to_numpy()) == pytest.approx(np.sort(full["w"].nlargest(k).to_numpy()))
        joined = top.merge(full, on=["a", "b"], suffixes=("", "_full"))
        assert len(joined) == len(top) and joined["w"].to_numpy() == pytest.approx(joined["w_full"].to_numpy())


def test_top_pairs_by_group_are_the_top_of_all_groups_cross_products():
    # P(given name, date) = P(date) P(name | the date's year) is a product within each year: the top k of
    # the groups' cross products together (zero masses never taken), each pair's mass its product.
    rng = np.random.default_rng(11)
    for sizes, k in [([(30, 20), (5, 40), (1, 1)], 200), ([(3, 2), (2, 2)], 100), ([(50, 60), (40, 70)], 1000)]:
        groups = [(-np.sort(-rng.dirichlet(np.ones(na))), -np.sort(-np.r_[rng.dirichlet(np.ones(nb)), 0.0])) for na, nb in sizes]
        full = np.concatenate([np.outer(wa, wb[wb > 0]).ravel() for wa, wb in groups])
        g, ia, ib = public.top_pairs_grouped(groups, k)
        w = np.array([groups[x][0][i] * groups[x][1][j] for x, i, j in zip(g, ia, ib)])
        assert len(w) == min(k, len(full)) and (w > 0).all() and (np.diff(w) <= 0).all()
        assert w == pytest.approx(np.sort(full)[::-1][:k])
        assert len(set(zip(g.tolist(), ia.tolist(), ib.tolist()))) == len(w)


def test_the_shipped_rules_block_sizes_name_under_2_percent_of_names_where_surname_year_blocks_do_not():
    # A salted block key hides its value but not its block's size. For every prediction rule of
    # conf/model.yaml on a name field and a date, the centre ranks the blocks of 100,000 persons
    # (drawn from its own public tables: exact knowledge) by size and names them after the most
    # probable public (name, date) pairs (benchmarks/bench_block_sizes.py). The shipped rules must
    # name under 2% of records' surnames or given names (an initial alone names no one: measured,
    # not bounded); the rule shipped before, [family_name, dob_year], named 4.2% here (3.8% in the
    # attack suite), and must still be caught by this test.
    import bench_block_sizes as sizes

    from natlink import config as cfgmod
    from natlink.config import ModelConfig

    rules = cfgmod.load(ROOT / "conf" / "model.yaml", ModelConfig).blocking_rules_for_prediction
    rules = [tuple(c.removeprefix("tk_") for c in r) for r in rules]
    name_rules = [r for r in rules if any(f in sizes.NAMED for f in r) and any(f.startswith("dob") for f in r)]
    assert any("family_name" in r for r in name_rules), "conf/model.yaml has no rule on the family name: update this test"
    for rule in name_rules:
        assert rule in sizes.RULES, f"measure the rule {list(rule)} in bench_block_sizes"
        if "given_initial" not in rule:
            assert sizes.block_size_attack(100_000, rule)["named by block size"] < 0.02, rule
    assert sizes.block_size_attack(100_000, ("family_name", "dob_year"))["named by block size"] > 0.02


def test_block_sizes_name_a_given_name_after_the_public_pairs_of_its_birth_year():
    # Given names depend on the birth year: the attack ranks blocks against P(date) P(name | year), not a
    # product of marginals. Names A=0, B=1; dates d0, d1 in year 0 (P 0.3 each), d2 in year 1 (P 0.4);
    # P(A | year 0) = 0.9, P(B | year 1) = 0.8. Public pairs, most probable first: (B,d2) .32, (A,d0) .27,
    # (A,d1) .27, (A,d2) .08, (B,d0) .03, (B,d1) .03: names B A A A B B. Blocks (id name * 3 + date) by
    # size: (B,d2) 5, (A,d0) 4, (A,d2) 3, then (A,d1) 2 and (B,d0) 2 alike, (B,d1) 1 (not ranked).
    # Named: 5 + 4 + 3, and the tie given {A, B} holds {A, B}: 2 records of the 4 in expectation: 14/17.
    import bench_block_sizes as sizes

    ids = np.array([1 * 3 + 2, 0 * 3 + 0, 0 * 3 + 2, 0 * 3 + 1, 1 * 3 + 0, 1 * 3 + 1])
    counts = np.array([5, 4, 3, 2, 2, 1])
    w_value, value_year = np.array([0.3, 0.3, 0.4]), np.array([0, 0, 1])
    by_year = np.array([[0.9, 0.1], [0.2, 0.8]])
    got = sizes.attack(ids, counts, w_value, by_year, value_year)
    assert got == {"blocks": 6, "largest block": 5, "records in blocks of 2+": 16 / 17,
                   "named by block size": pytest.approx(14 / 17)}
    # The same share however the centre lists the keys (equal blocks are not told apart by their order)
    perm = np.array([3, 5, 0, 4, 2, 1])
    assert sizes.attack(ids[perm], counts[perm], w_value, by_year, value_year) == got
    # Ignoring the year (the marginal P(A) = 0.62 for every date): pairs (A,d2) .248, (A,d0), (A,d1) .186,
    # (B,d2) .152, (B,d0), (B,d1) .114: names A A A B B. (B,d2) is named A; 4 + 3, and the tie given
    # {B, B} holds {A, B}: 2 of 4 records: 9/17.
    marginal = np.array([[0.62, 0.38]])
    assert sizes.attack(ids, counts, w_value, marginal, np.zeros(3, dtype=int))["named by block size"] == pytest.approx(9 / 17)


def test_salted_tokens_and_block_keys_are_discovered_as_token_columns():
    # A salted field token is 16 hex digits, a block key 32: both are attacked even where the
    # manifest does not list them; a record id is never a token.
    rows = pd.DataFrame({"record_id": ["0123456789abcdef0123"] * 3, "tk_given_name__r1": ["0123456789abcdef"] * 3,
                         "tk_block__r1": ["0123456789abcdef" * 2] * 3, "age_band": ["40-49"] * 3})
    table = inputs.from_rows("t", {"columns": {}}, rows)
    assert table.tokens == ["tk_given_name__r1", "tk_block__r1"] and table.plain == ["age_band"]


def test_a_salted_field_is_recovered_by_any_slice_and_a_block_key_gives_both_its_fields():
    d = align.Decoded(
        {"tk_block__r2": "family_name+dob_year", "tk_given_name__r0": "given_name", "tk_given_name__r1": "given_name"},
        {"tk_block__r2": np.array(["SMITH|1980", None, public.REST], dtype=object),
         "tk_given_name__r0": np.array(["ANN", "EVE", None], dtype=object),
         "tk_given_name__r1": np.array([None, "ANN", "BOB"], dtype=object)},
    )
    truth = pd.DataFrame({q: [None] * 3 for q in score.QUASI_IDENTIFIERS})
    truth["given_name"], truth["family_name"], truth["year_of_birth"] = ["X", "ANN", "BOB"], ["SMITH", "A", None], ["1980", "1", None]
    ok = score.recovered(d, truth)
    assert ok["given_name"].tolist() == [False, True, True]  # row 1: the r0 slice is wrong, r1 right
    assert ok["family_name"].tolist() == [True, False, False] and ok["year_of_birth"].tolist() == [True, False, False]


def test_key_dictionary_turns_a_short_text_into_32_byte_keys():
    keys = list(keyguess.as_keys(b"letmein"))
    assert b"letmein".ljust(32, b"\x00") in keys and hashlib.sha256(b"letmein").digest() in keys
    assert all(len(k) == 32 for k in keys)


# ---------------------------------------------------------------------------------------------
# The suite against today's encoding


@pytest.fixture(scope="module")
def prepared(spark, tmp_path_factory):
    return prepare(spark, tmp_path_factory.mktemp("attacks") / f"p{PERSONS}", PERSONS)


@pytest.fixture(scope="module")
def report(spark, prepared):
    table = inputs.load(spark, prepared.manifest)
    rep = Report(PERSONS, records=len(table))
    attack_table(spark, table, prepared.root, rep)
    return rep


@pytest.mark.slow  # builds and tokenises 3,000 persons (~8 min under load): make test-slow
def test_columns_are_discovered_from_the_manifest_and_schema(spark, prepared, report):
    # Every identifier-derived token maps to a public feature except the NHS number and the full
    # postcode (no public distribution); plaintext region and age band map too.
    assert report.mapping["tk_given_name"] == "given_name"
    assert report.mapping["tk_family_soundex"] == "family_soundex"
    assert report.mapping["age_band"] == "age_band" and report.mapping["region"] == "region"
    assert "tk_nhs_number" not in report.mapping
    assert any("bf_family_name: grouped by tk_family_name" in n for n in report.bloom_notes)


@pytest.mark.slow
def test_baseline_frequency_alignment_recovers_fields(report):
    # BASELINE (today's deterministic tokens). TARGET: each name field < 0.02.
    assert report.frequency["recovered:given_name"] > 0.5
    assert report.frequency["recovered:sex"] > 0.9
    # BASELINE. TARGET: reidentified:any < 0.001.
    assert report.frequency["reidentified:name+band+region"] > 0.05


@pytest.mark.slow
def test_baseline_bloom_decode_adds_to_frequency_alignment(report):
    # BASELINE: grouping by the exact token cancels the filters' per-record noise. TARGET: < 0.02.
    assert report.with_bloom["recovered:given_name"] > report.frequency["recovered:given_name"]
    assert report.with_bloom["recovered:given_name"] > 0.8


@pytest.mark.slow
def test_two_natlink_extracts_join_at_chance_by_position_order_and_id(spark, prepared):
    # Two projects' extracts of one link run (gp + hes), made by natlink extract.
    a, b = (inputs.load_extract(spark, prepared.extract(p)) for p in PROJECTS)
    partner = score.partner_persons(spark, prepared.tables, a, b)
    assert (partner >= 0).all() and len(a.persons) == len(b.persons)  # both projects get every person
    joined = crossproject.cross_project(a, b, partner)
    # TARGET, met: what natlink's extracts could carry joins no better than chance (CHANCE_TAIL).
    # The rekey extracts joined 100% by row position (benchmarks/attacks/baseline.md).
    for method in ("row position", "person order"):
        assert at_chance(joined[method]), (method, joined[method])
    assert joined["person id"].share == 0.0
    assert joined["person order"].chance == pytest.approx(1 / len(b.persons))
    # RESIDUAL (by design): the columns both projects were allowed (age band, region, conditions,
    # diagnoses) and each person's number of rows join well above chance; the profile is the best
    # any combination of shared values can do, and it holds the row counts and each row's values.
    assert not at_chance(joined["profile"]) and not at_chance(joined["row counts"])
    assert joined["profile"].share >= joined["row counts"].share


@pytest.mark.slow
def test_baseline_key_from_a_text_key_fingerprint_and_not_a_random_one(prepared):
    import json

    manifest = json.loads(prepared.manifest.read_text())
    pool = list(keyguess.candidates())
    # BASELINE: the benchmark key is a text key that appears in this repository. TARGET: not found.
    assert keyguess.guess(manifest["key_fingerprint"], "manifest", pool).found
    random_key = keyguess.fingerprint(np.random.default_rng(1).bytes(32))
    miss = keyguess.guess(random_key, "random", pool)
    assert not miss.found and miss.tried == len(pool)


# ---------------------------------------------------------------------------------------------
# The suite against the block-salted encoding (the TARGETs), beside the deterministic one


@pytest.fixture(scope="module")
def salted_report(spark, tmp_path_factory):
    prepared = prepare(spark, tmp_path_factory.mktemp("attacks_salted") / f"p{PERSONS}", PERSONS, encoding="salted")
    table = inputs.load(spark, prepared.manifest)
    rep = Report(PERSONS, "salted", records=len(table))
    attack_table(spark, table, prepared.root, rep)
    return rep


@pytest.mark.slow  # tokenises, trains and links 3,000 persons again with conf/model.yaml
def test_salted_every_slice_and_block_key_is_attacked(salted_report):
    # Each rule's slice of a compared field maps to that field; the (family name, date of birth) and
    # (date of birth, given name) block keys to the joint distribution of their rule's fields.
    assert salted_report.mapping["tk_given_name__r1"] == "given_name"
    assert salted_report.mapping["tk_family_name__r3"] == "family_name"
    assert salted_report.mapping["tk_block__r2"] == "family_name+dob"
    assert salted_report.mapping["tk_block__r1"] == "dob+given_name"


@pytest.mark.slow
def test_salted_tokens_meet_the_targets_where_deterministic_ones_do_not(report, salted_report):
    # TARGET (issue 15), met by the salted encoding at the same size: each name field < 2%, a
    # correct unique combination < 0.1%; the deterministic tables of the same population give most
    # given names and re-identify far more (the BASELINE assertions above). At 100,000 persons
    # (benchmarks/attacks/after.md): given names 0.0%, family names 0.002%, re-identified 0.0%.
    # (With the rule [family_name, dob_year], shipped before, the (surname, year) block sizes named
    # the commonest surnames: 3.8% of family names.)
    assert report.frequency["recovered:given_name"] > 0.5
    assert salted_report.frequency["recovered:given_name"] < 0.02
    assert salted_report.frequency["recovered:family_name"] < 0.02
    assert salted_report.frequency["reidentified:any"] < 0.001
    assert report.frequency["reidentified:any"] > 0.05
