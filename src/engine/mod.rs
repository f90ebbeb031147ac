//! The engine: a loaded model (config, tokenizer, chat template, backend) and the generation loop.
//!
//! One generation: prompt ids → reuse the longest prefix already in the KV cache → prefill the
//! rest → decode loop (sample, detokenize, stream, feed back) → stop on an end-of-generation token,
//! a stop string, `max_tokens`, a full context, or the caller's request.

use std::cell::RefCell;
use std::rc::Rc;

use crate::backend::{Backend, BackendStats};
use crate::chat::{ChatTemplate, Message};
use crate::constraint::Constraints;
use crate::error::{Error, Result};
use crate::gpu::{AdapterReport, GpuOptions};
use crate::load::fit::MemoryEstimate;
use crate::model::Config;
use crate::sampler::{Alternative, Logits, LogitsRequest, Sampler, SamplingParams};
use crate::tokenizer::Tokenizer;

mod chat;
mod choices;
mod evaluate;
mod generate;
mod speculative;

pub use chat::Chat;
pub use choices::{Choice, MAX_CHOICES};
pub use evaluate::{ChunkPerplexity, EvaluateOptions, Perplexity};
use generate::{run, run_all};

/// Which forward-pass implementation runs the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The GPU when the adapter is real hardware, else the CPU: on a software adapter
    /// (lavapipe, SwiftShader) the CPU reference is several times faster than the kernels.
    #[default]
    Auto,
    Cpu,
    Gpu,
}

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct EngineOptions {
    pub backend: BackendKind,
    /// KV-cache capacity in positions; default min(model context, 4096).
    pub context_size: Option<usize>,
    /// On the CPU backend, compute in f32 on dequantized weights (the exact reference: about 5×
    /// the memory, and slower) instead of llama.cpp's 8-bit integer products on the quantized
    /// blocks (the default, which moves logits as much as llama.cpp's own kernels do).
    pub exact_cpu: bool,
    /// GPU set-up (f16 use, binding size cap).
    pub gpu: GpuOptions,
    /// A budget in bytes for the backend's memory (GPU memory, or CPU memory on the CPU): a model
    /// that needs more is refused at its header with `out_of_memory`. `None`: the device's own
    /// limits only (wasm32's 4 GiB on the CPU in a browser).
    pub memory_limit_bytes: Option<u64>,
    /// A HF `tokenizer.json` to use instead of the GGUF vocabulary.
    #[serde(skip)]
    pub tokenizer_json: Option<Vec<u8>>,
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// An end-of-generation token, a stop token or a stop string.
    Stop,
    /// `max_tokens` reached, or the context is full.
    Length,
    /// The caller asked to stop.
    Abort,
}

/// A piece of streamed output.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TokenEvent<'a> {
    /// Text that can be shown now; may be empty (a partial UTF-8 character, or text held back
    /// because it could start a stop string) and may include text held back earlier.
    pub text: &'a str,
    /// The token that produced this piece; `None` for the final flush of held-back text.
    pub token: Option<TokenInfo>,
}

/// A generated token and how likely it was.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TokenInfo {
    #[serde(flatten)]
    pub token: TopToken,
    /// The step's `top_logprobs` most likely tokens, most likely first (empty unless asked for).
    pub top: Vec<TopToken>,
}

/// A token with how likely it was (OpenAI's `logprobs` entry, plus its final probability).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TopToken {
    pub id: u32,
    /// How the token reads on its own ([`Tokenizer::piece`]).
    pub text: String,
    /// The raw bytes it stands for (a piece of a UTF-8 character is not text on its own).
    pub bytes: Vec<u8>,
    /// Log-probability under the model's raw distribution.
    pub logprob: f32,
    /// Probability after every knob; 0 when a knob cut it.
    pub prob: f32,
}

/// The knobs a generation sampled with from token `from_token` on (see [`Retune`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SamplingChange {
    /// Index of the first sampled token these knobs applied to (0 for the knobs it started with;
    /// equal to the number of generated tokens when they only decided the end of generation).
    pub from_token: usize,
    pub params: SamplingParams,
}

/// The outcome of one generation.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Generation {
    pub prompt_tokens: Vec<u32>,
    /// Generated ids, without the end-of-generation or stop token that ended them.
    pub tokens: Vec<u32>,
    /// Generated text, without any stop string.
    pub text: String,
    pub finish_reason: FinishReason,
    /// Prompt tokens whose K/V were already cached and were not run again.
    pub reused_tokens: usize,
    /// Prompt tokens run through the model.
    pub prefill_tokens: usize,
    /// Generated tokens fed back through the model (the last one usually is not).
    pub decoded_tokens: usize,
    pub prefill_secs: f64,
    pub decode_secs: f64,
    /// The backend's work for the prompt and for the generated tokens.
    pub prefill_work: BackendStats,
    pub decode_work: BackendStats,
    /// The knobs it started with, then each change made while it ran.
    pub sampling: Vec<SamplingChange>,
    /// Time spent computing the grammar's token masks (0 without `grammar`).
    pub mask_secs: f64,
    /// Speculative decoding: tokens drafted (by the draft model or prompt lookup), and how
    /// many of them the target accepted (0 and 0 without speculation).
    pub drafted_tokens: usize,
    pub accepted_tokens: usize,
}

impl Generation {
    pub fn prefill_tokens_per_s(&self) -> f64 {
        rate(self.prefill_tokens, self.prefill_secs)
    }

    /// Tokens fed back through the model per second during decoding.
    pub fn decode_tokens_per_s(&self) -> f64 {
        rate(self.decoded_tokens, self.decode_secs)
    }
}

fn rate(n: usize, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// Sampling knobs to apply to a running generation from its next step on (set from its
/// callback, or in the browser from another task while the engine awaits the GPU).
#[derive(Clone, Debug, Default)]
pub struct Retune(Rc<RefCell<Option<SamplingParams>>>);

impl Retune {
    /// Validate `params` and queue them for the next token; a later call replaces an earlier
    /// one. The stop conditions (`max_tokens`, `stop`, `stop_token_ids`) of a generation that is
    /// already running stay as they were.
    pub fn set(&self, params: SamplingParams) -> Result<()> {
        params.validate()?;
        *self.0.borrow_mut() = Some(params);
        Ok(())
    }

    fn take(&self) -> Option<SamplingParams> {
        self.0.borrow_mut().take()
    }
}

/// Await `pause`, if any: false when the caller asked to stop.
async fn go_on(pause: &Option<Pause>) -> bool {
    match pause {
        Some(pause) => pause().await,
        None => true,
    }
}

/// Prompt tokens a prefill step runs when the engine pauses between steps (an abort waits at
/// most this long during prefill).
const PREFILL_PIECE: usize = 64;

/// Awaited between tokens: lets the host run other tasks (in a browser worker, the messages
/// that abort a generation or change its knobs, which the CPU backend would otherwise never
/// give a turn). Resolves to `false` to stop the generation (an abort that arrived meanwhile).
pub type Pause = Box<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = bool>>>>;

pub struct Engine {
    config: Config,
    tokenizer: Tokenizer,
    /// `None` for a base model, whose file has no template (unless one is set explicitly).
    template: Option<ChatTemplate>,
    backend: Box<dyn Backend>,
    adapter: Option<AdapterReport>,
    estimate: MemoryEstimate,
    /// The tokens whose K/V are in the backend's cache, in order.
    context: Vec<u32>,
    retune: Retune,
    pause: Option<Pause>,
    /// The vocabulary as the grammar engine sees it, built by the first constrained generation.
    constraints: Option<Rc<Constraints>>,
    /// The model that drafts for speculative decoding ([`Engine::set_draft`]).
    draft: Option<Box<Engine>>,
}

impl Engine {
    /// [`Engine::load_async`], waiting for it (native only; the browser cannot block).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(bytes: &[u8], options: &EngineOptions) -> Result<Engine> {
        pollster::block_on(Engine::load_async(bytes, options))
    }

    /// Load a model whose whole file is in memory, through the same streamed load as a download
    /// ([`crate::load::Loader`]): the bytes are placed on the backend piece by piece.
    pub async fn load_async(bytes: &[u8], options: &EngineOptions) -> Result<Engine> {
        let mut loader = crate::load::Loader::new(options.clone(), vec![bytes.len() as u64])?;
        for piece in bytes.chunks(16 << 20) {
            loader.push(piece).await?;
        }
        loader.finish().await
    }

    /// Load the model at `path` (a whole file, or a split model's first part), memory-mapped
    /// rather than read (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_file(path: &std::path::Path, options: &EngineOptions) -> Result<Engine> {
        crate::load::file::load(path, options)
    }

    /// An engine over a loaded backend (what [`crate::load::Loader::finish`] builds).
    pub(crate) fn from_parts(
        config: Config,
        tokenizer: Tokenizer,
        template: Option<ChatTemplate>,
        backend: Box<dyn Backend>,
        adapter: Option<AdapterReport>,
        estimate: MemoryEstimate,
    ) -> Engine {
        Engine {
            config,
            tokenizer,
            template,
            backend,
            adapter,
            estimate,
            context: Vec::new(),
            retune: Retune::default(),
            pause: None,
            constraints: None,
            draft: None,
        }
    }

    /// What the header said the model would need, as it was checked at load.
    pub fn estimate(&self) -> &MemoryEstimate {
        &self.estimate
    }

    /// The GPU adapter the model runs on (`None` on the CPU backend).
    pub fn adapter(&self) -> Option<&AdapterReport> {
        self.adapter.as_ref()
    }

    /// Work and memory counters of the backend.
    pub fn stats(&self) -> BackendStats {
        self.backend.stats()
    }

    /// The GPU model, when the engine runs on the GPU (`bench --kernels` times its kernels).
    pub fn gpu_model(&mut self) -> Option<&mut crate::gpu::GpuModel> {
        self.backend.gpu_model()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The chat template [`Engine::encode_chat`] renders with: the model's own, or the one set
    /// with [`Engine::set_chat_template`]; `None` for a base model.
    pub fn template(&self) -> Option<&ChatTemplate> {
        self.template.as_ref()
    }

    /// Whether conversations can be rendered: the file has a chat template (or one was set). A
    /// base model has none; give it raw text ([`Engine::encode_prompt`]) instead.
    pub fn has_chat_template(&self) -> bool {
        self.template.is_some()
    }

    /// Render conversations with `template`, such as [`ChatTemplate::chatml`] for a model without
    /// one of its own (an explicit choice: nothing falls back to it by itself).
    pub fn set_chat_template(&mut self, template: Option<ChatTemplate>) {
        self.template = template;
    }

    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// KV-cache capacity in positions.
    pub fn context_size(&self) -> usize {
        self.backend.capacity()
    }

    /// Tokens currently held in the KV cache.
    pub fn cached_tokens(&self) -> &[u32] {
        &self.context
    }

    /// A handle that changes the sampling knobs of the running (or next) generation from its
    /// next token on.
    pub fn retune(&self) -> Retune {
        self.retune.clone()
    }

    /// Await `pause` between tokens (see [`Pause`]).
    pub fn set_pause(&mut self, pause: Option<Pause>) {
        self.pause = pause;
    }

    /// The grammar engine's view of the vocabulary (built once, on first use).
    pub(crate) fn constraints(&mut self) -> Result<Rc<Constraints>> {
        if self.constraints.is_none() {
            self.constraints = Some(Rc::new(Constraints::new(&self.tokenizer)?));
        }
        Ok(self.constraints.clone().expect("just built"))
    }

    /// Await the pause, if any: false when the caller asked to stop.
    async fn go_on(&self) -> bool {
        go_on(&self.pause).await
    }

    /// Forget the KV cache.
    pub fn reset(&mut self) {
        self.backend.truncate(0);
        self.context.clear();
    }

    /// Token ids of raw text (with the BOS token when the model wants one). Control-token text is
    /// plain text here.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        if self.tokenizer.add_bos() {
            ids.extend(self.tokenizer.bos_id());
        }
        ids.extend(self.tokenizer.encode(text, false)?);
        Ok(ids)
    }

    /// Token ids of a conversation rendered with the model's chat template, ready for the
    /// assistant's answer. Control tokens come only from the template: a message that spells
    /// one gets it as plain text ([`ChatTemplate::encode`]).
    pub fn encode_chat(&self, messages: &[Message]) -> Result<Vec<u32>> {
        self.encode_chat_with_tools(messages, None)
    }

    /// [`Engine::encode_chat`] with the tools the model may call (JSON schemas; see
    /// [`ChatTemplate::render_with_tools`]).
    pub fn encode_chat_with_tools(
        &self,
        messages: &[Message],
        tools: Option<&[serde_json::Value]>,
    ) -> Result<Vec<u32>> {
        let template = self.template.as_ref().ok_or_else(|| {
            Error::InvalidArgument(
                "the model has no chat template (a base model): give it raw text, or set a template".into(),
            )
        })?;
        if let Some(tools) = tools.filter(|t| !t.is_empty()) {
            if !template.supports_tools() {
                return Err(Error::InvalidArgument(
                    "tools: this model's chat template has no tools support (it never reads `tools`)".into(),
                ));
            }
            crate::chat::tools::validate(tools)?;
        }
        let mut ids = template.encode_with_tools(&self.tokenizer, messages, tools, true)?;
        // Templates usually write the BOS text themselves; add it only when they did not.
        if let (true, Some(bos)) = (self.tokenizer.add_bos(), self.tokenizer.bos_id()) {
            if ids.first() != Some(&bos) {
                ids.insert(0, bos);
            }
        }
        Ok(ids)
    }

    /// [`Engine::encode_chat`] for a conversation that may not fit: drops the oldest turns (a
    /// user message and the replies after it) until the prompt leaves `reserve` positions of the
    /// context for the answer. The leading system messages and the last turn always stay; if
    /// they alone do not fit the context, `context_overflow`. Returns the ids and how many
    /// messages were dropped.
    pub fn encode_chat_fitting(&self, messages: &[Message], reserve: usize) -> Result<(Vec<u32>, usize)> {
        let capacity = self.context_size();
        let budget = capacity.saturating_sub(reserve);
        let system = messages.iter().take_while(|m| m.role == "system").count();
        // Where the kept turns may start: everything, or at a later user message.
        let starts: Vec<usize> = std::iter::once(system)
            .chain((system + 1..messages.len()).filter(|&i| messages[i].role == "user"))
            .collect();
        let encode = |first: usize| -> Result<Vec<u32>> {
            let kept: Vec<Message> = messages[..system].iter().chain(&messages[first..]).cloned().collect();
            self.encode_chat(&kept)
        };
        // Fewer turns never make a longer prompt, so the first start that fits is found by
        // halving: O(log turns) renders, not one per dropped turn.
        let (mut lo, mut hi) = (0, starts.len() - 1);
        let mut fitting = None;
        while lo <= hi {
            let mid = (lo + hi) / 2;
            let ids = encode(starts[mid])?;
            if ids.len() <= budget {
                fitting = Some((ids, starts[mid] - system));
                match mid {
                    0 => break,
                    _ => hi = mid - 1,
                }
            } else {
                lo = mid + 1;
            }
        }
        if let Some(found) = fitting {
            return Ok(found);
        }
        // Not even the last turn leaves the reserve: it may still fit the context.
        let last = *starts.last().expect("at least the first start");
        let ids = encode(last)?;
        match ids.len() <= capacity {
            true => Ok((ids, last - system)),
            false => Err(Error::ContextOverflow { needed: ids.len(), capacity }),
        }
    }
}
