#!/usr/bin/env bash
# Local cells on one machine: Postgres (one database per cell), one tansu
# broker per cell, the global tier and N shards, each on its own port.
#
#   infra/local/cells.sh up [N]     start global + N shards (default 2); idempotent
#   infra/local/cells.sh demo [N]   up, then run the demo against it
#   infra/local/cells.sh status     what runs where
#   infra/local/cells.sh down       stop everything this script started
#
# State (logs, pids, broker data, generated secrets) lives in .local/ at the
# repository root. Secrets are generated once and never printed.
#
# Brokers store to sqlite (durable across a kill -9) unless
# CELLBANK_BROKER_STORAGE=memory: tansu 0.6's sqlite engine panics in its
# idempotent-producer check under heavy concurrent load (seen with the load
# harness), after which the broker answers every request with an error.
# Memory brokers start empty, so with them each cell's database is recreated
# whenever its broker is (re)started; switching storage engines recreates both
# the databases and the broker logs (they hold each other's offsets).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
STATE="$ROOT/.local"
export PATH="$HOME/.cargo/bin:$PATH"
cmd="${1:-up}"
N="${2:-${CELLBANK_SHARDS:-2}}"
GLOBAL_PORT="${CELLBANK_GLOBAL_PORT:-8080}"
BROKER_BASE="${CELLBANK_BROKER_BASE:-19092}"
PG="postgres://postgres:postgres@127.0.0.1:5432"
case "${CELLBANK_BROKER_STORAGE:-sqlite}" in
  sqlite) STORAGE="sqlite://tansu.db" ;;
  memory) STORAGE="memory://tansu/" ;;
  *) echo "CELLBANK_BROKER_STORAGE must be sqlite or memory" >&2; exit 2 ;;
esac

log() { printf '[cells] %s\n' "$*"; }

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_bg() { # name pidfile logfile workdir -- cmd...
  local name="$1" pidf="$2" logf="$3" dir="$4"; shift 5
  if running "$pidf"; then log "$name already running (pid $(cat "$pidf"))"; return; fi
  # nohup execs the command itself, so $! is the service's own pid (setsid
  # would fork when run under job control, and `down` would miss the child).
  (cd "$dir" && exec nohup "$@" >>"$logf" 2>&1 </dev/null & echo $! >"$pidf")
  log "$name started (pid $(cat "$pidf"), log ${logf#$ROOT/})"
}

wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1; see the logs in .local/logs" >&2; return 1
}

wait_ready() {
  for _ in $(seq 1 300); do
    curl -fsS "$1/readyz" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "$1 did not become ready; see the logs in .local/logs" >&2; return 1
}

secrets() {
  mkdir -p "$STATE"
  if [ ! -f "$STATE/secrets.env" ]; then
    umask 077
    {
      echo "SIGNING_KEY=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
      echo "PAN_HMAC_KEY=$(head -c 32 /dev/urandom | base64 | tr -d '=\n')"
      echo "ADMIN_TOKEN=$(head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
      echo "INTERNAL_TOKEN=$(head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    } >"$STATE/secrets.env"
  fi
  # shellcheck disable=SC1091
  . "$STATE/secrets.env"
}

create_db() {
  PGPASSWORD=postgres psql -h 127.0.0.1 -U postgres -d postgres -tAc \
    "select 1 from pg_database where datname = '$1'" | grep -q 1 \
    || PGPASSWORD=postgres psql -h 127.0.0.1 -U postgres -d postgres -qc "create database \"$1\""
}

up() {
  bash "$ROOT/.ci/install"
  secrets
  mkdir -p "$STATE/logs" "$STATE/pids" "$STATE/brokers"
  log "building the release binaries"
  (cd "$ROOT" && cargo build --release --locked -q --bin cellbank-global --bin cellbank-shard --bin cellctl --bin cellbank-demo)
  local bin="$ROOT/target/release"

  # One database and one broker per cell.
  local cells=(global)
  for i in $(seq 1 "$N"); do cells+=("shard-$i"); done
  local idx=0
  for cell in "${cells[@]}"; do
    # A cell's database and its broker's log belong together (authorizer
    # snapshots hold log offsets, the outbox marks what was relayed). A memory
    # broker starts empty, and a switch of storage engine starts from another
    # log: then both start empty. `storage` records what the pair was made with.
    mkdir -p "$STATE/brokers/$cell"
    local marker="$STATE/brokers/$cell/storage" before=""
    [ -f "$marker" ] && before="$(cat "$marker")"
    if ! running "$STATE/pids/broker-$cell" \
      && { [ "$STORAGE" = "memory://tansu/" ] || { [ -n "$before" ] && [ "$before" != "$STORAGE" ]; }; }; then
      PGPASSWORD=postgres psql -h 127.0.0.1 -U postgres -d postgres -qc \
        "drop database if exists \"cellbank_${cell//-/_}\" with (force)" >/dev/null
      rm -f "$STATE/brokers/$cell"/tansu.db*
      [ -n "$before" ] && [ "$before" != "$STORAGE" ] \
        && log "$cell: broker storage changed ($before -> $STORAGE); database and broker log start empty"
    fi
    echo "$STORAGE" >"$marker"
    create_db "cellbank_${cell//-/_}"
    local port=$((BROKER_BASE + idx)); idx=$((idx + 1))
    if ! running "$STATE/pids/broker-$cell" && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "port $port is taken by a process this script did not start; stop it first" >&2
      exit 1
    fi
    start_bg "broker $cell :$port" "$STATE/pids/broker-$cell" "$STATE/logs/broker-$cell.log" \
      "$STATE/brokers/$cell" -- tansu broker \
      --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
      --storage-engine "$STORAGE"
    wait_port "$port"
    running "$STATE/pids/broker-$cell" || { echo "broker $cell exited; see .local/logs/broker-$cell.log" >&2; exit 1; }
  done

  local common=(
    CELLBANK__TELEMETRY__FORMAT=json
    CELLBANK__AUTH__ADMIN_TOKEN="$ADMIN_TOKEN"
    CELLBANK__AUTH__INTERNAL_TOKEN="$INTERNAL_TOKEN"
  )
  start_bg "global :$GLOBAL_PORT" "$STATE/pids/global" "$STATE/logs/global.log" "$ROOT" -- \
    env "${common[@]}" \
    CELLBANK__SERVER__PORT="$GLOBAL_PORT" \
    CELLBANK__DATABASE__URL="$PG/cellbank_global" \
    CELLBANK__KAFKA__BOOTSTRAP="127.0.0.1:$BROKER_BASE" \
    CELLBANK__AUTH__SIGNING_KEY="$SIGNING_KEY" \
    CELLBANK__AUTH__PAN_HMAC_KEY="$PAN_HMAC_KEY" \
    "$bin/cellbank-global"
  wait_ready "http://127.0.0.1:$GLOBAL_PORT"

  for i in $(seq 1 "$N"); do
    local port=$((GLOBAL_PORT + i)) broker=$((BROKER_BASE + i))
    start_bg "shard-$i :$port" "$STATE/pids/shard-$i" "$STATE/logs/shard-$i.log" "$ROOT" -- \
      env "${common[@]}" \
      CELLBANK__SHARD__ID="shard-$i" \
      CELLBANK__SHARD__PUBLIC_URL="http://127.0.0.1:$port" \
      CELLBANK__GLOBAL__URL="http://127.0.0.1:$GLOBAL_PORT" \
      CELLBANK__SERVER__PORT="$port" \
      CELLBANK__DATABASE__URL="$PG/cellbank_shard_$i" \
      CELLBANK__KAFKA__BOOTSTRAP="127.0.0.1:$broker" \
      "$bin/cellbank-shard"
    wait_ready "http://127.0.0.1:$port"
    # Read the whole list first: `grep -q` closing the pipe early would break cellctl.
    local registered
    registered=$(CELLCTL_ADMIN_TOKEN="$ADMIN_TOKEN" "$bin/cellctl" --global "http://127.0.0.1:$GLOBAL_PORT" shards list)
    if ! grep -qw "shard-$i" <<<"$registered"; then
      CELLCTL_ADMIN_TOKEN="$ADMIN_TOKEN" "$bin/cellctl" --global "http://127.0.0.1:$GLOBAL_PORT" \
        shards add --id "shard-$i" --public-url "http://127.0.0.1:$port" \
        --internal-url "http://127.0.0.1:$port" --broker "127.0.0.1:$broker" --capacity 100000 >/dev/null
      log "registered shard-$i with global"
    fi
  done
  status
}

status() {
  secrets
  log "global      http://127.0.0.1:$GLOBAL_PORT  (broker 127.0.0.1:$BROKER_BASE, db cellbank_global)"
  for i in $(seq 1 "$N"); do
    log "shard-$i     http://127.0.0.1:$((GLOBAL_PORT + i))  (broker 127.0.0.1:$((BROKER_BASE + i)), db cellbank_shard_$i)"
  done
  log "logs in .local/logs; admin token in .local/secrets.env; stop with: infra/local/cells.sh down"
  if [ -x "$ROOT/target/release/cellctl" ]; then
    CELLCTL_ADMIN_TOKEN="$ADMIN_TOKEN" "$ROOT/target/release/cellctl" --global "http://127.0.0.1:$GLOBAL_PORT" health || true
  fi
}

down() {
  shopt -s nullglob
  for pidf in "$STATE"/pids/global "$STATE"/pids/shard-* "$STATE"/pids/broker-*; do
    if running "$pidf"; then
      kill -TERM "$(cat "$pidf")" 2>/dev/null || true
      for _ in $(seq 1 50); do running "$pidf" || break; sleep 0.1; done
      running "$pidf" && kill -KILL "$(cat "$pidf")" 2>/dev/null || true
      log "stopped $(basename "$pidf")"
    fi
    rm -f "$pidf"
  done
}

case "$cmd" in
  up) up ;;
  demo)
    up
    secrets
    CELLCTL_ADMIN_TOKEN="$ADMIN_TOKEN" "$ROOT/target/release/cellbank-demo" \
      --global "http://127.0.0.1:$GLOBAL_PORT"
    log "the cells keep running; stop them with: infra/local/cells.sh down"
    ;;
  status) status ;;
  down) down ;;
  *) echo "usage: $0 up|demo|status|down [N]" >&2; exit 2 ;;
esac
