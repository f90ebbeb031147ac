#!/usr/bin/env bash
# The main job for now: install what is missing, fetch the default model, build, and chat with it
# in the terminal. Extra arguments go to `webgpu-llm chat` (e.g. --temperature 0 --system "...").
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >&2
cargo build --release --quiet
exec ./target/release/webgpu-llm chat "$@"
