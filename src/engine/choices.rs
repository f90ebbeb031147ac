//! n choices and best-of-N (OpenAI's `n` and `best_of`): several continuations of one prompt.
//!
//! Choice i is seeded with `seed + i` (wrapping), so each choice equals the same request run
//! alone with n = 1 and that seed; without a seed every choice draws fresh entropy.
//!
//! The choices are decoded **as one batch**: the prompt is prefilled once, then every step runs
//! one token of each live choice in a single pass over the weights
//! ([`Backend::forward_placed`]). The KV cache holds the shared prompt once and each choice's
//! tokens in a region of its own after it: choice i's at slots `P + i·R ..` where P is the
//! prompt's length and R = `max_tokens - 1` (the most tokens a choice feeds back); choice 0's
//! region continues the prompt, so afterwards the cache holds the prompt and choice 0, like a
//! single generation. A token's arithmetic does not depend on which other tokens share its step
//! (exactly on the CPU; on the GPU the matrix × vector kernel runs each token as it runs alone),
//! so a batched choice gives the tokens it gives alone.
//!
//! Choices run one after another instead (each later one reusing the cached prompt) when the
//! regions do not fit the context (P + n·R > the cache's capacity) or speculative decoding is
//! on (a draft model or prompt lookup drafts for one sequence).
//!
//! `best_of` generates that many and keeps the `n` with the highest mean log-probability of
//! their tokens (the model's raw log-softmax), as OpenAI's completions API defined it.

use web_time::Instant;

use super::generate::Decoder;
use super::*;
use crate::backend::Place;
use crate::sampler::Sampled;

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
        let regions = prompt.len() + runs * (params.max_tokens - 1);
        let mut choices = if runs > 1 && regions <= self.backend.capacity() && self.speculation(params)?.is_none() {
            self.decode_batch(prompt, params, runs, &mut |i, t| !stream || on_token(i, t)).await?
        } else {
            self.decode_one_by_one(prompt, params, runs, &mut |i, t| !stream || on_token(i, t)).await?
        };
        if !stream {
            // Highest mean log-probability first; ties keep the earlier run.
            choices.sort_by(|a, b| b.mean_logprob.total_cmp(&a.mean_logprob));
            choices.truncate(n);
            choices.iter_mut().enumerate().for_each(|(i, c)| c.index = i);
        }
        Ok(choices)
    }

    /// The choices one after another, each a whole generation.
    async fn decode_one_by_one(
        &mut self,
        prompt: &[u32],
        params: &SamplingParams,
        runs: usize,
        on_token: &mut dyn FnMut(usize, &TokenEvent) -> bool,
    ) -> Result<Vec<Choice>> {
        let mut choices = Vec::with_capacity(runs);
        for i in 0..runs {
            let (seed, p) = seeded(params, i);
            let mut logprobs = Vec::new();
            let generation = self
                .generate_async(prompt, &p, &mut |t| {
                    if let Some(tok) = &t.token {
                        logprobs.push(tok.token.logprob as f64);
                    }
                    on_token(i, t)
                })
                .await?;
            choices.push(Choice { index: i, seed, mean_logprob: mean(&logprobs), generation });
        }
        Ok(choices)
    }

    /// The choices decoded together (see the module documentation). Each choice's record
    /// counts its own tokens; the time and backend work of the shared decode steps are the
    /// batch's, in every choice's record. Choice 0 reports the prompt's prefill, the others
    /// reuse it whole.
    async fn decode_batch(
        &mut self,
        prompt: &[u32],
        params: &SamplingParams,
        runs: usize,
        on_token: &mut dyn FnMut(usize, &TokenEvent) -> bool,
    ) -> Result<Vec<Choice>> {
        self.check_prompt(prompt)?;
        let mut samplers = Vec::with_capacity(runs);
        let mut constraints = Vec::with_capacity(runs);
        for i in 0..runs {
            let (seed, p) = seeded(params, i);
            samplers.push((seed, Sampler::new(p)?));
            constraints.push(self.constraint(params)?);
        }
        self.retune.take();
        // Every choice samples its first token from the prompt's logits: the whole vector.
        let (prefilled, first) = self.prefill(prompt, params, |_, _| LogitsRequest::Full).await?;
        let capacity = self.backend.capacity();
        let (p, region) = (prompt.len(), params.max_tokens - 1);
        let started = Instant::now();
        let after_prefill = self.backend.stats();

        let mut all: Vec<Run> = Vec::with_capacity(runs);
        for (i, ((seed, sampler), constraint)) in samplers.into_iter().zip(constraints).enumerate() {
            let mut gen = first.clone();
            if i > 0 {
                (gen.reused_tokens, gen.prefill_tokens, gen.prefill_secs) = (p, 0, 0.0);
                gen.prefill_work = after_prefill.since(&after_prefill);
            }
            gen.sampling[0].params.seed = seed;
            let dec = Decoder::new(&self.tokenizer, params, sampler, constraint);
            all.push(Run { seed, dec, gen, history: prompt.to_vec(), logprobs: Vec::new(), next: None });
        }
        let result = match prefilled {
            Some(logits) => {
                let batch = Batch { prompt: p, region, capacity };
                batch.run(&mut *self.backend, &self.pause, &self.retune, &mut all, logits, on_token).await
            }
            None => {
                all.iter_mut().for_each(|r| r.gen.finish_reason = FinishReason::Abort);
                Ok(())
            }
        };
        // The cache keeps the prompt and choice 0's tokens (its region continues the prompt).
        let kept = match result {
            Ok(()) => all.first().map_or(0, |r| r.gen.decoded_tokens),
            Err(_) => 0,
        };
        self.backend.truncate(p + kept);
        self.context.truncate(p);
        if let Some(r) = all.first() {
            self.context.extend_from_slice(&r.history[p..p + kept]);
        }
        result?;

        let (decode_secs, decode_work) = (started.elapsed().as_secs_f64(), self.backend.stats().since(&after_prefill));
        let mut choices = Vec::with_capacity(runs);
        for (i, mut r) in all.into_iter().enumerate() {
            (r.gen.decode_secs, r.gen.decode_work) = (decode_secs, decode_work);
            r.dec.finish(&mut r.gen, &mut |t| on_token(i, t));
            choices.push(Choice { index: i, seed: r.seed, mean_logprob: mean(&r.logprobs), generation: r.gen });
        }
        Ok(choices)
    }
}

/// One choice of a batch.
struct Run<'t> {
    seed: Option<u64>,
    dec: Decoder<'t>,
    gen: Generation,
    /// The prompt and the tokens fed back: the penalties' window.
    history: Vec<u32>,
    /// The raw log-probability of each token shown.
    logprobs: Vec<f64>,
    /// The token chosen and not yet shown; `None` once the choice has ended.
    next: Option<Sampled>,
}

/// Where a batch's choices live in the cache: after the `prompt`, a `region` of slots each.
struct Batch {
    prompt: usize,
    region: usize,
    capacity: usize,
}

impl Batch {
    /// Decode every choice from the prompt's `logits` until each has ended: per step, show
    /// each live choice's token, then run the tokens of those that go on in one pass.
    async fn run(
        &self,
        backend: &mut dyn Backend,
        pause: &Option<Pause>,
        retune: &Retune,
        all: &mut [Run<'_>],
        logits: Logits,
        on_token: &mut dyn FnMut(usize, &TokenEvent) -> bool,
    ) -> Result<()> {
        for r in all.iter_mut() {
            r.next = Some(r.dec.choose(logits.clone(), &r.history)?);
        }
        let (mut tokens, mut places, mut live) = (Vec::new(), Vec::new(), Vec::new());
        loop {
            tokens.clear();
            places.clear();
            live.clear();
            for (i, r) in all.iter_mut().enumerate() {
                let Some(s) = r.next.take() else { continue };
                let shown = r.gen.tokens.len();
                let ended = r.dec.show(&mut r.gen, &s, self.capacity, &mut |t| on_token(i, t))?;
                if r.gen.tokens.len() > shown {
                    r.logprobs.push(s.logprob_raw as f64);
                }
                if let Some(reason) = ended {
                    r.gen.finish_reason = reason;
                    continue;
                }
                let own = self.prompt + i * self.region;
                places.push(Place::branch(self.prompt, own, own + r.gen.decoded_tokens));
                tokens.push(s.id);
                live.push(i);
            }
            if live.is_empty() {
                return Ok(());
            }
            if !go_on(pause).await {
                live.iter().for_each(|&i| all[i].gen.finish_reason = FinishReason::Abort);
                return Ok(());
            }
            if let Some(knobs) = retune.take() {
                for &i in &live {
                    let r = &mut all[i];
                    r.dec.retune(&mut r.gen, SamplingParams { seed: r.seed, ..knobs.clone() })?;
                }
            }
            let rows = backend.forward_placed(&tokens, &places).await?;
            for ((&i, row), &id) in live.iter().zip(rows).zip(&tokens) {
                let r = &mut all[i];
                r.gen.decoded_tokens += 1;
                r.history.push(id);
                r.next = Some(r.dec.choose(Logits::Full(row), &r.history)?);
            }
        }
    }
}

/// Choice i's seed, and the request with it.
fn seeded(params: &SamplingParams, i: usize) -> (Option<u64>, SamplingParams) {
    let seed = params.seed.map(|s| s.wrapping_add(i as u64));
    (seed, SamplingParams { seed, ..params.clone() })
}

/// The mean of `logprobs` (0 for none).
fn mean(logprobs: &[f64]) -> f64 {
    match logprobs.len() {
        0 => 0.0,
        k => logprobs.iter().sum::<f64>() / k as f64,
    }
}
