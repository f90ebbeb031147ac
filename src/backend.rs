//! What the engine needs from a forward-pass implementation. The CPU reference implements it;
//! the GPU backend will too. Everything else (tokenizer, template, sampler, engine) is shared.

use crate::error::Result;

pub trait Backend {
    /// "cpu" or "gpu".
    fn name(&self) -> &'static str;
    /// How many positions the KV cache holds.
    fn capacity(&self) -> usize;
    /// How many positions the KV cache holds now.
    fn cached(&self) -> usize;
    /// Forget the cached positions from `len` on (to reuse a common prefix).
    fn truncate(&mut self, len: usize);
    /// Run `tokens` at the next positions, append their K/V to the cache, and return the logits
    /// of the last one. Fails with `ContextOverflow` if they do not fit.
    fn forward(&mut self, tokens: &[u32]) -> Result<Vec<f32>>;
}
