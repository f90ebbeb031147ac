// The engine's host: loads the wasm module and the model, and runs the wasm `Engine`. It runs in
// the dedicated worker (worker.js) or, with `worker: false`, on the page's own thread. The
// public API is in index.js.

import init, { Engine, ModelBytes } from "./wasm/webgpu_llm.js";

let wasmReady;

/** An error with a stable `code` (the same codes the Rust side uses). */
export function codedError(code, message) {
  const e = new Error(message);
  e.name = "WebGpuLlmError";
  e.code = code;
  return e;
}

const CACHE = "webgpu-llm-models";

/** The models in the Cache API store, as `{ url, bytes }` (bytes: the stored length, or null). */
export async function listCachedModels() {
  if (!globalThis.caches || !(await caches.has(CACHE))) return [];
  const store = await caches.open(CACHE);
  const models = [];
  for (const request of await store.keys()) {
    const response = await store.match(request);
    models.push({ url: request.url, bytes: Number(response?.headers.get("content-length")) || null });
  }
  return models;
}

/** Forget one cached model (a URL, relative to the page); true when there was one. */
export async function deleteCachedModel(url) {
  if (!globalThis.caches || !(await caches.has(CACHE))) return false;
  return (await caches.open(CACHE)).delete(new URL(url, globalThis.location?.href).href);
}

/** Forget every cached model; true when there were any. */
export async function clearModelCache() {
  return globalThis.caches ? caches.delete(CACHE) : false;
}

/** Read `stream` to its end into `target` (a wasm ModelBytes), reporting progress. */
async function readInto(stream, target, total, stage, onProgress) {
  const reader = stream.getReader();
  let loaded = 0;
  onProgress({ stage, loadedBytes: 0, totalBytes: total });
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch (e) {
      target.free();
      throw codedError("io", `reading the model failed after ${loaded} bytes: ${e.message}`);
    }
    const { done, value } = chunk;
    if (done) break;
    try {
      target.push(value);
    } catch (e) {
      target.free();
      throw e;
    }
    loaded += value.byteLength;
    onProgress({ stage, loadedBytes: loaded, totalBytes: total });
  }
  if (total && loaded !== total) {
    target.free();
    throw codedError("io", `the model download stopped at ${loaded} of ${total} bytes`);
  }
  return target;
}

/**
 * The model's bytes, streamed into wasm memory in chunks (no JS buffer of the whole file, so
 * files past 2 GB load): from a URL (through the Cache API when `cache`), a Blob/File, or a
 * buffer.
 */
export async function readModel(model, { cache = true, sha256, onProgress = () => {} } = {}) {
  let bytes;
  if (model instanceof ArrayBuffer || ArrayBuffer.isView(model)) {
    const view = model instanceof ArrayBuffer ? new Uint8Array(model) : new Uint8Array(model.buffer, model.byteOffset, model.byteLength);
    bytes = new ModelBytes(view.byteLength);
    bytes.push(view);
  } else if (typeof Blob !== "undefined" && model instanceof Blob) {
    bytes = await readInto(model.stream(), new ModelBytes(model.size), model.size, "read", onProgress);
  } else if (typeof model === "string" || model instanceof URL) {
    const url = new URL(model, globalThis.location?.href).href;
    const store = cache && globalThis.caches ? await caches.open(CACHE) : null;
    const hit = store && (await store.match(url));
    if (hit) {
      const total = Number(hit.headers.get("content-length")) || undefined;
      try {
        bytes = await readInto(hit.body, new ModelBytes(total), total ?? 0, "cache", onProgress);
      } catch {
        // A damaged cached copy (shorter than it says): forget it and download again.
        await store.delete(url);
      }
    }
    if (!bytes) {
      let response;
      try {
        response = await fetch(url);
      } catch (e) {
        throw codedError("io", `fetching ${url} failed: ${e.message}`);
      }
      if (!response.ok) throw codedError("io", `fetching ${url}: HTTP ${response.status}`);
      const total = Number(response.headers.get("content-length")) || undefined;
      let body = response.body;
      let put = null;
      if (store) {
        // One stream to the engine, one to the cache. The cache's write fails if the download
        // breaks, so a partial file is never stored.
        const [toEngine, toCache] = body.tee();
        body = toEngine;
        const headers = total ? { "content-length": String(total) } : {};
        put = store.put(url, new Response(toCache, { headers })).catch(() => null);
      }
      bytes = await readInto(body, new ModelBytes(total), total ?? 0, "download", onProgress);
      await put;
    }
    if (sha256) await check(bytes, sha256, () => store?.delete(url));
    return bytes;
  } else {
    throw codedError("invalid_argument", "model must be a URL, a File or Blob, or an ArrayBuffer");
  }
  if (sha256) await check(bytes, sha256, () => {});
  return bytes;
}

/** A sha256 mismatch frees the bytes, forgets any cached copy and is `bad_model`. */
async function check(bytes, sha256, forget) {
  const actual = bytes.sha256();
  if (actual === sha256.toLowerCase()) return;
  bytes.free();
  await forget();
  throw codedError("bad_model", `the model's sha256 is ${actual}, not ${sha256}`);
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

  /** Load the model; resolves to `info()`. */
  async load({ model, backend = "auto", contextSize, exactCpu = false, cache, sha256 }, onProgress = () => {}) {
    wasmReady ??= init();
    await wasmReady;
    // A reload: free the old engine (its GPU device and memory) first.
    this.engine?.free();
    this.engine = null;
    const bytes = await readModel(model, { cache, sha256, onProgress });
    onProgress({ stage: "load", loadedBytes: bytes.length, totalBytes: bytes.length });
    // The file's name (a URL's, a File's) recognises its catalog entry; bytes have none.
    const name = typeof model === "string" || model instanceof URL ? String(model) : model?.name ?? null;
    try {
      this.engine = await Engine.load(bytes, { backend, context_size: contextSize ?? null, exact_cpu: exactCpu }, name);
    } catch (e) {
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
    return this.#guard(() => this.#live().info());
  }

  encodeChat(messages) {
    return this.#guard(() => Array.from(this.#live().encodeChat(messages)));
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
