//! Every kernel launch of the forward pass, recorded with its bindings and parameters: the
//! model records a whole step once at load, the kernel tests one launch at a time.

use std::num::NonZeroU64;

use super::buffers::{GpuMatrix, ParamArena, ParamSlot};
use super::device::Gpu;
use super::kernels::{grid, AttnParams, Family, Kernels, MatParams, NormParams, RopeParams};
use crate::model::{Config, RopeStyle};

/// Tokens per tile of the matrix × matrix kernel (`MM_TOKENS` in matmul.wgsl).
const MM_TOKENS: u32 = 32;

/// Tokens per pass over the weights of the matrix × vector kernel (`MV_COLS` in matmul.wgsl).
const MV_COLS: u32 = 4;

/// Steps of at most this many tokens run matrix × vector: decoding is bound by reading the
/// weights, and a token's arithmetic there does not depend on the step's size, so n choices
/// decoded together (and a speculative verification) get the logits of single-token steps.
pub const MATVEC_MAX_TOKENS: u32 = 16;

/// How many workgroups a launch needs for `n` tokens.
#[derive(Clone, Copy)]
pub enum Grid {
    /// `x` workgroups per token, tokens along y.
    PerToken(u32),
    /// One workgroup per token.
    Tokens,
    /// A single workgroup (the last token only).
    One,
    /// `per_token` invocations per token, 64 to a workgroup.
    Threads(u32),
    /// One workgroup per (head, token).
    Heads(u32),
    /// A matmul: matrix × vector up to [`MATVEC_MAX_TOKENS`] (the one-token entry for one, the
    /// four-token one for more), tiled matrix × matrix past that.
    Matmul { rows: u32 },
    /// Matrix × vector whatever the step size (the output head reads the last token only).
    MatVec { rows: u32 },
}

/// The weight bytes a launch reads.
#[derive(Clone, Copy)]
pub enum Reads {
    None,
    /// A matrix part: once per group of [`MV_COLS`] tokens of the matrix × vector, once per
    /// tile of tokens of the matrix × matrix.
    Matrix(u64),
    /// One row per token (the embedding lookup; counted on the first part).
    RowPerToken(u64),
}

/// What a launch computes, for `bench --kernels`: the bytes it must move at least and the
/// arithmetic it does (see [`Launch::cost`]).
#[derive(Clone, Copy, Debug)]
pub enum Work {
    /// A part of `rows` × `cols` weights times each token's input (`in_cols` floats of it).
    Matmul { rows: u32, cols: u32, in_cols: u32, out_cols: u32, dtype: &'static str },
    /// Each query head of each token over the KV slots it sees.
    Attention { n_heads: u32, n_kv_heads: u32, head_dim: u32, window: u32 },
    /// Elementwise: floats read and written per token.
    Rows { floats: u32 },
}

/// One recorded kernel launch.
pub struct Launch {
    pipeline: wgpu::ComputePipeline,
    /// The entry points: one-token, then (for a `Grid::Matmul`) four-token and tiled.
    entries: [&'static str; 3],
    pub work: Work,
    /// Rows a matrix × vector workgroup computes (the kernel variant's).
    mv_rows: u32,
    /// The four-token matrix × vector and the tiled matrix × matrix pipelines of a
    /// `Grid::Matmul`.
    batched: Option<(wgpu::ComputePipeline, wgpu::ComputePipeline)>,
    bind: wgpu::BindGroup,
    grid: Grid,
    reads: Reads,
}

impl Launch {
    /// The entry point a step of `n` tokens runs.
    pub fn entry(&self, n: u32) -> &'static str {
        match self.grid {
            Grid::Matmul { .. } if n > MATVEC_MAX_TOKENS => self.entries[2],
            Grid::Matmul { .. } if n > 1 => self.entries[1],
            _ => self.entries[0],
        }
    }

    /// `(bytes, flop)` of the launch in a step of `n` tokens after `context` cached positions.
    /// The bytes are the least it must move: its weights once (a tiled kernel may read them
    /// once per tile), the activations it reads and writes, and for attention the K and V of
    /// every slot it sees, once (`kv_bytes` per element).
    pub fn cost(&self, n: u32, context: u32, kv_bytes: u32) -> (u64, u64) {
        let weights = match self.reads {
            Reads::None => 0,
            Reads::Matrix(bytes) => bytes,
            Reads::RowPerToken(bytes) => bytes * n as u64,
        };
        let (n, ctx) = (n as u64, context as u64);
        match self.work {
            Work::Matmul { rows, cols, in_cols, out_cols, .. } => {
                // The output head (`MatVec`) runs the last token only.
                let n = if matches!(self.grid, Grid::MatVec { .. }) { 1 } else { n };
                (weights + n * (in_cols + out_cols) as u64 * 4, 2 * rows as u64 * cols as u64 * n)
            }
            Work::Attention { n_heads, n_kv_heads, head_dim, window } => {
                // Token t of the step sees ctx + t + 1 slots (the last `window` of them).
                let seen = |t: u64| if window == 0 { ctx + t + 1 } else { (ctx + t + 1).min(window as u64) };
                // The slots any token sees, each read once.
                let slots = if window == 0 { ctx + n } else { (ctx + n).min(window as u64 + n - 1) };
                let kv = 2 * slots * (n_kv_heads * head_dim) as u64 * kv_bytes as u64;
                let q_and_out = 2 * n * (n_heads * head_dim) as u64 * 4;
                let flop = (0..n).map(|t| 4 * seen(t) * (n_heads * head_dim) as u64).sum();
                (kv + q_and_out, flop)
            }
            Work::Rows { floats } => (weights + n * floats as u64 * 4, 0),
        }
    }

    /// Record the launch for a step of `n` tokens; returns the weight bytes it will read.
    pub fn record(&self, pass: &mut wgpu::ComputePass, n: u32) -> u64 {
        let (pipeline, (x, y)) = match self.grid {
            Grid::PerToken(x) => (&self.pipeline, (x, n)),
            Grid::Tokens => (&self.pipeline, (n, 1)),
            Grid::One => (&self.pipeline, (1, 1)),
            Grid::Threads(per_token) => (&self.pipeline, grid((n * per_token).div_ceil(64))),
            Grid::Heads(heads) => (&self.pipeline, (heads, n)),
            Grid::Matmul { rows } if n > MATVEC_MAX_TOKENS => (
                &self.batched.as_ref().expect("a matmul launch has its batched pipelines").1,
                (rows.div_ceil(64), n.div_ceil(MM_TOKENS)),
            ),
            Grid::Matmul { rows } if n > 1 => (
                &self.batched.as_ref().expect("a matmul launch has its batched pipelines").0,
                grid(rows.div_ceil(self.mv_rows)),
            ),
            Grid::Matmul { rows } | Grid::MatVec { rows } => (&self.pipeline, grid(rows.div_ceil(self.mv_rows))),
        };
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &self.bind, &[]);
        pass.dispatch_workgroups(x, y, 1);
        self.weight_bytes(n)
    }

    /// The weight bytes the launch reads in a step of `n` tokens.
    fn weight_bytes(&self, n: u32) -> u64 {
        match (self.reads, self.grid) {
            (Reads::None, _) => 0,
            (Reads::Matrix(bytes), Grid::Matmul { .. }) if n > MATVEC_MAX_TOKENS => {
                bytes * n.div_ceil(MM_TOKENS) as u64
            }
            (Reads::Matrix(bytes), Grid::Matmul { .. }) => bytes * n.div_ceil(MV_COLS) as u64,
            (Reads::Matrix(bytes), _) => bytes,
            (Reads::RowPerToken(bytes), _) => bytes * n as u64,
        }
    }
}

/// A binding of a launch before the parameter buffer exists.
pub enum Res {
    Buf(wgpu::Buffer),
    Param(ParamSlot),
    Step,
}

struct PendingLaunch<'k> {
    family: &'k Family,
    entry: &'static str,
    work: Work,
    /// The four-token matrix × vector and the matrix × matrix entries of a `Grid::Matmul`.
    batched: Option<(&'static str, &'static str)>,
    res: Vec<Res>,
    grid: Grid,
    reads: Reads,
}

/// Collects launches and their parameters; `finish` creates the bind groups.
pub struct Recorder<'k> {
    gpu: &'k Gpu,
    kernels: &'k Kernels,
    arena: ParamArena,
    launches: Vec<PendingLaunch<'k>>,
}

impl<'k> Recorder<'k> {
    pub fn new(gpu: &'k Gpu, kernels: &'k Kernels) -> Recorder<'k> {
        Recorder { gpu, kernels, arena: ParamArena::new(gpu), launches: Vec::new() }
    }

    /// Launches recorded so far.
    pub fn recorded(&self) -> usize {
        self.launches.len()
    }

    fn launch(&mut self, family: &'k Family, entry: &'static str, res: Vec<Res>, grid: Grid, work: Work) {
        self.launches.push(PendingLaunch { family, entry, work, batched: None, res, grid, reads: Reads::None });
    }

    fn param<T: bytemuck::Pod>(&mut self, value: T) -> Res {
        Res::Param(self.arena.push(&value))
    }

    /// `y (+)= W x` (with its prologue and epilogue) for every part of the matrix.
    pub fn matmul(&mut self, m: MatMul) {
        let family = &self.kernels.matmul[&m.w.dtype];
        let (vec_entry, batched, norm_w, eps) = match (m.input, m.swiglu_out) {
            (Input::Plain, false) => ("matvec", ("matvec4", "matmat"), m.x, 0.0),
            (Input::Norm(weight, eps), false) => ("matvec_norm", ("matvec4_norm", "matmat_norm"), weight, eps),
            (Input::SwiGlu, false) => ("matvec_swiglu_in", ("matvec4_swiglu_in", "matmat_swiglu_in"), m.x, 0.0),
            (Input::Norm(weight, eps), true) => {
                ("matvec_norm_swiglu_out", ("matvec4_norm_swiglu_out", "matmat_norm_swiglu_out"), weight, eps)
            }
            _ => unreachable!("the SwiGLU epilogue is compiled with the norm prologue only"),
        };
        assert!(!(m.swiglu_out && m.bias.is_some()), "the SwiGLU epilogue takes no bias");
        for part in &m.w.parts {
            let p = self.param(MatParams {
                rows: part.rows as u32,
                cols: m.w.cols as u32,
                row_words: m.w.row_words as u32,
                // With the SwiGLU epilogue, two rows of W (gate, up) make one output row.
                out_row0: (m.row0 + part.row0 / (1 + m.swiglu_out as usize)) as u32,
                out_stride: m.out_stride as u32,
                accumulate: m.accumulate as u32,
                bias: m.bias.is_some() as u32,
                last_only: m.last_only as u32,
                eps,
                scale: 1.0,
                softcap: m.softcap.unwrap_or(0.0),
                gelu: m.gelu as u32,
            });
            // Unused bindings (`tokens`, and the norm weight and bias when absent) get `x`.
            let res = vec![
                buf(&part.buffer),
                buf(m.x),
                buf(m.y),
                p,
                Res::Step,
                buf(m.x),
                buf(norm_w),
                buf(m.bias.unwrap_or(m.x)),
            ];
            let rows = part.rows as u32;
            let (grid, batched) =
                if m.last_only { (Grid::MatVec { rows }, None) } else { (Grid::Matmul { rows }, Some(batched)) };
            let reads = Reads::Matrix(part.buffer.size());
            let in_cols = m.w.cols as u32 * (1 + matches!(m.input, Input::SwiGlu) as u32);
            let out_cols = rows / (1 + m.swiglu_out as u32) * (1 + m.accumulate as u32);
            let work = Work::Matmul { rows, cols: m.w.cols as u32, in_cols, out_cols, dtype: m.w.dtype.name() };
            self.launches.push(PendingLaunch { family, entry: vec_entry, work, batched, res, grid, reads });
        }
    }

    pub fn finish(self, step: &wgpu::Buffer) -> (Vec<Launch>, wgpu::Buffer) {
        let params = self.arena.upload(self.gpu);
        let launches = self
            .launches
            .into_iter()
            .map(|l| {
                let resources: Vec<wgpu::BindingResource> = l
                    .res
                    .iter()
                    .map(|r| match r {
                        Res::Buf(b) => b.as_entire_binding(),
                        Res::Step => step.as_entire_binding(),
                        Res::Param(s) => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &params,
                            offset: s.offset,
                            size: NonZeroU64::new(s.size),
                        }),
                    })
                    .collect();
                let (four, tiled) = l.batched.unwrap_or((l.entry, l.entry));
                Launch {
                    pipeline: l.family.pipeline(l.entry).clone(),
                    entries: [l.entry, four, tiled],
                    work: l.work,
                    mv_rows: self.kernels.variant.mv_rows(),
                    batched: l.batched.map(|(v, m)| (l.family.pipeline(v).clone(), l.family.pipeline(m).clone())),
                    bind: l.family.bind(self.gpu, &resources),
                    grid: l.grid,
                    reads: l.reads,
                }
            })
            .collect();
        (launches, params)
    }
}

/// The attention geometry the rope and attention kernels need.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub rope_dim: usize,
    pub neox: bool,
    /// The attention scores' scale.
    pub scale: f32,
    /// Sliding window (0: none).
    pub window: usize,
}

impl Shape {
    /// Layer `li`'s geometry.
    pub fn of(c: &Config, li: usize) -> Shape {
        Shape {
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
            rope_dim: c.rope_dim,
            neox: c.rope_style == RopeStyle::Neox,
            scale: c.attn_scale,
            window: c.window(li).unwrap_or(0),
        }
    }
}

/// How a matmul reads its input `x`.
#[derive(Clone, Copy)]
pub enum Input<'a> {
    /// As it is.
    Plain,
    /// RMSNorm of each token's row, with this weight and epsilon.
    Norm(&'a wgpu::Buffer, f32),
    /// `silu(gate) * up`, of rows that hold gate then up (each as wide as the matrix's columns).
    SwiGlu,
}

/// One matmul launch: `y (+)= W · input(x) (+ bias)`.
pub struct MatMul<'a> {
    w: &'a GpuMatrix,
    x: &'a wgpu::Buffer,
    y: &'a wgpu::Buffer,
    input: Input<'a>,
    /// Where W's first row lands in `y`'s rows, and `y`'s floats per token.
    row0: usize,
    out_stride: usize,
    accumulate: bool,
    bias: Option<&'a wgpu::Buffer>,
    last_only: bool,
    swiglu_out: bool,
    /// The gated activation is GELU, not SiLU (the `Input::SwiGlu` prologue and the epilogue).
    gelu: bool,
    softcap: Option<f32>,
}

impl<'a> MatMul<'a> {
    /// `y = W x`, for every token of the step.
    pub fn new(w: &'a GpuMatrix, x: &'a wgpu::Buffer, y: &'a wgpu::Buffer) -> MatMul<'a> {
        MatMul {
            w,
            x,
            y,
            input: Input::Plain,
            row0: 0,
            out_stride: w.rows,
            accumulate: false,
            bias: None,
            last_only: false,
            swiglu_out: false,
            gelu: false,
            softcap: None,
        }
    }

    /// GELU instead of SiLU as the gate's activation.
    pub fn gelu(self, gelu: bool) -> Self {
        MatMul { gelu, ..self }
    }

    /// `y = cap · tanh(y / cap)` after everything else.
    pub fn softcap(self, softcap: Option<f32>) -> Self {
        MatMul { softcap, ..self }
    }

    pub fn input(self, input: Input<'a>) -> Self {
        MatMul { input, ..self }
    }

    /// W is rows `row0 ..` of a stack of matrices whose outputs fill `out_stride` floats per token.
    pub fn stacked_at(self, row0: usize, out_stride: usize) -> Self {
        MatMul { row0, out_stride, ..self }
    }

    /// Write into `y` instead.
    pub fn output(self, y: &'a wgpu::Buffer) -> Self {
        MatMul { y, ..self }
    }

    /// `y += W x`: the residual add.
    pub fn accumulate(self) -> Self {
        MatMul { accumulate: true, ..self }
    }

    /// Add `bias[row]` (indexed by rows of the whole stack).
    pub fn bias(self, bias: Option<&'a wgpu::Buffer>) -> Self {
        MatMul { bias, ..self }
    }

    /// `y = silu(gate) * up`, W being gate and up interleaved ([`GpuMatrix::interleaved`]).
    pub fn swiglu_out(self) -> Self {
        MatMul { swiglu_out: true, out_stride: self.w.rows / 2, ..self }
    }

    /// The step's last token only, into row 0 of `y` (the output head).
    pub fn last_only(self) -> Self {
        MatMul { last_only: true, ..self }
    }
}

fn buf(b: &wgpu::Buffer) -> Res {
    Res::Buf(b.clone())
}

impl Recorder<'_> {
    /// `out[t] = row tokens[t] of m`, for every part of `m`. `spare` is any other buffer (the
    /// kernel's unused input bindings).
    /// The rows are multiplied by `scale`.
    pub fn embed(
        &mut self,
        m: &GpuMatrix,
        tokens: &wgpu::Buffer,
        spare: &wgpu::Buffer,
        out: &wgpu::Buffer,
        scale: f32,
    ) {
        let family = &self.kernels.matmul[&m.dtype];
        for part in &m.parts {
            let p = self.param(MatParams {
                rows: part.rows as u32,
                cols: m.cols as u32,
                row_words: m.row_words as u32,
                out_row0: part.row0 as u32,
                out_stride: m.cols as u32,
                scale,
                ..MatParams::default()
            });
            let res = vec![buf(&part.buffer), buf(spare), buf(out), p, Res::Step, buf(tokens), buf(spare), buf(spare)];
            let work = Work::Rows { floats: if part.row0 == 0 { m.cols as u32 } else { 0 } };
            self.launch(family, "embed", res, Grid::PerToken((m.cols as u32 / 8).div_ceil(64)), work);
            if part.row0 == 0 {
                let last = self.launches.last_mut().expect("just recorded");
                last.reads = Reads::RowPerToken(m.row_words as u64 * 4);
            }
        }
    }

    /// Rotate the step's queries and keys (from its q|k|v rows) by their positions: the
    /// queries into `q`, the keys, with the values, written to a layer's cache at the tokens'
    /// slots (`places`: a `PlaceParams` per token).
    pub fn rope_kv(
        &mut self,
        qkv: &wgpu::Buffer,
        (table, places): (&wgpu::Buffer, &wgpu::Buffer),
        q: &wgpu::Buffer,
        (k_cache, v_cache): (&wgpu::Buffer, &wgpu::Buffer),
        s: &Shape,
    ) {
        let p = self.param(RopeParams {
            n_heads: s.n_heads as u32,
            n_kv_heads: s.n_kv_heads as u32,
            head_dim: s.head_dim as u32,
            rope_dim: s.rope_dim as u32,
            neox: s.neox as u32,
            _pad: [0; 3],
        });
        let row = ((s.n_heads + 2 * s.n_kv_heads) * s.head_dim) as u32;
        let res = vec![buf(qkv), buf(table), buf(q), buf(k_cache), buf(v_cache), p, Res::Step, buf(places)];
        let work = Work::Rows { floats: row + ((s.n_heads + 2 * s.n_kv_heads) * s.head_dim) as u32 };
        self.launch(&self.kernels.rope_kv, "rope_kv", res, Grid::Threads(row), work);
    }

    /// Causal grouped-query attention of the step's queries over a layer's cache, each token
    /// over the slots its place shows it (`places`).
    pub fn attention(
        &mut self,
        (q, places): (&wgpu::Buffer, &wgpu::Buffer),
        k_cache: &wgpu::Buffer,
        v_cache: &wgpu::Buffer,
        out: &wgpu::Buffer,
        s: &Shape,
    ) {
        let p = self.param(AttnParams {
            n_heads: s.n_heads as u32,
            n_kv_heads: s.n_kv_heads as u32,
            head_dim: s.head_dim as u32,
            scale: s.scale,
            window: s.window as u32,
            _pad: [0; 3],
        });
        let res = vec![buf(q), buf(k_cache), buf(v_cache), buf(out), p, Res::Step, buf(places)];
        let work = Work::Attention {
            n_heads: s.n_heads as u32,
            n_kv_heads: s.n_kv_heads as u32,
            head_dim: s.head_dim as u32,
            window: s.window as u32,
        };
        self.launch(&self.kernels.attention, "attention", res, Grid::Heads(s.n_heads as u32), work);
    }

    /// RMSNorm of each q and k head of the step's q|k|v rows, in place: `q_norm` for the query
    /// heads, `k_norm` for the key heads. `spare` is any other buffer.
    pub fn head_norm(
        &mut self,
        qkv: &wgpu::Buffer,
        (q_norm, k_norm): (&wgpu::Buffer, &wgpu::Buffer),
        spare: &wgpu::Buffer,
        s: &Shape,
        eps: f32,
    ) {
        let p = self.param(NormParams {
            n_heads: s.n_heads as u32,
            n_kv_heads: s.n_kv_heads as u32,
            dim: s.head_dim as u32,
            eps,
        });
        let res = vec![buf(spare), buf(q_norm), buf(k_norm), buf(qkv), p, Res::Step];
        let work = Work::Rows { floats: 2 * ((s.n_heads + s.n_kv_heads) * s.head_dim) as u32 };
        self.launch(&self.kernels.norm, "head_norm", res, Grid::Heads((s.n_heads + s.n_kv_heads) as u32), work);
    }

    /// `x += rmsnorm(y) · weight` for every token's row of `dim` floats.
    pub fn add_norm(&mut self, y: &wgpu::Buffer, weight: &wgpu::Buffer, x: &wgpu::Buffer, dim: usize, eps: f32) {
        let p = self.param(NormParams { n_heads: 0, n_kv_heads: 0, dim: dim as u32, eps });
        let res = vec![buf(y), buf(weight), buf(weight), buf(x), p, Res::Step];
        self.launch(&self.kernels.norm, "add_norm", res, Grid::Tokens, Work::Rows { floats: 3 * dim as u32 });
    }
}
