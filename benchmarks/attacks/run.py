"""natlink's own privacy attack suite: one table of what an attacker recovers from natlink's outputs.

    python benchmarks/attacks/run.py                          # 100,000 persons (the baseline)
    python benchmarks/attacks/run.py --persons 5000 --out /tmp/attacks.md
    python benchmarks/attacks/run.py --attacks c              # only the cross-project joins
    python benchmarks/attacks/run.py --encoding salted        # the block-salted encoding (natlink.tokens.salted)

Builds (once, cached under benchmarks/data/) a synthetic population, the gp and hes token tables,
a link run of both and two projects' research extracts made by ``natlink extract``
(:mod:`attacks.prepare`; ``--encoding salted``: tokenised, trained and linked with
``conf/model.yaml``, cached in its own folder), then runs attacks a-d against them with only what the attacker holds
(the gp token table and manifest, the public tables in ``natlink/data``, the two extracts,
manifests' fingerprints). The truth (synthetic plaintext, the centre's project id maps) is read
only by :mod:`attacks.score`. The threat model, the attacks and the measures are described in
``docs/threat_model.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # benchmarks/: _common and the attacks package
sys.path.insert(0, str(HERE.parents[1] / "src"))

from attacks import align, bloom, crossproject, inputs, keyguess, public, score  # noqa: E402
from attacks.prepare import ENCODINGS, PROJECTS, ROOT, prepare  # noqa: E402
from natlink import config as cfgmod  # noqa: E402
from natlink.config import ModelConfig  # noqa: E402

# The targets the new encoding must meet (issue 15).
TARGET_FIELD = 0.02
TARGET_REIDENTIFIED = 0.001
# Attack c, the profile join on fewer of the shared columns: what projects sharing only these would get.
COLUMN_SETS = (("age_band", "region"), ("age_band", "region", "ltc_codes"), ("age_band", "region", "diag_01"))
FIELDS = ("given_name", "family_name", "sex", "year_of_birth", "date_of_birth", "postcode_area", "postcode_district")


@dataclass
class Report:
    persons: int
    encoding: str = "deterministic"
    records: int = 0
    frequency: dict[str, float] = field(default_factory=dict)
    with_bloom: dict[str, float] = field(default_factory=dict)
    prior: dict[str, float] = field(default_factory=dict)
    bloom_notes: list[str] = field(default_factory=list)
    cross: dict[str, crossproject.Join] = field(default_factory=dict)
    keys: list[keyguess.Guess] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    mapping: dict[str, str] = field(default_factory=dict)


def family_tail_share(table: inputs.AttackTable, mapping: dict[str, str]) -> float:
    """The attacker's estimate of the share of family names outside the published list: the share
    of records outside the list's length of most common family-name tokens."""
    columns = [c for c in table.tokens if mapping.get(c) == "family_name"]
    if not columns:
        return 0.4
    counts = table.rows[columns[0]].value_counts().to_numpy()
    listed = len(public.vocabulary([public.family_block_listed()], "family_name"))
    return float(np.clip(1 - counts[:listed].sum() / max(counts.sum(), 1), 0.05, 0.8))


PRIOR_FEATURES = ("given_name", "family_name", "sex", "dob_year", "dob", "postcode_district")


def prior_guess(table: inputs.AttackTable, blocks: list, mapping: dict[str, str]) -> align.Decoded:
    """No token at all, the reference any encoding is measured against: each record's commonest
    public value of each field given the record's plaintext columns (age band, region)."""
    plain = {mapping[c]: c for c in table.plain if c in mapping}
    out = align.Decoded()
    for feature in PRIOR_FEATURES:
        block = next((b for b in blocks if feature in b.features), None)
        if block is None:
            continue
        cond = [f for f in plain if f in block.features and f != feature]
        best = block.table.groupby([*cond, feature])["w"].sum().reset_index().sort_values("w", ascending=False, kind="stable")
        if cond:
            best = best.drop_duplicates(cond)
            lookup = dict(zip(best[cond].astype(str).agg("|".join, axis=1), best[feature]))
            guess = table.rows[[plain[f] for f in cond]].astype(str).agg("|".join, axis=1).map(lookup)
        else:
            guess = pd.Series(best[feature].iloc[0], index=table.rows.index)
        out.feature[f"prior:{feature}"] = feature
        out.values[f"prior:{feature}"] = np.where(guess.notna(), guess.astype(object), None)
    return out


def attack_table(spark, table: inputs.AttackTable, root: Path | None, report: Report) -> None:
    """Attacks a and b on one token table; scored against the truth under ``root``."""
    t = time.perf_counter()
    provisional = align.map_columns(table, [public.family_block_listed(), public.postcode_block()])
    blocks = public.knowledge(spark, table.manifest, family_tail_share=family_tail_share(table, provisional))
    mapping = align.map_columns(table, blocks)
    report.mapping = mapping
    decoded = align.frequency_attack(table, blocks, mapping)
    report.seconds["a: frequency alignment"] = time.perf_counter() - t
    t = time.perf_counter()
    results = bloom.bloom_attack(table, decoded, blocks, mapping)
    boosted = bloom.with_bloom(decoded, results)
    report.seconds["b: Bloom denoise + decode"] = time.perf_counter() - t
    for r in results:
        report.bloom_notes.append(
            f"{r.column}: grouped by {r.exact_column} (agreement {r.agreement:.2f}), {r.learnt_bigrams} bigrams learnt"
        )
    if root is not None:
        truth = score.truth_frame(root, table)
        report.frequency = score.score(decoded, truth)
        report.with_bloom = score.score(boosted, truth)
        report.prior = score.score(prior_guess(table, blocks, mapping), truth)


def attack_projects(spark, prepared, report: Report) -> None:
    """Attack c on the two projects' extracts of one link run; scored with the centre's id maps."""
    t = time.perf_counter()
    a, b = (inputs.load_extract(spark, prepared.extract(p)) for p in PROJECTS)
    partner = score.partner_persons(spark, prepared.tables, a, b)
    report.cross = crossproject.cross_project(a, b, partner)
    for columns in COLUMN_SETS:
        report.cross[f"profile on {', '.join(columns)} only"] = crossproject.profile_by_columns(a, b, partner, list(columns))
    report.seconds["c: cross-project joins"] = time.perf_counter() - t


def attack_keys(manifests: dict[str, str], report: Report) -> None:
    t = time.perf_counter()
    report.keys = keyguess.key_attack(manifests)
    report.seconds["d: key guessing"] = time.perf_counter() - t


def pct(x: float) -> str:
    return f"{100 * x:.1f}%" if x >= 0.001 or x == 0 else f"{100 * x:.3f}%"


def rows(report: Report) -> list[list[str]]:
    out = []
    for f in FIELDS if report.frequency else ():
        k = f"recovered:{f}"
        out.append(["a+b", f"{f} recovered", pct(report.frequency.get(k, 0)), pct(report.with_bloom.get(k, 0)), f"< {pct(TARGET_FIELD)}" if "name" in f else ""])
    for k in ("reidentified:name+band+region", "reidentified:name+yob+area", "reidentified:any") if report.frequency else ():
        out.append(["a+b", k.replace(":", " "), pct(report.frequency.get(k, 0)), pct(report.with_bloom.get(k, 0)), f"< {pct(TARGET_REIDENTIFIED)}"])
    for k, j in report.cross.items():
        out.append(["c", f"extracts joined: {k}", f"{pct(j.share)} ({j.hits:,.0f} of {j.units:,} {j.unit})", "",
                    f"chance {pct(j.chance)} ({j.expected:,.1f} {j.unit})"])
    for g in report.keys:
        result = f"found in {g.seconds:.2f} s" if g.found else "not found"
        out.append(["d", g.target, result, f"{g.tried} guesses", "not found" if g.target.startswith("manifest") else ""])
    return out


HEADERS = ["attack", "measure", "frequency only", "with Bloom decode", "target"]


def markdown(report: Report, command: str, load: str) -> str:
    lines = [
        f"# Attack suite, {report.encoding} tokens: {report.persons:,} persons, {report.records:,} gp records",
        "",
        f"Command: `{command}`  ",
        f"Date: {dt.date.today().isoformat()}; load average during the run (1/5/15 min): {load}  ",
        "Definitions: docs/threat_model.md. Columns c and d: the value is in 'frequency only'.",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "---|" * len(HEADERS),
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows(report)]
    if report.bloom_notes:
        lines += ["", "Bloom filters: " + "; ".join(report.bloom_notes)]
    lines += [""]
    lines += ["Seconds per attack: " + ", ".join(f"{k} {v:.0f}" for k, v in report.seconds.items()), ""]
    return "\n".join(lines)


def cache_folder(encoding: str, persons: int, seed: int) -> str:
    """benchmarks/data/<this>: one folder per encoding (the deterministic one keeps its old name);
    a salted one also per set of prediction rules (they are the block keys and the salts), so a
    changed rule in conf/model.yaml builds its own tables rather than attacking stale ones."""
    if encoding == "deterministic":
        return f"attack_p{persons}_s{seed}"
    rules = json.dumps(cfgmod.load(ROOT / "conf" / ENCODINGS[encoding], ModelConfig).blocking_rules_for_prediction)
    return f"attack_{encoding}_{hashlib.sha256(rules.encode()).hexdigest()[:8]}_p{persons}_s{seed}"


def main(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, help="also write the table as Markdown here")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here (for attacks/compare.py)")
    parser.add_argument("--attacks", default="abcd", help="which attacks to run: any of a, c, d (a also runs b)")
    parser.add_argument("--encoding", default="deterministic", choices=sorted(ENCODINGS),
                        help="the token encoding attacked (default: deterministic, the baseline)")
    args = parser.parse_args(argv)

    from _common import DATA, bench_signing, load_avg, print_table, spark_session

    bench_signing()  # prepare signs the manifests it makes; the readers verify them
    spark = spark_session(memory="4g", conf={"spark.sql.shuffle.partitions": "8"})
    t = time.perf_counter()
    prepared = prepare(spark, DATA / cache_folder(args.encoding, args.persons, args.seed), args.persons, args.seed, args.encoding)
    report = Report(args.persons, args.encoding)
    report.seconds["prepare (cached after the first run)"] = time.perf_counter() - t
    started = load_avg()
    table = inputs.load(spark, prepared.manifest)
    report.records = len(table)
    if "a" in args.attacks:
        attack_table(spark, table, prepared.root, report)
    if "c" in args.attacks:
        attack_projects(spark, prepared, report)
    if "d" in args.attacks:
        attack_keys({"gp": table.manifest["key_fingerprint"]}, report)
    load = f"{started} at the start of the attacks, {load_avg()} at the end"
    if rows(report):  # none with --attacks "" (prepare only)
        print_table(HEADERS, rows(report))
    print("; ".join(report.bloom_notes))
    print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in report.seconds.items()) + f"; load {load}")
    command = ("python benchmarks/attacks/run.py " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    if args.out:
        args.out.write_text(markdown(report, command, load), encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(as_json(report, command, load), indent=1), encoding="utf-8")
    return report


def as_json(report: Report, command: str, load: str) -> dict:
    out = dataclasses.asdict(report)
    out.update(command=command, load=load, date=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    return out


if __name__ == "__main__":
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    main()
