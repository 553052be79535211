"""Do a model's prediction rules stay flat as the population grows? Comparisons and recall per rule, ONE table.

    python benchmarks/blocking_flatness.py --persons 100000 1000000
    python benchmarks/blocking_flatness.py --persons 100000 1000000 --models conf/model.yaml conf/model_deterministic.yaml

For each population of the generator (gp + hes raw files and truth, ``_common.prepare_raw``, cached)
and each model's ``blocking_rules_for_prediction``, in DuckDB on the raw files normalised much as
natlink's standardise does (names upper-cased and trimmed, dates parsed, postcodes without spaces and
kept only in the Royal Mail format standardise checks (``natlink.provider.cleaning.UK_POSTCODE``; ZZ99
pseudo-postcodes dropped), district = the outward code, sex coded; no nickname or check-digit handling): per rule, the pairs it generates (sum over its key
groups of n choose 2, as natlink's budget check counts them) per record and the largest block; the
rule's recall (true pairs it generates) and marginal recall (true pairs no other rule generates); the
union's recall. Plaintext never leaves this process; nothing is written. The growth exponent
between the two largest sizes, applied to 60M persons (111M records), gives the projected pairs per
rule against the budget (conf/link.yaml ``max_comparisons_per_rule``).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, load_avg, prepare_raw, print_table, spark_session  # noqa: E402
from natlink.provider.cleaning import UK_POSTCODE  # noqa: E402

RECORDS_PER_PERSON = 1.855

NORMALISED = """
CREATE OR REPLACE TABLE recs AS
WITH gp AS (
  SELECT 'gp' AS dataset, patient_ref AS record_id, CAST(nhs_no AS VARCHAR) AS nhs_number, forename AS given, surname AS family,
         TRY_CAST(TRY_STRPTIME(CAST(birth_date AS VARCHAR), '%Y-%m-%d') AS DATE) AS dob, gender AS sex, postcode
  FROM read_csv('{raw}/raw/gp/*.csv', header = true, all_varchar = true)
), hes AS (
  SELECT 'hes', EPIKEY, CAST(NHS_NUMBER AS VARCHAR), GIVEN_NAME, FAMILY_NAME,
         TRY_CAST(TRY_STRPTIME(CAST(DOB AS VARCHAR), '%d/%m/%Y') AS DATE), CASE SEX WHEN '1' THEN 'M' WHEN '2' THEN 'F' END, POSTCODE
  FROM read_csv('{raw}/raw/hes/*.csv', header = true, all_varchar = true)
), u AS (SELECT * FROM gp UNION ALL SELECT * FROM hes),
v AS (SELECT *, regexp_replace(upper(postcode), '[^A-Z0-9]', '', 'g') AS compact FROM u),
w AS (SELECT *, CASE WHEN NOT starts_with(compact, 'ZZ99') AND regexp_matches(compact, '{uk_postcode}') THEN compact END AS pc FROM v)
SELECT dataset, record_id,
       nullif(regexp_replace(nhs_number, '[^0-9]', '', 'g'), '') AS tk_nhs_number,
       nullif(upper(trim(given)), '') AS tk_given_name,
       nullif(left(upper(trim(given)), 1), '') AS tk_given_initial,
       nullif(upper(trim(family)), '') AS tk_family_name,
       nullif(left(upper(trim(family)), 1), '') AS tk_family_initial,
       CAST(dob AS VARCHAR) AS tk_dob,
       CAST(year(dob) AS VARCHAR) AS tk_dob_year,
       nullif(upper(trim(sex)), '') AS tk_sex,
       pc AS tk_postcode,
       left(pc, length(pc) - 3) AS tk_postcode_district
FROM w
"""


def rules_of(model: Path) -> list[tuple[str, ...]]:
    from natlink import config as cfgmod
    from natlink.config import ModelConfig

    cfg = cfgmod.load(model, ModelConfig)
    return [tuple(r) for r in cfg.blocking_rules_for_prediction if not isinstance(r, str)]


def measure(con, raw: Path, rules: list[tuple[str, ...]]) -> dict:
    con.execute(NORMALISED.format(raw=raw, uk_postcode=UK_POSTCODE))
    con.execute(f"CREATE OR REPLACE TABLE truth AS SELECT dataset, record_id, true_person_id FROM read_parquet('{raw}/truth/*.parquet')")
    n = con.execute("SELECT count(*) FROM recs").fetchone()[0]
    cols = sorted({c for r in rules for c in r})
    con.execute(
        "CREATE OR REPLACE TABLE tp AS SELECT "
        + ", ".join(f"coalesce(l.{c} = r.{c}, false) AS eq_{c}" for c in cols)
        + " FROM (SELECT r.*, t.true_person_id FROM recs r JOIN truth t USING (dataset, record_id)) l"
        + " JOIN (SELECT r.*, t.true_person_id FROM recs r JOIN truth t USING (dataset, record_id)) r"
        + " ON l.true_person_id = r.true_person_id AND (l.dataset, l.record_id) < (r.dataset, r.record_id)"
    )
    true_pairs = con.execute("SELECT count(*) FROM tp").fetchone()[0]
    hits = [" AND ".join(f"eq_{c}" for c in r) for r in rules]
    out = {"records": n, "true_pairs": true_pairs, "rules": []}
    for i, (rule, hit) in enumerate(zip(rules, hits)):
        keys = ", ".join(rule)
        present = " AND ".join(f"{c} IS NOT NULL" for c in rule)
        pairs, largest = con.execute(
            f"SELECT coalesce(sum(k * (k - 1) // 2), 0), coalesce(max(k), 0) FROM (SELECT count(*)::BIGINT k FROM recs WHERE {present} GROUP BY {keys})"
        ).fetchone()
        others = " OR ".join(f"({h})" for j, h in enumerate(hits) if j != i) or "false"
        found, only = con.execute(f"SELECT count(*) FILTER ({hit}), count(*) FILTER (({hit}) AND NOT ({others})) FROM tp").fetchone()
        out["rules"].append({"rule": "+".join(c.removeprefix("tk_") for c in rule), "pairs": int(pairs), "largest": int(largest),
                             "recall": found / true_pairs, "marginal": only / true_pairs})
    out["union_recall"] = con.execute(f"SELECT count(*) FILTER ({' OR '.join(f'({h})' for h in hits)}) FROM tp").fetchone()[0] / true_pairs
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--models", nargs="+", default=["conf/model.yaml"])
    parser.add_argument("--project-persons", type=int, default=60_000_000)
    args = parser.parse_args()

    import duckdb

    from natlink import config as cfgmod
    from natlink.config import LinkConfig

    budget = cfgmod.load(ROOT / "conf" / "link.yaml", LinkConfig).max_comparisons_per_rule
    raws = {}
    for p in args.persons:
        from _common import DATA

        out = DATA / f"p{p}_s{args.seed}"
        raws[p] = out if (out / "_READY_raw").exists() or (out / "_READY_signed").exists() else prepare_raw(spark_session(), p, args.seed)
    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.execute("SET memory_limit = '4GB'")
    rows = []
    target = round(args.project_persons * RECORDS_PER_PERSON)
    for model in args.models:
        rules = rules_of(ROOT / model)
        measured = {p: measure(con, raws[p], rules) for p in args.persons}
        small, big = measured[args.persons[-2]] if len(args.persons) > 1 else None, measured[args.persons[-1]]
        for p, m in measured.items():
            n = m["records"]
            for i, r in enumerate(m["rules"]):
                growth = projected = "-"
                if small is not None and p == args.persons[-1]:
                    a, b = small["rules"][i]["pairs"], r["pairs"]
                    e = math.log(b / a) / math.log(n / small["records"]) if a and b else 1.0
                    growth = f"{(b / n) / (a / small['records']):.2f}x (exp {e:.2f})"
                    pairs = b * (target / n) ** e
                    projected = f"{pairs / target:.1f}/rec, {pairs:.2e}{' OVER' if pairs > budget else ''}"
                rows.append([model, f"{p:,}", f"{n:,}", r["rule"], f"{r['pairs'] / n:.2f}", r["largest"], f"{r['recall']:.4f}",
                             f"{r['marginal']:.4f}", f"{m['union_recall']:.4f}", growth, projected])
    print(f"\nblocking_flatness: seed {args.seed}; budget {budget:.0e} pairs per rule; projection to {args.project_persons:,} persons "
          f"({target:,} records); load average {load_avg()}")
    print_table(["model", "persons", "records", "rule", "pairs/record", "largest block", "recall", "marginal recall", "union recall",
                 "pairs/record growth", f"projected at {args.project_persons:,} persons"], rows)


if __name__ == "__main__":
    main()
