// Plots of scripts/bench.sh's results: tokens per second against prompt length, one line per
// runtime and backend, as SVG (no dependencies). Usage: node scripts/plot-bench.mjs results.jsonl outdir
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const [input, outdir] = process.argv.slice(2);
const rows = readFileSync(input, "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((r) => !r.result.error);
mkdirSync(outdir, { recursive: true });

const COLORS = ["#2b59c3", "#d93025", "#188038", "#f29900", "#9334e6", "#12b5cb", "#5f6368", "#e37400"];
const esc = (s) => String(s).replace(/[&<>]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;" })[c]);

function plot(field, title, file) {
  const labels = [...new Set(rows.map((r) => r.label))];
  const xs = [...new Set(rows.map((r) => r.prompt))].sort((a, b) => a - b);
  const ymax = Math.max(...rows.map((r) => r.result[field] ?? 0)) * 1.1 || 1;
  const [W, H, L, R, T, B] = [760, 420, 60, 230, 40, 50];
  const x = (v) => L + ((Math.log2(v) - Math.log2(xs[0])) / Math.max(1e-9, Math.log2(xs.at(-1)) - Math.log2(xs[0]))) * (W - L - R);
  const y = (v) => H - B - (v / ymax) * (H - T - B);
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`, `<text x="${L}" y="22" font-size="15">${esc(title)}</text>`];
  for (let i = 0; i <= 5; i++) {
    const v = (ymax * i) / 5;
    out.push(`<line x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}" stroke="#e0e0e0"/>`,
      `<text x="${L - 6}" y="${y(v) + 4}" text-anchor="end">${v.toFixed(v < 10 ? 1 : 0)}</text>`);
  }
  for (const v of xs) out.push(`<text x="${x(v)}" y="${H - B + 18}" text-anchor="middle">${v}</text>`);
  out.push(`<text x="${(L + W - R) / 2}" y="${H - 10}" text-anchor="middle">prompt tokens (log scale)</text>`);
  labels.forEach((label, i) => {
    const pts = rows.filter((r) => r.label === label && r.result[field] != null).sort((a, b) => a.prompt - b.prompt);
    const c = COLORS[i % COLORS.length];
    out.push(`<polyline fill="none" stroke="${c}" stroke-width="2" points="${pts.map((r) => `${x(r.prompt)},${y(r.result[field])}`).join(" ")}"/>`);
    for (const r of pts) out.push(`<circle cx="${x(r.prompt)}" cy="${y(r.result[field])}" r="3" fill="${c}"/>`);
    out.push(`<rect x="${W - R + 12}" y="${T + i * 20}" width="12" height="12" fill="${c}"/>`,
      `<text x="${W - R + 30}" y="${T + i * 20 + 10}">${esc(label)}</text>`);
  });
  out.push("</svg>");
  writeFileSync(join(outdir, file), out.join("\n") + "\n");
}

plot("decode_tokens_per_s", "Decode tokens/s (64 generated tokens, greedy)", "decode.svg");
plot("prefill_tokens_per_s", "Prefill tokens/s", "prefill.svg");

// The table BENCHMARKS.md quotes.
const table = ["| run | prompt | prefill tok/s | decode tok/s | first token s |", "|---|---|---|---|---|"];
for (const r of rows) {
  const f = (v, d = 1) => (v == null ? "–" : Number(v).toFixed(d));
  table.push(`| ${r.label} | ${r.result.prompt_tokens ?? r.prompt} | ${f(r.result.prefill_tokens_per_s)} | ${f(r.result.decode_tokens_per_s)} | ${f(r.result.time_to_first_token_s, 2)} |`);
}
writeFileSync(join(outdir, "table.md"), table.join("\n") + "\n");
console.log(table.join("\n"));
