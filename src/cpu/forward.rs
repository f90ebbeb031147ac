//! The reference forward pass: plain f32 math over dequantized weights, one layer at a time.

use super::ops::{dot, matmul, rmsnorm, rope, silu, softmax, Matrix};
use crate::backend::{check_step, Backend, BackendStats, StepFuture};
use crate::error::{Error, Result};
use crate::gguf::TensorView;
use crate::model::{Config, Weights};
use crate::quant;
use crate::sampler::{Logits, LogitsRequest};

/// Prompts are processed this many tokens at a time, which bounds the scratch memory.
const PREFILL_CHUNK: usize = 64;

/// Keys and values of every layer for the positions seen so far: `k[layer]` holds
/// `len × kv_dim` floats. It grows as positions are added, up to `capacity`.
pub struct KvCache {
    capacity: usize,
    len: usize,
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl KvCache {
    fn new(n_layers: usize, capacity: usize) -> Self {
        KvCache { capacity, len: 0, k: vec![Vec::new(); n_layers], v: vec![Vec::new(); n_layers] }
    }
}

/// The model on the CPU: f32 weights and the KV cache.
pub struct CpuModel {
    config: Config,
    weights: Weights<Matrix>,
    cache: KvCache,
    steps: u64,
}

impl CpuModel {
    /// Dequantize every tensor to f32. `capacity` is the KV cache's size in positions.
    pub fn new(config: &Config, tensors: &Weights<TensorView>, capacity: usize) -> Result<CpuModel> {
        let weights = tensors.try_map(|t| dequantize(*t))?;
        let cache = KvCache::new(config.n_layers, capacity);
        Ok(CpuModel { config: config.clone(), weights, cache, steps: 0 })
    }

    /// Run one chunk of tokens at positions `cache.len ..`; returns the last token's hidden state.
    fn forward_chunk(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        let c = &self.config;
        let w = &self.weights;
        let n = tokens.len();
        let (d, qd, kvd, hd) = (c.d_model, c.q_dim(), c.kv_dim(), c.head_dim);
        let start = self.cache.len;

        // Embeddings.
        let mut x = Vec::with_capacity(n * d);
        for &t in tokens {
            if t as usize >= c.vocab_size {
                return Err(Error::InvalidArgument(format!("token id {t} is outside the vocabulary")));
            }
            x.extend_from_slice(w.embed.row(t as usize));
        }

        let mut h = vec![0.0; n * d];
        let mut q = vec![0.0; n * qd];
        let mut k = vec![0.0; n * kvd];
        let mut v = vec![0.0; n * kvd];
        let mut attn = vec![0.0; n * qd];
        let mut proj = vec![0.0; n * d];
        let mut gate = vec![0.0; n * c.ffn_dim];
        let mut up = vec![0.0; n * c.ffn_dim];
        let mut scores = vec![0.0; start + n];
        let freqs = w.rope_freqs.as_ref().map(|m| m.data.as_slice());
        let group = c.n_heads / c.n_kv_heads;
        let scale = 1.0 / (hd as f32).sqrt();

        for (li, l) in w.layers.iter().enumerate() {
            // Attention block.
            rmsnorm(&x, &l.attn_norm.data, c.rms_eps, &mut h);
            matmul(&l.wq, &h, &mut q);
            matmul(&l.wk, &h, &mut k);
            matmul(&l.wv, &h, &mut v);
            for (out, bias) in [(&mut q, &l.bq), (&mut k, &l.bk), (&mut v, &l.bv)] {
                if let Some(b) = bias {
                    for row in out.chunks_exact_mut(b.data.len()) {
                        row.iter_mut().zip(&b.data).for_each(|(o, b)| *o += b);
                    }
                }
            }
            for t in 0..n {
                let rope_head = |head: &mut [f32]| {
                    rope(head, start + t, c.rope_dim, c.rope_base, c.rope_linear_scale, freqs, c.rope_style)
                };
                q[t * qd..(t + 1) * qd].chunks_exact_mut(hd).for_each(rope_head);
                k[t * kvd..(t + 1) * kvd].chunks_exact_mut(hd).for_each(rope_head);
            }
            let (kc, vc) = (&mut self.cache.k[li], &mut self.cache.v[li]);
            kc.truncate(start * kvd);
            vc.truncate(start * kvd);
            kc.extend_from_slice(&k);
            vc.extend_from_slice(&v);

            // Grouped-query causal attention: token t sees positions 0 ..= start + t.
            for t in 0..n {
                let seen = start + t + 1;
                for head in 0..c.n_heads {
                    let kvh = head / group;
                    let qh = &q[t * qd + head * hd..][..hd];
                    for (p, s) in scores[..seen].iter_mut().enumerate() {
                        *s = dot(qh, &kc[p * kvd + kvh * hd..][..hd]) * scale;
                    }
                    softmax(&mut scores[..seen]);
                    let out = &mut attn[t * qd + head * hd..][..hd];
                    out.fill(0.0);
                    for (p, &s) in scores[..seen].iter().enumerate() {
                        let vp = &vc[p * kvd + kvh * hd..][..hd];
                        out.iter_mut().zip(vp).for_each(|(o, v)| *o += s * v);
                    }
                }
            }
            matmul(&l.wo, &attn, &mut proj);
            x.iter_mut().zip(&proj).for_each(|(x, p)| *x += p);

            // SwiGLU feed-forward block.
            rmsnorm(&x, &l.ffn_norm.data, c.rms_eps, &mut h);
            matmul(&l.w_gate, &h, &mut gate);
            matmul(&l.w_up, &h, &mut up);
            gate.iter_mut().zip(&up).for_each(|(g, u)| *g = silu(*g) * u);
            matmul(&l.w_down, &gate, &mut proj);
            x.iter_mut().zip(&proj).for_each(|(x, p)| *x += p);
        }
        self.cache.len = start + n;
        Ok(x.split_off((n - 1) * d))
    }
}

impl Backend for CpuModel {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn capacity(&self) -> usize {
        self.cache.capacity
    }

    fn cached(&self) -> usize {
        self.cache.len
    }

    fn truncate(&mut self, len: usize) {
        self.cache.len = self.cache.len.min(len);
    }

    /// Always the whole vector: it is already in memory. Runs at once.
    fn forward<'a>(&'a mut self, tokens: &'a [u32], _want: &'a LogitsRequest) -> StepFuture<'a> {
        Box::pin(std::future::ready(self.run(tokens)))
    }

    fn stats(&self) -> BackendStats {
        let kv: usize = self.cache.k.iter().chain(&self.cache.v).map(|c| c.capacity()).sum();
        BackendStats {
            steps: self.steps,
            weight_bytes: self.weights.all().iter().map(|m| m.data.len() as u64 * 4).sum(),
            kv_bytes: kv as u64 * 4,
            ..BackendStats::default()
        }
    }
}

impl CpuModel {
    /// Run `tokens` in chunks and return the last one's logits.
    fn run(&mut self, tokens: &[u32]) -> Result<Logits> {
        check_step(tokens, self.cache.len, self.cache.capacity)?;
        let start = self.cache.len;
        let mut last = Vec::new();
        for chunk in tokens.chunks(PREFILL_CHUNK) {
            match self.forward_chunk(chunk) {
                Ok(x) => last = x,
                Err(e) => {
                    self.cache.len = start;
                    return Err(e);
                }
            }
            self.steps += 1;
        }
        let c = &self.config;
        let mut normed = vec![0.0; c.d_model];
        rmsnorm(&last, &self.weights.out_norm.data, c.rms_eps, &mut normed);
        let mut logits = vec![0.0; c.vocab_size];
        matmul(self.weights.lm_head(), &normed, &mut logits);
        Ok(Logits::Full(logits))
    }
}

/// A GGUF tensor as an f32 matrix: `dims[0]` values per row.
fn dequantize(t: TensorView) -> Result<Matrix> {
    let cols = t.info.dims[0] as usize;
    let n = t.info.elements() as usize;
    let mut data = Vec::new();
    data.try_reserve_exact(n)
        .map_err(|_| Error::OutOfMemory(format!("{} needs {} MB as f32", t.info.name, (n * 4) >> 20)))?;
    data.resize(n, 0.0);
    quant::dequantize(t.info.dtype, t.data, &mut data)?;
    Ok(Matrix { rows: n / cols, cols, data })
}
