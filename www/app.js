// The demo chat page: imports the npm package from ../pkg exactly as a user's page would.
import { createEngine, estimateMemory, listModels } from "../pkg/index.js";

const $ = (id) => document.getElementById(id);

// ---- Sampling knobs: sliders + numbers, persisted, applied live through setSampling. ----

// `quick`: kept in view on a phone, where the panel is a bottom sheet.
const KNOBS = [
  { key: "temperature", label: "Temperature", quick: true, min: 0, max: 2, step: 0.05, def: 0.7, hint: "Higher is more random; 0 always takes the most likely token." },
  { key: "top_k", label: "Top-k", min: 0, max: 200, step: 1, def: 40, hint: "Only the k most likely tokens can be drawn; 0 turns it off." },
  { key: "top_p", label: "Top-p", quick: true, min: 0.01, max: 1, step: 0.01, def: 0.95, hint: "Only the most likely tokens that make up this much probability." },
  { key: "min_p", label: "Min-p", min: 0, max: 1, step: 0.01, def: 0.05, hint: "Drops tokens less likely than this fraction of the top one." },
  { key: "repetition_penalty", label: "Repetition penalty", min: 0.5, max: 2, step: 0.01, def: 1, hint: "Above 1 discourages repeating recent tokens." },
  { key: "max_tokens", label: "Max tokens", min: 1, max: 2048, step: 1, def: 256, hint: "The longest answer." },
  { key: "seed", label: "Seed", min: 0, max: 2 ** 31 - 1, step: 1, def: 0, hint: "With the lock on, the same seed gives the same answer." },
];
const STORE = "webgpu-llm.demo.sampling";
const settings = { seedLocked: false, ...Object.fromEntries(KNOBS.map((k) => [k.key, k.def])) };
try {
  Object.assign(settings, JSON.parse(localStorage.getItem(STORE) ?? "{}"));
} catch {
  /* a broken entry: keep the defaults */
}

function knobs() {
  const out = {};
  for (const k of KNOBS) if (k.key !== "seed") out[k.key] = Number(settings[k.key]);
  if (settings.seedLocked) out.seed = Number(settings.seed);
  return out;
}

// ---- Decoding: speculative (a draft model), prompt lookup, JSON mode, n answers side by side. ----

const DECODING_STORE = "webgpu-llm.demo.decoding";
const decoding = { speculative: false, draft: "", lookup: false, json: false, n: 1 };
try {
  Object.assign(decoding, JSON.parse(localStorage.getItem(DECODING_STORE) ?? "{}"));
} catch {
  /* a broken entry: keep the defaults */
}

/** The per-request options of the decoding panel (the draft model itself is loaded with the model). */
function decodingOptions() {
  const out = {};
  if (decoding.lookup) out.lookup = 3;
  // A loaded draft model with the switch off: no drafting.
  if (info?.draft && !decoding.speculative) out.draft_tokens = 0;
  return out;
}

function showDecoding() {
  $("speculative").checked = decoding.speculative;
  $("draft-pick").disabled = !decoding.speculative;
  $("lookup").checked = decoding.lookup;
  $("json-mode").checked = decoding.json;
  $("n-answers").value = String(decoding.n);
}

function saveDecoding() {
  localStorage.setItem(DECODING_STORE, JSON.stringify(decoding));
  showDecoding();
}

/** The draft model to load with the model: the picked catalog entry, when the switch is on. */
function draftModel() {
  if (!decoding.speculative) return undefined;
  return catalog.find((m) => m.present && m.name === decoding.draft)?.url;
}

/** Knob changes the engine acknowledged, with how many tokens of the reply had arrived then. */
const applied = [];

function saveAndApply() {
  localStorage.setItem(STORE, JSON.stringify(settings));
  const k = knobs();
  engine?.setSampling(k).then(() => applied.push({ tokens: replyTokens, knobs: k }), showError);
}

function buildKnobs() {
  const box = $("knobs");
  box.replaceChildren();
  for (const k of KNOBS) {
    const div = document.createElement("div");
    div.className = k.quick ? "knob quick" : "knob";
    const label = document.createElement("label");
    label.htmlFor = `knob-${k.key}`;
    label.textContent = k.label;
    const range = document.createElement("input");
    Object.assign(range, { type: "range", id: `knob-${k.key}`, min: k.min, max: k.key === "seed" ? 1000 : k.max, step: k.step, value: settings[k.key] });
    const number = document.createElement("input");
    Object.assign(number, { type: "number", min: k.min, max: k.max, step: k.step, value: settings[k.key] });
    number.setAttribute("aria-label", `${k.label} value`);
    const reset = document.createElement("button");
    reset.type = "button";
    reset.textContent = "↺";
    reset.title = `Reset ${k.label} to ${k.def}`;
    reset.setAttribute("aria-label", reset.title);
    const set = (v) => {
      settings[k.key] = Number(v);
      range.value = number.value = v;
      saveAndApply();
    };
    range.addEventListener("input", () => set(range.value));
    number.addEventListener("change", () => set(number.value));
    reset.addEventListener("click", () => set(k.def));
    const hint = document.createElement("span");
    hint.className = "hint";
    hint.textContent = k.hint;
    div.append(label, range, number, reset, hint);
    if (k.key === "seed") {
      const lock = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = settings.seedLocked;
      box.addEventListener("change", () => {
        settings.seedLocked = box.checked;
        saveAndApply();
      });
      lock.append(box, " lock the seed");
      div.append(lock);
    }
    box.append(div);
  }
}

$("sheet-toggle").addEventListener("click", () => {
  const open = $("controls").classList.toggle("open");
  $("sheet-toggle").setAttribute("aria-expanded", String(open));
  $("sheet-toggle").textContent = open ? "Fewer knobs ▾" : "All knobs ▴";
});
// On a phone the sheet covers the page's bottom: pad the page by its height.
new ResizeObserver(() => {
  const fixed = getComputedStyle($("controls")).position === "fixed";
  document.body.style.setProperty("--sheet-height", fixed ? `${$("controls").offsetHeight}px` : "0px");
}).observe($("controls"));

$("reset-all").addEventListener("click", () => {
  for (const k of KNOBS) settings[k.key] = k.def;
  settings.seedLocked = false;
  buildKnobs();
  saveAndApply();
});

// ---- Model loading. ----

let engine = null;
let info = null;
/** The model loaded last (a URL or a File): loaded again when the draft model changes. */
let currentModel = null;

const MB = (b) => (b / 1048576).toFixed(1);

// ---- The model picker: the catalog's models that this server has. ----

/** listModels() entries (every catalog model, `present` or not). */
let catalog = [];
const PICK_STORE = "webgpu-llm.demo.model";
const OTHER = "";

const contextChoice = () => Number($("context-choice").value);

/** What loading `m` needs at the chosen context: weights plus the KV cache (f32; f16 halves it). */
function memoryText(m) {
  const e = estimateMemory(m, contextChoice());
  return `Needs ≈ ${MB(e.total_bytes)} MB: ${MB(e.weights_bytes)} MB of weights + ${MB(e.kv_cache_bytes)} MB of KV cache ` +
    `for ${e.context_size} tokens (f32; half that on a GPU with f16)`;
}

function picked() {
  return catalog.find((m) => m.name === $("model-pick").value && m.present) ?? null;
}

function showPicked() {
  const m = picked();
  $("model-about").textContent = m
    ? `${m.title}: ${m.parameters} parameters, ${m.architecture}, ${m.quant}, ` +
      `${m.kind === "chat" ? "chat (instruction-tuned)" : "base model: text completion"}; ${m.license}. ${memoryText(m)}.`
    : "Load a GGUF file by URL, with the file picker, or by dropping it on the page.";
  for (const o of $("model-pick").options) {
    const e = catalog.find((m) => m.name === o.value);
    if (e) o.textContent = `${e.title} · ${MB(e.size_bytes)} MB · ${e.license} · ≈ ${MB(estimateMemory(e, contextChoice()).total_bytes)} MB`;
  }
}

async function fillPicker() {
  try {
    catalog = await listModels({ baseUrl: "../models/" });
  } catch (e) {
    catalog = [];
    showError(e);
  }
  const option = (value, text) => Object.assign(document.createElement("option"), { value, textContent: text });
  const present = catalog.filter((m) => m.present);
  $("model-pick").replaceChildren(...present.map((m) => option(m.name, m.title)), option(OTHER, "another model: a URL or a file (below)"));
  const saved = localStorage.getItem(PICK_STORE);
  const first = present.find((m) => m.name === saved) ?? present.find((m) => m.default) ?? present[0];
  if (first) {
    $("model-pick").value = first.name;
    $("model-url").value = first.url;
  } else {
    $("model-pick").value = OTHER;
    $("other-model").open = true;
  }
  showPicked();
  const drafts = present;
  $("draft-pick").replaceChildren(...drafts.map((m) => option(m.name, `${m.title} · ${MB(m.size_bytes)} MB`)));
  // The smallest model drafts by default.
  decoding.draft = drafts.find((m) => m.name === decoding.draft)?.name ??
    [...drafts].sort((a, b) => a.size_bytes - b.size_bytes)[0]?.name ?? "";
  $("draft-pick").value = decoding.draft;
  showDecoding();
}

/** The draft model changed: load the model again with it (or without one). */
function reloadForDraft() {
  saveDecoding();
  if (engine && currentModel && !controller) load(currentModel);
}
$("speculative").addEventListener("change", () => {
  decoding.speculative = $("speculative").checked;
  reloadForDraft();
});
$("draft-pick").addEventListener("change", () => {
  decoding.draft = $("draft-pick").value;
  reloadForDraft();
});
$("lookup").addEventListener("change", () => {
  decoding.lookup = $("lookup").checked;
  saveDecoding();
});
$("json-mode").addEventListener("change", () => {
  decoding.json = $("json-mode").checked;
  saveDecoding();
});
$("n-answers").addEventListener("change", () => {
  decoding.n = Number($("n-answers").value);
  saveDecoding();
});

$("model-pick").addEventListener("change", () => {
  const m = picked();
  if (m) {
    $("model-url").value = m.url;
    $("model-file").value = "";
  } else {
    $("other-model").open = true;
  }
  showPicked();
});
$("context-choice").addEventListener("change", showPicked);
$("model-url").addEventListener("input", () => {
  $("model-pick").value = catalog.find((m) => m.present && m.url === $("model-url").value)?.name ?? OTHER;
  showPicked();
});
$("model-file").addEventListener("change", () => {
  if ($("model-file").files[0]) $("model-pick").value = OTHER;
  showPicked();
});

async function load(model, withDraft = true) {
  hideError();
  setBusy(true, "loading");
  if (engine) await engine.unload();
  engine = null;
  info = null;
  $("facts").replaceChildren();
  $("backend").textContent = "no model";
  const bar = $("progress");
  bar.hidden = false;
  const t0 = performance.now();
  try {
    currentModel = model;
    engine = await createEngine({
      model,
      draftModel: withDraft ? draftModel() : undefined,
      backend: $("backend-choice").value,
      contextSize: contextChoice(),
      onProgress: ({ stage, loadedBytes, totalBytes, draft }) => {
        const secs = (performance.now() - t0) / 1000;
        bar.value = totalBytes ? loadedBytes / totalBytes : 0;
        const rate = secs > 0 ? ` at ${MB(loadedBytes / secs)} MB/s` : "";
        $("progress-text").textContent =
          (draft ? "draft model: " : "") +
          (stage === "load" ? "preparing the model…" : `${stage}: ${MB(loadedBytes)} / ${MB(totalBytes)} MB${rate}`);
      },
    });
    await engine.setSampling(knobs());
    info = await engine.info();
    $("progress-text").textContent = `ready in ${((performance.now() - t0) / 1000).toFixed(1)} s`;
    if (picked() && model === picked().url) localStorage.setItem(PICK_STORE, picked().name);
    showFacts();
    setMode(info.template.has_chat_template ? chosenMode : "completion");
    newChat();
  } catch (e) {
    $("progress-text").textContent = "";
    if (withDraft && draftModel() && e.code === "invalid_argument") {
      // A draft model with another vocabulary: load the model alone, and say why.
      bar.hidden = true;
      await load(model, false);
      showError(e);
      return;
    }
    showError(e);
  } finally {
    bar.hidden = true;
    setBusy(false);
  }
}

function showFacts() {
  const c = info.config;
  const a = info.adapter;
  const why = $("backend-choice").value === "auto" ? " (auto: no hardware WebGPU adapter here)" : "";
  const rows = [
    ["Model", c.name || "(unnamed)"],
    ["Architecture", `${c.arch}, ${c.n_layers} layers, ${c.d_model} wide`],
    ["Heads", `${c.n_heads} (${c.n_kv_heads} KV)`],
    ["Vocabulary", c.vocab_size.toLocaleString()],
    ["Context", `${info.context_size} of ${c.context_length} tokens`],
    ["Weights", `${MB(info.weight_bytes)} MB`],
    // (The CPU backend allocates its cache as the context fills: 0 at first.)
    ...(info.kv_cache_bytes > 0 ? [["KV cache", `${MB(info.kv_cache_bytes)} MB`]] : []),
    ["Backend", info.backend === "gpu" ? `WebGPU${a?.name ? ` on ${a.name}` : ""}, ${a?.f16 ? "f16" : "f32"} KV cache` : `CPU (wasm)${why}`],
    ...templateRows(info),
    ["Catalog", catalogText(info.catalog)],
    ...(info.draft ? [["Draft model", `${info.draft.config.name || "(unnamed)"}, ${info.draft.config.n_layers} layers (speculative decoding)`]] : []),
  ];
  $("facts").replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    return [dt, dd];
  }));
  $("backend").textContent = info.backend === "gpu" ? "WebGPU" : "CPU";
}

/** The template facts: whether it chats, and the tokens that start and end its text. */
function templateRows(info) {
  const t = info.template;
  const tok = (f) => (f ? `${f.text} (${f.id})` : "none");
  return [
    ["Chat template", t.has_chat_template
      ? `its own (${info.chat_template.length.toLocaleString()} characters of Jinja)`
      : "none: a base model, so text completion only"],
    ["BOS", `${tok(t.bos)}, ${t.add_bos ? "added to" : "not added to"} prompts`],
    ["EOS", tok(t.eos)],
    ["Stops at", t.eog.length ? t.eog.map(tok).join(", ") : "nothing but the length"],
  ];
}

function catalogText(c) {
  if (!c.entry) return "not a catalog model";
  return c.matched ? `${c.entry.name} (${c.entry.license}); file name and size match` : `${c.entry.name}? ${c.note}`;
}

$("model-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const file = $("model-file").files[0];
  load(file ?? $("model-url").value);
});
document.addEventListener("dragover", (e) => {
  e.preventDefault();
  document.body.classList.add("dragging");
});
document.addEventListener("dragleave", () => document.body.classList.remove("dragging"));
document.addEventListener("drop", (e) => {
  e.preventDefault();
  document.body.classList.remove("dragging");
  const file = e.dataTransfer?.files?.[0];
  if (file) load(file);
});

// ---- Chat. ----

let messages = [];
let controller = null;

/** How a token reads in a table: spaces and line breaks made visible. */
const shown = (t) => (t === "" ? "∅" : t.replace(/ /g, "␣").replace(/\n/g, "↵"));
const pct = (p) => `${(100 * p).toFixed(p >= 0.1 || p === 0 ? 0 : 1)}%`;

/**
 * Text as text: code fences become <pre><code>, nothing is ever parsed as HTML. With `tokens`
 * (`{ start, end, entry }` offsets into `text`), each generated token becomes a span tinted by
 * its probability, whose step is shown on hover or tap.
 */
function render(el, text, tokens = []) {
  el.replaceChildren();
  let start = 0;
  text.split("```").forEach((part, i) => {
    const end = start + part.length;
    let box = el;
    let from = start;
    if (i % 2 === 1) {
      const pre = document.createElement("pre");
      box = document.createElement("code");
      pre.append(box);
      el.append(pre);
      // The fence's first line names the language; it is not code.
      from += part.match(/^[^\n]*\n/)?.[0].length ?? part.length;
    }
    fill(box, text, from, end, tokens);
    start = end + 3;
  });
}

/** Put `text[from..to)` into `box`, as token spans where tokens cover it. */
function fill(box, text, from, to, tokens) {
  let pos = from;
  for (const [n, t] of tokens.entries()) {
    const a = Math.max(t.start, pos);
    const b = Math.min(t.end, to);
    if (a >= b) continue;
    if (a > pos) box.append(text.slice(pos, a));
    const span = document.createElement("span");
    span.className = "tok";
    span.textContent = text.slice(a, b);
    span.dataset.step = n;
    span.style.setProperty("--p", t.entry.prob);
    box.append(span);
    pos = b;
  }
  if (to > pos) box.append(text.slice(pos, to));
}

function bubble(role, text) {
  const li = document.createElement("li");
  li.className = role === "assistant" ? "assistant answer" : role;
  render(li, text);
  $("messages").append(li);
  li.scrollIntoView({ block: "end" });
  return li;
}

function setBusy(busy, why = "") {
  const ready = !busy && engine !== null;
  $("input").disabled = !ready;
  $("send").disabled = !ready;
  $("regenerate").disabled = !ready || (mode === "chat" ? !messages.some((m) => m.role === "assistant") : !lastContinuation);
  $("stop").disabled = why !== "generating";
  $("load").disabled = busy;
  document.body.dataset.state = busy ? why : engine ? "ready" : "empty";
}

function conversation() {
  const system = $("system").value.trim();
  return system ? [{ role: "system", content: system }, ...messages] : messages;
}

const TOP = 10;
const DIST_HINT = $("dist-caption").textContent;
let replyTokens = 0;

/**
 * Stream a generation into `view` (an `.answer` element): `start(signal)` makes the stream,
 * `part(chunk)` says what a chunk holds (`[text, logprob entry or undefined]`), `onText` sees
 * each piece of text. Resolves to the whole text; the caller calls setBusy(false).
 */
async function streamInto(view, start, part, onText = () => {}) {
  hideError();
  setBusy(true, "generating");
  const tokens = [];
  view.tokens = tokens;
  view.tabIndex = 0;
  render(view, "");
  controller = new AbortController();
  replyTokens = 0;
  let text = "";
  const t0 = performance.now();
  let first = null;
  try {
    for await (const chunk of await start(controller.signal)) {
      const [piece = "", entry] = part(chunk);
      if (entry) {
        first ??= performance.now();
        replyTokens++;
        showStep(entry, tokens.length);
        tokens.push({ start: text.length, end: text.length + piece.length, entry });
      } else if (tokens.length) {
        // Text held back for a possible stop string, let go at the end: the last token's.
        tokens.at(-1).end += piece.length;
      }
      if (piece || entry) {
        text += piece;
        onText(piece);
        render(view, text, tokens);
        view.scrollIntoView({ block: "nearest" });
      }
    }
  } catch (e) {
    if (e.code !== "aborted") showError(e);
  } finally {
    controller = null;
    showStats(engine.lastGeneration, first ? (first - t0) / 1000 : null);
  }
  return text;
}

/** A chat request's decoding options: speculative / lookup, and JSON mode. */
function chatOptions() {
  return { ...decodingOptions(), ...(decoding.json ? { response_format: { type: "json_object" } } : {}) };
}

async function reply() {
  if (decoding.n > 1) return replyMany(decoding.n);
  const li = bubble("assistant", "");
  li.setAttribute("aria-label", "Answer: arrow keys step through its tokens and their alternatives");
  const text = await streamInto(li,
    (signal) => engine.chat.completions.create({
      messages: conversation(), stream: true, signal, logprobs: true, top_logprobs: TOP, ...knobs(), ...chatOptions(),
    }),
    (chunk) => [chunk.choices[0].delta.content, chunk.choices[0].logprobs?.content[0]]);
  messages.push({ role: "assistant", content: text });
  setBusy(false);
  $("input").focus();
}

/**
 * `n` answers side by side (OpenAI's `n`: answer i seeded seed + i), streamed by their chunks'
 * `index`; the first one continues the conversation.
 */
async function replyMany(n) {
  const li = document.createElement("li");
  li.className = "assistant answers";
  li.style.setProperty("--n", n);
  const views = Array.from({ length: n }, (_, i) => {
    const view = document.createElement("div");
    view.className = "answer";
    view.dataset.index = i + 1;
    view.tabIndex = 0;
    view.tokens = [];
    view.text = "";
    li.append(view);
    return view;
  });
  $("messages").append(li);
  li.scrollIntoView({ block: "end" });
  hideError();
  setBusy(true, "generating");
  controller = new AbortController();
  replyTokens = 0;
  const t0 = performance.now();
  let first = null;
  try {
    const stream = await engine.chat.completions.create({
      messages: conversation(), stream: true, signal: controller.signal, logprobs: true, top_logprobs: TOP, n, ...knobs(), ...chatOptions(),
    });
    for await (const chunk of stream) {
      const c = chunk.choices[0];
      const view = views[c.index];
      const piece = c.delta.content ?? "";
      const entry = c.logprobs?.content[0];
      if (entry) {
        first ??= performance.now();
        replyTokens++;
        showStep(entry, view.tokens.length);
        view.tokens.push({ start: view.text.length, end: view.text.length + piece.length, entry });
      } else if (view.tokens.length) {
        view.tokens.at(-1).end += piece.length;
      }
      if (piece || entry) {
        view.text += piece;
        render(view, view.text, view.tokens);
      }
    }
  } catch (e) {
    if (e.code !== "aborted") showError(e);
  } finally {
    controller = null;
    showStats(engine.lastGeneration, first ? (first - t0) / 1000 : null);
  }
  messages.push({ role: "assistant", content: views[0].text });
  setBusy(false);
  $("input").focus();
}

// ---- Text completion: the continuation streams into the text box. ----

/** The last continuation: the text it continued and what it added (for Regenerate). */
let lastContinuation = null;

async function complete() {
  const doc = $("document");
  const before = doc.value;
  if (!before || !engine || controller) return;
  doc.readOnly = true;
  const text = await streamInto($("continuation"),
    (signal) => engine.completions.create({ prompt: before, stream: true, signal, logprobs: TOP, ...knobs(), ...decodingOptions() }),
    (chunk) => [chunk.choices[0].text, chunk.choices[0].logprobs?.content[0]],
    (piece) => {
      doc.value += piece;
      doc.scrollTop = doc.scrollHeight;
    });
  lastContinuation = { before, text };
  doc.readOnly = false;
  setBusy(false);
  doc.focus();
}

// ---- Chat or completion: a base model (no chat template) only completes text. ----

let mode = "chat";
/** The mode the user chose (a model without a template overrides it). */
let chosenMode = "chat";

function setMode(m) {
  mode = m;
  document.body.dataset.mode = m;
  $("completion").hidden = m !== "completion";
  for (const r of document.querySelectorAll("input[name=mode]")) r.checked = r.value === m;
  const chats = info?.template.has_chat_template !== false;
  document.querySelector("input[name=mode][value=chat]").disabled = !chats;
  $("mode-note").textContent = chats ? "" : "a base model (no chat template): it continues text";
  $("send").textContent = m === "chat" ? "Send" : "Continue";
  $("send").title = m === "chat" ? "Enter" : "Ctrl+Enter";
  $("new-chat").textContent = m === "chat" ? "New chat" : "Clear";
  setBusy(Boolean(controller), controller ? "generating" : "");
}
for (const r of document.querySelectorAll("input[name=mode]")) {
  r.addEventListener("change", () => {
    if (!r.checked || controller) return;
    chosenMode = r.value;
    setMode(r.value);
  });
}

function showStats(g, ttft) {
  if (!g) return;
  const prefill = g.prefill_secs > 0 ? g.prefill_tokens / g.prefill_secs : 0;
  const decode = g.decode_secs > 0 ? g.decoded_tokens / g.decode_secs : 0;
  const parts = [
    ttft === null ? null : `first token ${ttft.toFixed(2)} s`,
    `prefill ${prefill.toFixed(1)} tokens/s (${g.prefill_tokens} new, ${g.reused_tokens} cached)`,
    `decode ${decode.toFixed(1)} tokens/s`,
    `context ${g.prompt_tokens.length + g.tokens.length} / ${info.context_size}`,
  ];
  $("stats").textContent = parts.filter(Boolean).join(" · ");
  // Speculative decoding: how many drafted tokens the model kept.
  const accept = $("acceptance");
  if (g.drafted_tokens > 0) {
    accept.textContent = `Drafts accepted: ${g.accepted_tokens} / ${g.drafted_tokens} (${pct(g.accepted_tokens / g.drafted_tokens)})`;
    Object.assign(accept.dataset, { drafted: g.drafted_tokens, accepted: g.accepted_tokens });
  } else {
    accept.textContent = decoding.speculative || decoding.lookup ? "No tokens were drafted in the last answer." : "";
    Object.assign(accept.dataset, { drafted: 0, accepted: 0 });
  }
}

// ---- What the sliders do: each step's most likely tokens, before and after the knobs. ----

/** A table row: the token, a bar for the model's probability and one for the final one. */
function row(t, chosen) {
  const tr = document.createElement("tr");
  const model = Math.exp(t.logprob);
  Object.assign(tr.dataset, { model, prob: t.prob });
  if (chosen) tr.className = "chosen";
  const piece = document.createElement("td");
  piece.className = "piece";
  piece.textContent = shown(t.token);
  const bars = document.createElement("td");
  bars.className = "bars";
  for (const [cls, p] of [["model", model], ["after", t.prob]]) {
    const bar = document.createElement("div");
    bar.className = `bar ${cls}`;
    bar.style.width = `${100 * p}%`;
    bars.append(bar);
  }
  const num = document.createElement("td");
  num.className = "num";
  num.textContent = `${pct(model)} → ${pct(t.prob)}`;
  tr.append(piece, bars, num);
  return tr;
}

function rows(entry) {
  return entry.top_logprobs.map((t) => row(t, t.token === entry.token && t.logprob === entry.logprob));
}

/** Show step `n` (its entry) in the distribution panel. */
function showStep(entry, n) {
  $("dist-caption").textContent = `Token ${n + 1}: drew “${shown(entry.token)}” at ${pct(entry.prob)} ` +
    `(the model alone: ${pct(Math.exp(entry.logprob))}).`;
  $("dist").tBodies[0].replaceChildren(...rows(entry));
}

/** The alternatives of a hovered or tapped token, beside it, and its step in the panel. */
function showAlternatives(span) {
  const n = Number(span.dataset.step);
  const entry = span.closest(".answer")?.tokens?.[n]?.entry;
  if (!entry) return;
  document.querySelector(".tok.current")?.classList.remove("current");
  span.classList.add("current");
  showStep(entry, n);
  const box = $("alts");
  const table = document.createElement("table");
  table.append(...rows(entry));
  const title = document.createElement("div");
  title.textContent = `“${shown(entry.token)}”: ${pct(entry.prob)} after the knobs, ${pct(Math.exp(entry.logprob))} by the model`;
  box.replaceChildren(title, table);
  box.hidden = false;
  const r = span.getBoundingClientRect();
  box.style.left = `${Math.max(4, Math.min(r.left + scrollX, scrollX + innerWidth - box.offsetWidth - 4))}px`;
  box.style.top = `${r.bottom + scrollY + 4}px`;
}

const tokenOf = (e) => e.target.closest?.(".tok");
for (const box of [$("messages"), $("continuation")]) {
  box.addEventListener("mouseover", (e) => tokenOf(e) && showAlternatives(tokenOf(e)));
  box.addEventListener("click", (e) => tokenOf(e) && showAlternatives(tokenOf(e)));
  box.addEventListener("mouseleave", () => ($("alts").hidden = true));
  // Keyboard: with an answer focused, Left/Right walk its tokens.
  box.addEventListener("keydown", (e) => {
    const answer = e.target.closest?.(".answer");
    if (!answer?.tokens?.length || (e.key !== "ArrowLeft" && e.key !== "ArrowRight")) return;
    e.preventDefault();
    const at = Number(answer.querySelector(".tok.current")?.dataset.step ?? -1);
    const next = Math.max(0, Math.min(answer.tokens.length - 1, at + (e.key === "ArrowRight" ? 1 : -1)));
    const span = answer.querySelector(`.tok[data-step="${next}"]`);
    if (span) showAlternatives(span);
  });
}
document.addEventListener("click", (e) => !tokenOf(e) && ($("alts").hidden = true));

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  if (mode === "completion") return void complete();
  const text = $("input").value.trim();
  if (!text || !engine || controller) return;
  $("input").value = "";
  messages.push({ role: "user", content: text });
  bubble("user", text);
  reply();
});
$("input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) {
    e.preventDefault();
    $("composer").requestSubmit();
  }
});
$("document").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    complete();
  }
});
$("stop").addEventListener("click", () => controller?.abort());
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape") controller?.abort();
});
$("regenerate").addEventListener("click", () => {
  if (controller) return;
  if (mode === "completion") {
    // Take the last continuation back (if the text still ends with it) and continue again.
    const last = lastContinuation;
    if (last && $("document").value === last.before + last.text) $("document").value = last.before;
    return void complete();
  }
  if (messages.at(-1)?.role !== "assistant") return;
  messages.pop();
  $("messages").lastElementChild?.remove();
  reply();
});

function newChat() {
  controller?.abort();
  messages = [];
  $("messages").replaceChildren();
  if (mode === "completion") $("document").value = "";
  lastContinuation = null;
  render($("continuation"), "");
  $("continuation").tokens = [];
  $("alts").hidden = true;
  $("dist").tBodies[0].replaceChildren();
  $("dist-caption").textContent = DIST_HINT;
  $("stats").textContent = "";
  engine?.resetChat().catch(showError);
  hideError();
  setBusy(false);
}
$("new-chat").addEventListener("click", newChat);

// ---- Errors, said the way people expect. ----

const ADVICE = {
  no_webgpu: "This browser has no usable WebGPU. Choose the CPU backend (or auto) and load again.",
  bad_model: "This file is not a model this page can read (a truncated or corrupt GGUF?).",
  unsupported_model: "This model uses something not supported yet.",
  out_of_memory: "The model does not fit in this device's memory. Try a smaller model or context.",
  context_overflow: "The conversation no longer fits in the model's context. Start a new chat.",
  device_lost: "The GPU was lost (a driver reset?). Reload the page.",
  io: "The model could not be downloaded or read.",
};

/** What the error box offers to do about an error. */
const ACTIONS = {
  context_overflow: ["New chat", () => newChat()],
  device_lost: ["Reload", () => location.reload()],
};

function showError(e) {
  $("error").hidden = false;
  $("error-text").textContent = `${ADVICE[e?.code] ?? "Something went wrong."} (${e?.code ?? "error"}: ${e?.message ?? e})`;
  const action = ACTIONS[e?.code];
  const button = $("error-action");
  button.hidden = !action;
  if (action) {
    button.textContent = action[0];
    button.onclick = action[1];
  }
  document.body.dataset.error = e?.code ?? "error";
}

function hideError() {
  $("error").hidden = true;
  delete document.body.dataset.error;
}

buildKnobs();
showDecoding();
setMode("chat");
window.demo = { get engine() { return engine; }, get catalog() { return catalog; }, get mode() { return mode; }, settings, knobs, applied, decoding };
await fillPicker();
load($("model-url").value);
