"""Issue 15: today's encoding vs the block-salted prototype, accuracy, cost and leakage in ONE table.

    python benchmarks/bench_frequency_hiding.py                       # 100k persons (~185k records)
    python benchmarks/bench_frequency_hiding.py --persons 2000 --no-attacks

For one synthetic population (gp + hes, cached under benchmarks/data/fh_p<N>_s<seed>):
* today: natlink's tokens and model (conf/model.yaml, TF as configured; and TF off), trained and
  linked with natlink's own train/link (in process up to 1M records);
* salted: the block-salted encoding (benchmarks/encodings/salted.py) made from the providers'
  normalised values, u from provider aggregates, lambda and m trained at the centre, linked on block
  keys with Splink on DuckDB; without TF, and with 4 provider-computed frequency classes on names;
then pairwise precision / recall / F1 against the truth (natlink.outputs.evaluate.pairwise), scored
pairs, time, and leakage: block sizes per rule, frequency alignment by the attack suite (per rule
slice, any rule counts), cross-rule equivalence classes, block-size alignment, frequency classes.
Rows are measures, columns are variants. Load average is printed with the table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import DATA, ROOT, load_avg, print_table, spark_session  # noqa: E402


def encodings_package():
    """benchmarks/encodings as package ``fh_encodings`` (the name ``encodings`` is the stdlib's codecs)."""
    if "fh_encodings" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "fh_encodings", HERE / "encodings" / "__init__.py", submodule_search_locations=[str(HERE / "encodings")]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["fh_encodings"] = module
        spec.loader.exec_module(module)
    return sys.modules["fh_encodings"]


def to_pandas(df):
    """A Spark frame as pandas with 64-bit integers kept exact (nullable Int64, never float)."""
    import pandas as pd
    import pyarrow as pa

    return df.toArrow().to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


def pct(x) -> str:
    if x is None or x == "":
        return ""
    return f"{100 * x:.2f}%" if x >= 0.001 or x == 0 else f"{100 * x:.3f}%"


class Run:
    """One population: its frames, and the measures of each variant."""

    def __init__(self, spark, persons: int, seed: int):
        from pyspark.sql import functions as F

        from natlink import columns as C
        from natlink import config as cfgmod
        from natlink.config import LinkConfig, ModelConfig
        from natlink.store import delta
        from natlink.tokens import reader

        pkg = encodings_package()
        import fh_encodings.prepare as prep

        self.spark, self.F, self.C = spark, F, C
        t = time.perf_counter()
        self.pop = prep.prepare(spark, DATA / f"fh_p{persons}_s{seed}", persons, seed)
        self.prepare_s = time.perf_counter() - t
        self.key = prep.fake_key()
        self.model = cfgmod.load(ROOT / "conf" / "model.yaml", ModelConfig)
        self.link_cfg = cfgmod.load(ROOT / "conf" / "link.yaml", LinkConfig)
        frames = [delta.read(spark, str(self.pop.tokens(n))) for n in prep.DATASETS]
        self.tokens = reader.with_unique_id(frames[0].unionByName(frames[1], allowMissingColumns=True)).cache()
        self.n = self.tokens.count()
        self.datasets = prep.DATASETS
        truth = spark.read.parquet(str(self.pop.truth)).select(C.DATASET, C.RECORD_ID, C.TRUE_PERSON_ID).toPandas()
        self.truth = truth
        del pkg

    # -- accuracy, one definition for every variant ---------------------------------------
    def pairwise(self, clusters_pd):
        """natlink's pairwise metrics of clusters (dataset, record_id, person_id) against the truth."""
        from natlink.outputs import evaluate

        clusters = self.spark.createDataFrame(clusters_pd.astype({"person_id": str}))
        truth = self.spark.createDataFrame(self.truth)
        return evaluate.pairwise(clusters, truth)


def run_today(run: Run, tf: bool) -> dict:
    from natlink.linkage import engine as link
    from natlink.linkage import train
    from natlink.spark.scratch import Scratch

    C, F = run.C, run.F
    cfg = run.model if tf else run.model.with_term_frequencies(())
    t = time.perf_counter()
    trained = train.train(run.tokens, cfg).settings
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    with Scratch(run.spark) as scratch:
        res = link.link(run.tokens, trained, run.link_cfg, scratch, n_records=run.n)
        clusters = res.clusters.select(C.DATASET, C.RECORD_ID, F.col(link.CLUSTER_NODE).cast("string").alias(C.PERSON_ID)).toPandas()
        predict_s = time.perf_counter() - t
        out = {"engine": res.engine, "edges": res.n_edges, "comparisons": sum(res.comparisons_per_rule)}
    m = run.pairwise(clusters)
    out.update(precision=m.precision, recall=m.recall, f1=m.f1, train_s=train_s, predict_cluster_s=predict_s)
    return out


def encode_today_s(run: Run) -> float:
    """Seconds to make today's tokens + Bloom filters from the providers' normalised values (to parquet)."""
    from natlink.tokens import encode

    C = run.C
    t = time.perf_counter()
    for name in run.datasets:
        plain = run.spark.read.parquet(str(run.pop.plain(name)))
        out = encode.tokenise(plain, run.key, keep=[C.DATASET, C.RECORD_ID, C.REGION])
        out.write.mode("overwrite").parquet(str(run.pop.root / "bench_today" / name))
    return time.perf_counter() - t


def salted_tables(run: Run, spec, record_key: str = "shared"):
    """Provider side: the salted rows of each dataset (written as parquet), timed; then read compacted."""
    import fh_encodings.salted as salted

    C, F = run.C, run.F
    t = time.perf_counter()
    for name in run.datasets:
        plain = run.spark.read.parquet(str(run.pop.plain(name)))
        salted.encode(plain, run.key, spec, record_key=record_key).write.mode("overwrite").parquet(str(run.pop.root / f"salted_{record_key}" / name))
    encode_s = time.perf_counter() - t
    rows = run.spark.read.parquet(*[str(run.pop.root / f"salted_{record_key}" / n) for n in run.datasets])
    stored = rows.count()
    cols = [c for c in rows.columns if c.startswith("tk_") or c == salted.BLOCK_KEY]
    # The centre compares by equality only: 64-bit hashes of the tokens (as natlink's engines do).
    slim = rows.select(C.DATASET, C.RECORD_ID, salted.RULE, *[F.when(F.col(c).isNotNull(), F.xxhash64(F.col(c))).alias(c) for c in cols])
    pdf = to_pandas(slim)
    return pdf, encode_s, stored


def attach_records(run: Run, pdf):
    """Record index per row (records in dataset, record_id order) and the Splink unique id."""
    import fh_encodings.linking as linking
    import pandas as pd

    records = run.truth[[run.C.DATASET, run.C.RECORD_ID]].sort_values([run.C.DATASET, run.C.RECORD_ID]).reset_index(drop=True)
    index = pd.Series(range(len(records)), index=pd.MultiIndex.from_frame(records))
    pdf["record_index"] = index.reindex(pd.MultiIndex.from_frame(pdf[[run.C.DATASET, run.C.RECORD_ID]])).to_numpy()
    if pdf["record_index"].isna().any():
        raise RuntimeError("salted rows without a truth record")
    pdf["record_index"] = pdf["record_index"].astype("int64")
    pdf["unique_id"] = pdf["record_index"] * linking.RULE_SLOTS + pdf["rule"].astype("int64")
    return records


def provider_inputs(run: Run, classes_for: tuple[str, ...]):
    """Per provider: its deterministic per-field values (today's tokens stand in, equality-equivalent),
    compacted, with frequency classes of the names; and the class of every record."""
    import fh_encodings.provider as provider
    import pandas as pd

    from natlink.linkage.engine import compact_columns
    from natlink.linkage.settings import required_columns, splink_settings

    C = run.C
    needed = sorted(required_columns(splink_settings(run.model)))
    tables, classes = [], []
    for name in run.datasets:
        df = run.tokens.where(run.F.col(C.DATASET) == name)
        pdf = to_pandas(df.select(C.UNIQUE_ID, C.DATASET, C.RECORD_ID, *compact_columns(df, needed)))
        for col in classes_for:
            pdf["fc_" + col[3:]] = provider.frequency_classes(pdf[col])
        tables.append(pdf)
        classes.append(pdf[[C.DATASET, C.RECORD_ID, *["fc_" + c[3:] for c in classes_for]]])
    return tables, pd.concat(classes, ignore_index=True)


def run_salted(run: Run, spec, pdf, records, provider_tables, classes_pd, classes_for: tuple[str, ...]) -> dict:
    import fh_encodings.linking as linking
    import fh_encodings.provider as provider
    import pyarrow as pa

    from natlink.linkage.settings import splink_settings

    C = run.C
    settings = linking.salted_settings(splink_settings(run.model), classes=classes_for)
    t = time.perf_counter()
    per_provider = []
    for table in provider_tables:
        cols = ["unique_id", *[c for c in table.columns if c.startswith("tk_") or c.startswith("fc_")]]
        per_provider.append(provider.provider_u(pa.Table.from_pandas(table.rename(columns={C.UNIQUE_ID: "unique_id"})[cols], preserve_index=False), settings, max_pairs=run.model.training.u_max_pairs, seed=run.model.training.seed))
    u_s = time.perf_counter() - t
    settings = linking.with_u(settings, provider.pool_u(per_provider))
    frame = pdf
    if classes_for:
        frame = pdf.merge(classes_pd, on=[C.DATASET, C.RECORD_ID], how="left")
    keep = ["unique_id", "rule", "bk", *[c for c in frame.columns if c.startswith("tk_") or c.startswith("fc_")]]
    table = pa.Table.from_pandas(frame[keep], preserve_index=False)
    t = time.perf_counter()
    trained, info = linking.train(table, settings, spec, run.model, len(records))
    train_s = time.perf_counter() - t
    linked = linking.predict_and_cluster(table, trained, run.link_cfg.threshold_match_probability, len(records))
    clusters = records.assign(person_id=linked.cluster)
    m = run.pairwise(clusters)
    return {
        "engine": "duckdb (salted)", "edges": linked.edges, "comparisons": linking.comparisons(pdf),
        "precision": m.precision, "recall": m.recall, "f1": m.f1, "u_provider_s": u_s, "train_s": train_s,
        "predict_cluster_s": sum(linked.timings.values()), "lambda": info["lambda"],
    }


def leakage(run: Run, spec, pdf, records, classes_pd, classes_for, attacks: bool) -> dict:
    import fh_encodings.leakage as lk
    import pandas as pd

    C = run.C
    out: dict = {"blocks": lk.block_sizes(pdf, spec)}
    plain = pd.concat([run.spark.read.parquet(str(run.pop.plain(n))).toPandas() for n in run.datasets], ignore_index=True)
    plain = records.merge(plain, on=[C.DATASET, C.RECORD_ID], how="left")
    # Block sizes vs joint distributions: ranked sizes matched to the ranked true joint counts (an upper bound).
    plain["dob_year"] = pd.to_datetime(plain[C.DATE_OF_BIRTH]).dt.year
    rows_fy = pdf[pdf["rule"] == spec.rules.index(("family_name", "dob_year"))] if ("family_name", "dob_year") in spec.rules else None
    if rows_fy is not None:
        key = lk.truth_keys(plain.loc[rows_fy["record_index"].to_numpy()].reset_index(drop=True), [C.FAMILY_NAME, "dob_year"])
        blocks_ = rows_fy["bk"].reset_index(drop=True)
        true_mass = key.value_counts()
        out["size_align_family_year_oracle"] = lk.size_alignment(blocks_, key, true_mass)
        suite = lk.attack_suite()
        if suite is not None:
            ref = lk.joint_reference(suite["public"], run.spark, "family_name", "dob_year")
            ref.index = [(a, int(b)) for a, b in ref.index]
            out["size_align_family_year_public"] = lk.size_alignment(blocks_, key, ref)
    if ("given_name", "family_name") in spec.rules:
        rows_n = pdf[pdf["rule"] == spec.rules.index(("given_name", "family_name"))]
        key = lk.truth_keys(plain.loc[rows_n["record_index"].to_numpy()].reset_index(drop=True), [C.GIVEN_NAME, C.FAMILY_NAME])
        out["size_align_names_oracle"] = lk.size_alignment(rows_n["bk"].reset_index(drop=True), key, key.value_counts())
    for col in classes_for:
        field = col[3:]
        vals = plain[field]
        cls = records.merge(classes_pd, on=[C.DATASET, C.RECORD_ID], how="left")["fc_" + field]
        out[f"class_guess_none:{field}"] = lk.class_guess(vals, None)
        out[f"class_guess:{field}"] = lk.class_guess(vals, cls)
        out[f"classes:{field}"] = lk.classes_table(vals, cls)
    if attacks:
        gp = pdf[pdf[C.DATASET] == "gp"]
        extra = run.tokens.where(run.F.col(C.DATASET) == "gp").select(C.RECORD_ID, *[c for c in ("region", "age_band") if c in run.tokens.columns]).toPandas()
        t = time.perf_counter()
        out["suite_salted"] = lk.suite_attack(run.spark, run.pop.root, gp.merge(extra, on=C.RECORD_ID, how="left"), spec)
        out["suite_salted_s"] = time.perf_counter() - t
        t = time.perf_counter()
        out["equivalence"] = lk.equivalence_attack(run.spark, run.pop.root, pdf, records, spec)
        out["equivalence_s"] = time.perf_counter() - t
        t = time.perf_counter()
        today_gp = run.tokens.where(run.F.col(C.DATASET) == "gp")
        from natlink.linkage.engine import compact_columns

        tk = [c for c in today_gp.columns if c.startswith("tk_")]
        out["suite_today"] = lk.suite_attack_today(run.spark, run.pop.root, to_pandas(today_gp.select(C.RECORD_ID, *[c for c in ("region", "age_band") if c in today_gp.columns], *compact_columns(today_gp, tk))))
        out["suite_today_s"] = time.perf_counter() - t
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-attacks", action="store_true", help="skip the attack-suite alignments (slow)")
    parser.add_argument("--json", type=Path, help="also write every measure as JSON here")
    args = parser.parse_args(argv)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    encodings_package()
    import fh_encodings.salted as salted

    spark = spark_session(memory="6g", conf={"spark.sql.shuffle.partitions": "8"})
    load_start = load_avg()
    run = Run(spark, args.persons, args.seed)
    spec = salted.SaltedSpec.from_model(run.model)
    print(f"[fh] population ready: {run.n} records ({run.prepare_s:.0f} s)", file=sys.stderr, flush=True)
    results = {}
    results["today (TF on)"] = run_today(run, tf=True)
    print(f"[fh] today TF on: {results['today (TF on)']}", file=sys.stderr, flush=True)
    results["today (TF off)"] = run_today(run, tf=False)
    print(f"[fh] today TF off: {results['today (TF off)']}", file=sys.stderr, flush=True)
    today_encode = encode_today_s(run)
    pdf, encode_s, stored = salted_tables(run, spec)
    records = attach_records(run, pdf)
    classes_for = ("tk_given_name", "tk_family_name")
    provider_tables, classes_pd = provider_inputs(run, classes_for)
    results["salted, no TF"] = run_salted(run, spec, pdf, records, provider_tables, classes_pd, ())
    print(f"[fh] salted no TF: {results['salted, no TF']}", file=sys.stderr, flush=True)
    results["salted, 4 freq. classes"] = run_salted(run, spec, pdf, records, provider_tables, classes_pd, classes_for)
    print(f"[fh] salted classes: {results['salted, 4 freq. classes']}", file=sys.stderr, flush=True)
    for k in results:
        results[k]["encode_s"] = today_encode if k.startswith("today") else encode_s
        results[k]["exported_rows"] = run.n if k.startswith("today") else stored
    leak = leakage(run, spec, pdf, records, classes_pd, classes_for, attacks=not args.no_attacks)
    load_end = load_avg()
    if args.json:
        args.json.write_text(json.dumps({"persons": args.persons, "records": run.n, "results": results, "leakage": leak, "load": [load_start, load_end]}, indent=1, default=str))
    print_report(run, results, leak, spec, load_start, load_end)


def print_report(run, results, leak, spec, load_start, load_end) -> None:
    names = list(results)
    base = results["today (TF on)"]
    rows = []

    def row(label, f):
        rows.append([label, *[f(names[i], results[names[i]]) for i in range(len(names))]])

    row("records", lambda k, r: run.n)
    row("rows exported", lambda k, r: r["exported_rows"])
    row("precision", lambda k, r: f"{r['precision']:.4f}")
    row("recall", lambda k, r: f"{r['recall']:.4f}")
    row("F1", lambda k, r: f"{r['f1']:.4f}")
    row("F1 - today (TF on)", lambda k, r: f"{r['f1'] - base['f1']:+.4f}")
    row("pairs scored", lambda k, r: r["comparisons"])
    row("edges (record pairs >= threshold)", lambda k, r: r["edges"])
    row("encode at providers s", lambda k, r: f"{r['encode_s']:.1f}")
    row("u at providers s", lambda k, r: f"{r.get('u_provider_s', 0):.1f}" if "u_provider_s" in r else "(in train)")
    row("train s", lambda k, r: f"{r['train_s']:.1f}")
    row("predict+cluster s", lambda k, r: f"{r['predict_cluster_s']:.1f}")
    row("train+link s / today's", lambda k, r: f"{(r['train_s'] + r['predict_cluster_s'] + r.get('u_provider_s', 0)) / (base['train_s'] + base['predict_cluster_s']):.2f}")
    suite_t, suite_s = leak.get("suite_today", {}), leak.get("suite_salted", {}).get("any_rule", {})
    for qi in ("given_name", "family_name", "year_of_birth", "postcode_district"):
        row(f"attack suite: {qi} recovered (gp)", lambda k, r, qi=qi: pct(suite_t.get(qi)) if k.startswith("today") else pct(suite_s.get(qi)))
    eq = leak.get("equivalence", {})
    for f in ("family_name", "given_name"):
        row(f"cross-rule classes: {f} recovered", lambda k, r, f=f: "" if k.startswith("today") else pct(eq.get(f"{f}:recovered")))
        row(f"cross-rule classes: {f} records in class > 5", lambda k, r, f=f: "" if k.startswith("today") else pct(eq.get(f"{f}:records_in_class_gt5")))
    row("block sizes -> family+year (true joint, bound)", lambda k, r: "" if k.startswith("today") else pct(leak.get("size_align_family_year_oracle")))
    row("block sizes -> family+year (public joint)", lambda k, r: "" if k.startswith("today") else pct(leak.get("size_align_family_year_public")))
    row("block sizes -> given+family (true joint, bound)", lambda k, r: "" if k.startswith("today") else pct(leak.get("size_align_names_oracle")))
    for f in ("given_name", "family_name"):
        row(f"best guess of {f}, exact distribution known", lambda k, r, f=f: pct(leak.get(f"class_guess:{f}")) if "classes" in k else pct(leak.get(f"class_guess_none:{f}")))
    for b in leak["blocks"]:
        row(f"rule {b['rule']}: rows in blocks 1 / 2-5 / >5; largest", lambda k, r, b=b: "" if k.startswith("today") else f"{pct(b['in_1'])} / {pct(b['in_2_5'])} / {pct(b['in_gt5'])}; {b['largest']}")
    print(f"frequency hiding: persons={run.pop.persons} records={run.n} seed={run.pop.seed} load(1/5/15) start {load_start} end {load_end}")
    print_table(["measure", *names], rows)


if __name__ == "__main__":
    main()
