//! n choices and best-of-N (OpenAI's `n` and `best_of`): several continuations of one prompt.
//!
//! Choice i is seeded with `seed + i` (wrapping), so each choice equals the same request run
//! alone with n = 1 and that seed; without a seed every choice draws fresh entropy. The choices
//! run one after another on the one KV cache: the prompt's prefill is shared (each later choice
//! reuses the cached prompt and runs only its last token), but decoding is not batched: each
//! choice's tokens take their own passes over the weights.
//!
//! `best_of` generates that many and keeps the `n` with the highest mean log-probability of
//! their tokens (the model's raw log-softmax), as OpenAI's completions API defined it.

use super::*;

/// The most choices (and `best_of`) a request may ask for.
pub const MAX_CHOICES: usize = 16;

/// One of a request's choices.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Choice {
    /// Its place among the choices returned (0-based; with `best_of`, by mean log-probability).
    pub index: usize,
    /// The seed it ran with (`None`: entropy).
    pub seed: Option<u64>,
    /// Mean raw log-probability of its tokens (0 when it has none).
    pub mean_logprob: f64,
    #[serde(flatten)]
    pub generation: Generation,
}

impl Engine {
    /// [`Engine::generate_choices_async`], waiting for it (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn generate_choices(
        &mut self,
        prompt: &[u32],
        params: &SamplingParams,
        n: usize,
        best_of: Option<usize>,
        on_token: &mut dyn FnMut(usize, &TokenEvent) -> bool,
    ) -> Result<Vec<Choice>> {
        pollster::block_on(self.generate_choices_async(prompt, params, n, best_of, on_token))
    }

    /// `n` continuations of `prompt` (see the module documentation). Tokens stream to
    /// `on_token` with their choice's index, only when `best_of` does not exceed `n` (the best
    /// are known only at the end); returning `false` stops that choice.
    pub async fn generate_choices_async(
        &mut self,
        prompt: &[u32],
        params: &SamplingParams,
        n: usize,
        best_of: Option<usize>,
        on_token: &mut dyn FnMut(usize, &TokenEvent) -> bool,
    ) -> Result<Vec<Choice>> {
        if !(1..=MAX_CHOICES).contains(&n) {
            return Err(Error::InvalidArgument(format!("n must be from 1 to {MAX_CHOICES}, got {n}")));
        }
        let runs = best_of.unwrap_or(n);
        if !(n..=MAX_CHOICES).contains(&runs) {
            return Err(Error::InvalidArgument(format!("best_of must be from n ({n}) to {MAX_CHOICES}, got {runs}")));
        }
        params.validate()?;
        let stream = runs == n;
        let mut choices = Vec::with_capacity(runs);
        for i in 0..runs {
            let seed = params.seed.map(|s| s.wrapping_add(i as u64));
            let p = SamplingParams { seed, ..params.clone() };
            let mut logprobs = Vec::new();
            let generation = self
                .generate_async(prompt, &p, &mut |t| {
                    if let Some(tok) = &t.token {
                        logprobs.push(tok.token.logprob as f64);
                    }
                    !stream || on_token(i, t)
                })
                .await?;
            let mean_logprob = match logprobs.len() {
                0 => 0.0,
                k => logprobs.iter().sum::<f64>() / k as f64,
            };
            choices.push(Choice { index: i, seed, mean_logprob, generation });
        }
        if !stream {
            // Highest mean log-probability first; ties keep the earlier run.
            choices.sort_by(|a, b| b.mean_logprob.total_cmp(&a.mean_logprob));
            choices.truncate(n);
            choices.iter_mut().enumerate().for_each(|(i, c)| c.index = i);
        }
        Ok(choices)
    }
}
