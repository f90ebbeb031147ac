#!/usr/bin/env bash
# Our GPU kernels and llama.cpp's Vulkan backend on a real GPU, in one short run on a machine
# lent by the `device` tool (no network there, at most 64 MiB carried, the Vulkan loader
# brought along). Two steps:
#
#   scripts/device-bench.sh prepare   # here: build both, strip and pack them into target/device
#                                     # (about 20 MB), and download the loader's .debs into .gl
#   device run: carry [".gl", "target/device"],
#               command "bash scripts/device-bench.sh run"
#
# `run` makes synthetic models with `webgpu-llm synth` (1B- and 8B-shaped, Q4_K and Q4_0:
# random blocks, real shapes), then for each: our `bench --kernels` (decode after 1024
# positions, a 128-token prefill chunk, the adapter's bandwidth), our end-to-end `bench`
# (prefill of 512; decode at depth 0 and at 1024) and llama.cpp's llama-bench on the same file
# (-p 512, -n 64 at -d 0 and 1024). Everything lands in $OUT (the tool's folder that comes
# back), one JSON or JSONL file per program and model. Aimed at under 8 minutes on an H200;
# SHAPES and QUANTS narrow it. Without $OUT (a dry run on lavapipe) it writes to target/device.
set -uo pipefail
cd "$(dirname "$0")/.."
dir=target/device

prepare() {
  set -e
  cargo build --release --bin webgpu-llm
  ./scripts/build-llama-cpp.sh >/dev/null
  mkdir -p "$dir"
  strip -o "$dir/webgpu-llm" target/release/webgpu-llm
  strip -o "$dir/llama-bench" target/llama.cpp/vulkan/bin/llama-bench
  gzip -f "$dir/webgpu-llm" "$dir/llama-bench"
  grep -qx '/.gl/' .git/info/exclude || echo /.gl/ >>.git/info/exclude
  if ! ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
    mkdir -p .gl /tmp/amd64/partial
    local o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
    apt-get "${o[@]}" update >/dev/null
    (cd .gl && apt-get "${o[@]}" download libvulkan1 >/dev/null)
  fi
  du -sh "$dir" .gl
}

run() {
  local out=${OUT:-$dir/out}
  mkdir -p "$out" /tmp/synth /tmp/device-bin
  if ls .gl/*.deb >/dev/null 2>&1 && ! ldconfig -p | grep -q libvulkan.so.1; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
  fi
  local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  [ -f "$icd" ] && export VK_DRIVER_FILES=$icd
  for b in webgpu-llm llama-bench; do
    if [ -f "$dir/$b.gz" ]; then gunzip -c "$dir/$b.gz" >/tmp/device-bin/$b; else cp "target/release/$b" /tmp/device-bin/ 2>/dev/null; fi
    chmod +x /tmp/device-bin/$b 2>/dev/null
  done
  local ours=/tmp/device-bin/webgpu-llm llama=/tmp/device-bin/llama-bench
  [ -x "$llama" ] || llama=target/llama.cpp/vulkan/bin/llama-bench
  (nvidia-smi --query-gpu=name,memory.total,clocks.max.memory --format=csv || true) >"$out/gpu.txt" 2>&1
  "$ours" info --backend gpu >"$out/info.json" 2>>"$out/errors.log"
  for shape in ${SHAPES:-llama-3.2-1b llama-3.1-8b}; do
    for quant in ${QUANTS:-Q4_K Q4_0}; do
      local f=/tmp/synth/$shape-$quant.gguf tag=$shape-$quant
      local t0=$SECONDS
      "$ours" synth --shape "$shape" --quant "$quant" --out "$f" ${LAYERS:+--layers $LAYERS} 2>>"$out/errors.log" || continue
      echo "$tag: synth $((SECONDS - t0)) s" >>"$out/times.txt"
      timeout 120 "$ours" bench --kernels --backend gpu --model "$f" --prompt-tokens 1024 --context 1280 --json \
        >"$out/kernels-$tag.json" 2>>"$out/errors.log"
      for depth in 1 1024; do
        # Decode at a depth of `depth` positions; the prompt is that long (512 gives the prefill row).
        timeout 120 "$ours" bench --backend gpu --model "$f" --prompt-tokens "$depth" --gen-tokens 64 --context 1280 --json \
          >>"$out/ours-$tag.jsonl" 2>>"$out/errors.log"
      done
      timeout 120 "$ours" bench --backend gpu --model "$f" --prompt-tokens 512 --gen-tokens 16 --context 1280 --json \
        >>"$out/ours-$tag.jsonl" 2>>"$out/errors.log"
      GGML_VK_VISIBLE_DEVICES=0 timeout 150 "$llama" -m "$f" -ngl 99 -p 512 -n 64 -d 0,1024 -r 3 -o jsonl \
        >"$out/llama-$tag.jsonl" 2>>"$out/errors.log"
      echo "$tag: done at $SECONDS s" >>"$out/times.txt"
      rm -f "$f"
    done
  done
}

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: scripts/device-bench.sh prepare|run" >&2; exit 2 ;;
esac
