//! Matrix products on weights that stay in their quantized blocks, the way llama.cpp's CPU
//! backend does them: the input is quantized to 8 bits, per 32 values for the 32-value weight
//! blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) and per 256-value super-block for the K-quants (Q4_K,
//! Q5_K, Q6_K), and a block's dot product is an integer sum scaled once. A decoded token then
//! reads 0.6 bytes per weight (Q4_K) instead of 4, and the arithmetic is integer SIMD. F16 and
//! BF16 matrices stay 16-bit and are widened a row at a time.
//!
//! - `input`: the quantized inputs, llama.cpp's Q8_0/Q8_1 (`Q8Vec`) and Q8_K (`Q8KVec`).
//! - `legacy`: the 32-value blocks' products (its `ggml_vec_dot_q{4,5,8}_{0,1}_q8_{0,1}`).
//! - `kquants`: the K-quants' products (its `ggml_vec_dot_q{4,5,6}_K_q8_K`).
//! - `float`: F16 / BF16 rows.
//!
//! Each product has a plain loop and SIMD versions of the same integer arithmetic: SSE2 on every
//! x86-64, AVX2 where the CPU has it (chosen at run time), SIMD128 in wasm (`Isa`).
//!
//! Scales are rounded as llama.cpp rounds them (f16 for the 32-value blocks' `d` and `s`, f32 for
//! Q8_K's `d`). This is llama.cpp's computation (its `q4_1_*` golden runs), not the exact f32 one;
//! tests/cpu_golden.rs shows how far from the exact run that lands on the default model.

mod float;
mod input;
mod kquants;
mod legacy;
#[cfg(test)]
mod tests;

pub use input::{Q8KVec, Q8Vec};

use half::{bf16, f16};

use crate::gguf::TensorView;
use crate::quant::{f16_at, DType, QK, QK_K};

/// The instruction set a product runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    /// Plain loops (any CPU; the reference the others are tested against).
    Portable,
    /// SSE2: part of x86-64.
    #[cfg(target_arch = "x86_64")]
    Sse2,
    /// AVX2, where the CPU has it.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// WebAssembly SIMD128 (the wasm build enables it: .cargo/config.toml).
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    Simd128,
}

impl Isa {
    /// Every instruction set this CPU runs, slowest first.
    pub(crate) fn available() -> Vec<Isa> {
        #[allow(unused_mut)]
        let mut v = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            v.push(Isa::Sse2);
            if has_avx2() {
                v.push(Isa::Avx2);
            }
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        v.push(Isa::Simd128);
        v
    }

    /// The fastest instruction set here. Natively, `WEBGPU_LLM_CPU_SIMD=portable` or `sse2` picks
    /// a slower one (for benchmarks).
    pub(crate) fn best() -> Isa {
        use std::sync::OnceLock;
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| {
            let all = Isa::available();
            let wanted = std::env::var("WEBGPU_LLM_CPU_SIMD").ok();
            let named = all.iter().find(|i| Some(format!("{i:?}").to_lowercase()) == wanted);
            *named.unwrap_or(all.last().expect("Portable is always there"))
        })
    }
}

/// Whether this CPU has AVX2 (detected once, by std).
#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    std::is_x86_feature_detected!("avx2")
}

/// A weight matrix kept in its file's format, one output feature per row.
#[derive(Clone, Debug)]
pub struct QMatrix {
    pub rows: usize,
    pub cols: usize,
    data: Data,
}

#[derive(Clone, Debug)]
enum Data {
    /// 32-value blocks, split into arrays so the inner loops read plain bytes and floats.
    Blocks {
        kind: legacy::Kind,
        /// `d` of every block, row by row.
        scales: Vec<f32>,
        /// `m` of every block (Q4_1, Q5_1).
        mins: Vec<f32>,
        /// The fifth bits of every block (Q5_0, Q5_1).
        qh: Vec<u32>,
        qs: Vec<u8>,
    },
    /// K-quant super-blocks exactly as the file stores them.
    Super {
        dtype: DType,
        blocks: Vec<u8>,
    },
    F16(Vec<f16>),
    BF16(Vec<bf16>),
}

impl QMatrix {
    /// The tensor as a `QMatrix` when its type has a product here (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
    /// Q4_K, Q5_K, Q6_K, F16, BF16) and its rows are whole blocks; `None` otherwise.
    pub fn from_tensor(t: TensorView) -> Option<QMatrix> {
        let cols = *t.info.dims.first()? as usize;
        let dtype = t.info.dtype;
        if cols == 0 || !cols.is_multiple_of(dtype.block_elems()) || t.info.dims.len() > 2 {
            return None;
        }
        let blocks = t.data.len() / dtype.block_bytes();
        let rows = blocks / (cols / dtype.block_elems());
        let data = match dtype {
            DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::Q8_0 => split_blocks(dtype, t.data, blocks),
            DType::Q4_K | DType::Q5_K | DType::Q6_K => Data::Super { dtype, blocks: t.data.to_vec() },
            DType::F16 => Data::F16(t.data.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]])).collect()),
            DType::BF16 => Data::BF16(t.data.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]])).collect()),
            DType::F32 => return None,
        };
        Some(QMatrix { rows, cols, data })
    }

    /// The bytes a `QMatrix` of this tensor holds, or `None` when it would be dequantized
    /// (what [`QMatrix::from_tensor`] decides, without the data).
    pub fn bytes_for(t: &crate::gguf::TensorInfo) -> Option<u64> {
        let cols = *t.dims.first()? as usize;
        if cols == 0 || !cols.is_multiple_of(t.dtype.block_elems()) || t.dims.len() > 2 {
            return None;
        }
        let blocks = t.size / t.dtype.block_bytes() as u64;
        let per_block = match t.dtype {
            DType::Q4_0 => 16 + 4,
            DType::Q4_1 => 16 + 8,
            DType::Q5_0 => 16 + 8,
            DType::Q5_1 => 16 + 12,
            DType::Q8_0 => 32 + 4,
            DType::F32 => return None,
            d => d.block_bytes() as u64,
        };
        Some(blocks * per_block)
    }

    /// Row `r` as f32 (the embedding lookup).
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        let cols = self.cols;
        match &self.data {
            Data::Blocks { kind, scales, mins, qh, qs } => {
                let nb = cols / QK;
                let per = kind.qs_bytes();
                for (b, o) in (r * nb..(r + 1) * nb).zip(out.chunks_exact_mut(QK)) {
                    let d = scales[b];
                    let q = &qs[b * per..][..per];
                    match kind {
                        legacy::Kind::Q8_0 => {
                            for (o, &q) in o.iter_mut().zip(q) {
                                *o = q as i8 as f32 * d;
                            }
                        }
                        _ => {
                            let h = if kind.has_high_bits() { qh[b] } else { 0 };
                            let (off, m) = (kind.offset(), if kind.has_min() { mins[b] } else { 0.0 });
                            for j in 0..16 {
                                let lo = ((q[j] & 15) as u32 | ((h >> j) & 1) << 4) as i32;
                                let hi = ((q[j] >> 4) as u32 | ((h >> (j + 16)) & 1) << 4) as i32;
                                o[j] = (lo - off) as f32 * d + m;
                                o[j + 16] = (hi - off) as f32 * d + m;
                            }
                        }
                    }
                }
            }
            Data::Super { dtype, blocks } => {
                let bytes = cols / QK_K * kquants::block_bytes(*dtype);
                crate::quant::dequantize(*dtype, &blocks[r * bytes..][..bytes], out).expect("whole super-blocks");
            }
            Data::F16(v) => float::widen(&v[r * cols..][..cols], out),
            Data::BF16(v) => float::widen(&v[r * cols..][..cols], out),
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        match &self.data {
            Data::Blocks { scales, mins, qh, qs, .. } => qs.len() + 4 * (scales.len() + mins.len() + qh.len()),
            Data::Super { blocks, .. } => blocks.len(),
            Data::F16(v) => 2 * v.len(),
            Data::BF16(v) => 2 * v.len(),
        }
    }

    /// Row `r` of 32-value blocks as the kernels take it.
    fn block_row(&self, r: usize) -> legacy::Row<'_> {
        let Data::Blocks { kind, scales, mins, qh, qs } = &self.data else { unreachable!("not 32-value blocks") };
        let nb = self.cols / QK;
        let w = r * nb..(r + 1) * nb;
        legacy::Row {
            kind: *kind,
            qs: &qs[w.start * kind.qs_bytes()..w.end * kind.qs_bytes()],
            qh: if kind.has_high_bits() { &qh[w.clone()] } else { &[] },
            d: &scales[w.clone()],
            m: if kind.has_min() { &mins[w] } else { &[] },
        }
    }

    /// Row `r` of 32-value blocks times input vector `t` of `x`.
    fn dot_blocks(&self, isa: Isa, r: usize, x: &Q8Vec, t: usize) -> f32 {
        let nb = self.cols / QK;
        let xb = t * nb..(t + 1) * nb;
        let input = legacy::Input { qs: &x.qs[xb.start * QK..xb.end * QK], d: &x.d[xb.clone()], s: &x.s[xb] };
        legacy::dot(isa, &self.block_row(r), &input)
    }

    /// Row `r` of K-quant super-blocks times input vector `t` of `x`.
    fn dot_super(&self, isa: Isa, r: usize, x: &Q8KVec, t: usize) -> f32 {
        let Data::Super { dtype, blocks } = &self.data else { unreachable!("not K-quant super-blocks") };
        let nb = self.cols / QK_K;
        let bytes = nb * kquants::block_bytes(*dtype);
        let xb = t * nb..(t + 1) * nb;
        let input = kquants::Input {
            qs: &x.qs[xb.start * QK_K..xb.end * QK_K],
            d: &x.d[xb.clone()],
            bsums: &x.bsums[xb.start * 16..xb.end * 16],
        };
        kquants::dot(isa, *dtype, &blocks[r * bytes..][..bytes], &input)
    }
}

/// Q4_0 .. Q8_0 blocks split into their arrays.
fn split_blocks(dtype: DType, data: &[u8], blocks: usize) -> Data {
    let kind = match dtype {
        DType::Q4_0 => legacy::Kind::Q4_0,
        DType::Q4_1 => legacy::Kind::Q4_1,
        DType::Q5_0 => legacy::Kind::Q5_0,
        DType::Q5_1 => legacy::Kind::Q5_1,
        _ => legacy::Kind::Q8_0,
    };
    let (mut scales, mut mins, mut qh, mut qs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    scales.reserve_exact(blocks);
    qs.reserve_exact(blocks * kind.qs_bytes());
    if kind.has_min() {
        mins.reserve_exact(blocks);
    }
    if kind.has_high_bits() {
        qh.reserve_exact(blocks);
    }
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    for b in data.chunks_exact(dtype.block_bytes()) {
        let d = f16_at(b, 0);
        scales.push(d);
        if kind.has_min() {
            mins.push(f16_at(b, 2));
        }
        match dtype {
            DType::Q5_0 => qh.push(u32_at(b, 2)),
            DType::Q5_1 => qh.push(u32_at(b, 4)),
            _ => {}
        }
        qs.extend_from_slice(&b[b.len() - kind.qs_bytes()..]);
    }
    Data::Blocks { kind, scales, mins, qh, qs }
}

/// `out[t][r] = Σ_c w[r][c] · x[t][c]` for each of the `x.len() / w.cols` input vectors, with
/// the inputs quantized first (16-bit float rows: widened, in f32). Rows are split across threads
/// natively.
pub fn matmul_q(w: &QMatrix, x: &[f32], out: &mut [f32]) {
    matmul_with(Isa::best(), w, x, out)
}

fn matmul_with(isa: Isa, w: &QMatrix, x: &[f32], out: &mut [f32]) {
    let n = x.len() / w.cols;
    debug_assert_eq!(out.len(), n * w.rows);
    thread_local! {
        // The quantized input, reused so a product allocates nothing.
        static XQ: std::cell::RefCell<Q8Vec> = std::cell::RefCell::default();
        static XK: std::cell::RefCell<Q8KVec> = std::cell::RefCell::default();
    }
    use super::ops::for_row_blocks;
    match &w.data {
        Data::Blocks { .. } => XQ.with_borrow_mut(|xq| {
            xq.quantize_into(x);
            let xq = &*xq;
            for_row_blocks(w.rows, w.cols, n, out, |r, t| w.dot_blocks(isa, r, xq, t));
        }),
        Data::Super { .. } => XK.with_borrow_mut(|xk| {
            xk.quantize_into(x);
            let xk = &*xk;
            for_row_blocks(w.rows, w.cols, n, out, |r, t| w.dot_super(isa, r, xk, t));
        }),
        Data::F16(v) => float::matmul(v, w.rows, w.cols, x, out),
        Data::BF16(v) => float::matmul(v, w.rows, w.cols, x, out),
    }
}
