//! One kernel launch at a time on host data, through the same recorder as the model: what the
//! kernel tests compare against the CPU reference. Outputs are poisoned with NaN before each
//! run, so an element a kernel forgets to write cannot pass. Native only (it blocks).

use super::buffers::{read_back, staging, storage, storage_with, GpuMatrix};
use super::device::Gpu;
use super::kernels::{Kernels, PlaceParams, StepParams};
use super::ops::{Input, MatMul, Recorder, Shape};
use super::shortlist::Reader;
use crate::error::Result;
use crate::quant::DType;
use crate::sampler::{Logits, LogitsRequest};

/// What a matmul fuses in (see [`Oneshot::matmul_fused`]).
#[derive(Default)]
pub struct Fused<'a> {
    /// `y` before: the matmul accumulates into it.
    pub init: Option<&'a [f32]>,
    /// RMSNorm of the input with this weight and epsilon.
    pub norm: Option<(&'a [f32], f32)>,
    /// The input holds gate then up per token; the matrix sees `silu(gate) * up`.
    pub swiglu: bool,
    pub bias: Option<&'a [f32]>,
    /// The last token only, into row 0.
    pub last_only: bool,
}

pub struct Oneshot {
    pub gpu: Gpu,
    kernels: Kernels,
}

impl Oneshot {
    pub fn new(gpu: Gpu) -> Result<Oneshot> {
        let kernels = pollster::block_on(Kernels::new(&gpu, &DType::ALL))?;
        Ok(Oneshot { gpu, kernels })
    }

    fn input(&self, data: &[f32]) -> wgpu::Buffer {
        storage_with(&self.gpu, "input", bytemuck::cast_slice(data))
    }

    fn poisoned(&self, len: usize) -> wgpu::Buffer {
        self.input(&vec![f32::NAN; len])
    }

    /// The places of `n` tokens at positions `start ..` of one sequence.
    fn places(&self, n: usize, start: usize) -> wgpu::Buffer {
        let places: Vec<PlaceParams> = (start..start + n).map(|p| crate::backend::Place::linear(p).into()).collect();
        storage_with(&self.gpu, "places", bytemuck::cast_slice(&places))
    }

    /// Record with `f` and run it as one step of `n` tokens.
    fn run(&self, n: usize, f: impl FnOnce(&mut Recorder)) -> Result<()> {
        let step = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("step"),
            size: 16,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let params = StepParams { n: n as u32, _pad: [0; 3] };
        self.gpu.queue.write_buffer(&step, 0, bytemuck::bytes_of(&params));
        let mut rec = Recorder::new(&self.gpu, &self.kernels);
        f(&mut rec);
        let (launches, _params) = rec.finish(&step);
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for l in &launches {
                l.record(&mut pass, n as u32);
            }
        }
        self.gpu.queue.submit([encoder.finish()]);
        self.gpu.wait()
    }

    fn read(&self, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
        let bytes = (len * 4) as u64;
        let out = staging(&self.gpu, bytes);
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, 0, &out, 0, bytes);
        self.gpu.queue.submit([encoder.finish()]);
        let words = pollster::block_on(read_back(&self.gpu, &out, bytes))?;
        Ok(words.into_iter().map(f32::from_bits).collect())
    }

    /// `y[t] = W x[t]` for the `n` rows of `x` (W: `rows × cols` in `dtype`'s GGUF layout);
    /// with `init`, `y = init + W x`. Up to 16 tokens run matrix × vector, more the tiled kernel.
    pub fn matmul(
        &self,
        dtype: DType,
        data: &[u8],
        shape: (usize, usize),
        x: &[f32],
        init: Option<&[f32]>,
    ) -> Result<Vec<f32>> {
        self.matmul_fused(dtype, data, shape, x, &Fused { init, ..Fused::default() })
    }

    /// A matmul with its prologue and epilogue: `y[t] (= init +) W · input(x[t]) (+ bias)`.
    pub fn matmul_fused(
        &self,
        dtype: DType,
        data: &[u8],
        (rows, cols): (usize, usize),
        x: &[f32],
        f: &Fused,
    ) -> Result<Vec<f32>> {
        let per_token = if f.swiglu { 2 * cols } else { cols };
        let n = x.len() / per_token;
        let out_len = if f.last_only { rows } else { n * rows };
        let w = GpuMatrix::new(&self.gpu, "w", dtype, rows, cols, data)?;
        let xb = self.input(x);
        let y = match f.init {
            Some(v) => self.input(v),
            None => self.poisoned(out_len),
        };
        let norm = f.norm.map(|(weight, eps)| (self.input(weight), eps));
        let bias = f.bias.map(|b| self.input(b));
        self.run(n, |r| {
            let mut mm = MatMul::new(&w, &xb, &y).bias(bias.as_ref());
            if let Some((weight, eps)) = &norm {
                mm = mm.input(Input::Norm(weight, *eps));
            }
            if f.swiglu {
                mm = mm.input(Input::SwiGlu);
            }
            if f.init.is_some() {
                mm = mm.accumulate();
            }
            if f.last_only {
                mm = mm.last_only();
            }
            r.matmul(mm)
        })?;
        self.read(&y, out_len)
    }

    /// `silu(G n) * (U n)` with `n` the RMSNorm of each row of `x`: gate and up (`rows × cols`
    /// each) interleaved into one matrix and the SwiGLU epilogue.
    pub fn gate_up(
        &self,
        dtype: DType,
        (gate, up): (&[u8], &[u8]),
        (rows, cols): (usize, usize),
        x: &[f32],
        (norm_w, eps): (&[f32], f32),
    ) -> Result<Vec<f32>> {
        let n = x.len() / cols;
        let w = GpuMatrix::interleaved(&self.gpu, "gate_up", dtype, (rows, cols), gate, up)?;
        let (xb, nb, y) = (self.input(x), self.input(norm_w), self.poisoned(n * rows));
        self.run(n, |r| r.matmul(MatMul::new(&w, &xb, &y).input(Input::Norm(&nb, eps)).swiglu_out()))?;
        self.read(&y, n * rows)
    }

    /// The rows `tokens` of a `rows × cols` matrix.
    pub fn embed(&self, dtype: DType, data: &[u8], (rows, cols): (usize, usize), tokens: &[u32]) -> Result<Vec<f32>> {
        let w = GpuMatrix::new(&self.gpu, "w", dtype, rows, cols, data)?;
        let t = storage_with(&self.gpu, "tokens", bytemuck::cast_slice(tokens));
        let spare = storage(&self.gpu, "spare", 16);
        let out = self.poisoned(tokens.len() * cols);
        self.run(tokens.len(), |r| r.embed(&w, &t, &spare, &out, 1.0))?;
        self.read(&out, tokens.len() * cols)
    }

    /// A cache of `positions` rows of `kv_dim` in the cache's element type, filled with `rows`
    /// from position 0 (the rest poisoned).
    fn cache(&self, rows: &[f32], positions: usize, kv_dim: usize) -> wgpu::Buffer {
        let mut all = rows.to_vec();
        all.resize(positions * kv_dim, f32::NAN);
        if self.gpu.f16 {
            let halves: Vec<half::f16> = all.iter().map(|&v| half::f16::from_f32(v)).collect();
            storage_with(&self.gpu, "cache", bytemuck::cast_slice(&halves))
        } else {
            self.input(&all)
        }
    }

    fn read_cache(&self, cache: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
        if !self.gpu.f16 {
            return self.read(cache, len);
        }
        let words = self.read(cache, len.div_ceil(2))?;
        let halves: Vec<half::f16> = bytemuck::cast_slice(&words).to_vec();
        Ok(halves[..len].iter().map(|h| h.to_f32()).collect())
    }

    /// Run the fused rope / cache write on `n` tokens' q|k|v rows at positions `start ..`, with
    /// `table` (`[pos][pair]` = (cos, sin)), over a cache of `start + n` positions holding
    /// `old_keys` / `old_values` before `start`. Returns the rotated queries and both caches.
    pub fn rope_kv(
        &self,
        qkv: &[f32],
        table: &[f32],
        s: &Shape,
        (old_keys, old_values): (&[f32], &[f32]),
    ) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        let (q_dim, kv_dim) = (s.n_heads * s.head_dim, s.n_kv_heads * s.head_dim);
        let n = qkv.len() / (q_dim + 2 * kv_dim);
        let start = old_keys.len() / kv_dim;
        let (positions, len) = (start + n, (start + n) * kv_dim);
        let (kc, vc) = (self.cache(old_keys, positions, kv_dim), self.cache(old_values, positions, kv_dim));
        let (xb, tb, q) = (self.input(qkv), self.input(table), self.poisoned(n * q_dim));
        let places = self.places(n, start);
        self.run(n, |r| r.rope_kv(&xb, (&tb, &places), &q, (&kc, &vc), s))?;
        Ok((self.read(&q, n * q_dim)?, self.read_cache(&kc, len)?, self.read_cache(&vc, len)?))
    }

    /// Attend with the last `q.len() / q_dim` positions' queries over a cache holding
    /// `keys`/`values` (one row of `kv_dim` per position, from 0). The cache is f16 on the f16
    /// path.
    pub fn attention(&self, q: &[f32], keys: &[f32], values: &[f32], s: &Shape) -> Result<Vec<f32>> {
        let kv_dim = s.n_kv_heads * s.head_dim;
        let positions = keys.len() / kv_dim;
        let n = q.len() / (s.n_heads * s.head_dim);
        let (kc, vc) = (self.cache(keys, positions, kv_dim), self.cache(values, positions, kv_dim));
        let (qb, out) = (self.input(q), self.poisoned(q.len()));
        let places = self.places(n, positions - n);
        self.run(n, |r| r.attention((&qb, &places), &kc, &vc, &out, s))?;
        self.read(&out, q.len())
    }

    /// What the model's read-out returns for `logits` and `want`, with its bytes read back.
    pub fn read_logits(&self, logits: &[f32], want: &LogitsRequest) -> Result<(Logits, u64)> {
        let lb = self.input(logits);
        let reader = Reader::new(&self.gpu, &self.kernels, &lb, logits.len());
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        let (_, pending) = reader.record(&self.gpu, &mut encoder, want);
        self.gpu.queue.submit([encoder.finish()]);
        let result = pollster::block_on(reader.read(&self.gpu, &pending))?;
        Ok((result, reader.bytes(&pending)))
    }
}
