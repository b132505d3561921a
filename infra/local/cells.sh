#!/usr/bin/env bash
# Local cells on one machine: one Postgres server per cell (its own data
# directory and port, made and started here with the installed server
# binaries, so one cell's database can be stopped, paused or killed alone, as
# each cell has its own RDS in production), one tansu broker per cell, the
# global tier and N shards, each on its own port.
#
#   infra/local/cells.sh up [N]     start global + N shards (default 2); idempotent
#   infra/local/cells.sh demo [N]   up, then run the demo against it
#   infra/local/cells.sh status     what runs where
#   infra/local/cells.sh down       stop everything this script started
#
# State (logs, pids, broker data, generated secrets) lives in .local/ at the
# repository root (CELLBANK_STATE moves it, for a second set of cells on other
# ports beside the first). Secrets are generated once and never printed; they are in
# .local/secrets.env: global's ADMIN_TOKEN (the ops API), each shard's own
# SHARD_<i>_INTERNAL_TOKEN and SHARD_<i>_ADMIN_TOKEN, and PARTNER_KEY, the key
# of the partner local-demo (scopes events and authorizations) that `up`
# registers once global is up (again if the stored key stops working).
#
# Global serves its public API on CELLBANK_GLOBAL_PORT (8080), shard-i on
# 8080+i, and the ops API on CELLBANK_OPS_PORT (default 8080+10, loopback only).
# Global's Postgres listens on CELLBANK_PG_BASE (15432), shard-i's on 15432+i;
# their data directories are .local/pg/<cell>.
#
# CELLBANK_GLOBAL_REPLICAS=R runs R global replicas (default 1) on the same
# database and broker: replica r >= 2 serves on GLOBAL_PORT+20+r, its ops API
# on OPS_PORT+20+r. CELLBANK_CELL_PROXY=1 puts each shard cell behind its own
# network link, a netproxy process (pid file netproxy-shard-i): the shard's
# URLs and its broker are reached on port+100 through it, so stopping that
# process cuts the cell off (the chaos run's network fault).
#
# CELLBANK_PROFILE=debug runs the debug binaries (CI, which has built them
# for its tests) instead of building the release ones.
#
# tansu 0.6's sqlite schema has no index on record headers, so every record
# a fetch returns scans all headers: fetches, and with them each restart's
# log check and the brokers' CPU, grew with the log (RELIABILITY.md, finding
# 8: 57 ms per record at 250,000 headers). The index, added once per log
# file (it stays in the file), makes that lookup a b-tree search.
index_headers() {
  local db="$1" i
  command -v sqlite3 >/dev/null || { log "sqlite3 is missing: broker headers not indexed"; return 0; }
  for i in $(seq 1 50); do
    sqlite3 "$db" "PRAGMA busy_timeout = 5000;
      CREATE INDEX IF NOT EXISTS header_topition_offset ON header (topition, offset_id);" \
      >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  log "could not index the headers of $db"
}

# Brokers store to sqlite (durable across a kill -9) unless
# CELLBANK_BROKER_STORAGE=memory. tansu 0.6's sqlite engine panics in its
# idempotent-producer check (lite.rs:503) when a producer or the broker
# restarts, after which the broker answers every request with an error; so
# against sqlite the services' producers are not idempotent
# (kafka.idempotence=false: one request in flight per broker, and a retried
# record may land twice, which every consumer already absorbs). The chaos run
# (load-tests/chaos.sh) kills and pauses these brokers under load; see
# RELIABILITY.md. Memory brokers start empty, so with them each cell's
# database is recreated whenever its broker is (re)started; switching storage
# engines recreates both the databases and the broker logs (they hold each
# other's offsets).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
STATE="${CELLBANK_STATE:-$ROOT/.local}"
export PATH="$HOME/.cargo/bin:$PATH"
cmd="${1:-up}"
N="${CELLBANK_SHARDS:-2}"
[[ "${2:-}" =~ ^[0-9]+$ ]] && N="$2"
GLOBAL_PORT="${CELLBANK_GLOBAL_PORT:-8080}"
OPS_PORT="${CELLBANK_OPS_PORT:-$((GLOBAL_PORT + 10))}"
BROKER_BASE="${CELLBANK_BROKER_BASE:-19092}"
PG_BASE="${CELLBANK_PG_BASE:-15432}"
# Each cell's exporter serves its health and metrics here (+ i).
EXPORTER_BASE="${CELLBANK_EXPORTER_BASE:-$((GLOBAL_PORT + 50))}"
# The analytical dataset every cell's exporter writes (Parquet per entity,
# date and shard): query it with shard/exporter/analytics/query.py.
ANALYTICS="$STATE/analytics"
PROFILE="${CELLBANK_PROFILE:-release}"
case "$PROFILE" in
  release) BUILD_FLAGS=(--release) ;;
  debug) BUILD_FLAGS=() ;;
  *) echo "CELLBANK_PROFILE must be release or debug" >&2; exit 2 ;;
esac
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE"
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
case "${CELLBANK_BROKER_STORAGE:-sqlite}" in
  sqlite) STORAGE="sqlite://tansu.db"; IDEMPOTENCE=false ;;
  memory) STORAGE="memory://tansu/"; IDEMPOTENCE=true ;;
  *) echo "CELLBANK_BROKER_STORAGE must be sqlite or memory" >&2; exit 2 ;;
esac
# CELLBANK_PRODUCER_IDEMPOTENCE=true forces idempotent producers (to see the
# sqlite engine's failure for oneself: load-tests/chaos.sh --kinds kill_shard).
IDEMPOTENCE="${CELLBANK_PRODUCER_IDEMPOTENCE:-$IDEMPOTENCE}"

log() { printf '[cells] %s\n' "$*"; }

if [ "$OPS_PORT" -gt "$GLOBAL_PORT" ] && [ "$((GLOBAL_PORT + N))" -ge "$OPS_PORT" ]; then
  echo "shard-$N would listen on the ops port $OPS_PORT; set CELLBANK_OPS_PORT to a free port" >&2
  exit 2
fi
OPS_URL="http://127.0.0.1:$OPS_PORT"
REPLICAS="${CELLBANK_GLOBAL_REPLICAS:-1}"
PROXY="${CELLBANK_CELL_PROXY:-0}"
# The port the rest of the world uses for a cell's port: through its link.
via() { if [ "$PROXY" = 1 ]; then echo $(($1 + 100)); else echo "$1"; fi; }

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_bg() { # name pidfile logfile workdir -- cmd...
  local name="$1" pidf="$2" logf="$3" dir="$4"; shift 5
  if running "$pidf"; then log "$name already running (pid $(cat "$pidf"))"; return; fi
  # The launcher, kept in .local/run/<pidfile name>.sh, starts the service
  # again exactly as now: `cells.sh start <name>` (the chaos run's restarts).
  # nohup execs the command itself, so $! is the service's own pid (setsid
  # would fork when run under job control, and `down` would miss the child).
  local launcher; launcher="$STATE/run/$(basename "$pidf").sh"
  mkdir -p "$STATE/run"
  (umask 077; {
    echo '#!/usr/bin/env bash'
    printf 'cd %q && exec nohup' "$dir"; printf ' %q' "$@"
    printf ' >>%q 2>&1 </dev/null & echo $! >%q\n' "$logf" "$pidf"
  } >"$launcher")
  bash "$launcher"
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

token() { head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'; }

# Generates what is missing in .local/secrets.env (global's keys once, each
# shard's two tokens the first time that shard is asked for) and loads it.
secrets() {
  mkdir -p "$STATE"
  local mask; mask="$(umask)"
  umask 077
  if [ ! -f "$STATE/secrets.env" ]; then
    {
      echo "SIGNING_KEY=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
      echo "PAN_HMAC_KEY=$(head -c 32 /dev/urandom | base64 | tr -d '=\n')"
      echo "ADMIN_TOKEN=$(token)"
    } >"$STATE/secrets.env"
  fi
  # The one internal token every cell used to share is gone (issue 12).
  sed -i '/^INTERNAL_TOKEN=/d' "$STATE/secrets.env"
  for i in $(seq 1 "$N"); do
    grep -q "^SHARD_${i}_INTERNAL_TOKEN=" "$STATE/secrets.env" || echo "SHARD_${i}_INTERNAL_TOKEN=$(token)" >>"$STATE/secrets.env"
    grep -q "^SHARD_${i}_ADMIN_TOKEN=" "$STATE/secrets.env" || echo "SHARD_${i}_ADMIN_TOKEN=$(token)" >>"$STATE/secrets.env"
  done
  umask "$mask"
  # shellcheck disable=SC1091
  . "$STATE/secrets.env"
}

# shard_secret I KIND: shard-I's INTERNAL or ADMIN token.
shard_secret() { local v="SHARD_${1}_${2}_TOKEN"; printf '%s' "${!v}"; }

# Global's auth.shard_tokens as a figment dict: {shard-1="...",shard-2="..."},
# with every shard that has a token (not only 1..N: an `up 2` after an `up 3`
# must not cut global off from shard-3, which stays registered).
shard_tokens_dict() {
  local i out=""
  for i in $(sed -n 's/^SHARD_\([0-9]*\)_INTERNAL_TOKEN=.*/\1/p' "$STATE/secrets.env" | sort -n); do
    out+="${out:+,}shard-$i=\"$(shard_secret "$i" INTERNAL)\""
  done
  printf '{%s}' "$out"
}

cellctl() { CELLCTL_ADMIN_TOKEN="$ADMIN_TOKEN" "$BIN/cellctl" --ops-url "$OPS_URL" "$@"; }

# Does PARTNER_KEY still open global's partner API? A well-formed event for an
# account that does not exist: 401/403 means the key is unknown or revoked (a
# reset database), anything else means it was accepted (and nothing is routed).
partner_key_works() {
  [ -n "${PARTNER_KEY:-}" ] || return 1
  local code
  code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$GLOBAL_PORT/v1/events" \
    -H "authorization: Bearer $PARTNER_KEY" -H 'content-type: application/json' \
    -d "{\"event_id\":\"cells-probe-$(date +%s%N)\",\"type\":\"deposit\",\"account_number\":\"0000000000\",\"amount\":1,\"currency\":\"BRL\",\"occurred_at\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\"}") || return 1
  [ "$code" != 401 ] && [ "$code" != 403 ] && [ "$code" != 000 ]
}

# Registers the local partner (both scopes) unless the stored key still works,
# and keeps its key in .local/secrets.env as PARTNER_KEY.
ensure_partner() {
  if partner_key_works; then return 0; fi
  local key name="local-demo"
  [ -n "${PARTNER_KEY:-}" ] && log "the stored partner key no longer works (database reset?); registering anew"
  key=$(cellctl partners add --name "$name" --scope events --scope authorizations --print-key) \
    || key=$(cellctl partners add --name "$name-$(date +%Y%m%d%H%M%S)" --scope events --scope authorizations --print-key)
  key="$(printf '%s' "$key" | tr -d '[:space:]')"
  [[ "$key" =~ ^[A-Za-z0-9._~+/=-]+$ ]] || { echo "cellctl partners add printed no usable key" >&2; return 1; }
  sed -i '/^PARTNER_KEY=/d' "$STATE/secrets.env"
  echo "PARTNER_KEY=$key" >>"$STATE/secrets.env"
  PARTNER_KEY="$key"
  log "registered partner $name (scopes events, authorizations); its key is PARTNER_KEY in .local/secrets.env"
}

# The cell's Postgres port and URL (of its own server).
pg_port() { # index: 0 global, i shard-i
  echo $((PG_BASE + $1))
}
pg_url() { # index database
  echo "postgres://postgres:postgres@127.0.0.1:$(pg_port "$1")/$2"
}

# Runs a Postgres server binary as the postgres user (initdb and the server
# refuse to run as root).
as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Makes (once) and starts the cell's own Postgres server.
start_pg() { # cell index
  local dir="$STATE/pg/$1" port; port="$(pg_port "$2")"
  [ -n "$PG_BIN" ] || { echo "no Postgres server binaries in /usr/lib/postgresql/*/bin" >&2; exit 1; }
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir" && chmod 700 "$dir"
  if [ ! -f "$dir/PG_VERSION" ]; then
    as_postgres "$PG_BIN/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 >/dev/null
    log "$1: Postgres data directory made in .local/pg/$1"
    # A new database starts with an empty broker log (they hold each
    # other's offsets: authorizer snapshots, the relayed outbox).
    if running "$STATE/pids/broker-$1"; then
      echo "$1's broker runs on a log older than its new database: run down, then up" >&2
      exit 1
    fi
    rm -f "$STATE/brokers/$1"/tansu.db*
  fi
  if as_postgres "$PG_BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1; then return; fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is taken by a process this script did not start; stop it first" >&2
    exit 1
  fi
  mkdir -p "$STATE/run"
  (umask 077; {
    echo '#!/usr/bin/env bash'
    printf 'cd / && '
    [ "$(id -u)" = 0 ] && printf 'runuser -u postgres -- '
    printf '%q ' "$PG_BIN/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir -c max_connections=200" start
    echo '>/dev/null'
  } >"$STATE/run/pg-$1.sh")
  bash "$STATE/run/pg-$1.sh"
  log "$1: Postgres started on 127.0.0.1:$port"
}

psql_cell() { # index sql
  PGPASSWORD=postgres psql -h 127.0.0.1 -p "$(pg_port "$1")" -U postgres -d postgres "${@:2}"
}

create_db() { # index database
  psql_cell "$1" -tAc "select 1 from pg_database where datname = '$2'" | grep -q 1 \
    || psql_cell "$1" -qc "create database \"$2\""
}

# Global replica R (1 is the first, on GLOBAL_PORT and OPS_PORT).
start_global() { # replica shard-tokens-dict
  local r="$1" name=global port="$GLOBAL_PORT" ops="$OPS_PORT"
  if [ "$r" -gt 1 ]; then name="global-$r"; port=$((GLOBAL_PORT + 20 + r)); ops=$((OPS_PORT + 20 + r)); fi
  start_bg "$name :$port (ops :$ops)" "$STATE/pids/$name" "$STATE/logs/$name.log" "$ROOT" -- \
    env CELLBANK__TELEMETRY__FORMAT=json \
    CELLBANK__SERVER__PORT="$port" \
    CELLBANK__OPS__HOST=127.0.0.1 \
    CELLBANK__OPS__PORT="$ops" \
    CELLBANK__DATABASE__URL="$(pg_url 0 cellbank_global)" \
    CELLBANK__KAFKA__BOOTSTRAP="127.0.0.1:$BROKER_BASE" \
    CELLBANK__KAFKA__IDEMPOTENCE="$IDEMPOTENCE" \
    CELLBANK__AUTH__ADMIN_TOKEN="$ADMIN_TOKEN" \
    CELLBANK__AUTH__SHARD_TOKENS="$2" \
    CELLBANK__AUTH__SIGNING_KEY="$SIGNING_KEY" \
    CELLBANK__AUTH__PAN_HMAC_KEY="$PAN_HMAC_KEY" \
    "$BIN/cellbank-global"
  wait_ready "http://127.0.0.1:$port"
  wait_port "$ops"
}

up() {
  bash "$ROOT/.ci/install"
  secrets
  mkdir -p "$STATE/logs" "$STATE/pids" "$STATE/brokers"
  log "building the $PROFILE binaries"
  (cd "$ROOT" && cargo build "${BUILD_FLAGS[@]}" --locked -q --bin cellbank-global --bin cellbank-shard --bin cellctl --bin cellbank-demo --bin cellbank-exporter)
  if [ "$PROXY" = 1 ]; then
    (cd "$ROOT" && cargo build "${BUILD_FLAGS[@]}" --locked -q -p cellbank-bench --bin netproxy)
  fi
  local bin="$BIN"

  # One database and one broker per cell.
  local cells=(global)
  for i in $(seq 1 "$N"); do cells+=("shard-$i"); done
  local idx=0
  for cell in "${cells[@]}"; do
    start_pg "$cell" "$idx"
    # A cell's database and its broker's log belong together (authorizer
    # snapshots hold log offsets, the outbox marks what was relayed). A memory
    # broker starts empty, and a switch of storage engine starts from another
    # log: then both start empty. `storage` records what the pair was made with.
    mkdir -p "$STATE/brokers/$cell"
    local marker="$STATE/brokers/$cell/storage" before=""
    [ -f "$marker" ] && before="$(cat "$marker")"
    if ! running "$STATE/pids/broker-$cell" \
      && { [ "$STORAGE" = "memory://tansu/" ] || { [ -n "$before" ] && [ "$before" != "$STORAGE" ]; }; }; then
      psql_cell "$idx" -qc \
        "drop database if exists \"cellbank_${cell//-/_}\" with (force)" >/dev/null
      rm -f "$STATE/brokers/$cell"/tansu.db*
      # The cell's export followed the old log: it starts over with the new one.
      rm -rf "$ANALYTICS"/*/date=*/shard="$cell" "$ANALYTICS/_rejects/shard=$cell" \
        "$ANALYTICS/_checkpoints/$cell.json"
      [ -n "$before" ] && [ "$before" != "$STORAGE" ] \
        && log "$cell: broker storage changed ($before -> $STORAGE); database and broker log start empty"
    fi
    echo "$STORAGE" >"$marker"
    create_db "$idx" "cellbank_${cell//-/_}"
    local port=$((BROKER_BASE + idx)); idx=$((idx + 1))
    if ! running "$STATE/pids/broker-$cell" && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "port $port is taken by a process this script did not start; stop it first" >&2
      exit 1
    fi
    local advertised="$port"
    if [ "$cell" != global ] && [ "$PROXY" = 1 ]; then
      advertised="$(via "$port")"
      local shard_port=$((GLOBAL_PORT + idx - 1))
      start_bg "network link of $cell" "$STATE/pids/netproxy-$cell" "$STATE/logs/netproxy-$cell.log" "$ROOT" -- \
        "$BIN/netproxy" "127.0.0.1:$(via "$shard_port")=127.0.0.1:$shard_port" "127.0.0.1:$advertised=127.0.0.1:$port"
    fi
    start_bg "broker $cell :$port" "$STATE/pids/broker-$cell" "$STATE/logs/broker-$cell.log" \
      "$STATE/brokers/$cell" -- tansu broker \
      --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$advertised" \
      --storage-engine "$STORAGE"
    wait_port "$port"
    running "$STATE/pids/broker-$cell" || { echo "broker $cell exited; see .local/logs/broker-$cell.log" >&2; exit 1; }
    [ "$STORAGE" = "sqlite://tansu.db" ] && index_headers "$STATE/brokers/$cell/tansu.db"
  done

  # Global holds one internal token per shard. A global started before a shard
  # had one (up 2, then up 3) lacks it: restart it with all of them.
  local dict; dict="$(shard_tokens_dict)"
  if [ "$(cat "$STATE/global.shard-tokens" 2>/dev/null)" != "$dict" ]; then
    for pidf in "$STATE"/pids/global "$STATE"/pids/global-*; do
      running "$pidf" || continue
      log "$(basename "$pidf") runs without the tokens of every shard; restarting it"
      stop "$pidf"
    done
  fi
  (umask 077; printf '%s' "$dict" >"$STATE/global.shard-tokens")
  local r
  for r in $(seq 1 "$REPLICAS"); do start_global "$r" "$dict"; done

  for i in $(seq 1 "$N"); do
    local port=$((GLOBAL_PORT + i)) broker=$((BROKER_BASE + i))
    local reach; reach="$(via "$port")"
    start_bg "shard-$i :$port" "$STATE/pids/shard-$i" "$STATE/logs/shard-$i.log" "$ROOT" -- \
      env CELLBANK__TELEMETRY__FORMAT=json \
      CELLBANK__AUTH__ADMIN_TOKEN="$(shard_secret "$i" ADMIN)" \
      CELLBANK__AUTH__INTERNAL_TOKEN="$(shard_secret "$i" INTERNAL)" \
      CELLBANK__SHARD__ID="shard-$i" \
      CELLBANK__SHARD__PUBLIC_URL="http://127.0.0.1:$reach" \
      CELLBANK__GLOBAL__URL="http://127.0.0.1:$GLOBAL_PORT" \
      CELLBANK__SERVER__PORT="$port" \
      CELLBANK__DATABASE__URL="$(pg_url "$i" "cellbank_shard_$i")" \
      CELLBANK__KAFKA__BOOTSTRAP="127.0.0.1:$broker" \
      CELLBANK__KAFKA__FETCH_WAIT_MS="${CELLBANK_FETCH_WAIT_MS:-20}" \
      CELLBANK__KAFKA__IDEMPOTENCE="$IDEMPOTENCE" \
      "$bin/cellbank-shard"
    wait_ready "http://127.0.0.1:$port"
    # Read the whole list first: `grep -q` closing the pipe early would break cellctl.
    local registered
    registered=$(cellctl shards list)
    if ! grep -qw "shard-$i" <<<"$registered"; then
      cellctl shards add --id "shard-$i" --public-url "http://127.0.0.1:$reach" \
        --internal-url "http://127.0.0.1:$reach" --broker "127.0.0.1:$(via "$broker")" --capacity 100000 >/dev/null
      log "registered shard-$i with global"
    fi
  done
  for i in $(seq 1 "$N"); do start_exporter "$i"; done
  ensure_partner
  status
}

start_exporter() { # cell index
  local i="$1" port=$((EXPORTER_BASE + $1))
  mkdir -p "$ANALYTICS"
  start_bg "exporter-shard-$i :$port" "$STATE/pids/exporter-shard-$i" "$STATE/logs/exporter-shard-$i.log" "$ROOT" -- \
    env CELLBANK__TELEMETRY__FORMAT=json \
    CELLBANK__SHARD__ID="shard-$i" \
    CELLBANK__SERVER__PORT="$port" \
    CELLBANK__KAFKA__BOOTSTRAP="127.0.0.1:$((BROKER_BASE + i))" \
    CELLBANK__KAFKA__FETCH_WAIT_MS="${CELLBANK_FETCH_WAIT_MS:-20}" \
    CELLBANK__EXPORT__STORE_URL="file://$ANALYTICS" \
    CELLBANK__EXPORT__BATCH_MS="${CELLBANK_EXPORT_BATCH_MS:-2000}" \
    "$BIN/cellbank-exporter"
  wait_ready "http://127.0.0.1:$port"
}

status() {
  secrets
  log "global      http://127.0.0.1:$GLOBAL_PORT  (broker 127.0.0.1:$BROKER_BASE, Postgres 127.0.0.1:$(pg_port 0)/cellbank_global)"
  log "ops API     $OPS_URL  (cellctl --ops-url $OPS_URL, or CELLCTL_OPS_URL; admin token ADMIN_TOKEN)"
  for i in $(seq 1 "$N"); do
    log "shard-$i     http://127.0.0.1:$((GLOBAL_PORT + i))  (broker 127.0.0.1:$((BROKER_BASE + i)), Postgres 127.0.0.1:$(pg_port "$i")/cellbank_shard_$i)"
  done
  log "exporters   http://127.0.0.1:$((EXPORTER_BASE + 1))/metrics ...; dataset in ${ANALYTICS#$ROOT/}"
  log "  (python3 shard/exporter/analytics/query.py --root ${ANALYTICS#$ROOT/} sql 'SELECT ...')"
  log "logs in .local/logs; tokens in .local/secrets.env (ADMIN_TOKEN: global's ops API;"
  log "  SHARD_<i>_ADMIN_TOKEN: shard-i's admin API, CELLCTL_SHARD_ADMIN_TOKEN; PARTNER_KEY: partner local-demo)"
  log "stop with: infra/local/cells.sh down"
  if [ -x "$BIN/cellctl" ]; then
    cellctl health || true
  fi
}

stop() { # pidfile
  local pidf="$1"
  if running "$pidf"; then
    kill -TERM "$(cat "$pidf")" 2>/dev/null || true
    for _ in $(seq 1 50); do running "$pidf" || break; sleep 0.1; done
    running "$pidf" && kill -KILL "$(cat "$pidf")" 2>/dev/null || true
    log "stopped $(basename "$pidf")"
  fi
  rm -f "$pidf"
}

down() {
  shopt -s nullglob
  for pidf in "$STATE"/pids/exporter-* "$STATE"/pids/global "$STATE"/pids/global-* "$STATE"/pids/shard-* "$STATE"/pids/broker-* "$STATE"/pids/netproxy-*; do
    stop "$pidf"
  done
  for dir in "$STATE"/pg/*; do
    if [ -f "$dir/PG_VERSION" ] && as_postgres "$PG_BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
      as_postgres "$PG_BIN/pg_ctl" -D "$dir" -m fast -w stop >/dev/null
      log "stopped Postgres of $(basename "$dir")"
    fi
  done
}

case "$cmd" in
  up) up ;;
  demo)
    up
    secrets
    # The demo sends events and authorizations as the partner local-demo and
    # calls the ops API at its own port.
    # Each shard's own admin token, for the per-shard summaries.
    shard_admins=""
    for i in $(seq 1 "$N"); do
      var="SHARD_${i}_ADMIN_TOKEN"
      shard_admins+="${shard_admins:+,}shard-$i=${!var}"
    done
    CELLCTL_ADMIN_TOKEN="$ADMIN_TOKEN" CELLBANK_OPS_URL="$OPS_URL" CELLBANK_PARTNER_KEY="$PARTNER_KEY" \
      CELLBANK_SHARD_ADMIN_TOKENS="$shard_admins" \
      "$BIN/cellbank-demo" --global "http://127.0.0.1:$GLOBAL_PORT"
    # Every cell's exporter writes its part of one dataset; DuckDB reads it as
    # one table per entity (a moved customer counts once, at its new cell).
    sleep $(( ${CELLBANK_EXPORT_BATCH_MS:-2000} / 1000 + 3 ))
    log "the analytical export, all cells as one table per entity (DuckDB over ${ANALYTICS#$ROOT/}):"
    python3 "$ROOT/shard/exporter/analytics/query.py" --root "$ANALYTICS" sql "
      SELECT 'customers' AS entity, count(*) AS rows, string_agg(DISTINCT shard, ',' ORDER BY shard) AS cells, NULL AS trial_balance FROM customers
      UNION ALL SELECT 'accounts', count(*), string_agg(DISTINCT shard, ',' ORDER BY shard), NULL FROM accounts
      UNION ALL SELECT 'cards', count(*), string_agg(DISTINCT shard, ',' ORDER BY shard), NULL FROM cards
      UNION ALL SELECT 'transfers', count(*), string_agg(DISTINCT shard, ',' ORDER BY shard), NULL FROM transfers
      UNION ALL SELECT 'postings', count(*), string_agg(DISTINCT shard, ',' ORDER BY shard), sum(amount) FROM postings" \
      || log "the export report failed (see .local/logs/exporter-shard-*.log)"
    log "the cells keep running; stop them with: infra/local/cells.sh down"
    ;;
  status) status ;;
  down) down ;;
  start)
    # Starts one stopped service again as `up` started it (global, global-R,
    # shard-i, exporter-shard-i, broker-<cell>, netproxy-<cell>, pg-<cell>).
    launcher="$STATE/run/${2:?usage: $0 start NAME}.sh"
    [ -f "$launcher" ] || { echo "no launcher for $2 in $STATE/run; run up first" >&2; exit 2; }
    bash "$launcher"
    ;;
  *) echo "usage: $0 up|demo|status|down [N] | start NAME" >&2; exit 2 ;;
esac
