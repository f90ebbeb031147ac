//! One kernel launch at a time on host data, through the same recorder as the model: what the
//! kernel tests compare against the CPU reference. Outputs are poisoned with NaN before each
//! run, so an element a kernel forgets to write cannot pass. Native only (it blocks).

use super::buffers::{read_back, staging, storage, storage_with, GpuMatrix};
use super::device::Gpu;
use super::kernels::{Kernels, StepParams};
use super::ops::{Recorder, Shape};
use super::shortlist::Reader;
use crate::error::Result;
use crate::quant::DType;
use crate::sampler::{Logits, LogitsRequest};

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

    /// Record with `f` and run it as one step of `n` tokens from position `start`.
    fn run(&self, n: usize, start: usize, f: impl FnOnce(&mut Recorder)) -> Result<()> {
        let step = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("step"),
            size: 16,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let params = StepParams { n: n as u32, start: start as u32, _pad: [0; 2] };
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
    /// with `init`, `y = init + W x`. `n == 1` runs matrix × vector, more the tiled kernel.
    pub fn matmul(
        &self,
        dtype: DType,
        data: &[u8],
        (rows, cols): (usize, usize),
        x: &[f32],
        init: Option<&[f32]>,
    ) -> Result<Vec<f32>> {
        let n = x.len() / cols;
        let w = GpuMatrix::new(&self.gpu, "w", dtype, rows, cols, data)?;
        let xb = self.input(x);
        let y = match init {
            Some(v) => self.input(v),
            None => self.poisoned(n * rows),
        };
        self.run(n, 0, |r| r.matmul(&w, &xb, &y, init.is_some(), false))?;
        self.read(&y, n * rows)
    }

    /// The rows `tokens` of a `rows × cols` matrix.
    pub fn embed(&self, dtype: DType, data: &[u8], (rows, cols): (usize, usize), tokens: &[u32]) -> Result<Vec<f32>> {
        let w = GpuMatrix::new(&self.gpu, "w", dtype, rows, cols, data)?;
        let t = storage_with(&self.gpu, "tokens", bytemuck::cast_slice(tokens));
        let spare = storage(&self.gpu, "spare", 16);
        let out = self.poisoned(tokens.len() * cols);
        self.run(tokens.len(), 0, |r| r.embed(&w, &t, &spare, &out))?;
        self.read(&out, tokens.len() * cols)
    }

    /// RMSNorm of each row of `x` (rows of `weight.len()`), or of the last one only.
    pub fn rmsnorm(&self, x: &[f32], weight: &[f32], eps: f32, last_only: bool) -> Result<Vec<f32>> {
        let d = weight.len();
        let n = x.len() / d;
        let out_len = if last_only { d } else { n * d };
        let (xb, wb, out) = (self.input(x), self.input(weight), self.poisoned(out_len));
        self.run(n, 0, |r| r.rmsnorm(&xb, &wb, &out, d, eps, last_only))?;
        self.read(&out, out_len)
    }

    /// `silu(gate) * up`.
    pub fn swiglu(&self, gate: &[f32], up: &[f32], len: usize) -> Result<Vec<f32>> {
        let (g, u) = (self.input(gate), self.input(up));
        self.run(gate.len() / len, 0, |r| r.swiglu(&g, &u, len))?;
        self.read(&g, gate.len())
    }

    /// Each row of `y` (rows of `bias.len()`) plus `bias`.
    pub fn add_bias(&self, y: &[f32], bias: &[f32]) -> Result<Vec<f32>> {
        let (yb, b) = (self.input(y), self.input(bias));
        self.run(y.len() / bias.len(), 0, |r| r.add_bias(&yb, &b, bias.len()))?;
        self.read(&yb, y.len())
    }

    /// Queries and keys of `n` tokens at positions `start ..` rotated with `table` (`[pos][pair]`
    /// = (cos, sin)).
    pub fn rope(&self, q: &[f32], k: &[f32], table: &[f32], s: &Shape, start: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let n = q.len() / (s.n_heads * s.head_dim);
        let (qb, kb, tb) = (self.input(q), self.input(k), self.input(table));
        self.run(n, start, |r| r.rope(&qb, &kb, &tb, s))?;
        Ok((self.read(&qb, q.len())?, self.read(&kb, k.len())?))
    }

    /// Write `keys`/`values` (one row of `kv_dim` per position, from 0) into a cache, then attend
    /// with the last `q.len() / q_dim` positions' queries. The cache is f16 on the f16 path.
    pub fn attention(&self, q: &[f32], keys: &[f32], values: &[f32], s: &Shape) -> Result<Vec<f32>> {
        let kv_dim = s.n_kv_heads * s.head_dim;
        let positions = keys.len() / kv_dim;
        let n = q.len() / (s.n_heads * s.head_dim);
        let elem = if self.gpu.f16 { 2 } else { 4 };
        let kc = storage(&self.gpu, "k cache", (positions * kv_dim * elem) as u64);
        let vc = storage(&self.gpu, "v cache", (positions * kv_dim * elem) as u64);
        let (kb, vb, qb, out) = (self.input(keys), self.input(values), self.input(q), self.poisoned(q.len()));
        self.run(positions, 0, |r| r.kv_write(&kb, &vb, &kc, &vc, kv_dim))?;
        self.run(n, positions - n, |r| r.attention(&qb, &kc, &vc, &out, s))?;
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
