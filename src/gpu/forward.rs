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
//! kernel; a step of at most 16 tokens (decoding; n choices decoded together; a speculative
//! verification) through the matrix × vector kernel. Each token of a step has a place in the
//! KV cache (`Place`: its slot, its position, the slots it attends to), written with the step,
//! so n choices keep their tokens in regions of one cache after their shared prompt.

use super::buffers::{read_back, staging, storage, storage_with};
use super::device::Gpu;
use super::kernels::{Kernels, PlaceParams, StepParams, MAX_HEAD_DIM};
use super::kv_cache::KvCache;
use super::ops::{Input, Launch, MatMul, Recorder, Shape};
use super::shortlist::Reader;
use super::weights::{GateUp, GpuWeights, Placer};
use crate::backend::{check_places, check_step, AllFuture, Backend, BackendStats, Place, StepFuture, MAX_PLACED};
use crate::cpu::ops::rope_cos_sin;
use crate::error::{Error, Result};
use crate::gguf::{TensorInfo, TensorView};
use crate::model::{Activation, Config, Weights};
use crate::quant::{self, DType};
use crate::sampler::{Logits, LogitsRequest};

/// Bytes of a tensor placed at a time when its whole data is at hand (bounds the padded copy).
const PIECE: usize = 8 << 20;

/// Prompt tokens per step.
pub const PREFILL_CHUNK: usize = 128;

/// Tokens per step when every token's logits come back ([`Backend::forward_all`]: a
/// speculative draft's verification, perplexity): 16 rows of logits, 9.7 MB for a 151,936-token
/// vocabulary, so the buffer stays well under a binding's limit even for 262k vocabularies.
pub const ALL_ROWS: usize = 16;

/// The activations of one step, sized for [`PREFILL_CHUNK`] tokens.
struct Activations {
    tokens: wgpu::Buffer,
    /// Each token's place in the KV cache (`PlaceParams`).
    places: wgpu::Buffer,
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
    /// The logits of up to [`ALL_ROWS`] tokens, and their read-back buffer.
    logits_all: wgpu::Buffer,
    staging_all: wgpu::Buffer,
}

impl Activations {
    fn new(gpu: &Gpu, c: &Config) -> Activations {
        let n = PREFILL_CHUNK as u64;
        let f = |label: &str, per_token: usize| storage(gpu, label, n * per_token as u64 * 4);
        Activations {
            tokens: storage(gpu, "tokens", n * 4),
            places: storage(gpu, "places", n * std::mem::size_of::<PlaceParams>() as u64),
            x: f("x", c.d_model),
            qkv: f("qkv", c.q_dim() + 2 * c.kv_dim()),
            q: f("q", c.q_dim()),
            attn: f("attn", c.q_dim()),
            proj: if c.post_norms { f("proj", c.d_model) } else { storage(gpu, "proj", 4) },
            ffn: f("ffn", 2 * c.ffn_dim),
            logits: storage(gpu, "logits", c.vocab_size as u64 * 4),
            logits_all: storage(gpu, "logits of every token", (ALL_ROWS * c.vocab_size) as u64 * 4),
            staging_all: staging(gpu, (ALL_ROWS * c.vocab_size) as u64 * 4),
        }
    }

    fn bytes(&self) -> u64 {
        [
            &self.tokens,
            &self.places,
            &self.x,
            &self.qkv,
            &self.q,
            &self.attn,
            &self.proj,
            &self.ffn,
            &self.logits,
            &self.logits_all,
            &self.staging_all,
        ]
        .iter()
        .map(|b| b.size())
        .sum()
    }
}

/// The model on the GPU: quantized weights, the KV cache and the recorded step.
pub struct GpuModel {
    gpu: Gpu,
    step: wgpu::Buffer,
    /// Launches of the transformer body, then of the output head (last chunk only).
    body: Vec<Launch>,
    head: Vec<Launch>,
    /// The output head over every token of the step, into `logits_all`.
    head_all: Vec<Launch>,
    reader: Reader,
    cache: KvCache,
    vocab: usize,
    stats: BackendStats,
    weights: GpuWeights,
    act: Activations,
    /// The places of the step being written (kept so a step allocates nothing).
    places: Vec<PlaceParams>,
    /// Kept alive for the bind groups.
    _params: wgpu::Buffer,
    _tables: RopeTables,
}

/// A model being loaded onto the GPU: every buffer made from the tensor table, the weights
/// arriving piece by piece ([`GpuLoad::place`]); [`GpuLoad::finish`] records the step.
pub struct GpuLoad {
    gpu: Gpu,
    config: Config,
    weights: GpuWeights,
    placer: Placer,
    cache: KvCache,
    act: Activations,
    capacity: usize,
}

impl GpuLoad {
    /// Make the buffers of the weights (zeroed), the KV cache and the activations. `tensors`
    /// are the tensors' descriptions, in the order of `Weights::all` (the `i` of `place`).
    pub async fn new(gpu: Gpu, c: &Config, tensors: &Weights<&TensorInfo>, capacity: usize) -> Result<GpuLoad> {
        if c.head_dim > MAX_HEAD_DIM
            || !c.rope_dim.is_multiple_of(2)
            || c.n_kv_heads == 0
            || !c.n_heads.is_multiple_of(c.n_kv_heads)
        {
            return Err(Error::UnsupportedModel(format!(
                "the GPU kernels need head_dim <= {MAX_HEAD_DIM} and whole query groups (head_dim {}, {} heads, {} KV heads)",
                c.head_dim, c.n_heads, c.n_kv_heads
            )));
        }
        let (weights, plan) = gpu.scoped("the weights", || GpuWeights::alloc(&gpu, tensors)).await??;
        let dests = plan.all().into_iter().cloned().zip(tensors.all().into_iter().map(|t| (*t).clone())).collect();
        let (cache, act) = gpu
            .scoped("the KV cache", || -> Result<_> {
                Ok((KvCache::new(&gpu, c.n_layers, c.kv_dim(), capacity)?, Activations::new(&gpu, c)))
            })
            .await??;
        Ok(GpuLoad { placer: Placer::new(dests), gpu, config: c.clone(), weights, cache, act, capacity })
    }

    /// `bytes` of tensor `i`, `at` bytes into it; pieces of one tensor come in order.
    pub async fn place(&mut self, i: usize, at: u64, bytes: &[u8]) -> Result<()> {
        self.placer.place(&self.gpu, i, at, bytes)?;
        if self.placer.wants_flush() {
            self.placer.flush(&self.gpu).await?;
        }
        Ok(())
    }

    /// Every weight has arrived: compile the kernels, record the step.
    pub async fn finish(mut self) -> Result<GpuModel> {
        if let Some((name, got, size)) = self.placer.incomplete() {
            return Err(Error::BadModel(format!("tensor {name}: {got} of its {size} bytes arrived")));
        }
        self.placer.flush(&self.gpu).await?;
        let GpuLoad { gpu, config: c, weights, placer, cache, act, capacity } = self;
        let kernels = Kernels::new(&gpu, &weights.formats()).await?;
        let table =
            gpu.scoped("the RoPE tables", || RopeTables::new(&gpu, &c, placer.host_bytes(), capacity)).await??;
        let step = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("step"),
            size: 16,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });

        let mut rec = Recorder::new(&gpu, &kernels);
        record_body(&mut rec, &c, &weights, &act, &cache, &table);
        let n_body = rec.recorded();
        record_head(&mut rec, &c, &weights, &act, false);
        let n_head = rec.recorded();
        record_head(&mut rec, &c, &weights, &act, true);
        let (mut body, params) = rec.finish(&step);
        let head_all = body.split_off(n_head);
        let head = body.split_off(n_body);
        let reader = Reader::new(&gpu, &kernels, &act.logits, c.vocab_size);
        gpu.wait()?;

        Ok(GpuModel {
            step,
            body,
            head,
            head_all,
            reader,
            cache,
            vocab: c.vocab_size,
            stats: BackendStats::default(),
            places: Vec::with_capacity(PREFILL_CHUNK),
            _params: params,
            weights,
            _tables: table,
            act,
            gpu,
        })
    }
}

impl GpuModel {
    /// Upload the weights of a whole file and record the step. `capacity` is the KV cache's
    /// size in positions.
    pub async fn load(gpu: Gpu, c: &Config, tensors: &Weights<TensorView<'_>>, capacity: usize) -> Result<GpuModel> {
        let infos = tensors.try_map(|t| Ok(t.info))?;
        let mut load = GpuLoad::new(gpu, c, &infos, capacity).await?;
        for (i, t) in tensors.all().into_iter().enumerate() {
            for (k, piece) in t.data.chunks(PIECE).enumerate() {
                load.place(i, (k * PIECE) as u64, piece).await?;
            }
        }
        load.finish().await
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
        self.place_linear(tokens.len());
        match want {
            Some(w) => self.submit(tokens, Read::Last(w)).await,
            None => self.submit(tokens, Read::Nothing).await,
        }
    }

    /// The places of `n` tokens at the next positions of the one sequence.
    fn place_linear(&mut self, n: usize) {
        self.places.clear();
        self.places.extend((self.cache.len..).take(n).map(|p| PlaceParams::from(Place::linear(p))));
    }

    /// Run at most [`ALL_ROWS`] tokens (at `self.places`) and read back every one's logits.
    /// One submission.
    async fn step_all(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
        debug_assert!(tokens.len() <= ALL_ROWS);
        self.submit(tokens, Read::Every).await?;
        let bytes = (tokens.len() * self.vocab) as u64 * 4;
        let words = read_back(&self.gpu, &self.act.staging_all, bytes).await?;
        self.stats.read_back_bytes += bytes;
        Ok(words.chunks_exact(self.vocab).map(|row| row.iter().map(|&w| f32::from_bits(w)).collect()).collect())
    }

    /// Run `tokens` at `self.places`; the cache then counts up to the last slot written.
    async fn submit(&mut self, tokens: &[u32], read: Read<'_>) -> Result<Option<Logits>> {
        debug_assert!(!tokens.is_empty() && tokens.len() <= PREFILL_CHUNK && tokens.len() == self.places.len());
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= self.vocab) {
            return Err(Error::InvalidArgument(format!("token id {bad} is outside the vocabulary")));
        }
        let n = tokens.len() as u32;
        self.write_step(tokens);

        let mut encoder = self.gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        let mut dispatches = self.body.len() as u64;
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            for l in &self.body {
                self.stats.weight_read_bytes += l.record(&mut pass, n);
            }
            let head = match read {
                Read::Nothing => &[][..],
                Read::Last(_) => &self.head,
                Read::Every => &self.head_all,
            };
            for l in head {
                self.stats.weight_read_bytes += l.record(&mut pass, n);
            }
            dispatches += head.len() as u64;
        }
        if let Read::Every = read {
            let bytes = (tokens.len() * self.vocab) as u64 * 4;
            encoder.copy_buffer_to_buffer(&self.act.logits_all, 0, &self.act.staging_all, 0, bytes);
        }
        let want = match read {
            Read::Last(w) => Some(w),
            _ => None,
        };
        let pending = want.map(|w| {
            let (d, pending) = self.reader.record(&self.gpu, &mut encoder, w);
            dispatches += d;
            pending
        });
        self.gpu.queue.submit([encoder.finish()]);
        self.stats.steps += 1;
        self.stats.submissions += 1;
        self.stats.dispatches += dispatches;
        let end = self.places.iter().map(|p| p.slot as usize + 1).max().unwrap_or(0);
        self.cache.len = self.cache.len.max(end);
        let Some(pending) = pending else {
            self.gpu.check()?;
            return Ok(None);
        };
        let logits = self.reader.read(&self.gpu, &pending).await?;
        self.stats.read_back_bytes += self.reader.bytes(&pending);
        Ok(Some(logits))
    }

    /// Write a step's inputs: `n`, the token ids and their places (`self.places`).
    fn write_step(&self, tokens: &[u32]) {
        let q = &self.gpu.queue;
        q.write_buffer(&self.step, 0, bytemuck::bytes_of(&StepParams { n: tokens.len() as u32, _pad: [0; 3] }));
        q.write_buffer(&self.act.tokens, 0, bytemuck::cast_slice(tokens));
        q.write_buffer(&self.act.places, 0, bytemuck::cast_slice(&self.places));
    }

    /// `bench --kernels`: fill the cache's first `context` positions, then time each kernel of
    /// a step of `n` tokens after them (1: decoding; [`PREFILL_CHUNK`]: a prompt's chunk),
    /// alone and repeatedly. The cache then holds `context` positions.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn profile_kernels(&mut self, n: usize, context: usize) -> Result<super::profile::StepProfile> {
        if n == 0 || n > PREFILL_CHUNK {
            return Err(Error::InvalidArgument(format!("a step runs 1 to {PREFILL_CHUNK} tokens, not {n}")));
        }
        check_step(&vec![0; n], context, self.cache.capacity)?;
        let vocab = self.vocab;
        let ids = |len: usize| (0..len).map(|i| (i % vocab) as u32).collect::<Vec<u32>>();
        self.cache.len = 0;
        if context > 0 {
            pollster::block_on(self.run(&ids(context), &LogitsRequest::Full))?;
        }
        self.place_linear(n);
        self.write_step(&ids(n));
        let launches: Vec<&Launch> = self.body.iter().chain(&self.head).collect();
        let profile = super::profile::profile_step(&self.gpu, &launches, n as u32, context as u32);
        self.cache.len = context;
        profile
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

    /// Run `tokens` in steps of [`ALL_ROWS`], reading back every one's logits.
    async fn run_all(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
        check_step(tokens, self.cache.len, self.cache.capacity)?;
        let mut all = Vec::with_capacity(tokens.len());
        for chunk in tokens.chunks(ALL_ROWS) {
            self.place_linear(chunk.len());
            all.extend(self.step_all(chunk).await?);
        }
        Ok(all)
    }

    /// Run `tokens` at `places` in one step, reading back every one's logits.
    async fn run_placed(&mut self, tokens: &[u32], places: &[Place]) -> Result<Vec<Vec<f32>>> {
        const { assert!(MAX_PLACED <= ALL_ROWS) };
        check_places(tokens, places, self.cache.capacity)?;
        self.places.clear();
        self.places.extend(places.iter().map(|&p| PlaceParams::from(p)));
        self.step_all(tokens).await
    }
}

impl GpuModel {
    /// A failed step leaves the cache as it was (`len` positions).
    fn kept_on_error<T>(&mut self, len: usize, result: Result<T>) -> Result<T> {
        if result.is_err() {
            self.cache.len = len;
        }
        result
    }

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
            let len = self.cache.len;
            let result = self.run(tokens, want).await;
            self.kept_on_error(len, result)
        })
    }

    fn forward_all<'a>(&'a mut self, tokens: &'a [u32]) -> AllFuture<'a> {
        Box::pin(async move {
            let len = self.cache.len;
            let result = self.run_all(tokens).await;
            self.kept_on_error(len, result)
        })
    }

    fn forward_placed<'a>(&'a mut self, tokens: &'a [u32], places: &'a [Place]) -> AllFuture<'a> {
        Box::pin(async move {
            let len = self.cache.len;
            let result = self.run_placed(tokens, places).await;
            self.kept_on_error(len, result)
        })
    }

    fn stats(&self) -> BackendStats {
        GpuModel::stats(self)
    }

    fn gpu_model(&mut self) -> Option<&mut GpuModel> {
        Some(self)
    }
}

/// cos/sin of every (position, pair) up to the cache's capacity, from the CPU's f64 formula:
/// one table for the global layers and, when their RoPE differs, one for the sliding-window ones.
struct RopeTables {
    global: wgpu::Buffer,
    local: Option<wgpu::Buffer>,
}

impl RopeTables {
    /// `freqs`: `rope_freqs.weight`'s format and bytes, when the model has it.
    fn new(gpu: &Gpu, c: &Config, freqs: Option<(DType, &[u8])>, capacity: usize) -> Result<RopeTables> {
        let half = c.rope_dim / 2;
        let mut factors = vec![1f32; half];
        if let Some((dtype, bytes)) = freqs {
            quant::dequantize(dtype, bytes, &mut factors)?;
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
        rec.rope_kv(&a.qkv, (tables.of(c, li), &a.places), &a.q, (&cache.k[li], &cache.v[li]), &shape);
        rec.attention((&a.q, &a.places), &cache.k[li], &cache.v[li], &a.attn, &shape);
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

/// The output head through the final norm: the logits of the last token, or (`every`) of each.
fn record_head(rec: &mut Recorder, c: &Config, w: &GpuWeights, a: &Activations, every: bool) {
    let input = Input::Norm(&w.out_norm, c.rms_eps);
    let head = match every {
        true => MatMul::new(w.lm_head(), &a.x, &a.logits_all),
        false => MatMul::new(w.lm_head(), &a.x, &a.logits).last_only(),
    };
    rec.matmul(head.input(input).softcap(c.final_softcap));
}

/// What a step reads back.
enum Read<'a> {
    Nothing,
    /// The last token's logits, as `want` asks.
    Last(&'a LogitsRequest),
    /// Every token's whole logits vector (into `staging_all`).
    Every,
}
