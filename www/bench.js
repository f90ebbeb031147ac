// The browser benchmark: prefill and decode speed of one greedy run, reported as JSON with the
// fields of `webgpu-llm bench --json`. `runtime=wllama` runs @wllama/wllama (llama.cpp in wasm,
// a dev dependency of the benchmark in tests/browser/) on the same file and prompt text.
// scripts/bench-browser.mjs drives this page in headless Chromium; the result is `window.bench`.
import { createEngine } from "../pkg/index.js";

const q = new URLSearchParams(location.search);
const runtime = q.get("runtime") ?? "webgpu-llm";
const model = q.get("model") ?? "../models/SmolLM2-135M-Instruct.Q4_1.gguf";
const promptTokens = Number(q.get("prompt") ?? 128);
const genTokens = Number(q.get("gen") ?? 64);
// The same English text as the native bench, repeated and cut to the asked length.
const TEXT = "The quick brown fox jumps over the lazy dog while the river runs past the old mill. ";

async function ours() {
  const t0 = performance.now();
  const engine = await createEngine({ model, backend: q.get("backend") ?? "auto", contextSize: promptTokens + genTokens + 8 });
  const loadS = (performance.now() - t0) / 1000;
  const info = await engine.info();
  const unit = await firstResult(engine.generate(TEXT, { temperature: 0, max_tokens: 1 }));
  const ids = Array.from({ length: promptTokens }, (_, i) => unit.prompt_tokens[i % unit.prompt_tokens.length]);
  await engine.resetChat();
  const banned = Object.fromEntries(info.eog_ids.map((id) => [id, -Infinity]));
  const start = performance.now();
  let first = null;
  const it = engine.generate(ids, { temperature: 0, max_tokens: genTokens, logit_bias: banned });
  for await (const piece of it) if (piece.tokenId !== null) first ??= performance.now();
  const g = it.result;
  const after = await engine.info();
  await engine.unload();
  const perToken = (n) => (g.decoded_tokens ? n / g.decoded_tokens : 0);
  return {
    runtime: "webgpu-llm",
    model: info.config.name,
    backend: info.backend,
    threads: navigator.hardwareConcurrency,
    cross_origin_isolated: crossOriginIsolated,
    load_s: loadS,
    prompt_tokens: g.prefill_tokens,
    generated_tokens: g.tokens.length,
    time_to_first_token_s: (first - start) / 1000,
    prefill_tokens_per_s: g.prefill_tokens / g.prefill_secs,
    decode_tokens_per_s: g.decoded_tokens / g.decode_secs,
    adapter: info.adapter?.name ?? null,
    f16: info.adapter?.f16 ?? false,
    prefill_submissions: g.prefill_work.submissions,
    prefill_dispatches: g.prefill_work.dispatches,
    dispatches_per_token: perToken(g.decode_work.dispatches),
    submissions_per_token: perToken(g.decode_work.submissions),
    read_back_bytes_per_token: perToken(g.decode_work.read_back_bytes),
    weight_bytes: info.weight_bytes,
    kv_cache_bytes: after.kv_cache_bytes,
    gpu_memory_bytes: after.gpu_memory_bytes,
    file_weight_bytes: info.config.file_weight_bytes,
    weight_bytes_read_per_token: perToken(g.decode_work.weight_read_bytes),
    // 1.0: each weight byte of the file read once per decoded token (0 on the CPU).
    weight_read_ratio: perToken(g.decode_work.weight_read_bytes) / info.config.file_weight_bytes,
  };
}

async function firstResult(it) {
  for await (const _ of it);
  return it.result;
}

async function wllama() {
  const { Wllama } = await import("../tests/browser/node_modules/@wllama/wllama/esm/index.js");
  const w = new Wllama({ default: "../tests/browser/node_modules/@wllama/wllama/esm/wasm/wllama.wasm" },
    { suppressNativeLog: true });
  const t0 = performance.now();
  const threads = q.get("threads");
  const layers = q.get("gpu_layers");
  await w.loadModel([await (await fetch(model)).blob()], {
    n_ctx: promptTokens + genTokens + 64,
    ...(threads ? { n_threads: Number(threads) } : {}),
    ...(layers ? { n_gpu_layers: Number(layers) } : {}),
  });
  const loadS = (performance.now() - t0) / 1000;
  // Text of about the same token count (the report gives llama.cpp's own count): the unit text
  // is 19 tokens.
  const prompt = TEXT.repeat(Math.ceil(promptTokens / 19)).slice(0, Math.round((promptTokens * TEXT.length) / 19)).trimEnd();
  const start = performance.now();
  let first = null;
  let timings = null;
  let n = 0;
  const stream = await w.createCompletion({ prompt, max_tokens: genTokens, temperature: 0, stream: true, cache_prompt: false,
    ignore_eos: true });
  for await (const chunk of stream) {
    if (chunk.choices?.[0]?.text) {
      first ??= performance.now();
      n++;
    }
    if (chunk.timings) timings = chunk.timings;
  }
  await w.exit();
  return {
    runtime: "wllama",
    backend: layers === "0" ? "cpu" : "auto",
    threads: threads ? Number(threads) : navigator.hardwareConcurrency,
    cross_origin_isolated: crossOriginIsolated,
    load_s: loadS,
    prompt_tokens: timings?.prompt_n ?? null,
    generated_tokens: timings?.predicted_n ?? n,
    time_to_first_token_s: (first - start) / 1000,
    prefill_tokens_per_s: timings?.prompt_per_second ?? null,
    decode_tokens_per_s: timings?.predicted_per_second ?? null,
  };
}

try {
  window.bench = runtime === "wllama" ? await wllama() : await ours();
} catch (e) {
  window.bench = { error: { code: e.code ?? null, message: e.message ?? String(e) } };
}
document.getElementById("out").textContent = JSON.stringify(window.bench, null, 2);
