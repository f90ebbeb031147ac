#!/usr/bin/env bash
# Every test: formatting and lints, the native test suite (CPU reference against llama.cpp's golden
# outputs, GGUF reader, block formats, tokenizer, sampler, engine, CLI), and the wasm build.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy --all-targets -- -D warnings
echo "== cargo test (native)"
log=$(mktemp)
cargo test 2>&1 | tee "$log"
echo "== cargo build --target wasm32-unknown-unknown (the library)"
cargo build --release --lib --target wasm32-unknown-unknown
# One closing line for the whole run: the sum of every cargo test summary above.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
