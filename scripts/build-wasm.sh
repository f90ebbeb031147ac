#!/usr/bin/env bash
# Build the wasm module and its JavaScript glue into pkg/wasm/ (git-ignored), with a copy of the
# model catalog:
# release build → wasm-bindgen --target web → wasm-opt -O (npm's binaryen: Debian's breaks the
# output of wasm-bindgen 0.2.130: `WebAssembly.Table.set(): Argument 1 is invalid` at load).
# Prints the .wasm size, raw and gzipped.
set -euo pipefail
cd "$(dirname "$0")/.."

want=0.2.130 # must equal the wasm-bindgen version in Cargo.lock
if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $want" ]; then
  # No --locked: a locked dependency of the CLI is missing from the registry.
  cargo install wasm-bindgen-cli --version "$want"
fi
[ -x tests/browser/node_modules/.bin/wasm-opt ] || npm ci --prefix tests/browser --no-audit --no-fund

cargo build --release --lib --target wasm32-unknown-unknown
rm -rf pkg/wasm
wasm-bindgen --target web --out-dir pkg/wasm --out-name webgpu_llm \
  "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/release/webgpu_llm.wasm"
tests/browser/node_modules/.bin/wasm-opt -O pkg/wasm/webgpu_llm_bg.wasm -o pkg/wasm/webgpu_llm_bg.wasm
# The model catalog, for the package's listModels() (read on the page's thread, without the wasm).
cp src/model/catalog.json pkg/wasm/catalog.json

wasm=pkg/wasm/webgpu_llm_bg.wasm
echo "wasm: $(stat -c %s "$wasm") bytes, $(gzip -9 -c "$wasm" | wc -c) gzipped ($wasm)"
