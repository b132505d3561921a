#!/usr/bin/env bash
# The analytical export benchmark (shard/exporter/examples/export_bench.rs):
# on one tansu broker and one synthetic change log, in the same run, a bare
# consumer's read rate (the ceiling) against the exporter's rows per second
# into Parquet (median of RUNS), then the exporter's RSS while a steady
# producer turns ten times faster.
#
#   bash load-tests/export.sh
#
# Environment (all optional): RECORDS (200000), RUNS (3), STEADY_RATE
# (1000/s), PHASE_SECS (10). Output: .local/loadtest/export-<time>/.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"
log() { printf '[export] %s\n' "$*" >&2; }

bash "$ROOT/.ci/install" >&2
log "building the exporter and the benchmark (release)"
cargo build --release --locked -p cellbank-exporter --bins --examples --manifest-path "$ROOT/Cargo.toml" >&2
OUT="$ROOT/.local/loadtest/export-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
EXPORTER_BIN="$ROOT/target/release/cellbank-exporter" \
  "$ROOT/target/release/examples/export_bench" | tee "$OUT/results.jsonl"
python3 - "$OUT/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
t = [r for r in rows if r["measure"] == "throughput"]
med = lambda k: statistics.median(r[k] for r in t)
print(f"median of {len(t)}: raw consume {med('raw_consume_per_sec'):,.0f}/s, "
      f"export {med('export_rows_per_sec'):,.0f} rows/s (ratio {med('ratio'):.2f}), "
      f"export peak RSS {med('export_peak_rss_mib'):.0f} MiB")
for b in (r for r in rows if r["measure"] == "burst"):
    s, x = b["steady"], b["burst"]
    print(f"steady {s['produced_per_sec']:,.0f}/s: peak RSS {s['peak_rss_mib']:.0f} MiB, lag {s['peak_lag_records']:,.0f}; "
          f"10x ({x['produced_per_sec']:,.0f}/s reached): peak RSS {x['peak_rss_mib']:.0f} MiB, lag {x['peak_lag_records']:,.0f}; "
          f"drained {b['drained_after_secs']:.1f} s after; peak RSS overall {b['peak_rss_mib_overall']:.0f} MiB")
PY
