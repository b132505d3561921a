#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo fuzz, libFuzzer) of the decoders that take
# outside bytes: global's partner event parser, the event envelope a shard
# reads from its broker, and token verification (tokens and key sets).
#
#   fuzz/run.sh [seconds-per-target] [target...]
#
# Installs cargo-fuzz if it is missing, builds the targets and runs each
# (all four by default) for the given seconds (default 60), from the seeds
# committed in fuzz/seeds/<target> and the working corpus in
# fuzz/corpus/<target> (kept between runs, not committed). Fails if any
# target finds a crash; the input that shows it is in
# fuzz/artifacts/<target>/ (replay: RUSTC_BOOTSTRAP=1 cargo fuzz run
# --sanitizer none <target> <file>). A summary line per target
# (executions, corpus, coverage) ends the output and is kept in
# fuzz/target/summary.txt.
#
# Only the stable toolchain exists here: RUSTC_BOOTSTRAP=1 lets it take the
# nightly flags cargo fuzz passes. No sanitizer by default
# (CELLBANK_FUZZ_SANITIZER=address to add one): the code under test forbids
# `unsafe`, so AddressSanitizer would check only code the targets do not
# reach, while the build would take longer and every run would be slower.
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$HOME/.cargo/bin:$PATH"
export RUSTC_BOOTSTRAP=1

secs="${1:-60}"
shift || true
targets=("$@")
all=0
[ ${#targets[@]} -gt 0 ] || { all=1; targets=(event_parser envelope token_verify token_roundtrip); }
sanitizer="${CELLBANK_FUZZ_SANITIZER:-none}"
# CELLBANK_FUZZ_DEV=1: the dev profile (no optimization; debug assertions
# and overflow checks on as in release here). Builds in about half the
# time, runs several times slower: for CI's short bounded run.
profile=release build_flags=(--sanitizer "$sanitizer")
if [ "${CELLBANK_FUZZ_DEV:-0}" = 1 ]; then profile=debug; build_flags+=(--dev); fi
log() { printf '[fuzz] %s\n' "$*"; }

if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz (once)"
  cargo install cargo-fuzz --locked --quiet
fi

started=$(date +%s)
log "building ${targets[*]} (sanitizer: $sanitizer, profile: $profile)"
if [ "$all" = 1 ]; then
  cargo fuzz build "${build_flags[@]}"
else
  for t in "${targets[@]}"; do cargo fuzz build "${build_flags[@]}" "$t"; done
fi
log "built in $(($(date +%s) - started)) s"
triple="$(rustc -vV | sed -n 's/^host: //p')"

mkdir -p target
summary=target/summary.txt
: >"$summary"
failed=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log "$t: ${secs} s"
  out="target/$t.log"
  # -max_len: batches of events need room; -timeout: one input taking
  # longer than this is a hang, reported like a crash.
  # The binary itself, not `cargo fuzz run`: an edit made meanwhile must
  # not rebuild it between targets.
  if "target/$triple/$profile/$t" "corpus/$t" "seeds/$t" -artifact_prefix="artifacts/$t/" \
    -max_total_time="$secs" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$out" 2>&1; then
    status=ok
  else
    status=CRASH
    failed+=("$t")
    tail -n 40 "$out" >&2
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out" | tail -n 1)
  last=$(grep -E '^#[0-9]+' "$out" | tail -n 1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([^ ]*\).*/\1/p' <<<"$last")
  printf '%-16s %-5s %ss runs=%s exec/s=%s cov=%s ft=%s corpus=%s (files: %s)\n' \
    "$t" "$status" "$secs" "${runs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" \
    "$(find "corpus/$t" -type f | wc -l)" >>"$summary"
done
cat "$summary"
if [ ${#failed[@]} -gt 0 ]; then
  log "crashes in: ${failed[*]} (inputs in fuzz/artifacts/)"
  exit 1
fi
log "no crash in ${#targets[@]} targets, $(($(date +%s) - started)) s in all"
