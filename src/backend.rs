//! What the engine needs from a forward-pass implementation: the CPU reference and the GPU
//! backend both provide it. Everything else (tokenizer, template, sampler, engine) is shared.

use std::future::Future;
use std::pin::Pin;

use crate::error::{Error, Result};
use crate::sampler::{Logits, LogitsRequest};

/// A step in flight: the GPU answers asynchronously (the browser cannot block on it).
pub type StepFuture<'a> = Pin<Box<dyn Future<Output = Result<Logits>> + 'a>>;

/// A step in flight that answers with every token's logits.
pub type AllFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<Vec<f32>>>> + 'a>>;

pub trait Backend {
    /// "cpu" or "gpu".
    fn name(&self) -> &'static str;
    /// How many positions the KV cache holds.
    fn capacity(&self) -> usize;
    /// How many positions the KV cache holds now.
    fn cached(&self) -> usize;
    /// Forget the cached positions from `len` on (to reuse a common prefix).
    fn truncate(&mut self, len: usize);
    /// Run `tokens` at the next positions, append their K/V to the cache, and return the last
    /// one's logits: the whole vector, or the shortlist `want` asks for (a backend may always
    /// answer with the whole vector). Fails with `ContextOverflow` if they do not fit; on any
    /// error the cache is as it was.
    fn forward<'a>(&'a mut self, tokens: &'a [u32], want: &'a LogitsRequest) -> StepFuture<'a>;
    /// [`Backend::forward`], returning the whole logits vector of every token of `tokens`
    /// (the logits at token i predict token i + 1): one pass over the weights per
    /// [`crate::gpu::ALL_ROWS`] tokens on the GPU, per prefill chunk on the CPU. Speculative
    /// verification and perplexity use it; the cache is as after `forward`.
    fn forward_all<'a>(&'a mut self, tokens: &'a [u32]) -> AllFuture<'a>;
    /// Work and memory counters.
    fn stats(&self) -> BackendStats;

    /// [`Backend::forward`], waiting for it (native only).
    #[cfg(not(target_arch = "wasm32"))]
    fn forward_blocking(&mut self, tokens: &[u32], want: &LogitsRequest) -> Result<Logits> {
        pollster::block_on(self.forward(tokens, want))
    }

    /// [`Backend::forward_all`], waiting for it (native only).
    #[cfg(not(target_arch = "wasm32"))]
    fn forward_all_blocking(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
        pollster::block_on(self.forward_all(tokens))
    }

    /// [`Backend::forward_blocking`] asking for the whole logits vector.
    #[cfg(not(target_arch = "wasm32"))]
    fn forward_full(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        self.forward_blocking(tokens, &LogitsRequest::Full)?
            .into_full()
            .ok_or_else(|| Error::InvalidArgument("the backend answered a full request with a shortlist".into()))
    }
}

/// What every backend checks before a step: at least one token, and room for all of them.
pub fn check_step(tokens: &[u32], cached: usize, capacity: usize) -> Result<()> {
    if tokens.is_empty() {
        return Err(Error::InvalidArgument("forward needs at least one token".into()));
    }
    let needed = cached + tokens.len();
    if needed > capacity {
        return Err(Error::ContextOverflow { needed, capacity });
    }
    Ok(())
}

/// Counters since the model was loaded, and memory held now.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct BackendStats {
    /// Forward steps run (prefill chunks and decode tokens).
    pub steps: u64,
    /// Kernel dispatches (0 on the CPU).
    pub dispatches: u64,
    /// Queue submissions (0 on the CPU).
    pub submissions: u64,
    /// Bytes copied from the GPU to the CPU (0 on the CPU).
    pub read_back_bytes: u64,
    /// Bytes of weights the kernels read, counted from each launch's access pattern (0 on the
    /// CPU): a matrix × vector launch reads its matrix once, a matrix × matrix launch once per
    /// tile of 32 tokens, the embedding one row per token.
    pub weight_read_bytes: u64,
    /// Bytes the weights take in the backend's memory.
    pub weight_bytes: u64,
    /// Bytes the KV cache takes (the GPU allocates the whole capacity; the CPU's grows).
    pub kv_bytes: u64,
    /// Every buffer the backend holds on the GPU: weights, KV cache, activations, tables,
    /// parameters and read-back (0 on the CPU).
    pub device_bytes: u64,
}

impl BackendStats {
    /// The work done since `earlier` (the memory fields stay as they are now).
    pub fn since(&self, earlier: &BackendStats) -> BackendStats {
        BackendStats {
            steps: self.steps - earlier.steps,
            dispatches: self.dispatches - earlier.dispatches,
            submissions: self.submissions - earlier.submissions,
            read_back_bytes: self.read_back_bytes - earlier.read_back_bytes,
            weight_read_bytes: self.weight_read_bytes - earlier.weight_read_bytes,
            ..*self
        }
    }
}
