"""The attacked data: a synthetic population, token tables, a link run, two project extracts, the truth.

What the attacker gets: the gp token table and its manifest (attacks a, b, d), and the research
extracts that ``natlink extract`` made from one link run of gp and hes for two projects
(``projects/alpha.yaml`` and ``projects/beta.yaml`` beside this file; attack c). What only the
scorer gets: ``plain/gp``, the standardised, normalised plaintext of the very records that were
tokenised (the values the tokens were computed from), keyed by record id; the synthetic truth; and
the linkage centre's map from its person ids to each project's random ids
(``tables/projects/<project>/person_ids``). Nothing here is an attack; it only builds data with
natlink's own verbs, the way providers, a key custodian and a linkage centre would. Manifests are
signed with ``NATLINK_SIGNING_KEY`` (the benchmarks' or the tests' own key).

``encoding``: ``deterministic`` (``conf/model_deterministic.yaml``, the former default's tokens and Bloom filters) or
``salted`` (the providers tokenise with ``conf/model.yaml``, whose prediction rules are
part of the encoding, and the centre trains with it; ``natlink.tokens.salted``). Each encoding
has its own cache folder (the caller names it).

Keys are obviously fake benchmark keys (never a deployment key).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

# Obviously fake key, for attacking synthetic data only.
FAKE_MASTER_KEY = b"attack-bench-key-not-secret-0001"
DATASET = "gp"
DATASETS = ("gp", "hes")
PROJECTS = ("alpha", "beta")
RUN_ID = "attack-run"
ENCODINGS = {"deterministic": "model_deterministic.yaml", "salted": "model.yaml"}


@dataclass(frozen=True)
class Prepared:
    root: Path
    persons: int
    seed: int
    encoding: str = "deterministic"

    @property
    def model_config(self) -> Path:
        return ROOT / "conf" / ENCODINGS[self.encoding]

    @property
    def manifest(self) -> Path:
        return self.manifests[DATASET]

    @property
    def manifests(self) -> dict[str, Path]:
        return {d: self.root / "tokens" / f"{d}.manifest.json" for d in DATASETS}

    @property
    def truth(self) -> Path:
        return self.root / "plain" / DATASET

    @property
    def tables(self) -> Path:
        return self.root / "tables"

    def extract(self, project: str) -> Path:
        return self.root / "extracts" / project


def project_config(project: str):
    from natlink.config import load
    from natlink.config.project import ProjectConfig

    return load(HERE / "projects" / f"{project}.yaml", ProjectConfig)


def model(prepared: Prepared):
    from natlink import config as cfgmod
    from natlink.config import ModelConfig

    return cfgmod.load(prepared.model_config, ModelConfig)


def prepare(spark, out: Path, persons: int, seed: int = 42, encoding: str = "deterministic") -> Prepared:
    """Synthesise ``persons``; tokenise gp and hes (``encoding``); train and link; extract for two
    projects (cached on disk)."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding {encoding!r}: one of {sorted(ENCODINGS)}")
    out = Path(out)
    prepared = Prepared(out, persons, seed, encoding)
    steps = [("_READY_tokens", _tokenise), ("_READY_linked", _link), ("_READY_extracts", _extract)]
    stale = False
    for marker, step in steps:
        # A marker holds the digest of the settings its step read; another digest (or an earlier
        # step made again) makes the step run again rather than attack outputs of other settings.
        made = (out / marker).read_text() if (out / marker).exists() else None
        if stale or made != step_digest(marker, prepared):
            step(spark, prepared)
            (out / marker).write_text(step_digest(marker, prepared))
            stale = True
    return prepared


def step_digest(marker: str, prepared: Prepared) -> str:
    """The settings files a step reads, as one digest: the model (the salts, the tokens' scheme)
    for every step, then conf/link.yaml for linking, then the two projects for the extracts."""
    import hashlib

    files = [prepared.model_config, *(ROOT / "conf" / "datasets" / f"{d}.yaml" for d in DATASETS)]
    if marker != "_READY_tokens":
        files.append(ROOT / "conf" / "link.yaml")
    if marker == "_READY_extracts":
        files += [HERE / "projects" / f"{p}.yaml" for p in PROJECTS]
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return "settings sha256 " + digest.hexdigest()


def _tokenise(spark, prepared: Prepared) -> None:
    from natlink import columns as C
    from natlink import config as cfgmod
    from natlink.commands import tokenise_delivery
    from natlink.config import DatasetConfig
    from natlink.provider.onboard import onboard
    from natlink.synth import generate as synth
    from natlink.tokens.keys import KeyMaterial
    from natlink.tokens.normalise import normalise_identifiers

    out = prepared.root
    key = KeyMaterial("fake-attack-bench-key", FAKE_MASTER_KEY)
    synth.generate(spark, out, persons=prepared.persons, seed=prepared.seed, datasets=list(DATASETS))
    configs = {d: cfgmod.load(ROOT / "conf" / "datasets" / f"{d}.yaml", DatasetConfig) for d in DATASETS}
    salted = model(prepared) if prepared.encoding == "salted" else None
    for d in DATASETS:
        tokenise_delivery(spark, configs[d], key, data_dir=str(out), out=out, model=salted)
    # The scorer's truth: the same onboarding, identifiers normalised as tokenise normalises them.
    onboarded = onboard(spark, configs[DATASET], data_dir=str(out), run_id="attack-truth")
    try:
        clean = onboarded.clean
        identifiers = [c for c in C.IDENTIFIERS if c in clean.columns]
        plain = clean.select(C.RECORD_ID, *normalise_identifiers(clean, identifiers))
        plain.write.mode("overwrite").parquet(str(prepared.truth))
    finally:
        onboarded.unpersist()


def _link(spark, prepared: Prepared) -> None:
    import shutil

    from natlink import config as cfgmod
    from natlink.config import LinkConfig
    from natlink.linkage import run as linkrun
    from natlink.linkage import train

    manifests = list(prepared.manifests.values())
    trained = train.train_job(spark, manifests=manifests, cfg=model(prepared),
                              out_path=prepared.root / "model.json", overwrite=True)
    shutil.rmtree(prepared.tables, ignore_errors=True)  # a half-made run of an earlier attempt
    link_cfg = cfgmod.load(ROOT / "conf" / "link.yaml", LinkConfig)
    linkrun.run(spark, manifests=manifests, model_path=trained, link_cfg=link_cfg, tables=prepared.tables, run_id=RUN_ID)


def _extract(spark, prepared: Prepared) -> None:
    from natlink.outputs.extract import write_extract

    for project in PROJECTS:
        write_extract(spark, project=project_config(project), tables=prepared.tables,
                      manifests=list(prepared.manifests.values()), out=prepared.root / "extracts", run_id=RUN_ID)
