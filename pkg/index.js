// webgpu-llm: chat with a GGUF language model in the browser, on the GPU through WebGPU (or on
// the CPU where there is none). The engine runs in a dedicated worker by default, so the page
// never freezes. See README.md and index.d.ts.

import { Host, estimateModelMemory, listCachedModels } from "./host.js";

export { listCachedModels, deleteCachedModel, clearModelCache } from "./host.js";

/** Every failure: a JS Error with a stable `code` (see index.d.ts for the list). */
export class WebGpuLlmError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "WebGpuLlmError";
    this.code = code;
  }
}

function toError(e) {
  if (e instanceof WebGpuLlmError) return e;
  return new WebGpuLlmError(e?.code ?? "internal", e?.message ?? String(e));
}

/** Calls into a Host, in a worker or on this thread, with the same shape. */
class WorkerTransport {
  #worker;
  #next = 1;
  #pending = new Map();

  constructor(worker) {
    this.#worker = worker;
    worker.onmessage = ({ data }) => {
      const p = this.#pending.get(data.id);
      if (!p) return;
      if ("event" in data) return p.onEvent?.(data.event);
      this.#pending.delete(data.id);
      if (data.error) p.reject(new WebGpuLlmError(data.error.code, data.error.message));
      else p.resolve(data.result);
    };
    worker.onerror = (e) => {
      const err = new WebGpuLlmError("internal", `the engine's worker failed: ${e.message}`);
      for (const p of this.#pending.values()) p.reject(err);
      this.#pending.clear();
    };
  }

  /** Call `method`; `onEvent` gets progress or token events. Returns [id, promise]. */
  start(method, args, onEvent) {
    const id = this.#next++;
    const promise = new Promise((resolve, reject) => this.#pending.set(id, { resolve, reject, onEvent }));
    this.#worker.postMessage({ id, method, args });
    return [id, promise];
  }

  call(method, args, onEvent) {
    return this.start(method, args, onEvent)[1];
  }

  generate(ids, params, onToken) {
    return this.stream("generate", { ids, params }, onToken);
  }

  /** A call whose events stream (generate, generateChoices, evaluate): `{ promise, abort }`. */
  stream(method, args, onEvent) {
    const [id, promise] = this.start(method, args, onEvent);
    return { promise, abort: () => this.call("abort", { id }) };
  }

  close() {
    this.#worker.terminate();
  }
}

class LocalTransport {
  #host = new Host();

  async call(method, args, onEvent) {
    try {
      if (method === "load") return await this.#host.load(args, (progress) => onEvent?.({ progress }));
      return await this.#host[method](...(args ?? []));
    } catch (e) {
      throw toError(e);
    }
  }

  generate(ids, params, onToken) {
    return this.stream("generate", { ids, params }, onToken);
  }

  /** The worker's streaming calls, with the same events (see worker.js). */
  stream(method, args, onEvent) {
    let stop = false;
    const stopped = () => stop;
    const h = this.#host;
    const run = {
      generate: () => h.generate(args.ids, args.params, onEvent, stopped),
      generateChoices: () => h.generateChoices(args.ids, args.params, args.n, args.bestOf,
        (index, event) => onEvent({ index, event }), stopped),
      evaluate: () => h.evaluate(args.text, args.options, (chunk) => onEvent({ chunk }), stopped),
    }[method];
    const promise = Promise.resolve()
      .then(run)
      .catch((e) => {
        throw toError(e);
      });
    return { promise, abort: () => (stop = true) };
  }

  close() {
    this.#host.unload();
  }
}

/** OpenAI / llama.cpp knob names → the engine's SamplingParams (see src/sampler.rs). */
function samplingParams(o) {
  const p = {};
  const copy = (from, to = from) => {
    if (o[from] !== undefined && o[from] !== null) p[to] = o[from];
  };
  for (const k of ["temperature", "top_k", "top_p", "min_p", "repetition_penalty", "frequency_penalty",
    "presence_penalty", "repeat_last_n", "seed", "max_tokens", "top_logprobs"]) copy(k);
  copy("max_completion_tokens", "max_tokens");
  // Speculative decoding: drafts per step (0-15; 0 turns the draft model off) and prompt lookup's n-gram (1-8).
  copy("draftTokens", "draft_tokens");
  copy("draft_tokens");
  copy("lookup");
  if (o.logit_bias) p.logit_bias = Object.entries(o.logit_bias).map(([id, b]) => [Number(id), b]);
  if (o.stop !== undefined && o.stop !== null) p.stop = Array.isArray(o.stop) ? o.stop : [o.stop];
  copy("grammar");
  return p;
}

/** Pushes from callbacks, pulled by `for await`. */
class Channel {
  #items = [];
  #waiting = null;
  #done = false;
  #error = null;

  push(item) {
    this.#items.push(item);
    this.#wake();
  }
  end(error = null) {
    this.#done = true;
    this.#error = error;
    this.#wake();
  }
  #wake() {
    this.#waiting?.();
    this.#waiting = null;
  }
  async *[Symbol.asyncIterator]() {
    for (;;) {
      if (this.#items.length) {
        yield this.#items.shift();
      } else if (this.#done) {
        if (this.#error) throw this.#error;
        return;
      } else {
        await new Promise((resolve) => (this.#waiting = resolve));
      }
    }
  }
}

let completionCount = 0;

/**
 * The models of the project's catalog (src/model/catalog.json, shipped as wasm/catalog.json),
 * each with its URL under `baseUrl` (the folder that holds the files, relative to the page;
 * default "/models/"), whether the server has it (a HEAD request: `present`, `served_bytes`),
 * whether a store (OPFS or the Cache API) holds a complete copy (`cached`), and whether it is the catalog's default.
 */
export async function listModels({ baseUrl = "/models/" } = {}) {
  let catalog;
  try {
    const response = await fetch(new URL("./wasm/catalog.json", import.meta.url));
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    catalog = await response.json();
  } catch (e) {
    throw new WebGpuLlmError("io", `reading the model catalog failed: ${e.message}`);
  }
  const base = new URL(baseUrl, globalThis.location?.href);
  const cached = new Set((await listCachedModels()).filter((m) => m.complete).map((m) => m.url));
  return Promise.all(catalog.models.map(async ({ parts, ...entry }) => {
    const url = new URL(entry.file, base).href;
    let present = false;
    let served = null;
    try {
      const head = await fetch(url, { method: "HEAD" });
      present = head.ok;
      served = present ? Number(head.headers.get("content-length")) || null : null;
    } catch {
      /* unreachable: not present */
    }
    return { ...entry, url, present, served_bytes: served, cached: cached.has(url), default: entry.name === catalog.default };
  }));
}

/**
 * What loading a model needs. Two forms:
 * - `estimateMemory(entry, contextSize?, { f16? })` for a catalog entry (a listModels entry, or
 *   any { size_bytes, n_layers, kv_width, context_length }), at once: the weights (about the
 *   file's size on the GPU and on the CPU's quantized path) plus the KV cache (K and V of every
 *   layer, f32; f16 with `f16: true`, as on a GPU with shader-f16).
 * - `estimateMemory(model, { backend?, contextSize?, exactCpu?, gpuLimits?, memoryLimitBytes? })`
 *   for a URL, File/Blob, ArrayBuffer or a split model's parts: a Promise of the engine's own
 *   estimate from the file's header (a Range request for its first bytes, or a stored copy) and
 *   this browser's WebGPU adapter limits, with `fits` and `reason`. It runs the wasm module on
 *   this thread and stores nothing.
 */
export function estimateMemory(entry, contextSize, options) {
  const isEntry = entry && typeof entry === "object" && !(entry instanceof URL) && !Array.isArray(entry) &&
    !ArrayBuffer.isView(entry) && !(entry instanceof ArrayBuffer) && !(typeof Blob !== "undefined" && entry instanceof Blob);
  if (!isEntry) {
    return estimateModelMemory(entry, contextSize ?? {}).catch((e) => {
      throw toError(e);
    });
  }
  contextSize ??= Math.min(entry.context_length, 4096);
  const { f16 = false } = options ?? {};
  const context = Math.min(contextSize, entry.context_length);
  const kv = 2 * entry.n_layers * entry.kv_width * context * (f16 ? 2 : 4);
  return { weights_bytes: entry.size_bytes, kv_cache_bytes: kv, total_bytes: entry.size_bytes + kv, context_size: context };
}

/** A token of the engine as an OpenAI logprobs entry (plus `prob`: its probability after the knobs). */
function logprobEntry(t) {
  return {
    token: t.text, logprob: t.logprob, bytes: t.bytes, prob: t.prob,
    top_logprobs: t.top.map((a) => ({ token: a.text, logprob: a.logprob, bytes: a.bytes, prob: a.prob })),
  };
}

class LlmEngine {
  #t;
  #info;
  #model;
  #sampling = {};
  #busy = null;
  #last = null;
  #load;
  #progress;

  constructor(transport, info, model, load, progress) {
    this.#t = transport;
    this.#info = info;
    this.#model = model;
    this.#load = load;
    this.#progress = progress;
    this.chat = { completions: { create: (request) => this.#createChat(request) } };
    this.completions = { create: (request) => this.#createCompletion(request) };
  }

  /**
   * Backend ("gpu" or "cpu"), adapter (name, features, limits), model configuration, memory,
   * the catalog entry (`catalog`) and the template facts (`template`).
   */
  async info() {
    return this.#t.call("info");
  }

  /** Sampling knobs for every later call, and for the running generation from its next token. */
  async setSampling(partial) {
    this.#sampling = { ...this.#sampling, ...partial };
    if (this.#busy) await this.#t.call("setSampling", [{ ...samplingParams({ ...this.#busy, ...this.#sampling }) }]);
  }

  /**
   * The engine's own record of the last finished generation: token ids, timings, and the knobs
   * it sampled with (`sampling`: the starting knobs, then each change and the token it applied from),
   * and speculative decoding's `drafted_tokens` and `accepted_tokens`. After a request with `n` or
   * `best_of`: its first choice (with `index`, `seed` and `mean_logprob`).
   */
  get lastGeneration() {
    return this.#last;
  }

  /** Forget the conversation held in the KV cache. */
  async resetChat() {
    await this.#t.call("reset");
  }

  /**
   * Load the same model again with the same options, on a fresh GPU device: the way back after
   * `device_lost` (or an `internal` crash). The conversation starts over. Resolves to `info()`.
   */
  async reload() {
    this.#info = await this.#t.call("load", this.#load, this.#progress);
    return this.#info;
  }

  /** Free the model and stop the worker. */
  async unload() {
    this.#t.close();
  }

  /**
   * Run `ids` with the knobs of `options` (merged over setSampling's); `onToken(event)` sees each
   * token event. Resolves to the engine's Generation. Honors `options.signal`.
   */
  async #run(ids, options, onToken) {
    return this.#call(options, (t) => t.generate(ids, samplingParams({ ...this.#sampling, ...options }), onToken),
      (gen) => (this.#last = gen));
  }

  /**
   * `choices.n` choices of `ids` (or the n best of `choices.bestOf`); `onToken(event, index)`
   * sees each choice's token events. Resolves to the engine's Choices (Generations with `index`,
   * `seed`, `mean_logprob`).
   */
  async #runChoices(ids, options, { n, bestOf }, onToken) {
    const params = samplingParams({ ...this.#sampling, ...options });
    return this.#call(options, (t) => t.stream("generateChoices", { ids, params, n, bestOf }, (e) => onToken(e.event, e.index)),
      (choices) => (this.#last = choices[0] ?? null));
  }

  /** One streaming call at a time, stopped by `options.signal`; `done(result)` before it resolves. */
  async #call(options, start, done) {
    if (this.#busy) throw new WebGpuLlmError("invalid_argument", "a generation is already running");
    const signal = options.signal;
    if (signal?.aborted) throw new WebGpuLlmError("aborted", "aborted before it started");
    this.#busy = options;
    const { promise, abort } = start(this.#t);
    const onAbort = () => abort();
    signal?.addEventListener("abort", onAbort);
    try {
      const result = await promise;
      done(result);
      if (signal?.aborted) throw new WebGpuLlmError("aborted", "generation was aborted");
      return result;
    } finally {
      signal?.removeEventListener("abort", onAbort);
      this.#busy = null;
    }
  }

  /**
   * The perplexity of `text` as llama.cpp's llama-perplexity computes it: chunks of
   * `contextSize` tokens (default 512, at most the engine's context), the second half of each
   * scored; `maxChunks` evaluates only the first ones; `onProgress(chunk)` sees each chunk as it
   * ends (`{ index, ppl, cumulative_ppl, of }`); `signal` stops it after the running chunk (the
   * result then covers the chunks run, and the call rejects with `aborted`).
   */
  async evaluate(text, { contextSize, maxChunks, onProgress, signal } = {}) {
    if (typeof text !== "string") throw new WebGpuLlmError("invalid_argument", "evaluate needs a text (a string)");
    const options = {};
    for (const [k, v] of [["contextSize", contextSize], ["maxChunks", maxChunks]]) {
      if (v === undefined || v === null) continue;
      if (!Number.isInteger(v) || v < 0) throw new WebGpuLlmError("invalid_argument", `${k} must be a positive integer, not ${JSON.stringify(v)}`);
      options[k] = v;
    }
    return this.#call({ signal }, (t) => t.stream("evaluate", { text, options }, (e) => e.chunk && onProgress?.(e.chunk)), () => {});
  }

  /**
   * Raw completion of `prompt` (text, or token ids): an async iterator of
   * `{ text, tokenId, logprob, prob, top }`. After the loop, `.result` holds the Generation.
   */
  generate(prompt, options = {}) {
    const channel = new Channel();
    const stream = {
      result: null,
      [Symbol.asyncIterator]: () => channel[Symbol.asyncIterator](),
    };
    (async () => {
      const ids = Array.isArray(prompt) ? prompt : await this.#t.call("encodePrompt", [prompt]);
      stream.result = await this.#run(ids, options, (e) =>
        channel.push({
          text: e.text, tokenId: e.token?.id ?? null, logprob: e.token?.logprob ?? null, prob: e.token?.prob ?? null,
          top: e.token?.top.map(({ id, text, logprob, prob }) => ({ id, text, logprob, prob })) ?? [],
        }));
    })().then(() => channel.end(), (e) => channel.end(toError(e)));
    return stream;
  }

  /** OpenAI-shaped chat completion: a result, or (stream: true) an async iterable of chunks. */
  async #createChat(request) {
    const { messages } = request;
    if (!Array.isArray(messages) || messages.length === 0) {
      throw new WebGpuLlmError("invalid_argument", "messages must be a non-empty array");
    }
    if (this.#info.template?.has_chat_template === false) {
      throw new WebGpuLlmError("invalid_argument", `${this.#model} is a base model: it has no chat template, so there ` +
        "is no chat format to follow; use engine.completions.create({ prompt }) for a raw completion");
    }
    const plain = messages.map((m) => ({ role: m.role, content: String(m.content ?? "") }));
    // Tools go to the template unless tool_choice is "none"; response_format, a named
    // tool_choice or "required" constrain every token (src/constraint.rs).
    const { tools, tool_choice: toolChoice, response_format: responseFormat } = request;
    if (tools !== undefined && tools !== null && !Array.isArray(tools)) {
      throw new WebGpuLlmError("invalid_argument", "tools must be an array of function tools");
    }
    const offered = tools?.length && toolChoice !== "none" ? tools : undefined;
    const grammar = await this.#t.call("structure", [responseFormat, offered, toolChoice]);
    // OpenAI's `truncation: "auto"`: drop the oldest turns (never the system prompt or the last
    // turn) until the prompt leaves room for the answer: max_tokens, at most a quarter of the context.
    let ids;
    let dropped = 0;
    if (request.truncation === "auto") {
      const room = Math.min(request.max_completion_tokens ?? request.max_tokens ?? Infinity, Math.floor(this.#info.context_size / 4));
      if (offered) throw new WebGpuLlmError("invalid_argument", 'truncation "auto" does not take tools');
      ({ ids, dropped } = await this.#t.call("encodeChatFitting", [plain, room]));
    } else if (request.truncation === undefined || request.truncation === "disabled") {
      ids = await this.#t.call("encodeChat", [plain, offered]);
    } else {
      throw new WebGpuLlmError("invalid_argument", `truncation must be "auto" or "disabled", not ${JSON.stringify(request.truncation)}`);
    }
    // OpenAI: `logprobs: true` reports each token's log-probability, `top_logprobs` (0-20) its rivals.
    const logprobs = request.logprobs === true;
    const knobs = { ...request, top_logprobs: logprobs ? request.top_logprobs ?? 0 : 0, grammar };
    const calls = offered && ((text) => this.#t.call("parseToolCalls", [text, offered]));
    return this.#respond(ids, knobs, logprobs, CHAT, { dropped_messages: dropped }, calls);
  }

  /** OpenAI-shaped raw completion (`text_completion`): a result, or (stream: true) chunks. */
  async #createCompletion(request) {
    let { prompt } = request;
    if (Array.isArray(prompt) && prompt.length === 1 && typeof prompt[0] === "string") prompt = prompt[0];
    const ids = Array.isArray(prompt) && prompt.length > 0 && prompt.every(Number.isInteger) ? prompt : null;
    if (typeof prompt !== "string" && !ids) {
      throw new WebGpuLlmError("invalid_argument", "prompt must be a string (or one string, or token ids)");
    }
    for (const k of ["echo", "suffix"]) {
      if (request[k]) throw new WebGpuLlmError("invalid_argument", `${k} is not supported`);
    }
    // OpenAI: `logprobs: N` (a number) reports each token's log-probability and its N rivals.
    const { logprobs } = request;
    if (logprobs !== undefined && logprobs !== null && !(Number.isInteger(logprobs) && logprobs >= 0)) {
      throw new WebGpuLlmError("invalid_argument", `logprobs must be a count of rivals (0-20), not ${JSON.stringify(logprobs)}`);
    }
    const rated = Number.isInteger(logprobs);
    const knobs = { ...request, top_logprobs: rated ? logprobs : 0 };
    return this.#respond(ids ?? await this.#t.call("encodePrompt", [prompt]), knobs, rated, COMPLETION, {});
  }

  /**
   * Run `ids` and answer in `shape` (CHAT or COMPLETION): the whole result, or with
   * `knobs.stream` an async iterable of chunks whose last one carries `usage`. `knobs.n` choices
   * (choice i seeded `seed + i`), or the n of `knobs.best_of` with the highest mean log-probability.
   */
  async #respond(ids, knobs, logprobs, shape, moreUsage, toolCalls = null) {
    const { n, bestOf } = choiceCounts(knobs, logprobs);
    const id = `${shape.prefix}-${Date.now().toString(36)}-${completionCount++}`;
    const base = { id, created: Math.floor(Date.now() / 1000), model: this.#model };
    const usage = (gens) => {
      const completion = gens.reduce((k, g) => k + g.tokens.length, 0);
      return {
        prompt_tokens: gens[0].prompt_tokens.length,
        completion_tokens: completion,
        total_tokens: gens[0].prompt_tokens.length + completion,
        cached_tokens: gens[0].reused_tokens,
        ...moreUsage,
      };
    };
    const finish = (g) => (g.finish_reason === "abort" ? "stop" : g.finish_reason);
    // One choice runs as a plain generation; several (or best_of) as the engine's choices.
    const run = (onToken) => (n === 1 && bestOf === null
      ? this.#run(ids, knobs, (e) => onToken(e, 0)).then((g) => [{ ...g, index: 0 }])
      : this.#runChoices(ids, knobs, { n, bestOf }, onToken));
    const rated = Array.from({ length: n }, () => []);
    const ratedChars = Array(n).fill(0); // the text of each choice's rated tokens so far (legacy logprobs' text_offset)
    if (!knobs.stream) {
      const gens = await run((e, i) => e.token && rated[i].push(logprobEntry(e.token)));
      const choices = [];
      for (const g of gens) {
        const choice = { index: g.index, ...shape.whole(g.text, logprobs ? rated[g.index] : null), finish_reason: finish(g) };
        // OpenAI's shape: the calls in message.tool_calls, the text (if any) in content.
        const parsed = toolCalls && await toolCalls(g.text);
        if (parsed?.tool_calls.length) {
          choice.message = { ...choice.message, content: parsed.content || null, tool_calls: parsed.tool_calls };
          choice.finish_reason = "tool_calls";
        }
        choices.push(choice);
      }
      return { ...base, object: shape.object, choices, usage: usage(gens) };
    }
    const channel = new Channel();
    const chunk = (index, part, finish_reason = null, extra = {}) => ({
      ...base, object: shape.chunkObject, choices: [{ index, ...part, finish_reason }], ...extra,
    });
    if (shape.opening) for (let i = 0; i < n; i++) channel.push(chunk(i, shape.opening));
    run((e, i) => {
      // With logprobs every token gets its chunk, even one whose text is still held back.
      if (logprobs && e.token) {
        const entry = logprobEntry(e.token);
        channel.push(chunk(i, shape.piece(e.text, [entry], ratedChars[i])));
        ratedChars[i] += entry.token.length;
      } else if (e.text) {
        channel.push(chunk(i, shape.piece(e.text, null)));
      }
    }).then(async (gens) => {
      for (const [k, g] of gens.entries()) {
        const extra = k === gens.length - 1 ? { usage: usage(gens) } : {};
        // Streamed, the calls come as one delta at the end (after the text they were read from).
        const parsed = toolCalls && await toolCalls(g.text);
        if (parsed?.tool_calls.length) {
          const deltas = parsed.tool_calls.map((c, index) => ({ index, ...c }));
          channel.push(chunk(g.index, { delta: { tool_calls: deltas }, logprobs: null }));
          channel.push(chunk(g.index, shape.closing, "tool_calls", extra));
        } else {
          channel.push(chunk(g.index, shape.closing, finish(g), extra));
        }
      }
      channel.end();
    }, (e) => channel.end(toError(e)));
    return channel;
  }
}

/** The most choices (and best_of) a request may ask for: the engine's MAX_CHOICES. */
const MAX_CHOICES = 16;

/** OpenAI's `n` (1 by default) and `best_of` (null: n), checked as invalid_argument. */
function choiceCounts({ n = 1, best_of: bestOf = null, stream }, logprobs) {
  if (n === null) n = 1;
  if (!Number.isInteger(n) || n < 1 || n > MAX_CHOICES) {
    throw new WebGpuLlmError("invalid_argument", `n must be an integer from 1 to ${MAX_CHOICES}, not ${JSON.stringify(n)}`);
  }
  if (bestOf === undefined || bestOf === null) return { n, bestOf: null };
  if (!Number.isInteger(bestOf) || bestOf < n || bestOf > MAX_CHOICES) {
    throw new WebGpuLlmError("invalid_argument", `best_of must be an integer from n (${n}) to ${MAX_CHOICES}, not ${JSON.stringify(bestOf)}`);
  }
  // The best are known only at the end: nothing to stream, and no token events to rate.
  if (bestOf > n && stream) throw new WebGpuLlmError("invalid_argument", "best_of greater than n cannot stream");
  if (bestOf > n && logprobs) throw new WebGpuLlmError("invalid_argument", "best_of greater than n cannot report logprobs");
  return { n, bestOf };
}

/** How chat.completions answers: a message, or deltas after a first one naming the role. */
const CHAT = {
  prefix: "chatcmpl",
  object: "chat.completion",
  chunkObject: "chat.completion.chunk",
  opening: { delta: { role: "assistant", content: "" }, logprobs: null },
  closing: { delta: {}, logprobs: null },
  whole: (text, entries) => ({ message: { role: "assistant", content: text }, logprobs: entries && { content: entries } }),
  piece: (text, entries) => ({ delta: { content: text }, logprobs: entries && { content: entries } }),
};

/**
 * OpenAI's legacy completion logprobs for `entries` (the first one `offset` characters into the
 * completion's tokens), plus `content`: the chat-shaped entries, with `prob`.
 */
function legacyLogprobs(entries, offset = 0) {
  const text_offset = entries.map((e) => ((offset += e.token.length), offset - e.token.length));
  return {
    tokens: entries.map((e) => e.token),
    token_logprobs: entries.map((e) => e.logprob),
    top_logprobs: entries.map((e) => Object.fromEntries(e.top_logprobs.map((t) => [t.token, t.logprob]))),
    text_offset,
    content: entries,
  };
}

/** How completions answers: text, in every chunk too. */
const COMPLETION = {
  prefix: "cmpl",
  object: "text_completion",
  chunkObject: "text_completion",
  opening: null,
  closing: { text: "", logprobs: null },
  whole: (text, entries) => ({ text, logprobs: entries && legacyLogprobs(entries) }),
  piece: (text, entries, offset) => ({ text, logprobs: entries && legacyLogprobs(entries, offset) }),
};

/**
 * Load a model and return an engine. `model`: a URL, a File or Blob, an ArrayBuffer, or a split
 * model's parts (a list of URLs or Files; or the first part's URL, `name-00001-of-0000N.gguf`).
 * Options: onProgress({ stage, loadedBytes, totalBytes, placedBytes }), backend ("auto" | "gpu"
 * | "cpu"), contextSize, exactCpu, gpuLimits ({ maxBufferBytes, maxBindingBytes }: lower the
 * adapter's), kernels ("software" | "workgroup" | "subgroup": the GPU's kernel shapes; default
 * the adapter's),
 * memoryLimitBytes, worker (default true), cache (default true: OPFS where it
 * exists, else the Cache API; "opfs", "cache-api", or false), sha256, draftModel (a second, smaller
 * model with the same vocabulary, loaded with the same options, as the draft model of
 * speculative decoding; its progress events carry `draft: true`).
 */
export async function createEngine(options) {
  const { model, draftModel, onProgress, worker = true, backend = "auto", contextSize, exactCpu, cache = true, sha256, gpuLimits,
    kernels, memoryLimitBytes } = options ?? {};
  if (model === undefined || model === null) throw new WebGpuLlmError("invalid_argument", "createEngine needs a model");
  if (cache !== false) await persist();
  const transport = worker
    ? new WorkerTransport(new Worker(new URL("./worker.js", import.meta.url), { type: "module" }))
    : new LocalTransport();
  const progress = (event) => event.progress && onProgress?.(event.progress);
  try {
    const load = { model, draftModel, backend, contextSize, exactCpu, cache, sha256, gpuLimits, kernels, memoryLimitBytes };
    const info = await transport.call("load", load, progress);
    const first = Array.isArray(model) ? model[0] : model;
    const name = typeof first === "string" || first instanceof URL ? String(first).split("/").pop() : first?.name ?? "model";
    return new LlmEngine(transport, info, name, load, progress);
  } catch (e) {
    transport.close();
    throw toError(e);
  }
}

/**
 * Ask that the stored models survive storage pressure (`navigator.storage.persist()`, only on a
 * page: workers have no such call). The browser decides; a refusal changes nothing else.
 */
async function persist() {
  try {
    const storage = globalThis.navigator?.storage;
    if (storage?.persist && !(await storage.persisted())) await storage.persist();
  } catch {
    /* not granted: the stores still work, as best-effort storage */
  }
}
