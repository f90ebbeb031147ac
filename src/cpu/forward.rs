//! The CPU forward pass, one layer at a time: f32 math, with the matrix products either on
//! weights kept in their quantized blocks (integer dot products, llama.cpp's scheme: the fast
//! default) or on weights dequantized to f32 (the exact reference the GPU kernels are checked
//! against).

use super::ops::{dot, glu, matmul, rmsnorm, rmsnorm_in_place, rope, softmax, Matrix};
use super::quantized::{matmul_q, QMatrix};
use crate::backend::{check_places, check_step, AllFuture, Backend, BackendStats, Place, StepFuture};
use crate::error::{Error, Result};
use crate::gguf::{TensorInfo, TensorView};
use crate::model::{Config, Weights};
use crate::quant;
use crate::sampler::{Logits, LogitsRequest};

/// Prompts are processed this many tokens at a time, which bounds the scratch memory.
const PREFILL_CHUNK: usize = 64;

/// Keys and values of every layer for the slots written so far: `k[layer]` holds a row of
/// `kv_dim` floats per slot. It grows as slots are written, up to `capacity`; `len` slots
/// count as cached.
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

/// A weight as the CPU holds it.
pub enum CpuWeight {
    /// Dequantized (vectors always; matrices on the exact path or without an integer kernel).
    F32(Matrix),
    /// A matrix in its file's blocks (any type but F32; `QMatrix::from_tensor`).
    Quantized(QMatrix),
}

impl CpuWeight {
    fn matmul(&self, x: &[f32], out: &mut [f32]) {
        match self {
            CpuWeight::F32(m) => matmul(m, x, out),
            CpuWeight::Quantized(m) => matmul_q(m, x, out),
        }
    }

    /// Row `r` as f32 (the embedding lookup).
    fn row_into(&self, r: usize, out: &mut [f32]) {
        match self {
            CpuWeight::F32(m) => out.copy_from_slice(m.row(r)),
            CpuWeight::Quantized(m) => m.row_f32(r, out),
        }
    }

    /// The values of a vector (norm weights, biases): vectors are always dequantized.
    fn values(&self) -> &[f32] {
        match self {
            CpuWeight::F32(m) => &m.data,
            CpuWeight::Quantized(_) => unreachable!("vectors are kept as f32"),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            CpuWeight::F32(m) => m.data.len() * 4,
            CpuWeight::Quantized(m) => m.bytes(),
        }
    }
}

/// The model on the CPU: its weights and the KV cache.
pub struct CpuModel {
    config: Config,
    weights: Weights<CpuWeight>,
    cache: KvCache,
    act: Activations,
    steps: u64,
}

/// The activations of a step, kept between steps so a decoded token allocates nothing but the
/// logits it hands to the sampler.
#[derive(Default)]
struct Activations {
    x: Vec<f32>,
    h: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn: Vec<f32>,
    proj: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    scores: Vec<f32>,
    /// The places of a plain step's tokens.
    places: Vec<Place>,
}

/// `v` as `len` zeros, reusing its memory.
fn zeroed(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    v.clear();
    v.resize(len, 0.0);
    v
}

impl CpuModel {
    /// Keep quantized and 16-bit matrices in their blocks (integer dot products on 8-bit inputs,
    /// as llama.cpp computes them; F16/BF16 widened a row at a time); dequantize the vectors and
    /// F32 matrices to f32. `capacity` is the KV cache's size in positions.
    pub fn new(config: &Config, tensors: &Weights<TensorView>, capacity: usize) -> Result<CpuModel> {
        Self::build(config, tensors, capacity, true)
    }

    /// The exact reference: every weight dequantized to f32, all products in f32.
    pub fn reference(config: &Config, tensors: &Weights<TensorView>, capacity: usize) -> Result<CpuModel> {
        Self::build(config, tensors, capacity, false)
    }

    fn build(config: &Config, tensors: &Weights<TensorView>, capacity: usize, quantized: bool) -> Result<CpuModel> {
        let infos = tensors.try_map(|t| Ok(t.info))?;
        let mut load = CpuLoad::new(config, &infos, capacity, quantized);
        for (i, t) in tensors.all().into_iter().enumerate() {
            load.place(i, 0, t.data)?;
        }
        load.finish()
    }

    /// Run one chunk of tokens at slots `cache.len ..` of the one sequence the cache holds.
    fn forward_chunk(&mut self, tokens: &[u32]) -> Result<()> {
        let mut places = std::mem::take(&mut self.act.places);
        places.clear();
        places.extend((self.cache.len..).take(tokens.len()).map(Place::linear));
        let result = self.forward_places(tokens, &places);
        self.act.places = places;
        result
    }

    /// Run `tokens[i]` at `places[i]`; leaves the hidden states in `act.x`. The cache then
    /// counts at least up to the last slot written.
    fn forward_places(&mut self, tokens: &[u32], places: &[Place]) -> Result<()> {
        let CpuModel { config: c, weights: w, cache, act, .. } = self;
        let n = tokens.len();
        let (d, qd, kvd, hd) = (c.d_model, c.q_dim(), c.kv_dim(), c.head_dim);
        let slots = places.iter().map(|p| p.slot + 1).max().unwrap_or(0);

        // Embeddings.
        let x = zeroed(&mut act.x, n * d);
        for (&t, row) in tokens.iter().zip(x.chunks_exact_mut(d)) {
            if t as usize >= c.vocab_size {
                return Err(Error::InvalidArgument(format!("token id {t} is outside the vocabulary")));
            }
            w.embed.row_into(t as usize, row);
            if c.embed_scale != 1.0 {
                row.iter_mut().for_each(|v| *v *= c.embed_scale);
            }
        }

        let h = zeroed(&mut act.h, n * d);
        let q = zeroed(&mut act.q, n * qd);
        let k = zeroed(&mut act.k, n * kvd);
        let v = zeroed(&mut act.v, n * kvd);
        let attn = zeroed(&mut act.attn, n * qd);
        let proj = zeroed(&mut act.proj, n * d);
        let gate = zeroed(&mut act.gate, n * c.ffn_dim);
        let up = zeroed(&mut act.up, n * c.ffn_dim);
        let scores = zeroed(&mut act.scores, slots);
        let freqs = w.rope_freqs.as_ref().map(CpuWeight::values);
        let group = c.n_heads / c.n_kv_heads;
        let scale = c.attn_scale;

        for (li, l) in w.layers.iter().enumerate() {
            // Attention block.
            rmsnorm(x, l.attn_norm.values(), c.rms_eps, h);
            l.wq.matmul(h, q);
            l.wk.matmul(h, k);
            l.wv.matmul(h, v);
            for (out, bias) in [(&mut *q, &l.bq), (&mut *k, &l.bk), (&mut *v, &l.bv)] {
                if let Some(b) = bias {
                    let b = b.values();
                    for row in out.chunks_exact_mut(b.len()) {
                        row.iter_mut().zip(b).for_each(|(o, b)| *o += b);
                    }
                }
            }
            if let (Some(qn), Some(kn)) = (&l.q_norm, &l.k_norm) {
                rmsnorm_in_place(q, qn.values(), c.rms_eps);
                rmsnorm_in_place(k, kn.values(), c.rms_eps);
            }
            let (base, linear_scale) = c.rope_of(li);
            for (t, place) in places.iter().enumerate() {
                let rope_head =
                    |head: &mut [f32]| rope(head, place.pos(), c.rope_dim, base, linear_scale, freqs, c.rope_style);
                q[t * qd..(t + 1) * qd].chunks_exact_mut(hd).for_each(rope_head);
                k[t * kvd..(t + 1) * kvd].chunks_exact_mut(hd).for_each(rope_head);
            }
            let (kc, vc) = (&mut cache.k[li], &mut cache.v[li]);
            if kc.len() < slots * kvd {
                kc.resize(slots * kvd, 0.0);
                vc.resize(slots * kvd, 0.0);
            }
            for (t, place) in places.iter().enumerate() {
                kc[place.slot * kvd..][..kvd].copy_from_slice(&k[t * kvd..][..kvd]);
                vc[place.slot * kvd..][..kvd].copy_from_slice(&v[t * kvd..][..kvd]);
            }

            // Grouped-query causal attention: each token sees its place's slots in position
            // order (a plain step's token t: positions 0 ..= start + t), or only the last
            // `window` positions on a sliding-window layer.
            for (t, place) in places.iter().enumerate() {
                let (shared, own) = place.visible(c.window(li));
                let scores = &mut scores[..shared.len() + own.len()];
                for head in 0..c.n_heads {
                    let kvh = head / group;
                    let qh = &q[t * qd + head * hd..][..hd];
                    for (p, s) in shared.clone().chain(own.clone()).zip(scores.iter_mut()) {
                        *s = dot(qh, &kc[p * kvd + kvh * hd..][..hd]) * scale;
                    }
                    softmax(scores);
                    let out = &mut attn[t * qd + head * hd..][..hd];
                    out.fill(0.0);
                    for (p, &s) in shared.clone().chain(own.clone()).zip(scores.iter()) {
                        let vp = &vc[p * kvd + kvh * hd..][..hd];
                        out.iter_mut().zip(vp).for_each(|(o, v)| *o += s * v);
                    }
                }
            }
            l.wo.matmul(attn, proj);
            if let Some(norm) = &l.post_attn_norm {
                rmsnorm_in_place(proj, norm.values(), c.rms_eps);
            }
            x.iter_mut().zip(proj.iter()).for_each(|(x, p)| *x += p);

            // Gated feed-forward block (SwiGLU, or GELU for Gemma).
            rmsnorm(x, l.ffn_norm.values(), c.rms_eps, h);
            l.w_gate.matmul(h, gate);
            l.w_up.matmul(h, up);
            gate.iter_mut().zip(up.iter()).for_each(|(g, u)| *g = glu(c.activation, *g, *u));
            l.w_down.matmul(gate, proj);
            if let Some(norm) = &l.post_ffn_norm {
                rmsnorm_in_place(proj, norm.values(), c.rms_eps);
            }
            x.iter_mut().zip(proj.iter()).for_each(|(x, p)| *x += p);
        }
        cache.len = cache.len.max(slots);
        Ok(())
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

    fn forward_all<'a>(&'a mut self, tokens: &'a [u32]) -> AllFuture<'a> {
        Box::pin(std::future::ready(self.run_all(tokens)))
    }

    fn forward_placed<'a>(&'a mut self, tokens: &'a [u32], places: &'a [Place]) -> AllFuture<'a> {
        Box::pin(std::future::ready(self.run_placed(tokens, places)))
    }

    fn stats(&self) -> BackendStats {
        let kv: usize = self.cache.k.iter().chain(&self.cache.v).map(|c| c.capacity()).sum();
        BackendStats {
            steps: self.steps,
            weight_bytes: self.weights.all().iter().map(|m| m.bytes() as u64).sum(),
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
        for chunk in tokens.chunks(PREFILL_CHUNK) {
            if let Err(e) = self.forward_chunk(chunk) {
                self.cache.len = start;
                return Err(e);
            }
            self.steps += 1;
        }
        let last = self.act.x.len() / self.config.d_model - 1;
        Ok(Logits::Full(self.head(last..last + 1)))
    }

    /// Run `tokens` in chunks and return every one's logits.
    fn run_all(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
        check_step(tokens, self.cache.len, self.cache.capacity)?;
        let (start, vocab) = (self.cache.len, self.config.vocab_size);
        let mut all = Vec::with_capacity(tokens.len());
        for chunk in tokens.chunks(PREFILL_CHUNK) {
            if let Err(e) = self.forward_chunk(chunk) {
                self.cache.len = start;
                return Err(e);
            }
            self.steps += 1;
            all.extend(self.head(0..chunk.len()).chunks_exact(vocab).map(<[f32]>::to_vec));
        }
        Ok(all)
    }

    /// Run `tokens` at `places` in one chunk and return every one's logits.
    fn run_placed(&mut self, tokens: &[u32], places: &[Place]) -> Result<Vec<Vec<f32>>> {
        check_places(tokens, places, self.cache.capacity)?;
        let len = self.cache.len;
        if let Err(e) = self.forward_places(tokens, places) {
            self.cache.len = len;
            return Err(e);
        }
        self.steps += 1;
        Ok(self.head(0..tokens.len()).chunks_exact(self.config.vocab_size).map(<[f32]>::to_vec).collect())
    }

    /// The output head over rows `rows` of the last chunk's residual stream: their logits, one
    /// vocabulary-sized row after another.
    fn head(&mut self, rows: std::ops::Range<usize>) -> Vec<f32> {
        let c = &self.config;
        let d = c.d_model;
        let x = &self.act.x[rows.start * d..rows.end * d];
        let mut normed = vec![0.0; x.len()];
        for (row, out) in x.chunks_exact(d).zip(normed.chunks_exact_mut(d)) {
            rmsnorm(row, self.weights.out_norm.values(), c.rms_eps, out);
        }
        let mut logits = vec![0.0; rows.len() * c.vocab_size];
        self.weights.lm_head().matmul(&normed, &mut logits);
        if let Some(cap) = c.final_softcap {
            logits.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh());
        }
        logits
    }
}

/// A model being loaded onto the CPU, tensor by tensor as the file's bytes stream in: a tensor's
/// bytes are gathered until it is whole, converted to the CPU's form (blocks kept, or f32) and
/// dropped, so a load holds the weights plus at most the tensor in flight, never the file.
pub struct CpuLoad {
    config: Config,
    capacity: usize,
    quantized: bool,
    tensors: Vec<TensorInfo>,
    /// The indices of `tensors`, in the model's structure.
    layout: Weights<usize>,
    carry: Vec<Vec<u8>>,
    got: Vec<u64>,
    done: Vec<Option<CpuWeight>>,
}

impl CpuLoad {
    /// `tensors` in the order of `Weights::all` (the `i` of `place`); `quantized` keeps blocks
    /// (else the exact f32 reference).
    pub fn new(config: &Config, tensors: &Weights<&TensorInfo>, capacity: usize, quantized: bool) -> CpuLoad {
        let mut n = 0;
        let layout = tensors
            .try_map(|_| {
                n += 1;
                Ok(n - 1)
            })
            .expect("counting cannot fail");
        let tensors: Vec<TensorInfo> = tensors.all().into_iter().map(|t| (*t).clone()).collect();
        CpuLoad {
            config: config.clone(),
            capacity,
            quantized,
            carry: vec![Vec::new(); n],
            got: vec![0; n],
            done: (0..n).map(|_| None).collect(),
            tensors,
            layout,
        }
    }

    /// What the weights will hold in memory, and the largest tensor gathered on the way.
    pub fn estimate(tensors: &Weights<&TensorInfo>, quantized: bool) -> (u64, u64) {
        let all = tensors.all();
        let held = all
            .iter()
            .map(|t| match quantized && t.dims.len() == 2 {
                true => QMatrix::bytes_for(t).unwrap_or(t.elements() * 4),
                false => t.elements() * 4,
            })
            .sum();
        (held, all.iter().map(|t| t.size).max().unwrap_or(0))
    }

    /// `bytes` of tensor `i`, `at` bytes into it; pieces of one tensor come in order.
    pub fn place(&mut self, i: usize, at: u64, bytes: &[u8]) -> Result<()> {
        let info = &self.tensors[i];
        if at != self.got[i] || at + bytes.len() as u64 > info.size {
            return Err(Error::BadModel(format!("{}: bytes out of order", info.name)));
        }
        self.got[i] += bytes.len() as u64;
        let whole = self.got[i] == info.size;
        // A tensor that comes in one piece is converted from it, without gathering.
        let data = if at == 0 && whole {
            bytes
        } else {
            let carry = &mut self.carry[i];
            if carry.is_empty() {
                carry
                    .try_reserve_exact(info.size as usize)
                    .map_err(|_| Error::OutOfMemory(format!("{} needs {} MB", info.name, info.size >> 20)))?;
            }
            carry.extend_from_slice(bytes);
            if !whole {
                return Ok(());
            }
            carry
        };
        let t = TensorView { info, data };
        let weight = match self.quantized && info.dims.len() == 2 {
            true => QMatrix::from_tensor(t).map(CpuWeight::Quantized),
            false => None,
        };
        self.done[i] = Some(match weight {
            Some(w) => w,
            None => CpuWeight::F32(dequantize(t)?),
        });
        self.carry[i] = Vec::new();
        Ok(())
    }

    /// Every tensor has arrived: the model.
    pub fn finish(mut self) -> Result<CpuModel> {
        let weights = self.layout.try_map(|&i| {
            let t = &self.tensors[i];
            self.done[i].take().ok_or_else(|| {
                Error::BadModel(format!("tensor {}: {} of its {} bytes arrived", t.name, self.got[i], t.size))
            })
        })?;
        let cache = KvCache::new(self.config.n_layers, self.capacity);
        Ok(CpuModel { config: self.config, weights, cache, act: Activations::default(), steps: 0 })
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
