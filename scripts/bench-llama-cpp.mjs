// llama.cpp's own benchmark on the same GGUF, as one JSON line with the fields of
// `webgpu-llm bench --json`: prefill of `prompt` tokens, then decode of `gen` tokens at a depth
// of `prompt` tokens (llama-bench's -d). Needs a `llama-bench` (LLAMA_BENCH, else on PATH):
// scripts/build-llama-cpp.sh builds a CPU and a Vulkan one; scripts/bench.sh skips what is
// absent. `ngl`: layers offloaded to the GPU (99 for the Vulkan build, whose device
// GGML_VK_VISIBLE_DEVICES picks; 0 for the CPU build).
//   node scripts/bench-llama-cpp.mjs prompt=128 gen=64 threads=2 [ngl=0] [model=PATH]
import { execFileSync } from "node:child_process";

const args = Object.fromEntries(process.argv.slice(2).map((a) => a.split("=")));
const bin = process.env.LLAMA_BENCH || "llama-bench";
const model = args.model ?? "models/SmolLM2-135M-Instruct.Q4_1.gguf";
const [prompt, gen, threads, ngl] = [args.prompt ?? "128", args.gen ?? "64", args.threads ?? "2", args.ngl ?? "0"];

function bench(extra) {
  let out;
  try {
    out = execFileSync(bin, ["-m", model, "-t", threads, "-ngl", ngl, "-r", "3", "-o", "jsonl", ...extra], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    });
  } catch (e) {
    console.error(e.code === "ENOENT" ? `${bin} not found: install llama.cpp or set LLAMA_BENCH` : e.message);
    process.exit(2);
  }
  const lines = out.trim().split("\n").filter((l) => l.startsWith("{"));
  if (lines.length !== 1) throw new Error(`expected one result from ${bin} ${extra.join(" ")}, got:\n${out}`);
  return JSON.parse(lines[0]);
}

const pre = bench(["-p", prompt, "-n", "0"]);
const dec = bench(["-p", "0", "-n", gen, "-d", prompt]);
console.log(
  JSON.stringify({
    runtime: "llama.cpp",
    build: pre.build_commit ?? null,
    backend: pre.backends ?? pre.backend ?? null,
    threads: Number(threads),
    gpu_layers: Number(ngl),
    device: pre.gpu_info ?? pre.cpu_info ?? null,
    prompt_tokens: Number(prompt),
    generated_tokens: Number(gen),
    prefill_tokens_per_s: pre.avg_ts,
    decode_tokens_per_s: dec.avg_ts,
  }),
);
