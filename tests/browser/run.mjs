// Browser tests: headless Chromium (Debian's), WebGPU on SwiftShader, driven by playwright-core.
// Serves the repository on localhost, loads the npm package in a page and checks what a user
// would see. Run by scripts/test.sh after scripts/build-wasm.sh. Token counts stay small:
// SwiftShader is slow.

import { execFileSync } from "node:child_process";
import { request } from "node:http";
import { mkdtempSync, readFileSync, writeFileSync, cpSync, mkdirSync, existsSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";
import { serve } from "../../scripts/serve.mjs";
import { FLAGS, assert, cliBinary, runTests, same } from "./harness.mjs";

const ROOT = resolve(import.meta.dirname, "../..");
const MODEL = "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
const GOLDEN_ROOT = resolve(process.env.WEBGPU_LLM_GOLDEN ?? join(ROOT, "tests/golden"));
const GOLDEN = join(GOLDEN_ROOT, "smollm2-135m");
const golden = (name) => JSON.parse(readFileSync(join(GOLDEN, name), "utf8"));


async function openPage(browser, url) {
  const page = await browser.newPage();
  page.on("pageerror", (e) => console.log("  page error:", e.message));
  await page.goto(url);
  await page.waitForFunction(() => window.ready === true);
  return page;
}

/** Run `fn(llm, arg)` in the page; a thrown error comes back as { error: { code, message } }. */
function inPage(page, fn, arg) {
  return page.evaluate(async ([src, arg]) => {
    try {
      return await (0, eval)(`(${src})`)(window.llm, arg);
    } catch (e) {
      return { error: { code: e.code, name: e.name, message: e.message } };
    }
  }, [fn.toString(), arg]);
}

const server = await serve(ROOT, { brokenPaths: true });
const base = `${server.url}/tests/browser/page.html`;
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--enable-unsafe-webgpu", ...FLAGS] });
const page = await openPage(browser, base);
const tests = [];
const test = (name, fn) => tests.push({ name, fn });

/** The demo page at desktop size, its default model loaded; `problems` collects console errors. */
async function openDemo() {
  const shots = join(ROOT, "target", "screenshots", "demo-page");
  mkdirSync(shots, { recursive: true });
  const p = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  const problems = [];
  p.on("console", (m) => m.type() === "error" && problems.push(m.text()));
  p.on("pageerror", (e) => problems.push(e.message));
  await p.goto(`${server.url}/www/`);
  await p.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: 60000 });
  return { p, problems, shots };
}

const capital = golden("chat_capital.json");
const capitalAnswer = capital.f32_reference.generated_token_ids.slice(0, capital.f32_reference.first_eog_index);
const facts = golden("raw_facts.json");
const CATALOG = JSON.parse(readFileSync(join(ROOT, "src/model/catalog.json"), "utf8"));
/** The catalog's models whose files are under models/ here. */
const presentModels = () => CATALOG.models.filter((m) => existsSync(join(ROOT, "models", m.file)));

/**
 * In the page: the default model with its chat template's key renamed, so it has none (a base
 * model, as far as the runtime can tell).
 */
async function templateless(model) {
  const bytes = new Uint8Array(await (await fetch(model)).arrayBuffer());
  const key = new TextEncoder().encode("tokenizer.chat_template");
  for (let i = 0; i < 8 << 20; i++) {
    if (key.every((c, j) => bytes[i + j] === c)) {
      bytes[i + key.length - 1] = "X".charCodeAt(0);
      return bytes;
    }
  }
  throw new Error("no chat template in the model");
}

test("the type declarations compile against an app that uses the whole API", async () => {
  execFileSync(join(import.meta.dirname, "node_modules/.bin/tsc"),
    ["--noEmit", "--strict", "--target", "es2022", "--module", "es2022", "--moduleResolution", "bundler",
      "--lib", "es2022,dom,dom.iterable", join(import.meta.dirname, "types.ts")], { stdio: "inherit" });
});

test("loads with progress, streams a chat answer equal to llama.cpp's (exact CPU path in a worker)", async () => {
  const r = await inPage(page, async (llm, model) => {
    const progress = [];
    const engine = await llm.createEngine({ model, backend: "cpu", exactCpu: true, onProgress: (p) => progress.push(p) });
    const chunks = [];
    const stream = await engine.chat.completions.create({
      messages: [{ role: "user", content: "What is the capital of France?" }], stream: true, temperature: 0,
    });
    for await (const c of stream) chunks.push(c);
    const whole = await engine.chat.completions.create({
      messages: [{ role: "user", content: "What is the capital of France?" }], temperature: 0,
    });
    const info = await engine.info();
    await engine.unload();
    window.cpuEngineInfo = info;
    return { progress, chunks, whole, info };
  }, MODEL);
  assert(!r.error, JSON.stringify(r.error));
  const stages = new Set(r.progress.map((p) => p.stage));
  assert(stages.has("download") || stages.has("cache"), `progress stages ${[...stages]}`);
  const last = r.progress.filter((p) => p.stage !== "load").pop();
  same(last.loadedBytes, last.totalBytes, "progress reaches the total");
  const text = r.chunks.map((c) => c.choices[0].delta.content ?? "").join("");
  same(text, "The capital of France is Paris.", "streamed text");
  same(r.whole.choices[0].message.content, text, "non-streamed text");
  same(r.whole.object, "chat.completion", "object");
  same(r.chunks.at(-1).choices[0].finish_reason, "stop", "finish_reason");
  same(r.whole.usage.prompt_tokens, capital.prompt_token_ids.length, "usage.prompt_tokens");
  same(r.whole.usage.completion_tokens, capitalAnswer.length, "usage.completion_tokens");
  assert(r.whole.usage.cached_tokens > 0, "the second request reuses the KV cache");
  same(r.info.backend, "cpu", "backend");
});

test("the GPU backend (WebGPU on SwiftShader) gives llama.cpp's greedy tokens, with either kernel variant, under 128 MiB of wasm memory", async () => {
  const r = await inPage(page, async (llm, [model, prompt]) => {
    const run = async (kernels, max_tokens) => {
      const engine = await llm.createEngine({ model, backend: "gpu", contextSize: 64, kernels });
      const it = engine.generate(prompt, { temperature: 0, max_tokens });
      const pieces = [];
      for await (const p of it) pieces.push(p);
      const info = await engine.info();
      await engine.unload();
      return { ids: pieces.map((p) => p.tokenId), info };
    };
    const refused = (kernels) => llm.createEngine({ model, backend: "gpu", kernels }).then(() => "loaded", (e) => e.code);
    // wgpu cannot ask the browser for subgroups: the subgroup variant is refused there.
    const bad = [await refused("fastest"), await refused("subgroup")];
    // The GPU shapes lose on SwiftShader (a CPU, seconds a token): a few tokens check them.
    return { plain: await run(undefined, 3), workgroup: await run("workgroup", 2), bad };
  }, [MODEL, facts.prompt_token_ids]);
  assert(!r.error, JSON.stringify(r.error));
  const want = facts.f32_reference.generated_token_ids;
  same(r.plain.ids, want.slice(0, 3), "GPU greedy tokens");
  same(r.plain.info.backend, "gpu", "backend");
  // The streamed load: the weights go to the GPU without a copy in the worker's wasm memory.
  const wasmMB = r.plain.info.wasm_memory_bytes / 2 ** 20;
  assert(wasmMB < 128, `${wasmMB.toFixed(0)} MiB of wasm memory on the GPU backend`);
  same(r.plain.info.adapter.f16, false, "SwiftShader has no shader-f16: the f32 path");
  same(r.plain.info.adapter.kernels, "software", "SwiftShader gets the software kernels");
  same(r.workgroup.ids, want.slice(0, 2), "GPU greedy tokens, workgroup kernels");
  same(r.workgroup.info.adapter.kernels, "workgroup", "kernels asked for");
  same(r.bad, ["invalid_argument", "invalid_argument"], "an unknown kernel variant; subgroups in the browser");
});

test("a lost GPU device (device.destroy()) rejects the running call with device_lost; reload() recovers", async () => {
  const r = await inPage(page, async (llm, [model, prompt]) => {
    // worker: false puts the engine's device in this page, where requestDevice can be watched.
    const request = GPUAdapter.prototype.requestDevice;
    let device = null;
    GPUAdapter.prototype.requestDevice = async function (...args) {
      device = await request.apply(this, args);
      return device;
    };
    try {
      const engine = await llm.createEngine({ model, backend: "gpu", worker: false, contextSize: 64 });
      const run = async (onToken = () => {}) => {
        const ids = [];
        // Two tokens: SwiftShader takes seconds a token, and the loss lands in the second.
        for await (const p of engine.generate(prompt, { temperature: 0, max_tokens: 2 })) {
          ids.push(p.tokenId);
          onToken();
        }
        return ids;
      };
      const before = await run();
      const first = device;
      let pending;
      try {
        await run(() => device.destroy());
        pending = "finished";
      } catch (e) {
        pending = e.code;
      }
      let next;
      try {
        await run();
        next = "finished";
      } catch (e) {
        next = e.code;
      }
      const info = await engine.reload();
      const after = await run();
      await engine.unload();
      return { before, pending, next, after, backend: info.backend, fresh: device !== first };
    } finally {
      GPUAdapter.prototype.requestDevice = request;
    }
  }, [MODEL, facts.prompt_token_ids]);
  assert(!r.error, JSON.stringify(r.error));
  same(r.pending, "device_lost", "the call running when the device was destroyed");
  same(r.next, "device_lost", "a call after the loss");
  same([r.backend, r.fresh], ["gpu", true], "reload() takes a fresh device");
  same(r.after, r.before, "and answers as before");
  same(r.before, facts.f32_reference.generated_token_ids.slice(0, 2), "greedy tokens");
});

test("seeded sampling reproduces; abort stops within a token; the engine stays usable", async () => {
  const r = await inPage(page, async (llm, model) => {
    const engine = await llm.createEngine({ model, backend: "cpu" });
    const run = async (opts) => {
      const out = [];
      for await (const p of engine.generate("Once upon a time", { max_tokens: 8, ...opts })) out.push(p.tokenId);
      return out;
    };
    const a = await run({ temperature: 1, seed: 5 });
    const b = await run({ temperature: 1, seed: 5 });
    const c = await run({ temperature: 1, seed: 6 });
    const ctrl = new AbortController();
    let seen = 0;
    let stopped = null;
    try {
      for await (const p of engine.generate("Once upon a time", { max_tokens: 50, temperature: 0, signal: ctrl.signal })) {
        if (p.tokenId !== null && ++seen === 2) ctrl.abort();
      }
    } catch (e) {
      stopped = { code: e.code, name: e.name };
    }
    const after = await run({ temperature: 1, seed: 5 });
    await engine.unload();
    return { a, b, c, seen, stopped, after };
  }, MODEL);
  assert(!r.error, JSON.stringify(r.error));
  same(r.a, r.b, "same seed, same tokens");
  assert(JSON.stringify(r.a) !== JSON.stringify(r.c), "another seed, other tokens");
  same(r.stopped, { code: "aborted", name: "WebGpuLlmError" }, "abort error");
  assert(r.seen <= 3, `aborted after ${r.seen} tokens`);
  same(r.after, r.a, "after an abort the engine works");
});

test("200 chat turns with resets and aborts: wasm memory stops growing after warm-up, answers stay the same", async () => {
  const r = await inPage(page, async (llm, model) => {
    const engine = await llm.createEngine({ model, backend: "cpu", contextSize: 512 });
    const question = [{ role: "user", content: "What is the capital of France?" }];
    const ask = async (messages, options = {}) =>
      (await engine.chat.completions.create({ messages, max_tokens: 6, temperature: 0, ...options })).choices[0].message.content;
    const first = await ask(question);
    let messages = [];
    let warm = 0;
    let aborts = 0;
    const started = performance.now();
    for (let turn = 1; turn <= 200; turn++) {
      if (turn % 10 === 0) {
        await engine.resetChat();
        messages = [];
      }
      messages.push({ role: "user", content: `Turn ${turn}: name a colour.` });
      if (turn % 7 === 0) {
        const ctrl = new AbortController();
        try {
          for await (const c of await engine.chat.completions.create({ messages, max_tokens: 6, stream: true, signal: ctrl.signal })) {
            if (c.choices[0]?.delta?.content) ctrl.abort();
          }
        } catch (e) {
          if (e.code !== "aborted") throw e;
          aborts++;
        }
        messages.pop();
        continue;
      }
      messages.push({ role: "assistant", content: await ask(messages, { max_tokens: 2, temperature: 0.8, seed: turn }) });
      if (turn === 20) warm = (await engine.info()).wasm_memory_bytes;
    }
    const end = (await engine.info()).wasm_memory_bytes;
    await engine.resetChat();
    const last = await ask(question);
    await engine.unload();
    return { first, last, warm, end, aborts, seconds: (performance.now() - started) / 1000 };
  }, MODEL);
  assert(!r.error, JSON.stringify(r.error));
  console.log(`  wasm memory after 20 turns ${r.warm} bytes, after 200 ${r.end}; ${r.aborts} aborts; ${r.seconds.toFixed(1)} s`);
  assert(r.warm > 0, "memory reported");
  same(r.end, r.warm, "wasm memory after 200 turns = after 20");
  assert(r.aborts >= 20, `aborted turns: ${r.aborts}`);
  same(r.last, r.first, "the same greedy answer at turn 1 and after 200 turns");
});

test("abort during prefill and during decode leave the engine usable; an overlapping call is rejected, never interleaved", async () => {
  const r = await inPage(page, async (llm, model) => {
    const engine = await llm.createEngine({ model, backend: "cpu" });
    const collect = async (it) => {
      const ids = [];
      for await (const p of it) if (p.tokenId !== null) ids.push(p.tokenId);
      return ids;
    };
    const alone = await collect(engine.generate("The history of the river", { temperature: 0, max_tokens: 6 }));
    // Overlap: a second call while the first runs.
    const first = collect(engine.generate("The history of the river", { temperature: 0, max_tokens: 6 }));
    let second;
    try {
      await collect(engine.generate("Something else entirely", { temperature: 0, max_tokens: 6 }));
      second = "ran";
    } catch (e) {
      second = [e.code, e.message];
    }
    const firstIds = await first;
    // Abort while a 600-token prompt is being read: no token comes out.
    const ctrl = new AbortController();
    const long = "The river runs past the old mill and the stone bridge. ".repeat(50);
    const it = engine.generate(long, { temperature: 0, max_tokens: 6, signal: ctrl.signal });
    setTimeout(() => ctrl.abort(), 50);
    let prefill;
    let tokens = 0;
    try {
      for await (const p of it) if (p.tokenId !== null) tokens++;
      prefill = "finished";
    } catch (e) {
      prefill = e.code;
    }
    await engine.resetChat();
    const after = await collect(engine.generate("The history of the river", { temperature: 0, max_tokens: 6 }));
    await engine.unload();
    return { alone, second, firstIds, prefill, tokens, after };
  }, MODEL);
  assert(!r.error, JSON.stringify(r.error));
  assert(Array.isArray(r.second) && r.second[0] === "invalid_argument" && /already running|busy/.test(r.second[1]), `overlapping call: ${JSON.stringify(r.second)}`);
  same(r.firstIds, r.alone, "the first call's tokens, as if alone");
  same([r.prefill, r.tokens], ["aborted", 0], "aborted during prefill");
  same(r.after, r.alone, "the engine answers as before");
});

test("a conversation past the context: context_overflow, or with truncation: \"auto\" the oldest turns dropped", async () => {
  const r = await inPage(page, async (llm, model) => {
    const engine = await llm.createEngine({ model, backend: "cpu", contextSize: 128 });
    const messages = [{ role: "system", content: "Be brief." }];
    for (let i = 0; i < 8; i++) {
      messages.push({ role: "user", content: `Question ${i}: tell me something about the number ${i}, please.` });
      messages.push({ role: "assistant", content: `The number ${i} comes after ${i - 1} and before ${i + 1}.` });
    }
    messages.push({ role: "user", content: "What is the capital of France?" });
    let overflow;
    try {
      await engine.chat.completions.create({ messages, max_tokens: 4, temperature: 0 });
    } catch (e) {
      overflow = e.code;
    }
    const fitted = await engine.chat.completions.create({ messages, max_tokens: 8, temperature: 0, truncation: "auto" });
    const short = await engine.chat.completions.create({ messages: messages.slice(-3), max_tokens: 2, temperature: 0, truncation: "auto" });
    let bad;
    try {
      await engine.chat.completions.create({ messages, truncation: "yes" });
    } catch (e) {
      bad = e.code;
    }
    await engine.unload();
    return { overflow, usage: fitted.usage, answer: fitted.choices[0].message.content, short: short.usage, bad };
  }, MODEL);
  assert(!r.error, JSON.stringify(r.error));
  same(r.overflow, "context_overflow", "without truncation");
  assert(r.usage.dropped_messages > 0 && r.usage.dropped_messages % 2 === 0, `whole turns dropped: ${JSON.stringify(r.usage)}`);
  assert(r.usage.prompt_tokens + 8 <= 128, `the prompt leaves room for the answer: ${JSON.stringify(r.usage)}`);
  assert(r.answer.includes("Paris"), `the last question is answered: ${r.answer}`);
  same(r.short.dropped_messages, 0, "nothing dropped when it fits");
  same(r.bad, "invalid_argument", "an unknown truncation");
});

test("setSampling mid-generation applies from the next token", async () => {
  const r = await inPage(page, async (llm, model) => {
    const engine = await llm.createEngine({ model, backend: "cpu" });
    const prompt = "Once upon a time";
    const ids = [];
    for await (const p of engine.generate(prompt, { temperature: 1.5, seed: 3, max_tokens: 10 })) {
      if (p.tokenId === null) continue;
      ids.push(p.tokenId);
      if (ids.length === 2) await engine.setSampling({ temperature: 0 });
    }
    await engine.setSampling({ temperature: 1.5 });
    const promptIds = [];
    const first = engine.generate(prompt, { temperature: 0, max_tokens: 1 });
    for await (const _ of first);
    promptIds.push(...first.result.prompt_tokens);
    return { ids, promptIds };
  }, MODEL);
  assert(!r.error, JSON.stringify(r.error));
  same(r.ids.length, 10, "max_tokens of the running generation is kept");
  // The change reaches the step after the one in flight: from token 4 on, greedy given the prefix.
  const check = await inPage(page, async (llm, [model, context]) => {
    const engine = await llm.createEngine({ model, backend: "cpu" });
    const it = engine.generate(context, { temperature: 0, max_tokens: 6 });
    for await (const _ of it);
    await engine.unload();
    return it.result.tokens;
  }, [MODEL, [...r.promptIds, ...r.ids.slice(0, 4)]]);
  same(r.ids.slice(4), check, "greedy after setSampling");
});

test("a reload reads the model from its store; a broken download keeps only a partial copy", async () => {
  const r = await inPage(page, async (llm, model) => {
    await (await llm.createEngine({ model, backend: "cpu" })).unload(); // downloaded (or stored) once
    const stages = [];
    const engine = await llm.createEngine({ model, backend: "cpu", onProgress: (p) => stages.push(p.stage) });
    await engine.unload();
    let broken;
    try {
      await llm.createEngine({ model: "/truncated" + model, backend: "cpu" });
      broken = "loaded";
    } catch (e) {
      broken = e.code;
    }
    const url = new URL("/truncated" + model, location.href).href;
    const kept = (await llm.listCachedModels()).find((m) => m.url === url);
    await llm.deleteCachedModel(url);
    return { stages: [...new Set(stages)], broken, kept };
  }, MODEL);
  assert(!r.error, JSON.stringify(r.error));
  same(r.stages, ["cache", "load"], "progress stages of a reload");
  same(r.broken, "io", "a broken download fails");
  same([r.kept?.complete, r.kept?.store], [false, "opfs"], "the broken download is kept as a partial copy (to resume)");
});

test("the stores can be listed and cleared; a damaged Cache API copy is downloaded again", async () => {
  const r = await inPage(page, async (llm, model) => {
    await (await llm.createEngine({ model, backend: "cpu" })).unload();
    const url = new URL(model, location.href).href;
    const listed = await llm.listCachedModels();
    const size = Number((await fetch(model, { method: "HEAD" })).headers.get("content-length"));
    const deleted = await llm.deleteCachedModel(model);
    const again = await llm.deleteCachedModel(model);
    const afterDelete = (await llm.listCachedModels()).map((m) => m.url);
    // A copy that claims the whole file but holds 1 KiB of it (as an earlier version stored it).
    const store = await caches.open("webgpu-llm-models");
    const part = (await (await fetch(model)).arrayBuffer()).slice(0, 1024);
    await store.put(url, new Response(part, { headers: { "content-length": String(size) } }));
    const stages = [];
    const engine = await llm.createEngine({ model, backend: "cpu", onProgress: (p) => stages.push(p.stage) });
    const layers = (await engine.info()).config.n_layers;
    await engine.unload();
    const relisted = await llm.listCachedModels();
    const inCacheApi = (await store.match(url)) !== undefined;
    const cleared = await llm.clearModelCache();
    return { url, listed, size, deleted, again, afterDelete, stages: [...new Set(stages)], layers, relisted, inCacheApi,
      cleared, afterClear: await llm.listCachedModels() };
  }, MODEL);
  assert(!r.error, JSON.stringify(r.error));
  same(r.listed.filter((m) => m.url === r.url), [{ url: r.url, bytes: r.size, totalBytes: r.size, complete: true, store: "opfs" }],
    "the loaded model is listed with its size");
  same([r.deleted, r.again], [true, false], "deleteCachedModel");
  assert(!r.afterDelete.includes(r.url), "deleted models are not listed");
  same(r.stages, ["download", "load"], "a damaged copy: found short by the fit check's read, dropped, downloaded again");
  same(r.layers, 30, "and the model loads");
  same([r.relisted.filter((m) => m.url === r.url).map((m) => [m.bytes, m.store]), r.inCacheApi], [[[r.size, "opfs"]], false],
    "the new copy is whole, in OPFS; the damaged one is gone");
  same([r.cleared, r.afterClear], [true, []], "clearModelCache");
});

test("sha256 is checked (a mismatch drops the stored copy); Blobs load with progress", async () => {
  const sha = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
  const r = await inPage(page, async (llm, [model, sha]) => {
    await (await llm.createEngine({ model, backend: "cpu", sha256: sha })).unload();
    let wrong;
    try {
      await llm.createEngine({ model, backend: "cpu", sha256: "00".repeat(32) });
      wrong = "loaded";
    } catch (e) {
      wrong = e.code;
    }
    const url = new URL(model, location.href).href;
    const storedAfterMismatch = (await llm.listCachedModels()).some((m) => m.url === url);
    const blob = new Blob([await (await fetch(model)).arrayBuffer()]);
    const stages = [];
    const engine = await llm.createEngine({ model: blob, backend: "cpu", onProgress: (p) => stages.push(p.stage) });
    const info = await engine.info();
    await engine.unload();
    return { wrong, storedAfterMismatch, stages: [...new Set(stages)], layers: info.config.n_layers };
  }, [MODEL, sha]);
  assert(!r.error, JSON.stringify(r.error));
  same(r.wrong, "bad_model", "wrong sha256");
  same(r.storedAfterMismatch, false, "the mismatching stored copy is dropped");
  same(r.stages, ["read", "load"], "Blob progress stages");
  same(r.layers, 30, "the Blob's model loaded");
});

test("structured output and tool calls in chat.completions.create: response_format, tools, tool_choice; bad input is invalid_argument", async () => {
  const r = await inPage(page, async (llm, [model, qwen]) => {
    const weather = { type: "function", function: { name: "get_weather", description: "Get the current weather in a city",
      parameters: { type: "object", properties: { city: { type: "string" }, unit: { enum: ["celsius", "fahrenheit"] } },
        required: ["city", "unit"], additionalProperties: false } } };
    const schema = { type: "object", properties: { colour: { enum: ["red", "blue"] }, n: { type: "integer", minimum: 1, maximum: 9 } },
      required: ["colour", "n"], additionalProperties: false };
    const messages = [{ role: "user", content: "Pick a colour and a digit." }];
    const out = {};
    const small = await llm.createEngine({ model, backend: "cpu" });
    const a = await small.chat.completions.create({ messages, temperature: 1, seed: 2, max_tokens: 40,
      response_format: { type: "json_schema", json_schema: { name: "pick", schema } } });
    out.schema = a.choices[0];
    out.object = (await small.chat.completions.create({ temperature: 0, max_tokens: 60,
      messages: [{ role: "user", content: "Reply with a JSON object with one key, \"ok\", set to true." }],
      response_format: { type: "json_object" } })).choices[0].message.content;
    const code = async (req) => {
      try {
        await small.chat.completions.create({ messages, max_tokens: 4, ...req });
        return "ok";
      } catch (e) {
        return [e.code, e.message];
      }
    };
    out.unsupported = await code({ response_format: { type: "json_schema", json_schema: { schema: { type: "array", uniqueItems: true } } } });
    out.badType = await code({ response_format: { type: "xml" } });
    out.noTools = await code({ tools: [weather] });
    out.after = (await small.chat.completions.create({ messages, max_tokens: 4, temperature: 0 })).choices[0].message.content;
    await small.unload();
    const big = await llm.createEngine({ model: qwen, backend: "cpu" });
    const ask = { messages: [{ role: "user", content: "What is the weather in Paris right now, in celsius?" }], tools: [weather],
      tool_choice: { type: "function", function: { name: "get_weather" } }, max_tokens: 60, temperature: 0 };
    out.call = (await big.chat.completions.create(ask)).choices[0];
    const chunks = [];
    for await (const ch of await big.chat.completions.create({ ...ask, stream: true })) chunks.push(ch);
    out.streamed = chunks.at(-2).choices[0].delta.tool_calls;
    out.streamFinish = chunks.at(-1).choices[0].finish_reason;
    await big.unload();
    return out;
  }, [MODEL, "/models/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf"]);
  assert(!r.error, JSON.stringify(r.error));
  const pick = JSON.parse(r.schema.message.content);
  assert(["red", "blue"].includes(pick.colour) && pick.n >= 1 && pick.n <= 9 && Object.keys(pick).length === 2, r.schema.message.content);
  same(r.schema.finish_reason, "stop", "a complete schema answer");
  const object = JSON.parse(r.object);
  assert(typeof object === "object" && !Array.isArray(object), r.object);
  assert(r.unsupported[0] === "invalid_argument" && r.unsupported[1].includes("uniqueItems"), JSON.stringify(r.unsupported));
  same(r.badType[0], "invalid_argument", "an unknown response_format type");
  assert(r.noTools[0] === "invalid_argument" && r.noTools[1].includes("tools"), JSON.stringify(r.noTools));
  assert(r.after.length > 0, "the engine works after the errors");
  same(r.call.finish_reason, "tool_calls", "finish_reason");
  same(r.call.message.content, null, "no text besides the call");
  const [call] = r.call.message.tool_calls;
  same([call.type, call.function.name], ["function", "get_weather"], "the call");
  const args = JSON.parse(call.function.arguments);
  assert(typeof args.city === "string" && ["celsius", "fahrenheit"].includes(args.unit), call.function.arguments);
  same(r.streamed[0].function, call.function, "streamed, the same call");
  same(r.streamFinish, "tool_calls", "streamed finish_reason");
});

test("a corrupt model is bad_model; no model is invalid_argument", async () => {
  const r = await inPage(page, async (llm, model) => {
    const bytes = new Uint8Array(await (await fetch(model)).arrayBuffer());
    const out = {};
    // Hostile headers: GGUF v3, then (u64 tensors, u64 key-values) and the key-values.
    const gguf = (tensors, kvs, body = []) => {
      const b = new DataView(new ArrayBuffer(24 + body.length));
      [0x47, 0x47, 0x55, 0x46].forEach((c, i) => b.setUint8(i, c));
      b.setUint32(4, 3, true);
      b.setBigUint64(8, BigInt(tensors), true);
      b.setBigUint64(16, BigInt(kvs), true);
      body.forEach((c, i) => b.setUint8(24 + i, c));
      return new Uint8Array(b.buffer);
    };
    const u64 = (n) => Array.from({ length: 8 }, (_, i) => Number((BigInt(n) >> BigInt(8 * i)) & 255n));
    const u32 = (n) => u64(n).slice(0, 4);
    const hostile = [
      ["2^40 tensors", gguf(2 ** 40, 0)],
      // key "a", an array (type 9) of 2^33 u8 (type 0)
      ["an array of 2^33 elements", gguf(0, 1, [...u64(1), 97, ...u32(9), ...u32(0), ...u64(2 ** 33)])],
      // a key that is not UTF-8, holding a u8
      ["a non-UTF-8 key", gguf(0, 1, [...u64(2), 0xff, 0xfe, ...u32(0), 1])],
      // key "a" of value type 99
      ["an unknown value type", gguf(0, 1, [...u64(1), 97, ...u32(99), 0, 0, 0, 0])],
    ];
    out.hostile = {};
    for (const [name, m] of hostile) {
      try {
        await llm.createEngine({ model: m, backend: "cpu", worker: false });
        out.hostile[name] = "loaded";
      } catch (e) {
        out.hostile[name] = e.code;
      }
    }
    for (const [name, m] of [["truncated", bytes.slice(0, 100000)], ["garbage", new Uint8Array(4096).fill(7)]]) {
      try {
        await llm.createEngine({ model: m, backend: "cpu" });
        out[name] = "loaded";
      } catch (e) {
        out[name] = [e.name, e.code];
      }
    }
    try {
      await llm.createEngine({});
    } catch (e) {
      out.none = [e.name, e.code];
    }
    return out;
  }, MODEL);
  same(r.truncated, ["WebGpuLlmError", "bad_model"], "truncated file");
  same(r.garbage, ["WebGpuLlmError", "bad_model"], "garbage file");
  same(r.none, ["WebGpuLlmError", "invalid_argument"], "no model");
  for (const [name, code] of Object.entries(r.hostile)) same(code, "bad_model", name);
  same(Object.keys(r.hostile).length, 4, "hostile headers tried");
});

test("hostile chat templates (doubling, self-holding, deep recursion) are stopped by the limits; the worker lives on", async () => {
  const r = await inPage(page, async (llm, model) => {
    const bytes = new Uint8Array(await (await fetch(model)).arrayBuffer());
    // The model's tokenizer.chat_template (key, u32 type 8, u64 length, text) is overwritten in
    // place by each hostile template, padded with spaces to the same length.
    const key = new TextEncoder().encode("tokenizer.chat_template");
    let at = -1;
    for (let i = 0; i < 8 << 20 && at < 0; i++) if (key.every((c, j) => bytes[i + j] === c)) at = i;
    const length = Number(new DataView(bytes.buffer).getBigUint64(at + key.length + 4, true));
    const hostile = {
      doubling: "{% set ns = namespace(s='ab') %}{% for m in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
      "self-holding": "{% set ns = namespace(s='ab') %}{% set ns.s = ns %}{{ ns }}",
      "deep recursion": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    };
    const out = { found: at, length, refused: {} };
    for (const [name, template] of Object.entries(hostile)) {
      bytes.set(new TextEncoder().encode(template.padEnd(length, " ")), at + key.length + 12);
      const engine = await llm.createEngine({ model: bytes, backend: "cpu" });
      const before = (await engine.info()).wasm_memory_bytes;
      try {
        await engine.chat.completions.create({ messages: [{ role: "user", content: "Hi" }], max_tokens: 2 });
        out.refused[name] = "rendered";
      } catch (e) {
        out.refused[name] = { code: e.code, message: e.message };
      }
      const after = (await engine.info()).wasm_memory_bytes;
      let raw = "";
      for await (const piece of engine.generate("The capital of France is", { max_tokens: 3, temperature: 0 })) raw += piece.text;
      await engine.unload();
      out.refused[name].grew = after - before;
      out.refused[name].raw = raw;
    }
    return out;
  }, MODEL);
  assert(!r.error, JSON.stringify(r.error));
  assert(r.found > 0 && r.length > 100, `template located: ${r.found}, ${r.length} bytes`);
  const expected = {
    doubling: "builds a string over 4194304 bytes",
    "self-holding": "a namespace cannot hold a namespace",
    "deep recursion": "recursion limit exceeded",
  };
  for (const [name, says] of Object.entries(expected)) {
    const got = r.refused[name];
    same(got?.code, "invalid_argument", `${name}: the error`);
    assert(got.message.includes(says), `${name}: ${got.message}`);
    console.log(`  ${name}: wasm memory grew ${got.grew} bytes across the refused render`);
    assert(got.grew <= 64 << 20, `${name}: memory grew by ${got.grew}`);
    assert(got.raw.length > 0, `${name}: raw generation still works`);
  }
});

test("without WebGPU: auto falls back to the CPU, gpu is no_webgpu (worker: false)", async () => {
  const plain = await chromium.launch({ executablePath: "/usr/bin/chromium", args: FLAGS });
  try {
    const p = await openPage(plain, base);
    const r = await inPage(p, async (llm, model) => {
      const auto = await llm.createEngine({ model, worker: false });
      const info = await auto.info();
      await auto.unload();
      let gpu;
      try {
        await llm.createEngine({ model, backend: "gpu", worker: false });
        gpu = "loaded";
      } catch (e) {
        gpu = [e.name, e.code];
      }
      return { backend: info.backend, gpu };
    }, MODEL);
    assert(!r.error, JSON.stringify(r.error));
    same(r.backend, "cpu", "auto without an adapter");
    same(r.gpu, ["WebGpuLlmError", "no_webgpu"], "gpu without an adapter");
  } finally {
    await plain.close();
  }
});

test("npm pack: the tarball installs into a fresh project and imports in a page", async () => {
  const dir = mkdtempSync(join(tmpdir(), "webgpu-llm-pack-"));
  const tgz = execFileSync("npm", ["pack", "--silent", "--pack-destination", dir], { cwd: join(ROOT, "pkg") })
    .toString().trim().split("\n").pop();
  const app = join(ROOT, "target", "browser-app");
  mkdirSync(app, { recursive: true });
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
  execFileSync("npm", ["install", "--no-audit", "--no-fund", "--offline", join(dir, tgz)], { cwd: app, stdio: "ignore" });
  cpSync(join(ROOT, "tests/browser/page.html"), join(app, "page.html"));
  const p = await openPage(browser, `${server.url}/target/browser-app/page.html?pkg=/target/browser-app/node_modules/webgpu-llm/index.js`);
  const r = await inPage(p, async (llm, model) => {
    const engine = await llm.createEngine({ model, backend: "cpu" });
    const out = await engine.chat.completions.create({ messages: [{ role: "user", content: "Hi" }], max_tokens: 2, temperature: 0 });
    await engine.unload();
    return { exports: Object.keys(llm).sort(), n: out.usage.completion_tokens };
  }, MODEL);
  assert(!r.error, JSON.stringify(r.error));
  same(r.exports, ["WebGpuLlmError", "clearModelCache", "createEngine", "deleteCachedModel", "estimateMemory", "listCachedModels", "listModels"], "exports");
  same(r.n, 2, "tokens from the installed package");
});

test("catalog: listModels gives every catalog model with its URL, presence (HEAD) and size; estimateMemory", async () => {
  const r = await inPage(page, async (llm) => {
    const here = await llm.listModels({ baseUrl: "/models/" });
    const nowhere = await llm.listModels({ baseUrl: "/no/such/folder/" });
    const memory = llm.estimateMemory(here.find((m) => m.default), 4096);
    const f16 = llm.estimateMemory(here.find((m) => m.default), 100000, { f16: true });
    return { here, nowhere, memory, f16 };
  });
  assert(!r.error, JSON.stringify(r.error));
  same(r.here.map((m) => m.name), CATALOG.models.map((m) => m.name), "every catalog model, in order");
  const present = new Set(presentModels().map((m) => m.name));
  for (const m of r.here) {
    same(new URL(m.url).pathname, `/models/${m.file}`, `${m.name}: URL`);
    same(m.present, present.has(m.name), `${m.name}: present`);
    if (m.present) same(m.served_bytes, statSync(join(ROOT, "models", m.file)).size, `${m.name}: served size`);
    same(m.size_bytes, CATALOG.models.find((c) => c.name === m.name).size_bytes, `${m.name}: catalog size`);
    same(m.default, m.name === CATALOG.default, `${m.name}: default`);
    assert(!("parts" in m) && m.license && m.n_layers > 0 && m.kv_width > 0, `${m.name}: fields ${Object.keys(m)}`);
  }
  assert(present.has(CATALOG.default), "the default model is present");
  same(r.nowhere.map((m) => m.present), CATALOG.models.map(() => false), "nothing under a missing folder");
  // SmolLM2-135M: 30 layers × 192 wide × K and V × 4 bytes × 4096 positions, plus the file.
  const size = CATALOG.models.find((m) => m.name === CATALOG.default).size_bytes;
  same(r.memory, { weights_bytes: size, kv_cache_bytes: 30 * 192 * 2 * 4 * 4096, total_bytes: size + 30 * 192 * 2 * 4 * 4096, context_size: 4096 }, "estimate");
  same(r.f16.context_size, 8192, "at most the model's context");
  same(r.f16.kv_cache_bytes, 30 * 192 * 2 * 2 * 8192, "f16 halves the cache");
});

test("completions.create: OpenAI text_completion, whole and streamed, with logprobs and abort; a base model refuses chat.completions", async () => {
  const r = await inPage(page, async (llm, [model, prompt, ids, base]) => {
    const engine = await llm.createEngine({ model, backend: "cpu", exactCpu: true });
    const info = await engine.info();
    const whole = await engine.completions.create({ prompt, max_tokens: 4, temperature: 0, logprobs: 3 });
    const wholeTokens = engine.lastGeneration.tokens;
    const byIds = await engine.completions.create({ prompt: ids, max_tokens: 4, temperature: 0 });
    const chunks = [];
    for await (const c of await engine.completions.create({ prompt: [prompt], max_tokens: 4, temperature: 0, stream: true, logprobs: 0 })) chunks.push(c);
    const ctrl = new AbortController();
    let aborted = null;
    let seen = 0;
    try {
      for await (const c of await engine.completions.create({ prompt, max_tokens: 50, temperature: 0, stream: true, signal: ctrl.signal })) {
        if (c.choices[0].text && ++seen === 2) ctrl.abort();
      }
    } catch (e) {
      aborted = e.code;
    }
    const bad = {};
    for (const [name, request] of Object.entries({
      number: { prompt: 42 }, batch: { prompt: ["a", "b"] }, echo: { prompt, echo: true }, logprobsTrue: { prompt, logprobs: true },
    })) {
      try {
        await engine.completions.create(request);
        bad[name] = "ran";
      } catch (e) {
        bad[name] = e.code;
      }
    }
    const after = await engine.completions.create({ prompt, max_tokens: 4, temperature: 0 });
    await engine.unload();
    // A model without a chat template: completions only; no catalog entry (bytes have no name).
    const plain = await llm.createEngine({ model: await (0, eval)(`(${base})`)(model), backend: "cpu" });
    const plainInfo = await plain.info();
    let chat;
    try {
      await plain.chat.completions.create({ messages: [{ role: "user", content: "Hi" }], max_tokens: 2 });
      chat = "ran";
    } catch (e) {
      chat = [e.code, e.message];
    }
    const raw = await plain.completions.create({ prompt, max_tokens: 2, temperature: 0 });
    await plain.unload();
    return { info, whole, wholeTokens, byIds, chunks, aborted, seen, bad, after, plainInfo, chat, raw };
  }, [MODEL, facts.prompt_text, facts.prompt_token_ids, templateless.toString()]);
  assert(!r.error, JSON.stringify(r.error));
  const want = facts.f32_reference.generated_token_ids.slice(0, 4);
  const c = r.whole.choices[0];
  same([r.whole.object, c.index, c.finish_reason], ["text_completion", 0, "length"], "the completion");
  same([r.whole.usage.prompt_tokens, r.whole.usage.completion_tokens], [facts.prompt_token_ids.length, 4], "usage");
  same(c.logprobs.tokens.length, 4, "a logprob per token");
  same(c.logprobs.tokens.join(""), c.text, "the tokens spell the text");
  same(c.logprobs.text_offset, c.logprobs.tokens.map((_, i) => c.logprobs.tokens.slice(0, i).join("").length), "text_offset");
  assert(c.logprobs.top_logprobs.every((t) => Object.keys(t).length <= 3), "at most 3 rivals");
  same(c.logprobs.content.map((e) => e.logprob), c.logprobs.token_logprobs, "content: the chat-shaped entries");
  same(r.byIds.choices[0].text, c.text, "token ids as the prompt");
  same(r.after.choices[0].text, c.text, "the engine answers as before after errors and an abort");
  const streamed = r.chunks.map((k) => k.choices[0].text).join("");
  same(streamed, c.text, "streamed text");
  assert(r.chunks.every((k) => k.object === "text_completion" && k.id === r.chunks[0].id), "chunks");
  same([r.chunks.at(-1).choices[0].finish_reason, r.chunks.at(-1).usage?.completion_tokens], ["length", 4], "the last chunk");
  same(r.chunks.filter((k) => k.choices[0].logprobs).length, 4, "a chunk per token with logprobs");
  same(r.aborted, "aborted", "abort");
  assert(r.seen <= 3, `aborted after ${r.seen} pieces`);
  same(r.bad, { number: "invalid_argument", batch: "invalid_argument", echo: "invalid_argument", logprobsTrue: "invalid_argument" }, "bad requests");
  // The exact CPU path: llama.cpp's f32 reference tokens (the text is those tokens').
  same(r.info.template.has_chat_template, true, "the default model has a template");
  same([r.info.catalog.entry?.name, r.info.catalog.matched], [CATALOG.default, true], "recognised by URL name and size");
  same(r.info.template.eog.map((t) => [t.id, t.text]), [[0, "<|endoftext|>"], [2, "<|im_end|>"], [4, "<reponame>"]], "EOG facts");
  same(r.plainInfo.template.has_chat_template, false, "the renamed key: no template");
  same([r.plainInfo.chat_template, r.plainInfo.catalog.entry], [null, null], "no template source, no catalog entry");
  assert(r.chat[0] === "invalid_argument" && r.chat[1].includes("base model") && r.chat[1].includes("completions.create"), `chat on a base model: ${r.chat}`);
  same(r.raw.usage.completion_tokens, 2, "raw completion on it");
  same(r.wholeTokens, want, "llama.cpp's greedy tokens (exact CPU path)");
});

test("the demo page loads the model and answers with the sliders' settings, without console errors", async () => {
  const p = await browser.newPage();
  const problems = [];
  p.on("console", (m) => m.type() === "error" && problems.push(m.text()));
  p.on("pageerror", (e) => problems.push(e.message));
  await p.goto(`${server.url}/www/`);
  await p.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: 60000 });
  const facts = await p.textContent("#facts");
  assert(facts.includes("30 layers"), `model facts: ${facts}`);
  // Greedy and short through the sliders, so the answer is known.
  await p.evaluate(() => {
    const set = (key, v) => {
      const el = document.getElementById(`knob-${key}`);
      el.value = v;
      el.dispatchEvent(new Event("input"));
    };
    set("temperature", 0);
    set("max_tokens", 12);
  });
  await p.fill("#input", "What is the capital of France?");
  await p.press("#input", "Enter");
  await p.waitForFunction(() => document.body.dataset.state === "ready" && document.querySelectorAll("#messages li").length === 2,
    null, { timeout: 60000 });
  // The page's answer is the engine's own greedy answer to the same message (the page's
  // default CPU path quantizes its inputs as llama.cpp does, so it is not the f32 golden text).
  const direct = await p.evaluate(async () => {
    const r = await window.demo.engine.chat.completions.create({
      messages: [{ role: "user", content: "What is the capital of France?" }], temperature: 0, max_tokens: 12,
    });
    return r.choices[0].message.content;
  });
  assert(direct.length > 0, "an answer");
  same(await p.textContent("#messages li.assistant"), direct, "answer");
  const injected = await p.evaluate(() => {
    const m = window.demo.settings;
    return [m.temperature, m.max_tokens];
  });
  same(injected, [0, 12], "settings");
  assert((await p.textContent("#stats")).includes("tokens/s"), "stats shown");
  assert(problems.length === 0, `console errors: ${problems.join(" | ")}`);
  await p.close();
});

test("demo page: a slider moved mid-reply reaches the engine before the next token; Stop; token alternatives match the engine; New chat; a dropped corrupt file; screenshots", async () => {
  const { p, problems, shots } = await openDemo();
  const setKnob = (key, v) => p.evaluate(([key, v]) => {
    const el = document.getElementById(`knob-${key}`);
    el.value = v;
    el.dispatchEvent(new Event("input"));
  }, [key, v]);
  await setKnob("temperature", 0);
  await setKnob("max_tokens", 300);
  await p.fill("#input", "Write a long poem about the sea.");
  await p.press("#input", "Enter");
  const tokens = () => p.evaluate(() => document.querySelectorAll("#messages li.assistant .tok").length);
  await p.waitForFunction(() => document.querySelectorAll("#messages li.assistant .tok").length >= 3, null, { timeout: 60000 });
  await setKnob("temperature", 1.3);
  await p.waitForFunction(() => window.demo.applied.some((a) => a.knobs.temperature === 1.3), null, { timeout: 60000 });
  const ack = await p.evaluate(() => window.demo.applied.find((a) => a.knobs.temperature === 1.3).tokens);
  await p.waitForFunction((n) => document.querySelectorAll("#messages li.assistant .tok").length >= n + 4, ack, { timeout: 60000 });
  await p.click("#stop");
  await p.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: 60000 });
  const g = await p.evaluate(() => window.demo.engine.lastGeneration);
  same(g.finish_reason, "abort", "Stop halts the generation");
  assert(g.tokens.length < 300, `stopped after ${g.tokens.length} tokens`);
  same(await tokens(), g.tokens.length, "one tinted span per generated token");
  // The engine's own record: greedy from the start, 1.3 from exactly the token after the
  // acknowledgement (the worker answers setSampling between two tokens).
  same(g.sampling.map((c) => [c.from_token, c.params.temperature]), [[0, 0], [ack, Math.fround(1.3)]], "the engine's recorded knobs (f32)");

  // Alternatives of a token drawn at temperature 1.3, as the page shows them on hover ...
  const step = ack + 1;
  await p.hover(`#messages li.assistant .tok[data-step="${step}"]`);
  await p.waitForSelector("#alts:not([hidden])");
  const shown = await p.evaluate(() => [...document.querySelectorAll("#alts tr")].map((tr) => [Number(tr.dataset.model), Number(tr.dataset.prob)]));
  same(shown.length, 10, "ten alternatives");
  const sum = (i) => shown.reduce((s, r) => s + r[i], 0);
  assert(sum(0) <= 1 + 1e-6 && sum(1) <= 1 + 1e-6, `alternatives sum to ${sum(0)} (model) and ${sum(1)} (after the knobs)`);
  assert(sum(1) > 0, "some alternative survives the knobs");
  await p.screenshot({ path: join(shots, "desktop-light.png") });
  // ... and as the engine computes that step again from the same context and knobs.
  const again = await p.evaluate(async ([g, step]) => {
    const it = window.demo.engine.generate([...g.prompt_tokens, ...g.tokens.slice(0, step)],
      { ...g.sampling[1].params, logit_bias: {}, seed: 1, max_tokens: 1, top_logprobs: 10 });
    const out = [];
    for await (const piece of it) out.push(piece);
    return out[0].top.map((t) => [Math.exp(t.logprob), t.prob]);
  }, [g, step]);
  for (const [i, [model, prob]] of again.entries()) {
    assert(Math.abs(model - shown[i][0]) < 1e-4 && Math.abs(prob - shown[i][1]) < 1e-4,
      `alternative ${i}: page ${shown[i]} vs engine ${[model, prob]}`);
  }
  const chart = await p.evaluate(() => document.querySelectorAll("#dist tbody tr").length);
  same(chart, 10, "the distribution panel shows the hovered step");
  // The keyboard reaches the same view: Right moves to the next token.
  await p.focus("#messages li.assistant");
  await p.keyboard.press("ArrowRight");
  same(await p.evaluate(() => document.querySelector(".tok.current").dataset.step), String(step + 1), "ArrowRight steps to the next token");

  await p.setViewportSize({ width: 390, height: 844 });
  await p.hover(`#messages li.assistant .tok[data-step="${step}"]`);
  await p.screenshot({ path: join(shots, "phone-light.png"), fullPage: true });
  await p.emulateMedia({ colorScheme: "dark" });
  await p.screenshot({ path: join(shots, "phone-dark.png"), fullPage: true });
  await p.setViewportSize({ width: 1280, height: 860 });
  await p.hover(`#messages li.assistant .tok[data-step="${step}"]`);
  await p.screenshot({ path: join(shots, "desktop-dark.png") });
  await p.emulateMedia({ colorScheme: "light" });

  await p.click("#new-chat");
  same(await p.evaluate(() => document.querySelectorAll("#messages li").length), 0, "New chat empties the transcript");
  // The worker answers in order: the reset New chat sent comes before this question.
  same(await p.evaluate(async () => (await window.demo.engine.info()).cached_tokens), 0, "New chat empties the KV cache");

  // A corrupt file dropped on the page: the error, in words.
  await p.evaluate(() => {
    const dt = new DataTransfer();
    dt.items.add(new File([new Uint8Array(4096).fill(7)], "broken.gguf"));
    document.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
  });
  await p.waitForSelector("#error:not([hidden])", { timeout: 30000 });
  const error = await p.textContent("#error");
  assert(error.includes("not a model this page can read") && error.includes("bad_model"), `error shown: ${error}`);
  same([await p.textContent("#backend"), await p.textContent("#facts")], ["no model", ""], "no stale model facts");
  await p.screenshot({ path: join(shots, "desktop-bad-file.png") });
  assert(problems.length === 0, `console errors: ${problems.join(" | ")}`);
  await p.close();
});

test("demo picker: the catalog's present models with sizes, licences and memory; picking the default model loads it; template facts; the phone's bottom sheet", async () => {
  const { p, problems, shots } = await openDemo();
  const options = await p.evaluate(() => [...document.querySelectorAll("#model-pick option")].map((o) => [o.value, o.textContent]));
  const present = presentModels();
  same(options.map(([v]) => v), [...present.map((m) => m.name), ""], "the present models, then another model");
  for (const m of present) {
    const text = options.find(([v]) => v === m.name)[1];
    const mb = (b) => (b / 1048576).toFixed(1);
    const kv = 2 * m.n_layers * m.kv_width * Math.min(4096, m.context_length) * 4;
    for (const part of [m.title, `${mb(m.size_bytes)} MB`, m.license, `≈ ${mb(m.size_bytes + kv)} MB`]) {
      assert(text.includes(part), `${m.name}: option ${JSON.stringify(text)} lacks ${part}`);
    }
  }
  same(await p.inputValue("#model-pick"), CATALOG.default, "the default model is picked at first");
  // Pick another model (not loaded), then the default again, at a smaller context, and load.
  const other = present.find((m) => m.name !== CATALOG.default);
  if (other) {
    await p.selectOption("#model-pick", other.name);
    assert((await p.inputValue("#model-url")).endsWith(`/models/${other.file}`), "picking sets the URL");
    assert((await p.textContent("#model-about")).includes(other.license), "the picked model's facts");
  }
  await p.selectOption("#model-pick", CATALOG.default);
  await p.selectOption("#context-choice", "1024");
  const about = await p.textContent("#model-about");
  assert(about.includes(`${(30 * 192 * 2 * 4 * 1024 / 1048576).toFixed(1)} MB of KV cache for 1024 tokens`), `memory estimate: ${about}`);
  await p.click("#load");
  await p.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: 60000 });
  const info = await p.evaluate(() => window.demo.engine.info());
  same([info.context_size, info.catalog.entry?.name, info.catalog.matched], [1024, CATALOG.default, true], "loaded the picked model at the picked context");
  const factsText = await p.textContent("#facts");
  for (const part of ["30 layers", "1024 of 8192", "its own", "<|im_start|> (1), not added to prompts", "<|im_end|> (2)", "<|endoftext|> (0)", "file name and size match"]) {
    assert(factsText.includes(part), `model facts lack ${part}: ${factsText}`);
  }
  same(await p.evaluate(() => window.demo.mode), "chat", "a chat model chats");
  await p.screenshot({ path: join(shots, "desktop-picker.png") });

  // Phone: the sampling panel is a bottom sheet; temperature and top-p stay in view while the
  // answer streams, at the bottom of the screen.
  await p.setViewportSize({ width: 390, height: 844 });
  await p.evaluate(() => {
    const el = document.getElementById("knob-max_tokens");
    el.value = 40;
    el.dispatchEvent(new Event("input"));
  });
  await p.fill("#input", "Write a poem about the sea.");
  await p.press("#input", "Enter");
  await p.waitForFunction(() => document.querySelectorAll("#messages li.assistant .tok").length >= 3, null, { timeout: 60000 });
  const inView = await p.evaluate(() => ["knob-temperature", "knob-top_p", "knob-top_k"].map((id) => {
    const r = document.getElementById(id).getBoundingClientRect();
    return r.height > 0 && r.top >= 0 && r.bottom <= innerHeight;
  }));
  same(inView, [true, true, false], "temperature and top-p in view on a phone (top-k behind All knobs)");
  await p.screenshot({ path: join(shots, "phone-sheet.png") });
  // The quick sliders work from the sheet mid-answer.
  await p.evaluate(() => {
    const el = document.getElementById("knob-temperature");
    el.value = 0.3;
    el.dispatchEvent(new Event("input"));
  });
  await p.waitForFunction(() => window.demo.applied.some((a) => a.knobs.temperature === 0.3), null, { timeout: 60000 });
  await p.click("#sheet-toggle");
  same(await p.evaluate(() => [document.getElementById("knob-top_k").getBoundingClientRect().height > 0,
    document.getElementById("sheet-toggle").getAttribute("aria-expanded")]), [true, "true"], "All knobs opens the sheet");
  await p.screenshot({ path: join(shots, "phone-sheet-open.png") });
  await p.click("#sheet-toggle");
  await p.click("#stop");
  await p.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: 60000 });
  assert(problems.length === 0, `console errors: ${problems.join(" | ")}`);
  await p.close();
});

test("demo completion: a model without a chat template switches to text completion; the continuation streams into the text box; Regenerate; screenshots", async () => {
  const { p, problems, shots } = await openDemo();
  same(await p.isVisible("#completion"), false, "a chat model starts in chat mode");
  // The default model without its template, dropped on the page.
  await p.evaluate(async ([model, base]) => {
    const bytes = await (0, eval)(`(${base})`)(model);
    const dt = new DataTransfer();
    dt.items.add(new File([bytes], "base-model.gguf"));
    document.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, [MODEL, templateless.toString()]);
  await p.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: 60000 });
  same(await p.evaluate(() => [window.demo.mode, document.querySelector("input[name=mode][value=chat]").disabled]), ["completion", true], "completion mode, chat disabled");
  same([await p.isVisible("#completion"), await p.isVisible("#messages"), await p.textContent("#send")], [true, false, "Continue"], "the text box instead of the transcript");
  const factsText = await p.textContent("#facts");
  assert(factsText.includes("none: a base model") && factsText.includes("not a catalog model"), `facts: ${factsText}`);
  assert((await p.textContent("#mode-note")).includes("base model"), "the mode says why");
  await p.evaluate(() => {
    for (const [key, v] of [["temperature", 0], ["max_tokens", 10]]) {
      const el = document.getElementById(`knob-${key}`);
      el.value = v;
      el.dispatchEvent(new Event("input"));
    }
  });
  const prompt = "The capital of France is";
  await p.fill("#document", prompt);
  await p.press("#document", "Control+Enter");
  await p.waitForFunction(() => document.body.dataset.state === "ready" && window.demo.engine.lastGeneration, null, { timeout: 60000 });
  const doc = await p.inputValue("#document");
  const g = await p.evaluate(() => window.demo.engine.lastGeneration);
  assert(doc.startsWith(prompt) && doc.length > prompt.length, `the continuation is in the text box: ${JSON.stringify(doc)}`);
  same(await p.textContent("#continuation"), doc.slice(prompt.length), "the continuation, tinted token by token");
  same(await p.evaluate(() => document.querySelectorAll("#continuation .tok").length), g.tokens.length, "one span per token");
  const direct = await p.evaluate(async (prompt) => (await window.demo.engine.completions.create({ prompt, temperature: 0, max_tokens: 10 })).choices[0].text, prompt);
  same(doc, prompt + direct, "the page's continuation is the engine's greedy one");
  await p.hover('#continuation .tok[data-step="1"]');
  await p.waitForSelector("#alts:not([hidden])");
  same(await p.evaluate(() => document.querySelectorAll("#alts tr").length), 10, "alternatives of a continued token");
  await p.screenshot({ path: join(shots, "desktop-completion.png") });
  await p.click("#regenerate");
  await p.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: 60000 });
  same(await p.inputValue("#document"), doc, "Regenerate replaces the last continuation (greedy: the same)");
  await p.setViewportSize({ width: 390, height: 844 });
  await p.screenshot({ path: join(shots, "phone-completion.png") });
  await p.click("#new-chat");
  same([await p.inputValue("#document"), await p.textContent("#new-chat")], ["", "Clear"], "Clear empties the text");
  assert(problems.length === 0, `console errors: ${problems.join(" | ")}`);
  await p.close();
});

test("the demo server: wasm MIME type, isolation headers, ranges (206/416), HEAD, bad paths", async () => {
  const get = (path, headers = {}, method = "GET") => fetch(`${server.url}${path}`, { headers, method });
  const wasm = await get("/pkg/wasm/webgpu_llm_bg.wasm", {}, "HEAD");
  same([wasm.status, wasm.headers.get("content-type"), (await wasm.arrayBuffer()).byteLength], [200, "application/wasm", 0], "HEAD of the wasm");
  same([wasm.headers.get("cross-origin-opener-policy"), wasm.headers.get("cross-origin-embedder-policy")],
    ["same-origin", "require-corp"], "cross-origin isolation");
  const size = Number(wasm.headers.get("content-length"));
  const whole = new Uint8Array(await (await get("/pkg/wasm/webgpu_llm_bg.wasm")).arrayBuffer());
  same(whole.length, size, "content-length");
  const part = await get("/pkg/wasm/webgpu_llm_bg.wasm", { range: "bytes=100-199" });
  same([part.status, part.headers.get("content-range")], [206, `bytes 100-199/${size}`], "a range");
  same([...new Uint8Array(await part.arrayBuffer())], [...whole.slice(100, 200)], "the range's bytes");
  const tail = await get("/pkg/wasm/webgpu_llm_bg.wasm", { range: "bytes=-4" });
  same([...new Uint8Array(await tail.arrayBuffer())], [...whole.slice(-4)], "a suffix range");
  const past = await get("/pkg/wasm/webgpu_llm_bg.wasm", { range: `bytes=${size}-` });
  same([past.status, past.headers.get("content-range")], [416, `bytes */${size}`], "a range past the end");
  same((await get("/%")).status, 400, "a malformed path");
  // Sent as is (fetch would resolve the dots first).
  const raw = await new Promise((ok, fail) =>
    request({ host: "127.0.0.1", port: new URL(server.url).port, path: "/www/../../../../etc/passwd" },
      (res) => ok(res.resume().statusCode)).on("error", fail).end());
  same(raw, 404, "a path outside the root");
  same((await get("/no/such/file")).status, 404, "a missing file");
});

test("the benchmark page reports the native bench's fields, for webgpu-llm and for wllama on the same file", async () => {
  const run = async (query) => {
    const p = await browser.newPage();
    await p.goto(`${server.url}/www/bench.html?${query}`);
    await p.waitForFunction(() => window.bench !== undefined, null, { timeout: 120000 });
    const r = await p.evaluate(() => window.bench);
    await p.close();
    assert(!r.error, JSON.stringify(r.error));
    return r;
  };
  const ours = await run("backend=cpu&prompt=16&gen=4");
  same([ours.runtime, ours.backend, ours.prompt_tokens, ours.generated_tokens], ["webgpu-llm", "cpu", 16, 4], "our run");
  for (const k of ["load_s", "time_to_first_token_s", "prefill_tokens_per_s", "decode_tokens_per_s", "weight_bytes", "kv_cache_bytes"]) {
    assert(Number.isFinite(ours[k]) && ours[k] > 0, `${k}: ${ours[k]}`);
  }
  const theirs = await run("runtime=wllama&gpu_layers=0&threads=1&prompt=16&gen=4");
  same([theirs.runtime, theirs.generated_tokens], ["wllama", 4], "wllama's run");
  assert(theirs.prompt_tokens >= 12 && theirs.decode_tokens_per_s > 0, JSON.stringify(theirs));
});

// ---- Speculative decoding, n choices, perplexity (the package's API over the engine's). ----

const COPY_PROMPT = "Copy the list.\nList: apple, banana, cherry, grape, lemon, mango, peach, plum.\n" +
  "Copy: apple, banana, cherry, grape, lemon, mango, peach, plum.\nList: red, green, blue, yellow, purple, orange, white, black.\nCopy:";

test("prompt lookup (lookup: 3) gives plain greedy's tokens on the CPU and the GPU, with drafts accepted", async () => {
  const r = await inPage(page, async (llm, [model, prompt, short]) => {
    const out = {};
    // SwiftShader is slow: a shorter text and fewer tokens on the GPU.
    for (const [backend, max_tokens, text] of [["cpu", 16, prompt], ["gpu", 3, short]]) {
      const engine = await llm.createEngine({ model, backend, contextSize: 96 });
      const run = async (opts) => {
        const it = engine.generate(text, { temperature: 0, max_tokens, ...opts });
        const ids = [];
        for await (const p of it) if (p.tokenId !== null) ids.push(p.tokenId);
        const g = it.result;
        const rate = g.tokens.length / (g.prefill_secs + g.decode_secs);
        return { ids, tokens: g.tokens, drafted: g.drafted_tokens, accepted: g.accepted_tokens, rate };
      };
      const plain = await run({});
      const lookup = await run({ lookup: 3 });
      const last = engine.lastGeneration;
      out[backend] = { plain, lookup, last: [last.drafted_tokens, last.accepted_tokens] };
      await engine.unload();
    }
    return out;
  }, [MODEL, COPY_PROMPT, "List: red, green, blue, yellow, purple.\nCopy: red, green, blue,"]);
  assert(!r.error, JSON.stringify(r.error));
  for (const backend of ["cpu", "gpu"]) {
    const { plain, lookup, last } = r[backend];
    // A figure for the report, not a test: generated tokens per second, prefill included.
    console.log(`  ${backend}: plain ${plain.rate.toFixed(2)} tokens/s, lookup ${lookup.rate.toFixed(2)} tokens/s ` +
      `(${lookup.accepted} of ${lookup.drafted} drafts accepted, ${plain.tokens.length} tokens)`);
    same(lookup.ids, plain.ids, `${backend}: streamed tokens with lookup`);
    same(lookup.tokens, plain.tokens, `${backend}: generated tokens with lookup`);
    same([plain.drafted, plain.accepted], [0, 0], `${backend}: no drafts without lookup`);
    assert(lookup.accepted > 0 && lookup.accepted <= lookup.drafted, `${backend}: accepted ${lookup.accepted} of ${lookup.drafted} drafts`);
    same(last, [lookup.drafted, lookup.accepted], `${backend}: lastGeneration's drafted/accepted`);
  }
});

test("a draft model (the default model drafting for itself) gives plain greedy's tokens, every draft accepted", async () => {
  const r = await inPage(page, async (llm, [model, prompt]) => {
    const draftStages = new Set();
    const engine = await llm.createEngine({
      model, draftModel: model, backend: "cpu", contextSize: 128, onProgress: (p) => p.draft && draftStages.add(p.stage),
    });
    const info = await engine.info();
    const run = async (opts) => {
      const r = await engine.completions.create({ prompt, temperature: 0, max_tokens: 16, ...opts });
      const g = engine.lastGeneration;
      return { text: r.choices[0].text, tokens: g.tokens, drafted: g.drafted_tokens, accepted: g.accepted_tokens };
    };
    const draft = await run({ draft_tokens: 4 });
    const adaptive = await run({});
    const plain = await run({ draftTokens: 0 });
    await engine.unload();
    return { draft, adaptive, plain, draftInfo: info.draft, draftStages: [...draftStages] };
  }, [MODEL, COPY_PROMPT]);
  assert(!r.error, JSON.stringify(r.error));
  same(r.draftInfo?.backend, "cpu", "info().draft");
  assert(r.draftStages.length > 0, "the draft model's load reports progress with draft: true");
  same(r.draft.tokens, r.plain.tokens, "tokens with draft_tokens: 4");
  same(r.adaptive.tokens, r.plain.tokens, "tokens with adaptive drafting");
  same(r.draft.text, r.plain.text, "text");
  same([r.plain.drafted, r.plain.accepted], [0, 0], "draftTokens: 0 turns the draft model off");
  assert(r.draft.drafted > 0 && r.draft.accepted === r.draft.drafted, `a model drafting for itself: ${r.draft.accepted} of ${r.draft.drafted} accepted`);
});

test("n: 3 are decoded as one batch on the CPU and on WebGPU: one step per token of all choices, each the request alone", async () => {
  const r = await inPage(page, async (llm, model) => {
    const out = {};
    for (const backend of ["cpu", "gpu"]) {
      const engine = await llm.createEngine({ model, backend, contextSize: 128 });
      // Two tokens on SwiftShader (seconds a token: one batched step), four on the CPU.
      const request = { prompt: "Once upon a time", temperature: 1, max_tokens: backend === "gpu" ? 2 : 4, repetition_penalty: 1.3 };
      const three = await engine.completions.create({ ...request, n: 3, seed: 5 });
      const last = engine.lastGeneration;
      const single = [];
      let one;
      for (const seed of [5, 6, 7]) {
        single.push((await engine.completions.create({ ...request, seed })).choices[0].text);
        one ??= engine.lastGeneration;
      }
      await engine.unload();
      const finishes = three.choices.map((c) => c.finish_reason);
      const rates = [3 * last.decoded_tokens / last.decode_secs, one.decoded_tokens / one.decode_secs];
      out[backend] = { texts: three.choices.map((c) => c.text), single, finishes, steps: last.decode_work.steps, decoded: last.decoded_tokens, rates, fed: request.max_tokens - 1 };
    }
    return out;
  }, MODEL);
  assert(!r.error, JSON.stringify(r.error));
  for (const backend of ["cpu", "gpu"]) {
    const b = r[backend];
    console.log(`  ${backend}: decode ${b.rates[0].toFixed(2)} tokens/s summed over n = 3, ${b.rates[1].toFixed(2)} for n = 1 (a figure, not a test)`);
    same(b.texts, b.single, `${backend}: choice i = the request seeded 5 + i`);
    same(b.finishes, ["length", "length", "length"], `${backend}: every choice runs to max_tokens`);
    same([b.decoded, b.steps], [b.fed, b.fed], `${backend}: ${b.fed} tokens fed back per choice in ${b.fed} steps of all three`);
  }
});

test("n: 3 with a seed equals three n = 1 requests seeded seed, seed+1, seed+2; streamed chunks carry index 0..2", async () => {
  const r = await inPage(page, async (llm, model) => {
    const engine = await llm.createEngine({ model, backend: "cpu", contextSize: 256 });
    const request = { messages: [{ role: "user", content: "Tell me a story." }], temperature: 1, max_tokens: 8 };
    const three = await engine.chat.completions.create({ ...request, n: 3, seed: 41 });
    const last = engine.lastGeneration;
    const single = [];
    for (const seed of [41, 42, 43]) single.push((await engine.chat.completions.create({ ...request, seed })).choices[0]);
    const texts = ["", "", ""];
    const finishes = [null, null, null];
    let usage = null;
    let roles = 0;
    for await (const c of await engine.chat.completions.create({ ...request, n: 3, seed: 41, stream: true })) {
      const ch = c.choices[0];
      texts[ch.index] += ch.delta.content ?? "";
      if (ch.delta.role) roles++;
      if (ch.finish_reason) finishes[ch.index] = ch.finish_reason;
      if (c.usage) usage = c.usage;
    }
    const completion = await engine.completions.create({ prompt: "Once upon a time", n: 3, seed: 9, temperature: 1, max_tokens: 6 });
    const alone = await engine.completions.create({ prompt: "Once upon a time", seed: 10, temperature: 1, max_tokens: 6 });
    const best = await engine.completions.create({ prompt: "Once upon a time", n: 1, best_of: 3, seed: 9, temperature: 1, max_tokens: 6 });
    await engine.unload();
    return { three, single, texts, finishes, usage, roles, last: { index: last.index, seed: last.seed }, completion, alone, best };
  }, MODEL);
  assert(!r.error, JSON.stringify(r.error));
  same(r.three.choices.map((c) => c.index), [0, 1, 2], "indices");
  same(r.three.choices.map((c) => c.message.content), r.single.map((c) => c.message.content), "choice i = the request seeded seed + i");
  same(r.three.choices.map((c) => c.finish_reason), r.single.map((c) => c.finish_reason), "finish reasons");
  assert(new Set(r.single.map((c) => c.message.content)).size > 1, `three seeds, one answer: ${r.single[0].message.content}`);
  same(r.texts, r.single.map((c) => c.message.content), "streamed text of each index");
  same(r.finishes, r.single.map((c) => c.finish_reason), "each index's streamed finish_reason");
  same(r.roles, 3, "each choice opens with the role");
  same(r.usage.completion_tokens, r.three.usage.completion_tokens, "streamed usage");
  same([r.last.index, r.last.seed], [0, 41], "lastGeneration: the first choice");
  same(r.completion.choices[1].text, r.alone.choices[0].text, "completions: choice 1 = seed + 1");
  same(r.best.choices.length, 1, "best_of 3, n 1: one choice");
  const runs = r.completion.choices.map((c) => c.text);
  assert(runs.includes(r.best.choices[0].text), `best_of 3 answers one of the three seeded runs: ${JSON.stringify(r.best.choices[0].text)} of ${JSON.stringify(runs)}`);
  same(r.best.choices[0].index, 0, "the best choice's index");
});

// The exact CPU path on both sides: the default (quantized-activation) paths of the native CLI
// and of wasm differ by about 0.6% in perplexity on this text (183.37 vs 182.32).
test("evaluate() gives the native CLI's perplexity (webgpu-llm perplexity --ctx 64 --chunks 2 --backend cpu --exact-cpu)", async () => {
  const bin = cliBinary(ROOT);
  assert(bin, "no webgpu-llm CLI binary under target/ (cargo build): it computes the expected perplexity");
  const text = readFileSync(join(ROOT, "ARCHITECTURE.md"), "utf8").slice(0, 1500);
  const dir = mkdtempSync(join(tmpdir(), "webgpu-llm-ppl-"));
  writeFileSync(join(dir, "text.txt"), text);
  const native = JSON.parse(execFileSync(bin, ["perplexity", "--file", join(dir, "text.txt"), "--ctx", "64", "--chunks", "2", "--json",
    "--backend", "cpu", "--exact-cpu", "--model", join(ROOT, MODEL)], { encoding: "utf8", cwd: ROOT }));
  const r = await inPage(page, async (llm, [model, text]) => {
    const engine = await llm.createEngine({ model, backend: "cpu", exactCpu: true, contextSize: 128 });
    const seen = [];
    const ppl = await engine.evaluate(text, { contextSize: 64, maxChunks: 2, onProgress: (c) => seen.push(c) });
    let short;
    try {
      await engine.evaluate("too short", { contextSize: 64 });
    } catch (e) {
      short = e.code;
    }
    await engine.unload();
    return { ppl, seen, short };
  }, [MODEL, text]);
  assert(!r.error, JSON.stringify(r.error));
  const close = (a, b, what) => assert(Math.abs(a - b) <= 1e-3 * Math.abs(b), `${what}: ${a} vs the CLI's ${b}`);
  close(r.ppl.ppl, native.ppl, "ppl");
  close(r.ppl.ppl_stderr, native.ppl_stderr, "ppl_stderr");
  same([r.ppl.tokens, r.ppl.scored_tokens, r.ppl.context_size], [native.tokens, native.scored_tokens, 64], "token counts");
  same(r.ppl.chunks.length, 2, "maxChunks: 2");
  r.ppl.chunks.forEach((c, i) => close(c.cumulative_ppl, native.chunks[i].cumulative_ppl, `chunk ${i}`));
  same(r.seen, r.ppl.chunks, "onProgress sees each chunk");
  same(r.short, "invalid_argument", "a text shorter than two chunks");
});

test("bad n, best_of, draft_tokens, lookup are invalid_argument; the engine keeps working", async () => {
  const r = await inPage(page, async (llm, model) => {
    const engine = await llm.createEngine({ model, backend: "cpu", contextSize: 128 });
    const messages = [{ role: "user", content: "What is the capital of France?" }];
    const ask = async (extra) => {
      try {
        const r = await engine.chat.completions.create({ messages, temperature: 0, max_tokens: 4, ...extra });
        return r.choices.map((c) => c.message.content);
      } catch (e) {
        return e.code;
      }
    };
    const before = await ask({});
    const bad = {};
    for (const [name, extra] of Object.entries({
      n0: { n: 0 }, n17: { n: 17 }, nHalf: { n: 1.5 }, bestOfBelowN: { n: 3, best_of: 2 }, bestOfStream: { n: 1, best_of: 2, stream: true },
      draft16: { draft_tokens: 16 }, draftNeg: { draftTokens: -1 }, lookup0: { lookup: 0 }, lookup9: { lookup: 9 },
      nDraft: { n: 2, draft_tokens: 99 },
    })) bad[name] = await ask(extra);
    let ctx;
    try {
      await engine.evaluate("x".repeat(10), { contextSize: 2 });
    } catch (e) {
      ctx = e.code;
    }
    const after = await ask({});
    const two = await ask({ n: 2 });
    await engine.unload();
    return { before, bad, ctx, after, two };
  }, MODEL);
  assert(!r.error, JSON.stringify(r.error));
  for (const [name, code] of Object.entries(r.bad)) same(code, "invalid_argument", name);
  same(r.ctx, "invalid_argument", "evaluate with contextSize 2");
  same(r.after, r.before, "the engine answers as before");
  same(r.two, [r.before[0], r.before[0]], "greedy n: 2");
});

test("demo: n answers side by side (each the engine's greedy answer), prompt lookup's acceptance shown, JSON mode passed along; the speculative switch loads a draft model", async () => {
  const { p, problems } = await openDemo();
  try {
    await p.evaluate(() => {
      const set = (key, v) => {
        const el = document.getElementById(`knob-${key}`);
        el.value = v;
        el.dispatchEvent(new Event("input"));
      };
      set("temperature", 0);
      set("max_tokens", 8);
      const n = document.getElementById("n-answers");
      n.value = "2";
      n.dispatchEvent(new Event("change"));
      for (const id of ["lookup", "json-mode"]) document.getElementById(id).click();
    });
    await p.fill("#input", "What is the capital of France?");
    await p.press("#input", "Enter");
    await p.waitForFunction(() => document.body.dataset.state === "ready" && document.querySelectorAll("#messages li").length === 2,
      null, { timeout: 60000 });
    const shown = await p.evaluate(() => ({
      answers: [...document.querySelectorAll("#messages li.answers > .answer")].map((a) => a.textContent),
      drafted: document.getElementById("acceptance").dataset.drafted,
      acceptance: document.getElementById("acceptance").textContent,
      decoding: { ...window.demo.decoding },
    }));
    const direct = await p.evaluate(async () => {
      const r = await window.demo.engine.chat.completions.create({
        messages: [{ role: "user", content: "What is the capital of France?" }], temperature: 0, max_tokens: 8,
        lookup: 3, response_format: { type: "json_object" },
      });
      return [r.choices[0].message.content, window.demo.engine.lastGeneration.drafted_tokens];
    });
    same(shown.answers, [direct[0], direct[0]], "two greedy answers side by side");
    same(Number(shown.drafted), direct[1], "the drafts of the last answer");
    assert(shown.acceptance.length > 0, "the acceptance line");
    same([shown.decoding.n, shown.decoding.lookup, shown.decoding.json], [2, true, true], "the decoding panel's settings");
    // The speculative switch loads the model again with the picked draft model (by default the
    // smallest present one: here the default model itself, so greedy keeps every draft).
    await p.evaluate(() => {
      const n = document.getElementById("n-answers");
      n.value = "1";
      n.dispatchEvent(new Event("change"));
      // JSON mode off too: under a grammar the engine does not speculate.
      document.getElementById("lookup").click();
      document.getElementById("json-mode").click();
      document.getElementById("speculative").click();
    });
    await p.waitForFunction(() => document.body.dataset.state === "ready" && document.getElementById("facts").textContent.includes("Draft model"),
      null, { timeout: 60000 });
    await p.fill("#input", "What is the capital of France?");
    await p.press("#input", "Enter");
    await p.waitForFunction(() => document.body.dataset.state === "ready" && document.querySelectorAll("#messages li").length === 2,
      null, { timeout: 60000 });
    const spec = await p.evaluate(() => ({
      answer: document.querySelector("#messages li.assistant").textContent,
      json: window.demo.decoding.json,
      ...document.getElementById("acceptance").dataset,
      text: document.getElementById("acceptance").textContent,
    }));
    const plain = await p.evaluate(async () => {
      const r = await window.demo.engine.chat.completions.create({
        messages: [{ role: "user", content: "What is the capital of France?" }], temperature: 0, max_tokens: 8, draft_tokens: 0,
      });
      return r.choices[0].message.content;
    });
    same(spec.answer, plain, "the speculative answer is plain greedy's");
    assert(Number(spec.drafted) > 0 && spec.accepted === spec.drafted, `drafts accepted: ${JSON.stringify(spec)}`);
    assert(spec.text.includes(`${spec.accepted} / ${spec.drafted}`), `acceptance shown: ${spec.text}`);
    assert(problems.length === 0, `console errors: ${problems.join(" | ")}`);
  } finally {
    // The settings persist in localStorage: the other demo tests start from the defaults.
    await p.evaluate(() => localStorage.removeItem("webgpu-llm.demo.decoding"));
    await p.close();
  }
});

const failed = await runTests(tests, process.env.BROWSER_TEST_FILTER);
await browser.close();
server.close();
process.exit(failed ? 1 : 0);
