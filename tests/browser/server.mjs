// A static file server for the browser tests: serves the repository root on localhost.
import { createServer } from "node:http";
import { createReadStream, statSync } from "node:fs";
import { extname, join, normalize } from "node:path";

const TYPES = {
  ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".json": "application/json",
  ".wasm": "application/wasm", ".gguf": "application/octet-stream", ".css": "text/css",
};

/**
 * Serve `root` on a free port; resolves to `{ url, close }`. A path under `/truncated/` serves
 * the same file but breaks the connection halfway (a failed download, for the tests).
 */
export function serve(root) {
  const server = createServer((req, res) => {
    let path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname));
    const truncated = path.startsWith("/truncated/");
    if (truncated) path = path.slice("/truncated".length);
    const file = join(root, path);
    let size;
    try {
      size = statSync(file).isFile() ? statSync(file).size : -1;
    } catch {
      size = -1;
    }
    if (!file.startsWith(root) || size < 0) {
      res.writeHead(404).end("not found");
      return;
    }
    res.writeHead(200, {
      "content-type": TYPES[extname(file)] ?? "application/octet-stream",
      "content-length": size,
      "cross-origin-opener-policy": "same-origin",
      "cross-origin-embedder-policy": "require-corp",
    });
    if (truncated) {
      createReadStream(file, { end: Math.floor(size / 2) }).on("end", () => res.destroy()).pipe(res, { end: false });
      return;
    }
    createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      resolve({ url: `http://127.0.0.1:${server.address().port}`, close: () => server.close() });
    });
  });
}
