"""`natlink report`: the HTML report of a link run, end to end on a small synthetic population.

Two link runs: r1 (gp + hes as generated, plus planted bad gp rows with known quarantine reasons)
and r2 (a second hes delivery with a canary person and a brand-new person, linked
incrementally). The report's numbers are checked against the raw files, the manifests and the
Delta tables read independently; the page is checked for network references and plaintext;
then headless Chromium renders it (console errors, charts drawn, a screenshot).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from natlink import columns as C
from natlink import config as cfgmod
from natlink.store import delta
from natlink.outputs import evaluate
from natlink.tokens import keys
from natlink.linkage import run as linkrun
from natlink.linkage import model_store
from natlink.linkage import train
from natlink.outputs import report
from natlink.synth import generate as synth
from natlink.config import DatasetConfig, LinkConfig, ModelConfig, project_root
from natlink.commands import tokenise_delivery

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

# Obviously fake key, for tests only.
FAKE_KEY_HEX = b"test-key-not-secret-report-00000".hex()
PERSONS, SEED = 800, 29
LINK = LinkConfig(threshold_match_probability=0.9)

# Canary plaintext: distinctive values that must never reach the report.
CANARY = {"given": "Quorbindella", "family": "Xanthopulosk", "dob": "1950-03-04", "postcode": "ZE2 9QQ", "nhs": "9990041239"}
NEW_PERSON = {"given": "Zephyrinea", "family": "Quillbottomly", "dob": "1972-11-30", "postcode": "KW1 4QT"}

# Planted gp rows and what onboarding must make of them (derived by hand from natlink.store.quarantine):
GP_PLANTED = [
    {"patient_ref": "", "forename": "Ann", "surname": "Blogsworth", "birth_date": "1961-01-01", "gender": "F", "postcode": "LS1 4AB"},  # missing_record_id
    {"patient_ref": "GPRPTDUP01", "forename": "Ann", "surname": "Blogsworth", "birth_date": "1961-01-01", "gender": "F", "postcode": "LS1 4AB"},  # duplicate_record_id
    {"patient_ref": "GPRPTDUP01", "forename": "Ann", "surname": "Blogsworth", "birth_date": "1961-01-02", "gender": "F", "postcode": "LS1 4AB"},  # duplicate_record_id
    {"patient_ref": "GPRPTSAME1", "nhs_no": CANARY["nhs"], "forename": CANARY["given"], "surname": CANARY["family"], "birth_date": CANARY["dob"], "gender": "F", "postcode": CANARY["postcode"]},
    {"patient_ref": "GPRPTSAME1", "nhs_no": CANARY["nhs"], "forename": CANARY["given"], "surname": CANARY["family"], "birth_date": CANARY["dob"], "gender": "F", "postcode": CANARY["postcode"]},  # exact copy: collapsed
    {"patient_ref": "GPRPTNOID1"},  # no_usable_identifier
]
GP_MALFORMED = "GPRPTMAL01,1,2,3,4,5,6,7,8,9,10,11"  # malformed_row: too many fields
GP_EXPECTED_ONBOARDING = {"missing_record_id": 1, "duplicate_record_id": 2, "no_usable_identifier": 1, "malformed_row": 1}
GP_EXPECTED_COLLAPSED = 1
# Second hes delivery: the canary in hospital, a brand-new person with two episodes, one bad row.
HES_PLANTED = [
    {"EPIKEY": "HERPTCAN01", "NHS_NUMBER": CANARY["nhs"], "GIVEN_NAME": CANARY["given"].upper(), "FAMILY_NAME": CANARY["family"].upper(), "DOB": "04/03/1950", "SEX": "2", "POSTCODE": CANARY["postcode"], "ADMIDATE": "2024-02-02"},
    {"EPIKEY": "HERPTNEW01", "GIVEN_NAME": NEW_PERSON["given"].upper(), "FAMILY_NAME": NEW_PERSON["family"].upper(), "DOB": "30/11/1972", "SEX": "1", "POSTCODE": NEW_PERSON["postcode"], "ADMIDATE": "2024-03-03"},
    {"EPIKEY": "HERPTNEW02", "GIVEN_NAME": NEW_PERSON["given"].upper(), "FAMILY_NAME": NEW_PERSON["family"].upper(), "DOB": "30/11/1972", "SEX": "1", "POSTCODE": NEW_PERSON["postcode"], "ADMIDATE": "2024-05-05"},
    {"EPIKEY": "", "GIVEN_NAME": "JOAN", "FAMILY_NAME": "PLANTEDROW", "DOB": "01/01/1960", "SEX": "2", "POSTCODE": "LS1 4AB", "ADMIDATE": "2024-01-01"},  # missing_record_id
]


def plant(folder: Path, name: str, rows: list[dict], raw_lines: list[str] = ()) -> None:
    """One more CSV file in a delivery folder, under the generator's header (unset columns empty)."""
    generated = sorted(folder.glob("part-*.csv"))[0]
    columns = generated.read_text(encoding="utf-8").splitlines()[0].split(",")
    lines = [",".join(columns)] + [",".join(r.get(c, "") for c in columns) for r in rows] + list(raw_lines)
    (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def data_rows(folder: Path) -> int:
    """Rows delivered: data lines of every CSV file in the folder (one header line per file)."""
    return sum(len(p.read_text(encoding="utf-8").splitlines()) - 1 for p in folder.glob("*.csv"))


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory):
    os.environ["NATLINK_TEST_KEY"] = FAKE_KEY_HEX
    key = keys.resolve("env:NATLINK_TEST_KEY")
    base = tmp_path_factory.mktemp("report")
    root = project_root()
    generated = synth.generate(spark, base, persons=PERSONS, seed=SEED, datasets=["gp", "hes"])
    plant(base / "raw" / "gp", "planted.csv", GP_PLANTED, [GP_MALFORMED])
    ds = {n: cfgmod.load(root / "conf" / "datasets" / f"{n}.yaml", DatasetConfig) for n in ("gp", "hes")}
    delivered = {"r1": {n: data_rows(base / "raw" / n) for n in ds}}
    m1 = {n: tokenise_delivery(spark, ds[n], key, data_dir=str(base), out=base, run_id="r1") for n in ds}
    model_cfg = cfgmod.load(root / "conf" / "model_deterministic.yaml", ModelConfig)
    model_path = train.train_job(spark, manifests=list(m1.values()), cfg=model_cfg, out_path=base / "models" / "m.json")
    tables = base / "tables"
    runs = {"r1": linkrun.run(spark, manifests=list(m1.values()), model_path=model_path, link_cfg=LINK, tables=tables, run_id="r1")}

    plant(base / "raw" / "hes", "delivery2.csv", HES_PLANTED)
    delivered["r2"] = {**delivered["r1"], "hes": data_rows(base / "raw" / "hes")}
    m2 = {"gp": m1["gp"], "hes": tokenise_delivery(spark, ds["hes"], key, data_dir=str(base), out=base, run_id="r2")}
    runs["r2"] = linkrun.run(spark, manifests=list(m2.values()), model_path=model_path, link_cfg=LINK, tables=tables, run_id="r2")

    out = base / "reports"
    # Exact counts (min_cell_count=1) for the tests that reconcile every number with the tables; a
    # data owner's report (the default) withholds counts below 10: test_small_counts_are_withheld.
    html2 = report.write_report(spark, tables=tables, run_id="r2", truth=generated.truth, out=out / "r2.html", min_cell_count=1)
    html1 = report.write_report(spark, tables=tables, run_id="r1", out=out / "r1.html", min_cell_count=1)
    shared = report.write_report(spark, tables=tables, run_id="r2", out=out / "r2-shared.html")
    return {
        "base": base, "tables": tables, "model": model_path, "truth": generated.truth, "runs": runs,
        "manifests": {"r1": m1, "r2": m2}, "delivered": delivered, "html": {"r1": html1, "r2": html2, "shared": shared},
    }


# --- reading the page back -------------------------------------------------------------------


class Page(HTMLParser):
    """Sections by id; table rows (data-key) and cells (data-col) as text; every tag's attributes."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.sections: list[str] = []
        self.rows: dict[str, list[tuple[str, dict[str, str]]]] = {}
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.checks: list[dict[str, str]] = []
        self.text: list[str] = []
        self._section = self._key = self._col = None
        self._cells: dict[str, str] = {}
        self._script = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        if tag == "section":
            self._section = a.get("id")
            self.sections.append(self._section)
        elif tag == "tr":
            self._key, self._cells = a.get("data-key"), {}
        elif tag == "td":
            self._col = a.get("data-col")
            if self._col:
                self._cells[self._col] = ""
        elif tag == "li" and "data-check" in a:
            self.checks.append(a)
        elif tag == "script":
            self._script = True

    def handle_endtag(self, tag):
        if tag == "tr" and self._key is not None:
            self.rows.setdefault(self._section, []).append((self._key, self._cells))
            self._key = None
        elif tag == "td":
            self._col = None
        elif tag == "script":
            self._script = False
        elif tag == "section":
            self._section = None

    def handle_data(self, data):
        if self._col:
            self._cells[self._col] += data
        if not self._script:
            self.text.append(data)

    def cells(self, section: str, key: str) -> dict[str, str]:
        found = [c for k, c in self.rows.get(section, []) if k == key]
        assert found, f"no row {key!r} in section {section!r}: {[k for k, _ in self.rows.get(section, [])]}"
        return found[0]

    def number(self, section: str, key: str, col: str) -> float:
        text = self.cells(section, key)[col].replace(",", "")
        return int(text) if re.fullmatch(r"-?\d+", text) else float(text)


def page(world, run: str) -> tuple[str, Page, dict]:
    text = Path(world["html"][run]).read_text(encoding="utf-8")
    data = json.loads(re.search(r'<script type="application/json" id="natlink-report-data">(.*?)</script>', text, re.S).group(1))
    return text, Page(text), data


def without_libraries(text: str) -> str:
    return re.sub(r'<script data-library="[^"]+">.*?</script>', "", text, flags=re.S)


# --- the numbers -----------------------------------------------------------------------------


def test_every_section_is_there(world):
    for run in ("r1", "r2"):
        _text, p, _data = page(world, run)
        assert set(report.SECTIONS) <= set(p.sections), p.sections


def test_inputs_reconcile_with_raw_files_manifests_and_clusters(spark, world):
    _text, p, data = page(world, "r2")
    clusters = delta.read(spark, str(world["tables"] / "clusters"))
    in_clusters = {r[C.DATASET]: r["n"] for r in clusters.groupBy(C.DATASET).agg(F.count(F.lit(1)).alias("n")).collect()}
    for name, manifest in world["manifests"]["r2"].items():
        ob = manifest["onboarding"]
        delivered = world["delivered"]["r2"][name]
        assert p.number("inputs", name, "rows_in") == delivered == ob["rows_in"]
        assert p.number("inputs", name, "rows_linked") == manifest["rows"] == in_clusters[name]
        assert p.number("inputs", name, "records_in_clusters") == in_clusters[name]
        assert p.number("inputs", name, "quarantined_onboarding") == ob["quarantined"]
        assert p.number("inputs", name, "duplicates_collapsed") == ob["duplicates_collapsed"]
        assert p.cells("inputs", name)["reconciled_text"] == "yes"
    # Hand-derived: six planted rows quarantined (1 missing id, 2 duplicate ids, 1 no identifier,
    # 1 malformed) and one exact copy collapsed, on top of whatever the generator made.
    assert p.number("inputs", "gp", "quarantined_onboarding") >= sum(GP_EXPECTED_ONBOARDING.values())
    assert p.number("inputs", "gp", "duplicates_collapsed") >= GP_EXPECTED_COLLAPSED
    assert p.cells("inputs", "all")["reconciled_text"] == "yes"
    assert p.number("inputs", "all", "rows_in") == sum(world["delivered"]["r2"].values())
    assert all(c["class"] == "ok" for c in p.checks) and len(p.checks) == 8
    assert {r["dataset"] for r in data["inputs"] if r["reconciled"]} == {"gp", "hes"}


def test_quarantine_counts_match_the_quarantine_tables(spark, world):
    _text, p, data = page(world, "r2")
    table = delta.read(spark, str(world["tables"] / "quarantine"))
    wanted = ((F.col(C.RUN_ID) == "r1") & (F.col(C.DATASET) == "gp")) | ((F.col(C.RUN_ID) == "r2") & (F.col(C.DATASET) == "hes"))
    counted = table.where(wanted).groupBy(C.DATASET, "stage", C.REASON).agg(F.count(F.lit(1)).alias("n")).collect()
    expected = {(r[C.DATASET], r["stage"], r[C.REASON]): r["n"] for r in counted}
    shown = {(r["dataset"], r["stage"], r["reason"]): r["rows"] for r in data["quarantine"]}
    # One table, both stages, one vocabulary: the page shows exactly what the table holds.
    assert shown == expected
    assert {stage for _ds, stage, _reason in shown} <= {"onboarding", "tokenise"}
    for reason, n in GP_EXPECTED_ONBOARDING.items():
        assert shown[("gp", "onboarding", reason)] >= n
        assert p.number("quarantine", f"gp/onboarding/{reason}", "rows") == shown[("gp", "onboarding", reason)]
    assert shown[("hes", "onboarding", "missing_record_id")] >= 1
    assert all(r["source"] == "table" for r in data["quarantine"])
    # Per stage and reason, the table agrees with each manifest's counts.
    for name, manifest in world["manifests"]["r2"].items():
        for stage in ("onboarding", "tokenise"):
            from_table = {reason: n for (ds, st, reason), n in shown.items() if ds == name and st == stage}
            assert from_table == {reason: n for reason, n in manifest["quarantined"][stage].items() if n}


def test_model_parameters_are_the_model_files(world):
    _text, p, data = page(world, "r2")
    settings, meta = model_store.load(world["model"])
    params = model_store.parameter_table(settings)
    assert len(params) >= 8
    sources = {(r["comparison"], r["level"]): r for r in meta["fit"]["parameters"]}
    for r in params:
        cells = p.cells("model", f"{r['comparison']}/{r['level']}")
        assert float(cells["m"]) == pytest.approx(r["m"], rel=1e-3, abs=1e-4)
        assert float(cells["u"]) == pytest.approx(r["u"], rel=1e-3, abs=1e-4)
        # where each came from, as the sidecar records it
        assert (cells["m_source"], cells["u_source"]) == (sources[(r["comparison"], r["level"])]["m_source"], sources[(r["comparison"], r["level"])]["u_source"])
    assert p.cells("model", "nhs_number/exact tk_nhs_number")["u_source"] == "exact"
    assert p.cells("model", "date_of_birth/day and month swapped")["u_source"] == "sampled"
    assert data["model"]["probability_two_random_records_match"] == settings["probability_two_random_records_match"]
    assert data["model"]["same_as_run"] is True
    # Splink's own match weights chart, one bar per non-null level plus the prior.
    chart = data["model"]["charts"]["match_weights"]
    assert len(chart["data"]["values"]) == len(params) + 1
    assert not any("sql_condition" in v for v in chart["data"]["values"])


def test_scores_clusters_and_id_events_match_the_tables(spark, world):
    _text, p, data = page(world, "r2")
    tables = world["tables"]
    edges = delta.read(spark, str(tables / "edges")).where(F.col(C.RUN_ID) == "r2")
    n_edges = edges.count()
    assert n_edges == world["runs"]["r2"].counts["edges"] > 100
    assert sum(b["count_rows"] for b in data["scores"]["histogram"]) == n_edges
    assert sum(b["edges"] for b in data["scores"]["bands"]) == n_edges
    assert data["scores"]["bands"][0]["low"] == 0.9
    top = edges.where(F.col("match_probability") >= 0.9999).count()
    assert p.number("scores", "p \u2265 0.9999", "edges") == top

    persons = delta.read(spark, str(tables / "clusters")).groupBy(C.PERSON_ID).agg(F.count(F.lit(1)).alias("size"))
    sizes = {r["size"]: r["n"] for r in persons.groupBy("size").agg(F.count(F.lit(1)).alias("n")).collect()}
    assert {r["size"]: r["persons"] for r in data["clusters"]["by_size"]} == sizes
    assert p.number("clusters", "1", "persons") == sizes[1]
    assert data["clusters"]["persons"] == world["runs"]["r2"].counts["persons"]
    assert sum(r["persons"] for r in data["clusters"]["by_datasets"]) == data["clusters"]["persons"]

    events = delta.read(spark, str(tables / "id_events")).where(F.col(C.RUN_ID) == "r2")
    expected = {(r["event"], r[C.REASON]): (r["n"], r["recs"]) for r in events.groupBy("event", C.REASON).agg(F.count(F.lit(1)).alias("n"), F.sum("records").alias("recs")).collect()}
    shown = {(r["event"], r["reason"]): (r["events"], r["records"]) for r in data["id_events"]}
    assert shown == expected
    # The brand-new person of the second delivery (two episodes) got a new id.
    # The canary's hospital episode joined its gp record's person (no event); hand-derived.
    assert [v for (event, _reason), v in shown.items() if event == "new"] == [(1, 2)]
    for (event, reason), (n, _recs) in shown.items():
        assert p.number("id-events", f"{event}/{reason}", "events") == n


def test_small_counts_are_withheld(world):
    """The default report: no count from 1 to 9 anywhere a data owner reads, in the page or its data."""
    text, p, shared = page(world, "shared")
    _t, _p, exact = page(world, "r2")
    small = lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 < v < 10  # noqa: E731
    withheld = 0
    for section, key, fields in (("clusters", "by_size", ("persons",)), ("clusters", "by_datasets", ("persons", "records")),
                                 ("scores", "histogram", ("count_rows",)), ("scores", "bands", ("edges",))):
        for before, after in zip(exact[section][key], shared[section][key]):
            for f in fields:
                assert not small(after[f]), (section, key, f, after)
                if small(before[f]):
                    assert after[f] is None
                    withheld += 1
                else:
                    assert after[f] == before[f]
    for before, after in zip(exact["id_events"], shared["id_events"]):
        assert all(not small(after[f]) for f in ("events", "records", "old_ids"))
    for before, after in zip(exact["quarantine"], shared["quarantine"]):
        assert after["rows"] == (None if small(before["rows"]) else before["rows"])
    # The second delivery's one new person (1 event, 2 records) is exactly the kind of count withheld.
    assert [(e["events"], e["records"]) for e in shared["id_events"] if e["event"] == "new"] == [(None, None)]
    assert withheld > 0 and shared["min_cell_count"] == 10
    assert "Counts from 1 to 9 are withheld" in text
    for row in shared["inputs"]:
        assert all(not small(row[k]) for k in ("rows_in", "quarantined_onboarding", "duplicates_collapsed", "quarantined_tokenise"))
    totals = shared["input_totals"]
    for k in ("quarantined_onboarding", "quarantined_tokenise"):
        cells = [r[k] for r in shared["inputs"]]
        if cells.count(None) == 1:  # one withheld cell: the total would give it away by subtraction
            assert totals[k] is None


def test_accuracy_against_truth_at_several_thresholds(spark, world):
    _text, p, data = page(world, "r2")
    truth = spark.read.parquet(world["truth"])
    clusters = delta.read(spark, str(world["tables"] / "clusters")).join(truth.select(C.DATASET, C.RECORD_ID), on=[C.DATASET, C.RECORD_ID], how="left_semi")
    expected = evaluate.pairwise(clusters, truth)
    assert p.number("accuracy", "pairwise", "precision") == pytest.approx(expected.precision, abs=1e-4)
    assert p.number("accuracy", "pairwise", "recall") == pytest.approx(expected.recall, abs=1e-4)
    assert expected.f1 > 0.95
    sweep = data["accuracy"]["sweep"]
    assert [r["threshold"] for r in sweep] == [0.9, 0.95, 0.99, 0.999]
    # Higher thresholds keep a subset of the edges: predicted and true-positive pairs never grow.
    predicted = [r["pair_predicted_pairs"] for r in sweep]
    tp = [r["pair_true_positive_pairs"] for r in sweep]
    assert predicted == sorted(predicted, reverse=True) and tp == sorted(tp, reverse=True)
    assert predicted[0] > predicted[-1]
    # At the link threshold, re-clustering the stored edges reproduces the run's clusters.
    assert sweep[0]["pair_precision"] == pytest.approx(expected.precision)
    assert p.number("accuracy", "0.99", "pair_recall") == pytest.approx(sweep[2]["pair_recall"], abs=1e-4)
    assert data["accuracy"] is not None and page(world, "r1")[2]["accuracy"] is None


def test_report_of_an_earlier_run_uses_that_runs_tables(world):
    _text, p, data = page(world, "r1")
    r1 = world["manifests"]["r1"]
    assert p.number("inputs", "hes", "records_in_clusters") == r1["hes"]["rows"]  # time travel, not r2's clusters
    assert p.number("inputs", "hes", "records_in_clusters") < page(world, "r2")[1].number("inputs", "hes", "records_in_clusters")
    assert p.cells("inputs", "gp")["reconciled_text"] == "yes"
    # The hes manifest now describes the second delivery: said so, not silently reconciled.
    assert p.cells("inputs", "hes")["reconciled_text"] == "NO"
    assert any(n.startswith("hes: the manifest beside its table now describes a later delivery") for n in data["notes"])
    assert data["id_events"] == [] and data["run"]["mode"] == "full"


# --- safe to share ----------------------------------------------------------------------------


def test_no_network_references(world):
    for run in ("r1", "r2"):
        text, p, _data = page(world, run)
        for tag, attrs in p.tags:
            for name in ("src", "href", "action", "srcset", "data", "poster", "background"):
                value = attrs.get(name, "").strip().lower()
                assert not value.startswith(("http:", "https:", "//", "ftp:")), (tag, attrs)
        assert not [a for t, a in p.tags if t == "link"]
        assert not [a for t, a in p.tags if t == "script" and "src" in a]
        assert "default-src 'none'" in text  # CSP: the browser itself refuses any fetch
        assert len([a for t, a in p.tags if t == "script" and "data-library" in a]) == 3


def test_no_plaintext_record_ids_person_ids_or_tokens(spark, world):
    base = world["base"]
    values: set[str] = set()
    for name, cols in {"gp": ("patient_ref", "nhs_no", "forename", "surname", "postcode"), "hes": ("EPIKEY", "NHS_NUMBER", "GIVEN_NAME", "FAMILY_NAME", "POSTCODE")}.items():
        for path in (base / "raw" / name).glob("*.csv"):
            with open(path, encoding="utf-8", newline="") as fh:
                for row in csv.DictReader(fh):
                    values |= {(row.get(c) or "").strip().upper() for c in cols}
    values = {v for v in values if len(v) >= 6}
    assert len(values) > 1000 and CANARY["family"].upper() in values
    person_ids = {r[0] for r in delta.read(spark, str(world["tables"] / "clusters")).select(C.PERSON_ID).distinct().collect()}
    tokens = {r[0] for r in delta.read(spark, str(base / "tokens" / "hes")).select(C.token(C.FAMILY_NAME)).where(F.col(C.token(C.FAMILY_NAME)).isNotNull()).limit(200).collect()}
    assert person_ids and tokens
    for run in ("r1", "r2"):
        text, p, _data = page(world, run)
        ours = without_libraries(text).upper()
        assert len(ours) < len(text) / 3  # the libraries were cut out, our part is left
        # Whole words only: a surname such as PARISON is part of "comparisons" and is no leak.
        words = set(re.findall(r"[A-Z0-9]+", ours))
        leaked = sorted(v for v in values if (v in words if re.fullmatch(r"[A-Z0-9]+", v) else re.search(rf"(?<![A-Z0-9]){re.escape(v)}(?![A-Z0-9])", ours)))
        assert not leaked, f"plaintext in the {run} report: {leaked[:5]}"
        for form in {*CANARY.values(), *NEW_PERSON.values()}:
            assert form.upper() not in text.upper()
        assert not any(pid.upper() in ours for pid in person_ids)
        assert not any(t in text for t in tokens)
        assert not re.search(r"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])", ours)


def test_large_blocks_split_are_shown_with_the_pairs_not_compared(world):
    """A run's block splits (runs row counts, link.split_large_blocks) are a table of the run section."""
    _text, _p, data = page(world, "r2")
    data["run"]["comparisons_per_rule"] = [1200, 3400]
    data["run"]["block_splits"] = [{"rule": "[tk_dob, tk_given_name]", "above": 4, "by": ["tk_postcode_district"], "blocks_split": 17,
                                    "records_in_them": 101, "largest_block": 9, "pairs_before": 333, "pairs_after": 40, "pairs_not_compared": 293}]
    p = Page(report.render(data))
    assert p.number("run", "1", "comparisons") == 3400
    split = p.cells("run", "[tk_dob, tk_given_name]")
    assert (split["by"], split["blocks_split"], split["pairs_after"], split["pairs_not_compared"]) == ("tk_postcode_district", "17", "40", "293")


def test_refuses_to_render_token_like_text(world):
    _text, _p, data = page(world, "r2")
    data["notes"] = data["notes"] + ["a" * 64]
    with pytest.raises(report.ReportError, match="token-like"):
        report.render(data)


def test_cli_and_job_write_the_report(world, tmp_path, caplog):
    import importlib.util
    import logging

    from typer.testing import CliRunner

    from natlink.cli import app

    # pytest's live logging (log_cli) swaps sys.stdout under CliRunner when a record is emitted.
    caplog.set_level(logging.WARNING, logger="natlink")

    out = tmp_path / "latest.html"
    result = CliRunner().invoke(app, ["report", "latest", "--tables", str(world["tables"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert Path(result.stdout.strip().splitlines()[-1]) == out
    assert '<span id="run-id">r2</span>' in out.read_text(encoding="utf-8")
    bad = CliRunner().invoke(app, ["report", "no-such-run", "--tables", str(world["tables"])])
    assert bad.exit_code == 2 and "no-such-run" in bad.output

    spec = importlib.util.spec_from_file_location("report_job", project_root() / "jobs" / "report.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    out_job = tmp_path / "job.html"
    assert job.main(["--tables", str(world["tables"]), "--run-id", "r1", "--out", str(out_job)]) == 0
    assert '<span id="run-id">r1</span>' in out_job.read_text(encoding="utf-8")


# --- in a real browser -------------------------------------------------------------------------


def _chromium() -> tuple[str, str]:
    """Paths of chromium and chromedriver, installing Debian's packages when missing and allowed."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if (not browser or not driver) and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run("apt-get update -q && apt-get install -y -q chromium chromium-driver", shell=True, capture_output=True, timeout=900)
        browser = shutil.which("chromium") or shutil.which("chromium-browser")
        driver = shutil.which("chromedriver")
    if not browser or not driver:
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver are required in CI (.ci/run installs them)")
        pytest.skip("chromium / chromedriver not installed and cannot be installed here (apt-get chromium chromium-driver)")
    return browser, driver


def test_renders_in_headless_chromium_without_errors(world, tmp_path, monkeypatch):
    browser, driver_path = _chromium()
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.support.wait import WebDriverWait
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("selenium is not installed (pip install -e '.[dev]')")
    monkeypatch.setenv("SE_OFFLINE", "true")  # never let Selenium Manager fetch a driver
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,4000",
                f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        driver.get(Path(world["html"]["r2"]).as_uri())
        WebDriverWait(driver, 120).until(
            lambda d: d.execute_script("var s = window.natlinkCharts; return !!s && s.rendered + s.failed.length === s.total")
        )
        state = driver.execute_script("return window.natlinkCharts")
        charts = driver.execute_script(
            "return Array.from(document.querySelectorAll('div.chart')).map(function (e) {"
            " return {id: e.id, rendered: e.getAttribute('data-rendered'), svg: e.querySelectorAll('svg').length,"
            " marks: e.querySelectorAll('svg path, svg rect, svg line, svg circle').length}; })"
        )
        resources = driver.execute_script("return performance.getEntriesByType('resource').map(function (r) { return r.name; })")
        logs = driver.get_log("browser")
        height = driver.execute_script("return Math.ceil(document.documentElement.scrollHeight)")
        driver.set_window_size(1280, min(max(height + 120, 800), 16000))
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot))
    finally:
        driver.quit()
    assert state["failed"] == [] and state["rendered"] == state["total"] >= 6, state
    ids = {c["id"] for c in charts}
    assert {"chart-match_weights", "chart-m_u", "chart-scores", "chart-cluster_sizes", "chart-quarantine", "chart-accuracy"} <= ids
    for c in charts:
        assert c["rendered"] == "true" and c["svg"] >= 1 and c["marks"] >= 5, c
    assert resources == []  # nothing fetched: no network, not even another local file
    problems = [entry for entry in logs if entry["level"] in ("SEVERE", "WARNING")]
    assert not problems, problems
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 100_000
    keep = os.environ.get("NATLINK_REPORT_SCREENSHOT")
    if keep:  # for a human to look at
        shutil.copy(shot, keep)
