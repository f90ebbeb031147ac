#!/usr/bin/env bash
# The demo: install what is missing, fetch the default model, build the wasm package, and serve
# www/ (with pkg/ and models/) on http://127.0.0.1:8080. Ctrl-C stops it. PORT=... to change.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build-wasm.sh
exec node scripts/serve.mjs "${PORT:-8080}"
