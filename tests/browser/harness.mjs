// What the browser test scripts share: Chromium's flags, assertions, and the loop that runs the
// tests one after another and prints the summary line scripts/test.sh adds up.

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
