"""Child process of test_canary.py: tokenise + link (deterministic and block-salted), report, discover,
a project extract and error paths, with event logs on, leaving every trace behind.

    python canary_job.py ROOT

ROOT/data/raw holds the planted plaintext (the only place it may be). Everything else this
run writes goes under ROOT: token tables, quarantine, manifests, model, clusters, edges, Spark
event logs, warehouse, a copy of the checkpoint folder (natlink removes the folder itself when the
job ends) and a snapshot of spark.local.dir (shuffle/spill/broadcast files), both taken before the
session stops, log files, explain() text and the session's confs.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path


def main(root: Path) -> None:
    from natlink import config as cfgmod
    from natlink.store import delta
    from natlink.tokens import keys
    from natlink.linkage import run as linkrun
    from natlink.spark.scratch import Scratch
    from natlink.linkage import model_store
    from natlink.linkage import train
    from natlink.errors import NatlinkError
    from natlink.spark.session import get_spark
    from natlink import commands
    from natlink.tokens import reader

    logging.basicConfig(
        level=logging.DEBUG, filename=str(root / "logs" / "natlink.log"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log = logging.getLogger("canary")
    spark = get_spark(
        "natlink-canary",
        master="local[2]",
        conf={
            "spark.eventLog.enabled": "true",
            "spark.eventLog.dir": str(root / "eventlog"),
            "spark.local.dir": str(root / "local"),
            "spark.sql.warehouse.dir": str(root / "warehouse"),
            "spark.driver.memory": "2g",
            "spark.sql.shuffle.partitions": "4",
            # Keep every checkpoint until the end, so that the copy below holds all of them.
            "spark.cleaner.referenceTracking.cleanCheckpoints": "false",
        },
        checkpoint_dir=root / "checkpoints",
    )
    key = keys.resolve("env:NATLINK_CANARY_KEY")
    log.info("resolved %s (%r)", key, key)  # the key object itself goes into the log

    project = cfgmod.project_root()
    manifests = []
    for name in ("gp", "hes"):
        manifests.append(commands.tokenise(project / f"conf/datasets/{name}.yaml", "env:NATLINK_CANARY_KEY", root / "out" / "tokens",
                                           data_dir=str(root / "data"), spark=spark, model_config=project / "conf" / "model_bloom.yaml"))

    tokens = reader.with_unique_id(reader.read_token_tables(spark, manifests, expected_fingerprint=key.fingerprint)).cache()
    cfg = tolerant(cfgmod.load("conf/model_bloom.yaml", cfgmod.ModelConfig, base_dir=project))
    trained = train.train(tokens, cfg)
    path = model_store.save(trained, root / "out" / "models" / "canary.json", key_fingerprint=key.fingerprint,
                      training_manifest={"datasets": [m.dataset for m in manifests]}, overwrite=True)
    settings, _ = model_store.load(path, key_fingerprint=key.fingerprint)
    assert settings
    # The production link run: clusters, edges, person_index, id_events, runs in Delta.
    tables = root / "out" / "tables"
    # Keep the run's intermediate Parquet (edges, status, snapshots under the checkpoint dir),
    # which a real run deletes at its end, so that the scan sees everything it ever wrote.
    link_cfg = cfgmod.LinkConfig(threshold_match_probability=0.9)
    kept = Scratch(spark)  # never released
    linkrun.run(spark, manifests=manifests, model_path=path, link_cfg=link_cfg, tables=tables, run_id="canary-1", scratch=kept)
    clusters = delta.read(spark, str(tables / "clusters"))
    edges = delta.read(spark, str(tables / "edges"))

    # What data owners and researchers see: the report, discover (answered, refused), an extract.
    import hashlib
    import hmac

    commands.report("canary-1", tables, model_path=path, out=root / "out" / "report.html", min_cell_count=1)
    probe = hmac.new(key.subkey("field:nhs_number"), b"9990012345", hashlib.sha256).hexdigest()
    link_yaml = project / "conf" / "link.yaml"
    found = commands.discover(tables, manifests, token_column="tk_nhs_number", token=probe, link_config=link_yaml)
    log.info("discover found %s", found)
    for column in ("tk_sex", "tk_given_name"):
        try:
            commands.discover(tables, manifests, token_column=column, token=probe, link_config=link_yaml)
        except NatlinkError as error:
            log.error("expected failure: %s", error)
    commands.extract(project / "conf/projects/multimorbidity_example.yaml", tables, manifests, root / "out" / "extract")

    # The block-salted encoding end to end: tokenise with its model, train, link.
    salted_model = project / "conf" / "model.yaml"  # the default encoding: tokenise's default model
    salted = [
        commands.tokenise(project / f"conf/datasets/{name}.yaml", "env:NATLINK_CANARY_KEY", root / "out" / "salted",
                          data_dir=str(root / "data"), spark=spark)
        for name in ("gp", "hes")
    ]
    salted_cfg = tolerant(cfgmod.load(salted_model, cfgmod.ModelConfig))
    salted_path = train.train_job(spark, manifests=salted, cfg=salted_cfg, out_path=root / "out" / "models" / "salted.json", overwrite=True)
    linkrun.run(spark, manifests=salted, model_path=salted_path, link_cfg=link_cfg, tables=root / "out" / "salted_tables",
                run_id="canary-salted", scratch=kept)

    # explain() of every frame that touched identifiers or tokens.
    from natlink.tokens import encode
    from natlink.provider import sources, standardise

    ds = cfgmod.load(project / "conf/datasets/gp.yaml", cfgmod.DatasetConfig)
    clean = standardise.standardise(sources.read_source(spark, ds, data_dir=str(root / "data")), ds)
    frames = {"tokenise": encode.tokenise(clean, key, keep=["dataset", "record_id", "region"]), "tokens": tokens,
              "edges": edges, "clusters": clusters}
    with open(root / "out" / "explain.txt", "w", encoding="utf-8") as fh:
        for name, frame in frames.items():
            fh.write(f"== {name}\n{frame._jdf.queryExecution().toString()}\n")
            for mode in ("extended", "formatted", "cost"):
                fh.write(spark._jvm.PythonSQLUtils.explainString(frame._jdf.queryExecution(), mode) + "\n")
    (root / "out" / "confs.txt").write_text("\n".join(f"{k}={v}" for k, v in spark.sparkContext.getConf().getAll()))

    # Error paths: their messages are logged as a user would see them.
    for bad in ("file:" + str(root / "data" / "no-such.key"), "vault:x"):
        try:
            keys.resolve(bad)
        except NatlinkError as error:
            log.error("expected failure: %s", error)
    # A raw key where a reference is expected, and a link with a model of other rules.
    for bad in (os.environ["NATLINK_CANARY_KEY"], "env:" + os.environ["NATLINK_CANARY_KEY"]):
        try:
            keys.resolve(bad)
        except NatlinkError as error:
            log.error("expected failure: %s", error)
    try:
        linkrun.run(spark, manifests=salted, model_path=path, link_cfg=link_cfg, tables=root / "out" / "refused_tables", run_id="canary-refused")
    except NatlinkError as error:
        log.error("expected failure: %s", error)
    other = keys.KeyMaterial("canary:other", b"test-key-not-secret-canary-other")
    try:
        model_store.load(path, key_fingerprint=other.fingerprint)
    except NatlinkError as error:
        log.error("expected failure: %s", error)
    try:
        import pickle

        pickle.dumps(key)
    except NatlinkError as error:
        log.error("expected failure: %s", error)

    print(f"clusters={clusters.count()} edges={edges.count()}", flush=True)
    # spark.local.dir is deleted when the session stops: keep a copy of its shuffle/spill files.
    shutil.copytree(root / "local", root / "local_snapshot", dirs_exist_ok=True,
                    ignore_dangling_symlinks=True, copy_function=_copy_quiet)
    # The checkpoint folder is removed when this process ends: scan a copy of it.
    shutil.copytree(root / "checkpoints", root / "checkpoints_at_end", dirs_exist_ok=True, copy_function=_copy_quiet)
    tokens.unpersist()
    spark.stop()


def tolerant(cfg):
    """``cfg`` allowing every level but the first of each comparison to go unobserved (floored and
    recorded): 150 persons cannot show them all, and the canary is about traces, not accuracy."""
    from natlink.config import ModelConfig

    raw = cfg.model_dump()
    raw["training"]["allow_unobserved"] = {c.name: c.level_labels[1:] for c in cfg.comparisons}
    return ModelConfig.model_validate(raw)


def _copy_quiet(src, dst):
    try:
        shutil.copy2(src, dst)
    except OSError:
        pass


if __name__ == "__main__":
    root = Path(sys.argv[1])
    (root / "logs").mkdir(parents=True, exist_ok=True)
    os.chdir(root / "cwd")
    main(root)
