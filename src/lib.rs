//! webgpu-llm: run Llama-family GGUF language models in the browser (WebGPU or CPU) and natively.
//!
//! Where things live:
//! - `gguf`      — the GGUF file reader (metadata, tensor table, zero-copy tensor views; a header
//!   from a file's first bytes)
//! - `load`      — a model loaded as a stream (network, cache, file, split parts): fit check at the
//!   header, then each byte placed on the backend as it arrives
//! - `quant`     — GGML block formats and their CPU dequantization
//! - `model`     — hyper-parameters (`Config`) and CPU weights (`Weights`) of the Llama family
//! - `tokenizer` — text ↔ token ids (HF `tokenizers`)
//! - `chat`      — the chat template (minijinja), rendered under size limits (`chat/limits.rs`)
//! - `cpu`       — the f32 reference forward pass with its KV cache: the oracle for every kernel
//! - `gpu`       — the WebGPU forward pass: WGSL kernels over quantized weights, KV cache on the GPU
//! - `sampler`   — `SamplingParams` and the `Sampler` (temperature, top-k/p, min-p, penalties, seed)
//! - `constraint` — structured output: JSON schemas and Lark grammars as a token mask (llguidance)
//! - `engine`    — `Engine`: prompt → prefill → decode loop → streamed text, with chat sessions
//! - `error`     — the one `Error` type, with stable codes
//! - `facts`     — what a loaded model is: its catalog entry, its template and end-of-generation tokens
//! - `wasm`      — the JavaScript boundary (wasm32 only)

pub mod backend;
pub mod chat;
pub mod constraint;
pub mod cpu;
pub mod engine;
pub mod error;
pub mod facts;
pub mod gguf;
pub mod gpu;
pub mod load;
pub mod model;
pub mod quant;
pub mod sampler;
pub mod tokenizer;
#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use error::{Error, Result};
