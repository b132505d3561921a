#!/usr/bin/env bash
# The chaos run, in one command: brings up fresh local cells (2 shards, 2
# global replicas, each cell with its own Postgres server, its own broker and
# its own network link), seeds customers with cards, then runs the chaos
# driver: steady mixed load through global while a seeded schedule of faults
# hits the processes; once quiet it checks every cell against what the
# partners were answered and writes report.json and report.md.
#
#   bash load-tests/chaos.sh                 the short run (3 faults of each kind), seed 1
#   bash load-tests/chaos.sh --seed 42       another schedule; the same seed replays it
#   bash load-tests/chaos.sh --long          100 faults of each kind (the figures in RELIABILITY.md)
#   bash load-tests/chaos.sh --faults-per-kind 10 --kinds kill_broker,pause_postgres
#   bash load-tests/chaos.sh --overload      no faults: capacity measured, then 10x it for 60 s
#
# Extra arguments go to the driver (load-tests/bench/src/bin/chaos). The
# cells run from .local/chaos on their own ports (18080.., brokers 18300..,
# Postgres 18500..) and are stopped at the end unless --keep is given.
# CELLBANK_PROFILE=debug uses the debug binaries (CI). Exits non-zero on
# any lost or doubled event, approval past a limit, invariant violation or
# fault the cells did not recover from.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"
seed=1 per_kind=3 keep=0 extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seed) seed="$2"; shift 2 ;;
    --long) per_kind=100; shift ;;
    --short) per_kind=3; shift ;;
    --faults-per-kind) per_kind="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    --overload) per_kind=0; extra+=(--overload-secs "${CHAOS_OVERLOAD_SECS:-60}"); shift ;;
    *) extra+=("$1"); shift ;;
  esac
done

export CELLBANK_STATE="${CELLBANK_STATE:-$ROOT/.local/chaos}"
export CELLBANK_GLOBAL_PORT="${CELLBANK_CHAOS_PORT:-18080}"
export CELLBANK_OPS_PORT=$((CELLBANK_GLOBAL_PORT + 10))
export CELLBANK_BROKER_BASE="${CELLBANK_CHAOS_BROKER_BASE:-18300}"
export CELLBANK_PG_BASE="${CELLBANK_CHAOS_PG_BASE:-18500}"
export CELLBANK_GLOBAL_REPLICAS=2 CELLBANK_CELL_PROXY=1
# tansu answers a waiting fetch only when its wait ends, so every consumer
# polls each broker every fetch wait; at the demo's 20 ms two idle cell
# brokers take 1.6 of this machine's 2 cores (100 ms: 0.54; RELIABILITY.md).
export CELLBANK_FETCH_WAIT_MS="${CELLBANK_FETCH_WAIT_MS:-100}"
PROFILE="${CELLBANK_PROFILE:-release}"
CELLS="$ROOT/infra/local/cells.sh"
credit_limit=50000
out="$CELLBANK_STATE/report-seed-$seed"

log() { printf '[chaos] %s\n' "$*"; }
finish() { [ "$keep" = 1 ] || bash "$CELLS" down >/dev/null 2>&1 || true; }
trap finish EXIT

# Fresh cells every run: the checks read whole databases.
bash "$CELLS" down >/dev/null 2>&1 || true
rm -rf "$CELLBANK_STATE"
mkdir -p "$(dirname "$CELLBANK_STATE")"
flags=(); [ "$PROFILE" = release ] && flags=(--release)
(cd "$ROOT" && cargo build "${flags[@]}" --locked -q -p cellbank-bench --bin chaos --bin netproxy)
bash "$CELLS" up 2 >"$CELLBANK_STATE.up.log" 2>&1 || { cat "$CELLBANK_STATE.up.log" >&2; exit 1; }
log "cells up (logs in ${CELLBANK_STATE#$ROOT/}/logs); seeding customers"
python3 "$ROOT/load-tests/seed.py" --global-url "http://127.0.0.1:$CELLBANK_GLOBAL_PORT" \
  --ops-url "http://127.0.0.1:$CELLBANK_OPS_PORT" --customers "${CHAOS_CUSTOMERS:-60}" \
  --credit-limit "$credit_limit" --secrets "$CELLBANK_STATE/secrets.env" --out "$CELLBANK_STATE/seed.json"
started=$(date +%s)
"${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE/chaos" --state "$CELLBANK_STATE" --seed-file "$CELLBANK_STATE/seed.json" \
  --cells-script "$CELLS" --seed "$seed" --faults-per-kind "$per_kind" --shards 2 --replicas 2 \
  --global-port "$CELLBANK_GLOBAL_PORT" --pg-base "$CELLBANK_PG_BASE" --credit-limit "$credit_limit" \
  --out "$out" "${extra[@]}"
log "seed $seed passed in $(( $(date +%s) - started )) s; report in ${out#$ROOT/}"
