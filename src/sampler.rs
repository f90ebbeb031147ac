//! Token sampling: turns one step's logits into the next token id.
//!
//! # Order of the knobs
//!
//! The order below is part of the API: a GPU implementation of the sampler must apply the knobs
//! in the same order to reproduce the same tokens.
//!
//! 0. **Sanitize** the raw logits: NaN becomes `-inf` (the token can never be drawn), `+inf`
//!    becomes `f32::MAX`, `-0.0` becomes `+0.0`. A logit of `-inf` means "banned" in every later
//!    step.
//! 1. **`logit_bias`**: each `(id, bias)` is added to the logit of `id` (entries for the same id
//!    add up; ids outside the vocabulary are ignored). A bias of `-inf` bans the token.
//! 2. **Penalties** over the window `recent[recent.len() - repeat_last_n..]` (the whole of
//!    `recent` when it is shorter). For every token id that occurs `c > 0` times in the window
//!    (ids outside the vocabulary are ignored), first the repetition penalty `r`
//!    (llama.cpp / CTRL style): `logit = if logit > 0 { logit / r } else { logit * r }`, then the
//!    OpenAI-style penalties: `logit -= frequency_penalty * c + presence_penalty`.
//! 3. If `temperature == 0`: **greedy**, the argmax of the logits after steps 1–2, ties going to
//!    the lowest id. Its probability is reported as 1.0. The remaining steps are skipped.
//! 4. **`top_k`** (0 = off): keep the `k` highest logits; ties at the boundary go to the lower id.
//!    From here on the candidates are ordered by logit descending, then id ascending.
//! 5. **Temperature**: `p_i = exp((l_i - l_max) / T) / Z` over the surviving candidates
//!    (softmax of `l / T`, computed in f64).
//! 6. **`top_p`** (1.0 = off): keep the smallest prefix of the ordered candidates whose
//!    probability mass (the `p_i` of step 5, summed in order in f64) is `>= top_p`; at least one
//!    candidate is always kept.
//! 7. **`min_p`** (0.0 = off): drop every candidate with `p_i < min_p * p_max`, computed on the
//!    relative weights `exp((l_i - l_max) / T) < min_p` (the ratio does not depend on the
//!    normalization, so it does not matter whether it is taken before or after step 6's cut).
//! 8. **Renormalize** the kept weights to probabilities, round them to f32, drop candidates whose
//!    f32 probability is exactly 0, and order the list by probability descending, then id
//!    ascending. This list is what [`Sampler::distribution`] returns. Then **draw** by inverse
//!    CDF: take one uniform `u` in `[0, 1)` from the RNG ([`SamplerRng::next_f64`]), set
//!    `target = u * S` where `S` is the f64 sum of the listed f32 probabilities, and pick the
//!    first candidate (in list order) whose running f64 sum of f32 probabilities exceeds
//!    `target` (the last candidate if rounding leaves none).
//!
//! # Shortlists
//!
//! A GPU backend need not send the whole logits vector back. [`Sampler::request`] says what the
//! next step needs: with `top_k > 0` (or greedy) only the `top` best raw logits (logit
//! descending, id ascending) plus the raw logits of the `m` ids that `logit_bias` or the
//! penalties change, where `top = k + m`. That is exact: a token whose logit no knob changes
//! can only make the final top `k` if at most `k - 1` unchanged tokens beat it, so it is among
//! the best `k + m` raw logits. Sampling a [`Shortlist`] treats every other token as `-inf` and
//! then runs the same steps as above, so it picks the same token with the same probability;
//! only the raw log-probability's normalizer comes from the GPU's sum. `top_k == 0` with a
//! temperature needs every logit, and so does a shortlist longer than [`MAX_SHORTLIST`].
//! `top_logprobs` raises `top` to at least itself, so the alternatives reported with each token
//! (the best raw logits) are exact too.
//!
//! # Random numbers
//!
//! The RNG is xoshiro256** (Blackman & Vigna), its 256-bit state filled with four successive
//! outputs of splitmix64 started from the seed. Every successful [`Sampler::sample`] call
//! consumes exactly one `u64` from the generator, greedy steps included, so token `i` of a
//! generation always uses draw `i` of the stream. `next_f64` is `(next_u64() >> 11) * 2^-53`.
//! Everything is integer arithmetic or IEEE f32/f64, so a seeded run gives identical tokens on
//! native targets and on wasm32.

use std::cmp::Ordering;
use std::fmt::Display;

use crate::error::{Error, Result};

/// The knobs of the sampler and the stop conditions the engine enforces.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// Softmax temperature; 0 = greedy (argmax, ties to the lowest id). Default 0.7.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; 0 = off. Default 40.
    pub top_k: usize,
    /// Nucleus sampling: keep the smallest set of tokens whose mass is `>= top_p`; 1.0 = off.
    /// Default 0.95.
    pub top_p: f32,
    /// Drop tokens whose probability is below `min_p` times the top probability; 0.0 = off.
    /// Default 0.05.
    pub min_p: f32,
    /// CTRL / llama.cpp repetition penalty on the tokens of the window: positive logits are
    /// divided by it, negative ones multiplied; 1.0 = off. Default 1.0.
    pub repetition_penalty: f32,
    /// How many of the most recent tokens the penalties look at. Default 64.
    pub repeat_last_n: usize,
    /// OpenAI-style: `logit -= frequency_penalty * count`. Default 0.
    pub frequency_penalty: f32,
    /// OpenAI-style: `logit -= presence_penalty` if the token occurs in the window. Default 0.
    pub presence_penalty: f32,
    /// Added to the logit of the token; `f32::NEG_INFINITY` bans it. Default empty.
    pub logit_bias: Vec<(u32, f32)>,
    /// Seed of the RNG; `None` seeds it from the operating system's entropy. Default `None`.
    pub seed: Option<u64>,
    /// Most tokens to generate (used by the engine, not the sampler). Default 256.
    pub max_tokens: usize,
    /// Stop strings (used by the engine, not the sampler). Default empty.
    pub stop: Vec<String>,
    /// Extra stop token ids (used by the engine, not the sampler). Default empty.
    pub stop_token_ids: Vec<u32>,
    /// Report this many of the most likely tokens of each step with every sampled token (OpenAI's
    /// `top_logprobs`), at most [`MAX_TOP_LOGPROBS`]. Default 0.
    pub top_logprobs: usize,
    /// Constrain the output to a JSON schema, any JSON object, or a Lark grammar (used by the
    /// engine, which masks every step's logits; see [`crate::constraint`]). Default `None`.
    pub grammar: Option<crate::constraint::Grammar>,
    /// Speculative decoding (used by the engine): tokens drafted per verification step,
    /// 1..=[`MAX_DRAFT_TOKENS`]; `None` adapts it to how many get accepted; 0 turns the draft
    /// model off for this request. Default `None`.
    pub draft_tokens: Option<usize>,
    /// Prompt-lookup drafting (used by the engine when no draft model is attached): draft the
    /// tokens that followed the last earlier occurrence of the text's final n-gram, trying
    /// n = `lookup` down to 1 (1..=8). Default `None` (off).
    pub lookup: Option<usize>,
}

/// The most tokens a speculative step drafts: with the token before them, one step of
/// [`crate::gpu::ALL_ROWS`] verifies them.
pub const MAX_DRAFT_TOKENS: usize = 15;

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.7,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repetition_penalty: 1.0,
            repeat_last_n: 64,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            logit_bias: Vec::new(),
            seed: None,
            max_tokens: 256,
            stop: Vec::new(),
            stop_token_ids: Vec::new(),
            top_logprobs: 0,
            grammar: None,
            draft_tokens: None,
            lookup: None,
        }
    }
}

fn invalid(knob: &str, value: impl Display, want: &str) -> Error {
    Error::InvalidArgument(format!("{knob} must be {want}, got {value}"))
}

impl SamplingParams {
    /// Checks every knob; the error names the offending knob and value.
    pub fn validate(&self) -> Result<()> {
        let t = self.temperature;
        if !(t.is_finite() && t >= 0.0) {
            return Err(invalid("temperature", t, "a finite number >= 0"));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(invalid("top_p", self.top_p, "in (0, 1]"));
        }
        if !(self.min_p >= 0.0 && self.min_p <= 1.0) {
            return Err(invalid("min_p", self.min_p, "in [0, 1]"));
        }
        let r = self.repetition_penalty;
        if !(r.is_finite() && r > 0.0) {
            return Err(invalid("repetition_penalty", r, "a finite number > 0"));
        }
        for (knob, v) in [("frequency_penalty", self.frequency_penalty), ("presence_penalty", self.presence_penalty)] {
            if !(-2.0..=2.0).contains(&v) {
                return Err(invalid(knob, v, "in [-2, 2]"));
            }
        }
        for &(id, b) in &self.logit_bias {
            if !(b.is_finite() || b == f32::NEG_INFINITY) {
                return Err(invalid(&format!("logit_bias for token {id}"), b, "a finite number or -inf"));
            }
        }
        if self.top_logprobs > MAX_TOP_LOGPROBS {
            return Err(invalid("top_logprobs", self.top_logprobs, &format!("at most {MAX_TOP_LOGPROBS}")));
        }
        if self.max_tokens == 0 {
            return Err(invalid("max_tokens", 0, "at least 1"));
        }
        if let Some(k) = self.draft_tokens.filter(|&k| k > MAX_DRAFT_TOKENS) {
            return Err(invalid("draft_tokens", k, &format!("at most {MAX_DRAFT_TOKENS} (0 turns drafting off)")));
        }
        if let Some(n) = self.lookup.filter(|&n| !(1..=8).contains(&n)) {
            return Err(invalid("lookup", n, "an n-gram size from 1 to 8"));
        }
        if let Some(i) = self.stop.iter().position(String::is_empty) {
            return Err(invalid(&format!("stop[{i}]"), "\"\"", "a non-empty string"));
        }
        Ok(())
    }
}

/// One candidate token with its final probability.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Candidate {
    pub id: u32,
    pub prob: f32,
}

/// One of a step's most likely tokens, as the model saw it and as the knobs left it.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Alternative {
    pub id: u32,
    /// Log-softmax of the raw logits at `id`: the model's own view, before every knob.
    pub logprob: f32,
    /// Probability in the final distribution after every knob (0 when a knob cut it).
    pub prob: f32,
}

/// The result of one sampling step.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampled {
    /// The chosen token.
    pub id: u32,
    /// Probability of `id` in the final distribution (1.0 for greedy).
    pub prob: f32,
    /// Log-softmax of the raw logits (no bias, no penalty, temperature 1) at `id`.
    pub logprob_raw: f32,
    /// The `top_logprobs` highest raw logits of the step (logit descending, id ascending).
    pub top: Vec<Alternative>,
}

/// The most alternatives a step reports (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// The longest shortlist a backend is asked for; beyond it the whole vector is read.
pub const MAX_SHORTLIST: usize = 512;

/// What the sampler needs from a step's logits (see "Shortlists" above).
#[derive(Clone, Debug, PartialEq)]
pub enum LogitsRequest {
    /// The whole vector.
    Full,
    /// The `top` best raw logits and the raw logits of `ids`.
    Shortlist { top: usize, ids: Vec<u32> },
}

/// A step's logits as a backend returns them.
#[derive(Clone, Debug, PartialEq)]
pub enum Logits {
    Full(Vec<f32>),
    Shortlist(Shortlist),
}

impl Logits {
    /// The whole vector; `None` for a shortlist.
    pub fn into_full(self) -> Option<Vec<f32>> {
        match self {
            Logits::Full(v) => Some(v),
            Logits::Shortlist(_) => None,
        }
    }
}

/// Part of a logits vector: enough to sample exactly (see "Shortlists" above).
#[derive(Clone, Debug, PartialEq)]
pub struct Shortlist {
    /// Length of the whole vector.
    pub vocab: usize,
    /// `(id, raw logit)` pairs: the best ones and the requested ids, in any order.
    pub entries: Vec<(u32, f32)>,
    /// The largest raw logit and `Σ exp(logit - max)` over the whole vector.
    pub max: f32,
    pub sum_exp: f32,
}

impl Shortlist {
    /// Every listed logit at its place, `-inf` elsewhere.
    pub(crate) fn dense(&self) -> Vec<f32> {
        let mut l = vec![f32::NEG_INFINITY; self.vocab];
        for &(id, x) in &self.entries {
            if let Some(slot) = l.get_mut(id as usize) {
                *slot = x;
            }
        }
        l
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The sampler's random number generator: xoshiro256** seeded through splitmix64.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SamplerRng {
    s: [u64; 4],
}

impl SamplerRng {
    /// Fills the state with four successive splitmix64 outputs starting from `seed`.
    pub fn seed_from_u64(seed: u64) -> SamplerRng {
        let mut sm = seed;
        let s = [splitmix64(&mut sm), splitmix64(&mut sm), splitmix64(&mut sm), splitmix64(&mut sm)];
        SamplerRng::from_state(s)
    }

    /// Uses `s` as the raw state. The all-zero state (a fixed point of xoshiro) is replaced by
    /// `seed_from_u64(0)`'s state.
    pub fn from_state(s: [u64; 4]) -> SamplerRng {
        if s == [0; 4] {
            return SamplerRng::seed_from_u64(0);
        }
        SamplerRng { s }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A uniform number in `[0, 1)`: the top 53 bits of `next_u64` times 2^-53.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// A seed from the operating system (Web Crypto on wasm). If that fails, a process-unique value
/// mixed from a counter and a stack address is used instead: still a valid seed, just not a
/// secret one (sampling does not need one).
fn entropy_seed() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
    if let Ok(s) = getrandom::u64() {
        return s;
    }
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let local = 0u8;
    let mut x = COUNTER.fetch_add(1, AtomicOrdering::Relaxed) ^ (&local as *const u8 as u64);
    splitmix64(&mut x)
}

fn rng_for(seed: Option<u64>) -> SamplerRng {
    SamplerRng::seed_from_u64(seed.unwrap_or_else(entropy_seed))
}

/// Step 0: NaN -> -inf, +inf -> f32::MAX, -0.0 -> +0.0. After this, `total_cmp` agrees with
/// `<`/`==` on logits.
fn sanitize(x: f32) -> f32 {
    if x.is_nan() {
        f32::NEG_INFINITY
    } else if x == f32::INFINITY {
        f32::MAX
    } else {
        x + 0.0
    }
}

/// Logit descending, then id ascending.
fn by_logit_then_id(a: &(f32, u32), b: &(f32, u32)) -> Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

/// The `k` best `(logit, id)` pairs of `l` in `by_logit_then_id` order, skipping `-inf`.
/// One pass with a buffer of at most `2k` entries: whenever it fills, it is cut back to its `k`
/// best by partial selection, and the k-th best logit becomes a floor that later tokens must
/// beat (a later token with an equal logit has a higher id, so it loses the tie).
fn top_k_select(l: impl ExactSizeIterator<Item = f32>, k: usize) -> Vec<(f32, u32)> {
    let cap = k.saturating_mul(2).max(1);
    let mut buf: Vec<(f32, u32)> = Vec::with_capacity(cap.min(l.len()));
    let mut floor = f32::NEG_INFINITY;
    for (i, x) in l.enumerate() {
        if x <= floor {
            continue;
        }
        buf.push((x, i as u32));
        if buf.len() >= cap {
            buf.select_nth_unstable_by(k - 1, by_logit_then_id);
            buf.truncate(k);
            floor = buf[k - 1].0;
        }
    }
    buf.sort_unstable_by(by_logit_then_id);
    buf.truncate(k);
    buf
}

enum Plan {
    Greedy(u32),
    Dist(Vec<Candidate>),
}

impl Plan {
    /// Final probability of `id` (0 when the knobs cut it).
    fn prob(&self, id: u32) -> f32 {
        match self {
            Plan::Greedy(g) => (*g == id) as u32 as f32,
            Plan::Dist(c) => c.iter().find(|c| c.id == id).map_or(0.0, |c| c.prob),
        }
    }
}

/// A step's result: `best` holds the raw `(logit, id)` pairs to report, `log_z` the raw
/// log-softmax normalizer.
fn sampled(id: u32, plan: &Plan, logprob_raw: f32, best: &[(f32, u32)], log_z: f64) -> Sampled {
    let top = best
        .iter()
        .map(|&(x, id)| Alternative { id, logprob: (x as f64 - log_z) as f32, prob: plan.prob(id) })
        .collect();
    Sampled { id, prob: plan.prob(id), logprob_raw, top }
}

/// Samples token ids from logits; see the module documentation for the exact algorithm.
pub struct Sampler {
    params: SamplingParams,
    rng: SamplerRng,
}

impl Sampler {
    /// Validates `params` and seeds the RNG from `params.seed` (entropy when `None`).
    pub fn new(params: SamplingParams) -> Result<Sampler> {
        params.validate()?;
        let rng = rng_for(params.seed);
        Ok(Sampler { params, rng })
    }

    /// The current parameters.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Replaces the parameters from the next call on. The RNG is re-seeded only if `seed`
    /// differs from the current one; otherwise its stream continues.
    pub fn set_params(&mut self, p: SamplingParams) -> Result<()> {
        p.validate()?;
        if p.seed != self.params.seed {
            self.rng = rng_for(p.seed);
        }
        self.params = p;
        Ok(())
    }

    /// Restarts the RNG stream from `params().seed` (fresh entropy when it is `None`).
    pub fn reseed(&mut self) {
        self.rng = rng_for(self.params.seed);
    }

    /// The final distribution after every knob, ordered by probability descending then id
    /// ascending; the probabilities sum to 1 (up to f32 rounding). Greedy gives the single argmax
    /// with probability 1. Empty when `logits` is empty or every token is banned.
    /// `recent` holds the prompt and generated tokens; the penalties look at its last
    /// `repeat_last_n`.
    pub fn distribution(&self, logits: &[f32], recent: &[u32]) -> Vec<Candidate> {
        match self.plan(logits, recent) {
            None => Vec::new(),
            Some(Plan::Greedy(id)) => vec![Candidate { id, prob: 1.0 }],
            Some(Plan::Dist(c)) => c,
        }
    }

    /// What the next step's logits must include for [`Sampler::sample_from`] to be exact, when
    /// the penalties' window will be the last `repeat_last_n` of `history` followed by `new`.
    pub fn request(&self, history: &[u32], new: &[u32]) -> LogitsRequest {
        let p = &self.params;
        let top = if p.temperature == 0.0 { 1 } else { p.top_k };
        if top == 0 {
            return LogitsRequest::Full;
        }
        let top = top.max(p.top_logprobs);
        let mut ids: Vec<u32> = p.logit_bias.iter().map(|b| b.0).collect();
        if p.repetition_penalty != 1.0 || p.frequency_penalty != 0.0 || p.presence_penalty != 0.0 {
            let from_new = new.len().min(p.repeat_last_n);
            let from_history = p.repeat_last_n - from_new;
            ids.extend_from_slice(&history[history.len().saturating_sub(from_history)..]);
            ids.extend_from_slice(&new[new.len() - from_new..]);
        }
        ids.sort_unstable();
        ids.dedup();
        let top = top.saturating_add(ids.len());
        if top > MAX_SHORTLIST {
            return LogitsRequest::Full;
        }
        LogitsRequest::Shortlist { top, ids }
    }

    /// [`Sampler::sample`] on logits in either form.
    pub fn sample_from(&mut self, logits: &Logits, recent: &[u32]) -> Result<Sampled> {
        match logits {
            Logits::Full(l) => self.sample(l, recent),
            Logits::Shortlist(s) => {
                let (id, plan) = self.draw_token(&s.dense(), recent)?;
                let log_z = s.max as f64 + (s.sum_exp as f64).ln();
                let mut best: Vec<(f32, u32)> = s.entries.iter().map(|&(id, x)| (sanitize(x), id)).collect();
                best.sort_unstable_by(by_logit_then_id);
                best.dedup(); // a requested id may also be among the best
                let raw = best.iter().find(|e| e.1 == id).map_or(f32::NEG_INFINITY, |e| e.0);
                best.truncate(self.params.top_logprobs);
                Ok(sampled(id, &plan, (raw as f64 - log_z) as f32, &best, log_z))
            }
        }
    }

    /// A uniform number in [0, 1) from the sampler's stream (speculative acceptance tests).
    pub(crate) fn uniform(&mut self) -> f64 {
        self.rng.next_f64()
    }

    /// One of `cands` (probabilities, not necessarily normalized), drawn with one uniform.
    pub(crate) fn draw_candidate(&mut self, cands: &[Candidate]) -> u32 {
        let u = self.rng.next_f64();
        draw(cands, u).id
    }

    /// What [`Sampler::sample`] reports for `id` chosen from the whole `logits`, whose final
    /// distribution is `dist` (a token chosen by speculative acceptance rather than a draw).
    pub(crate) fn describe(&self, logits: &[f32], id: u32, dist: &[Candidate]) -> Sampled {
        let prob = |id: u32| dist.iter().find(|c| c.id == id).map_or(0.0, |c| c.prob);
        let log_z = log_normalizer(logits);
        let raw = (sanitize(logits[id as usize]) as f64 - log_z) as f32;
        let best = match self.params.top_logprobs {
            0 => Vec::new(),
            n => top_k_select(logits.iter().map(|&x| sanitize(x)), n),
        };
        let top = best
            .iter()
            .map(|&(x, i)| Alternative { id: i, logprob: (x as f64 - log_z) as f32, prob: prob(i) })
            .collect();
        Sampled { id, prob: prob(id), logprob_raw: raw, top }
    }

    /// Draws the next token. Errors when `logits` is empty or every token is banned (then no
    /// random number is consumed).
    pub fn sample(&mut self, logits: &[f32], recent: &[u32]) -> Result<Sampled> {
        let (id, plan) = self.draw_token(logits, recent)?;
        let log_z = log_normalizer(logits);
        let raw = (sanitize(logits[id as usize]) as f64 - log_z) as f32;
        let best = match self.params.top_logprobs {
            0 => Vec::new(),
            n => top_k_select(logits.iter().map(|&x| sanitize(x)), n),
        };
        Ok(sampled(id, &plan, raw, &best, log_z))
    }

    /// The chosen id and the distribution it was drawn from.
    fn draw_token(&mut self, logits: &[f32], recent: &[u32]) -> Result<(u32, Plan)> {
        if logits.is_empty() {
            return Err(Error::InvalidArgument("sample: the logits are empty".into()));
        }
        let plan = self.plan(logits, recent).ok_or_else(|| {
            Error::InvalidArgument(
                "sample: every token is banned (all logits are -inf or NaN after logit_bias and penalties)".into(),
            )
        })?;
        let u = self.rng.next_f64();
        let id = match &plan {
            Plan::Greedy(id) => *id,
            Plan::Dist(cands) => draw(cands, u).id,
        };
        Ok((id, plan))
    }

    /// Steps 0–2: sanitized, biased, penalized logits.
    fn adjusted_logits(&self, logits: &[f32], recent: &[u32]) -> Vec<f32> {
        let p = &self.params;
        let mut l: Vec<f32> = logits.iter().map(|&x| sanitize(x)).collect();
        for &(id, b) in &p.logit_bias {
            if let Some(x) = l.get_mut(id as usize) {
                *x = sanitize(*x + b);
            }
        }
        let (r, f, pr) = (p.repetition_penalty, p.frequency_penalty, p.presence_penalty);
        let window = &recent[recent.len().saturating_sub(p.repeat_last_n)..];
        if window.is_empty() || (r == 1.0 && f == 0.0 && pr == 0.0) {
            return l;
        }
        let mut w = window.to_vec();
        w.sort_unstable();
        for run in w.chunk_by(|a, b| a == b) {
            let Some(x) = l.get_mut(run[0] as usize) else {
                continue;
            };
            if *x == f32::NEG_INFINITY {
                continue;
            }
            let mut v = *x;
            if r != 1.0 {
                v = if v > 0.0 { v / r } else { v * r };
            }
            v -= f * run.len() as f32 + pr;
            *x = sanitize(v);
        }
        l
    }

    fn plan(&self, logits: &[f32], recent: &[u32]) -> Option<Plan> {
        let p = &self.params;
        let l = self.adjusted_logits(logits, recent);

        // 3. greedy
        if p.temperature == 0.0 {
            let mut best: Option<(f32, u32)> = None;
            for (i, &x) in l.iter().enumerate() {
                if x > best.map_or(f32::NEG_INFINITY, |b| b.0) {
                    best = Some((x, i as u32));
                }
            }
            return best.map(|b| Plan::Greedy(b.1));
        }

        // 4. top_k (the full path is sorted after the min_p prefilter below)
        let mut cands: Vec<(f32, u32)> = if p.top_k > 0 {
            top_k_select(l.iter().copied(), p.top_k)
        } else {
            l.iter().enumerate().filter(|(_, x)| **x != f32::NEG_INFINITY).map(|(i, &x)| (x, i as u32)).collect()
        };
        let l_max = cands.iter().map(|c| c.0).reduce(f32::max)?;

        // 5. temperature + softmax normalizer over all survivors of top_k, and
        // 7. min_p as a prefilter: it keeps a prefix of the ordered candidates, so applying it
        // before top_p's prefix cut (which uses the full normalizer) gives the same set.
        let t = p.temperature as f64;
        let weight = |x: f32| ((x as f64 - l_max as f64) / t).exp();
        let min_p = p.min_p as f64;
        let mut z = 0.0f64;
        cands.retain(|&(x, _)| {
            let w = weight(x);
            z += w;
            w >= min_p
        });
        if p.top_k == 0 {
            cands.sort_unstable_by(by_logit_then_id);
        }
        let mut weights: Vec<f64> = cands.iter().map(|&(x, _)| weight(x)).collect();

        // 6. top_p
        if p.top_p < 1.0 {
            let top_p = p.top_p as f64;
            let mut cum = 0.0f64;
            let mut keep = weights.len();
            for (i, &w) in weights.iter().enumerate() {
                cum += w / z;
                if cum >= top_p {
                    keep = i + 1;
                    break;
                }
            }
            weights.truncate(keep);
            cands.truncate(keep);
        }

        // 8. renormalize
        let s: f64 = weights.iter().sum();
        let mut out: Vec<Candidate> = cands
            .iter()
            .zip(&weights)
            .map(|(&(_, id), &w)| Candidate { id, prob: (w / s) as f32 })
            .filter(|c| c.prob > 0.0)
            .collect();
        out.sort_by(|a, b| b.prob.total_cmp(&a.prob).then(a.id.cmp(&b.id)));
        Some(Plan::Dist(out))
    }
}

/// Step 8's inverse-CDF draw over `cands` (non-empty, in list order) with the uniform `u`.
fn draw(cands: &[Candidate], u: f64) -> Candidate {
    let total: f64 = cands.iter().map(|c| c.prob as f64).sum();
    let target = u * total;
    let mut cum = 0.0f64;
    for c in cands {
        cum += c.prob as f64;
        if target < cum {
            return *c;
        }
    }
    cands[cands.len() - 1]
}

/// `ln Σ exp(l)` over the sanitized raw logits (`-inf` when every one is `-inf`).
fn log_normalizer(logits: &[f32]) -> f64 {
    let max = logits.iter().map(|&x| sanitize(x)).fold(f32::NEG_INFINITY, f32::max) as f64;
    if max == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    let sum: f64 = logits.iter().map(|&x| (sanitize(x) as f64 - max).exp()).sum();
    max + sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOGITS: [f32; 12] = [1.2, -0.3, 0.8, 2.0, 0.1, -1.0, 1.5, 0.5, -0.6, 0.9, 0.0, 1.1];
    const N: usize = 20_000;

    /// Knobs all off, temperature 1, fixed seed.
    fn plain() -> SamplingParams {
        SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: Some(1234),
            ..SamplingParams::default()
        }
    }

    /// Straightforward implementation of the documented algorithm, from the definitions:
    /// the probability of every id (0 for excluded ones).
    fn reference(logits: &[f32], p: &SamplingParams, recent: &[u32]) -> Vec<f64> {
        let n = logits.len();
        let mut l: Vec<f64> = logits.iter().map(|&x| x as f64).collect();
        for &(id, b) in &p.logit_bias {
            l[id as usize] += b as f64;
        }
        let window = &recent[recent.len().saturating_sub(p.repeat_last_n)..];
        for (id, li) in l.iter_mut().enumerate() {
            let c = window.iter().filter(|&&t| t as usize == id).count();
            if c > 0 && *li > f64::NEG_INFINITY {
                let r = p.repetition_penalty as f64;
                *li = if *li > 0.0 { *li / r } else { *li * r };
                *li -= p.frequency_penalty as f64 * c as f64 + p.presence_penalty as f64;
            }
        }
        let mut prob = vec![0.0; n];
        if p.temperature == 0.0 {
            let mut best = 0;
            for i in 1..n {
                if l[i] > l[best] {
                    best = i;
                }
            }
            prob[best] = 1.0;
            return prob;
        }
        // top_k from a full sort
        let mut order: Vec<usize> = (0..n).filter(|&i| l[i] > f64::NEG_INFINITY).collect();
        order.sort_by(|&a, &b| l[b].partial_cmp(&l[a]).unwrap().then(a.cmp(&b)));
        if p.top_k > 0 {
            order.truncate(p.top_k);
        }
        let t = p.temperature as f64;
        let z: f64 = order.iter().map(|&i| (l[i] / t).exp()).sum();
        for &i in &order {
            prob[i] = (l[i] / t).exp() / z;
        }
        // top_p
        if p.top_p < 1.0 {
            let mut cum = 0.0;
            let mut keep = order.len();
            for (k, &i) in order.iter().enumerate() {
                cum += prob[i];
                if cum >= p.top_p as f64 {
                    keep = k + 1;
                    break;
                }
            }
            for &i in &order[keep..] {
                prob[i] = 0.0;
            }
        }
        // min_p
        let pmax = prob.iter().cloned().fold(0.0, f64::max);
        for q in prob.iter_mut() {
            if *q < p.min_p as f64 * pmax {
                *q = 0.0;
            }
        }
        let s: f64 = prob.iter().sum();
        prob.iter().map(|q| q / s).collect()
    }

    /// Chi-square critical values at p = 0.001 for 1..=20 degrees of freedom.
    const CHI2_999: [f64; 20] = [
        10.828, 13.816, 16.266, 18.467, 20.515, 22.458, 24.322, 26.124, 27.877, 29.588, 31.264, 32.909, 34.528, 36.123,
        37.697, 39.252, 40.790, 42.312, 43.820, 45.315,
    ];

    /// Wilson–Hilferty approximation of the p = 0.001 critical value.
    fn chi2_wh(df: usize) -> f64 {
        let k = df as f64;
        let z = 3.090_232_306;
        let a = 2.0 / (9.0 * k);
        k * (1.0 - a + z * a.sqrt()).powi(3)
    }

    fn chi2_critical(df: usize) -> f64 {
        assert!(df >= 1);
        CHI2_999.get(df - 1).copied().unwrap_or_else(|| chi2_wh(df))
    }

    #[test]
    fn chi2_table_matches_wilson_hilferty() {
        for df in 1..=20 {
            let rel = (CHI2_999[df - 1] - chi2_wh(df)).abs() / CHI2_999[df - 1];
            assert!(rel < 0.035, "df {df}: {} vs {}", CHI2_999[df - 1], chi2_wh(df));
        }
    }

    fn check_distribution(logits: &[f32], p: &SamplingParams, recent: &[u32]) {
        let expected = reference(logits, p, recent);
        let dist = Sampler::new(p.clone()).unwrap().distribution(logits, recent);
        let sum: f64 = dist.iter().map(|c| c.prob as f64).sum();
        assert!((sum - 1.0).abs() < 1e-5, "sum {sum}");
        for w in dist.windows(2) {
            assert!(w[0].prob > w[1].prob || (w[0].prob == w[1].prob && w[0].id < w[1].id), "order {dist:?}");
        }
        let mut got = vec![0.0f64; logits.len()];
        for c in &dist {
            got[c.id as usize] = c.prob as f64;
        }
        for (id, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert!((g - e).abs() < 1e-5, "id {id}: got {g}, expected {e}");
            if *e == 0.0 {
                assert!(dist.iter().all(|c| c.id as usize != id), "id {id} listed");
            }
        }
    }

    /// Draws N tokens and runs a chi-square goodness-of-fit test against `reference`.
    /// Returns the number of kept tokens.
    fn check_sampling(logits: &[f32], p: &SamplingParams, recent: &[u32]) -> usize {
        check_distribution(logits, p, recent);
        let expected = reference(logits, p, recent);
        let mut s = Sampler::new(p.clone()).unwrap();
        let mut counts = vec![0usize; logits.len()];
        for _ in 0..N {
            let t = s.sample(logits, recent).unwrap();
            counts[t.id as usize] += 1;
            assert!((t.prob as f64 - expected[t.id as usize]).abs() < 1e-5);
        }
        let mut stat = 0.0;
        let mut kept = 0;
        for (id, (&c, &e)) in counts.iter().zip(&expected).enumerate() {
            if e == 0.0 {
                assert_eq!(c, 0, "excluded token {id} was drawn");
                continue;
            }
            kept += 1;
            let want = e * N as f64;
            assert!(want >= 5.0, "test design: expected count of {id} is {want}");
            stat += (c as f64 - want).powi(2) / want;
        }
        assert!(kept >= 2, "test design: only {kept} tokens kept");
        let crit = chi2_critical(kept - 1);
        assert!(stat < crit, "chi2 {stat} >= {crit} (df {})", kept - 1);
        kept
    }

    #[test]
    fn temperature_alone() {
        for t in [0.6, 1.0, 1.7] {
            let p = SamplingParams { temperature: t, ..plain() };
            assert_eq!(check_sampling(&LOGITS, &p, &[]), 12);
        }
    }

    #[test]
    fn top_k() {
        let p = SamplingParams { top_k: 5, ..plain() };
        assert_eq!(check_sampling(&LOGITS, &p, &[]), 5);
    }

    #[test]
    fn top_p() {
        let p = SamplingParams { top_p: 0.7, seed: Some(7), ..plain() };
        let kept = check_sampling(&LOGITS, &p, &[]);
        assert!(kept > 2 && kept < 12);
    }

    #[test]
    fn min_p() {
        let p = SamplingParams { min_p: 0.3, temperature: 0.9, ..plain() };
        let kept = check_sampling(&LOGITS, &p, &[]);
        assert!(kept > 2 && kept < 12);
    }

    #[test]
    fn repetition_penalty() {
        let p = SamplingParams { repetition_penalty: 1.5, repeat_last_n: 5, ..plain() };
        // 3 is outside the window of 5; the window holds negative (5) and positive logits.
        let recent = [3, 3, 5, 6, 0, 11, 2];
        check_sampling(&LOGITS, &p, &recent);
        let d = Sampler::new(p).unwrap().distribution(&LOGITS, &recent);
        assert_eq!(d[0].id, 3);
    }

    #[test]
    fn frequency_and_presence_penalties() {
        let p = SamplingParams { frequency_penalty: 0.5, presence_penalty: 0.3, seed: Some(99), ..plain() };
        check_sampling(&LOGITS, &p, &[1, 3, 3, 3, 6, 6, 9, 40]);
        let p = SamplingParams { frequency_penalty: -0.4, presence_penalty: 1.2, ..p };
        check_sampling(&LOGITS, &p, &[3, 3, 3, 6, 6, 9]);
    }

    #[test]
    fn logit_bias() {
        let p = SamplingParams {
            logit_bias: vec![(5, 2.5), (3, f32::NEG_INFINITY), (1, -0.7), (1, 0.2), (500, 9.0)],
            ..plain()
        };
        let mut p2 = p.clone();
        p2.logit_bias.pop(); // the reference does not ignore out-of-range ids
        let expected = reference(&LOGITS, &p2, &[]);
        assert_eq!(expected[3], 0.0);
        let d = Sampler::new(p).unwrap().distribution(&LOGITS, &[]);
        check_distribution(&LOGITS, &p2, &[]);
        assert_eq!(d.len(), 11);
        assert_eq!(check_sampling(&LOGITS, &p2, &[]), 11);
    }

    #[test]
    fn all_knobs_together() {
        let p = SamplingParams {
            temperature: 0.8,
            top_k: 9,
            top_p: 0.9,
            min_p: 0.1,
            repetition_penalty: 1.3,
            repeat_last_n: 4,
            frequency_penalty: 0.2,
            presence_penalty: 0.1,
            logit_bias: vec![(10, 1.0), (6, f32::NEG_INFINITY)],
            ..plain()
        };
        check_sampling(&LOGITS, &p, &[6, 0, 0, 2, 10]);
    }

    /// Pseudo-random logits, roughly normal with standard deviation `scale`.
    fn big_logits(n: usize, scale: f32, seed: u64) -> Vec<f32> {
        let mut r = SamplerRng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let s: f64 = (0..4).map(|_| r.next_f64()).sum::<f64>() - 2.0;
                (s as f32) * scale * 1.7
            })
            .collect()
    }

    #[test]
    fn full_vocab_paths_match_reference() {
        let logits = big_logits(50_000, 3.0, 5);
        let recent: Vec<u32> = (0..200).map(|i| (i * 7919) % 50_000).collect();
        let base = SamplingParams {
            repetition_penalty: 1.1,
            frequency_penalty: 0.1,
            logit_bias: vec![(17, 5.0), (123, f32::NEG_INFINITY)],
            ..plain()
        };
        for (top_k, top_p, min_p, t) in [
            (40, 0.95, 0.05, 0.7),
            (40, 1.0, 0.0, 1.0),
            (1000, 0.8, 0.0, 1.2),
            (0, 1.0, 0.05, 0.7),
            (0, 0.9, 0.0, 1.0),
            (0, 0.5, 0.01, 2.0),
            (0, 1.0, 0.0, 1.5),
            (60_000, 1.0, 0.0, 1.0),
        ] {
            let p = SamplingParams { top_k, top_p, min_p, temperature: t, ..base.clone() };
            check_distribution(&logits, &p, &recent);
        }
    }

    #[test]
    fn top_k_ties_go_to_lower_ids() {
        let logits: Vec<f32> = (0..1000).map(|i| (i % 7) as f32).collect();
        for k in [1, 3, 10, 143, 144, 300] {
            let p = SamplingParams { top_k: k, ..plain() };
            let d = Sampler::new(p.clone()).unwrap().distribution(&logits, &[]);
            let mut ids: Vec<u32> = d.iter().map(|c| c.id).collect();
            ids.sort_unstable();
            let mut want: Vec<u32> = (0..1000u32).collect();
            want.sort_by_key(|&i| (std::cmp::Reverse(i % 7), i));
            want.truncate(k);
            want.sort_unstable();
            assert_eq!(ids, want, "k {k}");
            check_distribution(&logits, &p, &[]);
        }
    }

    #[test]
    fn sampled_reports_prob_and_raw_logprob() {
        let p = SamplingParams { repetition_penalty: 2.0, top_k: 6, ..plain() };
        let mut s = Sampler::new(p).unwrap();
        let z: f64 = LOGITS.iter().map(|&x| (x as f64).exp()).sum();
        for _ in 0..50 {
            let t = s.sample(&LOGITS, &[3, 6]).unwrap();
            let d = s.distribution(&LOGITS, &[3, 6]);
            let c = d.iter().find(|c| c.id == t.id).unwrap();
            assert_eq!(c.prob, t.prob);
            let want = LOGITS[t.id as usize] as f64 - z.ln();
            assert!((t.logprob_raw as f64 - want).abs() < 1e-5);
        }
    }

    #[test]
    fn alternatives_are_the_raw_top_with_their_final_probabilities() {
        let z: f64 = LOGITS.iter().map(|&x| (x as f64).exp()).sum();
        let mut raw_order: Vec<u32> = (0..LOGITS.len() as u32).collect();
        raw_order.sort_by(|&a, &b| LOGITS[b as usize].total_cmp(&LOGITS[a as usize]));
        for p in [
            SamplingParams { top_logprobs: 5, top_k: 3, ..plain() },
            SamplingParams { top_logprobs: 5, temperature: 0.0, ..plain() },
            SamplingParams { top_logprobs: 12, top_k: 10, repetition_penalty: 3.0, top_p: 0.6, ..plain() },
        ] {
            let mut s = Sampler::new(p.clone()).unwrap();
            let recent = [3, 6];
            let t = s.sample(&LOGITS, &recent).unwrap();
            let d = s.distribution(&LOGITS, &recent);
            assert_eq!(t.top.iter().map(|a| a.id).collect::<Vec<_>>(), raw_order[..p.top_logprobs]);
            for a in &t.top {
                let want = LOGITS[a.id as usize] as f64 - z.ln();
                assert!((a.logprob as f64 - want).abs() < 1e-6);
                assert_eq!(a.prob, d.iter().find(|c| c.id == a.id).map_or(0.0, |c| c.prob));
            }
            assert!(t.top.iter().map(|a| a.prob as f64).sum::<f64>() <= 1.0 + 1e-6);
            assert!(t.top.iter().map(|a| (a.logprob as f64).exp()).sum::<f64>() <= 1.0 + 1e-6);

            // A shortlist of what `request` asks for reports the same alternatives.
            let LogitsRequest::Shortlist { top, ids } = s.request(&[], &recent) else { panic!("{p:?}") };
            assert!(top >= p.top_logprobs);
            let mut entries: Vec<(u32, f32)> =
                raw_order[..top.min(LOGITS.len())].iter().map(|&i| (i, LOGITS[i as usize])).collect();
            entries.extend(ids.iter().map(|&i| (i, LOGITS[i as usize])));
            let max = LOGITS.iter().copied().fold(f32::MIN, f32::max);
            let sum_exp = LOGITS.iter().map(|&x| (x - max).exp()).sum();
            let short = Logits::Shortlist(Shortlist { vocab: LOGITS.len(), entries, max, sum_exp });
            let mut s2 = Sampler::new(p.clone()).unwrap();
            let u = s2.sample_from(&short, &recent).unwrap();
            assert_eq!((u.id, u.prob), (t.id, t.prob));
            for (a, b) in u.top.iter().zip(&t.top) {
                assert_eq!((a.id, a.prob), (b.id, b.prob));
                assert!((a.logprob - b.logprob).abs() < 1e-5);
            }
        }
        assert!(Sampler::new(SamplingParams { top_logprobs: MAX_TOP_LOGPROBS + 1, ..plain() }).is_err());
        assert!(Sampler::new(plain()).unwrap().sample(&LOGITS, &[]).unwrap().top.is_empty());
    }

    #[test]
    fn greedy_argmax_ties_to_lowest_id_and_ignores_seed() {
        let logits = [0.5, 2.0, 1.0, 2.0, -3.0];
        for seed in [None, Some(1), Some(2), Some(u64::MAX)] {
            let p = SamplingParams { temperature: 0.0, seed, ..SamplingParams::default() };
            let mut s = Sampler::new(p.clone()).unwrap();
            for _ in 0..5 {
                let t = s.sample(&logits, &[]).unwrap();
                assert_eq!((t.id, t.prob), (1, 1.0));
            }
            assert_eq!(s.distribution(&logits, &[]), vec![Candidate { id: 1, prob: 1.0 }]);
            // Greedy sees bias and penalties.
            let p2 = SamplingParams { logit_bias: vec![(1, f32::NEG_INFINITY)], ..p.clone() };
            assert_eq!(Sampler::new(p2).unwrap().sample(&logits, &[]).unwrap().id, 3);
            let p3 = SamplingParams { presence_penalty: 1.5, ..p };
            assert_eq!(Sampler::new(p3).unwrap().sample(&logits, &[1, 3]).unwrap().id, 2);
        }
    }

    #[test]
    fn seeded_runs_are_deterministic() {
        let logits = big_logits(5000, 2.0, 3);
        let run = |seed: u64| {
            let mut s = Sampler::new(SamplingParams {
                seed: Some(seed),
                top_k: 0,
                top_p: 0.99,
                min_p: 0.0,
                temperature: 1.5,
                ..SamplingParams::default()
            })
            .unwrap();
            (0..200).map(|_| s.sample(&logits, &[]).unwrap().id).collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn set_params_takes_effect_at_next_call() {
        let p1 = SamplingParams { temperature: 1.0, ..plain() };
        let p2 = SamplingParams { temperature: 0.3, ..p1.clone() };
        let mut a = Sampler::new(p1).unwrap();
        let mut b = Sampler::new(p2.clone()).unwrap();
        let before = a.distribution(&LOGITS, &[]);
        let mut seq_a = Vec::new();
        let mut seq_b = Vec::new();
        for _ in 0..20 {
            a.sample(&LOGITS, &[]).unwrap();
            b.sample(&LOGITS, &[]).unwrap();
        }
        a.set_params(p2.clone()).unwrap();
        let after = a.distribution(&LOGITS, &[]);
        assert_ne!(before, after);
        assert_eq!(after, b.distribution(&LOGITS, &[]));
        // Same seed: the stream continues (one draw per token), so `a` now follows `b`.
        for _ in 0..50 {
            seq_a.push(a.sample(&LOGITS, &[]).unwrap());
            seq_b.push(b.sample(&LOGITS, &[]).unwrap());
        }
        assert_eq!(seq_a, seq_b);
        // A new seed re-seeds.
        a.set_params(SamplingParams { seed: Some(777), ..p2.clone() }).unwrap();
        let mut c = Sampler::new(SamplingParams { seed: Some(777), ..p2 }).unwrap();
        for _ in 0..50 {
            assert_eq!(a.sample(&LOGITS, &[]).unwrap(), c.sample(&LOGITS, &[]).unwrap());
        }
    }

    #[test]
    fn empty_or_banned_logits_are_errors() {
        let mut s = Sampler::new(plain()).unwrap();
        assert!(matches!(s.sample(&[], &[]), Err(Error::InvalidArgument(_))));
        assert!(s.distribution(&[], &[]).is_empty());
        let banned = [f32::NEG_INFINITY, f32::NAN, f32::NEG_INFINITY];
        assert!(matches!(s.sample(&banned, &[]), Err(Error::InvalidArgument(_))));
        s.set_params(SamplingParams { temperature: 0.0, ..plain() }).unwrap();
        assert!(matches!(s.sample(&banned, &[]), Err(Error::InvalidArgument(_))));
        s.set_params(SamplingParams { logit_bias: vec![(0, f32::NEG_INFINITY), (1, f32::NEG_INFINITY)], ..plain() })
            .unwrap();
        assert!(s.sample(&[1.0, 2.0], &[]).is_err());
        assert_eq!(s.sample(&[1.0, 2.0, 0.0], &[]).unwrap().id, 2);
    }

    #[test]
    fn non_finite_logits() {
        // NaN is banned, +inf dominates.
        let s = Sampler::new(plain()).unwrap();
        let d = s.distribution(&[f32::NAN, 1.0, f32::INFINITY, f32::INFINITY], &[]);
        assert_eq!(d, vec![Candidate { id: 2, prob: 0.5 }, Candidate { id: 3, prob: 0.5 }]);
    }

    #[test]
    fn validate_rejects_bad_values() {
        let cases: Vec<(&str, SamplingParams)> = vec![
            ("temperature", SamplingParams { temperature: -0.1, ..plain() }),
            ("temperature", SamplingParams { temperature: f32::NAN, ..plain() }),
            ("temperature", SamplingParams { temperature: f32::INFINITY, ..plain() }),
            ("top_p", SamplingParams { top_p: 0.0, ..plain() }),
            ("top_p", SamplingParams { top_p: 1.01, ..plain() }),
            ("top_p", SamplingParams { top_p: f32::NAN, ..plain() }),
            ("min_p", SamplingParams { min_p: -0.01, ..plain() }),
            ("min_p", SamplingParams { min_p: 1.5, ..plain() }),
            ("min_p", SamplingParams { min_p: f32::NAN, ..plain() }),
            ("repetition_penalty", SamplingParams { repetition_penalty: 0.0, ..plain() }),
            ("repetition_penalty", SamplingParams { repetition_penalty: -1.0, ..plain() }),
            ("repetition_penalty", SamplingParams { repetition_penalty: f32::INFINITY, ..plain() }),
            ("repetition_penalty", SamplingParams { repetition_penalty: f32::NAN, ..plain() }),
            ("frequency_penalty", SamplingParams { frequency_penalty: 2.5, ..plain() }),
            ("frequency_penalty", SamplingParams { frequency_penalty: f32::NAN, ..plain() }),
            ("presence_penalty", SamplingParams { presence_penalty: -2.01, ..plain() }),
            ("presence_penalty", SamplingParams { presence_penalty: f32::NEG_INFINITY, ..plain() }),
            ("logit_bias", SamplingParams { logit_bias: vec![(1, 0.5), (2, f32::NAN)], ..plain() }),
            ("logit_bias", SamplingParams { logit_bias: vec![(1, f32::INFINITY)], ..plain() }),
            ("max_tokens", SamplingParams { max_tokens: 0, ..plain() }),
            ("stop", SamplingParams { stop: vec!["a".into(), String::new()], ..plain() }),
        ];
        for (knob, p) in cases {
            match p.validate() {
                Err(Error::InvalidArgument(m)) => assert!(m.contains(knob), "{m}"),
                other => panic!("{knob}: {other:?}"),
            }
            assert!(Sampler::new(p.clone()).is_err());
            let mut s = Sampler::new(plain()).unwrap();
            assert!(s.set_params(p).is_err());
            assert_eq!(s.params(), &plain());
        }
        let ok = SamplingParams {
            temperature: 0.0,
            top_p: 1.0,
            min_p: 1.0,
            frequency_penalty: -2.0,
            presence_penalty: 2.0,
            logit_bias: vec![(0, f32::NEG_INFINITY), (1, -100.0)],
            ..plain()
        };
        ok.validate().unwrap();
        SamplingParams::default().validate().unwrap();
    }

    #[test]
    fn splitmix64_reference_values() {
        let mut s = 0u64;
        assert_eq!(splitmix64(&mut s), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(&mut s), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(splitmix64(&mut s), 0x06C4_5D18_8009_454F);
        let mut s = 1_234_567u64;
        let want = [
            6457827717110365317u64,
            3203168211198807973,
            9817491932198370423,
            4593380528125082431,
            16408922859458223821,
        ];
        for w in want {
            assert_eq!(splitmix64(&mut s), w);
        }
    }

    #[test]
    fn xoshiro256starstar_reference_values() {
        // Reference outputs of xoshiro256** from the state {1, 2, 3, 4}.
        let mut r = SamplerRng::from_state([1, 2, 3, 4]);
        let want = [
            11520u64,
            0,
            1509978240,
            1215971899390074240,
            1216172134540287360,
            607988272756665600,
            16172922978634559625,
            8476171486693032832,
            10595114339597558777,
            2904607092377533576,
        ];
        for w in want {
            assert_eq!(r.next_u64(), w);
        }
        // The seeded state is splitmix64's first four outputs.
        let mut sm = 0;
        let s: [u64; 4] = std::array::from_fn(|_| splitmix64(&mut sm));
        assert_eq!(SamplerRng::seed_from_u64(0), SamplerRng::from_state(s));
        assert_eq!(SamplerRng::from_state([0; 4]), SamplerRng::seed_from_u64(0));
    }

    #[test]
    fn next_f64_is_uniform() {
        let mut r = SamplerRng::seed_from_u64(2024);
        let n = 160_000;
        let mut bins = [0usize; 16];
        for _ in 0..n {
            let u = r.next_f64();
            assert!((0.0..1.0).contains(&u));
            bins[(u * 16.0) as usize] += 1;
        }
        let want = n as f64 / 16.0;
        let stat: f64 = bins.iter().map(|&c| (c as f64 - want).powi(2) / want).sum();
        assert!(stat < chi2_critical(15), "chi2 {stat}");
    }
}
