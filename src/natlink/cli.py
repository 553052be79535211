"""The ``natlink`` command: one verb per job, progress on stderr, clear errors."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer
from rich.console import Console

from natlink import config as cfgmod
from natlink.errors import NatlinkError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Privacy-preserving record linkage on Spark.")
err = Console(stderr=True)


@app.callback()
def _root() -> None:
    """natlink: pseudonymise, train, link and report on Spark."""


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("py4j", "splink"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _fail(error: NatlinkError) -> None:
    err.print(f"[bold red]error:[/] {error}")
    raise typer.Exit(code=2)


@app.command()
def demo(
    config: Path = typer.Option(Path("conf/demo.yaml"), help="demo config (YAML)"),
    persons: int | None = typer.Option(None, help="override the number of synthetic persons"),
    output: Path | None = typer.Option(None, help="override the output folder"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Synthesise, tokenise, train, link and evaluate on an embedded synthetic sample."""
    from natlink.commands import run_demo

    _setup_logging(verbose)
    root = cfgmod.project_root()
    try:
        cfg = cfgmod.load(config, cfgmod.DemoConfig, base_dir=root)
        overrides = {k: v for k, v in {"persons": persons, "output_dir": str(output) if output else None}.items() if v is not None}
        if overrides:
            cfg = cfg.model_copy(update=overrides)
        with err.status("natlink demo") as status:
            result = run_demo(cfg, root=root, progress=lambda msg: (status.update(msg), err.print(f"[dim]-[/] {msg}")))
    except NatlinkError as error:
        _fail(error)
    err.print(f"clusters: {result.clusters_path}   model: {result.model_path}")
    err.print("step seconds: " + ", ".join(f"{k}={v}" for k, v in result.timings.items()))
    print(result.summary_line())


@app.command()
def profile(
    dataset_config: Path = typer.Argument(..., help="dataset config (conf/datasets/NAME.yaml)"),
    data_dir: str | None = typer.Option(None, "--data-dir", help="fills {data_dir} in the source path"),
    json_out: Path | None = typer.Option(None, "--json", help="also write the profile as JSON here"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Data quality of one dataset before linking: completeness, invalid values by reason, regions."""
    import json

    from natlink.provider import profile as profmod
    from natlink.config.datasets import load_dataset
    from natlink.spark.session import get_spark

    _setup_logging(verbose)
    out = Console()
    try:
        cfg = load_dataset(dataset_config, base_dir=cfgmod.project_root())
        with err.status(f"profiling {cfg.name}"):
            spark = get_spark("natlink-profile")
            report = profmod.profile(spark, cfg, data_dir=data_dir)
    except NatlinkError as error:
        _fail(error)
    profmod.render(report, out)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2), encoding="utf-8")
        err.print(f"profile written to {json_out}")
def _spark(app: str, environment: Path | None):
    from natlink.config import EnvironmentConfig
    from natlink.spark.session import get_spark

    if environment is None:
        return get_spark(app)
    env = cfgmod.load(environment, EnvironmentConfig)
    return get_spark(app, master=env.master, conf=env.spark_conf, checkpoint_dir=env.checkpoint_dir)


ENV_OPTION = typer.Option(None, "--environment", "-e", help="environment YAML (conf/environments/*.yaml)")


@app.command()
def train(
    manifest: list[Path] = typer.Option(..., "--manifest", "-m", help="token table manifest (repeat per dataset)"),
    config: Path = typer.Option(Path("conf/model.yaml"), help="model settings (YAML)"),
    out: Path = typer.Option(..., help="where to write the model JSON (its sidecar goes beside it)"),
    overwrite: bool = typer.Option(False, help="replace an existing model file"),
    environment: Path | None = ENV_OPTION,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Train a Splink model on token tables and save it with a sidecar."""
    from natlink.linkage import train

    _setup_logging(verbose)
    try:
        cfg = cfgmod.load(config, cfgmod.ModelConfig)
        spark = _spark("natlink-train", environment)
        path = train.train_job(spark, manifests=list(manifest), cfg=cfg, out_path=out, overwrite=overwrite)
    except NatlinkError as error:
        _fail(error)
    print(f"model={path}")


@app.command("link")
def link_cmd(
    manifest: list[Path] = typer.Option(..., "--manifest", "-m", help="token table manifest (repeat per dataset)"),
    model_path: Path = typer.Option(..., "--model", help="trained model JSON"),
    tables: Path = typer.Option(..., help="folder of the output Delta tables"),
    run_id: str = typer.Option(..., help="run id: rerunning a completed run id changes nothing"),
    config: Path = typer.Option(Path("conf/link.yaml"), help="link settings (YAML)"),
    mode: str | None = typer.Option(None, help="auto | full | incremental (default from config)"),
    environment: Path | None = ENV_OPTION,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Link token tables: clusters, edges, person_index, id_events and runs in Delta."""
    import json as _json

    from natlink.linkage import run as linkrun

    _setup_logging(verbose)
    try:
        cfg = cfgmod.load(config, cfgmod.LinkConfig)
        spark = _spark("natlink-link", environment)
        summary = linkrun.run(spark, manifests=list(manifest), model_path=model_path, link_cfg=cfg, tables=tables, run_id=run_id, mode=mode)
    except NatlinkError as error:
        _fail(error)
    err.print(f"run {summary.run_id}: {summary.status} ({summary.mode}); timings {summary.timings}")
    print(_json.dumps({"run_id": summary.run_id, "status": summary.status, "mode": summary.mode, "counts": summary.counts}, default=int))


@app.command()
def discover(
    tables: Path = typer.Option(..., help="folder of the link run's Delta tables"),
    manifest: list[Path] = typer.Option(..., "--manifest", "-m", help="token table manifests of the population"),
    probe: Path | None = typer.Option(None, help="JSON object of one person's tokens (tk_* columns)"),
    token_column: str | None = typer.Option(None, help="look up one token column ..."),
    token: str | None = typer.Option(None, help="... equal to this token"),
    model_path: Path | None = typer.Option(None, "--model", help="model JSON (needed with --probe)"),
    config: Path = typer.Option(Path("conf/link.yaml"), help="link settings (threshold)"),
    environment: Path | None = ENV_OPTION,
) -> None:
    """List the datasets (and record counts) that hold a person, from tokens only."""
    import json as _json

    from natlink.outputs import discover as disc
    from natlink.linkage import model_store

    _setup_logging(False)
    try:
        spark = _spark("natlink-discover", environment)
        population = disc.load_population(spark, list(manifest))
        if token_column and token:
            found = disc.by_token(spark, tables=tables, population=population, column=token_column, value=token)
        elif probe and model_path:
            cfg = cfgmod.load(config, cfgmod.LinkConfig)
            settings, _meta = model_store.load(model_path)
            probe_df = disc.probe_frame(spark, _json.loads(probe.read_text(encoding="utf-8")))
            found = [disc.by_probe(spark, tables=tables, population=population, probe=probe_df, settings=settings, threshold=cfg.threshold_match_probability)]
        else:
            raise typer.BadParameter("give --token-column and --token, or --probe and --model")
    except NatlinkError as error:
        _fail(error)
    print(_json.dumps([{"person_id": d.person_id, "match_probability": d.match_probability, "datasets": d.datasets} for d in found]))


@app.command("evaluate")
def evaluate_cmd(
    manifest: list[Path] = typer.Option(..., "--manifest", "-m", help="token table manifest (repeat per dataset)"),
    model_path: Path = typer.Option(..., "--model", help="trained model JSON"),
    truth: Path | None = typer.Option(None, help="truth table (Parquet: dataset, record_id, true_person_id); default: NHS-number pseudo-truth"),
    config: Path = typer.Option(Path("conf/link.yaml"), help="link settings (evaluation_thresholds)"),
    environment: Path | None = ENV_OPTION,
) -> None:
    """Pairwise and cluster-level precision, recall and F1 at several thresholds."""
    from rich.table import Table

    from natlink.outputs import evaluate

    _setup_logging(False)
    try:
        cfg = cfgmod.load(config, cfgmod.LinkConfig)
        spark = _spark("natlink-evaluate", environment)
        truth_df = spark.read.parquet(str(truth)) if truth else None
        rows = evaluate.sweep_job(spark, manifests=list(manifest), model_path=model_path, thresholds=cfg.evaluation_thresholds, truth=truth_df)
    except NatlinkError as error:
        _fail(error)
    table = Table(title="accuracy by threshold (" + ("truth" if truth else "NHS-number pseudo-truth") + ")")
    cols = ["threshold", "pair_precision", "pair_recall", "pair_f1", "cluster_precision", "cluster_recall", "cluster_f1"]
    for c in cols:
        table.add_column(c)
    for r in rows:
        table.add_row(*[f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]) for c in cols])
    Console().print(table)


@app.command()
def report(
    run_id: str = typer.Argument(..., help="the link run to report on ('latest': the last completed run)"),
    tables: Path = typer.Option(..., help="folder of the link run's Delta tables"),
    model_path: Path | None = typer.Option(None, "--model", help="model JSON (default: the one the run recorded)"),
    truth: Path | None = typer.Option(None, help="truth table (Delta or Parquet: dataset, record_id, true_person_id)"),
    out: Path | None = typer.Option(None, help="HTML file to write (default: <tables>/../reports/RUN_ID.html)"),
    threshold: list[float] | None = typer.Option(None, "--threshold", help="match probability to judge at (repeat; needs --truth)"),
    environment: Path | None = ENV_OPTION,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Write a self-contained, offline HTML report of one link run: counts only, no identifiers."""
    from natlink.outputs import report as reportmod

    _setup_logging(verbose)
    try:
        spark = _spark("natlink-report", environment)
        with err.status(f"natlink report {run_id}"):
            path = reportmod.write_report(spark, tables=tables, run_id=run_id, out=out, model_path=model_path, truth=truth, thresholds=threshold or None)
    except NatlinkError as error:
        _fail(error)
    print(path)


@app.command()
def tokenise(
    dataset: Path = typer.Option(..., help="dataset config (YAML), e.g. conf/datasets/gp.yaml"),
    key: str = typer.Option(..., help="key reference: env:NAME, file:PATH or a registered provider"),
    out: Path = typer.Option(..., help="output folder: <dataset> token table, quarantine, manifest"),
    data_dir: str | None = typer.Option(None, help="fills {data_dir} in the dataset's source path"),
    environment: Path = typer.Option(Path("conf/environments/local.yaml"), help="environment config"),
    project: str | None = typer.Option(None, help="derive every subkey for this project"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """At a data provider: standardise and tokenise one dataset into a token table + manifest."""
    from natlink.tokens.tokenise import JobArgs, run_job

    _setup_logging(verbose)
    try:
        with err.status(f"natlink tokenise {dataset}"):
            manifest = run_job(JobArgs(str(dataset), key, str(out), data_dir, str(environment), project))
    except NatlinkError as error:
        _fail(error)
    q = manifest["quarantined"]["tokenise"]
    err.print(
        f"{manifest.dataset}: {manifest['rows_in']} rows in, {manifest.rows} tokenised, "
        f"{sum(q.values())} quarantined {q or ''}; key fingerprint {manifest.key_fingerprint}"
    )
    print(manifest.path)


@app.command()
def rekey(
    manifest: Path = typer.Option(..., help="manifest of the token table to re-key"),
    project: str = typer.Option(..., help="project name (part of every derived subkey)"),
    project_key: str = typer.Option(..., help="reference of the project key"),
    out: Path = typer.Option(..., help="output folder for the project extract"),
    environment: Path = typer.Option(Path("conf/environments/local.yaml"), help="environment config"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Turn a token table into project-specific pseudonyms (no plaintext needed)."""
    from natlink.tokens import keys
    from natlink.spark.session import get_spark
    from natlink.tokens.rekey import rekey_table

    _setup_logging(verbose)
    root = cfgmod.project_root()
    try:
        env = cfgmod.load(environment, cfgmod.EnvironmentConfig, base_dir=root)
        key = keys.resolve(project_key)
        spark = get_spark("natlink-rekey", master=env.master, conf=env.spark_conf)
        with err.status(f"natlink rekey {manifest}"):
            result = rekey_table(spark, manifest, key, project=project, out_dir=out)
    except NatlinkError as error:
        _fail(error)
    err.print(f"{result.dataset}: {result.rows} rows re-keyed for project {project}; key fingerprint {key.fingerprint}")
    print(result.path)


@app.command()
def synth(
    persons: int = typer.Option(10_000, help="number of synthetic persons"),
    seed: int = typer.Option(42, help="random seed: the same seed gives byte-identical output"),
    output: Path = typer.Option(Path("output/synth"), help="output folder"),
    config: Path = typer.Option(Path("conf/synth.yaml"), help="synth config (YAML)"),
    datasets: str | None = typer.Option(None, help="comma-separated subset of the configured datasets"),
    environment: Path = typer.Option(Path("conf/environments/local.yaml"), help="Spark environment (YAML)"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Generate a synthetic population: raw datasets with realistic errors plus truth tables."""
    from natlink.synth import generate as synthmod
    from natlink.spark.session import get_spark
    from natlink.config.synth import load_synth_config

    _setup_logging(verbose)
    root = cfgmod.project_root()
    try:
        cfg = load_synth_config(config if config.is_absolute() else root / config)
        env = cfgmod.load(environment, cfgmod.EnvironmentConfig, base_dir=root)
        spark = get_spark("natlink-synth", master=env.master, conf=env.spark_conf)
        names = [d.strip() for d in datasets.split(",")] if datasets else None
        with err.status(f"natlink synth: {persons:,} persons"):
            result = synthmod.generate(spark, output, persons=persons, seed=seed, config=cfg, datasets=names)
    except NatlinkError as error:
        _fail(error)
    rate = result.total_records / max(result.seconds, 1e-9)
    err.print("step seconds: " + ", ".join(f"{k}={v}" for k, v in result.steps.items()))
    err.print(f"truth: {result.truth}   persons: {result.truth_persons}   conditions: {result.truth_conditions}")
    print("dataset\trecords\tformat\tpath")
    for name, count in result.records.items():
        print(f"{name}\t{count}\t{result.formats[name]}\t{result.datasets[name]}")
    print(f"persons={result.persons} records={result.total_records} seconds={result.seconds:.1f} records_per_s={rate:.0f}")



@app.command("case-study")
def case_study_cmd(
    tables: Path = typer.Option(..., help="the link run's tables folder (holds clusters)"),
    manifest: list[Path] = typer.Option(..., "--manifest", "-m", help="token table manifest (repeat per dataset)"),
    truth: Path | None = typer.Option(None, help="synthetic generator output folder (truth, truth_persons, truth_conditions)"),
    out: Path = typer.Option(..., help="output folder: prevalence (Delta) and summary.json"),
    config: Path | None = typer.Option(None, help="case study YAML, e.g. conf/case_study.yaml (default: built-in)"),
    chart: bool = typer.Option(True, help="also write OUT/prevalence_by_age_band.html"),
    environment: Path | None = ENV_OPTION,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Multimorbidity prevalence by age band and region: linked vs unlinked (vs truth on synthetic data)."""
    from natlink.config.case_study import load_config as load_case_study_config
    from natlink.outputs import case_study

    _setup_logging(verbose)
    try:
        cfg = load_case_study_config(config)
        spark = _spark("natlink-case-study", environment)
        with err.status("natlink case-study"):
            result = case_study.run(spark, tables=tables, manifests=list(manifest), truth_dir=truth, out=out, cfg=cfg)
    except NatlinkError as error:
        _fail(error)
    if chart:
        page = case_study.write_chart_html(case_study.prevalence_chart_spec(result.rows), out / "prevalence_by_age_band.html")
        err.print(f"chart: {page}")
    err.print(f"table: {result.table_path}   summary: {result.summary_path}")
    for line in result.summary_lines():
        print(line)


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
