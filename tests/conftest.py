"""One session-scoped local SparkSession for the whole suite (local[2], UI off, loopback)."""

from __future__ import annotations

import os
import sys

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")
# The suite's keys are obviously fake, labelled text ("test-key-not-secret-..."): natlink refuses
# them as weak unless this opt-in is set, which only the tests (and their subprocesses) do.
os.environ["NATLINK_ALLOW_TEST_KEYS"] = "1"


def pytest_addoption(parser):
    parser.addoption(
        "--skip-cluster",
        action="store_true",
        default=False,
        help="skip tests that start a real Spark standalone cluster (or set NATLINK_SKIP_CLUSTER=1)",
    )


# The files that take longest, longest first (measured: the --durations table every run prints;
# slow suite on two workers, 2026-12-02). With
# `make test` / `make test-slow` (pytest-xdist, --dist loadfile --no-loadscope-reorder) each worker
# takes the next file in collection order when it is free, so running these first keeps one
# worker from starting a ten-minute file while the other sits idle at the end.
LONGEST_FIRST = (
    "tests/linkage/test_run.py",
    "tests/jobs/test_readme_own_data.py",
    "tests/jobs/test_notebooks.py",
    "tests/cluster/test_standalone_cluster.py",
    "tests/deploy/test_monthly_cycle.py",
    "tests/jobs/test_canary.py",
    "tests/outputs/test_case_study.py",
    "tests/jobs/test_demo.py",
    "tests/privacy/test_attacks.py",
    "tests/keyservice/test_accuracy.py",
    "tests/linkage/test_carry_ids.py",
    "tests/keyservice/test_declared.py",
    "tests/benchmarks/test_accuracy_peers.py",
    "tests/outputs/test_report.py",
    "tests/jobs/test_natlink_run.py",
    "tests/tokens/test_salted.py",
    "tests/jobs/test_febrl.py",
    "tests/keyservice/test_compromise.py",
    "tests/linkage/test_run_identity.py",
    "tests/test_cli.py",
    "tests/outputs/test_discover.py",
    "tests/linkage/test_link_faults.py",
    "tests/linkage/test_link_only.py",
    "tests/provider/test_onboard.py",
    "tests/tokens/test_tokenise.py",
    "tests/store/test_delta_contract.py",
    "tests/outputs/test_extract.py",
    "tests/tokens/test_delivery.py",
    "tests/synth/test_generate.py",
    "tests/synth/test_population.py",
    "tests/keyservice/test_restart.py",
    "tests/keyservice/test_service.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))  # stable: file order kept
    if config.getoption("--skip-cluster") or os.environ.get("NATLINK_SKIP_CLUSTER") == "1":
        skip = pytest.mark.skip(reason="--skip-cluster or NATLINK_SKIP_CLUSTER=1")
        for item in items:
            if "cluster" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def manifest_signer(tmp_path_factory):
    """The suite's manifest signing key and the registry that trusts it, as a provider and a
    linkage centre configure them (NATLINK_SIGNING_KEY, NATLINK_TRUSTED_SIGNERS), so every
    tokenise signs and every reader verifies, in this process and in the ones it starts."""
    from natlink.tokens import signing

    folder = tmp_path_factory.mktemp("signing")
    made = signing.create_signing_key(folder / "test-signer.key")
    registry = signing.write_registry(folder / "providers.yaml", {"tests": (made.public_key, ["*"])})
    os.environ[signing.SIGNING_KEY_ENV] = made.reference
    os.environ[signing.TRUSTED_SIGNERS_ENV] = str(registry)
    return signing.load_signer(made.reference)


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from natlink.spark.session import get_spark

    base = tmp_path_factory.mktemp("spark")
    session = get_spark(
        "natlink-tests",
        master="local[2]",
        conf={
            "spark.sql.shuffle.partitions": "4",
            "spark.default.parallelism": "2",
            "spark.sql.warehouse.dir": str(base / "warehouse"),
            "spark.local.dir": str(base / "local"),
            "spark.driver.memory": "4g",
        },
        checkpoint_dir=base / "checkpoints",
    )
    yield session
    session.stop()


@pytest.fixture(scope="session")
def small_linkage(spark, tmp_path_factory):
    """400 synthetic persons (gp + hes) tokenised, a trained model and one completed link run r1.

    Shared by tests that only read it; tests that change it restore it (test_run_identity).
    """
    import os

    from natlink import config as cfgmod
    from natlink.commands import tokenise_delivery
    from natlink.config import DatasetConfig, LinkConfig, ModelConfig, project_root
    from natlink.linkage import run as linkrun
    from natlink.linkage import train
    from natlink.synth import generate as synth
    from natlink.tokens import keys
    from natlink.tokens.manifest import TokenManifest

    LINK = LinkConfig(threshold_match_probability=0.9, engine="spark")
    FAKE_KEY_HEX = b"test-key-not-secret-identity-000".hex()  # obviously fake, tests only
    os.environ["NATLINK_TEST_KEY"] = FAKE_KEY_HEX
    key = keys.resolve("env:NATLINK_TEST_KEY")
    base = tmp_path_factory.mktemp("identity")
    root = project_root()
    synth.generate(spark, base, persons=400, seed=5, datasets=["gp", "hes"])
    ds = {n: cfgmod.load(root / "conf" / "datasets" / f"{n}.yaml", DatasetConfig) for n in ("gp", "hes")}
    made = {n: tokenise_delivery(spark, ds[n], key, data_dir=str(base), out=base) for n in ("gp", "hes")}
    # Copies beside the originals: the first test re-tokenises hes, replacing hes.manifest.json.
    manifests = {n: TokenManifest(m.data).save(m.path.with_name(f"{n}.r1.manifest.json")) for n, m in made.items()}
    model = train.train_job(spark, manifests=list(manifests.values()), cfg=cfgmod.load(root / "conf" / "model_deterministic.yaml", ModelConfig),
                            out_path=base / "model.json")
    tables = base / "tables"
    r1 = linkrun.run(spark, manifests=list(manifests.values()), model_path=model, link_cfg=LINK, tables=tables, run_id="r1")
    return {"base": base, "key": key, "ds": ds, "manifests": manifests, "model": model, "tables": tables, "r1": r1}
