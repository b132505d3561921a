#!/usr/bin/env bash
# API fuzzing: schemathesis (PyPI, the version pinned below) generates
# requests from the platform's own OpenAPI documents and runs them, with
# real credentials, against global's public API, global's ops API and a
# shard's API (its app, internal and admin endpoints).
#
#   load-tests/schemathesis.sh [max-examples]     (per operation, default 25)
#
# Each response must pass: not_a_server_error, status_code_conformance,
# content_type_conformance, response_schema_conformance (every status,
# content type and body documented), and problem_json (schemathesis/hooks.py:
# every 4xx and 5xx is application/problem+json naming its status).
#
# Credentials: the partner key and admin tokens from the cells' secrets.env;
# a customer signed up and logged in through global for the run (its token
# for global's card endpoint and the shard's app API); the shard's internal
# and admin tokens. schemathesis/setup.py makes that data.
#
# Cells: by default its own local cells (infra/local/cells.sh up 2) with
# state in .local/api-fuzz and ports clear of the usual ones (global 28080,
# ops 28090, shards 28081.., brokers 29092.., Postgres 25432..; the
# CELLBANK_* variables of cells.sh move them), stopped again at the end
# unless ST_KEEP_CELLS=1. CELLBANK_PROFILE picks the binaries (debug by
# default: CI has built them for its tests). To fuzz cells that already run
# instead, set ST_GLOBAL_URL, ST_OPS_URL and ST_SECRETS (their secrets.env).
#
# ST_SEED fixes the generation seed (printed at the start; random otherwise);
# ST_CHECKS replaces the list of checks (e.g. with negative_data_rejection,
# ignored_auth for a look beyond what CI holds the API to);
# ST_VENV moves the virtualenv (default .local/schemathesis-venv). JUnit
# reports land in <state>/schemathesis/.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
HERE="$ROOT/load-tests/schemathesis"
ST_VERSION=4.32.5
MAX_EXAMPLES="${1:-25}"
SEED="${ST_SEED:-$((RANDOM * 32768 + RANDOM))}"
VENV="${ST_VENV:-$ROOT/.local/schemathesis-venv}"
log() { printf '[api-fuzz] %s\n' "$*"; }

if ! "$VENV/bin/st" --version 2>/dev/null | grep -q "version $ST_VERSION\$"; then
  log "installing schemathesis $ST_VERSION into ${VENV#"$ROOT"/}"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$ST_VERSION"
fi

started_cells=0
if [ -n "${ST_GLOBAL_URL:-}" ]; then
  GLOBAL_URL="$ST_GLOBAL_URL"
  OPS_URL="${ST_OPS_URL:?ST_OPS_URL is needed with ST_GLOBAL_URL}"
  SECRETS="${ST_SECRETS:?ST_SECRETS is needed with ST_GLOBAL_URL}"
  STATE="$ROOT/.local/api-fuzz"
else
  export CELLBANK_STATE="${CELLBANK_STATE:-$ROOT/.local/api-fuzz}"
  export CELLBANK_PROFILE="${CELLBANK_PROFILE:-debug}"
  export CELLBANK_GLOBAL_PORT="${CELLBANK_GLOBAL_PORT:-28080}"
  export CELLBANK_BROKER_BASE="${CELLBANK_BROKER_BASE:-29092}"
  export CELLBANK_PG_BASE="${CELLBANK_PG_BASE:-25432}"
  STATE="$CELLBANK_STATE"
  GLOBAL_URL="http://127.0.0.1:$CELLBANK_GLOBAL_PORT"
  OPS_URL="http://127.0.0.1:${CELLBANK_OPS_PORT:-$((CELLBANK_GLOBAL_PORT + 10))}"
  SECRETS="$STATE/secrets.env"
  log "bringing up local cells (state ${STATE#"$ROOT"/})"
  started_cells=1
  if [ "${ST_KEEP_CELLS:-0}" != 1 ]; then
    trap 'bash "$ROOT/infra/local/cells.sh" down >/dev/null 2>&1 || true' EXIT
  fi
  mkdir -p "$STATE"
  bash "$ROOT/infra/local/cells.sh" up 2 >"$STATE/cells.log" 2>&1 \
    || { tail -n 30 "$STATE/cells.log" >&2; exit 1; }
fi

set -a
# shellcheck disable=SC1090
. "$SECRETS"
run_data="$("$VENV/bin/python" "$HERE/setup.py" "$GLOBAL_URL" "$SECRETS")"
eval "$run_data"
ST_HOOKS="$HERE/hooks.py"
ST_CACHE="$STATE/schemathesis/cache"
set +a
log "customer $ST_CUSTOMER_ID on $ST_SHARD_URL; $MAX_EXAMPLES examples per operation, seed $SEED"

REPORTS="$STATE/schemathesis"
mkdir -p "$REPORTS"
CHECKS="${ST_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,problem_json}"
failed=()
# fuzz NAME CONFIG SCHEMA_URL BASE_URL [filters...]
fuzz() {
  local name="$1" config="$2" schema="$3" base="$4"
  shift 4
  log "$name: $base"
  if ! "$VENV/bin/st" --no-color --config-file "$HERE/$config" run "$schema" --url "$base" \
    --checks "$CHECKS" --max-examples "$MAX_EXAMPLES" --seed "$SEED" \
    --phases examples,coverage,fuzzing --generation-database none \
    --request-timeout 15 --wait-for-schema 30 \
    --report junit --report-junit-path "$REPORTS/$name.xml" "$@"; then
    failed+=("$name")
  fi
}

t0=$(date +%s)
fuzz global-public global.toml "$GLOBAL_URL/openapi.json" "$GLOBAL_URL" --exclude-path-regex '^/ops/'
fuzz shard shard.toml "$ST_SHARD_URL/openapi.json" "$ST_SHARD_URL"
# Last: the ops API changes what the others rely on (partners, placements).
fuzz global-ops global.toml "$GLOBAL_URL/openapi.json" "$OPS_URL" --include-path-regex '^/(ops/|healthz|readyz)'
log "schemathesis took $(($(date +%s) - t0)) s (seed $SEED)"

if [ "$started_cells" = 1 ] && [ "${ST_KEEP_CELLS:-0}" = 1 ]; then
  log "cells kept running (state ${STATE#"$ROOT"/}); stop them with the same CELLBANK_* variables: infra/local/cells.sh down"
fi
if [ ${#failed[@]} -gt 0 ]; then
  log "failures in: ${failed[*]} (reports in ${REPORTS#"$ROOT"/}; replay with ST_SEED=$SEED)"
  exit 1
fi
log "no failure in global-public, shard, global-ops"
