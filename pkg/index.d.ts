// Types of the webgpu-llm package (hand-written; see index.js).

/** Stable error codes, the same as the Rust crate's. */
export type ErrorCode =
  | "no_webgpu"
  | "bad_model"
  | "unsupported_model"
  | "context_overflow"
  | "out_of_memory"
  | "device_lost"
  | "aborted"
  | "invalid_argument"
  | "io"
  | "internal";

export class WebGpuLlmError extends Error {
  readonly name: "WebGpuLlmError";
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string);
}

export interface Progress {
  /**
   * "cache" (a stored copy: OPFS or the Cache API), "download" (network), "read" (File/Blob,
   * buffer), then "load" (the engine's last steps). A resumed download is "cache", then "download".
   */
  stage: "download" | "cache" | "read" | "load";
  /** Bytes fed to the engine so far, all parts together. */
  loadedBytes: number;
  totalBytes: number;
  /** Bytes the engine has placed on its backend (GPU buffers, or the CPU's weights) so far. */
  placedBytes: number;
  /** Set on the draft model's events (`draftModel`). */
  draft?: boolean;
}

/** A model: one file (URL, File/Blob, bytes) or a split model's parts, in order. */
export type ModelSource = string | URL | File | Blob | ArrayBuffer | Uint8Array | (string | URL)[] | (File | Blob)[];

/** Limits that lower what the adapter (or the machine) allows, e.g. to test the fit check. */
export interface LimitOptions {
  /** The largest GPU buffer and storage binding to use (at most the adapter's). */
  gpuLimits?: { maxBufferBytes?: number; maxBindingBytes?: number };
  /** Memory the engine may take in all (weights, KV cache, scratch). */
  memoryLimitBytes?: number;
}

export interface EngineOptions extends LimitOptions {
  /**
   * A URL, a File/Blob, bytes, or a split model (llama.cpp's gguf-split
   * `name-00001-of-0000N.gguf`): its parts' URLs or Files in order, or just the first part's URL.
   */
  model: ModelSource;
  onProgress?: (p: Progress) => void;
  /** "auto" (default): the GPU when WebGPU has a hardware adapter, else the CPU in wasm. */
  backend?: "auto" | "gpu" | "cpu";
  /** KV-cache capacity in tokens (default min(model context, 4096)). */
  contextSize?: number;
  /**
   * The GPU's kernel shapes: "software" (tuned on software adapters such as SwiftShader),
   * "workgroup" (shaped for GPUs) or "subgroup" (GPUs with subgroups: native only, as wgpu
   * cannot ask the browser for them yet). Default: the adapter's; `info().adapter.kernels` says
   * which ran. Another name, or one the adapter cannot run, is `invalid_argument`.
   */
  kernels?: "software" | "workgroup" | "subgroup";
  /**
   * CPU backend: f32 math on dequantized weights (the exact reference; about 5x the memory and
   * slower) instead of 8-bit integer products on the quantized blocks, as llama.cpp computes.
   */
  exactCpu?: boolean;
  /** Run in a dedicated Web Worker (default true). */
  worker?: boolean;
  /**
   * Keep a downloaded model, keyed by URL: true (default) in OPFS where it exists (a broken
   * download is kept and resumed), else the Cache API; "opfs" or "cache-api" picks one; false
   * neither reads nor writes a store.
   */
  cache?: boolean | "opfs" | "cache-api";
  /**
   * Expected sha256, hex, of the file (of a split model: of its parts' bytes one after another);
   * a mismatch is `bad_model` and deletes the stored copies.
   */
  sha256?: string;
  /**
   * A second, smaller model with the same vocabulary (token for token; else `invalid_argument`),
   * loaded with the same options, as the draft model of speculative decoding: it proposes
   * tokens that the main model checks in one pass, keeping the main model's distribution
   * (greedy output is plain greedy's). Its progress events carry `draft: true`.
   */
  draftModel?: ModelSource;
}

/** Sampling knobs, applied in the order documented in src/sampler.rs. */
export interface SamplingOptions {
  /** Constrain every token (chat requests set it from `response_format` / `tool_choice`). */
  grammar?: { type: "json_object" } | { type: "json_schema"; schema: object } | { type: "lark"; grammar: string };
  temperature?: number;
  top_k?: number;
  top_p?: number;
  min_p?: number;
  repetition_penalty?: number;
  repeat_last_n?: number;
  frequency_penalty?: number;
  presence_penalty?: number;
  /** Token id → bias added to its logit (-Infinity bans it). */
  logit_bias?: Record<number, number>;
  seed?: number;
  stop?: string | string[];
  max_tokens?: number;
  max_completion_tokens?: number;
  /** Report this many of each step's most likely tokens (0-20; `generate` and, with `logprobs`, chat). */
  top_logprobs?: number;
  /**
   * Speculative decoding with the draft model (`draftModel`): tokens it drafts per step, 1-15
   * (unset: adapts to the acceptance); 0 turns the draft model off for this request.
   */
  draft_tokens?: number;
  /** The same as `draft_tokens`. */
  draftTokens?: number;
  /**
   * Prompt lookup (without a draft model): draft the tokens that followed the last earlier
   * occurrence of the text's final n-gram, n = `lookup` (1-8) down to 1. Unset: off.
   */
  lookup?: number;
}

/** OpenAI's `n` and `best_of`: several continuations of one prompt. */
export interface ChoiceOptions {
  /** Choices to return, 1-16 (default 1); choice i is seeded `seed + i`. */
  n?: number;
  /**
   * Generate this many (n-16) and return the `n` with the highest mean log-probability (cannot
   * stream or report logprobs when greater than `n`).
   */
  best_of?: number | null;
}

export interface ChatMessage {
  role: "system" | "user" | "assistant" | "tool" | string;
  content: string;
}

/** OpenAI's function tool: its parameters are a JSON Schema. */
export interface FunctionTool {
  type: "function";
  function: { name: string; description?: string; parameters?: object };
}

/** "auto" (default), "none" (the template does not see the tools), "required" (some call), or a named function. */
export type ToolChoice = "none" | "auto" | "required" | { type: "function"; function: { name: string } };

/** A call the model made; `arguments` is a JSON string. */
export interface ToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

/**
 * Constrained output: every token is masked by llguidance so the answer parses (an unsupported
 * schema feature or a schema that does not compile is `invalid_argument`, naming it).
 */
export type ResponseFormat =
  | { type: "text" }
  | { type: "json_object" }
  | { type: "json_schema"; json_schema: { name?: string; strict?: boolean; schema: object } };

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** Prompt tokens served from the KV cache. */
  cached_tokens: number;
  /** Messages left out by `truncation: "auto"` (0 otherwise). */
  dropped_messages: number;
}

export type FinishReason = "stop" | "length" | "tool_calls";

export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: {
    /** 0 to n-1. */
    index: number;
    /** With tools, a call in the answer is in `tool_calls` (and `content` is the rest, or null). */
    message: { role: "assistant"; content: string | null; tool_calls?: ToolCall[] };
    finish_reason: FinishReason;
    logprobs: { content: LogprobEntry[] } | null;
  }[];
  usage: Usage;
}

export interface ChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  choices: {
    /** Which choice this chunk continues (0 to n-1). */
    index: number;
    /** Tool calls come whole, in one delta before the choice's last chunk. */
    delta: { role?: "assistant"; content?: string; tool_calls?: (ToolCall & { index: number })[] };
    finish_reason: FinishReason | null;
    logprobs: { content: LogprobEntry[] } | null;
  }[];
  /** On the last chunk. */
  usage?: Usage;
}

export interface ChatCompletionRequest extends SamplingOptions, ChoiceOptions {
  /** Report each token's log-probability (and `top_logprobs` rivals) in `choices[0].logprobs`. */
  logprobs?: boolean;
  messages: ChatMessage[];
  /** JSON mode or a JSON Schema: every token is constrained, the answer always parses. */
  response_format?: ResponseFormat;
  /** Function tools, for a model whose template supports them (else `invalid_argument`). */
  tools?: FunctionTool[];
  /** A named function or "required": the answer is such a call, its arguments valid under the schema. */
  tool_choice?: ToolChoice;
  stream?: boolean;
  signal?: AbortSignal;
  /**
   * "disabled" (default): a conversation longer than the context is a `context_overflow` error.
   * "auto": the oldest turns are dropped (never the system prompt or the last turn) until the
   * prompt leaves room for the answer (`max_tokens`, at most a quarter of the context).
   */
  truncation?: "auto" | "disabled";
}

/** One of a step's likely tokens, OpenAI-shaped, plus `prob`. */
export interface TopLogprob {
  /** How the token reads on its own. */
  token: string;
  /** Log-probability under the raw model distribution (before every knob). */
  logprob: number;
  bytes: number[];
  /** Probability after every sampling knob (0 when a knob cut the token). */
  prob: number;
}

/** A generated token (OpenAI's `logprobs.content` entry). */
export interface LogprobEntry extends TopLogprob {
  /** The step's `top_logprobs` most likely tokens, most likely first. */
  top_logprobs: TopLogprob[];
}

export interface TokenPiece {
  /** Text that can be shown now (UTF-8 safe; text that might start a stop string is held back). */
  text: string;
  tokenId: number | null;
  /** Log-probability under the raw model distribution. */
  logprob: number | null;
  /** Probability in the final sampling distribution. */
  prob: number | null;
  /** The step's `top_logprobs` most likely tokens, most likely first (`prob` after the knobs). */
  top: { id: number; text: string; logprob: number; prob: number }[];
}

/** Knobs a generation sampled with from token `from_token` on. */
export interface SamplingChange {
  from_token: number;
  params: Required<Omit<SamplingOptions, "logit_bias" | "stop" | "seed" | "max_completion_tokens">> & {
    logit_bias: [number, number][];
    stop: string[];
    stop_token_ids: number[];
    seed: number | null;
  };
}

export interface Generation {
  prompt_tokens: number[];
  tokens: number[];
  text: string;
  finish_reason: "stop" | "length" | "abort";
  reused_tokens: number;
  prefill_tokens: number;
  decoded_tokens: number;
  prefill_secs: number;
  decode_secs: number;
  /** The starting knobs, then each change made with setSampling while it ran. */
  sampling: SamplingChange[];
  /** What the backend did for the prompt and for the decoded tokens (counters), and the memory it holds. */
  prefill_work: WorkStats;
  decode_work: WorkStats;
  /** Speculative decoding: tokens drafted (by the draft model or prompt lookup), and those the model kept. */
  drafted_tokens: number;
  accepted_tokens: number;
}

/** One of a request's choices (`lastGeneration` after a request with `n` or `best_of`). */
export interface Choice extends Generation {
  index: number;
  /** The seed it ran with (null: fresh entropy). */
  seed: number | null;
  /** Mean raw log-probability of its tokens (0 when it has none). */
  mean_logprob: number;
}

/** Perplexity options of `engine.evaluate`. */
export interface EvaluateOptions {
  /** Tokens per chunk (llama-perplexity's `-c`; default 512, at most the engine's context). */
  contextSize?: number;
  /** Evaluate only the first chunks (llama-perplexity's `--chunks`). */
  maxChunks?: number;
  /** Each chunk as it ends. */
  onProgress?: (chunk: ChunkPerplexity) => void;
  /** Stops after the running chunk (the call then rejects with `aborted`). */
  signal?: AbortSignal;
}

export interface ChunkPerplexity {
  index: number;
  /** Of this chunk's scored tokens alone. */
  ppl: number;
  /** Of every chunk so far (llama-perplexity's `[k]X`). */
  cumulative_ppl: number;
  /** Chunks the evaluation runs. */
  of: number;
}

/** The outcome of `engine.evaluate`, as llama.cpp's llama-perplexity computes it. */
export interface Perplexity {
  ppl: number;
  ppl_stderr: number;
  /** The text's tokens, and those scored. */
  tokens: number;
  scored_tokens: number;
  context_size: number;
  chunks: ChunkPerplexity[];
  secs: number;
}

/** Work counters of a backend (0 on the CPU for the GPU-only ones) and the memory it holds. */
export interface WorkStats {
  steps: number;
  dispatches: number;
  submissions: number;
  read_back_bytes: number;
  /** Weight bytes the kernels read, counted from each launch's access pattern. */
  weight_read_bytes: number;
  weight_bytes: number;
  kv_bytes: number;
  /** Every buffer held on the GPU. */
  device_bytes: number;
}

/** A token as the reports show it. */
export interface TokenFact {
  id: number;
  /** Its vocabulary string. */
  text: string;
}

/** How the model expects its input and ends its output. */
export interface TemplateFacts {
  /**
   * The model has its own chat template. Without one it is a base model: `chat.completions`
   * refuses it (`invalid_argument`); use `completions.create`.
   */
  has_chat_template: boolean;
  /** Prompts start with the BOS token. */
  add_bos: boolean;
  bos: TokenFact | null;
  eos: TokenFact | null;
  /** The tokens that end a generation. */
  eog: TokenFact[];
}

/** An entry of the project's model catalog (src/model/catalog.json). */
export interface CatalogEntry {
  /** Short name: "smollm2-135m", "qwen2.5-coder-0.5b", ... */
  name: string;
  title: string;
  /** The file's name under the models folder. */
  file: string;
  sha256: string;
  size_bytes: number;
  license: string;
  architecture: string;
  quant: string;
  /** "chat" (has a chat template) or "completion" (a base model: raw text). */
  kind: "chat" | "completion" | string;
  parameters: string;
  n_layers: number;
  /** One position's K (and V) width in one layer: KV heads × head size. */
  kv_width: number;
  context_length: number;
}

/** A catalog entry as `listModels` finds it on the server. */
export interface CatalogModel extends CatalogEntry {
  /** Where the file is (under `baseUrl`). */
  url: string;
  /** The server has it (a HEAD request answered 2xx). */
  present: boolean;
  /** The server's content-length, when present. */
  served_bytes: number | null;
  /** The Cache API holds a copy. */
  cached: boolean;
  /** The catalog's default model. */
  default: boolean;
}

/** How the loaded file compares with the catalog: by file name and size (not the sha256). */
export interface CatalogMatch {
  /** The entry of the file's name (null when no entry has it). */
  entry: (CatalogEntry & { parts: { package: string; member: string }[] }) | null;
  /** The name and the size are the entry's. */
  matched: boolean;
  /** Why it did not match. */
  note: string | null;
}

/** The engine's estimate from a model's header (`estimateMemory(model)`, `info().estimate`). */
export interface ModelEstimate {
  backend: "gpu" | "cpu";
  weights_bytes: number;
  kv_cache_bytes: number;
  scratch_bytes: number;
  total_bytes: number;
  /** The largest single buffer it needs (against the adapter's maxBufferSize). */
  largest_buffer_bytes: number;
  context_size: number;
  fits: boolean;
  /** Why it does not fit (null when it does). */
  reason: string | null;
  /** CPU (wasm) memory the load needs at its peak. */
  cpu_peak_bytes: number;
}

export interface MemoryEstimate {
  /** About the file's size (the GPU and the CPU's quantized path keep the weights in their blocks). */
  weights_bytes: number;
  kv_cache_bytes: number;
  total_bytes: number;
  /** The context the KV cache was counted for (at most the model's). */
  context_size: number;
}

export interface EngineInfo {
  backend: "gpu" | "cpu";
  adapter: null | {
    name: string;
    device_type: string;
    backend: string;
    features: string[];
    limits: Record<string, number>;
    f16: boolean;
    /** Least and most subgroup size (meaningful where `features` has SUBGROUP). */
    subgroup_sizes: [number, number];
    /** The kernel shapes the device runs, and whether they were the adapter's (not asked for). */
    kernels: "software" | "workgroup" | "subgroup";
    kernels_chosen_for_adapter: boolean;
  };
  config: Record<string, unknown>;
  context_size: number;
  /** End-of-generation token ids. */
  eog_ids: number[];
  template: TemplateFacts;
  /** The model's own chat template (Jinja source); null for a base model. */
  chat_template: string | null;
  catalog: CatalogMatch;
  cached_tokens: number;
  weight_bytes: number;
  kv_cache_bytes: number;
  /** Every buffer the engine holds on the GPU (0 on the CPU backend). */
  gpu_memory_bytes: number;
  /** The wasm linear memory of the engine's thread (it only grows: the peak so far). */
  wasm_memory_bytes: number;
  /** The fit check's estimate that this load went by. */
  estimate: ModelEstimate;
  /** The draft model attached (`draftModel`), or null. */
  draft: { backend: "gpu" | "cpu"; config: Record<string, unknown>; context_size: number } | null;
}

/** Usage of a raw completion. */
export type CompletionUsage = Omit<Usage, "dropped_messages">;

/** OpenAI's legacy completion logprobs, plus `content`: the chat-shaped entries, with `prob`. */
export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: number[];
  /** Each step's rivals, token text → log-probability. */
  top_logprobs: Record<string, number>[];
  /** Where each token's text starts in the completion's tokens' text. */
  text_offset: number[];
  content: LogprobEntry[];
}

export interface CompletionRequest extends SamplingOptions, ChoiceOptions {
  /** Text, one text in an array, or token ids. */
  prompt: string | [string] | number[];
  stream?: boolean;
  signal?: AbortSignal;
  /** Report each token's log-probability and this many rivals (0-20). */
  logprobs?: number | null;
}

export interface Completion {
  id: string;
  object: "text_completion";
  created: number;
  model: string;
  choices: { index: number; text: string; finish_reason: FinishReason; logprobs: CompletionLogprobs | null }[];
  usage: CompletionUsage;
}

export interface CompletionChunk {
  id: string;
  object: "text_completion";
  created: number;
  model: string;
  choices: { index: number; text: string; finish_reason: FinishReason | null; logprobs: CompletionLogprobs | null }[];
  /** On the last chunk. */
  usage?: CompletionUsage;
}

export interface LlmEngine {
  chat: {
    completions: {
      create(request: ChatCompletionRequest & { stream?: false }): Promise<ChatCompletion>;
      create(request: ChatCompletionRequest & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
    };
  };
  /** OpenAI-shaped raw completion (what a base model does): continue `prompt`. */
  completions: {
    create(request: CompletionRequest & { stream?: false }): Promise<Completion>;
    create(request: CompletionRequest & { stream: true }): Promise<AsyncIterable<CompletionChunk>>;
  };
  /** Raw completion: an async iterable of pieces; `result` is set when it ends. */
  generate(
    prompt: string | number[],
    options?: SamplingOptions & { signal?: AbortSignal },
  ): AsyncIterable<TokenPiece> & { result: Generation | null };
  /**
   * The engine's record of the last finished generation (null before the first); after a
   * request with `n` or `best_of`, its first choice.
   */
  readonly lastGeneration: Generation | Choice | null;
  /**
   * The perplexity of `text`, as llama.cpp's llama-perplexity computes it (chunks of
   * `contextSize` tokens, the second half of each scored; the text needs two chunks' worth).
   */
  evaluate(text: string, options?: EvaluateOptions): Promise<Perplexity>;
  /** Knobs for later calls, and for a running generation from its next token. */
  setSampling(partial: SamplingOptions): Promise<void>;
  resetChat(): Promise<void>;
  info(): Promise<EngineInfo>;
  /** Load the same model again, same options, on a fresh GPU device (after `device_lost`). */
  reload(): Promise<EngineInfo>;
  unload(): Promise<void>;
}

export function createEngine(options: EngineOptions): Promise<LlmEngine>;

/** A model kept by `createEngine({ model: url })`, in OPFS or the Cache API. */
export interface CachedModel {
  url: string;
  /** The bytes stored (of a partial download: so far). */
  bytes: number | null;
  /** The file's length. */
  totalBytes: number | null;
  /** False for a partial download, which the next load of its URL resumes. */
  complete: boolean;
  store: "opfs" | "cache";
}

/**
 * The catalog's models with their URLs under `baseUrl` (default "/models/", relative to the
 * page) and whether the server has each (a HEAD request) and the cache holds it.
 */
export function listModels(options?: { baseUrl?: string | URL }): Promise<CatalogModel[]>;

/**
 * Memory that loading `entry` with a `contextSize`-position KV cache needs (default
 * min(model context, 4096)): weights ≈ the file's size, plus the cache (f32; f16 with `f16`).
 */
export function estimateMemory(
  entry: Pick<CatalogEntry, "size_bytes" | "n_layers" | "kv_width" | "context_length">,
  contextSize?: number,
  options?: { f16?: boolean },
): MemoryEstimate;
/**
 * The engine's own estimate for `model` from its header (a Range request for the first bytes,
 * or a stored copy) and this browser's adapter limits; `fits` false says why in `reason`.
 */
export function estimateMemory(
  model: ModelSource,
  options?: LimitOptions & Pick<EngineOptions, "backend" | "contextSize" | "exactCpu" | "cache">,
): Promise<ModelEstimate>;

/** The stored models of both stores, complete or partial. */
export function listCachedModels(): Promise<CachedModel[]>;
/** Forget one stored model (a URL, relative to the page) in both stores; resolves true when there was one. */
export function deleteCachedModel(url: string): Promise<boolean>;
/** Forget every stored model in both stores; resolves true when there were any. */
export function clearModelCache(): Promise<boolean>;
