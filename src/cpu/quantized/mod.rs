//! Matrix products on weights that stay in their 4- or 8-bit blocks, the way llama.cpp's CPU
//! backend does them: each 32-value block of the input is quantized to 8 bits (`Q8Vec`), and a
//! block's dot product is an integer sum scaled once. A decoded token then reads 0.6 bytes per
//! weight (Q4_1) instead of 4, and the arithmetic is integer SIMD.
//!
//! For weights `w = d·q + m` (Q4_0 is Q4_1 with `m = -8d`) and inputs `x ≈ dx·qx`, a block gives
//! `d·dx·Σ q·qx + m·sx`, where `sx = dx·Σ qx` (llama.cpp's Q8_1). Q8_0 weights have no `m`.
//! Scales are rounded to f16 as llama.cpp stores them. This is llama.cpp's computation (its
//! `q4_1_*` golden runs), not the exact f32 one; tests/cpu_golden.rs shows how far from the exact
//! run that lands on the default model.

use half::f16;

use crate::gguf::TensorView;
use crate::quant::{DType, Q4_0_BYTES, Q4_1_BYTES, Q8_0_BYTES, QK};

/// How the 32 values of a weight block are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bits {
    /// 16 bytes of nibbles, values 0..=15: elements `j` (low) and `j + 16` (high) of byte `j`.
    Four,
    /// 32 signed bytes.
    Eight,
}

/// A weight matrix kept quantized, one output feature per row, split into arrays so the inner
/// loops read plain bytes and floats.
#[derive(Clone, Debug)]
pub struct QMatrix {
    pub rows: usize,
    pub cols: usize,
    bits: Bits,
    /// `d` of every block, row by row.
    scales: Vec<f32>,
    /// `m` of every block (four-bit blocks only).
    mins: Vec<f32>,
    qs: Vec<u8>,
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

impl QMatrix {
    /// The tensor as a `QMatrix` when its type has an integer kernel here (Q4_0, Q4_1, Q8_0)
    /// and its rows are whole blocks; `None` otherwise.
    pub fn from_tensor(t: TensorView) -> Option<QMatrix> {
        let cols = *t.info.dims.first()? as usize;
        if cols % QK != 0 || t.info.dims.len() > 2 {
            return None;
        }
        let (bits, block) = match t.info.dtype {
            DType::Q4_0 => (Bits::Four, Q4_0_BYTES),
            DType::Q4_1 => (Bits::Four, Q4_1_BYTES),
            DType::Q8_0 => (Bits::Eight, Q8_0_BYTES),
            _ => return None,
        };
        let blocks = t.data.len() / block;
        let rows = blocks / (cols / QK);
        let mut m = QMatrix { rows, cols, bits, scales: Vec::new(), mins: Vec::new(), qs: Vec::new() };
        let per = if bits == Bits::Four { QK / 2 } else { QK };
        m.scales.reserve_exact(blocks);
        m.qs.reserve_exact(blocks * per);
        for b in t.data.chunks_exact(block) {
            let d = f16_at(b, 0);
            m.scales.push(d);
            match t.info.dtype {
                DType::Q4_0 => {
                    m.mins.push(-8.0 * d);
                    m.qs.extend_from_slice(&b[2..]);
                }
                DType::Q4_1 => {
                    m.mins.push(f16_at(b, 2));
                    m.qs.extend_from_slice(&b[4..]);
                }
                _ => m.qs.extend_from_slice(&b[2..]),
            }
        }
        Some(m)
    }

    fn blocks_per_row(&self) -> usize {
        self.cols / QK
    }

    /// Row `r` as f32 (the embedding lookup).
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        let nb = self.blocks_per_row();
        for (b, o) in (r * nb..(r + 1) * nb).zip(out.chunks_exact_mut(QK)) {
            let d = self.scales[b];
            match self.bits {
                Bits::Four => {
                    let q = &self.qs[b * 16..][..16];
                    let m = self.mins[b];
                    for j in 0..16 {
                        o[j] = (q[j] & 15) as f32 * d + m;
                        o[j + 16] = (q[j] >> 4) as f32 * d + m;
                    }
                }
                Bits::Eight => {
                    for (o, &q) in o.iter_mut().zip(&self.qs[b * QK..][..QK]) {
                        *o = q as i8 as f32 * d;
                    }
                }
            }
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.qs.len() + 4 * (self.scales.len() + self.mins.len())
    }

    /// Row `r` times input vector `t` of `x`.
    fn dot(&self, r: usize, x: &Q8Vec, t: usize) -> f32 {
        let nb = self.blocks_per_row();
        let (w, xb) = (r * nb..(r + 1) * nb, t * nb..(t + 1) * nb);
        let xq = &x.qs[xb.start * QK..xb.end * QK];
        match self.bits {
            Bits::Four => kernels::row_q4(
                &self.qs[w.start * 16..w.end * 16],
                &self.scales[w.clone()],
                &self.mins[w],
                xq,
                &x.d[xb.clone()],
                &x.s[xb],
            ),
            Bits::Eight => kernels::row_q8(&self.qs[w.start * QK..w.end * QK], &self.scales[w], xq, &x.d[xb]),
        }
    }
}

/// Input vectors quantized to 8 bits per value in blocks of 32 (llama.cpp's Q8_1: `d` and
/// `s = d·Σq` rounded to f16). The values are stored widened to 16 bits: widened once here
/// instead of once per weight row in the dot products.
#[derive(Clone, Debug, Default)]
pub struct Q8Vec {
    d: Vec<f32>,
    s: Vec<f32>,
    qs: Vec<i16>,
}

impl Q8Vec {
    /// Quantize `x` (a whole number of blocks).
    pub fn quantize(x: &[f32]) -> Q8Vec {
        let mut v = Q8Vec::default();
        v.quantize_into(x);
        v
    }

    /// Quantize `x` into this vector's buffers (no allocation once they are large enough).
    pub fn quantize_into(&mut self, x: &[f32]) {
        debug_assert_eq!(x.len() % QK, 0);
        let v = self;
        v.d.clear();
        v.s.clear();
        v.qs.resize(x.len(), 0);
        for (xb, qb) in x.chunks_exact(QK).zip(v.qs.chunks_exact_mut(QK)) {
            let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let mut sum = 0i32;
            for (q, &x) in qb.iter_mut().zip(xb) {
                *q = (x * id).round_ties_even() as i16;
                sum += *q as i32;
            }
            v.d.push(f16::from_f32(d).to_f32());
            v.s.push(f16::from_f32(sum as f32 * d).to_f32());
        }
    }
}

/// One row of blocks times one quantized input: `Σ_b d·dx·(Σ q·qx) + m·sx`. Integer sums are
/// exact; the SIMD versions add the scaled block sums in four lanes.
mod kernels {
    #[cfg(target_arch = "x86_64")]
    pub use x86::{row_q4, row_q8};

    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    pub use wasm::{row_q4, row_q8};

    #[cfg(not(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128"))))]
    pub use portable::{row_q4, row_q8};

    /// The lengths every version relies on (checked once per row, so the loops need no checks).
    fn check(qs: usize, per: usize, d: usize, xq: usize, xd: usize) {
        assert!(qs == d * per && xq == d * super::QK && xd == d, "mismatched row and input");
    }

    #[cfg_attr(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")), allow(dead_code))]
    pub mod portable {
        pub fn row_q4(qs: &[u8], d: &[f32], m: &[f32], xq: &[i16], xd: &[f32], xs: &[f32]) -> f32 {
            super::check(qs.len(), 16, d.len(), xq.len(), xd.len());
            let mut sum = 0f32;
            for b in 0..d.len() {
                let (q, x) = (&qs[b * 16..][..16], &xq[b * 32..][..32]);
                let mut acc = 0i32;
                for j in 0..16 {
                    acc += (q[j] & 15) as i32 * x[j] as i32 + (q[j] >> 4) as i32 * x[j + 16] as i32;
                }
                sum += d[b] * xd[b] * acc as f32 + m[b] * xs[b];
            }
            sum
        }

        pub fn row_q8(qs: &[u8], d: &[f32], xq: &[i16], xd: &[f32]) -> f32 {
            super::check(qs.len(), 32, d.len(), xq.len(), xd.len());
            let mut sum = 0f32;
            for b in 0..d.len() {
                let acc: i32 =
                    qs[b * 32..][..32].iter().zip(&xq[b * 32..][..32]).map(|(&q, &x)| q as i8 as i32 * x as i32).sum();
                sum += d[b] * xd[b] * acc as f32;
            }
            sum
        }
    }

    /// SSE2 (every x86-64 has it): widen the weights to 16 bits, `pmaddwd` pairs into 32-bit lanes.
    #[cfg(target_arch = "x86_64")]
    mod x86 {
        use core::arch::x86_64::*;

        /// Four 32-bit partial sums of `a · x` over 16 signed bytes `a` and 16 values `x0 | x1`.
        #[inline(always)]
        unsafe fn dot16(a: __m128i, x: *const i16) -> __m128i {
            let a0 = _mm_srai_epi16(_mm_unpacklo_epi8(a, a), 8);
            let a1 = _mm_srai_epi16(_mm_unpackhi_epi8(a, a), 8);
            let x0 = _mm_loadu_si128(x as *const __m128i);
            let x1 = _mm_loadu_si128(x.add(8) as *const __m128i);
            _mm_add_epi32(_mm_madd_epi16(a0, x0), _mm_madd_epi16(a1, x1))
        }

        #[inline(always)]
        unsafe fn hsum(v: __m128) -> f32 {
            let mut l = [0f32; 4];
            _mm_storeu_ps(l.as_mut_ptr(), v);
            (l[0] + l[1]) + (l[2] + l[3])
        }

        pub fn row_q4(qs: &[u8], d: &[f32], m: &[f32], xq: &[i16], xd: &[f32], xs: &[f32]) -> f32 {
            super::check(qs.len(), 16, d.len(), xq.len(), xd.len());
            assert!(m.len() == d.len() && xs.len() == d.len());
            let mut mins = 0f32;
            // SAFETY: SSE2 is part of x86-64; `check` proved every load below is in bounds.
            unsafe {
                let mask = _mm_set1_epi8(15);
                let mut acc = _mm_setzero_ps();
                for b in 0..d.len() {
                    let v = _mm_loadu_si128(qs.as_ptr().add(b * 16) as *const __m128i);
                    let x = xq.as_ptr().add(b * 32);
                    let lo = _mm_and_si128(v, mask);
                    let hi = _mm_and_si128(_mm_srli_epi16(v, 4), mask);
                    let i = _mm_add_epi32(dot16(lo, x), dot16(hi, x.add(16)));
                    acc = _mm_add_ps(acc, _mm_mul_ps(_mm_cvtepi32_ps(i), _mm_set1_ps(d[b] * xd[b])));
                    mins += m[b] * xs[b];
                }
                hsum(acc) + mins
            }
        }

        pub fn row_q8(qs: &[u8], d: &[f32], xq: &[i16], xd: &[f32]) -> f32 {
            super::check(qs.len(), 32, d.len(), xq.len(), xd.len());
            // SAFETY: as above.
            unsafe {
                let mut acc = _mm_setzero_ps();
                for b in 0..d.len() {
                    let q0 = _mm_loadu_si128(qs.as_ptr().add(b * 32) as *const __m128i);
                    let q1 = _mm_loadu_si128(qs.as_ptr().add(b * 32 + 16) as *const __m128i);
                    let x = xq.as_ptr().add(b * 32);
                    let i = _mm_add_epi32(dot16(q0, x), dot16(q1, x.add(16)));
                    acc = _mm_add_ps(acc, _mm_mul_ps(_mm_cvtepi32_ps(i), _mm_set1_ps(d[b] * xd[b])));
                }
                hsum(acc)
            }
        }
    }

    /// WebAssembly SIMD128: widen the weights to 16 bits, `i32x4.dot_i16x8_s`.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    mod wasm {
        use core::arch::wasm32::*;

        /// Four 32-bit partial sums of `a · x` over 16 signed bytes `a` and 16 values at `x`.
        ///
        /// # Safety
        /// `x` must point at 16 readable values.
        #[inline(always)]
        unsafe fn dot16(a: v128, x: *const i16) -> v128 {
            let lo = i32x4_dot_i16x8(i16x8_extend_low_i8x16(a), v128_load(x as *const v128));
            let hi = i32x4_dot_i16x8(i16x8_extend_high_i8x16(a), v128_load(x.add(8) as *const v128));
            i32x4_add(lo, hi)
        }

        #[inline(always)]
        fn hsum(v: v128) -> f32 {
            (f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v))
                + (f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v))
        }

        pub fn row_q4(qs: &[u8], d: &[f32], m: &[f32], xq: &[i16], xd: &[f32], xs: &[f32]) -> f32 {
            super::check(qs.len(), 16, d.len(), xq.len(), xd.len());
            assert!(m.len() == d.len() && xs.len() == d.len());
            let mut mins = 0f32;
            let mut acc = f32x4_splat(0.0);
            // SAFETY: `check` proved every load below is in bounds; v128_load needs no alignment.
            unsafe {
                for b in 0..d.len() {
                    let v = v128_load(qs.as_ptr().add(b * 16) as *const v128);
                    let x = xq.as_ptr().add(b * 32);
                    let lo = v128_and(v, u8x16_splat(15));
                    let hi = u8x16_shr(v, 4);
                    let i = i32x4_add(dot16(lo, x), dot16(hi, x.add(16)));
                    acc = f32x4_add(acc, f32x4_mul(f32x4_convert_i32x4(i), f32x4_splat(d[b] * xd[b])));
                    mins += m[b] * xs[b];
                }
            }
            hsum(acc) + mins
        }

        pub fn row_q8(qs: &[u8], d: &[f32], xq: &[i16], xd: &[f32]) -> f32 {
            super::check(qs.len(), 32, d.len(), xq.len(), xd.len());
            let mut acc = f32x4_splat(0.0);
            // SAFETY: as above.
            unsafe {
                for b in 0..d.len() {
                    let q0 = v128_load(qs.as_ptr().add(b * 32) as *const v128);
                    let q1 = v128_load(qs.as_ptr().add(b * 32 + 16) as *const v128);
                    let x = xq.as_ptr().add(b * 32);
                    let i = i32x4_add(dot16(q0, x), dot16(q1, x.add(16)));
                    acc = f32x4_add(acc, f32x4_mul(f32x4_convert_i32x4(i), f32x4_splat(d[b] * xd[b])));
                }
            }
            hsum(acc)
        }
    }
}

/// `out[t][r] = Σ_c w[r][c] · x[t][c]` for each of the `x.len() / w.cols` input vectors, with
/// the inputs quantized first. Rows are split across threads natively.
pub fn matmul_q(w: &QMatrix, x: &[f32], out: &mut [f32]) {
    let n = x.len() / w.cols;
    debug_assert_eq!(out.len(), n * w.rows);
    thread_local! {
        // The quantized input, reused so a product allocates nothing.
        static XQ: std::cell::RefCell<Q8Vec> = std::cell::RefCell::default();
    }
    XQ.with_borrow_mut(|xq| {
        xq.quantize_into(x);
        let xq = &*xq;
        super::ops::for_row_blocks(w.rows, w.cols, n, out, |r, t| w.dot(r, xq, t));
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::{TensorInfo, TensorView};

    /// Deterministic pseudo-random bytes and floats.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn f(&mut self) -> f32 {
            (self.next() % 20001) as f32 / 10000.0 - 1.0
        }
    }

    fn block(rng: &mut Rng, dtype: DType) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(f16::from_f32(0.01 + rng.f().abs() * 0.05).to_le_bytes());
        if dtype == DType::Q4_1 {
            b.extend(f16::from_f32(rng.f() * 0.2).to_le_bytes());
        }
        while b.len() < dtype.block_bytes() {
            b.push(rng.next() as u8);
        }
        b
    }

    /// The integer products equal the f64 product of the dequantized weights with the
    /// dequantized 8-bit inputs, and stay near the f32 inputs' product.
    #[test]
    fn integer_products_are_the_dequantized_products() {
        let mut rng = Rng(7);
        for dtype in [DType::Q4_0, DType::Q4_1, DType::Q8_0] {
            let (rows, cols, n) = (5, 96, 3);
            let data: Vec<u8> = (0..rows * cols / QK).flat_map(|_| block(&mut rng, dtype)).collect();
            let info = TensorInfo {
                name: "w".into(),
                dims: vec![cols as u64, rows as u64],
                dtype,
                offset: 0,
                size: data.len() as u64,
            };
            let w = QMatrix::from_tensor(TensorView { info: &info, data: &data }).unwrap();
            let mut deq = vec![0f32; rows * cols];
            crate::quant::dequantize(dtype, &data, &mut deq).unwrap();
            let x: Vec<f32> = (0..n * cols).map(|_| rng.f() * 3.0).collect();
            let xq = Q8Vec::quantize(&x);
            let mut out = vec![0f32; n * rows];
            matmul_q(&w, &x, &mut out);
            for t in 0..n {
                for r in 0..rows {
                    let (mut want, mut exact, mut size) = (0f64, 0f64, 0f64);
                    for c in 0..cols {
                        let b = (t * cols + c) / QK;
                        let xv = xq.qs[t * cols + c] as f64 * xq.d[b] as f64;
                        let wv = deq[r * cols + c] as f64;
                        want += wv * xv;
                        exact += wv * x[t * cols + c] as f64;
                        size += (wv * x[t * cols + c] as f64).abs();
                    }
                    // Q4 blocks use s = f16(d·Σq) for the min term, which rounds a little.
                    let got = out[t * rows + r] as f64;
                    // The portable loop (other CPUs) agrees with the SIMD one up to summation order.
                    let nb = cols / QK;
                    let (wb, xb) = (r * nb..(r + 1) * nb, t * nb..(t + 1) * nb);
                    let xs = &xq.qs[xb.start * QK..xb.end * QK];
                    let portable = match w.bits {
                        Bits::Four => kernels::portable::row_q4(
                            &w.qs[wb.start * 16..wb.end * 16],
                            &w.scales[wb.clone()],
                            &w.mins[wb],
                            xs,
                            &xq.d[xb.clone()],
                            &xq.s[xb],
                        ),
                        Bits::Eight => {
                            kernels::portable::row_q8(&w.qs[wb.start * QK..wb.end * QK], &w.scales[wb], xs, &xq.d[xb])
                        }
                    };
                    assert!((portable as f64 - got).abs() <= 1e-5 * (1.0 + got.abs()), "{portable} vs {got}");
                    assert!((got - want).abs() <= 2e-3 * (1.0 + want.abs()), "{dtype:?} {r},{t}: {got} vs {want}");
                    // 8-bit inputs: each term off by at most half a step of its block.
                    assert!((got - exact).abs() <= 1e-2 * size, "{dtype:?} {r},{t}: {got} vs {exact} (of {size})");
                }
            }
            let mut row = vec![0f32; cols];
            w.row_f32(2, &mut row);
            assert_eq!(row, deq[2 * cols..3 * cols]);
        }
    }
}
