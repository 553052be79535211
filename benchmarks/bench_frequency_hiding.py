"""Issue 15: today's encoding vs the block-salted prototype, accuracy, cost and leakage in ONE table.

    python benchmarks/bench_frequency_hiding.py                       # 100k persons (~185k records)
    python benchmarks/bench_frequency_hiding.py --persons 2000 --suite --drop-rule  # + the attack suite (slow)

For one synthetic population (gp + hes, cached under benchmarks/data/fh_p<N>_s<seed>):
* today: natlink's tokens and model (conf/model.yaml, TF as configured; and TF off), trained and
  linked with natlink's own train/link (in process up to 1M records);
* salted: the block-salted encoding (benchmarks/encodings/salted.py) made from the providers'
  normalised values; scored with today's parameters (the encoding alone), and trained the new way
  (u from provider aggregates, lambda and m at the centre) without TF and with 4 provider-computed
  frequency classes on names; linked on block keys with Splink on DuckDB; and again without each
  ``--drop-rule`` rule (default: given_name+family_name);
then pairwise precision / recall / F1 against the truth (natlink.outputs.evaluate.pairwise), scored
pairs, time, and leakage (benchmarks/encodings/leakage.py): rank alignment of today's tokens and of
every salted rule slice, unique combinations, cross-rule equivalence classes (shared record key, and
per-rule pseudonyms joined only through links), block sizes per rule and their alignment with the
true joint distribution, frequency classes; with ``--suite`` the attack suite as well.
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
        self.model = cfgmod.load(ROOT / "conf" / "model_deterministic.yaml", ModelConfig)
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
    return out, trained


def run_salted_with(run: Run, pdf, records, trained: dict) -> dict:
    """The salted table scored with parameters trained today's way (TF off): isolates the encoding
    from the training. Scores of a pair are today's, so F1 should equal today's (TF off)."""
    import fh_encodings.linking as linking
    import pyarrow as pa

    settings = linking.salted_settings(trained)
    keep = ["unique_id", "rule", "bk", *[c for c in pdf.columns if c.startswith("tk_")]]
    linked = linking.predict_and_cluster(pa.Table.from_pandas(pdf[keep], preserve_index=False), settings, run.link_cfg.threshold_match_probability, len(records))
    m = run.pairwise(records.assign(person_id=linked.cluster))
    return {
        "engine": "duckdb (salted)", "edges": linked.edges, "comparisons": linking.comparisons(pdf),
        "precision": m.precision, "recall": m.recall, "f1": m.f1, "train_s": 0.0, "predict_cluster_s": sum(linked.timings.values()),
    }


def encode_today_s(run: Run) -> dict[str, float]:
    """Seconds to make today's tokens, with and without Bloom filters, from the providers' normalised
    values (to parquet). Measured once per population and cached beside it (``encode_today.json``)."""
    from natlink.tokens import encode

    C = run.C
    cache = run.pop.root / "encode_today.json"
    if cache.exists():
        return {**json.loads(cache.read_text()), "cached": True}
    out = {}
    for label, blooms in (("tokens+bloom", encode.BLOOM_SPECS), ("tokens", ())):
        t = time.perf_counter()
        for name in run.datasets:
            plain = run.spark.read.parquet(str(run.pop.plain(name)))
            tokens = encode.tokenise(plain, run.key, keep=[C.DATASET, C.RECORD_ID, C.REGION], blooms=blooms)
            tokens.write.mode("overwrite").parquet(str(run.pop.root / "bench_today" / name))
        out[label] = time.perf_counter() - t
    out["load"] = load_avg()
    cache.write_text(json.dumps(out))
    return out


def salted_tables(run: Run, spec, record_key: str = "shared", tag: str = ""):
    """Provider side: the salted rows of each dataset (written as parquet), timed; then read compacted."""
    import fh_encodings.salted as salted

    C, F = run.C, run.F
    t = time.perf_counter()
    for name in run.datasets:
        plain = run.spark.read.parquet(str(run.pop.plain(name)))
        salted.encode(plain, run.key, spec, record_key=record_key).write.mode("overwrite").parquet(str(run.pop.root / f"salted_{record_key}{tag}" / name))
    encode_s = time.perf_counter() - t
    rows = run.spark.read.parquet(*[str(run.pop.root / f"salted_{record_key}{tag}" / n) for n in run.datasets])
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


CLUSTERS: dict = {}  # id of a salted frame -> cluster per record of its last link (for the leakage measures)


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
    CLUSTERS[id(pdf)] = linked.cluster
    return {
        "engine": "duckdb (salted)", "edges": linked.edges, "comparisons": linking.comparisons(pdf),
        "precision": m.precision, "recall": m.recall, "f1": m.f1, "u_provider_s": u_s, "train_s": train_s,
        "predict_cluster_s": sum(linked.timings.values()), "lambda": info["lambda"],
    }


QI = {"tk_given_name": "given_name", "tk_family_name": "family_name", "tk_dob_year": "dob_year", "tk_dob": "dob", "tk_postcode_district": "postcode_district"}
COMBINATION = ("given_name", "family_name", "dob_year", "postcode_district")


def gp_truth(run: Run, records, plain):
    """Plaintext quasi-identifiers of every gp record (scoring only), with the true person."""
    import pandas as pd

    C = run.C
    gp = plain[plain[C.DATASET] == "gp"].merge(run.truth, on=[C.DATASET, C.RECORD_ID], how="left")
    dob = pd.to_datetime(gp[C.DATE_OF_BIRTH])
    return pd.DataFrame({
        "record_id": gp[C.RECORD_ID].to_numpy(), "true_person_id": gp[C.TRUE_PERSON_ID].to_numpy(),
        "given_name": gp[C.GIVEN_NAME].to_numpy(), "family_name": gp[C.FAMILY_NAME].to_numpy(),
        "dob_year": dob.dt.year.astype("Int64").astype(str).where(dob.notna()).to_numpy(),
        "dob": dob.dt.strftime("%Y-%m-%d").where(dob.notna()).to_numpy(),
        "postcode_district": gp[C.POSTCODE].str.split(" ").str[0].where(gp[C.POSTCODE].str.contains(" ", na=False)).to_numpy(),
    })


def leakage(run: Run, spec, pdf, records, classes_pd, classes_for, suite: bool, linked=None, suite_chains: bool = False) -> dict:
    import fh_encodings.leakage as lk
    import numpy as np
    import pandas as pd

    from natlink.linkage.engine import compact_columns

    C = run.C
    out: dict = {"blocks": lk.block_sizes(pdf, spec)}
    plain = pd.concat([run.spark.read.parquet(str(run.pop.plain(n))).toPandas() for n in run.datasets], ignore_index=True)
    plain = records.merge(plain, on=[C.DATASET, C.RECORD_ID], how="left")
    truth = gp_truth(run, records, plain)
    # 1. Rank alignment of every name/date/place column, today's table vs the salted slices.
    today_gp = run.tokens.where(run.F.col(C.DATASET) == "gp")
    today = to_pandas(today_gp.select(C.RECORD_ID, *compact_columns(today_gp, list(QI))))
    today = truth[["record_id"]].merge(today, on="record_id", how="left")
    ok_today = {qi: lk.rank_attack(today[col], truth[qi], truth[qi].value_counts()) for col, qi in QI.items()}
    ok_salted = lk.rank_attack_slices(pdf[pdf[C.DATASET] == "gp"], truth, spec, QI)
    out["rank_today"] = {qi: float(v.mean()) for qi, v in ok_today.items()}
    out["rank_salted"] = {qi: float(v.mean()) for qi, v in ok_salted.items()}
    out["reid_today"] = lk.reidentified(ok_today, truth, COMBINATION)
    out["reid_salted"] = lk.reidentified(ok_salted, truth, COMBINATION)
    out["best_constant"] = {qi: float(truth[qi].value_counts().iloc[0] / len(truth)) for qi in QI.values()}
    # 2. Cross-rule equivalence classes, then rank alignment of the classes: with one record key
    # shared by the rules; and with per-rule record pseudonyms, where the centre can join a
    # record's rows only when the link output names it (a record in a cluster of 2 or more).
    gp_idx = records.index[records[C.DATASET] == "gp"].to_numpy()
    is_gp = np.zeros(len(records), dtype=bool)
    is_gp[gp_idx] = True
    values = plain.assign(
        dob_year=pd.to_datetime(plain[C.DATE_OF_BIRTH]).dt.year.astype("Int64").astype(str).where(plain[C.DATE_OF_BIRTH].notna()),
        postcode_district=plain[C.POSTCODE].str.split(" ").str[0].where(plain[C.POSTCODE].str.contains(" ", na=False)),
    )
    scenarios = {"eq": None}
    if linked is not None:
        scenarios["eqp"] = np.bincount(linked)[linked] > 1
    for tag, joinable in scenarios.items():
        ok_eq = dict(ok_salted)
        for f in ("family_name", "given_name", "dob_year", "postcode_district"):
            labels = lk.equivalence_classes(pdf, spec, f, len(records), joinable)
            owner = lk.node_records(pdf, len(records), joinable)
            sizes = np.bincount(labels)
            used = (owner >= 0) & is_gp[np.maximum(owner, 0)]
            out[f"{tag}_gt5:{f}"] = float((sizes[labels[used]] > 5).mean())
            hit = lk.class_attack(labels, owner, values[f], is_gp)[gp_idx]
            out[f"{tag}_recovered:{f}"] = float(hit.mean())
            ok_eq[f] = ok_eq[f] | hit
            if suite_chains and tag == "eq" and f == "family_name":
                extra = to_pandas(today_gp.select(C.RECORD_ID, *[c for c in ("region", "age_band") if c in today_gp.columns]))
                t = time.perf_counter()
                out["suite_chains:family_name"] = lk.suite_on_classes(run.spark, run.pop.root, records.loc[gp_idx, C.RECORD_ID].to_numpy(), labels[gp_idx], sizes, extra, f)
                out["suite_chains_s"] = time.perf_counter() - t
        out[f"reid_salted_{tag}"] = lk.reidentified(ok_eq, truth, COMBINATION)
    # 3. Block sizes vs the joint distribution of the rule's fields (true joint: an upper bound).
    plain["dob_year"] = pd.to_datetime(plain[C.DATE_OF_BIRTH]).dt.year
    for rule, name in ((("family_name", "dob_year"), "family_year"), (("given_name", "family_name"), "names")):
        if rule in spec.rules:
            rows = pdf[pdf["rule"] == spec.rules.index(rule)]
            key = lk.truth_keys(plain.loc[rows["record_index"].to_numpy()].reset_index(drop=True), list(rule))
            out[f"size_align:{name}"] = lk.size_alignment(rows["bk"].reset_index(drop=True), key, key.value_counts())
    # 4. Frequency classes: the best guess per class for an attacker knowing the exact distribution.
    for col in classes_for:
        field = col[3:]
        cls = records.merge(classes_pd, on=[C.DATASET, C.RECORD_ID], how="left")["fc_" + field]
        out[f"class_guess_none:{field}"] = lk.class_guess(plain[field], None)
        out[f"class_guess:{field}"] = lk.class_guess(plain[field], cls)
        out[f"classes:{field}"] = lk.classes_table(plain[field], cls)
    # 5. The attack suite itself (slow: its assignment grows with distinct tokens), on request.
    if suite:
        gp = pdf[pdf[C.DATASET] == "gp"]
        extra = to_pandas(today_gp.select(C.RECORD_ID, *[c for c in ("region", "age_band") if c in today_gp.columns]))
        t = time.perf_counter()
        out["suite_salted"] = lk.suite_attack(run.spark, run.pop.root, gp.merge(extra, on=C.RECORD_ID, how="left"), spec)
        tk = [c for c in today_gp.columns if c.startswith("tk_")]
        cols = [C.RECORD_ID, *[c for c in ("region", "age_band") if c in today_gp.columns]]
        out["suite_today"] = lk.suite_attack_today(run.spark, run.pop.root, to_pandas(today_gp.select(*cols, *compact_columns(today_gp, tk))))
        out["suite_s"] = time.perf_counter() - t
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--suite", action="store_true", help="also run the attack suite's alignment (slow: small populations only)")
    parser.add_argument("--suite-chains", action="store_true", help="run the attack suite on the family-name chains (classes of 6+ records)")
    parser.add_argument("--drop-rule", nargs="*", default=["given_name+family_name"], help="also run the salted encoding without these rules (fields joined by +)")
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
    results["today (TF on)"], _ = run_today(run, tf=True)
    print(f"[fh] today TF on: {results['today (TF on)']}", file=sys.stderr, flush=True)
    results["today (TF off)"], trained_off = run_today(run, tf=False)
    print(f"[fh] today TF off: {results['today (TF off)']}", file=sys.stderr, flush=True)
    today_encode = encode_today_s(run)
    pdf, encode_s, stored = salted_tables(run, spec)
    records = attach_records(run, pdf)
    classes_for = ("tk_given_name", "tk_family_name")
    provider_tables, classes_pd = provider_inputs(run, classes_for)
    results["salted, today's params"] = run_salted_with(run, pdf, records, trained_off)
    results["salted, no TF"] = run_salted(run, spec, pdf, records, provider_tables, classes_pd, ())
    print(f"[fh] salted no TF: {results['salted, no TF']}", file=sys.stderr, flush=True)
    results["salted, 4 freq. classes"] = run_salted(run, spec, pdf, records, provider_tables, classes_pd, classes_for)
    print(f"[fh] salted classes: {results['salted, 4 freq. classes']}", file=sys.stderr, flush=True)
    for k in results:
        results[k]["encode_s"] = today_encode["tokens"] if k.startswith("today") else encode_s
        results[k]["encode_bloom_s"] = today_encode["tokens+bloom"] if k.startswith("today") else None
        results[k]["exported_rows"] = run.n if k.startswith("today") else stored
        results[k]["table"] = "all rules"
    leaks = {"all rules": leakage(run, spec, pdf, records, classes_pd, classes_for, suite=args.suite, linked=CLUSTERS.get(id(pdf)), suite_chains=args.suite_chains)}
    print("[fh] leakage (all rules) done", file=sys.stderr, flush=True)
    for dropped in args.drop_rule:
        fewer = salted.SaltedSpec(rules=tuple(r for r in spec.rules if "+".join(r) != dropped), fields=spec.fields)
        if len(fewer.rules) == len(spec.rules):
            raise SystemExit(f"--drop-rule {dropped}: no such rule; rules: {[ '+'.join(r) for r in spec.rules]}")
        pdf_f, encode_f, stored_f = salted_tables(run, fewer, tag="_without_" + dropped.replace("+", "_"))
        attach_records(run, pdf_f)
        name = f"salted, no TF, without {dropped}"
        results[name] = run_salted(run, fewer, pdf_f, records, provider_tables, classes_pd, ())
        results[name].update(encode_s=encode_f, exported_rows=stored_f, table=f"without {dropped}")
        leaks[f"without {dropped}"] = leakage(run, fewer, pdf_f, records, classes_pd, (), suite=False, linked=CLUSTERS.get(id(pdf_f)), suite_chains=args.suite_chains)
        print(f"[fh] {name}: {results[name]}", file=sys.stderr, flush=True)
    load_end = load_avg()
    if args.json:
        args.json.write_text(json.dumps({"persons": args.persons, "records": run.n, "results": results, "leakage": leaks, "load": [load_start, load_end]}, indent=1, default=str))
    print_report(run, results, leaks, load_start, load_end)
    if today_encode.get("cached"):
        print(f"(today's encode times measured by an earlier run on this population, load then {today_encode['load']})")


def print_report(run, results, leaks, load_start, load_end) -> None:
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
    row("encode at providers s (today: tokens, no Bloom)", lambda k, r: f"{r['encode_s']:.1f}")
    row("encode at providers s (today: + Bloom filters)", lambda k, r: f"{r['encode_bloom_s']:.1f}" if r.get("encode_bloom_s") else "")
    row("u at providers s", lambda k, r: f"{r['u_provider_s']:.1f}" if "u_provider_s" in r else "")
    row("train s", lambda k, r: f"{r['train_s']:.1f}")
    row("predict+cluster s", lambda k, r: f"{r['predict_cluster_s']:.1f}")
    row("train+link s / today's", lambda k, r: f"{(r['train_s'] + r['predict_cluster_s'] + r.get('u_provider_s', 0)) / (base['train_s'] + base['predict_cluster_s']):.2f}")
    today_col = lambda k: k.startswith("today")  # noqa: E731
    L = lambda k: leaks[results[k]["table"]]  # noqa: E731
    for qi in ("given_name", "family_name", "dob_year", "dob", "postcode_district"):
        row(f"rank alignment: {qi} recovered (gp)", lambda k, r, qi=qi: pct(L(k)["rank_today" if today_col(k) else "rank_salted"][qi]))
    row("re-identified: given+family+yob+district unique", lambda k, r: pct(L(k)["reid_today" if today_col(k) else "reid_salted"]))
    if "suite_today" in leaks["all rules"]:
        for qi in ("given_name", "family_name", "year_of_birth", "postcode_district"):
            row(f"attack suite: {qi} recovered (gp)", lambda k, r, qi=qi: pct(L(k).get("suite_today", {}).get(qi)) if today_col(k) else pct(L(k).get("suite_salted", {}).get("any_rule", {}).get(qi)))
    for tag, what in (("eq", "shared record key"), ("eqp", "per-rule pseudonyms")):
        for f in ("family_name", "given_name", "dob_year", "postcode_district"):
            row(f"cross-rule classes ({what}): {f} recovered", lambda k, r, f=f, tag=tag: "" if today_col(k) else pct(L(k).get(f"{tag}_recovered:{f}")))
            row(f"cross-rule classes ({what}): {f}, in class > 5", lambda k, r, f=f, tag=tag: "" if today_col(k) else pct(L(k).get(f"{tag}_gt5:{f}")))
        if tag == "eq":
            row("attack suite on those family chains (6+ records)", lambda k, r: "" if today_col(k) else pct(L(k).get("suite_chains:family_name")))
        row(f"re-identified, + cross-rule classes ({what})", lambda k, r, tag=tag: "" if today_col(k) else pct(L(k).get(f"reid_salted_{tag}")))
    row("block sizes -> family+year (true joint)", lambda k, r: "" if today_col(k) else pct(L(k).get("size_align:family_year")))
    row("block sizes -> given+family (true joint)", lambda k, r: "" if today_col(k) else pct(L(k).get("size_align:names")))
    for f in ("given_name", "family_name"):
        row(f"best guess of {f} from its class (exact dist.)", lambda k, r, f=f: pct(leaks["all rules"].get(f"class_guess:{f}")) if "classes" in k else pct(leaks["all rules"].get(f"class_guess_none:{f}")))
    for i, b in enumerate(leaks["all rules"]["blocks"]):
        def blocks_of(k, r, rule=b["rule"]):
            found = [x for x in L(k)["blocks"] if x["rule"] == rule] if not today_col(k) else []
            if not found:
                return ""
            x = found[0]
            return f"{pct(x['in_1'])} / {pct(x['in_2_5'])} / {pct(x['in_gt5'])}; {x['largest']}"

        row(f"rule {b['rule']}: rows in blocks 1 / 2-5 / >5; largest", blocks_of)
    print(f"frequency hiding: persons={run.pop.persons} records={run.n} seed={run.pop.seed} load(1/5/15) start {load_start} end {load_end}")
    print_table(["measure", *names], rows)


if __name__ == "__main__":
    main()
