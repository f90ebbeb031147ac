//! The f32 building blocks of the forward pass, written to be read: each is the textbook formula.

use crate::model::{Activation, RopeStyle};

/// Dot product with eight independent partial sums, which the compiler turns into SIMD (a single
/// running sum cannot be vectorised without reordering float additions).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// A row-major matrix: `rows` rows of `cols` values. For a weight, a row is one output feature.
#[derive(Clone, Debug, Default)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }
}

/// `out[t][r] = Σ_c w[r][c] · x[t][c]` for each of the `x.len() / w.cols` input vectors.
pub fn matmul(w: &Matrix, x: &[f32], out: &mut [f32]) {
    let n = x.len() / w.cols;
    for_row_blocks(w.rows, w.cols, n, out, |r, t| dot(w.row(r), &x[t * w.cols..(t + 1) * w.cols]));
}

/// Below this many multiply-adds a product stays on one thread: starting a thread costs more
/// than a small decode-step product (measured: 2 threads decoded at 32 tokens/s, 1 at 59).
const PARALLEL_MIN_WORK: usize = 4 << 20;

/// `out[t][r] = f(r, t)` for `rows` rows of `cols` and `n` tokens. Rows are split across threads
/// natively when the product is large, and each row is visited once for all tokens, so a weight
/// row is read once per batch.
pub fn for_row_blocks(rows: usize, cols: usize, n: usize, out: &mut [f32], f: impl Fn(usize, usize) -> f32 + Sync) {
    for_rows(rows, cols, n, out, |r, dst| {
        for (t, o) in dst.iter_mut().enumerate() {
            *o = f(r, t);
        }
    });
}

/// `f(r, dst)` sets `dst[t] = out[t][r]` for every token `t` of row `r`: [`for_row_blocks`] for
/// products that prepare a row once for all tokens (the 16-bit float rows are widened once).
pub fn for_rows(rows: usize, cols: usize, n: usize, out: &mut [f32], f: impl Fn(usize, &mut [f32]) + Sync) {
    debug_assert_eq!(out.len(), n * rows);
    let threads = if rows * cols * n >= PARALLEL_MIN_WORK { threads() } else { 1 };
    let rows_per_task = rows.div_ceil(threads).max(1);
    // Fill `dst`, laid out [row][token], from row r0 on.
    let fill = |(r0, dst): (usize, &mut [f32])| {
        for (r, dst) in dst.chunks_exact_mut(n).enumerate() {
            f(r0 + r, dst);
        }
    };
    let blocks = |buf: &mut [f32]| {
        if threads == 1 {
            fill((0, buf));
        } else {
            parallel(
                buf.chunks_mut(rows_per_task * n).enumerate().map(|(i, s)| (i * rows_per_task, s)).collect(),
                fill,
            );
        }
    };
    if n == 1 {
        // One token (decode): [row][token] is out's own layout; nothing to allocate.
        blocks(out);
        return;
    }
    // Each thread writes its own slice of a row-block-major scratch, transposed after.
    let mut scratch = vec![0f32; n * rows];
    blocks(&mut scratch);
    for r in 0..rows {
        for t in 0..n {
            out[t * rows + r] = scratch[r * n + t];
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn threads() -> usize {
    use std::sync::OnceLock;
    static N: OnceLock<usize> = OnceLock::new();
    // WEBGPU_LLM_THREADS overrides the count (for benchmarks).
    *N.get_or_init(|| match std::env::var("WEBGPU_LLM_THREADS").ok().and_then(|v| v.parse().ok()) {
        Some(n) if n >= 1 => n,
        _ => std::thread::available_parallelism().map_or(1, |n| n.get()).min(16),
    })
}

#[cfg(target_arch = "wasm32")]
fn threads() -> usize {
    1
}

/// Run `work` on every task, on scoped threads natively (one task stays on this thread).
fn parallel<T: Send>(tasks: Vec<T>, work: impl Fn(T) + Sync) {
    #[cfg(not(target_arch = "wasm32"))]
    if tasks.len() > 1 {
        let mut tasks = tasks.into_iter();
        let first = tasks.next().expect("more than one task");
        std::thread::scope(|s| {
            for t in tasks {
                let work = &work;
                s.spawn(move || work(t));
            }
            work(first);
        });
        return;
    }
    for t in tasks {
        work(t);
    }
}

/// RMSNorm of each `weight.len()`-wide vector of `x`, scaled by `weight`.
pub fn rmsnorm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let d = weight.len();
    for (xv, ov) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let mean_sq = xv.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let scale = 1.0 / (mean_sq + eps).sqrt();
        for i in 0..d {
            ov[i] = xv[i] * scale * weight[i];
        }
    }
}

/// [`rmsnorm`] in place.
pub fn rmsnorm_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    let d = weight.len();
    for xv in x.chunks_exact_mut(d) {
        let mean_sq = xv.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let scale = 1.0 / (mean_sq + eps).sqrt();
        xv.iter_mut().zip(weight).for_each(|(v, w)| *v = *v * scale * w);
    }
}

/// Rotary position embedding of one head vector at position `pos`.
/// Pair i rotates by `pos / scale · base^(-2i/rope_dim) / freq_factor[i]`.
pub fn rope(
    head: &mut [f32],
    pos: usize,
    rope_dim: usize,
    base: f32,
    linear_scale: f32,
    freq_factors: Option<&[f32]>,
    style: RopeStyle,
) {
    let half = rope_dim / 2;
    for i in 0..half {
        let factor = freq_factors.map_or(1.0, |f| f[i]);
        let (cos, sin) = rope_cos_sin(pos, i, rope_dim, base, linear_scale, factor);
        let (a, b) = match style {
            RopeStyle::Normal => (2 * i, 2 * i + 1),
            RopeStyle::Neox => (i, i + half),
        };
        let (x0, x1) = (head[a], head[b]);
        head[a] = x0 * cos - x1 * sin;
        head[b] = x0 * sin + x1 * cos;
    }
}

/// Cosine and sine of the angle of pair `i` at position `pos`, computed in f64 (the GPU's
/// table of them comes from here too).
pub fn rope_cos_sin(pos: usize, i: usize, rope_dim: usize, base: f32, linear_scale: f32, factor: f32) -> (f32, f32) {
    let inv_freq = (base as f64).powf(-2.0 * i as f64 / rope_dim as f64);
    let theta = pos as f64 / linear_scale as f64 * inv_freq / factor as f64;
    (theta.cos() as f32, theta.sin() as f32)
}

/// Numerically stable softmax in place.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// GELU, tanh approximation: `x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))`.
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + 0.044_715 * x * x)).tanh())
}

/// The gated FFN's activation of `gate`, times `up`.
pub fn glu(act: Activation, gate: f32, up: f32) -> f32 {
    match act {
        Activation::Silu => silu(gate) * up,
        Activation::GeluTanh => gelu_tanh(gate) * up,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_naive_sum_for_every_tail_length() {
        for n in 0..20 {
            let a: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            let b: Vec<f32> = (0..n).map(|i| 1.0 - i as f32 * 0.25).collect();
            let naive: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((dot(&a, &b) as f64 - naive).abs() < 1e-4, "n={n}");
        }
    }

    #[test]
    fn matmul_matches_definition() {
        let w = Matrix { rows: 5, cols: 3, data: (0..15).map(|i| i as f32).collect() };
        let x = [1.0, 2.0, 3.0, -1.0, 0.0, 1.0];
        let mut out = [0.0; 10];
        matmul(&w, &x, &mut out);
        for t in 0..2 {
            for r in 0..5 {
                let want: f32 = (0..3).map(|c| w.data[r * 3 + c] * x[t * 3 + c]).sum();
                assert_eq!(out[t * 5 + r], want);
            }
        }
    }

    #[test]
    fn rmsnorm_of_constant_vector_is_the_weight() {
        let mut out = [0.0; 4];
        rmsnorm(&[2.0; 4], &[1.0, 2.0, 3.0, 4.0], 0.0, &mut out);
        assert_eq!(out, [1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn rope_rotates_pairs_by_the_right_angle() {
        // Position 1, rope_dim 4, base 100: pair 0 turns by 1 rad, pair 1 by 0.1 rad.
        let mut h = [1.0, 0.0, 1.0, 0.0];
        rope(&mut h, 1, 4, 100.0, 1.0, None, RopeStyle::Normal);
        let want = [1f32.cos(), 1f32.sin(), 0.1f32.cos(), 0.1f32.sin()];
        for (a, b) in h.iter().zip(want) {
            assert!((a - b).abs() < 1e-6);
        }
        // NeoX pairs element i with i + 2.
        let mut h = [1.0, 1.0, 0.0, 0.0];
        rope(&mut h, 1, 4, 100.0, 2.0, Some(&[1.0, 0.5]), RopeStyle::Neox);
        let want = [0.5f32.cos(), 0.1f32.cos(), 0.5f32.sin(), 0.1f32.sin()];
        for (a, b) in h.iter().zip(want) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn gelu_tanh_matches_its_definition() {
        // Reference values of 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3))) computed in f64.
        for (x, want) in
            [(-3.0f32, -0.003_637_392), (-0.5, -0.154_286), (0.0, 0.0), (1.0, 0.841_191_95), (2.5, 2.484_915_7)]
        {
            assert!((gelu_tanh(x) - want).abs() < 1e-6, "gelu({x}) = {} want {want}", gelu_tanh(x));
        }
        assert_eq!(glu(Activation::Silu, 1.0, 2.0), silu(1.0) * 2.0);
    }

    #[test]
    fn softmax_is_stable_and_normalised() {
        let mut x = [1000.0, 1000.0, f32::NEG_INFINITY];
        softmax(&mut x);
        assert_eq!(x, [0.5, 0.5, 0.0]);
    }
}
