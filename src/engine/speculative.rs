//! Speculative decoding (Leviathan et al. 2023; Chen et al. 2023): a cheap drafter proposes k
//! tokens, the target runs the last chosen token and the k drafts in one pass
//! ([`Backend::forward_all`]), keeps the drafts it accepts and rolls its KV cache back past
//! the rest.
//!
//! Acceptance keeps the target's distribution exactly: draft d, drawn from the drafter's final
//! distribution q, is kept with probability min(1, p(d) / q(d)), p being the target's final
//! distribution (every sampling knob applied, the penalties' window including the drafts before
//! it); at the first rejection the token is drawn from max(0, p − q) renormalized, and when every
//! draft is kept one more token is drawn from the target's distribution after the last. Greedy
//! distributions are one-hot, so this keeps a draft exactly when it is the target's argmax: the
//! output is plain greedy decoding's, token for token.
//!
//! Drafters: a second, smaller model with the same vocabulary ([`Engine::set_draft`]; its own
//! KV cache, synced to the generated text by common prefix each step), or prompt lookup (no
//! second model: the tokens that followed the last earlier occurrence of the text's final
//! n-gram, as llama.cpp's lookup decoding does; q is then one-hot at each draft).

use super::generate::common_prefix;
use super::*;
use crate::sampler::{Candidate, Sampled, MAX_DRAFT_TOKENS};

/// Tokens drafted in the first step when `draft_tokens` is not set.
const START_DRAFT: usize = 4;

/// How one generation drafts.
pub(crate) struct Speculation {
    lookup: Option<usize>,
    /// The draft model's sampler: the request's knobs, its own RNG stream.
    draft_sampler: Option<Sampler>,
    /// Tokens to draft next step, and whether that adapts to the acceptance.
    k: usize,
    adaptive: bool,
}

impl Speculation {
    /// New knobs for the draft model's sampler too (it drafts with the request's knobs).
    pub(crate) fn retune(&mut self, p: &SamplingParams) -> Result<()> {
        match &mut self.draft_sampler {
            Some(ds) => ds.set_params(SamplingParams { seed: ds.params().seed, ..p.clone() }),
            None => Ok(()),
        }
    }
}

/// One speculative step's outcome.
pub(crate) struct Round {
    /// The tokens it chose, in order: accepted drafts, then one drawn from the target.
    pub chosen: Vec<Sampled>,
    pub drafted: usize,
    pub accepted: usize,
}

impl Engine {
    /// Attach a draft model for speculative decoding (or detach it with `None`). It must share
    /// the target's vocabulary, token for token; it keeps its own KV cache.
    pub fn set_draft(&mut self, draft: Option<Engine>) -> Result<()> {
        if let Some(d) = &draft {
            let (t, dt) = (&self.tokenizer, &d.tokenizer);
            if d.config.vocab_size != self.config.vocab_size || dt.vocab_size() != t.vocab_size() {
                return Err(Error::InvalidArgument(format!(
                    "the draft model's vocabulary ({} tokens) differs from the target's ({})",
                    dt.vocab_size(),
                    t.vocab_size()
                )));
            }
            if let Some(id) = (0..t.vocab_size() as u32).find(|&id| t.token_bytes(id) != dt.token_bytes(id)) {
                return Err(Error::InvalidArgument(format!(
                    "the draft model's vocabulary differs from the target's at token {id} ({:?} vs {:?})",
                    String::from_utf8_lossy(dt.token_bytes(id)),
                    String::from_utf8_lossy(t.token_bytes(id))
                )));
            }
        }
        self.draft = draft.map(Box::new);
        Ok(())
    }

    /// The attached draft model.
    pub fn draft(&self) -> Option<&Engine> {
        self.draft.as_deref()
    }

    /// How a generation with `params` drafts: `None` for plain decoding.
    pub(crate) fn speculation(&self, params: &SamplingParams) -> Result<Option<Speculation>> {
        let with_model = self.draft.is_some() && params.draft_tokens != Some(0);
        if !with_model && params.lookup.is_none() {
            return Ok(None);
        }
        let draft_sampler = match with_model {
            // Its own stream: the drafts' randomness must not be the acceptance tests'.
            true => {
                Some(Sampler::new(SamplingParams { seed: params.seed.map(|s| s ^ 0x5eed_d4af), ..params.clone() })?)
            }
            false => None,
        };
        let k = params.draft_tokens.filter(|&k| k > 0).unwrap_or(START_DRAFT);
        Ok(Some(Speculation {
            lookup: params.lookup.filter(|_| !with_model),
            draft_sampler,
            k,
            adaptive: params.draft_tokens.is_none(),
        }))
    }
}

/// One step of the target (`backend`, whose cache holds `context`) from `last`, the latest
/// chosen token (not yet run): draft at most `limit` tokens, verify them with `last` in one
/// pass, choose. The context then holds `last` and the accepted drafts.
pub(crate) async fn speculate(
    backend: &mut dyn Backend,
    context: &mut Vec<u32>,
    draft: Option<&mut Engine>,
    spec: &mut Speculation,
    sampler: &mut Sampler,
    last: u32,
    limit: usize,
) -> Result<Round> {
    let base = context.len();
    let room = backend.capacity().saturating_sub(base + 1);
    let k = spec.k.min(limit).min(room);
    let mut seq = context.clone();
    seq.push(last);
    // (draft, the distribution it was drawn from; `None`: one-hot)
    let drafts: Vec<(u32, Option<Vec<Candidate>>)> = match (&mut spec.draft_sampler, draft) {
        (Some(ds), Some(draft)) if k > 0 => propose(draft, ds, &seq, k).await?,
        _ => lookup(&seq, spec.lookup.unwrap_or(0), k).into_iter().map(|d| (d, None)).collect(),
    };
    if drafts.is_empty() {
        // Nothing to verify (no n-gram matched, or no room): a plain step, whose read-out is
        // the sampler's shortlist rather than a whole vocabulary of logits.
        let want = sampler.request(context, &[last]);
        let logits = run(backend, context, &[last], &want).await?;
        let chosen = vec![sampler.sample_from(&logits, context)?];
        return Ok(Round { chosen, drafted: 0, accepted: 0 });
    }
    let mut tokens = vec![last];
    tokens.extend(drafts.iter().map(|d| d.0));
    let rows = run_all(backend, context, &tokens).await?;

    let mut chosen = Vec::new();
    let mut accepted = 0;
    for (i, (d, q)) in drafts.iter().enumerate() {
        let p = target_distribution(sampler, &rows[i], &context[..base + 1 + i])?;
        let (pd, qd) = (prob(&p, *d), q.as_ref().map_or(1.0, |q| prob(q, *d)));
        if (sampler.uniform() as f32) * qd < pd {
            chosen.push(sampler.describe(&rows[i], *d, &p));
            accepted += 1;
            continue;
        }
        let residual: Vec<Candidate> = p
            .iter()
            .map(|c| {
                let qc = q.as_ref().map_or((c.id == *d) as u32 as f32, |q| prob(q, c.id));
                Candidate { id: c.id, prob: (c.prob - qc).max(0.0) }
            })
            .filter(|c| c.prob > 0.0)
            .collect();
        let id = sampler.draw_candidate(if residual.is_empty() { &p } else { &residual });
        chosen.push(sampler.describe(&rows[i], id, &p));
        break;
    }
    if accepted == drafts.len() {
        let p = target_distribution(sampler, &rows[accepted], &context[..base + 1 + accepted])?;
        let id = sampler.draw_candidate(&p);
        chosen.push(sampler.describe(&rows[accepted], id, &p));
    } else {
        backend.truncate(base + 1 + accepted);
        context.truncate(base + 1 + accepted);
    }
    if spec.adaptive {
        spec.k = match accepted == drafts.len() {
            true => (spec.k + 2).min(MAX_DRAFT_TOKENS),
            false => (accepted + 1).clamp(2, MAX_DRAFT_TOKENS),
        };
    }
    Ok(Round { chosen, drafted: drafts.len(), accepted })
}

fn prob(dist: &[Candidate], id: u32) -> f32 {
    dist.iter().find(|c| c.id == id).map_or(0.0, |c| c.prob)
}

fn target_distribution(sampler: &Sampler, logits: &[f32], recent: &[u32]) -> Result<Vec<Candidate>> {
    let p = sampler.distribution(logits, recent);
    match p.is_empty() {
        true => Err(Error::InvalidArgument(
            "sample: every token is banned (all logits are -inf or NaN after logit_bias and penalties)".into(),
        )),
        false => Ok(p),
    }
}

/// The draft model's `k` tokens after `seq`, each with the distribution it was drawn from.
async fn propose(
    draft: &mut Engine,
    sampler: &mut Sampler,
    seq: &[u32],
    k: usize,
) -> Result<Vec<(u32, Option<Vec<Candidate>>)>> {
    let k = k.min(draft.backend.capacity().saturating_sub(seq.len()));
    let mut out = Vec::new();
    if k == 0 {
        return Ok(out);
    }
    // Keep what the draft's cache shares with the text; it runs at least one token.
    let keep = common_prefix(&draft.context, seq).min(seq.len() - 1);
    draft.backend.truncate(keep);
    draft.context.truncate(keep);
    let mut new = seq[keep..].to_vec();
    loop {
        let want = sampler.request(&draft.context, &new);
        let logits = run(&mut *draft.backend, &mut draft.context, &new, &want).await?;
        let dense = match logits {
            Logits::Full(v) => v,
            Logits::Shortlist(s) => s.dense(),
        };
        let q = sampler.distribution(&dense, &draft.context);
        if q.is_empty() {
            break;
        }
        let d = sampler.draw_candidate(&q);
        out.push((d, Some(q)));
        if out.len() == k {
            break;
        }
        new = vec![d];
    }
    Ok(out)
}

/// Prompt lookup: the (at most `k`) tokens that followed the latest earlier occurrence of
/// `seq`'s last n tokens, for the largest n from `max_n` down to 1 that occurs.
pub(crate) fn lookup(seq: &[u32], max_n: usize, k: usize) -> Vec<u32> {
    if k == 0 {
        return Vec::new();
    }
    for n in (1..=max_n.min(seq.len().saturating_sub(1))).rev() {
        let tail = &seq[seq.len() - n..];
        if let Some(start) = (0..seq.len() - n).rev().find(|&s| &seq[s..s + n] == tail) {
            let from = start + n;
            return seq[from..(from + k).min(seq.len())].to_vec();
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_continues_the_latest_earlier_occurrence_of_the_longest_ngram() {
        //          0  1  2  3  4  5  6  7  8  9
        let seq = [5, 6, 7, 8, 1, 6, 7, 9, 5, 6, 7];
        // "6 7" last occurred at 5..7 (followed by 9 5 6 7); "5 6 7" at 0..3 (followed by 8 1).
        assert_eq!(lookup(&seq, 3, 2), vec![8, 1]);
        assert_eq!(lookup(&seq, 2, 3), vec![9, 5, 6]);
        assert_eq!(lookup(&seq, 1, 8), vec![9, 5, 6, 7]);
        assert_eq!(lookup(&[1, 2, 3], 2, 4), Vec::<u32>::new());
        assert_eq!(lookup(&seq, 3, 0), Vec::<u32>::new());
        assert_eq!(lookup(&[4], 3, 2), Vec::<u32>::new());
        // A run repeats itself.
        assert_eq!(lookup(&[3, 3, 3], 2, 5), vec![3]);
    }
}
