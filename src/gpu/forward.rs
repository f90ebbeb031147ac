//! The forward pass on the GPU. At load every kernel launch of a step is recorded once, with
//! its bind group and parameters; a step then writes the token ids and `(n, start)`, replays
//! the launches into one compute pass, adds the logits read-out, and submits once:
//!
//! ```text
//! embed → L × [rmsnorm → q,k,v (+bias) → rope → kv write → attention → o-proj (+= x)
//!              → rmsnorm → gate, up → swiglu → down (+= x)] → rmsnorm(last) → lm_head → read-out
//! ```
//!
//! The residual adds are folded into the o-proj and down matmuls (`accumulate`). A prompt runs
//! in chunks of [`PREFILL_CHUNK`] tokens through the tiled matrix × matrix kernel; a decode
//! step (one token) through the matrix × vector kernel.

use super::buffers::{storage, storage_with, GpuMatrix};
use super::device::Gpu;
use super::kernels::{Kernels, StepParams, MAX_HEAD_DIM};
use super::kv_cache::KvCache;
use super::ops::{Launch, Recorder, Shape};
use super::shortlist::Reader;
use crate::backend::{check_step, Backend, BackendStats, StepFuture};
use crate::cpu::ops::rope_cos_sin;
use crate::error::{Error, Result};
use crate::gguf::TensorView;
use crate::model::{Config, Weights};
use crate::quant;
use crate::sampler::{Logits, LogitsRequest};

/// Prompt tokens per step.
pub const PREFILL_CHUNK: usize = 128;

/// The activations of one step, sized for [`PREFILL_CHUNK`] tokens.
struct Activations {
    tokens: wgpu::Buffer,
    x: wgpu::Buffer,
    h: wgpu::Buffer,
    q: wgpu::Buffer,
    k: wgpu::Buffer,
    v: wgpu::Buffer,
    attn: wgpu::Buffer,
    gate: wgpu::Buffer,
    up: wgpu::Buffer,
    last: wgpu::Buffer,
    logits: wgpu::Buffer,
}

impl Activations {
    fn new(gpu: &Gpu, c: &Config) -> Activations {
        let n = PREFILL_CHUNK as u64;
        let f = |label: &str, per_token: usize| storage(gpu, label, n * per_token as u64 * 4);
        Activations {
            tokens: storage(gpu, "tokens", n * 4),
            x: f("x", c.d_model),
            h: f("h", c.d_model),
            q: f("q", c.q_dim()),
            k: f("k", c.kv_dim()),
            v: f("v", c.kv_dim()),
            attn: f("attn", c.q_dim()),
            gate: f("gate", c.ffn_dim),
            up: f("up", c.ffn_dim),
            last: storage(gpu, "last", c.d_model as u64 * 4),
            logits: storage(gpu, "logits", c.vocab_size as u64 * 4),
        }
    }
}

/// The model on the GPU: quantized weights, the KV cache and the recorded step.
pub struct GpuModel {
    gpu: Gpu,
    step: wgpu::Buffer,
    /// Launches of the transformer body, then of the output head (last chunk only).
    body: Vec<Launch>,
    head: Vec<Launch>,
    reader: Reader,
    cache: KvCache,
    vocab: usize,
    stats: BackendStats,
    weights: Weights<GpuTensor>,
    act: Activations,
    /// Kept alive for the bind groups.
    _params: wgpu::Buffer,
    _table: wgpu::Buffer,
}

/// A weight on the GPU: a quantized matrix, or an f32 vector (norms, biases).
pub enum GpuTensor {
    Matrix(GpuMatrix),
    Vector(wgpu::Buffer),
}

impl GpuTensor {
    fn matrix(&self) -> &GpuMatrix {
        match self {
            GpuTensor::Matrix(m) => m,
            GpuTensor::Vector(_) => unreachable!("Weights::from_gguf checked the shapes"),
        }
    }

    fn vector(&self) -> &wgpu::Buffer {
        match self {
            GpuTensor::Vector(b) => b,
            GpuTensor::Matrix(_) => unreachable!("Weights::from_gguf checked the shapes"),
        }
    }

    fn bytes(&self) -> u64 {
        match self {
            GpuTensor::Matrix(m) => m.bytes(),
            GpuTensor::Vector(b) => b.size(),
        }
    }
}

impl GpuModel {
    /// Upload the weights and record the step. `capacity` is the KV cache's size in positions.
    pub async fn load(gpu: Gpu, c: &Config, tensors: &Weights<TensorView<'_>>, capacity: usize) -> Result<GpuModel> {
        if c.head_dim > MAX_HEAD_DIM || c.rope_dim % 2 != 0 || c.n_kv_heads == 0 || c.n_heads % c.n_kv_heads != 0 {
            return Err(Error::UnsupportedModel(format!(
                "the GPU kernels need head_dim <= {MAX_HEAD_DIM} and whole query groups (head_dim {}, {} heads, {} KV heads)",
                c.head_dim, c.n_heads, c.n_kv_heads
            )));
        }
        let weights = gpu
            .scoped("the weights", || {
                tensors.try_map(|t| {
                    if t.info.dims.len() == 1 {
                        let mut v = vec![0f32; t.info.elements() as usize];
                        quant::dequantize(t.info.dtype, t.data, &mut v)?;
                        Ok(GpuTensor::Vector(storage_with(&gpu, &t.info.name, bytemuck::cast_slice(&v))))
                    } else {
                        GpuMatrix::upload(&gpu, t).map(GpuTensor::Matrix)
                    }
                })
            })
            .await??;
        let formats: Vec<_> = weights
            .all()
            .into_iter()
            .filter_map(|t| match t {
                GpuTensor::Matrix(m) => Some(m.dtype),
                GpuTensor::Vector(_) => None,
            })
            .collect();
        let kernels = Kernels::new(&gpu, &formats).await?;
        let (cache, act, table) = gpu
            .scoped("the KV cache", || -> Result<_> {
                let cache = KvCache::new(&gpu, c.n_layers, c.kv_dim(), capacity)?;
                Ok((cache, Activations::new(&gpu, c), rope_table(&gpu, c, tensors, capacity)?))
            })
            .await??;
        let step = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("step"),
            size: 16,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });

        let mut rec = Recorder::new(&gpu, &kernels);
        record_body(&mut rec, c, &weights, &act, &cache, &table);
        let n_body = rec.recorded();
        record_head(&mut rec, c, &weights, &act);
        let (mut body, params) = rec.finish(&step);
        let head = body.split_off(n_body);
        let reader = Reader::new(&gpu, &kernels, &act.logits, c.vocab_size);
        gpu.wait()?;

        Ok(GpuModel {
            step,
            body,
            head,
            reader,
            cache,
            vocab: c.vocab_size,
            stats: BackendStats::default(),
            _params: params,
            weights,
            _table: table,
            act,
            gpu,
        })
    }

    /// [`GpuModel::load`], waiting for it (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_blocking(gpu: Gpu, c: &Config, tensors: &Weights<TensorView<'_>>, capacity: usize) -> Result<GpuModel> {
        pollster::block_on(GpuModel::load(gpu, c, tensors, capacity))
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Run one chunk (at most [`PREFILL_CHUNK`] tokens) at the next positions; with `want`,
    /// also run the output head and read the logits back. One submission.
    async fn step(&mut self, tokens: &[u32], want: Option<&LogitsRequest>) -> Result<Option<Logits>> {
        debug_assert!(!tokens.is_empty() && tokens.len() <= PREFILL_CHUNK);
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= self.vocab) {
            return Err(Error::InvalidArgument(format!("token id {bad} is outside the vocabulary")));
        }
        let n = tokens.len() as u32;
        let start = self.cache.len as u32;
        let q = &self.gpu.queue;
        q.write_buffer(&self.step, 0, bytemuck::bytes_of(&StepParams { n, start, _pad: [0; 2] }));
        q.write_buffer(&self.act.tokens, 0, bytemuck::cast_slice(tokens));

        let mut encoder = self.gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        let mut dispatches = self.body.len() as u64;
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            for l in &self.body {
                l.record(&mut pass, n);
            }
            if want.is_some() {
                for l in &self.head {
                    l.record(&mut pass, n);
                }
                dispatches += self.head.len() as u64;
            }
        }
        let pending = want.map(|w| {
            let (d, pending) = self.reader.record(&self.gpu, &mut encoder, w);
            dispatches += d;
            pending
        });
        self.gpu.queue.submit([encoder.finish()]);
        self.stats.steps += 1;
        self.stats.submissions += 1;
        self.stats.dispatches += dispatches;
        self.cache.len += tokens.len();
        let Some(pending) = pending else {
            self.gpu.check()?;
            return Ok(None);
        };
        let logits = self.reader.read(&self.gpu, &pending).await?;
        self.stats.read_back_bytes += self.reader.bytes(&pending);
        Ok(Some(logits))
    }

    /// Run `tokens` in chunks; the last chunk reads the logits back.
    async fn run(&mut self, tokens: &[u32], want: &LogitsRequest) -> Result<Logits> {
        check_step(tokens, self.cache.len, self.cache.capacity)?;
        let chunks: Vec<&[u32]> = tokens.chunks(PREFILL_CHUNK).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            if let Some(logits) = self.step(chunk, last.then_some(want)).await? {
                return Ok(logits);
            }
        }
        unreachable!("the last chunk reads the logits")
    }
}

impl GpuModel {
    /// Work counters, and the memory the weights and the KV cache hold.
    pub fn stats(&self) -> BackendStats {
        let weight_bytes = self.weights.all().iter().map(|t| t.bytes()).sum();
        BackendStats { weight_bytes, kv_bytes: self.cache.bytes(), ..self.stats }
    }
}

impl Backend for GpuModel {
    fn name(&self) -> &'static str {
        "gpu"
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

    fn forward<'a>(&'a mut self, tokens: &'a [u32], want: &'a LogitsRequest) -> StepFuture<'a> {
        Box::pin(async move {
            let start = self.cache.len;
            let result = self.run(tokens, want).await;
            if result.is_err() {
                self.cache.len = start;
            }
            result
        })
    }

    fn stats(&self) -> BackendStats {
        GpuModel::stats(self)
    }
}

/// cos/sin of every (position, pair) up to the cache's capacity, from the CPU's f64 formula.
fn rope_table(gpu: &Gpu, c: &Config, tensors: &Weights<TensorView>, capacity: usize) -> Result<wgpu::Buffer> {
    let half = c.rope_dim / 2;
    let mut factors = vec![1f32; half];
    if let Some(t) = &tensors.rope_freqs {
        quant::dequantize(t.info.dtype, t.data, &mut factors)?;
    }
    let mut table = Vec::with_capacity(capacity * half * 2);
    for pos in 0..capacity {
        for (i, &factor) in factors.iter().enumerate() {
            let (cos, sin) = rope_cos_sin(pos, i, c.rope_dim, c.rope_base, c.rope_linear_scale, factor);
            table.extend([cos, sin]);
        }
    }
    Ok(storage_with(gpu, "rope table", bytemuck::cast_slice(&table)))
}

/// The transformer body: embedding and every layer, for any number of tokens.
fn record_body(
    rec: &mut Recorder,
    c: &Config,
    w: &Weights<GpuTensor>,
    a: &Activations,
    cache: &KvCache,
    table: &wgpu::Buffer,
) {
    let shape = Shape::of(c);
    rec.embed(w.embed.matrix(), &a.tokens, &a.h, &a.x);
    for (li, l) in w.layers.iter().enumerate() {
        rec.rmsnorm(&a.x, l.attn_norm.vector(), &a.h, c.d_model, c.rms_eps, false);
        for (m, bias, out) in [(&l.wq, &l.bq, &a.q), (&l.wk, &l.bk, &a.k), (&l.wv, &l.bv, &a.v)] {
            rec.matmul(m.matrix(), &a.h, out, false, false);
            if let Some(b) = bias {
                rec.add_bias(out, b.vector(), m.matrix().rows);
            }
        }
        rec.rope(&a.q, &a.k, table, &shape);
        rec.kv_write(&a.k, &a.v, &cache.k[li], &cache.v[li], c.kv_dim());
        rec.attention(&a.q, &cache.k[li], &cache.v[li], &a.attn, &shape);
        rec.matmul(l.wo.matrix(), &a.attn, &a.x, true, false);
        rec.rmsnorm(&a.x, l.ffn_norm.vector(), &a.h, c.d_model, c.rms_eps, false);
        rec.matmul(l.w_gate.matrix(), &a.h, &a.gate, false, false);
        rec.matmul(l.w_up.matrix(), &a.h, &a.up, false, false);
        rec.swiglu(&a.gate, &a.up, c.ffn_dim);
        rec.matmul(l.w_down.matrix(), &a.gate, &a.x, true, false);
    }
}

/// The output head: final norm of the last token and the logits.
fn record_head(rec: &mut Recorder, c: &Config, w: &Weights<GpuTensor>, a: &Activations) {
    rec.rmsnorm(&a.x, w.out_norm.vector(), &a.last, c.d_model, c.rms_eps, true);
    rec.matmul(w.lm_head().matrix(), &a.last, &a.logits, false, true);
}
