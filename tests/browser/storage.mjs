// Browser tests of how models reach the engine (issue #15's JS half): streaming into the wasm
// ModelLoader, the two stores (OPFS and the Cache API), resuming an interrupted download with a
// Range request, the fit check before any download, corrupt copies, and split models. The test
// server counts the bytes it sends per path and can cut a response short. Headless Chromium,
// WebGPU on SwiftShader; the default model. Run by scripts/test.sh after scripts/build-wasm.sh
// (and cargo test, which builds the CLI that splits the model); STORAGE_TEST_FILTER picks tests.

import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";
import { serve } from "../../scripts/serve.mjs";
import { FLAGS, assert, cliBinary, runTests, same } from "./harness.mjs";

const ROOT = resolve(import.meta.dirname, "../..");
const MODEL = "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
const SIZE = statSync(join(ROOT, MODEL)).size;
const SHA = createHash("sha256").update(readFileSync(join(ROOT, MODEL))).digest("hex");
const PROBE = 8 << 20;
const GOLDEN = resolve(process.env.WEBGPU_LLM_GOLDEN ?? join(ROOT, "tests/golden"), "smollm2-135m");
const facts = JSON.parse(readFileSync(join(GOLDEN, "raw_facts.json"), "utf8"));
const GREEDY = facts.f32_reference.generated_token_ids.slice(0, 4);

// Files the tests serve, under target/ (git-ignored): copies of the model under other names.
const WORK = "/target/browser-storage";
const work = join(ROOT, WORK);
rmSync(work, { recursive: true, force: true });
mkdirSync(join(work, "split"), { recursive: true });
symlinkSync(join(ROOT, MODEL), join(work, "copy.gguf"));
symlinkSync(join(ROOT, MODEL), join(work, "other.gguf"));
copyFileSync(join(ROOT, MODEL), join(work, "restart.gguf")); // its mtime (ETag) changes in a test
{
  // Flipped bytes in the tensor data (the header stays valid): only the sha256 can tell.
  const bytes = readFileSync(join(ROOT, MODEL));
  for (let i = 0; i < 64; i++) bytes[bytes.length - 4096 - i * 977] ^= 0x5a;
  writeFileSync(join(work, "corrupt.gguf"), bytes);
  // A broken magic: the header check says bad_model.
  bytes[0] ^= 0xff;
  writeFileSync(join(work, "badmagic.gguf"), bytes.subarray(0, 16 << 20));
}


/** The default model split into parts of at most 40 MB by `webgpu-llm split`: their URLs. */
function splitParts() {
  const bin = cliBinary(ROOT);
  assert(bin, "no webgpu-llm CLI binary under target/ (cargo build): it splits the model");
  const dir = join(work, "split");
  if (!readdirSync(dir).some((f) => f.endsWith(".gguf"))) {
    execFileSync(bin, ["split", "--max-size", "40M", "--out", join(dir, "model"), "--model", join(ROOT, MODEL)], { stdio: "inherit", cwd: ROOT });
  }
  const parts = readdirSync(dir).filter((f) => /-\d{5}-of-\d{5}\.gguf$/.test(f)).sort();
  assert(parts.length >= 2, `split parts: ${parts}`);
  return parts.map((f) => `${WORK}/split/${f}`);
}

const server = await serve(ROOT);
const traffic = server.traffic;
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--enable-unsafe-webgpu", ...FLAGS] });
const page = await browser.newPage();
page.on("pageerror", (e) => console.log("  page error:", e.message));
await page.goto(`${server.url}/tests/browser/page.html`);
await page.waitForFunction(() => window.ready === true);
const tests = [];
const test = (name, fn) => tests.push({ name, fn });

/**
 * Run `fn(llm, arg)` in the page, with helpers on `llm`: `greedy(options)` (load, greedy tokens,
 * unload: { ids, stages, placed, info }; on the exact CPU path with 4 tokens unless the options
 * name a backend: SwiftShader takes most of a minute a load and seconds a token, and the tokens
 * only check the bytes that arrived, so the GPU gives 2), `attempt(options)` (the error code and
 * message, or "loaded"), `stores()` (what each store holds, read directly).
 */
function inPage(fn, arg) {
  return page.evaluate(async ([src, arg, prompt]) => {
    const llm = window.llm;
    const helpers = {
      ...llm,
      async greedy(options) {
        const progress = [];
        const engine = await llm.createEngine({ ...(options.backend ? {} : { backend: "cpu", exactCpu: true }), contextSize: 64, ...options, onProgress: (p) => progress.push(p) });
        const ids = [];
        const max_tokens = options.backend === "gpu" ? 2 : 4;
        for await (const p of engine.generate(prompt, { temperature: 0, max_tokens })) ids.push(p.tokenId);
        const info = await engine.info();
        await engine.unload();
        const last = progress.filter((p) => p.stage !== "load").pop();
        return { ids, stages: [...new Set(progress.map((p) => p.stage))], last, placed: progress.at(-1)?.placedBytes, info };
      },
      async attempt(options) {
        try {
          await (await llm.createEngine({ backend: "gpu", contextSize: 64, ...options })).unload();
          return { code: "loaded" };
        } catch (e) {
          return { code: e.code, message: e.message };
        }
      },
      async stores() {
        const opfs = [];
        try {
          const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle("webgpu-llm-models");
          for await (const [name] of dir.entries()) opfs.push(name);
        } catch {
          /* no folder: nothing stored */
        }
        const cache = (await caches.has("webgpu-llm-models"))
          ? (await (await caches.open("webgpu-llm-models")).keys()).map((r) => r.url) : [];
        return { opfs: opfs.sort(), cache };
      },
    };
    try {
      return await (0, eval)(`(${src})`)(helpers, arg);
    } catch (e) {
      return { error: { code: e.code, name: e.name, message: e.message } };
    }
  }, [fn.toString(), arg, facts.prompt_token_ids]);
}

const abs = (path) => `${server.url}${path}`;

test("an interrupted download resumes with a Range request: the server sends the file about once; same greedy tokens", async () => {
  await inPage((llm) => llm.clearModelCache());
  traffic.reset();
  const CUT = 40 << 20;
  traffic.cut(MODEL, CUT);
  const broken = await inPage(async (llm, model) => ({ ...(await llm.attempt({ model })), list: await llm.listCachedModels() }), MODEL);
  const firstSent = traffic.sent(MODEL);
  const firstRequests = traffic.requests(MODEL).length;
  const r = await inPage(async (llm, model) => ({ ...(await llm.greedy({ model, backend: "gpu" })), list: await llm.listCachedModels() }), MODEL);
  assert(!r.error, JSON.stringify(r.error));
  const total = traffic.sent(MODEL);
  const second = traffic.requests(MODEL).slice(firstRequests);
  // The bytes that reached the worker before the break: the error's "stopped at". Chromium drops
  // what a broken response still had in its buffers and the socket's, unread (more of it when
  // the worker was busy, e.g. flushing a checkpoint), so the server may have sent more than that.
  const arrived = Number(/stopped at (\d+) of/.exec(broken.message)?.[1]);
  const lost = firstSent - arrived;
  console.log(`  cut after ${CUT} B of the download; ${arrived} B arrived (${lost} B dropped by the browser), kept ${broken.list[0]?.bytes} B; ` +
    `sent ${firstSent} B, then ${total - firstSent} B; total ${total} B for a ${SIZE} B file (${(total / SIZE).toFixed(3)}x); ` +
    `resume request ${JSON.stringify(second)}`);
  same(broken.code, "io", `the broken download: ${broken.message}`);
  assert(/resumes/.test(broken.message), `the error says it resumes: ${broken.message}`);
  same(broken.list.length, 1, "one stored entry");
  const kept = broken.list[0];
  same([kept.url, kept.store, kept.complete, kept.totalBytes], [abs(MODEL), "opfs", false, SIZE], "a partial download in OPFS");
  assert(kept.bytes >= PROBE && kept.bytes <= PROBE + CUT, `kept ${kept.bytes} bytes`);
  same(kept.bytes, arrived, "the broken download's final record keeps every byte that arrived");
  same(second, [{ method: "GET", range: `bytes=${kept.bytes}-`, status: 206 }], "the next load asks only for the rest");
  assert(total - lost >= SIZE && total - lost <= SIZE + PROBE, `sent ${total} bytes in all for ${SIZE}, ${lost} of them dropped by the browser`);
  same(r.ids, GREEDY.slice(0, 2), "greedy tokens of the resumed load (GPU)");
  same(r.stages, ["cache", "download", "load"], "stages: the stored part, the rest, the engine");
  same([r.last.loadedBytes, r.last.totalBytes], [SIZE, SIZE], "progress reaches the total");
  assert(r.placed > SIZE / 2 && r.placed <= SIZE, `placedBytes ${r.placed}`);
  same(r.list.map((m) => [m.url, m.store, m.complete, m.bytes]), [[abs(MODEL), "opfs", true, SIZE]], "now stored whole");
  assert(r.info.estimate?.fits === true && r.info.estimate.total_bytes > SIZE, `info().estimate: ${JSON.stringify(r.info.estimate)}`);
  // And the next load reads it all from OPFS.
  traffic.reset();
  const again = await inPage((llm, [model, sha]) => llm.greedy({ model, sha256: sha }), [MODEL, SHA]);
  same([again.ids, again.stages, traffic.sent(MODEL)], [GREEDY, ["cache", "load"], 0], "a reload: tokens, stages, bytes sent");
});

test("the resume on a page's own thread (worker: false: OPFS through createWritable) and a server that ignores the Range", async () => {
  await inPage((llm) => llm.clearModelCache());
  traffic.reset();
  traffic.cut(MODEL, 30 << 20);
  const broken = await inPage((llm, model) => llm.attempt({ model, worker: false }), MODEL);
  same(broken.code, "io", "cut");
  const kept = (await inPage((llm) => llm.listCachedModels()))[0];
  assert(kept && !kept.complete && kept.bytes >= PROBE, `kept: ${JSON.stringify(kept)}`);
  const before = traffic.sent(MODEL);
  const r = await inPage((llm, model) => llm.greedy({ model, worker: false }), MODEL);
  assert(!r.error, JSON.stringify(r.error));
  same(r.ids, GREEDY, "greedy tokens");
  assert(traffic.sent(MODEL) - before <= SIZE - kept.bytes + (1 << 20), `the rest only: ${traffic.sent(MODEL) - before}`);
  // A stored partial whose server answers the Range with the whole file (here: a changed
  // validator, so If-Range gets a 200): the load starts over from byte 0, and still loads.
  const path = `${WORK}/restart.gguf`;
  traffic.cut(path, 30 << 20);
  same((await inPage((llm, model) => llm.attempt({ model }), path)).code, "io", "cut");
  const file = join(work, "restart.gguf");
  execFileSync("touch", ["-d", new Date(statSync(file).mtimeMs + 5000).toISOString(), file]);
  const n = traffic.requests(path).length;
  const restarted = await inPage((llm, model) => llm.greedy({ model }), path);
  assert(!restarted.error, JSON.stringify(restarted.error));
  const reqs = traffic.requests(path).slice(n);
  same(reqs.map((q) => q.status), [200, 200], `a 200 to the resume, then the whole file: ${JSON.stringify(reqs)}`);
  same(restarted.ids, GREEDY, "greedy tokens after the restart");
});

test("a corrupt copy (sha256 mismatch, or a broken header) is bad_model and leaves nothing in either store", async () => {
  const r = await inPage(async (llm, [path, bad, sha]) => {
    await llm.clearModelCache();
    const viaOpfs = await llm.attempt({ model: path, sha256: sha });
    const afterOpfs = await llm.stores();
    const viaCache = await llm.attempt({ model: path, sha256: sha, cache: "cache-api" });
    const afterCache = await llm.stores();
    const header = await llm.attempt({ model: bad });
    return { viaOpfs, afterOpfs, viaCache, afterCache, header, afterHeader: await llm.stores(), list: await llm.listCachedModels() };
  }, [`${WORK}/corrupt.gguf`, `${WORK}/badmagic.gguf`, SHA]);
  assert(!r.error, JSON.stringify(r.error));
  same(r.viaOpfs.code, "bad_model", `sha256 mismatch (OPFS): ${r.viaOpfs.message}`);
  assert(r.viaOpfs.message.includes(SHA), r.viaOpfs.message);
  same(r.afterOpfs, { opfs: [], cache: [] }, "nothing stored after the mismatch (OPFS)");
  same(r.viaCache.code, "bad_model", "sha256 mismatch (Cache API)");
  same(r.afterCache, { opfs: [], cache: [] }, "nothing stored after the mismatch (Cache API)");
  same(r.header.code, "bad_model", `a broken header: ${r.header.message}`);
  same([r.afterHeader, r.list], [{ opfs: [], cache: [] }, []], "nothing stored after the broken header");
  same(traffic.requests(`${WORK}/badmagic.gguf`).map((q) => q.range), [`bytes=0-${PROBE - 1}`], "a broken header: only the probe");
});

test("the fit check refuses a model that does not fit before downloading it (only the header range is sent)", async () => {
  await inPage((llm) => llm.clearModelCache());
  traffic.reset();
  const r = await inPage(async (llm, model) => ({
    // 1 MB buffers: the weights split into parts that fit, but not one layer's KV cache of 2048 positions.
    gpu: await llm.attempt({ model, gpuLimits: { maxBufferBytes: 1 << 20 }, contextSize: 2048 }),
    cpu: await llm.attempt({ model, backend: "cpu", memoryLimitBytes: 32 << 20 }),
    estimate: await llm.estimateMemory(model, { backend: "gpu", contextSize: 64 }),
    small: await llm.estimateMemory(model, { backend: "cpu", memoryLimitBytes: 32 << 20 }),
    list: await llm.listCachedModels(),
  }), MODEL);
  assert(!r.error, JSON.stringify(r.error));
  console.log(`  refusals: ${r.gpu.message} | ${r.cpu.message}`);
  same(r.gpu.code, "out_of_memory", `forced small GPU buffers: ${r.gpu.message}`);
  same(r.cpu.code, "out_of_memory", `a 32 MB memory limit: ${r.cpu.message}`);
  for (const m of [r.gpu.message, r.cpu.message]) assert(/\d+(\.\d+)? MiB/.test(m) && /nothing was downloaded/.test(m), `numbers in ${m}`);
  const requests = traffic.requests(MODEL);
  assert(requests.length === 4 && requests.every((q) => q.range === `bytes=0-${PROBE - 1}` && q.status === 206),
    `only header ranges: ${JSON.stringify(requests)}`);
  assert(traffic.sent(MODEL) <= 4 * PROBE, `sent ${traffic.sent(MODEL)}`);
  same(r.list, [], "nothing stored");
  same([r.estimate.fits, r.estimate.context_size, r.estimate.reason], [true, 64, null], "the URL form of estimateMemory");
  assert(r.estimate.weights_bytes > 0.9 * SIZE && r.estimate.total_bytes >= r.estimate.weights_bytes + r.estimate.kv_cache_bytes,
    JSON.stringify(r.estimate));
  same(r.small.fits, false, `a 32 MB limit does not fit: ${r.small.reason}`);
});

test("a split model (webgpu-llm split; URLs, the first part's URL, Files) gives the whole file's greedy tokens", async () => {
  const parts = splitParts();
  const r = await inPage(async (llm, [parts, model]) => {
    await llm.clearModelCache();
    const whole = await llm.greedy({ model, cache: false });
    const list = await llm.greedy({ model: parts, backend: "gpu" });
    const stored = await llm.listCachedModels();
    const first = await llm.greedy({ model: parts[0] });
    const files = await Promise.all(parts.map(async (p) => new File([await (await fetch(p)).blob()], p.split("/").pop())));
    const fromFiles = await llm.greedy({ model: files });
    return { whole, list, stored, first, fromFiles };
  }, [parts, MODEL]);
  assert(!r.error, JSON.stringify(r.error));
  same(r.whole.ids, GREEDY, "the whole file");
  same(r.list.ids, r.whole.ids.slice(0, 2), "the parts as a list of URLs (GPU)");
  same(r.first.ids, r.whole.ids, "the first part's URL");
  same(r.first.stages, ["cache", "load"], "the parts were stored");
  same(r.fromFiles.ids, r.whole.ids, "the parts as Files");
  same(r.stored.map((m) => [m.url, m.complete]).sort(), parts.map((p) => [abs(p), true]).sort(), "each part stored whole");
  same(r.list.info.catalog.matched, false, "a split model is no catalog file");
});

test("listCachedModels, deleteCachedModel and clearModelCache cover both stores and show partial downloads", async () => {
  const copy = `${WORK}/copy.gguf`;
  const other = `${WORK}/other.gguf`;
  await inPage((llm) => llm.clearModelCache());
  traffic.reset();
  traffic.cut(other, 20 << 20);
  const r = await inPage(async (llm, [model, copy, other]) => {
    const inCache = await llm.attempt({ model, backend: "cpu", cache: "cache-api" });
    const inOpfs = await llm.attempt({ model: copy, backend: "cpu" });
    const partial = await llm.attempt({ model: other, backend: "cpu" });
    const listed = await llm.listCachedModels();
    const raw = await llm.stores();
    const progress = [];
    await (await llm.createEngine({ model, backend: "cpu", onProgress: (p) => progress.push(p.stage) })).unload();
    const deleted = [await llm.deleteCachedModel(copy), await llm.deleteCachedModel(copy), await llm.deleteCachedModel(model)];
    const afterDelete = await llm.listCachedModels();
    const cleared = [await llm.clearModelCache(), await llm.clearModelCache()];
    return { inCache, inOpfs, partial, listed, raw, stages: [...new Set(progress)], deleted, afterDelete, cleared,
      afterClear: await llm.listCachedModels(), rawAfter: await llm.stores() };
  }, [MODEL, copy, other]);
  assert(!r.error, JSON.stringify(r.error));
  same([r.inCache.code, r.inOpfs.code, r.partial.code], ["loaded", "loaded", "io"], "the three loads");
  const rows = r.listed.map((m) => [m.url, m.store, m.complete, m.totalBytes]).sort();
  same(rows, [[abs(MODEL), "cache", true, SIZE], [abs(copy), "opfs", true, SIZE], [abs(other), "opfs", false, SIZE]].sort(), "listed");
  const part = r.listed.find((m) => m.url === abs(other));
  assert(part.bytes > 0 && part.bytes < SIZE, `the partial's bytes: ${part.bytes}`);
  same([r.raw.cache, r.raw.opfs.length], [[abs(MODEL)], 4], "the stores themselves: one Response, two files and their metadata");
  same(r.stages, ["cache", "load"], "the Cache API copy is read back");
  same(traffic.requests(MODEL).map((q) => q.range), [`bytes=0-${PROBE - 1}`, `bytes=${PROBE}-`], "fetched once: the header, then the rest");
  same(r.deleted, [true, false, true], "deleteCachedModel (OPFS, again, the Cache API)");
  same(r.afterDelete.map((m) => m.url), [abs(other)], "left: the partial");
  same(r.cleared, [true, false], "clearModelCache");
  same([r.afterClear, r.rawAfter], [[], { opfs: [], cache: [] }], "nothing left");
});

const failed = await runTests(tests, process.env.STORAGE_TEST_FILTER);
await browser.close();
server.close();
process.exit(failed ? 1 : 0);
