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
  /** "download" (network), "cache" (Cache API), "read" (File/Blob), then "load" (parsing, upload). */
  stage: "download" | "cache" | "read" | "load";
  loadedBytes: number;
  totalBytes: number;
}

export interface EngineOptions {
  model: string | URL | File | Blob | ArrayBuffer | Uint8Array;
  onProgress?: (p: Progress) => void;
  /** "auto" (default): the GPU when WebGPU has a hardware adapter, else the CPU in wasm. */
  backend?: "auto" | "gpu" | "cpu";
  /** KV-cache capacity in tokens (default min(model context, 4096)). */
  contextSize?: number;
  /** Run in a dedicated Web Worker (default true). */
  worker?: boolean;
  /** Keep a downloaded model in the Cache API, keyed by URL (default true). */
  cache?: boolean;
  /** Expected sha256 of the file, hex; a mismatch is `bad_model`. */
  sha256?: string;
}

/** Sampling knobs, applied in the order documented in src/sampler.rs. */
export interface SamplingOptions {
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
}

export interface ChatMessage {
  role: "system" | "user" | "assistant" | string;
  content: string;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** Prompt tokens served from the KV cache. */
  cached_tokens: number;
}

export type FinishReason = "stop" | "length";

export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: { index: 0; message: { role: "assistant"; content: string }; finish_reason: FinishReason; logprobs: null }[];
  usage: Usage;
}

export interface ChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  choices: { index: 0; delta: { role?: "assistant"; content?: string }; finish_reason: FinishReason | null; logprobs: null }[];
  /** On the last chunk. */
  usage?: Usage;
}

export interface ChatCompletionRequest extends SamplingOptions {
  messages: ChatMessage[];
  stream?: boolean;
  signal?: AbortSignal;
}

export interface TokenPiece {
  /** Text that can be shown now (UTF-8 safe; text that might start a stop string is held back). */
  text: string;
  tokenId: number | null;
  /** Log-probability under the raw model distribution. */
  logprob: number | null;
  /** Probability in the final sampling distribution. */
  prob: number | null;
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
  };
  config: Record<string, unknown>;
  context_size: number;
  cached_tokens: number;
  weight_bytes: number;
  kv_cache_bytes: number;
}

export interface LlmEngine {
  chat: {
    completions: {
      create(request: ChatCompletionRequest & { stream?: false }): Promise<ChatCompletion>;
      create(request: ChatCompletionRequest & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
    };
  };
  /** Raw completion: an async iterable of pieces; `result` is set when it ends. */
  generate(
    prompt: string | number[],
    options?: SamplingOptions & { signal?: AbortSignal },
  ): AsyncIterable<TokenPiece> & { result: Generation | null };
  /** Knobs for later calls, and for a running generation from its next token. */
  setSampling(partial: SamplingOptions): Promise<void>;
  resetChat(): Promise<void>;
  info(): Promise<EngineInfo>;
  unload(): Promise<void>;
}

export function createEngine(options: EngineOptions): Promise<LlmEngine>;
