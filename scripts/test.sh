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
cargo test
echo "== cargo build --target wasm32-unknown-unknown (the library)"
cargo build --release --lib --target wasm32-unknown-unknown
echo "all tests passed"
