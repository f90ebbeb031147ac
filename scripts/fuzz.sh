#!/usr/bin/env bash
# Fuzz each target (fuzz/fuzz_targets/: gguf, tokenizer, template, sampler) for SECONDS seconds
# (default 60) with cargo-fuzz and libFuzzer, from the committed seeds in fuzz/seeds/ plus the
# corpus grown so far in target/fuzz-corpus/. Needs the nightly toolchain (installed here when
# rustup can) and cargo-fuzz (installed when missing). A crash or a leak stops the run, with
# its input in fuzz/artifacts/<target>/; the summary gives each target's executions.
#   ./scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(gguf tokenizer template sampler)
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal >/dev/null 2>&1 || {
    echo "fuzz: no nightly toolchain and none can be installed here; skipped" >&2
    exit 0
  }
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
mkdir -p target/fuzz
for t in "${targets[@]}"; do
  mkdir -p "target/fuzz-corpus/$t"
  # -rss_limit_mb: a hostile input must not drive a large allocation; -timeout: nor a hang.
  cargo +nightly fuzz run -O --fuzz-dir fuzz "$t" "target/fuzz-corpus/$t" "fuzz/seeds/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=20 -print_final_stats=1 \
    >"target/fuzz/$t.log" 2>&1 || {
    tail -40 "target/fuzz/$t.log" >&2
    echo "fuzz: $t failed (log: target/fuzz/$t.log, input: fuzz/artifacts/$t/)" >&2
    exit 1
  }
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "target/fuzz/$t.log" | grep -o '[0-9]*$')
  echo "fuzz: $t: $runs executions in ${seconds}s, no crash"
done
