"""One before/after table from two runs of the attack suite (``run.py --json``).

    python benchmarks/attacks/run.py --persons 100000 --json benchmarks/data/attacks_det_p100000.json
    python benchmarks/attacks/run.py --persons 100000 --encoding salted --json benchmarks/data/attacks_salted_p100000.json
    python benchmarks/attacks/compare.py benchmarks/data/attacks_det_p100000.json \\
        benchmarks/data/attacks_salted_p100000.json --out benchmarks/attacks/after.md

Before: the deterministic encoding (frequency alignment alone, and with the Bloom filters decoded);
after: the block-salted encoding (no Bloom filters: its figure is the frequency alignment of every
rule slice and block key). Rows as in ``baseline.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from attacks.run import FIELDS, TARGET_FIELD, TARGET_REIDENTIFIED, pct  # noqa: E402

COMBINATIONS = ("name+band+region", "name+yob+area", "any")


def _join(j: dict | None) -> str:
    if not j:
        return ""
    return f"{pct(j['share'])} ({j['share'] * j['units']:,.0f} of {j['units']:,} {j['unit']})"


def _key(g: dict | None) -> str:
    if not g:
        return ""
    return f"found in {g['seconds']:.2f} s ({g['tried']:,} guesses)" if g["found"] else f"not found ({g['tried']:,} guesses)"


def rows(before: dict, after: dict) -> list[list[str]]:
    out = []
    b_f, b_b, a_f = before["frequency"], before["with_bloom"], after["frequency"]
    prior = after.get("prior") or before.get("prior") or {}

    def ref(k: str) -> str:
        return pct(prior[k]) if k in prior else ""

    for f in FIELDS:
        k = f"recovered:{f}"
        target = f"< {pct(TARGET_FIELD)}" if "name" in f else ""
        out.append(["a+b", f"{f} recovered", pct(b_f.get(k, 0)), pct(b_b.get(k, 0)), pct(a_f.get(k, 0)), ref(k), target])
    for c in COMBINATIONS:
        k = f"reidentified:{c}"
        out.append(["a+b", f"reidentified {c}", pct(b_f.get(k, 0)), pct(b_b.get(k, 0)), pct(a_f.get(k, 0)), ref(k),
                    f"< {pct(TARGET_REIDENTIFIED)}"])
    for k in dict.fromkeys([*before["cross"], *after["cross"]]):
        chance = after["cross"].get(k) or before["cross"][k]
        out.append(["c", f"extracts joined: {k}", _join(before["cross"].get(k)), "", _join(after["cross"].get(k)),
                    "", f"chance {pct(chance['chance'])}"])
    keys_b = {g["target"]: g for g in before["keys"]}
    keys_a = {g["target"]: g for g in after["keys"]}
    for k in dict.fromkeys([*keys_b, *keys_a]):
        out.append(["d", k, _key(keys_b.get(k)), "", _key(keys_a.get(k)), "", "not found" if k.startswith("manifest") else ""])
    return out


HEADERS = ["attack", "measure", "before: deterministic, frequency only", "before: with Bloom decode", "after: salted",
           "no token at all", "target"]


def markdown(before: dict, after: dict) -> str:
    lines = [
        f"# Attack suite before/after: deterministic vs block-salted tokens, {after['persons']:,} persons",
        "",
        f"Before ({before['records']:,} gp records): `{before['command']}`; {before['date']}; load average "
        f"(1/5/15 min) {before['load']}.  ",
        f"After ({after['records']:,} gp records): `{after['command']}`; {after['date']}; load average "
        f"(1/5/15 min) {after['load']}.  ",
        "Definitions: docs/threat_model.md. The salted tables carry no Bloom filter: their one column is "
        "the frequency alignment of every rule slice and block key, a field counting as recovered when "
        "any of them gives it away. 'No token at all': each record's commonest public value given its "
        "plaintext age band and region (`run.prior_guess`), what any encoding leaves.",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "---|" * len(HEADERS),
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows(before, after)]
    lines += ["", "Columns mapped to public features, salted: "
              + ", ".join(f"`{c}` -> {f}" for c, f in sorted(after["mapping"].items())), ""]
    for name, rep in (("before", before), ("after", after)):
        lines.append(f"Seconds, {name}: " + ", ".join(f"{k} {v:.0f}" for k, v in rep["seconds"].items()) + "  ")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path, help="run.py --json of the deterministic run")
    parser.add_argument("after", type=Path, help="run.py --json of the salted run")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    text = markdown(json.loads(args.before.read_text()), json.loads(args.after.read_text()))
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    print(text)
    return text


if __name__ == "__main__":
    main()
