"""The attacked data: a synthetic population, the gp token table, two project extracts, the truth.

What the attacker gets (``AttackInputs``): the token table and its manifest, and two project
extracts made by re-keying it for two projects. What only the scorer gets: ``plain/gp``, the
standardised, normalised plaintext of the very records that were tokenised (the values the tokens
were computed from), keyed by record id. Nothing here is an attack; it only builds data with
natlink's own public verbs, the way a provider and a key custodian would.

Keys are obviously fake benchmark keys (never a deployment key).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Obviously fake keys, for attacking synthetic data only.
FAKE_MASTER_KEY = b"attack-bench-key-not-secret-0001"
FAKE_PROJECT_KEYS = {"alpha": b"attack-project-alpha-not-secret!", "beta": b"attack-project-beta-not-secret!!"}
DATASET = "gp"


@dataclass(frozen=True)
class Prepared:
    root: Path
    persons: int
    seed: int

    @property
    def manifest(self) -> Path:
        return self.root / "tokens" / f"{DATASET}.manifest.json"

    @property
    def truth(self) -> Path:
        return self.root / "plain" / DATASET

    def project_manifest(self, project: str) -> Path:
        return self.root / "projects" / project / f"{DATASET}.manifest.json"


def prepare(spark, out: Path, persons: int, seed: int = 42) -> Prepared:
    """Synthesise ``persons``, tokenise the gp dataset, re-key it for two projects (cached on disk)."""
    from natlink import columns as C
    from natlink import config as cfgmod
    from natlink.commands import tokenise_delivery
    from natlink.config import DatasetConfig
    from natlink.provider.onboard import onboard
    from natlink.synth import generate as synth
    from natlink.tokens.keys import KeyMaterial
    from natlink.tokens.normalise import normalise_identifiers
    from natlink.tokens.rekey import rekey_table

    out = Path(out)
    prepared = Prepared(out, persons, seed)
    done = out / "_READY"
    if done.exists():
        return prepared
    key = KeyMaterial("fake-attack-bench-key", FAKE_MASTER_KEY)
    synth.generate(spark, out, persons=persons, seed=seed, datasets=[DATASET])
    ds = cfgmod.load(ROOT / "conf" / "datasets" / f"{DATASET}.yaml", DatasetConfig)
    manifest = tokenise_delivery(spark, ds, key, data_dir=str(out), out=out)
    # The scorer's truth: the same onboarding, identifiers normalised as tokenise normalises them.
    onboarded = onboard(spark, ds, data_dir=str(out), run_id="attack-truth")
    try:
        clean = onboarded.clean
        identifiers = [c for c in C.IDENTIFIERS if c in clean.columns]
        plain = clean.select(C.RECORD_ID, *normalise_identifiers(clean, identifiers))
        plain.write.mode("overwrite").parquet(str(prepared.truth))
    finally:
        onboarded.unpersist()
    for project, secret in FAKE_PROJECT_KEYS.items():
        rekey_table(spark, manifest, KeyMaterial(f"fake-{project}-key", secret), project=project,
                    out_dir=out / "projects" / project)
    done.write_text("ok")
    return prepared
