//! Dot products of rows of K-quant super-blocks (Q4_K, Q5_K, Q6_K), kept as the file stores them,
//! with inputs quantized per 256 values ([`Q8KVec`](super::input::Q8KVec)): llama.cpp's
//! `ggml_vec_dot_q{4,5,6}_K_q8_K`.
//!
//! Per super-block, with the input's scale `dx`, values `qx` and 16-value sums `bsum`:
//! - Q4_K, Q5_K (`w = d·sc_s·q - dmin·m_s` in sub-block `s` of 32):
//!   `dx·d·Σ_s sc_s·Σ q·qx - dx·dmin·Σ_s m_s·(bsum_2s + bsum_2s+1)`;
//! - Q6_K (`w = d·sc_g·(q - 32)` in group `g` of 16): `dx·d·Σ_g sc_g·Σ (q - 32)·qx`.
//!
//! Both sums are exact integers in every version, and every version turns them into the
//! super-block's f32 term with the same two lines ([`k4_term`], [`q6_term`]) and adds the terms in
//! the same order, so the SIMD versions return exactly the plain loop's result.

use super::Isa;
use crate::quant::{f16_at, scale_min_k4, DType, Q4_K_BYTES, Q5_K_BYTES, Q6_K_BYTES, QK_K};

/// One quantized input vector: values, `d` and the 16 `bsums` per super-block.
#[derive(Clone, Copy)]
pub(super) struct Input<'a> {
    pub qs: &'a [i8],
    pub d: &'a [f32],
    pub bsums: &'a [i16],
}

/// Bytes of one super-block of `dtype` (a K-quant).
pub(super) fn block_bytes(dtype: DType) -> usize {
    match dtype {
        DType::Q4_K => Q4_K_BYTES,
        DType::Q5_K => Q5_K_BYTES,
        DType::Q6_K => Q6_K_BYTES,
        _ => unreachable!("{dtype:?} is not a K-quant"),
    }
}

/// `Σ_c w[c]·x[c]` of one row of `dtype` super-blocks `w` and one input, with `isa`.
pub(super) fn dot(isa: Isa, dtype: DType, w: &[u8], x: &Input) -> f32 {
    let nb = x.d.len();
    let ok = w.len() == nb * block_bytes(dtype) && x.qs.len() == nb * QK_K && x.bsums.len() == nb * 16;
    assert!(ok, "mismatched row and input");
    match isa {
        Isa::Portable => portable::dot(dtype, w, x),
        #[cfg(target_arch = "x86_64")]
        Isa::Sse2 => x86::dot(dtype, w, x),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            assert!(super::has_avx2());
            // SAFETY: the CPU has AVX2 (just checked); the lengths were checked above.
            unsafe { avx2::dot(dtype, w, x) }
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        Isa::Simd128 => wasm::dot(dtype, w, x),
    }
}

/// The header of a Q4_K / Q5_K super-block: `d`, `dmin`, and the 6-bit scales and mins of its
/// eight sub-blocks.
#[inline(always)]
fn k4_header(b: &[u8]) -> (f32, f32, [u8; 8], [u8; 8]) {
    let packed: &[u8; 12] = b[4..16].try_into().unwrap();
    let (mut sc, mut m) = ([0u8; 8], [0u8; 8]);
    for j in 0..8 {
        (sc[j], m[j]) = scale_min_k4(j, packed);
    }
    (f16_at(b, 0), f16_at(b, 2), sc, m)
}

/// `Σ_s m_s · (bsum_2s + bsum_2s+1)`: the mins' integer sum.
#[inline(always)]
fn k4_mins(m: &[u8; 8], bsums: &[i16]) -> i32 {
    (0..8).map(|s| m[s] as i32 * (bsums[2 * s] as i32 + bsums[2 * s + 1] as i32)).sum()
}

/// A Q4_K / Q5_K super-block's term from its two integer sums.
#[inline(always)]
fn k4_term(dx: f32, d: f32, dmin: f32, sumi: i32, summ: i32) -> f32 {
    (dx * d) * sumi as f32 - (dx * dmin) * summ as f32
}

/// A Q6_K super-block's term from its integer sum.
#[inline(always)]
fn q6_term(dx: f32, d: f32, sumi: i32) -> f32 {
    (dx * d) * sumi as f32
}

/// `Σ_g sc_g · bsum_g` over the 16 groups of a Q6_K super-block (the SIMD versions multiply the
/// unsigned `q` and take `32 · this` off).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline(always)]
fn q6_offset(sc: &[u8], bsums: &[i16]) -> i32 {
    (0..16).map(|g| sc[g] as i8 as i32 * bsums[g] as i32).sum()
}

pub(super) mod portable {
    use super::*;

    pub fn dot(dtype: DType, w: &[u8], x: &Input) -> f32 {
        let bb = block_bytes(dtype);
        let mut sum = 0f32;
        for (b, blk) in w.chunks_exact(bb).enumerate() {
            let xq = &x.qs[b * QK_K..][..QK_K];
            let bs = &x.bsums[b * 16..][..16];
            sum += match dtype {
                DType::Q6_K => {
                    let sc = &blk[192..208];
                    let mut sumi = 0i32;
                    for h in 0..2 {
                        let (ql, qh) = (&blk[64 * h..][..64], &blk[128 + 32 * h..][..32]);
                        for k in 0..4 {
                            // Quarter k of the half: low bits from nibble k / 2 of ql[32 (k % 2) + l],
                            // high bits from bits 2k, 2k + 1 of qh[l].
                            let mut acc = [0i32; 2];
                            for l in 0..32 {
                                let low = (ql[32 * (k % 2) + l] >> (4 * (k / 2))) & 15;
                                let q = (low | ((qh[l] >> (2 * k)) & 3) << 4) as i32 - 32;
                                acc[l / 16] += q * xq[128 * h + 32 * k + l] as i32;
                            }
                            let g = 8 * h + 2 * k;
                            sumi += sc[g] as i8 as i32 * acc[0] + sc[g + 1] as i8 as i32 * acc[1];
                        }
                    }
                    q6_term(x.d[b], f16_at(blk, 208), sumi)
                }
                _ => {
                    let (d, dmin, sc, m) = k4_header(blk);
                    let high = dtype == DType::Q5_K;
                    let (qh, qs) = if high { (&blk[16..48], &blk[48..]) } else { (&blk[..0], &blk[16..]) };
                    let mut sumi = 0i32;
                    for s in 0..8 {
                        let mut acc = 0i32;
                        for l in 0..32 {
                            let mut q = (qs[32 * (s / 2) + l] >> (4 * (s % 2))) & 15;
                            if high {
                                q |= ((qh[l] >> s) & 1) << 4;
                            }
                            acc += q as i32 * xq[32 * s + l] as i32;
                        }
                        sumi += sc[s] as i32 * acc;
                    }
                    k4_term(x.d[b], d, dmin, sumi, k4_mins(&m, bs))
                }
            };
        }
        sum
    }
}

/// SSE2 (every x86-64 has it): weights and inputs widened to 16 bits, the weights multiplied by
/// their scale (`pmullw`, at most 63·63 or 32·128 in magnitude), `pmaddwd` into 32-bit lanes.
#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use super::*;
    use core::arch::x86_64::*;

    /// `Σ sc·w·x` over 16 weights `w` (bytes, unsigned, less `off`) and 16 inputs at `x`, as four
    /// 32-bit partial sums.
    #[inline(always)]
    unsafe fn dot16(w: __m128i, off: __m128i, sc: i16, x: *const i8) -> __m128i {
        let zero = _mm_setzero_si128();
        let sc = _mm_set1_epi16(sc);
        let w0 = _mm_mullo_epi16(_mm_sub_epi16(_mm_unpacklo_epi8(w, zero), off), sc);
        let w1 = _mm_mullo_epi16(_mm_sub_epi16(_mm_unpackhi_epi8(w, zero), off), sc);
        let xv = _mm_loadu_si128(x as *const __m128i);
        let x0 = _mm_srai_epi16(_mm_unpacklo_epi8(xv, xv), 8);
        let x1 = _mm_srai_epi16(_mm_unpackhi_epi8(xv, xv), 8);
        _mm_add_epi32(_mm_madd_epi16(w0, x0), _mm_madd_epi16(w1, x1))
    }

    #[inline(always)]
    unsafe fn hsum(v: __m128i) -> i32 {
        let v = _mm_add_epi32(v, _mm_unpackhi_epi64(v, v));
        _mm_cvtsi128_si32(_mm_add_epi32(v, _mm_shuffle_epi32(v, 1)))
    }

    #[inline(always)]
    unsafe fn load(p: *const u8) -> __m128i {
        _mm_loadu_si128(p as *const __m128i)
    }

    pub fn dot(dtype: DType, w: &[u8], x: &Input) -> f32 {
        // SAFETY: SSE2 is part of x86-64; `super::dot` checked the lengths.
        unsafe {
            match dtype {
                DType::Q4_K => k4::<false>(w, x),
                DType::Q5_K => k4::<true>(w, x),
                _ => q6(w, x),
            }
        }
    }

    #[inline(always)]
    unsafe fn k4<const HIGH: bool>(w: &[u8], x: &Input) -> f32 {
        let bb = if HIGH { Q5_K_BYTES } else { Q4_K_BYTES };
        let (m4, zero) = (_mm_set1_epi8(15), _mm_setzero_si128());
        let mut sum = 0f32;
        for b in 0..x.d.len() {
            let blk = w.get_unchecked(b * bb..(b + 1) * bb);
            let (d, dmin, sc, m) = k4_header(blk);
            let qs = blk.as_ptr().add(if HIGH { 48 } else { 16 });
            let xq = x.qs.as_ptr().add(b * QK_K);
            let mut acc = _mm_setzero_si128();
            for c in 0..4 {
                let (bit_lo, bit_hi) =
                    (_mm_set1_epi8((1u8 << (2 * c)) as i8), _mm_set1_epi8((1u8 << (2 * c + 1)) as i8));
                for p in 0..2 {
                    let bits = load(qs.add(32 * c + 16 * p));
                    let mut lo = _mm_and_si128(bits, m4);
                    let mut hi = _mm_and_si128(_mm_srli_epi16(bits, 4), m4);
                    if HIGH {
                        let qh = load(blk.as_ptr().add(16 + 16 * p));
                        let sixteen = _mm_set1_epi8(16);
                        lo =
                            _mm_or_si128(lo, _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(qh, bit_lo), bit_lo), sixteen));
                        hi =
                            _mm_or_si128(hi, _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(qh, bit_hi), bit_hi), sixteen));
                    }
                    acc = _mm_add_epi32(acc, dot16(lo, zero, sc[2 * c] as i16, xq.add(64 * c + 16 * p)));
                    acc = _mm_add_epi32(acc, dot16(hi, zero, sc[2 * c + 1] as i16, xq.add(64 * c + 32 + 16 * p)));
                }
            }
            let bs = x.bsums.get_unchecked(b * 16..(b + 1) * 16);
            sum += k4_term(*x.d.get_unchecked(b), d, dmin, hsum(acc), k4_mins(&m, bs));
        }
        sum
    }

    #[inline(always)]
    unsafe fn q6(w: &[u8], x: &Input) -> f32 {
        let (m4, m3, off) = (_mm_set1_epi8(15), _mm_set1_epi8(3), _mm_set1_epi16(32));
        let mut sum = 0f32;
        for b in 0..x.d.len() {
            let blk = w.get_unchecked(b * Q6_K_BYTES..(b + 1) * Q6_K_BYTES);
            let (p, sc) = (blk.as_ptr(), &blk[192..208]);
            let xq = x.qs.as_ptr().add(b * QK_K);
            let mut acc = _mm_setzero_si128();
            for h in 0..2 {
                for part in 0..2 {
                    let ql0 = load(p.add(64 * h + 16 * part));
                    let ql1 = load(p.add(64 * h + 32 + 16 * part));
                    let qh = load(p.add(128 + 32 * h + 16 * part));
                    // The four quarters of the half (bytes 0..=63; no bit crosses a byte).
                    let q = [
                        _mm_or_si128(_mm_and_si128(ql0, m4), _mm_slli_epi16(_mm_and_si128(qh, m3), 4)),
                        _mm_or_si128(
                            _mm_and_si128(ql1, m4),
                            _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(qh, 2), m3), 4),
                        ),
                        _mm_or_si128(
                            _mm_and_si128(_mm_srli_epi16(ql0, 4), m4),
                            _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(qh, 4), m3), 4),
                        ),
                        _mm_or_si128(
                            _mm_and_si128(_mm_srli_epi16(ql1, 4), m4),
                            _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(qh, 6), m3), 4),
                        ),
                    ];
                    for (k, q) in q.into_iter().enumerate() {
                        let g = 8 * h + 2 * k + part;
                        acc =
                            _mm_add_epi32(acc, dot16(q, off, sc[g] as i8 as i16, xq.add(128 * h + 32 * k + 16 * part)));
                    }
                }
            }
            sum += q6_term(*x.d.get_unchecked(b), f16_at(blk, 208), hsum(acc));
        }
        sum
    }
}

/// AVX2 (chosen at run time), as llama.cpp does it: `vpmaddubsw` of the unsigned weights (at
/// most 63) with the signed inputs (at most 127 in magnitude, so the 16-bit pair sums cannot
/// saturate), then `vpmaddwd` with the scales. Q6_K takes `32·Σ sc·bsum` off afterwards.
#[cfg(target_arch = "x86_64")]
pub(super) mod avx2 {
    use super::*;
    use core::arch::x86_64::*;

    /// # Safety
    /// The CPU must have AVX2, and the lengths must have passed `super::dot`'s check.
    #[target_feature(enable = "avx2")]
    pub unsafe fn dot(dtype: DType, w: &[u8], x: &Input) -> f32 {
        match dtype {
            DType::Q4_K => k4::<false>(w, x),
            DType::Q5_K => k4::<true>(w, x),
            _ => q6(w, x),
        }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn hsum(v: __m256i) -> i32 {
        let v = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let v = _mm_add_epi32(v, _mm_unpackhi_epi64(v, v));
        _mm_cvtsi128_si32(_mm_add_epi32(v, _mm_shuffle_epi32(v, 1)))
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load(p: *const u8) -> __m256i {
        _mm256_loadu_si256(p as *const __m256i)
    }

    /// Bytes of `qh` with `bit` set, as 16 (the fifth bit of Q5_K).
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn high(qh: __m256i, bit: u8) -> __m256i {
        let bit = _mm256_set1_epi8(bit as i8);
        _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit), _mm256_set1_epi8(16))
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn k4<const HIGH: bool>(w: &[u8], x: &Input) -> f32 {
        let bb = if HIGH { Q5_K_BYTES } else { Q4_K_BYTES };
        let m4 = _mm256_set1_epi8(15);
        let mut sum = 0f32;
        for b in 0..x.d.len() {
            let blk = w.get_unchecked(b * bb..(b + 1) * bb);
            let (d, dmin, sc, m) = k4_header(blk);
            let qs = blk.as_ptr().add(if HIGH { 48 } else { 16 });
            let qh = if HIGH { load(blk.as_ptr().add(16)) } else { _mm256_setzero_si256() };
            let xq = x.qs.as_ptr().add(b * QK_K) as *const u8;
            let mut acc = _mm256_setzero_si256();
            for c in 0..4 {
                let bits = load(qs.add(32 * c));
                let mut lo = _mm256_and_si256(bits, m4);
                let mut hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
                if HIGH {
                    lo = _mm256_or_si256(lo, high(qh, 1 << (2 * c)));
                    hi = _mm256_or_si256(hi, high(qh, 1 << (2 * c + 1)));
                }
                let pl = _mm256_maddubs_epi16(lo, load(xq.add(64 * c)));
                let ph = _mm256_maddubs_epi16(hi, load(xq.add(64 * c + 32)));
                let pl = _mm256_madd_epi16(pl, _mm256_set1_epi16(sc[2 * c] as i16));
                let ph = _mm256_madd_epi16(ph, _mm256_set1_epi16(sc[2 * c + 1] as i16));
                acc = _mm256_add_epi32(acc, _mm256_add_epi32(pl, ph));
            }
            let bs = x.bsums.get_unchecked(b * 16..(b + 1) * 16);
            sum += k4_term(*x.d.get_unchecked(b), d, dmin, hsum(acc), k4_mins(&m, bs));
        }
        sum
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn q6(w: &[u8], x: &Input) -> f32 {
        let (m4, m3) = (_mm256_set1_epi8(15), _mm256_set1_epi8(3));
        let mut sum = 0f32;
        for b in 0..x.d.len() {
            let blk = w.get_unchecked(b * Q6_K_BYTES..(b + 1) * Q6_K_BYTES);
            let (p, sc) = (blk.as_ptr(), &blk[192..208]);
            let xq = x.qs.as_ptr().add(b * QK_K) as *const u8;
            let mut acc = _mm256_setzero_si256();
            for h in 0..2 {
                let ql0 = load(p.add(64 * h));
                let ql1 = load(p.add(64 * h + 32));
                let qh = load(p.add(128 + 32 * h));
                // The four quarters of the half as unsigned bytes 0..=63 (no bit crosses a byte).
                let q = [
                    _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4)),
                    _mm256_or_si256(
                        _mm256_and_si256(ql1, m4),
                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m3), 4),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m3), 4),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m3), 4),
                    ),
                ];
                for (k, &q) in q.iter().enumerate() {
                    let g = 8 * h + 2 * k;
                    // Pair sums 0..8 are group g's 16 values, 8..16 group g + 1's.
                    let s =
                        _mm256_set_m128i(_mm_set1_epi16(sc[g + 1] as i8 as i16), _mm_set1_epi16(sc[g] as i8 as i16));
                    let pq = _mm256_maddubs_epi16(q, load(xq.add(128 * h + 32 * k)));
                    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pq, s));
                }
            }
            let bs = x.bsums.get_unchecked(b * 16..(b + 1) * 16);
            let sumi = hsum(acc) - 32 * q6_offset(sc, bs);
            sum += q6_term(*x.d.get_unchecked(b), f16_at(blk, 208), sumi);
        }
        sum
    }
}

/// WebAssembly SIMD128: as SSE2, weights and inputs widened to 16 bits, `i16x8.mul` by the
/// scale, `i32x4.dot_i16x8_s`.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(super) mod wasm {
    use super::*;
    use core::arch::wasm32::*;

    /// `Σ sc·w·x` over 16 weights `w` (bytes, unsigned, less `off`) and 16 inputs at `x`, as four
    /// 32-bit partial sums.
    #[inline(always)]
    unsafe fn dot16(w: v128, off: v128, sc: i16, x: *const i8) -> v128 {
        let sc = i16x8_splat(sc);
        let w0 = i16x8_mul(i16x8_sub(u16x8_extend_low_u8x16(w), off), sc);
        let w1 = i16x8_mul(i16x8_sub(u16x8_extend_high_u8x16(w), off), sc);
        let xv = v128_load(x as *const v128);
        let p0 = i32x4_dot_i16x8(w0, i16x8_extend_low_i8x16(xv));
        let p1 = i32x4_dot_i16x8(w1, i16x8_extend_high_i8x16(xv));
        i32x4_add(p0, p1)
    }

    #[inline(always)]
    fn hsum(v: v128) -> i32 {
        (i32x4_extract_lane::<0>(v) + i32x4_extract_lane::<1>(v))
            + (i32x4_extract_lane::<2>(v) + i32x4_extract_lane::<3>(v))
    }

    #[inline(always)]
    unsafe fn load(p: *const u8) -> v128 {
        v128_load(p as *const v128)
    }

    pub fn dot(dtype: DType, w: &[u8], x: &Input) -> f32 {
        // SAFETY: `super::dot` checked the lengths; v128_load needs no alignment.
        unsafe {
            match dtype {
                DType::Q4_K => k4::<false>(w, x),
                DType::Q5_K => k4::<true>(w, x),
                _ => q6(w, x),
            }
        }
    }

    #[inline(always)]
    unsafe fn k4<const HIGH: bool>(w: &[u8], x: &Input) -> f32 {
        let bb = if HIGH { Q5_K_BYTES } else { Q4_K_BYTES };
        let (m4, zero) = (u8x16_splat(15), i16x8_splat(0));
        let mut sum = 0f32;
        for b in 0..x.d.len() {
            let blk = w.get_unchecked(b * bb..(b + 1) * bb);
            let (d, dmin, sc, m) = k4_header(blk);
            let qs = blk.as_ptr().add(if HIGH { 48 } else { 16 });
            let xq = x.qs.as_ptr().add(b * QK_K);
            let mut acc = i32x4_splat(0);
            for c in 0..4 {
                let (bit_lo, bit_hi) = (u8x16_splat(1u8 << (2 * c)), u8x16_splat(1u8 << (2 * c + 1)));
                for p in 0..2 {
                    let bits = load(qs.add(32 * c + 16 * p));
                    let mut lo = v128_and(bits, m4);
                    let mut hi = u8x16_shr(bits, 4);
                    if HIGH {
                        let qh = load(blk.as_ptr().add(16 + 16 * p));
                        let sixteen = u8x16_splat(16);
                        lo = v128_or(lo, v128_and(i8x16_eq(v128_and(qh, bit_lo), bit_lo), sixteen));
                        hi = v128_or(hi, v128_and(i8x16_eq(v128_and(qh, bit_hi), bit_hi), sixteen));
                    }
                    acc = i32x4_add(acc, dot16(lo, zero, sc[2 * c] as i16, xq.add(64 * c + 16 * p)));
                    acc = i32x4_add(acc, dot16(hi, zero, sc[2 * c + 1] as i16, xq.add(64 * c + 32 + 16 * p)));
                }
            }
            let bs = x.bsums.get_unchecked(b * 16..(b + 1) * 16);
            sum += k4_term(*x.d.get_unchecked(b), d, dmin, hsum(acc), k4_mins(&m, bs));
        }
        sum
    }

    #[inline(always)]
    unsafe fn q6(w: &[u8], x: &Input) -> f32 {
        let (m4, m3, off) = (u8x16_splat(15), u8x16_splat(3), i16x8_splat(32));
        let mut sum = 0f32;
        for b in 0..x.d.len() {
            let blk = w.get_unchecked(b * Q6_K_BYTES..(b + 1) * Q6_K_BYTES);
            let (p, sc) = (blk.as_ptr(), &blk[192..208]);
            let xq = x.qs.as_ptr().add(b * QK_K);
            let mut acc = i32x4_splat(0);
            for h in 0..2 {
                for part in 0..2 {
                    let ql0 = load(p.add(64 * h + 16 * part));
                    let ql1 = load(p.add(64 * h + 32 + 16 * part));
                    let qh = load(p.add(128 + 32 * h + 16 * part));
                    let q = [
                        v128_or(v128_and(ql0, m4), i8x16_shl(v128_and(qh, m3), 4)),
                        v128_or(v128_and(ql1, m4), i8x16_shl(v128_and(u8x16_shr(qh, 2), m3), 4)),
                        v128_or(u8x16_shr(ql0, 4), i8x16_shl(v128_and(u8x16_shr(qh, 4), m3), 4)),
                        v128_or(u8x16_shr(ql1, 4), i8x16_shl(u8x16_shr(qh, 6), 4)),
                    ];
                    for (k, q) in q.into_iter().enumerate() {
                        let g = 8 * h + 2 * k + part;
                        acc = i32x4_add(acc, dot16(q, off, sc[g] as i8 as i16, xq.add(128 * h + 32 * k + 16 * part)));
                    }
                }
            }
            sum += q6_term(*x.d.get_unchecked(b), f16_at(blk, 208), hsum(acc));
        }
        sum
    }
}
