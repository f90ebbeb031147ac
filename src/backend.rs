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
    /// Run `tokens[i]` at `places[i]` (at most [`MAX_PLACED`] of them, slots distinct) and
    /// return every token's whole logits: one pass over the weights for tokens of different
    /// sequences (n choices decoded as one batch, each in its own region of the cache). The
    /// cache then counts `max(cached, last slot + 1)` positions; on error it is as it was.
    fn forward_placed<'a>(&'a mut self, tokens: &'a [u32], places: &'a [Place]) -> AllFuture<'a>;
    /// Work and memory counters.
    fn stats(&self) -> BackendStats;

    /// The GPU model behind this backend, for what only it has (`bench --kernels`); `None` on
    /// the CPU.
    fn gpu_model(&mut self) -> Option<&mut crate::gpu::GpuModel> {
        None
    }

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

/// The most tokens one [`Backend::forward_placed`] step runs (one pass on the GPU's
/// every-token output head).
pub const MAX_PLACED: usize = 16;

/// Where a token of a step sits in the KV cache, and what it sees. Its K/V go to cache slot
/// `slot`. It attends to slots `0 .. shared` (positions `0 .. shared`, a prompt several
/// sequences share) and then to its own run of slots `own ..= slot`, which continues that
/// prefix: slot `own` is position `shared`, so the token is at position
/// `shared + slot - own` ([`Place::pos`]). A sliding window counts positions. A plain step
/// is `Place::linear`: nothing shared, its run from slot 0, so slot = position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    pub slot: usize,
    pub shared: usize,
    pub own: usize,
}

impl Place {
    /// Position `pos` of the one sequence the cache holds from slot 0.
    pub fn linear(pos: usize) -> Place {
        Place { slot: pos, shared: 0, own: 0 }
    }

    /// Slot `slot` of a sequence that continues the cache's first `shared` positions from
    /// slot `own` on.
    pub fn branch(shared: usize, own: usize, slot: usize) -> Place {
        Place { slot, shared, own }
    }

    /// The token's position (RoPE's, and the window's).
    pub fn pos(&self) -> usize {
        self.shared + self.slot - self.own
    }

    /// The cache slots this token attends to, in position order: the shared part, then its
    /// own run. `window`: it sees only the last `window` positions, itself included.
    pub fn visible(&self, window: Option<usize>) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let first = window.map_or(0, |w| (self.pos() + 1).saturating_sub(w));
        // Own slot j is position j - own + shared.
        let own_first = self.own.max((first + self.own).saturating_sub(self.shared));
        (first.min(self.shared)..self.shared, own_first..self.slot + 1)
    }
}

/// What every backend checks before a placed step: one place per token, at most
/// [`MAX_PLACED`], each consistent (its run after the shared part, inside the cache) and no
/// two writing the same slot.
pub fn check_places(tokens: &[u32], places: &[Place], capacity: usize) -> Result<()> {
    if tokens.is_empty() || tokens.len() != places.len() || tokens.len() > MAX_PLACED {
        return Err(Error::InvalidArgument(format!(
            "a placed step needs 1 to {MAX_PLACED} tokens with one place each, got {} and {}",
            tokens.len(),
            places.len()
        )));
    }
    for (i, p) in places.iter().enumerate() {
        let consistent = p.shared <= p.own && p.own <= p.slot;
        if !consistent || places[..i].iter().any(|q| q.slot == p.slot) {
            return Err(Error::InvalidArgument(format!("inconsistent or repeated place {p:?}")));
        }
        if p.slot >= capacity {
            return Err(Error::ContextOverflow { needed: p.slot + 1, capacity });
        }
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
    /// CPU): a matrix × vector launch reads its matrix once per pass (one token, or four), a
    /// matrix × matrix launch once per tile of 32 tokens, the embedding one row per token.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_place_sees_the_shared_prefix_then_its_own_run_within_the_window() {
        assert_eq!(Place::linear(10).visible(None), (0..0, 0..11));
        assert_eq!(Place::linear(10).visible(Some(4)), (0..0, 7..11));
        // Slot 23 of a run from slot 20 after 8 shared positions: position 11.
        let p = Place::branch(8, 20, 23);
        assert_eq!(p.pos(), 11);
        assert_eq!(p.visible(None), (0..8, 20..24));
        assert_eq!(p.visible(Some(6)), (6..8, 20..24)); // positions 6..=11
        assert_eq!(p.visible(Some(3)), (8..8, 21..24)); // positions 9..=11
    }

    #[test]
    fn places_that_make_no_sense_are_refused() {
        let ok = [Place::branch(4, 4, 6), Place::branch(4, 10, 10)];
        assert!(check_places(&[1, 2], &ok, 16).is_ok());
        assert!(check_places(&[1], &ok, 16).is_err(), "a place per token");
        assert!(check_places(&[1, 2], &[ok[0], ok[0]], 16).is_err(), "one slot twice");
        let before_shared = Place { own: 3, ..ok[0] };
        assert!(check_places(&[1], &[before_shared], 16).is_err(), "a run that starts inside the prefix");
        let overflow = check_places(&[1], &[Place::branch(4, 10, 16)], 16).unwrap_err();
        assert_eq!(overflow.code(), "context_overflow");
        assert!(check_places(&[1; 17], &[Place::linear(0); 17], 64).is_err(), "at most 16");
    }
}
