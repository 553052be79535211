"""The ``natlink`` command: parse, call one function of :mod:`natlink.commands`, print. Progress on stderr."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Callable, TypeVar

import typer
from rich.console import Console

from natlink.errors import NatlinkError

# Locals are never shown in a traceback: they may hold what a user mistakenly gave for a key reference.
app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Privacy-preserving record linkage on Spark.",
    pretty_exceptions_show_locals=False,
)
keys_app = typer.Typer(no_args_is_help=True, help="Make keys: token keys, manifest signing keys, Spark secrets.")
app.add_typer(keys_app, name="keys")
model_app = typer.Typer(no_args_is_help=True, help="Propose a model from the datasets (model init).")
app.add_typer(model_app, name="model")
keyservice_app = typer.Typer(no_args_is_help=True, help="The pseudonymisation key service (docs/keyservice.md).")
app.add_typer(keyservice_app, name="keyservice")
# Messages are never wrapped at a width (a pipe or a log file has none): a line stays one line.
err = Console(stderr=True, soft_wrap=True)
R = TypeVar("R")

ENV_OPTION = typer.Option(None, "--environment", "-e", help="environment YAML (conf/environments/*.yaml)")
LOCAL_ENV_OPTION = typer.Option(Path("conf/environments/local.yaml"), "--environment", "-e", help="environment YAML")
MANIFESTS_OPTION = typer.Option(..., "--manifest", "-m", help="token table manifest (repeat per dataset)")
VERBOSE_OPTION = typer.Option(False, "--verbose", "-v", help="also show Spark's and Splink's warnings and natlink's progress log")
SIGNING_KEY_OPTION = typer.Option(
    None, "--signing-key", help="reference of the manifest signing key (default: $NATLINK_SIGNING_KEY)"
)


@app.callback()
def _root() -> None:
    """natlink: pseudonymise, train, link and report on Spark."""


def _setup_logging(verbose: bool) -> None:
    """natlink's own warnings always reach stderr; Spark's (log4j, from the JVM's start) and
    Splink's only with ``--verbose``. ``NATLINK_SPARK_LOG_LEVEL`` overrides Spark's level."""
    from natlink import commands

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("py4j").setLevel(logging.WARNING)
    # Splink's warnings (e.g. "level not observed") are natlink's to report, by name (linkage.train).
    logging.getLogger("splink").setLevel(logging.WARNING if verbose else logging.ERROR)
    commands.spark_console(verbose)


def _out() -> Console:
    """The console for results on stdout: a terminal's width, else wide enough for whole tables
    (rich would wrap them at 80 columns in a pipe or a file)."""
    return Console() if sys.stdout.isatty() else Console(width=1000)


def _call(verbose: bool, status: str | None, command: Callable[[], R]) -> R:
    """Run one command; a NatlinkError becomes one red line and exit code 2, never a traceback."""
    _setup_logging(verbose)
    try:
        if status is None:
            return command()
        with err.status(status):
            return command()
    except NatlinkError as error:
        err.print(f"[bold red]error:[/] {error}")
        raise typer.Exit(code=2) from None


@app.command()
def demo(
    config: Path = typer.Option(Path("conf/demo.yaml"), help="demo config (YAML)"),
    persons: int | None = typer.Option(None, help="override the number of synthetic persons"),
    output: Path | None = typer.Option(None, help="override the output folder"),
    verbose: bool = VERBOSE_OPTION,
) -> None:
    """Synthesise, tokenise, train, link and evaluate on an embedded synthetic sample."""
    from natlink import commands
    from natlink.config import DemoConfig, load, project_root, resolve

    def run():
        root = project_root()
        cfg = load(resolve(config), DemoConfig)
        overrides = {k: v for k, v in {"persons": persons, "output_dir": str(output) if output else None}.items() if v is not None}
        if overrides:
            cfg = cfg.model_copy(update=overrides)
        with err.status("natlink demo") as status:
            return commands.demo(cfg, root=root, progress=lambda msg: (status.update(msg), err.print(f"[dim]-[/] {msg}")))

    result = _call(verbose, None, run)
    for line in [*result.deliveries, result.link]:
        err.print(line)
    err.print(f"clusters: {result.clusters_path}   model: {result.model_path}")
    err.print("step seconds: " + ", ".join(f"{k}={v}" for k, v in result.timings.items()))
    print(result.summary_line())


@app.command("run")
def run_cmd(
    config: Path = typer.Option(Path("conf/run.yaml"), help="run config (YAML): datasets, key reference, model, link, output folder"),
    key: str | None = typer.Option(None, help="override the token key reference (env:NAME, file:PATH)"),
    output: Path | None = typer.Option(None, help="override the output folder"),
    data_dir: str | None = typer.Option(None, help="override the folder that fills {data_dir} in the dataset configs"),
    run_id: str | None = typer.Option(None, help="link run id (default: derived from the inputs, so a rerun changes nothing)"),
    truth: Path | None = typer.Option(None, help="truth table (synthetic data only): precision, recall and F1"),
    verbose: bool = VERBOSE_OPTION,
) -> None:
    """Tokenise every dataset, train, link and report in ONE Spark application (the production path)."""
    from natlink import commands

    overrides = {"key": key, "output_dir": str(output) if output else None, "data_dir": data_dir, "run_id": run_id,
                 "truth": str(truth) if truth else None}

    def go():
        with err.status("natlink run") as status:
            return commands.run(config, progress=lambda msg: (status.update(msg), err.print(f"[dim]-[/] {msg}")), **overrides)

    result = _call(verbose, None, go)
    for line in result.summary_lines():
        err.print(line)
    print(json.dumps({"run_id": result.link.run_id, "status": result.link.status, "clusters": str(result.output_dir / "tables" / "clusters"),
                      "report": str(result.report) if result.report else None}))


@app.command()
def profile(
    dataset_config: Path = typer.Argument(..., help="dataset config (conf/datasets/NAME.yaml)"),
    data_dir: str | None = typer.Option(None, "--data-dir", help="fills {data_dir} in the source path"),
    json_out: Path | None = typer.Option(None, "--json", help="also write the profile as JSON here"),
    verbose: bool = VERBOSE_OPTION,
) -> None:
    """Data quality of one dataset before linking: completeness, invalid values by reason, regions."""
    from natlink import commands
    from natlink.provider.profile import render

    report = _call(verbose, f"profiling {dataset_config}", lambda: commands.profile(dataset_config, data_dir=data_dir))
    render(report, _out())
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2), encoding="utf-8")
        err.print(f"profile written to {json_out}")


@app.command()
def tokenise(
    dataset: Path = typer.Option(..., help="dataset config (YAML), e.g. conf/datasets/gp.yaml"),
    key: str = typer.Option(..., help="key reference: env:NAME, file:PATH or a registered provider"),
    out: Path = typer.Option(..., help="output folder: <dataset> token table, quarantine, manifest"),
    data_dir: str | None = typer.Option(None, help="fills {data_dir} in the dataset's source path"),
    environment: Path = LOCAL_ENV_OPTION,
    project: str | None = typer.Option(None, help="derive every subkey for this project"),
    run_id: str | None = typer.Option(
        None, help="run id (default: derived from the delivery, so rerunning it replaces its own quarantine rows); "
        "reusing one for a different delivery is refused"),
    signing_key: str | None = SIGNING_KEY_OPTION,
    model: Path = typer.Option(
        Path("conf/model.yaml"), help="the model the centre will train: with 'encoding: salted' (the default) block-salted "
        "tokens for its rules, which hide value frequencies from the linkage centre; conf/model_deterministic.yaml: one "
        "token per field and value"),
    keyservice: Path | None = typer.Option(
        None, help="the provider's key service config (federated mode): inner tokens from the key service, "
        "--key is then the providers' encoding key (docs/keyservice.md)"),
    verbose: bool = VERBOSE_OPTION,
) -> None:
    """At a data provider: standardise and tokenise one dataset into a token table + signed manifest."""
    from natlink import commands

    manifest = _call(
        verbose, f"natlink tokenise {dataset}",
        lambda: commands.tokenise(dataset, key, out, data_dir=data_dir, environment=environment, project=project,
                                  run_id=run_id, signing_key=signing_key, model_config=model, keyservice=keyservice),
    )
    err.print(manifest.summary_line())
    err.print(f"run {manifest['run_id']}; key fingerprint {manifest.key_fingerprint}")
    print(manifest.path)


@app.command()
def train(
    manifest: list[Path] = MANIFESTS_OPTION,
    config: Path = typer.Option(Path("conf/model.yaml"), help="model settings (YAML)"),
    out: Path = typer.Option(..., help="where to write the model JSON (its sidecar goes beside it)"),
    overwrite: bool = typer.Option(False, help="replace an existing model file"),
    environment: Path | None = ENV_OPTION,
    verbose: bool = VERBOSE_OPTION,
) -> None:
    """Train a Splink model on token tables and save it with a sidecar."""
    from natlink import commands

    path = _call(verbose, None, lambda: commands.train(manifest, config, out, overwrite=overwrite, environment=environment))
    print(f"model={path}")


@app.command("link")
def link_cmd(
    manifest: list[Path] = MANIFESTS_OPTION,
    model_path: Path = typer.Option(..., "--model", help="trained model JSON"),
    tables: Path = typer.Option(..., help="folder of the output Delta tables"),
    run_id: str = typer.Option(..., help="run id: rerunning a completed run id changes nothing"),
    config: Path = typer.Option(Path("conf/link.yaml"), help="link settings (YAML)"),
    mode: str | None = typer.Option(None, help="auto | full | incremental (default from config)"),
    carry_ids_from: Path | None = typer.Option(None, help="after a key rotation: the old linkage's tables folder, whose person ids this first run keeps"),
    environment: Path | None = ENV_OPTION,
    verbose: bool = VERBOSE_OPTION,
) -> None:
    """Link token tables: clusters, edges, person_index, id_events and runs in Delta."""
    from natlink import commands

    summary = _call(
        verbose, None,
        lambda: commands.link(manifest, model_path, tables, run_id, link_config=config, mode=mode, environment=environment,
                              carry_ids_from=carry_ids_from),
    )
    err.print(summary.summary_line())
    err.print(f"timings {summary.timings}")
    print(json.dumps({"run_id": summary.run_id, "status": summary.status, "mode": summary.mode, "counts": summary.counts}, default=int))


@app.command()
def extract(
    project: Path = typer.Option(..., help="project config (conf/projects/NAME.yaml): allow-listed columns per dataset"),
    tables: Path = typer.Option(..., help="folder of the link run's Delta tables"),
    manifest: list[Path] = MANIFESTS_OPTION,
    out: Path = typer.Option(..., help="extracts folder: OUT/<project>/<dataset> (Delta) and extract.json"),
    run_id: str = typer.Option("latest", help="the completed link run to extract from"),
    environment: Path | None = ENV_OPTION,
    verbose: bool = VERBOSE_OPTION,
) -> None:
    """A research project's extract: its allow-listed columns, person ids random per project, rows shuffled."""
    from natlink import commands

    result = _call(verbose, f"natlink extract {project}", lambda: commands.extract(project, tables, manifest, out, run_id=run_id, environment=environment))
    err.print(result.summary_line())
    print(result.path)


@app.command()
def discover(
    tables: Path = typer.Option(..., help="folder of the link run's Delta tables"),
    manifest: list[Path] = typer.Option(..., "--manifest", "-m", help="token table manifests of the population"),
    probe: Path | None = typer.Option(
        None, help="one person's tokens: a token-table manifest of one record, or a JSON object of tk_* columns "
        "(see above for how a probe is made)"),
    token_column: str | None = typer.Option(None, help="look up one token column (allow-listed in conf/link.yaml) ..."),
    token: str | None = typer.Option(None, help="... equal to this token"),
    model_path: Path | None = typer.Option(None, "--model", help="model JSON (needed with --probe)"),
    config: Path = typer.Option(Path("conf/link.yaml"), help="link settings (threshold, allowed lookup columns)"),
    environment: Path | None = ENV_OPTION,
    verbose: bool = VERBOSE_OPTION,
) -> None:
    """List the datasets (and record counts) that hold a person, from tokens only.

    Either --token-column with --token (one token, e.g. of tk_nhs_number), or --probe with --model.
    Arguments are checked before Spark starts.

    How a probe is made: the centre holds no key and cannot make tokens. The provider that knows
    the person writes their identifiers as a one-row CSV with the same columns as its extract and
    runs `natlink tokenise --dataset <its dataset YAML> --key <the same key> --out probe/ --data-dir
    <folder of the CSV>`; the centre passes --probe probe/<dataset>.manifest.json (the manifest is
    signed and its key fingerprint must be the population's). A JSON object {"tk_nhs_number": "...",
    ...} of that row's tk_* columns works too. Every lookup is audited in TABLES/discover_audit.
    """
    from natlink import commands

    found = _call(
        verbose, None,
        lambda: commands.discover(
            tables, manifest, token_column=token_column, token=token, probe=probe, model_path=model_path,
            link_config=config, environment=environment,
        ),
    )
    print(json.dumps([{"person_id": d.person_id, "match_probability": d.match_probability, "datasets": d.datasets} for d in found]))


@app.command("probe")
def probe_cmd(
    key: str = typer.Option(..., help="key reference: the provider's key, or with --keyservice the providers' encoding key"),
    token_column: str = typer.Option("tk_nhs_number", help="the column discover will look up (a prediction rule on its own)"),
    keyservice: Path | None = typer.Option(None, help="the provider's key service config (federated mode)"),
    model_config: Path = typer.Option(Path("conf/model.yaml"), "--model", help="the salted model the tables were tokenised for"),
    project: str | None = typer.Option(None, help="the project the tables were tokenised for"),
    dataset: Path | None = typer.Option(None, help="the dataset config the tables were tokenised with (when the model reads identifiers it declares)"),
    verbose: bool = VERBOSE_OPTION,
) -> None:
    """At a provider: the token `discover --token-column ... --token` takes, for ONE value read
    from standard input (never from the command line, which other users and the shell history
    see), normalised as tokenise normalises it (an NHS number: its 10 digits)."""
    from natlink import commands

    value = sys.stdin.readline().strip()
    if not value:
        err.print("natlink probe: no value on standard input")
        raise typer.Exit(2)
    print(_call(verbose, None, lambda: commands.probe(token_column, value, key, model_config=model_config, keyservice=keyservice, project=project,
                                                             dataset=dataset)))


@app.command("evaluate")
def evaluate_cmd(
    manifest: list[Path] = MANIFESTS_OPTION,
    model_path: Path = typer.Option(..., "--model", help="trained model JSON"),
    truth: Path | None = typer.Option(None, help="truth table (Parquet: dataset, record_id, true_person_id); default: NHS-number pseudo-truth"),
    config: Path = typer.Option(Path("conf/link.yaml"), help="link settings (evaluation_thresholds)"),
    environment: Path | None = ENV_OPTION,
    verbose: bool = VERBOSE_OPTION,
) -> None:
    """Pairwise and cluster-level precision, recall and F1 at several thresholds."""
    from rich.table import Table

    from natlink import commands

    rows = _call(verbose, None, lambda: commands.evaluate(manifest, model_path, link_config=config, truth=truth, environment=environment))
    table = Table(title="accuracy by threshold (" + ("truth" if truth else "NHS-number pseudo-truth") + ")")
    cols = ["threshold", "pair_precision", "pair_recall", "pair_f1", "cluster_precision", "cluster_recall", "cluster_f1"]
    for c in cols:
        table.add_column(c)
    for r in rows:
        table.add_row(*[f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]) for c in cols])
    _out().print(table)


@app.command("blocking")
def blocking_cmd(
    manifest: list[Path] = MANIFESTS_OPTION,
    model_path: Path = typer.Option(..., "--model", help="trained model JSON"),
    truth: Path | None = typer.Option(None, help="truth table (Parquet: dataset, record_id, true_person_id); default: NHS-number pseudo-truth"),
    config: Path = typer.Option(Path("conf/link.yaml"), help="link settings (split_large_blocks)"),
    environment: Path | None = ENV_OPTION,
    verbose: bool = VERBOSE_OPTION,
) -> None:
    """What each prediction rule costs (comparisons, largest blocks) and finds (recall, marginal recall)."""
    from rich.markup import escape
    from rich.table import Table

    from natlink import commands

    got = _call(verbose, None, lambda: commands.blocking(manifest, model_path, link_config=config, truth=truth, environment=environment))
    table = Table(title=f"prediction rules on {got['records']:,} records: {got['true_pairs']:,} true pairs ({got['judge']}), "
                        f"blocking recall {_fmt(got['union_recall'])}, {got['comparisons_per_record']:.2f} comparisons per record")
    for c in ("rule", "comparisons", "per record", "unsplit", "largest blocks", "recall", "marginal recall"):
        table.add_column(c)
    for r in got["rules"]:
        table.add_row(escape(r["rule"]), f"{r['comparisons']:,}", f"{r['per_record']:.3f}", f"{r['comparisons_unsplit']:,}",
                      ", ".join(map(str, r["largest_blocks"])), _fmt(r["recall"]), _fmt(r["marginal_recall"]))
    _out().print(table)
    for s in got["block_splits"]:
        _out().print(f"{escape(s['rule'])}: {s['blocks_split']:,} blocks of more than {s['above']} records split by {', '.join(s['by'])} "
                     f"({s['records_in_them']:,} records): {s['pairs_not_compared']:,} pairs not compared")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


@app.command()
def report(
    run_id: str = typer.Argument(..., help="the link run to report on ('latest': the last completed run)"),
    tables: Path = typer.Option(..., help="folder of the link run's Delta tables"),
    model_path: Path | None = typer.Option(None, "--model", help="model JSON (default: the one the run recorded)"),
    truth: Path | None = typer.Option(None, help="truth table (Delta or Parquet: dataset, record_id, true_person_id)"),
    out: Path | None = typer.Option(None, help="HTML file to write (default: <tables>/../reports/RUN_ID.html)"),
    threshold: list[float] | None = typer.Option(None, "--threshold", help="match probability to judge at (repeat; needs --truth)"),
    environment: Path | None = ENV_OPTION,
    verbose: bool = VERBOSE_OPTION,
) -> None:
    """Write a self-contained, offline HTML report of one link run: counts only, no identifiers."""
    from natlink import commands

    path = _call(
        verbose, f"natlink report {run_id}",
        lambda: commands.report(run_id, tables, model_path=model_path, truth=truth, out=out, thresholds=threshold, environment=environment),
    )
    print(path)


@app.command()
def synth(
    persons: int = typer.Option(10_000, help="number of synthetic persons"),
    seed: int = typer.Option(42, help="random seed: the same seed gives byte-identical output"),
    output: Path | None = typer.Option(None, help="output folder (default: output/synth in the project)"),
    config: Path = typer.Option(Path("conf/synth.yaml"), help="synth config (YAML)"),
    datasets: str | None = typer.Option(None, help="comma-separated subset of the configured datasets"),
    environment: Path = LOCAL_ENV_OPTION,
    verbose: bool = VERBOSE_OPTION,
) -> None:
    """Generate a synthetic population: raw datasets with realistic errors plus truth tables."""
    from natlink import commands

    names = [d.strip() for d in datasets.split(",")] if datasets else None
    result = _call(
        verbose, f"natlink synth: {persons:,} persons",
        lambda: commands.synth(persons, seed, output, config=config, datasets=names, environment=environment),
    )
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
    manifest: list[Path] = MANIFESTS_OPTION,
    truth: Path | None = typer.Option(None, help="synthetic generator output folder (truth, truth_persons, truth_conditions)"),
    out: Path = typer.Option(..., help="output folder: prevalence (Delta) and summary.json"),
    config: Path | None = typer.Option(None, help="case study YAML, e.g. conf/case_study.yaml (default: built-in)"),
    chart: bool = typer.Option(True, help="also write OUT/prevalence_by_age_band.html"),
    environment: Path | None = ENV_OPTION,
    verbose: bool = VERBOSE_OPTION,
) -> None:
    """Multimorbidity prevalence by age band and region: linked vs unlinked (vs truth on synthetic data)."""
    from natlink import commands

    result = _call(
        verbose, "natlink case-study",
        lambda: commands.case_study(tables, manifest, out, truth=truth, config=config, chart=chart, environment=environment),
    )
    if chart:
        err.print(f"chart: {out / 'prevalence_by_age_band.html'}")
    err.print(f"table: {result.table_path}   summary: {result.summary_path}")
    for line in result.summary_lines():
        print(line)


@keys_app.command("generate")
def keys_generate(
    out: Path = typer.Option(..., "--out", help="key file to create (mode 0600; an existing file is never overwritten)"),
    kind: str = typer.Option("token", help="token (token key, Spark secret) | signing (manifest signing key)"),
) -> None:
    """Write a new random 32-byte key to a file only its owner can read; print its public facts only."""
    from natlink import commands

    made = _call(False, None, lambda: commands.generate_key(out, kind=kind))
    if made.kind == "signing":
        err.print(f"signing key written to {out} (mode 0600); public key also in {made.public_path}")
        err.print("give the public key to the linkage centre (conf/providers.yaml) and pass --signing-key " + made.reference)
        print(f"reference={made.reference} key_id={made.key_id} public_key={made.public_key}")
    else:
        err.print(f"key written to {out} (mode 0600); use it as {made.reference}")
        print(f"reference={made.reference} fingerprint={made.fingerprint}")


@model_app.command("init")
def model_init(
    dataset: list[Path] = typer.Option(..., "--dataset", "-d", help="dataset config (repeat for each dataset to link)"),
    out: Path = typer.Option(..., "--out", help="the model YAML to write (then edit it, and train with --config)"),
    data_dir: str | None = typer.Option(None, "--data-dir", help="fills {data_dir} in the source paths"),
    encoding: str = typer.Option("salted", help="salted (the default) | deterministic"),
    overwrite: bool = typer.Option(False, help="replace an existing file"),
    verbose: bool = VERBOSE_OPTION,
) -> None:
    """Propose a model YAML from the datasets' identifiers and their measured completeness, explained."""
    from natlink import commands

    made = _call(verbose, "profiling the datasets", lambda: commands.model_init(
        dataset, out, data_dir=data_dir, encoding=encoding, overwrite=overwrite))
    for line in made.explanation:
        err.print(line)
    print(f"model={made.path}")


KEYSERVICE_CONFIG_OPTION = typer.Option(Path("conf/keyservice.yaml"), "--config", help="the key service's config (YAML)")


@keyservice_app.command("serve")
def keyservice_serve(config: Path = KEYSERVICE_CONFIG_OPTION, verbose: bool = VERBOSE_OPTION) -> None:
    """Run the key service until interrupted (Ctrl-C or SIGINT); audit log as configured."""
    from natlink import commands

    _call(verbose, None, lambda: commands.keyservice_serve(config, ready=lambda url: err.print(f"natlink keyservice listening on {url}")))


@keyservice_app.command("rotate")
def keyservice_rotate(
    config: Path = KEYSERVICE_CONFIG_OPTION,
    key_out: Path = typer.Option(..., "--key-out", help="file for the new master key (mode 0600; never overwritten)"),
) -> None:
    """A new master key version, made current; restart the service, then re-tokenise (docs/keyservice.md)."""
    from natlink import commands

    made = _call(False, None, lambda: commands.keyservice_rotate(config, key_out))
    err.print(f"key version {made.version} added to {made.config} as current; restart the service and give providers its public keys")
    print(f"version={made.version} reference={made.reference}")


@keyservice_app.command("credential")
def keyservice_credential(out: Path = typer.Option(..., "--out", help="credential file to create for one provider (mode 0600)")) -> None:
    """A new provider credential: the file goes to the provider, the hash into the service config."""
    from natlink import commands

    made = _call(False, None, lambda: commands.keyservice_credential(out))
    err.print(f"credential written to {out}; the provider's config names it as {made.reference}")
    print(f"credential_sha256: \"{made.sha256}\"")


@keyservice_app.command("public-keys")
def keyservice_public_keys(
    config: Path = KEYSERVICE_CONFIG_OPTION,
    version: int | None = typer.Option(None, help="key version (default: the current one)"),
    project: str | None = typer.Option(None, help="the purposes of this project"),
    dataset: list[Path] = typer.Option([], "--dataset", help="dataset config(s): add the purposes of their declared identifiers"),
    model: Path | None = typer.Option(None, "--model", help="a salted model config: only the purposes it uses"),
) -> None:
    """Print the public key of every inner-token purpose, as the providers' configs pin them (YAML)."""
    from natlink import commands

    pins = _call(False, None, lambda: commands.keyservice_public_keys(config, version=version, project=project, datasets=dataset, model=model))
    print("public_keys:")
    for purpose, key in pins.items():
        print(f'  "{purpose}": "{key}"')


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
