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

use super::generate::{common_prefix, Decoder};
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
/// pass, choose with `dec`'s sampler within its grammar. The context then holds `last` and the
/// accepted drafts; the grammar is where it was (the chosen tokens are committed as shown).
pub(crate) async fn speculate(
    backend: &mut dyn Backend,
    context: &mut Vec<u32>,
    draft: Option<&mut Engine>,
    spec: &mut Speculation,
    dec: &mut Decoder<'_>,
    last: u32,
    limit: usize,
) -> Result<Round> {
    let base = context.len();
    let room = backend.capacity().saturating_sub(base + 1);
    let k = spec.k.min(limit).min(room);
    let mut seq = context.clone();
    seq.push(last);
    // The grammar (which has `last`) follows the drafts, then goes back to where it was.
    let mut ahead = Ahead { dec, n: 0 };
    let drafts = match (&mut spec.draft_sampler, draft) {
        (Some(ds), Some(draft)) if k > 0 => propose(draft, ds, &mut ahead, &seq, k).await,
        _ => Ok(lookup(&seq, spec.lookup.unwrap_or(0), k).into_iter().map(|d| (d, None)).collect()),
    };
    let drafts: Vec<(u32, Option<Vec<Candidate>>)> = ahead.rewind().and(drafts)?;
    if drafts.is_empty() {
        // Nothing to verify (no n-gram matched, or no room): a plain step, whose read-out is
        // the sampler's shortlist rather than a whole vocabulary of logits.
        let want = dec.request(context, &[last]);
        let logits = run(backend, context, &[last], &want).await?;
        let chosen = vec![dec.choose(logits, context)?];
        return Ok(Round { chosen, drafted: 0, accepted: 0 });
    }
    let mut tokens = vec![last];
    tokens.extend(drafts.iter().map(|d| d.0));
    let rows = run_all(backend, context, &tokens).await;
    let verified = rows.and_then(|rows| verify(&mut ahead, &rows, &drafts, &context[..base + 1 + drafts.len()]));
    ahead.rewind()?;
    let (chosen, accepted, ended) = verified?;
    if ended || accepted < drafts.len() {
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

/// The rejection scheme over the target's `rows` (row i follows `last` and drafts `..i`;
/// `text` ends with `last` and the drafts): the chosen tokens, how many drafts were accepted,
/// and whether generation ends at the last accepted one (nothing after it is drawn).
fn verify(
    ahead: &mut Ahead<'_, '_>,
    rows: &[Vec<f32>],
    drafts: &[(u32, Option<Vec<Candidate>>)],
    text: &[u32],
) -> Result<(Vec<Sampled>, usize, bool)> {
    // The penalties' window at row i: the text up to and including draft i - 1.
    let recent = |i: usize| &text[..text.len() - drafts.len() + i];
    let mut chosen = Vec::new();
    for (i, (d, q)) in drafts.iter().enumerate() {
        let row = ahead.masked(&rows[i])?;
        let p = target_distribution(&ahead.dec.sampler, &row, recent(i))?;
        let (pd, qd) = (prob(&p, *d), q.as_ref().map_or(1.0, |q| prob(q, *d)));
        if (ahead.dec.sampler.uniform() as f32) * qd < pd {
            chosen.push(ahead.dec.sampler.describe(&row, *d, &p));
            if !ahead.follow(*d)? {
                return Ok((chosen, i + 1, true));
            }
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
        let id = ahead.dec.sampler.draw_candidate(if residual.is_empty() { &p } else { &residual });
        chosen.push(ahead.dec.sampler.describe(&row, id, &p));
        return Ok((chosen, i, false));
    }
    let row = ahead.masked(&rows[drafts.len()])?;
    let p = target_distribution(&ahead.dec.sampler, &row, recent(drafts.len()))?;
    let id = ahead.dec.sampler.draw_candidate(&p);
    chosen.push(ahead.dec.sampler.describe(&row, id, &p));
    Ok((chosen, drafts.len(), false))
}

/// The decoder's grammar run ahead of what is shown, over `last` and then each draft, and
/// rolled back after: the mask at each position is the one plain decoding would apply there.
struct Ahead<'d, 't> {
    dec: &'d mut Decoder<'t>,
    /// Tokens committed to the grammar beyond what is shown.
    n: usize,
}

impl Ahead<'_, '_> {
    /// `row` within the grammar at this point (a copy; `row` itself without a grammar).
    fn masked<'r>(&mut self, row: &'r [f32]) -> Result<std::borrow::Cow<'r, [f32]>> {
        match &mut self.dec.constraint {
            Some(c) => {
                let mut m = row.to_vec();
                c.mask_row(&mut m)?;
                Ok(m.into())
            }
            None => Ok(row.into()),
        }
    }

    /// Follow an accepted token; `false` when generation ends with it (an end token, or the
    /// grammar is complete after it).
    fn follow(&mut self, id: u32) -> Result<bool> {
        if self.dec.ends_at(id) {
            return Ok(false);
        }
        match &mut self.dec.constraint {
            Some(c) => {
                c.commit(id)?;
                self.n += 1;
                Ok(!c.is_done())
            }
            None => Ok(true),
        }
    }

    /// Back to what is shown.
    fn rewind(&mut self) -> Result<()> {
        if let Some(c) = &mut self.dec.constraint {
            c.rollback(std::mem::take(&mut self.n))?;
        }
        Ok(())
    }
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

/// The draft model's `k` tokens after `seq`, each with the distribution it was drawn from
/// (within the grammar, which `ahead` follows over them).
async fn propose(
    draft: &mut Engine,
    sampler: &mut Sampler,
    ahead: &mut Ahead<'_, '_>,
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
        let want = match ahead.dec.constraint {
            Some(_) => LogitsRequest::Full,
            None => sampler.request(&draft.context, &new),
        };
        let logits = run(&mut *draft.backend, &mut draft.context, &new, &want).await?;
        let dense = match logits {
            Logits::Full(v) => v,
            Logits::Shortlist(s) => s.dense(),
        };
        let q = sampler.distribution(&ahead.masked(&dense)?, &draft.context);
        if q.is_empty() {
            break;
        }
        let d = sampler.draw_candidate(&q);
        out.push((d, Some(q)));
        if out.len() == k || !ahead.follow(d)? {
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
