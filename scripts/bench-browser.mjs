// Runs www/bench.html in headless Chromium (WebGPU on, as far as the machine has it) and prints
// its JSON result, one line per run. Usage:
//   node scripts/bench-browser.mjs [key=value ...]
// with the page's parameters: runtime=webgpu-llm|wllama backend=auto|gpu|cpu prompt=N gen=N
// threads=N gpu_layers=N (wllama). Needs scripts/build-wasm.sh first, and for wllama the
// dev dependencies of tests/browser (npm ci --prefix tests/browser).

import { resolve } from "node:path";
import { chromium } from "../tests/browser/node_modules/playwright-core/index.mjs";
import { serve } from "./serve.mjs";

const root = resolve(import.meta.dirname, "..");
const params = new URLSearchParams(process.argv.slice(2).join("&"));
const server = await serve(root);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--enable-unsafe-webgpu", "--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking"],
});
try {
  const page = await browser.newPage();
  page.on("pageerror", (e) => console.error("page error:", e.message));
  await page.goto(`${server.url}/www/bench.html?${params}`);
  await page.waitForFunction(() => window.bench !== undefined, null, { timeout: 900_000 });
  const result = await page.evaluate(() => window.bench);
  console.log(JSON.stringify(result));
  process.exitCode = result.error ? 1 : 0;
} finally {
  await browser.close();
  server.close();
}
