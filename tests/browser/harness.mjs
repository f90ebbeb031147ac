// What the browser test scripts share: Chromium's flags, assertions, and the loop that runs the
// tests one after another and prints the summary line scripts/test.sh adds up.

import { existsSync } from "node:fs";
import { join } from "node:path";

export const FLAGS = ["--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync"];

export function assert(cond, message) {
  if (!cond) throw new Error(message);
}

export function same(a, b, what) {
  assert(JSON.stringify(a) === JSON.stringify(b), `${what}: ${JSON.stringify(a)} != ${JSON.stringify(b)}`);
}

/** Run the tests whose name contains `filter` (all without one); returns how many failed. */
export async function runTests(tests, filter) {
  const chosen = tests.filter((t) => !filter || t.name.includes(filter));
  let failed = 0;
  for (const { name, fn } of chosen) {
    const t0 = Date.now();
    try {
      await fn();
      console.log(`ok - ${name} (${((Date.now() - t0) / 1000).toFixed(1)}s)`);
    } catch (e) {
      failed++;
      console.log(`not ok - ${name}\n  ${e.message}`);
    }
  }
  console.log(`browser tests: ${chosen.length - failed} passed, ${failed} failed`);
  return failed;
}

/** The CLI built by cargo test (or cargo build) under `root`/target, or $WEBGPU_LLM_CLI; null if none. */
export function cliBinary(root) {
  if (process.env.WEBGPU_LLM_CLI) return process.env.WEBGPU_LLM_CLI;
  const dirs = [process.env.CARGO_TARGET_DIR, join(root, "target")].filter(Boolean);
  for (const d of dirs) for (const p of ["debug", "release"]) if (existsSync(join(d, p, "webgpu-llm"))) return join(d, p, "webgpu-llm");
  return null;
}
