//! The forward pass on the GPU. At load every kernel launch of a step is recorded once, with
//! its bind group and parameters; a step then writes the token ids and `(n, start)`, replays
//! the launches into one compute pass, adds the logits read-out, and submits once. Six
//! launches a layer (Llama, Qwen2):
//!
//! ```text
//! embed → L × [ qkv = Wqkv · rmsnorm(x) (+ bias)      one matmul for q|k|v, norm in its prologue
//!               rope_kv                               rotate q; rotate k and append k, v to the cache
//!               attention
//!               x += Wo · attn                        the residual add in the matmul's epilogue
//!               ffn = swiglu(Wgu · rmsnorm(x))        one matmul for gate|up, SwiGLU in its epilogue
//!               x += Wdown · ffn ]
//!       → logits = Wout · rmsnorm(x[last]) → read-out
//! ```
//!
//! Gemma 3 adds three: `head_norm` (RMSNorm of each q and k head) before `rope_kv`, and the
//! post-attention and post-FFN norms, `x += rmsnorm(W · …)` (`add_norm`), where the residual add
//! was in the matmul's epilogue; its embedding is scaled in `embed`, its gate uses GELU, its
//! sliding-window layers pass a window to `attention` and use their own RoPE table.
//!
//! A prompt runs in chunks of [`PREFILL_CHUNK`] tokens through the tiled matrix × matrix
//! kernel; a decode step (one token) through the matrix × vector kernel.

use super::buffers::{storage, storage_with, GpuMatrix, Stacked};
use super::device::Gpu;
use super::kernels::{Kernels, StepParams, MAX_HEAD_DIM};
use super::kv_cache::KvCache;
use super::ops::{Input, Launch, MatMul, Recorder, Shape};
use super::shortlist::Reader;
use crate::backend::{check_step, Backend, BackendStats, StepFuture};
use crate::cpu::ops::rope_cos_sin;
use crate::error::{Error, Result};
use crate::gguf::TensorView;
use crate::model::{Activation, Config, Layer, Weights};
use crate::quant::{self, DType};
use crate::sampler::{Logits, LogitsRequest};

/// Prompt tokens per step.
pub const PREFILL_CHUNK: usize = 128;

/// The activations of one step, sized for [`PREFILL_CHUNK`] tokens.
struct Activations {
    tokens: wgpu::Buffer,
    /// The residual stream.
    x: wgpu::Buffer,
    qkv: wgpu::Buffer,
    /// The rotated queries.
    q: wgpu::Buffer,
    attn: wgpu::Buffer,
    /// A projection's output before its post-norm (Gemma 3).
    proj: wgpu::Buffer,
    /// silu(gate) * up, or gate|up when the down projection applies SwiGLU.
    ffn: wgpu::Buffer,
    logits: wgpu::Buffer,
}

impl Activations {
    fn new(gpu: &Gpu, c: &Config) -> Activations {
        let n = PREFILL_CHUNK as u64;
        let f = |label: &str, per_token: usize| storage(gpu, label, n * per_token as u64 * 4);
        Activations {
            tokens: storage(gpu, "tokens", n * 4),
            x: f("x", c.d_model),
            qkv: f("qkv", c.q_dim() + 2 * c.kv_dim()),
            q: f("q", c.q_dim()),
            attn: f("attn", c.q_dim()),
            proj: if c.post_norms { f("proj", c.d_model) } else { storage(gpu, "proj", 4) },
            ffn: f("ffn", 2 * c.ffn_dim),
            logits: storage(gpu, "logits", c.vocab_size as u64 * 4),
        }
    }

    fn bytes(&self) -> u64 {
        [&self.tokens, &self.x, &self.qkv, &self.q, &self.attn, &self.proj, &self.ffn, &self.logits]
            .iter()
            .map(|b| b.size())
            .sum()
    }
}

/// One layer's weights on the GPU, stacked for the fused launches.
struct GpuLayer {
    attn_norm: wgpu::Buffer,
    qkv: Stacked,
    /// q|k|v biases (zeros where a model has none for one of them).
    qkv_bias: Option<wgpu::Buffer>,
    wo: GpuMatrix,
    ffn_norm: wgpu::Buffer,
    gate_up: GateUp,
    down: GpuMatrix,
    /// Per-head q and k norms (Gemma 3).
    qk_norm: Option<(wgpu::Buffer, wgpu::Buffer)>,
    post_attn_norm: Option<wgpu::Buffer>,
    post_ffn_norm: Option<wgpu::Buffer>,
}

/// Gate and up: one interleaved matrix whose epilogue applies SwiGLU, or, when they come in two
/// formats, a stack whose SwiGLU the down projection's prologue applies.
enum GateUp {
    Interleaved(GpuMatrix),
    Stacked(Stacked),
}

impl GateUp {
    fn upload(gpu: &Gpu, gate: &TensorView, up: &TensorView, i: usize) -> Result<GateUp> {
        let name = format!("blk.{i}.gate_up");
        if gate.info.dtype != up.info.dtype {
            return Ok(GateUp::Stacked(Stacked::upload(gpu, &name, &[gate, up])?));
        }
        let cols = gate.info.dims[0] as usize;
        let rows = gate.info.elements() as usize / cols;
        GpuMatrix::interleaved(gpu, &name, gate.info.dtype, (rows, cols), gate.data, up.data).map(GateUp::Interleaved)
    }

    fn matrices(&self) -> Vec<&GpuMatrix> {
        match self {
            GateUp::Interleaved(m) => vec![m],
            GateUp::Stacked(s) => s.mats.iter().map(|(_, m)| m).collect(),
        }
    }
}

impl GpuLayer {
    fn upload(gpu: &Gpu, l: &Layer<TensorView>, i: usize) -> Result<GpuLayer> {
        let qkv_bias = match (&l.bq, &l.bk, &l.bv) {
            (None, None, None) => None,
            _ => {
                let mut all = Vec::new();
                for (b, w) in [(&l.bq, &l.wq), (&l.bk, &l.wk), (&l.bv, &l.wv)] {
                    let rows = w.info.dims[1] as usize;
                    let mut v = vec![0f32; rows];
                    if let Some(b) = b {
                        quant::dequantize(b.info.dtype, b.data, &mut v)?;
                    }
                    all.extend(v);
                }
                Some(storage_with(gpu, &format!("blk.{i}.qkv_bias"), bytemuck::cast_slice(&all)))
            }
        };
        Ok(GpuLayer {
            attn_norm: vector(gpu, &l.attn_norm)?,
            qkv: Stacked::upload(gpu, &format!("blk.{i}.qkv"), &[&l.wq, &l.wk, &l.wv])?,
            qkv_bias,
            wo: GpuMatrix::upload(gpu, &l.wo)?,
            ffn_norm: vector(gpu, &l.ffn_norm)?,
            gate_up: GateUp::upload(gpu, &l.w_gate, &l.w_up, i)?,
            down: GpuMatrix::upload(gpu, &l.w_down)?,
            qk_norm: match (&l.q_norm, &l.k_norm) {
                (Some(q), Some(k)) => Some((vector(gpu, q)?, vector(gpu, k)?)),
                _ => None,
            },
            post_attn_norm: l.post_attn_norm.as_ref().map(|t| vector(gpu, t)).transpose()?,
            post_ffn_norm: l.post_ffn_norm.as_ref().map(|t| vector(gpu, t)).transpose()?,
        })
    }

    fn bytes(&self) -> u64 {
        let optional = self.qk_norm.iter().flat_map(|(q, k)| [q, k]);
        let vectors = [&self.attn_norm, &self.ffn_norm]
            .into_iter()
            .chain(optional)
            .chain(&self.post_attn_norm)
            .chain(&self.post_ffn_norm)
            .chain(&self.qkv_bias)
            .map(|b| b.size())
            .sum::<u64>();
        let gate_up: u64 = self.gate_up.matrices().iter().map(|m| m.bytes()).sum();
        vectors + self.qkv.bytes() + self.wo.bytes() + gate_up + self.down.bytes()
    }
}

/// A 1-D weight (a norm) as f32.
fn vector(gpu: &Gpu, t: &TensorView) -> Result<wgpu::Buffer> {
    let mut v = vec![0f32; t.info.elements() as usize];
    quant::dequantize(t.info.dtype, t.data, &mut v)?;
    Ok(storage_with(gpu, &t.info.name, bytemuck::cast_slice(&v)))
}

/// The model's weights on the GPU.
struct GpuWeights {
    embed: GpuMatrix,
    layers: Vec<GpuLayer>,
    out_norm: wgpu::Buffer,
    /// The output projection, when not tied to the embedding.
    output: Option<GpuMatrix>,
}

impl GpuWeights {
    fn upload(gpu: &Gpu, w: &Weights<TensorView>) -> Result<GpuWeights> {
        Ok(GpuWeights {
            embed: GpuMatrix::upload(gpu, &w.embed)?,
            layers: w.layers.iter().enumerate().map(|(i, l)| GpuLayer::upload(gpu, l, i)).collect::<Result<_>>()?,
            out_norm: vector(gpu, &w.out_norm)?,
            output: w.output.as_ref().map(|t| GpuMatrix::upload(gpu, t)).transpose()?,
        })
    }

    fn lm_head(&self) -> &GpuMatrix {
        self.output.as_ref().unwrap_or(&self.embed)
    }

    fn formats(&self) -> Vec<DType> {
        let mut all = vec![self.embed.dtype];
        all.extend(self.output.iter().map(|m| m.dtype));
        for l in &self.layers {
            all.extend(l.qkv.mats.iter().map(|(_, m)| m.dtype));
            all.extend(l.gate_up.matrices().iter().map(|m| m.dtype));
            all.extend([l.wo.dtype, l.down.dtype]);
        }
        all
    }

    fn bytes(&self) -> u64 {
        self.embed.bytes()
            + self.layers.iter().map(GpuLayer::bytes).sum::<u64>()
            + self.out_norm.size()
            + self.output.as_ref().map_or(0, GpuMatrix::bytes)
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
    weights: GpuWeights,
    act: Activations,
    /// Kept alive for the bind groups.
    _params: wgpu::Buffer,
    _tables: RopeTables,
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
        let weights = gpu.scoped("the weights", || GpuWeights::upload(&gpu, tensors)).await??;
        let kernels = Kernels::new(&gpu, &weights.formats()).await?;
        let (cache, act, table) = gpu
            .scoped("the KV cache", || -> Result<_> {
                let cache = KvCache::new(&gpu, c.n_layers, c.kv_dim(), capacity)?;
                Ok((cache, Activations::new(&gpu, c), RopeTables::new(&gpu, c, tensors, capacity)?))
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
            _tables: table,
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
                self.stats.weight_read_bytes += l.record(&mut pass, n);
            }
            if want.is_some() {
                for l in &self.head {
                    self.stats.weight_read_bytes += l.record(&mut pass, n);
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
    /// Work counters, and the memory the weights, the KV cache and everything else hold.
    pub fn stats(&self) -> BackendStats {
        let (weight_bytes, kv_bytes) = (self.weights.bytes(), self.cache.bytes());
        let tables = self._tables.local.as_ref().map_or(0, |t| t.size()) + self._tables.global.size();
        let other = [&self.step, &self._params].iter().map(|b| b.size()).sum::<u64>()
            + tables
            + self.act.bytes()
            + self.reader.device_bytes();
        BackendStats { weight_bytes, kv_bytes, device_bytes: weight_bytes + kv_bytes + other, ..self.stats }
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

/// cos/sin of every (position, pair) up to the cache's capacity, from the CPU's f64 formula:
/// one table for the global layers and, when their RoPE differs, one for the sliding-window ones.
struct RopeTables {
    global: wgpu::Buffer,
    local: Option<wgpu::Buffer>,
}

impl RopeTables {
    fn new(gpu: &Gpu, c: &Config, tensors: &Weights<TensorView>, capacity: usize) -> Result<RopeTables> {
        let half = c.rope_dim / 2;
        let mut factors = vec![1f32; half];
        if let Some(t) = &tensors.rope_freqs {
            quant::dequantize(t.info.dtype, t.data, &mut factors)?;
        }
        let table = |(base, scale): (f32, f32)| {
            let mut table = Vec::with_capacity(capacity * half * 2);
            for pos in 0..capacity {
                for (i, &factor) in factors.iter().enumerate() {
                    let (cos, sin) = rope_cos_sin(pos, i, c.rope_dim, base, scale, factor);
                    table.extend([cos, sin]);
                }
            }
            storage_with(gpu, "rope table", bytemuck::cast_slice(&table))
        };
        let global = (c.rope_base, c.rope_linear_scale);
        let local = c.swa_layers.iter().any(|&s| s).then_some((c.rope_base_swa, 1.0)).filter(|&l| l != global);
        Ok(RopeTables { global: table(global), local: local.map(table) })
    }

    /// The table of layer `li`.
    fn of(&self, c: &Config, li: usize) -> &wgpu::Buffer {
        match &self.local {
            Some(local) if c.swa_layers[li] => local,
            _ => &self.global,
        }
    }
}

/// The transformer body: embedding and every layer, for any number of tokens.
fn record_body(rec: &mut Recorder, c: &Config, w: &GpuWeights, a: &Activations, cache: &KvCache, tables: &RopeTables) {
    let gelu = c.activation == Activation::GeluTanh;
    // `x += W · input`, through the post-norm when the layer has one.
    let residual = |rec: &mut Recorder, mm: MatMul, post_norm: Option<&wgpu::Buffer>| match post_norm {
        None => rec.matmul(mm.accumulate()),
        Some(norm) => {
            rec.matmul(mm.output(&a.proj));
            rec.add_norm(&a.proj, norm, &a.x, c.d_model, c.rms_eps);
        }
    };
    rec.embed(&w.embed, &a.tokens, &a.q, &a.x, c.embed_scale);
    for (li, l) in w.layers.iter().enumerate() {
        let shape = Shape::of(c, li);
        for (row0, m) in &l.qkv.mats {
            let input = Input::Norm(&l.attn_norm, c.rms_eps);
            let mm = MatMul::new(m, &a.x, &a.qkv).input(input).stacked_at(*row0, l.qkv.rows);
            rec.matmul(mm.bias(l.qkv_bias.as_ref()));
        }
        if let Some((qn, kn)) = &l.qk_norm {
            rec.head_norm(&a.qkv, (qn, kn), &a.q, &shape, c.rms_eps);
        }
        rec.rope_kv(&a.qkv, tables.of(c, li), &a.q, (&cache.k[li], &cache.v[li]), &shape);
        rec.attention(&a.q, &cache.k[li], &cache.v[li], &a.attn, &shape);
        residual(rec, MatMul::new(&l.wo, &a.attn, &a.x), l.post_attn_norm.as_ref());
        let norm = Input::Norm(&l.ffn_norm, c.rms_eps);
        match &l.gate_up {
            GateUp::Interleaved(m) => {
                rec.matmul(MatMul::new(m, &a.x, &a.ffn).input(norm).swiglu_out().gelu(gelu));
                residual(rec, MatMul::new(&l.down, &a.ffn, &a.x), l.post_ffn_norm.as_ref());
            }
            GateUp::Stacked(s) => {
                for (row0, m) in &s.mats {
                    rec.matmul(MatMul::new(m, &a.x, &a.ffn).input(norm).stacked_at(*row0, s.rows));
                }
                let down = MatMul::new(&l.down, &a.ffn, &a.x).input(Input::SwiGlu).gelu(gelu);
                residual(rec, down, l.post_ffn_norm.as_ref());
            }
        }
    }
}

/// The output head: the logits of the last token, through the final norm.
fn record_head(rec: &mut Recorder, c: &Config, w: &GpuWeights, a: &Activations) {
    let input = Input::Norm(&w.out_norm, c.rms_eps);
    rec.matmul(MatMul::new(w.lm_head(), &a.x, &a.logits).input(input).last_only().softcap(c.final_softcap));
}
