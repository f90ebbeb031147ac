#!/usr/bin/env bash
# Every test: formatting and lints, the native test suite (CPU reference and GPU kernels on
# lavapipe against llama.cpp's golden outputs, GGUF reader, block formats, tokenizer, sampler,
# engine, CLI), the wasm build, and the npm package in headless Chromium (WebGPU on SwiftShader).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# The tests check every catalog model against llama.cpp, not only the default one.
./scripts/fetch-model.sh all
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy (native, and the wasm32 library with its JavaScript boundary)"
cargo clippy --all-targets -- -D warnings
cargo clippy --release --lib --target wasm32-unknown-unknown -- -D warnings
echo "== cargo nextest run (native; the test groups in .config/nextest.toml)"
log=$(mktemp)
# One pool for every binary's tests keeps both cores busy through each binary's slowest test.
# Machines of this kind have cargo-nextest; others build it once.
command -v cargo-nextest >/dev/null || cargo install cargo-nextest --locked
cargo nextest run --no-fail-fast 2>&1 | tee "$log"
cargo test --doc 2>&1 | tee -a "$log"
echo "== scripts/build-wasm.sh (the wasm module and its glue, into pkg/wasm)"
./scripts/build-wasm.sh
echo "== browser tests (tests/browser/run.mjs)"
node tests/browser/run.mjs 2>&1 | tee -a "$log"
echo "== browser tests of model loading and storage (tests/browser/storage.mjs)"
node tests/browser/storage.mjs 2>&1 | tee -a "$log"
echo "== browser tests of the catalog's models (tests/browser/models.mjs)"
node tests/browser/models.mjs 2>&1 | tee -a "$log"
# One closing line for the whole run: the sum of every cargo, nextest and browser test summary above.
awk '/^test result:/ { p += $4; f += $6 } /^browser tests:/ { p += $3; f += $5 }
     /^ *Summary \[/ { for (i = 2; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
