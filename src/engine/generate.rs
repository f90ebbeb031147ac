//! One generation: prompt → cached prefix reused → prefill → decode loop → streamed text.

use web_time::Instant;

use super::speculative::speculate;
use super::*;
use crate::constraint::Constraint;
use crate::sampler::Sampled;
use crate::tokenizer::Detokenizer;

impl Engine {
    /// [`Engine::generate_async`], waiting for it (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn generate(
        &mut self,
        prompt: &[u32],
        params: &SamplingParams,
        on_token: &mut dyn FnMut(&TokenEvent) -> bool,
    ) -> Result<Generation> {
        pollster::block_on(self.generate_async(prompt, params, on_token))
    }

    /// Generate a continuation of `prompt`, streaming each token to `on_token`, which returns
    /// `false` to stop. The KV cache keeps the prompt and the generated tokens, so a following
    /// call that extends them (the next chat turn) only runs the new tokens.
    pub async fn generate_async(
        &mut self,
        prompt: &[u32],
        params: &SamplingParams,
        on_token: &mut dyn FnMut(&TokenEvent) -> bool,
    ) -> Result<Generation> {
        self.check_prompt(prompt)?;
        // Validates the parameters before anything changes; knobs queued before this generation
        // belonged to an earlier one.
        let sampler = Sampler::new(params.clone())?;
        let constraint = self.constraint(params)?;
        let mut speculation = self.speculation(params)?;
        self.retune.take();

        let want = |history: &[u32], new: &[u32]| request(&sampler, &constraint, history, new);
        let (prefilled, mut gen) = self.prefill(prompt, params, want).await?;
        let capacity = self.backend.capacity();
        let mut dec = Decoder::new(&self.tokenizer, params, sampler, constraint);
        let Some(logits) = prefilled else {
            gen.finish_reason = FinishReason::Abort;
            return Ok(gen);
        };
        let started = Instant::now();
        let after_prefill = self.backend.stats();
        // Chosen tokens not yet shown: one from each plain step, or a speculative step's
        // accepted drafts and the token after them (already run, but for the last).
        let mut queue = std::collections::VecDeque::new();
        // The context is the prompt and every token generated so far: the penalties' window.
        queue.push_back(dec.choose(logits, &self.context)?);
        while let Some(s) = queue.pop_front() {
            if let Some(reason) = dec.show(&mut gen, &s, capacity, &mut *on_token)? {
                gen.finish_reason = reason;
                break;
            }
            if !queue.is_empty() {
                continue;
            }
            if !self.go_on().await {
                gen.finish_reason = FinishReason::Abort;
                break;
            }
            // New knobs apply from the next step's logits on: the shortlist must be asked for
            // with the knobs that will sample it.
            if let Some(p) = self.retune.take() {
                let p = dec.retune(&mut gen, p)?;
                if let Some(spec) = &mut speculation {
                    spec.retune(&p)?;
                }
            }
            if let Some(spec) = &mut speculation {
                // No point drafting past max_tokens: the step's own token is one more.
                let limit = params.max_tokens - gen.tokens.len() - 1;
                let draft = self.draft.as_deref_mut();
                let round =
                    speculate(&mut *self.backend, &mut self.context, draft, spec, &mut dec, s.id, limit).await?;
                gen.decoded_tokens += 1 + round.accepted;
                gen.drafted_tokens += round.drafted;
                gen.accepted_tokens += round.accepted;
                queue.extend(round.chosen);
                continue;
            }
            let want = dec.request(&self.context, &[s.id]);
            let logits = run(&mut *self.backend, &mut self.context, &[s.id], &want).await?;
            gen.decoded_tokens += 1;
            queue.push_back(dec.choose(logits, &self.context)?);
        }
        // A speculative step may have run drafts that were accepted but not shown (generation
        // ended before them): the cache keeps only the prompt and the tokens generated.
        let shown = prompt.len() + gen.tokens.len();
        if self.context.len() > shown {
            self.backend.truncate(shown);
            self.context.truncate(shown);
        }
        gen.decode_secs = started.elapsed().as_secs_f64();
        gen.decode_work = self.backend.stats().since(&after_prefill);
        dec.finish(&mut gen, on_token);
        Ok(gen)
    }

    /// A prompt the engine can run: not empty, inside the context and the vocabulary.
    pub(super) fn check_prompt(&self, prompt: &[u32]) -> Result<()> {
        if prompt.is_empty() {
            return Err(Error::InvalidArgument("the prompt is empty".into()));
        }
        let capacity = self.backend.capacity();
        if prompt.len() > capacity {
            return Err(Error::ContextOverflow { needed: prompt.len(), capacity });
        }
        if let Some(&bad) = prompt.iter().find(|&&t| t as usize >= self.config.vocab_size) {
            return Err(Error::InvalidArgument(format!("token id {bad} is outside the vocabulary")));
        }
        Ok(())
    }

    /// The grammar's matcher, when `params` has one.
    pub(super) fn constraint(&mut self, params: &SamplingParams) -> Result<Option<Constraint>> {
        match &params.grammar {
            Some(g) => Ok(Some(self.constraints()?.start(g)?)),
            None => Ok(None),
        }
    }

    /// Run the part of `prompt` the cache does not hold (at least its last token, for logits):
    /// the last token's logits as `want(history, new)` asks (`None` when an abort came during
    /// prefill), and the generation's record so far.
    pub(super) async fn prefill(
        &mut self,
        prompt: &[u32],
        params: &SamplingParams,
        want: impl Fn(&[u32], &[u32]) -> LogitsRequest,
    ) -> Result<(Option<Logits>, Generation)> {
        // Reuse the cached prefix, but always run at least one token to get logits.
        let reused = common_prefix(&self.context, prompt).min(prompt.len() - 1);
        self.backend.truncate(reused);
        self.context.truncate(reused);

        let started = Instant::now();
        let before = self.backend.stats();
        // With a pause (the browser), a long prompt runs in pieces with a pause between them, so
        // an abort lands during prefill too; the pieces already run stay in the cache.
        let new = &prompt[reused..];
        let piece = if self.pause.is_some() { PREFILL_PIECE } else { new.len() };
        let mut prefilled = None;
        for (i, chunk) in new.chunks(piece).enumerate() {
            if i > 0 && !self.go_on().await {
                break;
            }
            let last = (i + 1) * piece >= new.len();
            // Only the last piece's logits are used: ask the others for as little as possible.
            let want = match last {
                true => want(&prompt[..reused], new),
                false => LogitsRequest::Shortlist { top: 1, ids: Vec::new() },
            };
            let logits = run(&mut *self.backend, &mut self.context, chunk, &want).await?;
            prefilled = last.then_some(logits);
        }
        let gen = Generation {
            prompt_tokens: prompt.to_vec(),
            tokens: Vec::new(),
            text: String::new(),
            finish_reason: FinishReason::Length,
            reused_tokens: reused,
            prefill_tokens: prompt.len() - reused,
            decoded_tokens: 0,
            prefill_secs: started.elapsed().as_secs_f64(),
            decode_secs: 0.0,
            prefill_work: self.backend.stats().since(&before),
            decode_work: BackendStats::default(),
            sampling: vec![SamplingChange { from_token: 0, params: params.clone() }],
            mask_secs: 0.0,
            drafted_tokens: 0,
            accepted_tokens: 0,
        };
        Ok((prefilled, gen))
    }
}

/// One generation's choices after its prompt: its sampler and grammar, which pick each token
/// from a step's logits, and its text stream, which shows them. [`Engine::generate_async`]
/// drives one; n choices decoded as one batch drive one each.
pub(super) struct Decoder<'t> {
    tokenizer: &'t Tokenizer,
    /// The request's knobs: their stop conditions hold for the whole generation.
    params: SamplingParams,
    pub sampler: Sampler,
    pub constraint: Option<Constraint>,
    stream: TextStream<'t>,
}

impl<'t> Decoder<'t> {
    pub fn new(
        tokenizer: &'t Tokenizer,
        params: &'t SamplingParams,
        sampler: Sampler,
        constraint: Option<Constraint>,
    ) -> Decoder<'t> {
        let stream = TextStream::new(tokenizer, &params.stop);
        Decoder { tokenizer, params: params.clone(), sampler, constraint, stream }
    }

    /// What a step must read back for [`Decoder::choose`] to be exact: the whole vector under
    /// a grammar (a shortlist may hold no allowed token), else what the sampler needs.
    pub fn request(&self, history: &[u32], new: &[u32]) -> LogitsRequest {
        request(&self.sampler, &self.constraint, history, new)
    }

    /// The next token from a step's logits, within the grammar; `recent` is the penalties'
    /// window (the prompt and every token generated so far).
    pub fn choose(&mut self, logits: Logits, recent: &[u32]) -> Result<Sampled> {
        let logits = match &mut self.constraint {
            Some(c) => c.mask(logits)?,
            None => logits,
        };
        self.sampler.sample_from(&logits, recent)
    }

    /// Whether generation ends at `id` (an end-of-generation or stop token) without showing it.
    pub fn ends_at(&self, id: u32) -> bool {
        self.tokenizer.eog_ids().contains(&id) || self.params.stop_token_ids.contains(&id)
    }

    /// Show a chosen token: record it, follow it with the grammar, stream its text. Returns why
    /// generation ends with it, if it does (an end-of-generation or stop token is not shown).
    pub fn show(
        &mut self,
        gen: &mut Generation,
        s: &Sampled,
        capacity: usize,
        on_token: &mut dyn FnMut(&TokenEvent) -> bool,
    ) -> Result<Option<FinishReason>> {
        if self.ends_at(s.id) {
            return Ok(Some(FinishReason::Stop));
        }
        gen.tokens.push(s.id);
        // The grammar follows the choice; when it cannot go on, the output is complete.
        let complete = match &mut self.constraint {
            Some(c) => c.commit(s.id).map(|()| c.is_done())?,
            None => false,
        };
        let (piece, hit_stop) = self.stream.push(s.id);
        let top = s.top.iter().map(|a| top_token(self.tokenizer, a)).collect();
        let me = Alternative { id: s.id, logprob: s.logprob_raw, prob: s.prob };
        let token = TokenInfo { token: top_token(self.tokenizer, &me), top };
        let go_on = on_token(&TokenEvent { text: &piece, token: Some(token) });
        Ok(if hit_stop || complete {
            Some(FinishReason::Stop)
        } else if !go_on {
            Some(FinishReason::Abort)
        } else if gen.tokens.len() >= self.params.max_tokens || gen.prompt_tokens.len() + gen.tokens.len() > capacity {
            Some(FinishReason::Length)
        } else {
            None
        })
    }

    /// Sample with `p` from the next step on. The running generation keeps its stop
    /// conditions, and the record says so too; returns the knobs as applied.
    pub fn retune(&mut self, gen: &mut Generation, p: SamplingParams) -> Result<SamplingParams> {
        let p = SamplingParams {
            max_tokens: self.params.max_tokens,
            stop: self.params.stop.clone(),
            stop_token_ids: self.params.stop_token_ids.clone(),
            grammar: self.params.grammar.clone(),
            ..p
        };
        self.sampler.set_params(p.clone())?;
        gen.sampling.push(SamplingChange { from_token: gen.tokens.len(), params: p.clone() });
        Ok(p)
    }

    /// Generation has ended: the text held back for a possible stop string turned out to be
    /// plain text (streamed now), and the record gets the text and the grammar's time.
    pub fn finish(mut self, gen: &mut Generation, on_token: &mut dyn FnMut(&TokenEvent) -> bool) {
        gen.mask_secs = self.constraint.map_or(0.0, |c| c.mask_secs);
        let tail = self.stream.finish();
        if !tail.is_empty() {
            on_token(&TokenEvent { text: &tail, token: None });
        }
        gen.text = std::mem::take(&mut self.stream.text);
    }
}

/// What a step must read back for `sampler` under `constraint` (see [`Decoder::request`]).
fn request(sampler: &Sampler, constraint: &Option<Constraint>, history: &[u32], new: &[u32]) -> LogitsRequest {
    match constraint {
        Some(_) => LogitsRequest::Full,
        None => sampler.request(history, new),
    }
}

fn top_token(t: &Tokenizer, a: &Alternative) -> TopToken {
    TopToken { id: a.id, text: t.piece(a.id), bytes: t.token_bytes(a.id).to_vec(), logprob: a.logprob, prob: a.prob }
}

/// Run tokens through the backend, keeping `context` in step with its cache even on error.
pub(crate) async fn run(
    backend: &mut dyn Backend,
    context: &mut Vec<u32>,
    tokens: &[u32],
    want: &LogitsRequest,
) -> Result<Logits> {
    let result = backend.forward(tokens, want).await;
    in_step(backend, context, tokens, result)
}

/// [`run`] returning every token's logits ([`Backend::forward_all`]).
pub(crate) async fn run_all(
    backend: &mut dyn Backend,
    context: &mut Vec<u32>,
    tokens: &[u32],
) -> Result<Vec<Vec<f32>>> {
    let result = backend.forward_all(tokens).await;
    in_step(backend, context, tokens, result)
}

/// After a step: `context` gains its tokens, or on error the cache is cut back to `context`.
fn in_step<T>(backend: &mut dyn Backend, context: &mut Vec<u32>, tokens: &[u32], result: Result<T>) -> Result<T> {
    match &result {
        Ok(_) => context.extend_from_slice(tokens),
        Err(_) => backend.truncate(context.len()),
    }
    result
}

pub(crate) fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Turns generated ids into text pieces: UTF-8 safe, and never emitting any part of a stop
/// string (text that could be the start of one is held back until it is decided).
pub(crate) struct TextStream<'a> {
    detok: Detokenizer<'a>,
    stop: &'a [String],
    /// All visible text so far.
    text: String,
    /// How much of `text` has been handed out.
    emitted: usize,
    /// A stop string was found: nothing more is shown.
    stopped: bool,
}

impl<'a> TextStream<'a> {
    fn new(tokenizer: &'a Tokenizer, stop: &'a [String]) -> Self {
        TextStream { detok: Detokenizer::new(tokenizer), stop, text: String::new(), emitted: 0, stopped: false }
    }

    /// Add a token; returns the text that can be shown now, and whether a stop string appeared
    /// (then `text` ends just before it).
    fn push(&mut self, id: u32) -> (String, bool) {
        self.text.push_str(&self.detok.push(id));
        let pending = &self.text[self.emitted..];
        if let Some(at) = self.stop.iter().filter_map(|s| pending.find(s.as_str())).min() {
            self.text.truncate(self.emitted + at);
            self.stopped = true;
            return (self.take(self.text.len()), true);
        }
        let hold = held_back(pending, self.stop);
        (self.take(self.text.len() - hold), false)
    }

    fn take(&mut self, end: usize) -> String {
        let piece = self.text[self.emitted..end].to_string();
        self.emitted = end;
        piece
    }

    /// What is still held back when generation ends: it was not a stop string after all.
    fn finish(&mut self) -> String {
        if !self.stopped {
            self.text.push_str(&self.detok.flush());
        }
        self.take(self.text.len())
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of a stop string.
fn held_back(text: &str, stop: &[String]) -> usize {
    text.char_indices()
        .map(|(i, _)| &text[i..])
        .find(|suffix| stop.iter().any(|s| s.len() > suffix.len() && s.starts_with(suffix)))
        .map_or(0, str::len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_back_is_the_longest_suffix_that_starts_a_stop_string() {
        let stop = vec!["\nUser:".to_string(), "END".to_string()];
        assert_eq!(held_back("hello\nUs", &stop), 3);
        assert_eq!(held_back("hello E", &stop), 1);
        assert_eq!(held_back("hello", &stop), 0);
        assert_eq!(held_back("é\n", &stop), 1);
        assert_eq!(held_back("", &stop), 0);
    }

    #[test]
    fn common_prefix_counts_equal_leading_ids() {
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2, 4, 5]), 2);
        assert_eq!(common_prefix(&[], &[1]), 0);
        assert_eq!(common_prefix(&[1, 2], &[1, 2]), 2);
    }
}
