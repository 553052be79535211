"""One typed function per verb: the CLI (:mod:`natlink.cli`) and the spark-submit jobs (``jobs/``) call only these.

Each verb loads its configuration by explicit path, gets the SparkSession for its environment
(:func:`spark_for`) and calls the library; it returns a result object and prints nothing.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from natlink.config import DatasetConfig, DemoConfig, EnvironmentConfig, LinkConfig, ModelConfig, RunConfig, load, load_dataset, project_root, resolve
from natlink.config.case_study import load_config as load_case_study_config
from natlink.config import propose
from natlink.config.project import ProjectConfig
from natlink.config.synth import load_synth_config
from natlink.errors import ConfigError, NatlinkError
from natlink.linkage import model_store, train as training
from natlink.linkage import pipeline
from natlink.linkage import run as linkrun
from natlink.linkage.runs import completed_runs, completed_view
from natlink.outputs import blocking_report
from natlink.outputs import case_study as case_study_mod
from natlink.outputs import discover as disc
from natlink.outputs import evaluate as evaluation
from natlink.outputs import extract as extracts
from natlink.outputs import report as reporting
from natlink.provider import profile as profiling
from natlink.spark.session import LOG_LEVEL_ENV, get_spark
from natlink.store import delta, files
from natlink.synth import generate as synthesis
from natlink.tokens import keys, signing
from natlink.tokens.hmac_sha256 import choose_hmac_implementation
from natlink.tokens.manifest import TokenManifest
from natlink.tokens.reader import as_manifests
from natlink.linkage.salted_training import provider_u
from natlink.linkage.settings import splink_settings
from natlink.tokens.salted import SaltedScheme, block_probe as salted_block_probe
from natlink.tokens.tokenise import SaltedEncoding, tokenise_configured
from natlink.keyservice import manage as keyservice_manage

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
Paths = Sequence[str | Path]
R = TypeVar("R")


def _named_failures(verb: Callable[..., R]) -> Callable[..., R]:
    """A Spark job that fails reading a file (removed, truncated, corrupt) ends in a named error
    naming the file (:func:`natlink.store.files.named_read_failure`), never a raw Py4J traceback."""

    @functools.wraps(verb)
    def wrapped(*args, **kwargs):
        try:
            return verb(*args, **kwargs)
        except NatlinkError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated when it is a read failure, else re-raised
            named = files.named_read_failure(exc)
            if named is None:
                raise
            log.debug("%s failed reading a file", verb.__name__, exc_info=True)
            raise named from None

    return wrapped


def spark_for(app: str, environment: str | Path | None = None, *, checkpoint_dir: str | Path | None = None):
    """The SparkSession for ``environment`` (an environment YAML; None: the local defaults)."""
    if environment is None:
        return get_spark(app, checkpoint_dir=checkpoint_dir)
    env = load(resolve(environment), EnvironmentConfig)
    return get_spark(app, master=env.master, conf=spark_conf_for(env), checkpoint_dir=checkpoint_dir or env.checkpoint_dir)


def spark_console(verbose: bool) -> None:
    """Spark's log level for the sessions this process starts: WARN when ``verbose``, else ERROR
    (its warnings stay off the console), unless ``NATLINK_SPARK_LOG_LEVEL`` says otherwise."""
    os.environ.setdefault(LOG_LEVEL_ENV, "WARN" if verbose else "ERROR")


def spark_conf_for(env: EnvironmentConfig) -> dict[str, str]:
    """The environment's Spark confs, with ``spark.authenticate.secret`` resolved from its key
    reference (``auth_secret``: the secret itself is never in the YAML)."""
    conf = dict(env.spark_conf)
    if env.auth_secret is not None:
        conf["spark.authenticate.secret"] = keys.resolve_secret_text(env.auth_secret)
    return conf


def _require_files(paths: Paths, what: str, verb: str) -> None:
    """Refuse missing input files by name before Spark starts (a JVM takes seconds to start)."""
    # Manifests may also be given as loaded objects (the library's callers): only paths are checked.
    absent = [str(p) for p in paths if isinstance(p, (str, Path)) and not Path(p).is_file()]
    if absent:
        raise ConfigError(f"{verb}: {what} not found: {absent}")


def _require_folder(path: str | Path, what: str, verb: str) -> None:
    if not Path(path).exists():
        raise ConfigError(f"{verb}: {what} not found: {path}")


@dataclass(frozen=True)
class GeneratedKey:
    """What ``natlink keys generate`` made: public facts only (the key stays in its 0600 file)."""

    kind: str
    reference: str
    fingerprint: str | None = None
    public_key: str | None = None
    key_id: str | None = None
    public_path: Path | None = None


def generate_key(path: str | Path, *, kind: str = "token") -> GeneratedKey:
    """A new random 32-byte key in ``path`` (mode 0600, never overwritten).

    ``kind``: ``token`` (a token key or a Spark authentication secret; its fingerprint is
    returned) or ``signing`` (a manifest signing key; its public key, also written to ``path.pub``)."""
    if kind == "token":
        reference = keys.create_key_file(path)
        return GeneratedKey(kind, reference, fingerprint=keys.resolve(reference).fingerprint)
    if kind == "signing":
        made = signing.create_signing_key(path)
        return GeneratedKey(kind, made.reference, public_key=made.public_key, key_id=made.key_id, public_path=made.public_path)
    raise ConfigError(f"keys generate: kind {kind!r} is not 'token' or 'signing'")


# --- at a data provider ---------------------------------------------------------------------


@_named_failures
def profile(dataset_config: str | Path, *, data_dir: str | None = None, environment: str | Path | None = None) -> dict[str, Any]:
    """Data quality of one delivery (counts only): completeness, invalid values by reason, regions."""
    cfg = load_dataset(resolve(dataset_config))
    return profiling.profile(spark_for("natlink-profile", environment), cfg, data_dir=data_dir)


@_named_failures
def model_init(
    dataset_configs: Paths, out: str | Path, *, data_dir: str | None = None, encoding: str = "salted",
    name: str = "proposed", overwrite: bool = False, environment: str | Path | None = None,
) -> propose.ProposedModel:
    """Profile each dataset (counts only) and write a model YAML proposed from their identifiers'
    kinds and completeness (:func:`natlink.config.propose.propose_model`), explained in comments."""
    if Path(out).exists() and not overwrite:
        raise ConfigError(f"model init: {out} exists (give --overwrite to replace it)")
    configs = [load_dataset(resolve(p)) for p in dataset_configs]
    kinds = propose.common_identifiers(configs)  # refused before Spark starts when they disagree
    completeness = profiling.completeness(spark_for("natlink-model-init", environment), configs, data_dir=data_dir)
    model, why = propose.propose_model(kinds, completeness, name=name, encoding=encoding)
    return propose.write(out, model, why, completeness)


@_named_failures
def tokenise(
    dataset_config: str | Path,
    key: str,
    out: str | Path,
    *,
    data_dir: str | None = None,
    environment: str | Path | None = "conf/environments/local.yaml",
    project: str | None = None,
    run_id: str | None = None,
    hmac_implementation: str | None = None,
    spark=None,
    signing_key: str | None = None,
    model_config: str | Path = "conf/model.yaml",
    keyservice: str | Path | None = None,
) -> TokenManifest:
    """Standardise and tokenise one dataset into ``out/<dataset>`` (Delta) and its signed manifest.

    ``model_config``: the model the centre will train. One with ``encoding: salted`` (the default,
    ``conf/model.yaml``) makes block-salted tokens for its rules and ships the provider's u
    aggregates; a deterministic one (``conf/model_deterministic.yaml``): one token per field and value.

    The HMAC implementation is decided here, once: ``hmac_implementation`` ("auto" | "jvm" |
    "native"), else the ``NATLINK_HMAC`` environment variable, else "auto". ``signing_key``: the
    reference of the provider's manifest signing key (None: ``NATLINK_SIGNING_KEY``).

    ``keyservice``: the provider's key service config (federated mode, ``docs/keyservice.md``):
    the salted encoding's inner tokens come from the key service's OPRF and ``key`` is the
    providers' per-linkage encoding key; None: everything under ``key`` (centralised mode).
    """
    chosen = choose_hmac_implementation(hmac_implementation)
    ds = load(resolve(dataset_config), DatasetConfig)
    material = keys.resolve(key)
    signer = signing.load_signer(signing_key)
    encoding = salted_encoding(load(resolve(model_config), ModelConfig))
    if keyservice is not None:
        material, encoding = keyservice_manage.federated_encoding(resolve(keyservice), material, encoding, project=project,
                                                                  identifiers=ds.identifier_kinds)
    spark = spark or spark_for(f"natlink-tokenise-{ds.name}", environment)
    with keyservice_manage.named_failures():
        return tokenise_configured(spark, ds, material, data_dir=data_dir, out_dir=out, project=project, run_id=run_id,
                                   hmac_implementation=chosen, signer=signer, encoding=encoding)


def salted_encoding(cfg: ModelConfig) -> SaltedEncoding | None:
    """The block-salted encoding a provider tokenises with for model ``cfg`` (None: deterministic)."""
    if cfg.encoding != "salted":
        return None
    settings = splink_settings(cfg)
    aggregates = functools.partial(provider_u, settings=settings, max_pairs=cfg.training.u_max_pairs, seed=cfg.training.seed)
    return SaltedEncoding(SaltedScheme.from_model(cfg, specs=None), aggregates)  # bound to each dataset's identifiers at tokenise


@_named_failures
def tokenise_delivery(
    spark, ds: DatasetConfig, key: keys.KeyMaterial, *, data_dir: str, out: Path, run_id: str | None = None,
    signer: signing.ManifestSigner | str | None = None, model: ModelConfig | None = None,
) -> TokenManifest:
    """Onboard and tokenise one dataset into a linkage folder: ``out/tokens/<name>`` (Delta) and its
    signed manifest (``signer``; None: ``NATLINK_SIGNING_KEY``), which carries the onboarding counts;
    the quarantine rows go to ``out/tables/quarantine`` (replaced on rerun). The layout the demo,
    tests and benchmarks use."""
    return tokenise_configured(
        spark, ds, key, data_dir=data_dir, out_dir=out / "tokens", run_id=run_id,
        quarantine_table=out / "tables" / "quarantine", signer=signer, encoding=salted_encoding(model) if model else None,
    )


@_named_failures
def probe(
    column: str, value: str, key: str, *, model_config: str | Path = "conf/model.yaml", keyservice: str | Path | None = None,
    project: str | None = None, dataset: str | Path | None = None,
) -> str:
    """At a provider: the block key ``natlink discover --token-column COLUMN --token ...`` looks
    ``value`` (normalised as tokenise normalises it, e.g. an NHS number's 10 digits) up by in
    salted tables. ``key``: the provider's key (centralised), or with ``keyservice`` the
    providers' encoding key, the inner token coming from the key service (federated). ``dataset``:
    the dataset config the tables were tokenised with (None: built-in identifiers only)."""
    cfg = load(resolve(model_config), ModelConfig)
    if cfg.encoding != "salted":
        raise ConfigError(f"probe: {model_config} is not a salted model (encoding: salted): deterministic tables take the token itself")
    identifiers = load_dataset(resolve(dataset)).identifier_kinds if dataset is not None else None
    scheme = SaltedScheme.from_model(cfg, specs=None).for_identifiers(identifiers)  # refuses fields no identifier makes
    material = keys.resolve(key)
    if keyservice is None:
        return salted_block_probe(material, scheme, column, value, project=project)
    return keyservice_manage.block_probe(resolve(keyservice), material, scheme, column, value, project=project)


# --- the key custodian's service (docs/keyservice.md) ---------------------------------------


def keyservice_serve(config: str | Path, *, ready: Callable[[str], None] = lambda _url: None) -> None:
    """Run the key service of ``config`` (``conf/keyservice.yaml``) until interrupted."""
    keyservice_manage.serve(resolve(config), ready=ready)


def keyservice_rotate(config: str | Path, key_out: str | Path) -> keyservice_manage.Rotation:
    """A new master key version: a fresh key in ``key_out`` (0600), listed in ``config`` as current."""
    return keyservice_manage.rotate(resolve(config), key_out)


def keyservice_credential(out: str | Path) -> keyservice_manage.Credential:
    """A new provider credential in ``out`` (0600) and the hash the service config lists for it."""
    return keyservice_manage.new_credential(out)


def keyservice_public_keys(config: str | Path, *, version: int | None = None, project: str | None = None, datasets: Paths = (),
                           model: str | Path | None = None) -> dict[str, str]:
    """Purpose -> public key of every inner-token purpose at ``version`` (with ``datasets``' declared
    identifiers; only ``model``'s when given): what providers pin."""
    return keyservice_manage.public_keys(resolve(config), version=version, project=project, datasets=[resolve(d) for d in datasets],
                                         model=resolve(model) if model is not None else None)


# --- at the linkage centre ------------------------------------------------------------------


@_named_failures
def train(manifests: Paths, model_config: str | Path, out: str | Path, *, overwrite: bool = False, environment: str | Path | None = None) -> Path:
    """Train a Splink model on token tables and save it with its sidecar."""
    cfg = load(resolve(model_config), ModelConfig)
    _require_files(manifests, "manifest file(s)", "train")
    return training.train_job(spark_for("natlink-train", environment), manifests=list(manifests), cfg=cfg, out_path=out, overwrite=overwrite)


@_named_failures
def link(
    manifests: Paths,
    model_path: str | Path,
    tables: str | Path,
    run_id: str,
    *,
    link_config: str | Path = "conf/link.yaml",
    mode: str | None = None,
    environment: str | Path | None = None,
    carry_ids_from: str | Path | None = None,
) -> linkrun.RunSummary:
    """Link token tables into clusters, edges, person_index, id_events and runs (Delta). ``carry_ids_from``:
    after a key rotation, the old linkage's tables folder, whose person ids the first run keeps."""
    cfg = load(resolve(link_config), LinkConfig)
    _require_files(manifests, "manifest file(s)", "link")
    _require_files([model_path], "model file", "link")
    spark = spark_for("natlink-link", environment)
    return linkrun.run(spark, manifests=list(manifests), model_path=model_path, link_cfg=cfg, tables=tables, run_id=run_id, mode=mode,
                       carry_ids_from=carry_ids_from)


@_named_failures
def evaluate(
    manifests: Paths,
    model_path: str | Path,
    *,
    link_config: str | Path = "conf/link.yaml",
    truth: str | Path | None = None,
    environment: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Pairwise and cluster-level precision, recall and F1 at the configured thresholds."""
    cfg = load(resolve(link_config), LinkConfig)
    spark = spark_for("natlink-evaluate", environment)
    truth_df = spark.read.parquet(str(truth)) if truth else None
    return evaluation.sweep_job(spark, manifests=list(manifests), model_path=model_path, link_cfg=cfg, truth=truth_df)


def blocking(manifests: Paths, model_path: str | Path, *, link_config: str | Path = "conf/link.yaml", truth: str | Path | None = None,
             environment: str | Path | None = None) -> dict[str, Any]:
    """Per prediction rule: comparisons, largest blocks, recall and marginal recall (natlink.outputs.blocking_report)."""
    cfg = load(resolve(link_config), LinkConfig)
    spark = spark_for("natlink-blocking", environment)
    truth_df = spark.read.parquet(str(truth)) if truth else None
    return blocking_report.analyse_job(spark, manifests=list(manifests), model_path=model_path, link_cfg=cfg, truth=truth_df)


@_named_failures
def discover(
    tables: str | Path,
    manifests: Paths,
    *,
    token_column: str | None = None,
    token: str | None = None,
    probe: str | Path | None = None,
    model_path: str | Path | None = None,
    link_config: str | Path = "conf/link.yaml",
    environment: str | Path | None = None,
) -> list[Any]:
    """The datasets (and record counts) that hold a person, found from tokens only.

    Every argument is checked before Spark starts: a lookup by one token (``token_column`` and
    ``token``) or by a probe (``probe``, one person's tokens, with ``model_path``), never both; the
    tables folder, manifests, probe and model must exist. A probe is a JSON object of ``tk_*``
    columns, or the manifest of a one-record token table (:func:`natlink.outputs.discover.read_probe_file`).
    """
    by_token = token_column is not None or token is not None
    if by_token and not (token_column and token):
        raise ConfigError("discover: --token-column and --token go together (give both)")
    if by_token == (probe is not None):
        raise ConfigError("discover: give either --token-column and --token, or --probe with --model (not both)")
    if probe is not None and model_path is None:
        raise ConfigError("discover: --probe needs --model (the model scores the probe against the population)")
    if not Path(tables).is_dir():
        raise ConfigError(f"discover: no tables folder {tables} (the folder `natlink link --tables` wrote)")
    _require_files(manifests, "manifest file(s)", "discover")
    cfg = load(resolve(link_config), LinkConfig)
    settings = model_store.load(model_path)[0] if model_path is not None else None
    probe_tokens = disc.read_probe_file(probe) if probe is not None else None

    spark = spark_for("natlink-discover", environment)
    population = disc.load_population(spark, list(manifests))
    if by_token:
        schemes = {m.scheme.fingerprint if m.scheme else None: m.scheme for m in as_manifests(list(manifests))}
        return disc.by_token(spark, tables=tables, population=population, column=token_column, value=token,
                             allowed_columns=cfg.discover_columns, max_persons=cfg.discover_max_persons,
                             scheme=next(iter(schemes.values())) if len(schemes) == 1 else None)
    fingerprint = as_manifests(list(manifests))[0].key_fingerprint
    probe_df = disc.probe_from(spark, probe_tokens, population_fingerprint=fingerprint)
    return [disc.by_probe(spark, tables=tables, population=population, probe=probe_df, settings=settings, threshold=cfg.threshold_match_probability)]


@_named_failures
def extract(
    project_config: str | Path,
    tables: str | Path,
    manifests: Paths,
    out: str | Path,
    *,
    run_id: str = "latest",
    environment: str | Path | None = None,
) -> extracts.ExtractResult:
    """A research project's extract: allow-listed columns, random per-project person ids, rows shuffled."""
    project = load(resolve(project_config), ProjectConfig)
    spark = spark_for("natlink-extract", environment)
    return extracts.write_extract(spark, project=project, tables=tables, manifests=list(manifests), out=out, run_id=run_id)


@_named_failures
def report(
    run_id: str,
    tables: str | Path,
    *,
    model_path: str | Path | None = None,
    truth: str | Path | None = None,
    out: str | Path | None = None,
    thresholds: Sequence[float] | None = None,
    min_cell_count: int = 10,
    environment: str | Path | None = None,
) -> Path:
    """A self-contained, offline HTML report of one link run for data owners (counts only; counts
    from 1 to ``min_cell_count - 1`` withheld)."""
    spark = spark_for("natlink-report", environment)
    return reporting.write_report(spark, tables=tables, run_id=run_id, out=out, model_path=model_path, truth=truth,
                                  thresholds=list(thresholds) if thresholds else None, min_cell_count=min_cell_count)


@_named_failures
def case_study(
    tables: str | Path,
    manifests: Paths,
    out: str | Path,
    *,
    truth: str | Path | None = None,
    config: str | Path | None = None,
    chart: bool = True,
    environment: str | Path | None = None,
):
    """Multimorbidity prevalence by age band and region: linked vs unlinked (vs truth on synthetic data)."""
    cfg = load_case_study_config(config)
    spark = spark_for("natlink-case-study", environment)
    result = case_study_mod.run(spark, tables=tables, manifests=list(manifests), truth_dir=truth, out=out, cfg=cfg)
    if chart:
        case_study_mod.write_chart_html(case_study_mod.prevalence_chart_spec(result.rows), Path(out) / "prevalence_by_age_band.html")
    return result


# --- synthetic data and the demo ------------------------------------------------------------


@_named_failures
def synth(
    persons: int,
    seed: int,
    output: str | Path | None = None,
    *,
    config: str | Path = "conf/synth.yaml",
    datasets: Sequence[str] | None = None,
    environment: str | Path | None = "conf/environments/local.yaml",
):
    """A synthetic population: raw datasets with realistic errors plus truth tables (``output``
    None: ``output/synth`` under the project root)."""
    output = project_root() / "output" / "synth" if output is None else output
    cfg = load_synth_config(resolve(config))
    spark = spark_for("natlink-synth", environment)
    return synthesis.generate(spark, output, persons=persons, seed=seed, config=cfg, datasets=list(datasets) if datasets else None)


@dataclass
class DemoResult:
    metrics: evaluation.PairwiseMetrics
    records: int
    seconds: float
    output_dir: Path
    clusters_path: Path
    model_path: Path
    run_id: str
    timings: dict[str, float]
    deliveries: list[str] = field(default_factory=list)  # one reconciled line per dataset tokenised
    link: str = ""  # the link run's summary line

    def summary_line(self) -> str:
        m = self.metrics
        return (
            f"precision={m.precision:.3f} recall={m.recall:.3f} f1={m.f1:.3f} "
            f"records={self.records} seconds={round(self.seconds)}"
        )


@_named_failures
def demo(cfg: DemoConfig, *, root: Path | None = None, progress: Progress = lambda _msg: None, spark=None) -> DemoResult:
    """The end-to-end demo: synthetic population -> standardise -> tokenise -> train -> link -> evaluate."""
    root = root or project_root()
    out = _demo_output(cfg, root)
    # The demo is provider and centre at once: it signs with its own key and trusts only that.
    signer, trusted = signing.demo_signer(out / "keys", cfg.signing_key)
    progress(f"manifests signed by key {signer.key_id}; trusted signers: {trusted}")
    with signing.trusting(trusted):
        return _demo(cfg, root, progress, spark, signer)


def _demo_output(cfg: DemoConfig, root: Path) -> Path:
    return (root / cfg.output_dir).resolve() if not Path(cfg.output_dir).is_absolute() else Path(cfg.output_dir)


def _demo(cfg: DemoConfig, root: Path, progress: Progress, spark, signer: signing.ManifestSigner) -> DemoResult:
    started = time.perf_counter()
    step = pipeline.Stopwatch(progress)
    run_id = datetime.now(timezone.utc).strftime("demo-%Y%m%dT%H%M%SZ")
    out = _demo_output(cfg, root)
    model_cfg = load(cfg.model, ModelConfig, base_dir=root)
    link_cfg = load(cfg.link, LinkConfig, base_dir=root)
    datasets = [load(p, DatasetConfig, base_dir=root) for p in cfg.datasets]
    spark = spark or spark_for("natlink-demo", root / cfg.environment, checkpoint_dir=out / "_checkpoints")

    key_ref = cfg.key
    if key_ref is None:
        key_file = out / "keys" / "demo.key"
        key_ref = f"file:{key_file}" if key_file.exists() else keys.create_key_file(key_file)
    key = keys.resolve(key_ref)
    progress(f"key {key.key_id} (fingerprint {key.fingerprint})")
    progress(f"Delta tables through {delta.describe(spark)}")

    step("synth", f"synthesising {cfg.persons} persons (seed {cfg.seed})")
    generated = synthesis.generate(spark, out, persons=cfg.persons, seed=cfg.seed, datasets=[d.name for d in datasets])

    tables = out / "tables"
    previous = completed_runs(spark, tables)
    if previous and previous[-1]["key_fingerprint"] != key.fingerprint:
        # The demo owns its folder: a new demo key starts a new linkage.
        shutil.rmtree(tables)
    model_path = root / cfg.model_dir / "demo.json"
    manifests, _trained, summary = pipeline.tokenise_train_link(
        spark, datasets, key, out, model_cfg, link_cfg, signer=signer, encoding=salted_encoding(model_cfg), step=step,
        data_dir=str(out), model_path=model_path, run_id=run_id, tokenise_run_id=run_id, retrain=True,
    )
    records = sum(int(m["rows"]) for m in manifests)
    clusters_path = tables / "clusters"

    step("evaluate", "evaluating against the truth table")
    truth = spark.read.parquet(generated.truth)
    metrics = evaluation.pairwise(completed_view(spark, tables, run_id).table("clusters", this_run_only=True), truth)
    step.stop()
    seconds = time.perf_counter() - started
    log.info("demo run %s (%s): counts %s; step seconds %s", run_id, summary.mode, summary.counts, step.timings)
    return DemoResult(metrics, records, seconds, out, clusters_path, model_path, run_id, step.timings,
                      [m.summary_line() for m in manifests], summary.summary_line())


@dataclass
class RunResult:
    """What ``natlink run`` did, step by step, in one Spark application."""

    output_dir: Path
    manifests: list[TokenManifest]
    model_path: Path
    trained: bool  # False: the model on disk was trained on these very tables (a rerun)
    link: linkrun.RunSummary
    report: Path | None
    timings: dict[str, float]
    applications: dict[str, str]  # step -> Spark application id
    pairwise: evaluation.PairwiseMetrics | None = None
    cluster: evaluation.ClusterMetrics | None = None

    def summary_lines(self) -> list[str]:
        lines = [m.summary_line() for m in self.manifests]
        lines.append(f"model {self.model_path} ({'trained' if self.trained else 'unchanged: trained on these tables'})")
        lines.append(self.link.summary_line())
        if self.pairwise is not None and self.cluster is not None:
            p, c = self.pairwise, self.cluster
            lines.append(f"pairwise precision={p.precision:.4f} recall={p.recall:.4f} f1={p.f1:.4f}; "
                         f"cluster precision={c.precision:.4f} recall={c.recall:.4f} f1={c.f1:.4f}")
        lines.append(f"one Spark application {sorted(set(self.applications.values()))}; step seconds "
                     + ", ".join(f"{k}={v}" for k, v in self.timings.items()))
        return lines


@_named_failures
def run(config: str | Path | RunConfig, *, progress: Progress = lambda _msg: None, spark=None, **overrides: Any) -> RunResult:
    """The production path in one Spark application (``conf/run.yaml``): tokenise every dataset,
    train, link and report, so no step pays for a JVM of its own. A rerun on the same deliveries
    changes nothing: tokenise skips a delivery it already tokenised, train a model already trained
    on those tables, and the link run id (derived from the inputs unless given) is already completed.
    ``overrides``: RunConfig fields replacing the file's (None values ignored)."""
    cfg = config if isinstance(config, RunConfig) else load(resolve(config), RunConfig)
    cfg = cfg.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    out = Path(cfg.output_dir).resolve()
    model_cfg, link_cfg = load(resolve(cfg.model), ModelConfig), load(resolve(cfg.link), LinkConfig)
    datasets = [load(resolve(p), DatasetConfig) for p in cfg.datasets]
    if cfg.truth is not None:
        _require_folder(cfg.truth, "truth table", "run")
    key, signer = keys.resolve(cfg.key), signing.load_signer(cfg.signing_key)
    spark = spark or spark_for("natlink-run", resolve(cfg.environment), checkpoint_dir=out / "_checkpoints")
    step = pipeline.Stopwatch(progress, spark)
    manifests, trained, summary = pipeline.tokenise_train_link(
        spark, datasets, key, out, model_cfg, link_cfg, signer=signer, encoding=salted_encoding(model_cfg), step=step,
        data_dir=cfg.data_dir, model_path=out / "model.json", run_id=cfg.run_id, project=cfg.project,
    )
    pw = cl = None
    if cfg.truth is not None:
        step("evaluate", "evaluating against the truth table")
        clusters = completed_view(spark, out / "tables", summary.run_id).table("clusters", this_run_only=True)
        truth = spark.read.parquet(str(cfg.truth))
        pw, cl = evaluation.pairwise(clusters, truth), evaluation.cluster_level(clusters, truth)
    report_path = None
    if cfg.report:
        step("report", "writing the run's report")
        report_path = reporting.write_report(spark, tables=out / "tables", run_id=summary.run_id, out=out / "reports" / f"{summary.run_id}.html",
                                             model_path=out / "model.json", truth=cfg.truth)
    step.stop()
    return RunResult(out, manifests, out / "model.json", trained, summary, report_path, step.timings, step.applications, pw, cl)
