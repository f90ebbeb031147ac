// llama.cpp's own benchmark on the same GGUF, as one JSON line with the fields of
// `webgpu-llm bench --json`: prefill of `prompt` tokens, then decode of `gen` tokens at a depth
// of `prompt` tokens (llama-bench's -d). Optional: needs `llama-bench` on PATH (or LLAMA_BENCH);
// scripts/bench.sh skips it when absent.
//   node scripts/bench-llama-cpp.mjs prompt=128 gen=64 threads=2 [model=PATH]
import { execFileSync } from "node:child_process";

const args = Object.fromEntries(process.argv.slice(2).map((a) => a.split("=")));
const bin = process.env.LLAMA_BENCH || "llama-bench";
const model = args.model ?? "models/SmolLM2-135M-Instruct.Q4_1.gguf";
const [prompt, gen, threads] = [args.prompt ?? "128", args.gen ?? "64", args.threads ?? "2"];

function bench(extra) {
  let out;
  try {
    out = execFileSync(bin, ["-m", model, "-t", threads, "-r", "3", "-o", "jsonl", ...extra], {
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
    prompt_tokens: Number(prompt),
    generated_tokens: Number(gen),
    prefill_tokens_per_s: pre.avg_ts,
    decode_tokens_per_s: dec.avg_ts,
  }),
);
