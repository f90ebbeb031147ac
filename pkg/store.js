// Where downloaded models are kept: two stores behind one interface.
//
// - OPFS (the origin private file system, `navigator.storage.getDirectory()`): the store for
//   every download where it exists, whatever the size. It can append to a file, so an
//   interrupted download keeps what it got (with its metadata) and the next load resumes it with
//   a Range request. In a dedicated worker (the engine's default home) it writes through
//   `createSyncAccessHandle()`, in place, flushing and recording the bytes so far every 32 MB,
//   so even a killed tab keeps its progress; on a page's own thread (`worker: false`), where sync
//   handles do not exist, through `createWritable()`, which commits when closed (a download that
//   fails keeps what it got; a tab killed mid-download loses what came since that write began).
// - The Cache API: the fallback where OPFS is missing (some private windows) or unusable, and
//   what earlier versions of the package wrote (those copies are still read, listed and deleted).
//   A Response is stored whole or not at all, so it cannot keep a partial download.
//
// One store holds a model's file under its URL. An entry: { url, store: "opfs" | "cache", bytes
// (stored so far), totalBytes, complete, etag, lastModified }.

const CACHE = "webgpu-llm-models";
const DIR = "webgpu-llm-models";
/** OPFS: flush the file and record the bytes so far this often (sync access handles). */
const CHECKPOINT = 32 << 20;

/** A stable file name for a URL (53-bit FNV-style hash, twice: a collision is checked against the metadata). */
function keyOf(url) {
  let h1 = 0xdeadbeef ^ url.length;
  let h2 = 0x41c6ce57 ^ url.length;
  for (let i = 0; i < url.length; i++) {
    const c = url.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return (h2 >>> 0).toString(16).padStart(8, "0") + (h1 >>> 0).toString(16).padStart(8, "0");
}

const inWorker = () => typeof WorkerGlobalScope !== "undefined" && globalThis instanceof WorkerGlobalScope;

/** Create or replace a small file with `text`. */
async function writeText(dir, name, text) {
  const handle = await dir.getFileHandle(name, { create: true });
  const data = new TextEncoder().encode(text);
  if (inWorker() && handle.createSyncAccessHandle) {
    const h = await handle.createSyncAccessHandle();
    try {
      h.truncate(0);
      h.write(data, { at: 0 });
      h.flush();
    } finally {
      h.close();
    }
  } else {
    const w = await handle.createWritable();
    await w.write(data);
    await w.close();
  }
}

async function removeQuietly(dir, name) {
  try {
    await dir.removeEntry(name);
    return true;
  } catch {
    return false;
  }
}

/** The OPFS store: `<key>.gguf` holds the bytes, `<key>.json` the metadata. */
export class OpfsStore {
  kind = "opfs";
  resumable = true;
  #dir;

  constructor(dir) {
    this.#dir = dir;
  }

  /** The store, or null where OPFS is missing or refuses (e.g. a private window). */
  static async open() {
    try {
      if (!globalThis.navigator?.storage?.getDirectory) return null;
      const root = await navigator.storage.getDirectory();
      return new OpfsStore(await root.getDirectoryHandle(DIR, { create: true }));
    } catch {
      return null;
    }
  }

  async #meta(key) {
    try {
      const file = await (await this.#dir.getFileHandle(`${key}.json`)).getFile();
      return JSON.parse(await file.text());
    } catch {
      return null;
    }
  }

  async #size(key) {
    try {
      return (await (await this.#dir.getFileHandle(`${key}.gguf`)).getFile()).size;
    } catch {
      return 0;
    }
  }

  /** The entry of `url`, or null. */
  async get(url) {
    const key = keyOf(url);
    const meta = await this.#meta(key);
    if (!meta || meta.url !== url) return null;
    // The metadata is written after the bytes it counts, so the file is at least that long.
    const bytes = Math.min(meta.bytes, await this.#size(key));
    return { ...meta, store: this.kind, bytes, complete: meta.complete && bytes === meta.totalBytes };
  }

  /** The stored bytes [start, end) of `url`, as a stream. */
  async read(url, start, end) {
    const file = await (await this.#dir.getFileHandle(`${keyOf(url)}.gguf`)).getFile();
    return file.slice(start, end).stream();
  }

  /**
   * A writer of `url`'s bytes from `offset` on (what is stored past it is dropped), keeping
   * `meta` ({ totalBytes, etag, lastModified }) beside them: `write(chunk)`, then
   * `close(complete)` (an incomplete close keeps the bytes so far, to be resumed).
   */
  async writer(url, meta, offset) {
    const dir = this.#dir;
    const key = keyOf(url);
    const handle = await dir.getFileHandle(`${key}.gguf`, { create: true });
    let pos = offset;
    let recorded = -1;
    const record = (complete) => {
      recorded = pos;
      return writeText(dir, `${key}.json`, JSON.stringify({ url, ...meta, bytes: pos, complete, updated: Date.now() }));
    };
    if (inWorker() && handle.createSyncAccessHandle) {
      const h = await handle.createSyncAccessHandle();
      try {
        h.truncate(offset);
        h.flush();
        await record(false);
      } catch (e) {
        h.close();
        throw e;
      }
      return {
        async write(chunk) {
          h.write(chunk, { at: pos });
          pos += chunk.byteLength;
          if (pos - recorded >= CHECKPOINT) {
            h.flush();
            await record(false);
          }
        },
        async close(complete) {
          h.flush();
          h.close();
          await record(complete);
        },
      };
    }
    const w = await handle.createWritable({ keepExistingData: true });
    await w.truncate(offset);
    await record(false);
    return {
      async write(chunk) {
        await w.write({ type: "write", position: pos, data: chunk });
        pos += chunk.byteLength;
      },
      async close(complete) {
        await w.close();
        await record(complete);
      },
    };
  }

  async delete(url) {
    const key = keyOf(url);
    if ((await this.#meta(key))?.url !== url) return false;
    await removeQuietly(this.#dir, `${key}.gguf`);
    return removeQuietly(this.#dir, `${key}.json`);
  }

  async list() {
    const out = [];
    for await (const [name] of this.#dir.entries()) {
      if (!name.endsWith(".json")) continue;
      const meta = await this.#meta(name.slice(0, -5));
      const entry = meta?.url && (await this.get(meta.url));
      if (entry) out.push(entry);
    }
    return out;
  }

  /** Forget everything; true when there was something. */
  async clear() {
    const names = [];
    for await (const [name] of this.#dir.entries()) names.push(name);
    let any = false;
    for (const name of names) any = (await removeQuietly(this.#dir, name)) || any;
    return any;
  }
}

/** The Cache API store: whole files only (the length recorded in content-length). */
export class CacheApiStore {
  kind = "cache";
  resumable = false;

  static async open() {
    try {
      return globalThis.caches ? new CacheApiStore() : null;
    } catch {
      return null;
    }
  }

  async #cache(create) {
    if (!create && !(await caches.has(CACHE))) return null;
    return caches.open(CACHE);
  }

  async get(url) {
    const response = await (await this.#cache(false))?.match(url);
    if (!response) return null;
    const total = Number(response.headers.get("content-length")) || null;
    response.body?.cancel();
    return {
      url, store: this.kind, bytes: total, totalBytes: total, complete: true,
      etag: response.headers.get("etag"), lastModified: response.headers.get("last-modified"),
    };
  }

  async read(url, start, end) {
    if (start !== 0) throw new Error("the Cache API store reads whole files");
    const response = await (await this.#cache(false))?.match(url);
    if (!response) throw new Error(`${url} is not in the Cache API store`);
    return response.body;
  }

  /**
   * A writer of the whole file (offset 0): the bytes stream into one cache.put, which stores
   * nothing unless `close(true)` ends the stream. Each write waits for the cache to take the
   * chunk (backpressure: nothing piles up in memory).
   */
  async writer(url, meta, offset) {
    if (offset !== 0) throw new Error("the Cache API store cannot append");
    const cache = await this.#cache(true);
    const pipe = new TransformStream();
    const w = pipe.writable.getWriter();
    const headers = { "content-length": String(meta.totalBytes) };
    if (meta.etag) headers.etag = meta.etag;
    if (meta.lastModified) headers["last-modified"] = meta.lastModified;
    const put = cache.put(url, new Response(pipe.readable, { headers }));
    put.catch(() => {});
    return {
      write: (chunk) => w.write(chunk),
      async close(complete) {
        if (complete) {
          await w.close();
          await put;
        } else {
          await w.abort(new Error("the download broke")).catch(() => {});
          await put.catch(() => {});
        }
      },
    };
  }

  async delete(url) {
    return (await (await this.#cache(false))?.delete(url)) ?? false;
  }

  async list() {
    const cache = await this.#cache(false);
    if (!cache) return [];
    const out = [];
    for (const request of await cache.keys()) out.push(await this.get(request.url));
    return out.filter(Boolean);
  }

  async clear() {
    return globalThis.caches ? caches.delete(CACHE) : false;
  }
}

let stores;

/** Both stores (either may be null): `{ opfs, cache }`. */
export function openStores() {
  stores ??= Promise.all([OpfsStore.open(), CacheApiStore.open()]).then(([opfs, cache]) => ({ opfs, cache }));
  return stores;
}

/**
 * The store a new download goes to: `choice` true picks OPFS where it exists, else the Cache
 * API; "opfs" or "cache-api" picks one (null when missing); false, none.
 */
export async function storeFor(choice) {
  const { opfs, cache } = await openStores();
  if (choice === false) return null;
  if (choice === "opfs") return opfs;
  if (choice === "cache-api") return cache;
  return opfs ?? cache;
}

/** Every stored model (complete or partial) of both stores. */
export async function listStored() {
  const { opfs, cache } = await openStores();
  return [...((await opfs?.list()) ?? []), ...((await cache?.list()) ?? [])];
}

/** Forget `url` in both stores; true when either had it. */
export async function deleteStored(url) {
  const { opfs, cache } = await openStores();
  const a = (await opfs?.delete(url)) ?? false;
  const b = (await cache?.delete(url)) ?? false;
  return a || b;
}

/** Forget everything in both stores; true when there was something. */
export async function clearStored() {
  const { opfs, cache } = await openStores();
  const a = (await opfs?.clear()) ?? false;
  const b = (await cache?.clear()) ?? false;
  return a || b;
}
