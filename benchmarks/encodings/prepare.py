"""The benchmark population: today's token tables (gp + hes), the truth, and the providers' plaintext.

``plain/<dataset>`` holds each tokenised record's normalised identifiers exactly as natlink's
tokenise normalises them. In the prototype it stands for what a provider holds before encoding
(the block-salted encoder reads it) and for the scorers' truth; nothing at the linkage centre reads
it. Keys are obviously fake benchmark keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATASETS = ("gp", "hes")
# Obviously fake benchmark key (never a deployment key).
FAKE_KEY_BYTES = b"bench-freqhide-key-not-secret-01"


def fake_key():
    from natlink.tokens.keys import KeyMaterial

    return KeyMaterial("bench:freqhide-not-secret", FAKE_KEY_BYTES)


@dataclass(frozen=True)
class Population:
    root: Path
    persons: int
    seed: int

    def tokens(self, dataset: str) -> Path:
        return self.root / "tokens" / dataset

    def plain(self, dataset: str) -> Path:
        return self.root / "plain" / dataset

    @property
    def truth(self) -> Path:
        return self.root / "truth"


def prepare(spark, out: Path, persons: int, seed: int = 42) -> Population:
    """Synthesise ``persons`` (gp + hes), tokenise today's way, keep the normalised plaintext (cached)."""

    from natlink import columns as C
    from natlink import config as cfgmod
    from natlink.commands import tokenise_delivery
    from natlink.config import DatasetConfig
    from natlink.provider.onboard import onboard
    from natlink.store import delta
    from natlink.synth import generate as synth
    from natlink.tokens.normalise import normalise_identifiers

    out = Path(out)
    pop = Population(out, persons, seed)
    if (out / "_READY").exists():
        return pop
    key = fake_key()
    synth.generate(spark, out, persons=persons, seed=seed, datasets=list(DATASETS))
    for name in DATASETS:
        ds = cfgmod.load(ROOT / "conf" / "datasets" / f"{name}.yaml", DatasetConfig)
        tokenise_delivery(spark, ds, key, data_dir=str(out), out=out)
        onboarded = onboard(spark, ds, data_dir=str(out), run_id="freqhide-plain")
        try:
            clean = onboarded.clean
            identifiers = [c for c in C.IDENTIFIERS if c in clean.columns]
            plain = clean.select(C.DATASET, C.RECORD_ID, C.REGION, *normalise_identifiers(clean, identifiers))
            tokenised = delta.read(spark, str(pop.tokens(name))).select(C.RECORD_ID)
            plain = plain.join(tokenised, on=C.RECORD_ID, how="left_semi")
            plain.write.mode("overwrite").parquet(str(pop.plain(name)))
        finally:
            onboarded.unpersist()
        n_tok = delta.read(spark, str(pop.tokens(name))).count()
        n_plain = spark.read.parquet(str(pop.plain(name))).count()
        if n_tok != n_plain:
            raise RuntimeError(f"{name}: {n_tok} token rows but {n_plain} plaintext rows")
    (out / "_READY").write_text("ok")
    return pop
