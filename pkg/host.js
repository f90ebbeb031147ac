// The engine's host: loads the wasm module and the model, and runs the wasm `Engine`. It runs in
// the dedicated worker (worker.js) or, with `worker: false`, on the page's own thread. The
// public API is in index.js.

import init, { Engine } from "./wasm/webgpu_llm.js";

let wasmReady;

/** An error with a stable `code` (the same codes the Rust side uses). */
export function codedError(code, message) {
  const e = new Error(message);
  e.name = "WebGpuLlmError";
  e.code = code;
  return e;
}

const CACHE = "webgpu-llm-models";

/** Read `stream` to its end into one Uint8Array, reporting progress. */
async function readAll(stream, total, stage, onProgress) {
  const reader = stream.getReader();
  const parts = [];
  let loaded = 0;
  onProgress({ stage, loadedBytes: 0, totalBytes: total });
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch (e) {
      throw codedError("io", `reading the model failed after ${loaded} bytes: ${e.message}`);
    }
    const { done, value } = chunk;
    if (done) break;
    parts.push(value);
    loaded += value.byteLength;
    onProgress({ stage, loadedBytes: loaded, totalBytes: total });
  }
  if (total && loaded !== total) {
    throw codedError("bad_model", `the model download stopped at ${loaded} of ${total} bytes`);
  }
  const bytes = new Uint8Array(loaded);
  let at = 0;
  for (const p of parts) {
    bytes.set(p, at);
    at += p.byteLength;
  }
  return bytes;
}

/** The model's bytes from a URL (through the Cache API when `cache`), a Blob/File or a buffer. */
export async function readModel(model, { cache = true, sha256, onProgress = () => {} } = {}) {
  let bytes;
  if (model instanceof ArrayBuffer) {
    bytes = new Uint8Array(model);
  } else if (ArrayBuffer.isView(model)) {
    bytes = new Uint8Array(model.buffer, model.byteOffset, model.byteLength);
  } else if (typeof Blob !== "undefined" && model instanceof Blob) {
    bytes = await readAll(model.stream(), model.size, "read", onProgress);
  } else if (typeof model === "string" || model instanceof URL) {
    const url = new URL(model, globalThis.location?.href).href;
    const store = cache && globalThis.caches ? await caches.open(CACHE) : null;
    const hit = store && (await store.match(url));
    if (hit) {
      bytes = await readAll(hit.body, Number(hit.headers.get("content-length")) || 0, "cache", onProgress);
    } else {
      let response;
      try {
        response = await fetch(url);
      } catch (e) {
        throw codedError("io", `fetching ${url} failed: ${e.message}`);
      }
      if (!response.ok) throw codedError("io", `fetching ${url}: HTTP ${response.status}`);
      const total = Number(response.headers.get("content-length")) || 0;
      bytes = await readAll(response.body, total, "download", onProgress);
      // Stored only once complete (and, with `sha256`, verified): a broken download never
      // leaves an entry behind.
      if (store && !sha256) {
        await store.put(url, new Response(bytes, { headers: { "content-length": String(bytes.byteLength) } }));
      }
    }
    if (store && sha256) {
      await verify(bytes, sha256);
      if (!hit) await store.put(url, new Response(bytes, { headers: { "content-length": String(bytes.byteLength) } }));
      return bytes;
    }
  } else {
    throw codedError("invalid_argument", "model must be a URL, a File or Blob, or an ArrayBuffer");
  }
  if (sha256) await verify(bytes, sha256);
  return bytes;
}

async function verify(bytes, sha256) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  if (hex !== sha256.toLowerCase()) {
    throw codedError("bad_model", `the model's sha256 is ${hex}, not ${sha256}`);
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

  /** Load the model; resolves to `info()`. */
  async load({ model, backend = "auto", contextSize, cache, sha256 }, onProgress = () => {}) {
    wasmReady ??= init();
    await wasmReady;
    const bytes = await readModel(model, { cache, sha256, onProgress });
    onProgress({ stage: "load", loadedBytes: bytes.byteLength, totalBytes: bytes.byteLength });
    this.engine = await Engine.load(bytes, { backend, context_size: contextSize ?? null });
    // Between tokens: a turn for pending messages, then stop if an abort came in meanwhile.
    this.engine.setPause(() => pause().then(() => !this.#stopRequested()));
    return this.info();
  }

  #live() {
    if (!this.engine) throw codedError("invalid_argument", "the engine is unloaded");
    return this.engine;
  }

  info() {
    return this.#live().info();
  }

  encodeChat(messages) {
    return Array.from(this.#live().encodeChat(messages));
  }

  encodePrompt(text) {
    return Array.from(this.#live().encodePrompt(text));
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
    } finally {
      this.#stopRequested = () => false;
    }
  }

  setSampling(params) {
    this.#live().setSampling(params);
  }

  reset() {
    this.#live().reset();
  }

  unload() {
    this.engine?.free();
    this.engine = null;
  }
}
