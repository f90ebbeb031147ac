#!/usr/bin/env bash
# Every figure of BENCHMARKS.md, in one run on this machine: greedy, 64 generated tokens, prompts
# of 16, 128, 512 and 2048 tokens; natively (`webgpu-llm bench --json`, CPU and GPU backends)
# and in headless Chromium (www/bench.html: our CPU and WebGPU backends, and wllama on the same
# file with 1 and 2 threads), and natively against llama.cpp's llama-bench, its CPU build and
# its Vulkan build on the same Vulkan device as ours, when scripts/build-llama-cpp.sh has built
# them (or LLAMA_BENCH / LLAMA_BENCH_VULKAN name others; skipped when absent). Then each GPU
# kernel alone (`bench --kernels`). Writes target/bench/results.jsonl and
# target/bench/kernels.json, then the plots in www/plots/.
# Takes about 30 minutes on a 2-core machine without a GPU. Set LENGTHS to change the prompts.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >/dev/null
./scripts/build-wasm.sh >/dev/null
cargo build --release --bin webgpu-llm 2>/dev/null
out=target/bench/results.jsonl
mkdir -p target/bench
: >"$out"
lengths=${LENGTHS:-16 128 512 2048}
llama_bench=$(command -v "${LLAMA_BENCH:-target/llama.cpp/cpu/bin/llama-bench}" || true)
llama_vulkan=$(command -v "${LLAMA_BENCH_VULKAN:-target/llama.cpp/vulkan/bin/llama-bench}" || true)
[ -n "$llama_bench" ] || echo "llama.cpp's CPU llama-bench not found (scripts/build-llama-cpp.sh): skipping it" >&2
[ -n "$llama_vulkan" ] || echo "llama.cpp's Vulkan llama-bench not found (scripts/build-llama-cpp.sh): skipping it" >&2
run() { # label, command...
  local label=$1
  shift
  echo "== $label" >&2
  if line=$("$@" 2>/dev/null | tail -1) && [ -n "$line" ]; then
    echo "{\"label\":\"$label\",\"prompt\":$n,\"result\":$line}" >>"$out"
  else
    echo "   failed: $*" >&2
  fi
}
for n in $lengths; do
  run "native cpu" target/release/webgpu-llm bench --json --backend cpu --prompt-tokens "$n" --gen-tokens 64
  run "native cpu, 1 thread" env WEBGPU_LLM_THREADS=1 target/release/webgpu-llm bench --json --backend cpu --prompt-tokens "$n" --gen-tokens 64
  run "native gpu (lavapipe)" target/release/webgpu-llm bench --json --backend gpu --prompt-tokens "$n" --gen-tokens 64
  if [ -n "$llama_bench" ]; then
    run "llama.cpp cpu (native)" env LLAMA_BENCH="$llama_bench" node scripts/bench-llama-cpp.mjs prompt="$n" gen=64 threads=2
  fi
  if [ -n "$llama_vulkan" ]; then
    run "llama.cpp vulkan (lavapipe)" env LLAMA_BENCH="$llama_vulkan" GGML_VK_VISIBLE_DEVICES=0 \
      node scripts/bench-llama-cpp.mjs prompt="$n" gen=64 threads=2 ngl=99
  fi
  run "browser cpu (wasm)" node scripts/bench-browser.mjs backend=cpu prompt="$n" gen=64
  run "wllama, 2 threads" node scripts/bench-browser.mjs runtime=wllama gpu_layers=0 threads=2 prompt="$n" gen=64
  run "wllama, 1 thread" node scripts/bench-browser.mjs runtime=wllama gpu_layers=0 threads=1 prompt="$n" gen=64
  # WebGPU on SwiftShader is ~100x slower than the CPU: short prompts only.
  if [ "$n" -le 128 ]; then
    run "browser gpu (SwiftShader)" node scripts/bench-browser.mjs backend=gpu prompt="$n" gen=16
    run "wllama, its defaults" node scripts/bench-browser.mjs runtime=wllama prompt="$n" gen=16
  fi
done
target/release/webgpu-llm bench --kernels --backend gpu --json >target/bench/kernels.json
node scripts/plot-bench.mjs "$out" www/plots
