//! Perplexity, computed the way llama.cpp's `llama-perplexity` does (without `--ppl-stride`):
//! the text's tokens (BOS first when the model adds one) are cut into `floor(n / context)`
//! chunks of `context` tokens, the tail dropped; each chunk runs from an empty cache, its first
//! token replaced by BOS when the model adds one; only the second half is scored: the logits at
//! position j (for j in context/2 ..= context-2) predict token j + 1. PPL = exp(mean NLL), the
//! NLL's log-sum-exp in f64; its ± is PPL · sqrt((mean(NLL²) − mean(NLL)²) / (count − 1)).

use web_time::Instant;

use super::*;

/// Scored positions fed to [`Backend::forward_all`] at once: bounds the logits held at a time
/// (64 × the vocabulary × 4 bytes: 39 MB for 151,936 tokens).
const SCORE_PIECE: usize = 64;

/// How to evaluate.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EvaluateOptions {
    /// Tokens per chunk (llama-perplexity's `-c`); at most the engine's context size.
    pub context_size: usize,
    /// Evaluate only the first chunks (llama-perplexity's `--chunks`).
    pub max_chunks: Option<usize>,
}

impl Default for EvaluateOptions {
    fn default() -> Self {
        EvaluateOptions { context_size: 512, max_chunks: None }
    }
}

/// One evaluated chunk.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ChunkPerplexity {
    pub index: usize,
    /// Of this chunk's scored tokens alone.
    pub ppl: f64,
    /// Of every chunk so far (what llama-perplexity prints as `[k]X`).
    pub cumulative_ppl: f64,
    /// Chunks this evaluation will run.
    pub of: usize,
}

/// The outcome of [`Engine::evaluate_async`].
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Perplexity {
    pub ppl: f64,
    pub ppl_stderr: f64,
    /// The text's tokens, and those scored.
    pub tokens: usize,
    pub scored_tokens: usize,
    pub context_size: usize,
    pub chunks: Vec<ChunkPerplexity>,
    pub secs: f64,
}

impl Engine {
    /// [`Engine::evaluate_async`], waiting for it (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn evaluate(
        &mut self,
        text: &str,
        options: &EvaluateOptions,
        on_chunk: &mut dyn FnMut(&ChunkPerplexity) -> bool,
    ) -> Result<Perplexity> {
        pollster::block_on(self.evaluate_async(text, options, on_chunk))
    }

    /// The perplexity of `text` (see the module documentation), reporting each chunk to
    /// `on_chunk` as it ends; it returns `false` to stop (the result then covers the chunks run).
    pub async fn evaluate_async(
        &mut self,
        text: &str,
        options: &EvaluateOptions,
        on_chunk: &mut dyn FnMut(&ChunkPerplexity) -> bool,
    ) -> Result<Perplexity> {
        let n_ctx = options.context_size;
        let capacity = self.backend.capacity();
        if n_ctx < 4 {
            return Err(Error::InvalidArgument(format!("contextSize {n_ctx}: must be at least 4")));
        }
        if n_ctx > capacity {
            return Err(Error::ContextOverflow { needed: n_ctx, capacity });
        }
        if options.max_chunks == Some(0) {
            return Err(Error::InvalidArgument("maxChunks 0: must be at least 1".into()));
        }
        let tokens = self.encode_prompt(text)?;
        if tokens.len() < 2 * n_ctx {
            return Err(Error::InvalidArgument(format!(
                "the text has {} tokens; perplexity with a context of {n_ctx} needs at least {} (two chunks' worth, as llama-perplexity asks)",
                tokens.len(),
                2 * n_ctx
            )));
        }
        let n_chunks = (tokens.len() / n_ctx).min(options.max_chunks.unwrap_or(usize::MAX));
        let bos = self.tokenizer.add_bos().then(|| self.tokenizer.bos_id()).flatten();
        let first = n_ctx / 2;
        let started = Instant::now();
        let (mut sum, mut sum_sq, mut count) = (0f64, 0f64, 0usize);
        let mut chunks = Vec::new();
        for k in 0..n_chunks {
            if k > 0 && !self.go_on().await {
                break;
            }
            let mut chunk = tokens[k * n_ctx..(k + 1) * n_ctx].to_vec();
            if let Some(b) = bos {
                chunk[0] = b;
            }
            self.reset();
            // The first half only fills the cache: ask for as little as possible.
            let least = LogitsRequest::Shortlist { top: 1, ids: Vec::new() };
            run(&mut *self.backend, &mut self.context, &chunk[..first], &least).await?;
            let (mut chunk_sum, mut chunk_count) = (0f64, 0usize);
            // Positions first ..= n_ctx - 2 predict the token after them.
            let mut at = first;
            while at < n_ctx - 1 {
                let end = (at + SCORE_PIECE).min(n_ctx - 1);
                let logits = run_all(&mut *self.backend, &mut self.context, &chunk[at..end]).await?;
                for (j, row) in (at..end).zip(&logits) {
                    let nll = nll(row, chunk[j + 1]);
                    chunk_sum += nll;
                    sum_sq += nll * nll;
                }
                chunk_count += end - at;
                at = end;
            }
            sum += chunk_sum;
            count += chunk_count;
            let c = ChunkPerplexity {
                index: k,
                ppl: (chunk_sum / chunk_count as f64).exp(),
                cumulative_ppl: (sum / count as f64).exp(),
                of: n_chunks,
            };
            let go_on = on_chunk(&c);
            chunks.push(c);
            if !go_on {
                break;
            }
        }
        let mean = sum / count.max(1) as f64;
        let ppl = mean.exp();
        let variance = (sum_sq / count.max(1) as f64 - mean * mean).max(0.0);
        let ppl_stderr = ppl * (variance / (count.max(2) - 1) as f64).sqrt();
        Ok(Perplexity {
            ppl,
            ppl_stderr,
            tokens: tokens.len(),
            scored_tokens: count,
            context_size: n_ctx,
            chunks,
            secs: started.elapsed().as_secs_f64(),
        })
    }
}

impl Engine {
    /// [`Engine::logits_async`], waiting for it (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn logits(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        pollster::block_on(self.logits_async(tokens))
    }

    /// The model's raw logits for the token after `tokens` (the whole vocabulary), reusing the
    /// cached prefix as a generation does.
    pub async fn logits_async(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        if tokens.is_empty() {
            return Err(Error::InvalidArgument("logits: no tokens".into()));
        }
        let reused = generate::common_prefix(&self.context, tokens).min(tokens.len() - 1);
        self.backend.truncate(reused);
        self.context.truncate(reused);
        match run(&mut *self.backend, &mut self.context, &tokens[reused..], &LogitsRequest::Full).await? {
            Logits::Full(v) => Ok(v),
            Logits::Shortlist(_) => {
                Err(Error::InvalidArgument("the backend answered a full request with a shortlist".into()))
            }
        }
    }
}

/// −log softmax(logits)[target], the sum in f64 as llama-perplexity computes it.
fn nll(logits: &[f32], target: u32) -> f64 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let sum: f64 = logits.iter().map(|&x| ((x - max) as f64).exp()).sum();
    -((logits[target as usize] - max) as f64 - sum.ln())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nll_is_minus_log_softmax() {
        let logits = [1.0f32, 2.0, 3.0];
        let z: f64 = logits.iter().map(|&x| (x as f64).exp()).sum();
        for t in 0..3 {
            let want = -((logits[t] as f64).exp() / z).ln();
            assert!((nll(&logits, t as u32) - want).abs() < 1e-12);
        }
        // A uniform distribution over 4 tokens: log 4.
        assert!((nll(&[0.5; 4], 2) - 4f64.ln()).abs() < 1e-12);
    }
}
