// The engine's host: loads the wasm module and the model, and runs the wasm `Engine`. It runs in
// the dedicated worker (worker.js) or, with `worker: false`, on the page's own thread. The
// public API is in index.js.

import init, { ModelLoader, estimateModel, parseToolCalls, responseFormatGrammar, toolChoiceGrammar } from "./wasm/webgpu_llm.js";
import { clearStored, deleteStored, listStored, openStores, storeFor } from "./store.js";

let wasmReady;

/** An error with a stable `code` (the same codes the Rust side uses). */
export function codedError(code, message) {
  const e = new Error(message);
  e.name = "WebGpuLlmError";
  e.code = code;
  return e;
}

/** The stored models of both stores: `{ url, bytes, totalBytes, complete, store }`. */
export async function listCachedModels() {
  return (await listStored()).map(({ url, bytes, totalBytes, complete, store }) => ({ url, bytes, totalBytes, complete, store }));
}

/** Forget one stored model (a URL, relative to the page) in both stores; true when there was one. */
export async function deleteCachedModel(url) {
  return deleteStored(absolute(url));
}

/** Forget every stored model, complete or partial, in both stores; true when there were any. */
export async function clearModelCache() {
  return clearStored();
}

/** How many first bytes of the (first) file the fit check reads, unless the header needs more. */
const PROBE_BYTES = 8 << 20;
/** How many first bytes of a split model's later parts are read first for their headers. */
const PART_PROBE_BYTES = 1 << 20;
/** llama.cpp's gguf-split names: `name-00001-of-00003.gguf`. */
const SPLIT = /^(.*)-(\d{5})-of-(\d{5})\.gguf$/;

function absolute(url) {
  return new URL(url, globalThis.location?.href).href;
}

/** All the parts' URLs from the first part's (`name-00001-of-0000N.gguf`), or null for a single file. */
export function splitUrls(url) {
  const u = new URL(url);
  const m = SPLIT.exec(u.pathname);
  if (!m || Number(m[2]) !== 1 || Number(m[3]) < 2) return null;
  return Array.from({ length: Number(m[3]) }, (_, i) => {
    const v = new URL(u);
    v.pathname = `${m[1]}-${String(i + 1).padStart(5, "0")}-of-${m[3]}.gguf`;
    return v.href;
  });
}

/**
 * The model's parts, in order: `{ kind: "bytes", view }`, `{ kind: "blob", blob }` or `{ kind:
 * "url", url }`, each with `size` (for URLs once surveyed) and `name`.
 */
function partsOf(model) {
  const list = Array.isArray(model) ? model : [model];
  if (list.length === 0) throw codedError("invalid_argument", "the model's list of parts is empty");
  const parts = [];
  for (const m of list) {
    if (m instanceof ArrayBuffer || ArrayBuffer.isView(m)) {
      const view = m instanceof ArrayBuffer ? new Uint8Array(m) : new Uint8Array(m.buffer, m.byteOffset, m.byteLength);
      parts.push({ kind: "bytes", view, size: view.byteLength, name: null });
    } else if (typeof Blob !== "undefined" && m instanceof Blob) {
      parts.push({ kind: "blob", blob: m, size: m.size, name: m.name ?? null });
    } else if (typeof m === "string" || m instanceof URL) {
      const url = absolute(m);
      for (const u of (list.length === 1 && splitUrls(url)) || [url]) parts.push({ kind: "url", url: u, name: u, size: null });
    } else {
      throw codedError("invalid_argument", "model must be a URL, a File or Blob, an ArrayBuffer, or a list of URLs or Files (a split model's parts)");
    }
  }
  return parts;
}

/** A GET without the HTTP cache (the stores keep the models), as an `io` error when it fails. */
async function get(url, headers = {}) {
  try {
    return await fetch(url, { headers, cache: "no-store" });
  } catch (e) {
    throw codedError("io", `fetching ${url} failed: ${e.message}`);
  }
}

/** Up to `n` bytes from the start of `stream` (the rest is cancelled). */
async function readAtMost(stream, n) {
  const reader = stream.getReader();
  const chunks = [];
  let got = 0;
  try {
    while (got < n) {
      const { done, value } = await reader.read();
      if (done) break;
      const take = value.subarray(0, n - got);
      chunks.push(take);
      got += take.byteLength;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
  const out = new Uint8Array(got);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** A strong validator for If-Range (a weak ETag may not be used there), or null. */
function validator({ etag, lastModified }) {
  if (etag && !etag.startsWith("W/")) return etag;
  return lastModified ?? null;
}

/**
 * Bytes [start, start + n) of `part` from the network into `part.head` (appended when start > 0
 * and the server honours ranges; a server that ignores them sends the file from 0, of which the
 * first n are kept, `part.ranges` false). Sets `size`, `etag`, `lastModified`.
 */
async function probe(part, start, n) {
  const response = await get(part.url, { Range: `bytes=${start}-${start + n - 1}` });
  if (!response.ok) throw codedError("io", `fetching ${part.url}: HTTP ${response.status}`);
  const ranged = response.status === 206;
  let size = ranged
    ? Number(/\/(\d+)\s*$/.exec(response.headers.get("content-range") ?? "")?.[1])
    : Number(response.headers.get("content-length"));
  if (!size && ranged) {
    // A cross-origin server that does not expose Content-Range: ask for the length.
    const head = await fetch(part.url, { method: "HEAD", cache: "no-store" }).catch(() => null);
    size = Number(head?.headers.get("content-length"));
  }
  if (!size) throw codedError("io", `${part.url}: the server does not say how long the file is`);
  const bytes = await readAtMost(response.body, ranged ? n : start + n);
  part.size = size;
  part.etag = response.headers.get("etag");
  part.lastModified = response.headers.get("last-modified");
  part.ranges = ranged;
  if (ranged && start > 0 && part.head?.length === start) {
    const joined = new Uint8Array(start + bytes.length);
    joined.set(part.head);
    joined.set(bytes, start);
    part.head = joined;
  } else {
    part.head = ranged && start > 0 ? null : bytes;
  }
}

/** Forget what the stores hold of `part` (both stores) and start it over from the network. */
async function dropStored(part) {
  await deleteStored(part.url).catch(() => {});
  Object.assign(part, { from: null, stored: 0, head: null });
}

/**
 * What is known of a URL part before its load: a copy in a store (`from`, `stored` bytes of
 * `size`; complete, or a partial download of OPFS holding at least `want` bytes), or else its
 * first `want` bytes from the network (`head`).
 */
async function survey(part, stores, want) {
  Object.assign(part, { from: null, stored: 0, head: null, ranges: null, etag: null, lastModified: null });
  for (const store of stores) {
    const entry = await store.get(part.url).catch(() => null);
    if (!entry) continue;
    if (entry.totalBytes && (entry.complete || entry.bytes >= Math.min(want, entry.totalBytes))) {
      Object.assign(part, { from: store, stored: entry.bytes, size: entry.totalBytes, etag: entry.etag, lastModified: entry.lastModified });
      return;
    }
    await store.delete(part.url).catch(() => {}); // too short a start to be worth resuming
  }
  await probe(part, 0, want);
}

/** The first `n` bytes of `part` (fewer when it is shorter). */
async function prefixOf(part, n) {
  n = Math.min(n, part.size);
  if (part.kind === "bytes") return part.view.subarray(0, n);
  if (part.kind === "blob") return new Uint8Array(await part.blob.slice(0, n).arrayBuffer());
  if (part.from && part.stored >= n) {
    const bytes = await readAtMost(await part.from.read(part.url, 0, part.from.resumable ? n : undefined), n);
    if (bytes.length === n) return bytes;
    await dropStored(part); // a damaged copy
  } else if (part.from) {
    await dropStored(part);
  }
  if (part.head?.length >= n) return part.head.subarray(0, n);
  if (part.head && part.ranges) await probe(part, part.head.length, n - part.head.length);
  else await probe(part, 0, n);
  return part.head.subarray(0, n);
}

function formatBytes(n) {
  return n >= 1 << 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : `${(n / 2 ** 20).toFixed(1)} MiB`;
}

/**
 * The limits for the fit check: the adapter's (null fields without WebGPU, or on the CPU
 * backend), lowered by the caller's `gpuLimits` and `memoryLimitBytes`.
 */
async function fitLimits({ backend = "auto", gpuLimits, memoryLimitBytes }) {
  const limits = { max_buffer_size: null, max_storage_buffer_binding_size: null, memory_limit_bytes: memoryLimitBytes ?? null, f16: false };
  if (backend !== "cpu" && globalThis.navigator?.gpu) {
    try {
      const adapter = await navigator.gpu.requestAdapter();
      if (adapter) {
        limits.max_buffer_size = adapter.limits.maxBufferSize;
        limits.max_storage_buffer_binding_size = adapter.limits.maxStorageBufferBindingSize;
        limits.f16 = adapter.features.has("shader-f16");
      }
    } catch {
      /* no adapter: no GPU limits */
    }
  }
  const lower = (a, b) => (b === undefined || b === null ? a : a === null ? b : Math.min(a, b));
  limits.max_buffer_size = lower(limits.max_buffer_size, gpuLimits?.maxBufferBytes);
  limits.max_storage_buffer_binding_size = lower(limits.max_storage_buffer_binding_size, gpuLimits?.maxBindingBytes);
  return limits;
}

/** The engine's options (EngineOptions of src/engine.rs) from the package's. */
function engineOptions({ backend = "auto", contextSize, exactCpu = false, gpuLimits, kernels, memoryLimitBytes }) {
  const options = { backend, context_size: contextSize ?? null, exact_cpu: exactCpu };
  // (the buffer limit also lowers the adapter's in the fit check: see fitLimits)
  if (gpuLimits || kernels) {
    options.gpu = {
      max_binding_bytes: gpuLimits?.maxBindingBytes ?? null,
      max_buffer_bytes: gpuLimits?.maxBufferBytes ?? null,
      kernels: kernels ?? null,
    };
  }
  if (memoryLimitBytes !== undefined && memoryLimitBytes !== null) options.memory_limit_bytes = memoryLimitBytes;
  return options;
}

/**
 * The fit check: the header of the first part (grown as estimateModel asks), the sizes of all,
 * and the adapter's limits give the estimate; one that does not fit is `out_of_memory` before
 * anything more is downloaded.
 */
async function fitCheck(parts, options, opts) {
  const sizes = Float64Array.from(parts.map((p) => p.size));
  const limits = await fitLimits(opts);
  let want = PROBE_BYTES;
  for (let round = 0; round < 8; round++) {
    const prefix = await prefixOf(parts[0], want);
    const estimate = estimateModel(prefix, sizes, options, limits);
    if (estimate.need_bytes === undefined || estimate.need_bytes === null) {
      if (!estimate.fits) {
        const e = codedError("out_of_memory", `the model does not fit: ${estimate.reason ?? "too big"} (it needs ${formatBytes(estimate.total_bytes)}: ` +
          `weights ${formatBytes(estimate.weights_bytes)} + KV cache ${formatBytes(estimate.kv_cache_bytes)} for ${estimate.context_size} tokens + ` +
          `scratch ${formatBytes(estimate.scratch_bytes)}; its largest buffer ${formatBytes(estimate.largest_buffer_bytes)}; ${estimate.backend} backend); nothing was downloaded`);
        e.estimate = estimate;
        throw e;
      }
      return estimate;
    }
    if (estimate.need_bytes <= prefix.length || prefix.length >= parts[0].size) {
      throw codedError("bad_model", `the model's header asks for ${estimate.need_bytes} bytes, more than the file's ${parts[0].size}`);
    }
    want = estimate.need_bytes;
  }
  throw codedError("bad_model", "the model's header does not end");
}

/** Refuse a download that the origin's storage quota cannot hold (before it starts). */
async function checkQuota(parts, store) {
  if (!store || !globalThis.navigator?.storage?.estimate) return;
  const missing = parts.filter((p) => p.kind === "url").reduce((n, p) => n + p.size - (p.from ? p.stored : 0), 0);
  if (missing === 0) return;
  const { quota, usage } = await navigator.storage.estimate();
  if (quota === undefined || usage === undefined || missing <= quota - usage) return;
  throw codedError("out_of_memory", `storing the model needs ${formatBytes(missing)} more, but the origin's storage quota has ` +
    `${formatBytes(Math.max(0, quota - usage))} left (${formatBytes(usage)} of ${formatBytes(quota)} used): delete stored models ` +
    "(deleteCachedModel, clearModelCache) or load with cache: false");
}

/** A server that ignored a resume's Range, or a damaged stored copy: start the load over. */
class Restart extends Error {}

/** A store writer whose failures (quota, a lock held by another tab) stop the storing, not the load. */
async function safeWriter(store, part, offset) {
  if (!store) return null;
  // The OPFS writer records `meta` as it is at each checkpoint: a full download updates its validators.
  const meta = { totalBytes: part.size, etag: part.etag, lastModified: part.lastModified };
  let w;
  try {
    w = await store.writer(part.url, meta, offset);
  } catch {
    return null;
  }
  let dead = false;
  return {
    store,
    meta,
    write: (chunk) => (dead ? null : Promise.resolve(w.write(chunk)).catch(() => (dead = true))),
    async close(complete) {
      try {
        await w.close(complete && !dead);
      } catch {
        dead = true;
      }
      return !dead && complete;
    },
  };
}

/** Streams the model into a wasm ModelLoader, keeping count for the progress events. */
class Feed {
  received = 0;
  #stage = null;
  #reported = -1;

  constructor(loader, total, onProgress) {
    this.loader = loader;
    this.total = total;
    this.onProgress = onProgress;
  }

  report(stage, force = false) {
    if (!force && stage === this.#stage && this.received - this.#reported < 1 << 20 && this.received !== this.total) return;
    this.#stage = stage;
    this.#reported = this.received;
    this.onProgress({ stage, loadedBytes: this.received, totalBytes: this.total, placedBytes: this.loader.placed });
  }

  async push(chunk, stage, writer) {
    await Promise.all([this.loader.push(chunk), writer?.write(chunk)]);
    this.received += chunk.byteLength;
    this.report(stage);
  }

  /**
   * `stream` into the loader (and `writer`), at most `limit` bytes; resolves to the count.
   * A failing read is `io` (`.broken` set), with the count so far in `.got`.
   */
  async pump(stream, stage, writer = null, limit = Infinity) {
    const reader = stream.getReader();
    let got = 0;
    this.report(stage, true);
    try {
      while (got < limit) {
        let next;
        try {
          next = await reader.read();
        } catch (e) {
          const err = codedError("io", e.message);
          err.broken = true;
          err.got = got;
          throw err;
        }
        if (next.done) break;
        const chunk = next.value.byteLength > limit - got ? next.value.subarray(0, limit - got) : next.value;
        await this.push(chunk, stage, writer);
        got += chunk.byteLength;
      }
    } finally {
      reader.cancel().catch(() => {});
    }
    return got;
  }
}

/** Push one part: from a store, then (resuming there) from the network, writing to `store`. */
async function feedPart(feed, part, store) {
  if (part.kind === "bytes") {
    feed.report("read", true);
    return feed.push(part.view, "read", null);
  }
  if (part.kind === "blob") {
    const got = await feed.pump(part.blob.stream(), "read");
    if (got !== part.size) throw codedError("io", `reading ${part.name ?? "the file"} stopped at ${got} of ${part.size} bytes`);
    return;
  }
  let pos = 0;
  if (part.from) {
    const got = await feed.pump(await part.from.read(part.url, 0, part.from.resumable ? part.stored : undefined), "cache", null, part.stored);
    if (got < part.stored) {
      // A damaged copy (shorter than it says): forget it and load again from the network.
      await dropStored(part);
      throw new Restart();
    }
    pos = part.stored;
    if (pos === part.size) return;
  }
  // The rest from the network, into the store: a resumed partial continues in its own store.
  const target = pos > 0 ? (store && part.from?.resumable ? part.from : null) : store;
  const writer = await safeWriter(target, part, pos);
  let ok = false;
  try {
    if (part.head && part.ranges && pos === 0) {
      await feed.push(part.head, "download", writer);
      pos = part.head.length;
    }
    if (pos < part.size) {
      const headers = {};
      if (pos > 0) {
        headers.Range = `bytes=${pos}-`;
        // If-Range is no CORS-safelisted header: cross-origin, the 206's length and ETag are checked instead.
        const v = validator(part);
        if (v && new URL(part.url).origin === globalThis.location?.origin) headers["If-Range"] = v;
      }
      const response = await get(part.url, headers);
      if (!response.ok) throw codedError("io", `fetching ${part.url}: HTTP ${response.status}`);
      const etag = response.headers.get("etag");
      const length = Number(response.headers.get("content-length")) || null;
      const changed = (pos > 0 && part.etag && etag && etag !== part.etag) || (length !== null && length !== part.size - pos);
      if (pos === 0) {
        Object.assign(part, { etag, lastModified: response.headers.get("last-modified") });
        if (writer) Object.assign(writer.meta, { etag: part.etag, lastModified: part.lastModified });
      }
      if (pos > 0 && (response.status !== 206 || changed)) {
        // The server ignored the Range (200), or the file changed: start this part over from 0.
        response.body?.cancel().catch(() => {});
        await writer?.close(false);
        await dropStored(part);
        part.ranges = false;
        throw new Restart();
      }
      if (changed) throw codedError("io", `${part.url} changed while it was loading (${length} bytes, not ${part.size})`);
      try {
        pos += await feed.pump(response.body, "download", writer);
      } catch (e) {
        if (!e.broken) throw e;
        pos += e.got;
        throw codedError("io", `the download of ${part.url} stopped at ${pos} of ${part.size} bytes (${e.message})` +
          (writer ? "; what came is kept, and the next load resumes from there" : ""));
      }
    }
    if (pos !== part.size) {
      throw codedError("io", `the download of ${part.url} stopped at ${pos} of ${part.size} bytes` +
        (writer ? "; what came is kept, and the next load resumes from there" : ""));
    }
    ok = true;
  } finally {
    const stored = await writer?.close(ok);
    // Stored whole: a restart reads it from the store, not the network.
    if (stored) Object.assign(part, { from: writer.store, stored: part.size, head: null });
  }
}

/**
 * Load `model` (a URL, a File/Blob, an ArrayBuffer, or a split model's parts) into the engine:
 * the fit check on its header, then every byte streamed into a wasm ModelLoader, which places
 * the weights on the backend as they come (no copy of the whole file in JS or wasm memory).
 * URLs go through the stores (`cache`: true, "opfs", "cache-api" or false), resuming a partial
 * download. Resolves to `{ engine, estimate }`.
 */
export async function loadModel(model, { cache = true, sha256, onProgress = () => {}, ...opts } = {}) {
  wasmReady ??= init();
  await wasmReady;
  const options = engineOptions(opts);
  const parts = partsOf(model);
  const store = parts.some((p) => p.kind === "url") ? await storeFor(cache) : null;
  const { opfs, cache: cacheApi } = await openStores();
  const readable = cache === false ? [] : [opfs, cacheApi].filter(Boolean);
  const urls = parts.filter((p) => p.kind === "url");
  const forget = () => Promise.all(urls.map((p) => deleteStored(p.url).catch(() => {})));
  let estimate;
  try {
    for (const [i, part] of parts.entries()) if (part.kind === "url") await survey(part, readable, i === 0 ? PROBE_BYTES : PART_PROBE_BYTES);
    estimate = await fitCheck(parts, options, opts);
  } catch (e) {
    if (e?.code === "bad_model") await forget();
    throw e;
  }
  await checkQuota(parts, store);
  const total = parts.reduce((n, p) => n + p.size, 0);
  const name = parts[0].name;
  for (let attempt = 0; ; attempt++) {
    const loader = new ModelLoader(options, name, Float64Array.from(parts.map((p) => p.size)));
    try {
      await partHeaders(loader, parts);
      const feed = new Feed(loader, total, onProgress);
      for (const part of parts) await feedPart(feed, part, store);
      if (sha256) {
        const actual = loader.sha256();
        if (actual !== sha256.toLowerCase()) throw codedError("bad_model", `the model's sha256 is ${actual}, not ${sha256}`);
      }
      onProgress({ stage: "load", loadedBytes: total, totalBytes: total, placedBytes: loader.placed });
      const used = loader.estimate?.() ?? estimate;
      const engine = await loader.finish();
      return { engine, estimate: used };
    } catch (e) {
      if (e instanceof Restart && attempt < 2) continue;
      if (e instanceof Restart) throw codedError("io", "the model's server kept ignoring ranges or changing the file");
      // A corrupt copy must not be read again.
      if (e?.code === "bad_model") await forget();
      throw e;
    } finally {
      try {
        loader.free();
      } catch {
        /* a trapped module: nothing to free */
      }
    }
  }
}

/**
 * A split model's later parts' headers, given to the loader ahead of their bytes (it needs every
 * part's tensor table before it can place the weights).
 */
async function partHeaders(loader, parts) {
  for (let k = 1; k < parts.length; k++) {
    let want = PART_PROBE_BYTES;
    for (let round = 0; ; round++) {
      const prefix = await prefixOf(parts[k], want);
      const need = loader.partHeader(k, prefix);
      if (!need) break;
      if (need <= prefix.length || prefix.length >= parts[k].size || round >= 8) {
        throw codedError("bad_model", `part ${k + 1}'s header asks for ${need} bytes of its ${parts[k].size}`);
      }
      want = need;
    }
  }
}

/**
 * The fit check alone, for `estimateMemory(model)`: the header of `model` (from a store when it
 * holds a copy, else a Range request), read against the adapter's limits. Stores nothing.
 */
export async function estimateModelMemory(model, opts = {}) {
  wasmReady ??= init();
  await wasmReady;
  const options = engineOptions(opts);
  const parts = partsOf(model);
  const { opfs, cache } = await openStores();
  const readable = opts.cache === false ? [] : [opfs, cache].filter(Boolean);
  for (const [i, part] of parts.entries()) if (part.kind === "url") await survey(part, readable, i === 0 ? PROBE_BYTES : PART_PROBE_BYTES);
  try {
    return await fitCheck(parts, options, opts);
  } catch (e) {
    // Not fitting is an answer here, not a failure.
    if (e.code !== "out_of_memory") throw e;
    if (!e.estimate) throw e;
    return e.estimate;
  }
}

/** A macrotask turn (messages and timers run), without setTimeout's clamping. */
function pause() {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => resolve();
    channel.port2.postMessage(null);
  });
}

/** The wasm engine and the calls the client makes on it. */
export class Host {
  engine = null;
  #stopRequested = () => false;

  /** What the fit check estimated for the loaded model (shown by `info()`). */
  #estimate = null;

  /**
   * Load the model, and `draftModel` (a URL, File/Blob, bytes or parts, like `model`), with the
   * same options, as its draft model for speculative decoding (its progress events carry
   * `draft: true`); resolves to `info()`.
   */
  async load({ model, draftModel, cache, sha256, ...options }, onProgress = () => {}) {
    // A reload: free the old engine (its GPU device and memory) first.
    this.engine?.free();
    this.engine = null;
    try {
      ({ engine: this.engine, estimate: this.#estimate } = await loadModel(model, { ...options, cache, sha256, onProgress }));
      if (draftModel !== undefined && draftModel !== null) {
        const onDraftProgress = (p) => onProgress({ ...p, draft: true });
        const { engine: draft } = await loadModel(draftModel, { ...options, cache, onProgress: onDraftProgress });
        // setDraft moves the draft's engine into the target (the `draft` object is consumed).
        this.engine.setDraft(draft);
      }
    } catch (e) {
      this.engine?.free();
      this.engine = null;
      throw this.#crashed(e);
    }
    // Between tokens: a turn for pending messages, then stop if an abort came in meanwhile.
    this.engine.setPause(() => pause().then(() => !this.#stopRequested()));
    return this.info();
  }

  #live() {
    if (!this.engine) throw codedError("invalid_argument", "the engine is unloaded (or crashed): load it again");
    return this.engine;
  }

  /** A trap in the wasm module (a Rust panic: a bug) leaves it unusable: say so plainly. */
  #crashed(e) {
    if (!(e instanceof WebAssembly.RuntimeError)) return e;
    this.engine = null;
    return codedError("internal", `webgpu-llm crashed (a bug, please report it): ${e.message}; load the engine again`);
  }

  #guard(f) {
    try {
      return f();
    } catch (e) {
      throw this.#crashed(e);
    }
  }

  info() {
    return this.#guard(() => {
      const info = this.#live().info();
      return info.estimate ? info : { ...info, estimate: this.#estimate };
    });
  }

  encodeChat(messages, tools) {
    return this.#guard(() => Array.from(this.#live().encodeChat(messages, tools)));
  }

  /** The `grammar` sampling parameter for `response_format` and for `tool_choice` (or null). */
  structure(responseFormat, tools, toolChoice) {
    const format = responseFormat === undefined || responseFormat === null ? null : responseFormatGrammar(responseFormat);
    const call = tools ? toolChoiceGrammar(tools, toolChoice ?? "auto") : null;
    if (format && call) throw Object.assign(new Error("invalid argument: response_format and a tool_choice that " +
      "demands a call cannot both constrain the answer"), { code: "invalid_argument" });
    return format ?? call;
  }

  parseToolCalls(text, tools) {
    return parseToolCalls(text, tools);
  }

  encodeChatFitting(messages, reserve) {
    return this.#guard(() => this.#live().encodeChatFitting(messages, reserve));
  }

  encodePrompt(text) {
    return this.#guard(() => Array.from(this.#live().encodePrompt(text)));
  }

  /**
   * Generate; `onToken(event)` sees each token; `stopRequested()` is asked between tokens (and
   * after each one) and stops the generation when it says true. Resolves to the Generation.
   */
  async generate(ids, params, onToken, stopRequested = () => false) {
    this.#stopRequested = stopRequested;
    try {
      return await this.#live().generate(Uint32Array.from(ids), params, (event) => {
        onToken(event);
        return !stopRequested();
      });
    } catch (e) {
      throw this.#crashed(e);
    } finally {
      this.#stopRequested = () => false;
    }
  }

  /**
   * `n` choices (or the `n` best of `bestOf`); `onToken(index, event)` sees each choice's tokens
   * (not with bestOf > n). Resolves to the Choices.
   */
  async generateChoices(ids, params, n, bestOf, onToken, stopRequested = () => false) {
    this.#stopRequested = stopRequested;
    try {
      return await this.#live().generateChoices(Uint32Array.from(ids), params, n, bestOf ?? undefined, (index, event) => {
        onToken(index, event);
        return !stopRequested();
      });
    } catch (e) {
      throw this.#crashed(e);
    } finally {
      this.#stopRequested = () => false;
    }
  }

  /** The perplexity of `text`; `onChunk(chunk)` sees each chunk as it ends. Resolves to the Perplexity. */
  async evaluate(text, options, onChunk, stopRequested = () => false) {
    this.#stopRequested = stopRequested;
    try {
      return await this.#live().evaluate(text, options, (chunk) => {
        onChunk(chunk);
        return !stopRequested();
      });
    } catch (e) {
      throw this.#crashed(e);
    } finally {
      this.#stopRequested = () => false;
    }
  }

  setSampling(params) {
    this.#guard(() => this.#live().setSampling(params));
  }

  reset() {
    this.#guard(() => this.#live().reset());
  }

  unload() {
    this.engine?.free();
    this.engine = null;
  }
}
