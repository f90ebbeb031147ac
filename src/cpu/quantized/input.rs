//! The input vectors of the integer products, quantized to 8 bits as llama.cpp quantizes them:
//! per 32 values for the 32-value weight blocks (`Q8Vec`: its Q8_0 and Q8_1), per 256-value
//! super-block for the K-quants (`Q8KVec`: its Q8_K).

use half::f16;

use crate::quant::{QK, QK_K};

/// Input vectors quantized to 8 bits per value in blocks of 32 (llama.cpp's Q8_1: `d` and
/// `s = d·Σq` rounded to f16; Q8_0 is the same `d` and values without `s`). The values are stored
/// widened to 16 bits: widened once here instead of once per weight row in the dot products.
#[derive(Clone, Debug, Default)]
pub struct Q8Vec {
    pub(super) d: Vec<f32>,
    pub(super) s: Vec<f32>,
    pub(super) qs: Vec<i16>,
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

/// Input vectors quantized to 8 bits per value in super-blocks of 256 (llama.cpp's Q8_K, its
/// `quantize_row_q8_K_ref`): per super-block an f32 scale `d` (not rounded to f16) and the 16
/// sums of 16 consecutive values (`bsums`), which the K-quant mins and Q6_K's offset multiply.
#[derive(Clone, Debug, Default)]
pub struct Q8KVec {
    pub(super) d: Vec<f32>,
    pub(super) qs: Vec<i8>,
    pub(super) bsums: Vec<i16>,
}

impl Q8KVec {
    /// Quantize `x` (a whole number of super-blocks).
    pub fn quantize(x: &[f32]) -> Q8KVec {
        let mut v = Q8KVec::default();
        v.quantize_into(x);
        v
    }

    /// Quantize `x` into this vector's buffers (no allocation once they are large enough).
    ///
    /// The scale comes from the value of largest magnitude `max` (the first, with its sign):
    /// `q = min(127, round(-127/max · x))` rounding half to even, `d = max / -127`. Every `|q|` is
    /// then at most 127, which the SIMD kernels' 16-bit pair sums rely on.
    pub fn quantize_into(&mut self, x: &[f32]) {
        debug_assert_eq!(x.len() % QK_K, 0);
        let v = self;
        v.d.clear();
        v.qs.resize(x.len(), 0);
        v.bsums.resize(x.len() / 16, 0);
        let blocks = x.chunks_exact(QK_K).zip(v.qs.chunks_exact_mut(QK_K)).zip(v.bsums.chunks_exact_mut(QK_K / 16));
        for ((xb, qb), sb) in blocks {
            let (mut max, mut amax) = (0f32, 0f32);
            for &x in xb {
                if x.abs() > amax {
                    (amax, max) = (x.abs(), x);
                }
            }
            if amax == 0.0 {
                v.d.push(0.0);
                qb.fill(0);
                sb.fill(0);
                continue;
            }
            let iscale = -127.0 / max;
            for (q, &x) in qb.iter_mut().zip(xb) {
                *q = ((iscale * x).round_ties_even() as i32).clamp(-127, 127) as i8;
            }
            for (s, q) in sb.iter_mut().zip(qb.chunks_exact(16)) {
                *s = q.iter().map(|&q| q as i16).sum();
            }
            v.d.push(1.0 / iscale);
        }
    }
}
