//! Every kernel launch of the forward pass, recorded with its bindings and parameters: the
//! model records a whole step once at load, the kernel tests one launch at a time.

use std::num::NonZeroU64;

use super::buffers::{GpuMatrix, MatrixPart, ParamArena, ParamSlot};
use super::device::Gpu;
use super::kernels::{grid, AttnParams, Family, Kernels, LenParams, MatParams, NormParams, RopeParams};
use crate::model::{Config, RopeStyle};

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
    /// A matmul: matrix × vector for one token, tiled matrix × matrix for more.
    Matmul { rows: u32 },
    /// Matrix × vector whatever the step size (the output head reads the last token only).
    MatVec { rows: u32 },
}

/// One recorded kernel launch.
pub struct Launch {
    pipeline: wgpu::ComputePipeline,
    /// The tiled matrix × matrix pipeline of a `Grid::Matmul`.
    matmat: Option<wgpu::ComputePipeline>,
    bind: wgpu::BindGroup,
    grid: Grid,
}

impl Launch {
    pub fn record(&self, pass: &mut wgpu::ComputePass, n: u32) {
        let (pipeline, (x, y)) = match self.grid {
            Grid::PerToken(x) => (&self.pipeline, (x, n)),
            Grid::Tokens => (&self.pipeline, (n, 1)),
            Grid::One => (&self.pipeline, (1, 1)),
            Grid::Threads(per_token) => (&self.pipeline, grid((n * per_token).div_ceil(64))),
            Grid::Heads(heads) => (&self.pipeline, (heads, n)),
            Grid::Matmul { rows } if n > 1 => (
                self.matmat.as_ref().expect("matmul launch has a matmat pipeline"),
                (rows.div_ceil(64), n.div_ceil(32)),
            ),
            Grid::Matmul { rows } | Grid::MatVec { rows } => (&self.pipeline, grid(rows.div_ceil(8))),
        };
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &self.bind, &[]);
        pass.dispatch_workgroups(x, y, 1);
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
    matmat: bool,
    res: Vec<Res>,
    grid: Grid,
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

    fn launch(&mut self, family: &'k Family, entry: &'static str, res: Vec<Res>, grid: Grid) {
        self.launches.push(PendingLaunch { family, entry, matmat: false, res, grid });
    }

    fn param<T: bytemuck::Pod>(&mut self, value: T) -> Res {
        Res::Param(self.arena.push(&value))
    }

    /// `y (+)= W x` for every part of `w`; `decode_only`: always matrix × vector.
    pub fn matmul(&mut self, w: &GpuMatrix, x: &wgpu::Buffer, y: &wgpu::Buffer, accumulate: bool, decode_only: bool) {
        let family = &self.kernels.matmul[&w.dtype];
        for part in &w.parts {
            let p = self.param(mat_params(w, part, w.rows, accumulate));
            // `tokens` is unused by the matmuls; bind something small of the right kind.
            let res = vec![
                Res::Buf(part.buffer.clone()),
                Res::Buf(x.clone()),
                Res::Buf(y.clone()),
                p,
                Res::Step,
                Res::Buf(x.clone()),
            ];
            let rows = part.rows as u32;
            let grid = if decode_only { Grid::MatVec { rows } } else { Grid::Matmul { rows } };
            self.launches.push(PendingLaunch { family, entry: "matvec", matmat: !decode_only, res, grid });
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
                Launch {
                    pipeline: l.family.pipeline(l.entry).clone(),
                    matmat: l.matmat.then(|| l.family.pipeline("matmat").clone()),
                    bind: l.family.bind(self.gpu, &resources),
                    grid: l.grid,
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
}

impl Shape {
    pub fn of(c: &Config) -> Shape {
        Shape {
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
            rope_dim: c.rope_dim,
            neox: c.rope_style == RopeStyle::Neox,
        }
    }
}

/// The parameters of one part of a matrix; `out_stride` is the floats per token of the output.
fn mat_params(m: &GpuMatrix, part: &MatrixPart, out_stride: usize, accumulate: bool) -> MatParams {
    MatParams {
        rows: part.rows as u32,
        cols: m.cols as u32,
        row_words: m.row_words as u32,
        out_row0: part.row0 as u32,
        out_stride: out_stride as u32,
        accumulate: accumulate as u32,
        _pad: [0; 2],
    }
}

fn buf(b: &wgpu::Buffer) -> Res {
    Res::Buf(b.clone())
}

impl Recorder<'_> {
    /// `out[t] = row tokens[t] of m`, for every part of `m`. `spare` is any other buffer (the
    /// kernel's unused input binding).
    pub fn embed(&mut self, m: &GpuMatrix, tokens: &wgpu::Buffer, spare: &wgpu::Buffer, out: &wgpu::Buffer) {
        let family = &self.kernels.matmul[&m.dtype];
        for part in &m.parts {
            let p = self.param(mat_params(m, part, m.cols, false));
            let res = vec![buf(&part.buffer), buf(spare), buf(out), p, Res::Step, buf(tokens)];
            self.launch(family, "embed", res, Grid::PerToken((m.cols as u32 / 8).div_ceil(64)));
        }
    }

    /// RMSNorm of each `dim`-wide row of `x`; `last_only`: of the step's last token, into row 0.
    pub fn rmsnorm(
        &mut self,
        x: &wgpu::Buffer,
        weight: &wgpu::Buffer,
        out: &wgpu::Buffer,
        dim: usize,
        eps: f32,
        last_only: bool,
    ) {
        let p = self.param(NormParams { dim: dim as u32, eps, last_only: last_only as u32, _pad: 0 });
        let grid = if last_only { Grid::One } else { Grid::Tokens };
        self.launch(&self.kernels.rmsnorm, "rmsnorm", vec![buf(x), buf(weight), buf(out), p, Res::Step], grid);
    }

    /// `y[t] += b` for rows of `len`.
    pub fn add_bias(&mut self, y: &wgpu::Buffer, b: &wgpu::Buffer, len: usize) {
        let p = self.param(LenParams { len: len as u32, _pad: [0; 3] });
        self.launch(
            &self.kernels.elementwise,
            "add_bias",
            vec![buf(y), buf(b), p, Res::Step],
            Grid::Threads(len as u32),
        );
    }

    /// `gate = silu(gate) * up` for rows of `len`.
    pub fn swiglu(&mut self, gate: &wgpu::Buffer, up: &wgpu::Buffer, len: usize) {
        let p = self.param(LenParams { len: len as u32, _pad: [0; 3] });
        self.launch(
            &self.kernels.elementwise,
            "swiglu",
            vec![buf(gate), buf(up), p, Res::Step],
            Grid::Threads(len as u32),
        );
    }

    /// Rotate the step's queries and keys in place by their positions.
    pub fn rope(&mut self, q: &wgpu::Buffer, k: &wgpu::Buffer, table: &wgpu::Buffer, s: &Shape) {
        let p = self.param(RopeParams {
            n_heads: s.n_heads as u32,
            n_kv_heads: s.n_kv_heads as u32,
            head_dim: s.head_dim as u32,
            rope_dim: s.rope_dim as u32,
            neox: s.neox as u32,
            _pad: [0; 3],
        });
        let pairs = ((s.n_heads + s.n_kv_heads) * s.rope_dim / 2) as u32;
        self.launch(&self.kernels.rope, "rope", vec![buf(q), buf(k), buf(table), p, Res::Step], Grid::Threads(pairs));
    }

    /// Append the step's keys and values to a layer's cache.
    pub fn kv_write(
        &mut self,
        k: &wgpu::Buffer,
        v: &wgpu::Buffer,
        k_cache: &wgpu::Buffer,
        v_cache: &wgpu::Buffer,
        kv_dim: usize,
    ) {
        let p = self.param(LenParams { len: kv_dim as u32, _pad: [0; 3] });
        let res = vec![buf(k), buf(v), buf(k_cache), buf(v_cache), p, Res::Step];
        self.launch(&self.kernels.kv_cache, "kv_write", res, Grid::Threads(kv_dim as u32));
    }

    /// Causal grouped-query attention of the step's queries over a layer's cache.
    pub fn attention(
        &mut self,
        q: &wgpu::Buffer,
        k_cache: &wgpu::Buffer,
        v_cache: &wgpu::Buffer,
        out: &wgpu::Buffer,
        s: &Shape,
    ) {
        let p = self.param(AttnParams {
            n_heads: s.n_heads as u32,
            n_kv_heads: s.n_kv_heads as u32,
            head_dim: s.head_dim as u32,
            scale: 1.0 / (s.head_dim as f32).sqrt(),
        });
        let res = vec![buf(q), buf(k_cache), buf(v_cache), buf(out), p, Res::Step];
        self.launch(&self.kernels.attention, "attention", res, Grid::Heads(s.n_heads as u32));
    }
}
