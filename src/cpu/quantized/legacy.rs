//! Dot products of rows of 32-value blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) with inputs quantized
//! per 32 values ([`Q8Vec`](super::input::Q8Vec)), llama.cpp's `ggml_vec_dot_q*_q8_*`.
//!
//! Per block, with the weights' integers `q`, the inputs' `qx`, their scales `d`, `dx`:
//! - Q4_0 (`w = d·(q - 8)`), Q5_0 (`w = d·(q - 16)`), Q8_0 (`w = d·q`): `d·dx·Σ q·qx` with the
//!   signed `q` (Q8_0 inputs);
//! - Q4_1, Q5_1 (`w = d·q + m`): `d·dx·Σ q·qx + m·sx` with `sx = f16(dx·Σ qx)` (Q8_1 inputs).
//!
//! The integer sums are exact in every version. The SIMD versions add the scaled block sums in
//! four lanes, the same four in each, so SSE2, AVX2 and SIMD128 return the same bits, which agree
//! with the plain loop up to the order of the f32 additions.

use super::Isa;

/// How a block's 32 values are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Kind {
    /// 16 bytes of nibbles, values 0..=15: elements `j` (low) and `j + 16` (high) of byte `j`;
    /// `q - 8`.
    Q4_0,
    /// Nibbles as in Q4_0, unsigned, with a min.
    Q4_1,
    /// Nibbles as in Q4_0 plus a fifth bit, bit `j` of `qh` for element `j`; `q - 16`.
    Q5_0,
    /// As Q5_0 but unsigned, with a min.
    Q5_1,
    /// 32 signed bytes.
    Q8_0,
}

// The kinds as the SIMD loops' const parameters.
const Q4_0: u8 = Kind::Q4_0 as u8;
const Q4_1: u8 = Kind::Q4_1 as u8;
const Q5_0: u8 = Kind::Q5_0 as u8;
const Q5_1: u8 = Kind::Q5_1 as u8;
const Q8_0: u8 = Kind::Q8_0 as u8;

impl Kind {
    /// Bytes of `qs` per block.
    pub(super) fn qs_bytes(self) -> usize {
        if self == Kind::Q8_0 {
            32
        } else {
            16
        }
    }

    pub(super) fn has_min(self) -> bool {
        matches!(self, Kind::Q4_1 | Kind::Q5_1)
    }

    pub(super) fn has_high_bits(self) -> bool {
        matches!(self, Kind::Q5_0 | Kind::Q5_1)
    }

    /// What the signed four- and five-bit formats take off their unsigned integers.
    pub(super) fn offset(self) -> i32 {
        match self {
            Kind::Q4_0 => 8,
            Kind::Q5_0 => 16,
            _ => 0,
        }
    }
}

/// One row of weight blocks: `d` (and `m`, `qh` where the kind has them) per block.
#[derive(Clone, Copy)]
pub(super) struct Row<'a> {
    pub kind: Kind,
    pub qs: &'a [u8],
    pub qh: &'a [u32],
    pub d: &'a [f32],
    pub m: &'a [f32],
}

/// One quantized input vector: values, `d` and `s` per block.
#[derive(Clone, Copy)]
pub(super) struct Input<'a> {
    pub qs: &'a [i16],
    pub d: &'a [f32],
    pub s: &'a [f32],
}

/// The lengths every version relies on (checked once per row, so the loops need no checks).
fn check(w: &Row, x: &Input) {
    let nb = w.d.len();
    let ok = w.qs.len() == nb * w.kind.qs_bytes()
        && (!w.kind.has_min() || w.m.len() == nb)
        && (!w.kind.has_high_bits() || w.qh.len() == nb)
        && x.qs.len() == nb * 32
        && x.d.len() == nb
        && x.s.len() == nb;
    assert!(ok, "mismatched row and input");
}

/// `Σ_c w[c]·x[c]` of one row and one input, with the instruction set `isa`.
pub(super) fn dot(isa: Isa, w: &Row, x: &Input) -> f32 {
    check(w, x);
    match isa {
        Isa::Portable => portable::dot(w, x),
        #[cfg(target_arch = "x86_64")]
        Isa::Sse2 => x86::dot(w, x),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            assert!(super::has_avx2());
            // SAFETY: the CPU has AVX2 (just checked); `check` proved every load in bounds.
            unsafe { avx2::dot(w, x) }
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        Isa::Simd128 => wasm::dot(w, x),
    }
}

pub(super) mod portable {
    use super::{Input, Kind, Row};

    pub fn dot(w: &Row, x: &Input) -> f32 {
        let mut sum = 0f32;
        for b in 0..w.d.len() {
            let xq = &x.qs[b * 32..][..32];
            let acc: i32 = match w.kind {
                Kind::Q8_0 => w.qs[b * 32..][..32].iter().zip(xq).map(|(&q, &x)| q as i8 as i32 * x as i32).sum(),
                _ => {
                    let q = &w.qs[b * 16..][..16];
                    let qh = if w.kind.has_high_bits() { w.qh[b] } else { 0 };
                    let off = w.kind.offset();
                    let mut acc = 0i32;
                    for j in 0..16 {
                        let lo = ((q[j] & 15) as u32 | ((qh >> j) & 1) << 4) as i32 - off;
                        let hi = ((q[j] >> 4) as u32 | ((qh >> (j + 16)) & 1) << 4) as i32 - off;
                        acc += lo * xq[j] as i32 + hi * xq[j + 16] as i32;
                    }
                    acc
                }
            };
            sum += w.d[b] * x.d[b] * acc as f32;
            if w.kind.has_min() {
                sum += w.m[b] * x.s[b];
            }
        }
        sum
    }
}

/// SSE2 (every x86-64 has it): the weights widened to 16 bits, `pmaddwd` pairs into 32-bit lanes.
#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use super::{Input, Kind, Row, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0};
    use core::arch::x86_64::*;

    /// Four 32-bit partial sums of `a · x` over 16 signed bytes `a` and 16 values at `x`.
    #[inline(always)]
    unsafe fn dot16(a: __m128i, x: *const i16) -> __m128i {
        let a0 = _mm_srai_epi16(_mm_unpacklo_epi8(a, a), 8);
        let a1 = _mm_srai_epi16(_mm_unpackhi_epi8(a, a), 8);
        let x0 = _mm_loadu_si128(x as *const __m128i);
        let x1 = _mm_loadu_si128(x.add(8) as *const __m128i);
        _mm_add_epi32(_mm_madd_epi16(a0, x0), _mm_madd_epi16(a1, x1))
    }

    /// The fifth bits of 8 elements as 16-bit 0 or 16: bit `k` of `h` for lane `k` of `bits`.
    #[inline(always)]
    unsafe fn high8(h: __m128i, bits: __m128i) -> __m128i {
        _mm_and_si128(_mm_cmpeq_epi16(_mm_and_si128(h, bits), bits), _mm_set1_epi16(16))
    }

    #[inline(always)]
    unsafe fn hsum(v: __m128) -> f32 {
        let mut l = [0f32; 4];
        _mm_storeu_ps(l.as_mut_ptr(), v);
        (l[0] + l[1]) + (l[2] + l[3])
    }

    pub fn dot(w: &Row, x: &Input) -> f32 {
        // SAFETY: SSE2 is part of x86-64; `check` proved every load in bounds.
        unsafe {
            match w.kind {
                Kind::Q4_0 => blocks::<Q4_0>(w, x),
                Kind::Q4_1 => blocks::<Q4_1>(w, x),
                Kind::Q5_0 => blocks::<Q5_0>(w, x),
                Kind::Q5_1 => blocks::<Q5_1>(w, x),
                Kind::Q8_0 => blocks::<Q8_0>(w, x),
            }
        }
    }

    #[inline(always)]
    unsafe fn blocks<const K: u8>(w: &Row, x: &Input) -> f32 {
        let mask = _mm_set1_epi8(15);
        let zero = _mm_setzero_si128();
        let sixteen = _mm_set1_epi16(16);
        let bits0 = _mm_setr_epi16(1, 2, 4, 8, 16, 32, 64, 128);
        let bits1 = _mm_setr_epi16(256, 512, 1024, 2048, 4096, 8192, 16384, i16::MIN);
        let mut acc = _mm_setzero_ps();
        let mut mins = 0f32;
        for b in 0..w.d.len() {
            let xp = x.qs.as_ptr().add(b * 32);
            let i = if K == Q8_0 {
                let q0 = _mm_loadu_si128(w.qs.as_ptr().add(b * 32) as *const __m128i);
                let q1 = _mm_loadu_si128(w.qs.as_ptr().add(b * 32 + 16) as *const __m128i);
                _mm_add_epi32(dot16(q0, xp), dot16(q1, xp.add(16)))
            } else {
                let v = _mm_loadu_si128(w.qs.as_ptr().add(b * 16) as *const __m128i);
                let lo = _mm_and_si128(v, mask);
                let hi = _mm_and_si128(_mm_srli_epi16(v, 4), mask);
                if K == Q4_0 {
                    let eight = _mm_set1_epi8(8);
                    _mm_add_epi32(dot16(_mm_sub_epi8(lo, eight), xp), dot16(_mm_sub_epi8(hi, eight), xp.add(16)))
                } else if K == Q4_1 {
                    _mm_add_epi32(dot16(lo, xp), dot16(hi, xp.add(16)))
                } else {
                    let qh = *w.qh.get_unchecked(b);
                    let (hl, hh) = (_mm_set1_epi16(qh as u16 as i16), _mm_set1_epi16((qh >> 16) as u16 as i16));
                    // Elements 0..8, 8..16 (low nibbles), 16..24, 24..32 (high nibbles).
                    let mut e = [
                        _mm_or_si128(_mm_unpacklo_epi8(lo, zero), high8(hl, bits0)),
                        _mm_or_si128(_mm_unpackhi_epi8(lo, zero), high8(hl, bits1)),
                        _mm_or_si128(_mm_unpacklo_epi8(hi, zero), high8(hh, bits0)),
                        _mm_or_si128(_mm_unpackhi_epi8(hi, zero), high8(hh, bits1)),
                    ];
                    if K == Q5_0 {
                        e = e.map(|e| _mm_sub_epi16(e, sixteen));
                    }
                    let mut i = _mm_setzero_si128();
                    for (k, e) in e.into_iter().enumerate() {
                        let xk = _mm_loadu_si128(xp.add(8 * k) as *const __m128i);
                        i = _mm_add_epi32(i, _mm_madd_epi16(e, xk));
                    }
                    i
                }
            };
            let scale = *w.d.get_unchecked(b) * *x.d.get_unchecked(b);
            acc = _mm_add_ps(acc, _mm_mul_ps(_mm_cvtepi32_ps(i), _mm_set1_ps(scale)));
            if K == Q4_1 || K == Q5_1 {
                mins += *w.m.get_unchecked(b) * *x.s.get_unchecked(b);
            }
        }
        hsum(acc) + mins
    }
}

/// AVX2 (chosen at run time): sixteen 16-bit values a `vpmaddwd`. The eight 32-bit lanes are
/// folded to the four of the SSE2 version, which hold the same sums of the same elements, and
/// scaled and added as it does: the two return the same bits (and so does SIMD128 in wasm).
#[cfg(target_arch = "x86_64")]
pub(super) mod avx2 {
    use super::{Input, Kind, Row, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0};
    use core::arch::x86_64::*;

    /// # Safety
    /// The CPU must have AVX2, and `w` and `x` must have passed `check`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn dot(w: &Row, x: &Input) -> f32 {
        match w.kind {
            Kind::Q4_0 => blocks::<Q4_0>(w, x),
            Kind::Q4_1 => blocks::<Q4_1>(w, x),
            Kind::Q5_0 => blocks::<Q5_0>(w, x),
            Kind::Q5_1 => blocks::<Q5_1>(w, x),
            Kind::Q8_0 => blocks::<Q8_0>(w, x),
        }
    }

    /// The fifth bits of 16 elements as 16-bit 0 or 16: bit `k` of `h` for element `k`.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn high16(h: u32) -> __m256i {
        let bits = _mm256_setr_epi16(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, i16::MIN);
        let h = _mm256_set1_epi16(h as u16 as i16);
        _mm256_and_si256(_mm256_cmpeq_epi16(_mm256_and_si256(h, bits), bits), _mm256_set1_epi16(16))
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn hsum(v: __m128) -> f32 {
        let mut l = [0f32; 4];
        _mm_storeu_ps(l.as_mut_ptr(), v);
        (l[0] + l[1]) + (l[2] + l[3])
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn blocks<const K: u8>(w: &Row, x: &Input) -> f32 {
        let mask = _mm_set1_epi8(15);
        let sixteen = _mm256_set1_epi16(16);
        let mut acc = _mm_setzero_ps();
        let mut mins = 0f32;
        for b in 0..w.d.len() {
            let xp = x.qs.as_ptr().add(b * 32);
            let x0 = _mm256_loadu_si256(xp as *const __m256i);
            let x1 = _mm256_loadu_si256(xp.add(16) as *const __m256i);
            // The weights of elements 0..16 and 16..32 as 16-bit values.
            let (e0, e1) = if K == Q8_0 {
                let q = w.qs.as_ptr().add(b * 32);
                (
                    _mm256_cvtepi8_epi16(_mm_loadu_si128(q as *const __m128i)),
                    _mm256_cvtepi8_epi16(_mm_loadu_si128(q.add(16) as *const __m128i)),
                )
            } else {
                let v = _mm_loadu_si128(w.qs.as_ptr().add(b * 16) as *const __m128i);
                let lo = _mm256_cvtepu8_epi16(_mm_and_si128(v, mask));
                let hi = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(v, 4), mask));
                if K == Q4_0 {
                    let eight = _mm256_set1_epi16(8);
                    (_mm256_sub_epi16(lo, eight), _mm256_sub_epi16(hi, eight))
                } else if K == Q4_1 {
                    (lo, hi)
                } else {
                    let qh = *w.qh.get_unchecked(b);
                    let (lo, hi) = (_mm256_or_si256(lo, high16(qh)), _mm256_or_si256(hi, high16(qh >> 16)));
                    if K == Q5_0 {
                        (_mm256_sub_epi16(lo, sixteen), _mm256_sub_epi16(hi, sixteen))
                    } else {
                        (lo, hi)
                    }
                }
            };
            // Lane j sums elements 2j, 2j + 1, 16 + 2j, 17 + 2j; lanes j and j + 4 together are
            // the SSE2 version's lane j.
            let i = _mm256_add_epi32(_mm256_madd_epi16(e0, x0), _mm256_madd_epi16(e1, x1));
            let i = _mm_add_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
            let scale = *w.d.get_unchecked(b) * *x.d.get_unchecked(b);
            acc = _mm_add_ps(acc, _mm_mul_ps(_mm_cvtepi32_ps(i), _mm_set1_ps(scale)));
            if K == Q4_1 || K == Q5_1 {
                mins += *w.m.get_unchecked(b) * *x.s.get_unchecked(b);
            }
        }
        hsum(acc) + mins
    }
}

/// WebAssembly SIMD128: the weights widened to 16 bits, `i32x4.dot_i16x8_s`.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(super) mod wasm {
    use super::{Input, Kind, Row, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0};
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

    /// The fifth bits of 8 elements as 16-bit 0 or 16: bit `k` of `h` for lane `k` of `bits`.
    #[inline(always)]
    fn high8(h: v128, bits: v128) -> v128 {
        v128_and(i16x8_eq(v128_and(h, bits), bits), i16x8_splat(16))
    }

    #[inline(always)]
    fn hsum(v: v128) -> f32 {
        (f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v))
            + (f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v))
    }

    pub fn dot(w: &Row, x: &Input) -> f32 {
        // SAFETY: `check` proved every load in bounds; v128_load needs no alignment.
        unsafe {
            match w.kind {
                Kind::Q4_0 => blocks::<Q4_0>(w, x),
                Kind::Q4_1 => blocks::<Q4_1>(w, x),
                Kind::Q5_0 => blocks::<Q5_0>(w, x),
                Kind::Q5_1 => blocks::<Q5_1>(w, x),
                Kind::Q8_0 => blocks::<Q8_0>(w, x),
            }
        }
    }

    #[inline(always)]
    unsafe fn blocks<const K: u8>(w: &Row, x: &Input) -> f32 {
        let mut mins = 0f32;
        let mut acc = f32x4_splat(0.0);
        let bits0 = i16x8(1, 2, 4, 8, 16, 32, 64, 128);
        let bits1 = i16x8(256, 512, 1024, 2048, 4096, 8192, 16384, i16::MIN);
        for b in 0..w.d.len() {
            let xp = x.qs.as_ptr().add(b * 32);
            let i = if K == Q8_0 {
                let q0 = v128_load(w.qs.as_ptr().add(b * 32) as *const v128);
                let q1 = v128_load(w.qs.as_ptr().add(b * 32 + 16) as *const v128);
                i32x4_add(dot16(q0, xp), dot16(q1, xp.add(16)))
            } else {
                let v = v128_load(w.qs.as_ptr().add(b * 16) as *const v128);
                let lo = v128_and(v, u8x16_splat(15));
                let hi = u8x16_shr(v, 4);
                if K == Q4_0 {
                    let eight = u8x16_splat(8);
                    i32x4_add(dot16(i8x16_sub(lo, eight), xp), dot16(i8x16_sub(hi, eight), xp.add(16)))
                } else if K == Q4_1 {
                    i32x4_add(dot16(lo, xp), dot16(hi, xp.add(16)))
                } else {
                    let qh = *w.qh.get_unchecked(b);
                    let (hl, hh) = (i16x8_splat(qh as u16 as i16), i16x8_splat((qh >> 16) as u16 as i16));
                    let mut e = [
                        v128_or(u16x8_extend_low_u8x16(lo), high8(hl, bits0)),
                        v128_or(u16x8_extend_high_u8x16(lo), high8(hl, bits1)),
                        v128_or(u16x8_extend_low_u8x16(hi), high8(hh, bits0)),
                        v128_or(u16x8_extend_high_u8x16(hi), high8(hh, bits1)),
                    ];
                    if K == Q5_0 {
                        e = e.map(|e| i16x8_sub(e, i16x8_splat(16)));
                    }
                    let mut i = i32x4_splat(0);
                    for (k, e) in e.into_iter().enumerate() {
                        i = i32x4_add(i, i32x4_dot_i16x8(e, v128_load(xp.add(8 * k) as *const v128)));
                    }
                    i
                }
            };
            let scale = *w.d.get_unchecked(b) * *x.d.get_unchecked(b);
            acc = f32x4_add(acc, f32x4_mul(f32x4_convert_i32x4(i), f32x4_splat(scale)));
            if K == Q4_1 || K == Q5_1 {
                mins += *w.m.get_unchecked(b) * *x.s.get_unchecked(b);
            }
        }
        hsum(acc) + mins
    }
}
