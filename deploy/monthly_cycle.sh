#!/usr/bin/env bash
# natlink's monthly cycle: tokenise this month's deliveries -> link (mode from conf/link.yaml) -> report.
#
#   deploy/monthly_cycle.sh [--dry-run] [RUN_ID]
#
# RUN_ID is the delivery month, YYYY-MM (default: the current month, UTC). Idempotent by run id:
#   * tokenise: a dataset whose manifest tokens/RUN_ID/NAME.manifest.json exists is skipped
#     (the manifest is written last, so a killed tokenise is simply redone);
#   * link: skipped when the runs table holds a completed run RUN_ID (its Delta transaction id
#     natlink-run:RUN_ID); otherwise jobs/link.py, which itself replays a half-finished run
#     from the last completed run's table versions (natlink.linkage.run);
#   * report: skipped when reports/RUN_ID.html exists, and with a message when this natlink has
#     no `report` verb yet.
# A second run with the same RUN_ID therefore changes nothing: no table gets a new version.
# --dry-run prints the exact commands it would run (and what it would skip) and runs none.
#
# Layout under NATLINK_DATA:
#   deliveries/RUN_ID/raw/NAME/...   this month's raw extracts ({data_dir}/raw/NAME in conf/datasets/NAME.yaml)
#   tokens/RUN_ID/NAME (+ .manifest.json)   token tables; a dataset with no delivery this month
#                                    is linked from its latest earlier tokens/*/NAME.manifest.json
#   tables/                          clusters, edges, person_index, id_events, runs (Delta)
#   reports/RUN_ID.html
#
# Environment:
#   NATLINK_DATA        (required) the folder above, on storage the jobs can read and write
#   NATLINK_MODEL       (required) trained model JSON (its sidecar pins the key fingerprint)
#   NATLINK_KEY_REF     key *reference* for tokenise (env:NAME, file:PATH or a registered provider);
#                       never the key itself. Needed only when a dataset has to be tokenised.
#   NATLINK_SIGNING_KEY reference of the provider's manifest signing key (tokenise signs with it);
#                       the jobs inherit it (docs/keys.md)
#   NATLINK_TRUSTED_SIGNERS  registry of trusted manifest signers for link (default: conf/providers.yaml)
#   NATLINK_DATASETS    datasets to look for (default: "gp hes"), each conf/datasets/NAME.yaml
#   NATLINK_LINK_CONFIG link settings (default: conf/link.yaml)
#   NATLINK_MODEL_CONFIG the model YAML the tokens are made for (default: conf/model.yaml); the one
#                       NATLINK_MODEL was trained with (block-salted tokens depend on its rules)
#   NATLINK_HOME        the natlink checkout (default: this script's repository)
#   NATLINK_PYTHON      Python with natlink installed (default: $NATLINK_HOME/.venv/bin/python)
#   NATLINK_SUBMIT      how a job file is run (default: "$NATLINK_PYTHON", Spark local mode); on
#                       a cluster e.g. "spark-submit --master yarn --deploy-mode client --py-files
#                       dist/natlink-0.1.0.zip ..." (docs/cluster.md), word-split as given
#   NATLINK_ENVIRONMENT environment YAML passed to the jobs (--environment; default: none)
set -euo pipefail

DRY_RUN=0
RUN_ID=""
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY_RUN=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "monthly_cycle: unknown option $arg" >&2; exit 64 ;;
        *) [[ -z "$RUN_ID" ]] || { echo "monthly_cycle: one RUN_ID only" >&2; exit 64; }; RUN_ID="$arg" ;;
    esac
done
RUN_ID="${RUN_ID:-$(date -u +%Y-%m)}"
if ! [[ "$RUN_ID" =~ ^[0-9]{4}-(0[1-9]|1[0-2])$ ]]; then
    echo "monthly_cycle: run id must be a delivery month YYYY-MM, got '$RUN_ID'" >&2
    exit 64
fi

NATLINK_HOME="${NATLINK_HOME:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
: "${NATLINK_DATA:?set NATLINK_DATA to the data folder (deliveries/, tokens/, tables/, reports/)}"
: "${NATLINK_MODEL:?set NATLINK_MODEL to the trained model JSON}"
NATLINK_PYTHON="${NATLINK_PYTHON:-$NATLINK_HOME/.venv/bin/python}"
NATLINK_DATASETS="${NATLINK_DATASETS:-gp hes}"
NATLINK_LINK_CONFIG="${NATLINK_LINK_CONFIG:-conf/link.yaml}"
NATLINK_MODEL_CONFIG="${NATLINK_MODEL_CONFIG:-conf/model.yaml}"
read -r -a SUBMIT <<< "${NATLINK_SUBMIT:-$NATLINK_PYTHON}"
ENV_ARGS=()
[[ -n "${NATLINK_ENVIRONMENT:-}" ]] && ENV_ARGS=(--environment "$NATLINK_ENVIRONMENT")

DATA="$NATLINK_DATA"
DELIVERY="$DATA/deliveries/$RUN_ID"
TOKENS="$DATA/tokens/$RUN_ID"
TABLES="$DATA/tables"
REPORT="$DATA/reports/$RUN_ID.html"

cd "$NATLINK_HOME"

say() { echo "[natlink monthly $RUN_ID] $*"; }

# Print the command exactly (shell-quoted); run it unless --dry-run.
run() {
    local quoted
    printf -v quoted '%q ' "$@"
    if (( DRY_RUN )); then
        echo "DRY-RUN: ${quoted% }"
    else
        echo "+ ${quoted% }"
        "$@"
    fi
}

if (( ! DRY_RUN )); then
    mkdir -p "$DATA"
    exec 9>> "$DATA/.monthly_cycle.lock"  # append: opening it changes nothing on a no-op rerun
    flock -n 9 || { echo "monthly_cycle: another cycle holds $DATA/.monthly_cycle.lock" >&2; exit 75; }
fi

# --- 1. tokenise this month's deliveries ---------------------------------------------------------
MANIFESTS=()
for ds in $NATLINK_DATASETS; do
    manifest="$TOKENS/$ds.manifest.json"
    if [[ -f "$manifest" ]]; then
        say "tokenise $ds: already done ($manifest)"
    elif [[ -d "$DELIVERY/raw/$ds" ]]; then
        : "${NATLINK_KEY_REF:?set NATLINK_KEY_REF (a key reference such as file:/etc/natlink/keys/linkage.key) to tokenise $ds}"
        # The commands below are printed: refuse (unseen) a key given where its reference belongs.
        "$NATLINK_PYTHON" -c 'import os, sys; from natlink.tokens.keys import is_reference; sys.exit(0 if is_reference(os.environ["NATLINK_KEY_REF"]) else 1)' \
            || { echo "monthly_cycle: NATLINK_KEY_REF is not a key reference (env:NAME, file:PATH, ...); it is not shown" >&2; exit 64; }
        say "tokenise $ds: new delivery $DELIVERY/raw/$ds"
        run "${SUBMIT[@]}" jobs/tokenise.py --dataset "conf/datasets/$ds.yaml" --key "$NATLINK_KEY_REF" \
            --data-dir "$DELIVERY" --out "$TOKENS" --model-config "$NATLINK_MODEL_CONFIG" "${ENV_ARGS[@]}"
    else
        # No delivery this month: link the latest earlier tokens of this dataset.
        manifest=""
        shopt -s nullglob
        months=("$DATA"/tokens/*/)  # sorted ascending; run ids sort by month
        shopt -u nullglob
        for (( i = ${#months[@]} - 1; i >= 0; i-- )); do
            month="$(basename "${months[i]}")"
            if [[ "$month" < "$RUN_ID" && -f "${months[i]}$ds.manifest.json" ]]; then
                manifest="${months[i]}$ds.manifest.json"
                break
            fi
        done
        if [[ -z "$manifest" ]]; then
            say "tokenise $ds: no delivery this month and none before; $ds is not linked"
            continue
        fi
        say "tokenise $ds: no delivery this month; linking $manifest"
    fi
    MANIFESTS+=(--manifest "$manifest")
done
if (( ${#MANIFESTS[@]} == 0 )); then
    echo "monthly_cycle: nothing to link for $RUN_ID (no deliveries under $DATA/deliveries, no earlier tokens)" >&2
    exit 66
fi

# --- 2. link ------------------------------------------------------------------------------------
# Completed = the runs table has a commit with this run's transaction id (written last by linkrun).
if "$NATLINK_PYTHON" -c 'import sys; from natlink.store import delta; sys.exit(0 if delta.txn_version(sys.argv[1], "natlink-run:" + sys.argv[2]) is not None else 1)' \
        "$TABLES/runs" "$RUN_ID"; then
    say "link: run $RUN_ID already completed in $TABLES/runs; nothing to do"
else
    say "link: ${#MANIFESTS[@]} manifest arguments -> $TABLES (mode from the link config, auto: incremental after a completed run with the same model; person ids follow the previous run either way)"
    run "${SUBMIT[@]}" jobs/link.py "${MANIFESTS[@]}" --model "$NATLINK_MODEL" --link-config "$NATLINK_LINK_CONFIG" \
        --tables "$TABLES" --run-id "$RUN_ID" "${ENV_ARGS[@]}"
fi

# --- 3. report ---------------------------------------------------------------------------------
if [[ -f "$REPORT" ]]; then
    say "report: already written ($REPORT)"
elif ! "$NATLINK_PYTHON" -m natlink.cli report --help > /dev/null 2>&1; then
    say "report: skipped - this natlink has no 'report' verb yet (natlink report RUN_ID --tables ... --out ...)"
else
    say "report: $REPORT"
    if (( ! DRY_RUN )); then mkdir -p "$(dirname "$REPORT")"; fi
    run "$NATLINK_PYTHON" -m natlink.cli report "$RUN_ID" --tables "$TABLES" --out "$REPORT" "${ENV_ARGS[@]}"
fi
say "done"
