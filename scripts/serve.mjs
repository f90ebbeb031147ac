// A static file server for the demo and the browser tests: the right MIME types (wasm!),
// cross-origin isolation headers (COOP/COEP, for wasm threads), and HTTP range requests.
// `node scripts/serve.mjs [port]` serves the repository root and prints the demo's address.

import { createServer } from "node:http";
import { createReadStream, statSync } from "node:fs";
import { extname, join, normalize, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const TYPES = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript",
  ".json": "application/json", ".wasm": "application/wasm", ".css": "text/css", ".svg": "image/svg+xml",
  ".gguf": "application/octet-stream", ".ts": "text/plain",
};

/**
 * Serve `root` on `port` (0: any free one); resolves to `{ url, close, traffic }`. With
 * `brokenPaths`, a path under `/truncated/` serves its file but breaks the connection halfway
 * (for tests). `traffic` (for tests too) counts what was sent: `sent(path)` body bytes,
 * `requests(path)` `{ method, range, status }` of each request, `reset()`; and `cut(path, n)`
 * breaks the next response for `path` whose body is longer than n bytes after its first n.
 */
export function serve(root, { port = 0, host = "127.0.0.1", brokenPaths = false } = {}) {
  root = resolve(root);
  const sent = new Map();
  const log = new Map();
  const cuts = new Map();
  const traffic = {
    sent: (path) => sent.get(path) ?? 0,
    requests: (path) => log.get(path) ?? [],
    reset() {
      sent.clear();
      log.clear();
      cuts.clear();
    },
    cut: (path, n) => cuts.set(path, n),
  };
  const server = createServer((req, res) => {
    let path;
    try {
      path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname));
    } catch {
      res.writeHead(400, { "content-type": "text/plain" }).end("bad request");
      return;
    }
    const requestPath = path;
    const truncated = brokenPaths && path.startsWith("/truncated/");
    if (truncated) path = path.slice("/truncated".length);
    if (path.endsWith("/")) path += "index.html";
    const file = join(root, path);
    let size = -1;
    let mtime = 0;
    try {
      const st = statSync(file);
      if (st.isFile()) [size, mtime] = [st.size, st.mtimeMs];
    } catch {
      size = -1;
    }
    const entry = { method: req.method, range: req.headers.range ?? null, status: 0 };
    log.set(requestPath, [...traffic.requests(requestPath), entry]);
    if (!file.startsWith(root + "/") || size < 0) {
      entry.status = 404;
      res.writeHead(404, { "content-type": "text/plain" }).end("not found");
      return;
    }
    const headers = {
      "content-type": TYPES[extname(file)] ?? "application/octet-stream",
      "accept-ranges": "bytes",
      "cache-control": "no-cache",
      "cross-origin-opener-policy": "same-origin",
      "cross-origin-embedder-policy": "require-corp",
      "cross-origin-resource-policy": "same-origin",
      etag: `"${size.toString(16)}-${Math.floor(mtime).toString(16)}"`,
      "last-modified": new Date(mtime).toUTCString(),
    };
    let start = 0;
    let end = size - 1;
    const range = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? "");
    // If-Range: the range only while the validator still matches, else the whole file.
    const ifRange = req.headers["if-range"];
    const current = !ifRange || ifRange === headers.etag || ifRange === headers["last-modified"];
    if (range && (range[1] || range[2]) && current) {
      start = range[1] ? Number(range[1]) : Math.max(0, size - Number(range[2]));
      end = range[1] && range[2] ? Math.min(Number(range[2]), size - 1) : size - 1;
      if (start > end || start >= size) {
        entry.status = 416;
        res.writeHead(416, { "content-range": `bytes */${size}` }).end();
        return;
      }
      entry.status = 206;
      res.writeHead(206, { ...headers, "content-range": `bytes ${start}-${end}/${size}`, "content-length": end - start + 1 });
    } else {
      entry.status = 200;
      res.writeHead(200, { ...headers, "content-length": size });
    }
    if (req.method === "HEAD" || size === 0) {
      res.end();
      return;
    }
    if (truncated) {
      // The file's first half as asked for (a range within it is served whole), then a break.
      const half = Math.floor(size / 2);
      if (end <= half) return createReadStream(file, { start, end }).pipe(res);
      createReadStream(file, { start, end: half }).on("end", () => res.destroy()).pipe(res, { end: false });
      return;
    }
    const body = createReadStream(file, { start, end });
    const cutAt = cuts.get(requestPath);
    const cut = cutAt !== undefined && end - start + 1 > cutAt;
    if (cut) cuts.delete(requestPath);
    let count = 0;
    body.on("data", (chunk) => {
      if (cut && count + chunk.length >= cutAt) {
        const head = chunk.subarray(0, cutAt - count);
        count += head.length;
        sent.set(requestPath, traffic.sent(requestPath) + head.length);
        body.destroy();
        res.write(head, () => res.destroy());
        return;
      }
      count += chunk.length;
      sent.set(requestPath, traffic.sent(requestPath) + chunk.length);
      if (!res.write(chunk)) {
        body.pause();
        res.once("drain", () => body.resume());
      }
    });
    body.on("end", () => res.end());
    res.on("close", () => body.destroy());
  });
  return new Promise((ok, fail) => {
    server.on("error", fail);
    server.listen(port, host, () => ok({ url: `http://${host}:${server.address().port}`, close: () => server.close(), traffic }));
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const port = Number(process.argv[2] ?? 8080);
  const { url } = await serve(join(fileURLToPath(import.meta.url), "../.."), { port });
  console.log(`webgpu-llm demo: ${url}/www/  (Ctrl-C stops it)`);
}
