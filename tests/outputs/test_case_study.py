"""End to end: the multimorbidity case study job on a linked synthetic population, judged
against the generator's truth.

Linked vs perfect linkage (the same records pooled by true person) measures linkage error and
must agree within 1 percentage point. Truth (the generator's conditions, recorded or not) is
higher than both: the synthetic datasets record only part of each person's conditions, so no
linkage reaches it (see README "Multimorbidity case study"); linkage must still close most of
the gap that the unlinked, record-level count leaves.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from natlink.outputs import case_study as cs
from natlink import config as cfgmod
from natlink.store import delta
from natlink.config import DemoConfig, project_root
from natlink.config.datasets import AgeBandRules
from natlink.commands import demo as run_demo

# Obviously fake key for tests only (hex of "test-key-not-secret-...").
pytestmark = pytest.mark.slow  # builds its own four-dataset demo world (about 95 s)

FAKE_KEY_HEX = b"test-key-not-secret-casestudy-00".hex()
PERSONS, SEED = 2500, 7


@pytest.fixture(scope="module")
def study(spark, tmp_path_factory):
    os.environ["NATLINK_TEST_KEY"] = FAKE_KEY_HEX
    out = tmp_path_factory.mktemp("case_study")
    root = project_root()
    base = cfgmod.load("conf/demo_multimorbidity.yaml", DemoConfig, base_dir=root)
    cfg = base.model_copy(
        update={"persons": PERSONS, "seed": SEED, "output_dir": str(out), "key": "env:NATLINK_TEST_KEY", "model_dir": str(out / "models")}
    )
    demo = run_demo(cfg, root=root, spark=spark)
    sys.path.insert(0, str(root / "jobs"))
    try:
        import case_study_multimorbidity as job
    finally:
        sys.path.remove(str(root / "jobs"))
    manifests = [str(out / "tokens" / f"{d}.manifest.json") for d in ("gp", "hes", "prescriptions", "registry")]
    argv = ["--tables", str(out / "tables"), "--truth", str(out), "--out", str(out / "cs"), "--config", "conf/case_study.yaml"]
    for m in manifests:
        argv += ["--manifest", m]
    return out, demo, job, argv


@pytest.fixture(scope="module")
def job_output(study):
    import contextlib
    import io

    out, demo, job, argv = study
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert job.main(argv) == 0
    return buffer.getvalue()


def _printed(text: str) -> dict[str, float]:
    found = dict(re.findall(r"^(\w+): prevalence=([0-9.]+) ", text, flags=re.M))
    return {k: float(v) for k, v in found.items()}


def test_job_prints_the_overall_prevalences_and_linked_matches_perfect_linkage(study, job_output):
    out, demo, _job, _argv = study
    assert demo.metrics.f1 >= 0.95, demo.metrics  # the linkage the case study rests on
    printed = _printed(job_output)
    assert set(printed) == {"linked", "unlinked", "perfect_linkage", "truth"}, job_output
    summary = json.loads((out / "cs" / "summary.json").read_text())
    for method, value in printed.items():
        assert value == pytest.approx(summary["overall"][method]["prevalence"], abs=5e-5)
    linked, unlinked, perfect, truth = (printed[m] for m in ("linked", "unlinked", "perfect_linkage", "truth"))
    # Linkage error: within 1 percentage point of pooling by the true person.
    assert abs(linked - perfect) <= 0.01, printed
    # Without linkage multimorbidity is badly under-counted: only a GP problem list or a hospital
    # episode can show two conditions on one record, and every other record dilutes the rate.
    assert unlinked < linked / 2 and linked - unlinked > 0.05, printed
    # The conservative count never exceeds the truth; linkage closes most of the unlinked gap.
    assert perfect <= truth + 0.005, printed
    # On the generator's population the linked figure is within 1 percentage point of the truth.
    assert abs(linked - truth) <= 0.01, printed
    assert truth - linked < (truth - unlinked) / 2, printed
    # Persons: the linked population is close to the true one (a few split or merged clusters).
    persons = {m: summary["overall"][m]["persons"] for m in printed}
    assert persons["truth"] == PERSONS
    assert abs(persons["linked"] - persons["perfect_linkage"]) <= 0.01 * PERSONS
    assert persons["unlinked"] == demo.records


def test_by_age_band_linked_tracks_perfect_linkage_and_rises_with_age(study, job_output):
    out, _demo, _job, _argv = study
    table = delta.read(_spark(), str(out / "cs" / "prevalence"))
    rows = [r.asDict() for r in table.collect()]
    result = cs.CaseStudyResult(rows=rows)
    linked, perfect, unlinked = (result.by("age_band", m) for m in ("linked", "perfect_linkage", "unlinked"))
    compared = [b for b in linked if linked[b] is not None and perfect.get(b) is not None]
    assert {"60-69", "70-79", "80-89"} <= set(compared)
    for band in compared:
        assert abs(linked[band] - perfect[band]) <= 0.02, (band, linked[band], perfect[band])
    assert linked["40-49"] < linked["60-69"] < linked["80-89"]
    assert all(unlinked[b] is None or unlinked[b] < linked[b] for b in ("60-69", "70-79", "80-89"))
    regions = result.by("region", "linked")
    assert "LONDON" in regions and len(regions) >= 8
    # Small cells are withheld: every row either shows both counts at or over 10, or is flagged.
    for r in rows:
        if r["suppressed"]:
            assert r["prevalence"] is None
        else:
            assert r["persons"] >= 10 and (r["multimorbid"] == 0 or r["multimorbid"] >= 10)


def _spark():
    from natlink.spark.session import get_spark

    return get_spark()


def test_condition_codes_and_age_band_are_kept_but_never_the_date_of_birth(study):
    out, _demo, _job, _argv = study
    spark = _spark()
    labels = set(AgeBandRules(reference_date="2026-01-01").labels())
    expected_codes = {"hes": {"diag_01", "diag_02"}, "prescriptions": {"bnf_code"}, "registry": {"condition_code"}, "gp": {"ltc_codes"}}
    for name, codes in expected_codes.items():
        manifest = json.loads((out / "tokens" / f"{name}.manifest.json").read_text())
        assert manifest["age_band"] == {"reference_date": "2026-01-01", "width": 10, "open_from": 90}
        assert codes | {"age_band"} <= set(manifest["columns"]["keep"])
        tokens = delta.read(spark, str(out / "tokens" / name))
        assert "date_of_birth" not in tokens.columns and "age_band" in tokens.columns
        assert not [c for c in tokens.columns if "dob" in c and not c.startswith(("tk_", "bf_"))]
        bands = {r[0] for r in tokens.select("age_band").distinct().collect()}
        assert bands - {None} <= labels
        assert len(bands - {None}) >= (4 if name == "registry" else 8)  # deaths: few young bands
    summary = json.loads((out / "cs" / "summary.json").read_text())
    # Diagnoses and prescriptions were mapped (and acute / ambiguous codes counted, not hidden).
    codes = summary["codes"]
    assert codes["icd10:matched"] > 500 and codes["bnf:matched"] > 500
    assert codes["icd10:unmatched"] > 0 and codes["bnf:ambiguous"] > 0
    assert summary["unlinked_by_dataset"]["hes"]["multimorbid"] > 0
    assert summary["unlinked_by_dataset"]["prescriptions"]["multimorbid"] == 0


def test_missing_age_band_is_a_named_error(study, tmp_path, manifest_signer):
    from natlink.tokens.manifest import TokenManifest

    out, _demo, _job, _argv = study
    manifest = json.loads((out / "tokens" / "gp.manifest.json").read_text())
    manifest.pop("age_band")
    manifest["table"] = str(out / "tokens" / "gp")
    path = tmp_path / "gp.manifest.json"
    TokenManifest(manifest).save(path, signer=manifest_signer)  # a provider that configured no age band
    with pytest.raises(cs.CaseStudyInputError, match=r"\['gp'\].*age band"):
        cs.run(_spark(), tables=out / "tables", manifests=[path])
