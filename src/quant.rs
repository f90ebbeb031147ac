//! GGML tensor element types and their CPU dequantization.
//!
//! This is the reference implementation of the block formats found in GGUF files: the GPU
//! kernels are checked against it, so it favours clarity over speed. Every layout is the one
//! of ggml (`ggml-common.h` / `ggml-quants.c`), little-endian throughout.
//!
//! A quantized tensor is a sequence of fixed-size blocks; each block encodes `block_elems()`
//! consecutive elements of a row in `block_bytes()` bytes. Scales are IEEE half floats.

use crate::error::{Error, Result};
use half::{bf16, f16};

/// The element types this runtime can read.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4_K,
    Q5_K,
    Q6_K,
}

/// Elements per block of the "legacy" formats Q4_0 .. Q8_0.
pub const QK: usize = 32;
/// Elements per super-block of the K-quant formats.
pub const QK_K: usize = 256;

/// Block sizes in bytes.
pub const Q4_0_BYTES: usize = 2 + QK / 2; // d, qs
pub const Q4_1_BYTES: usize = 2 + 2 + QK / 2; // d, m, qs
pub const Q5_0_BYTES: usize = 2 + 4 + QK / 2; // d, qh, qs
pub const Q5_1_BYTES: usize = 2 + 2 + 4 + QK / 2; // d, m, qh, qs
pub const Q8_0_BYTES: usize = 2 + QK; // d, qs
pub const Q4_K_BYTES: usize = 2 + 2 + 12 + QK_K / 2; // d, dmin, scales, qs
pub const Q5_K_BYTES: usize = 2 + 2 + 12 + QK_K / 8 + QK_K / 2; // d, dmin, scales, qh, qs
pub const Q6_K_BYTES: usize = QK_K / 2 + QK_K / 4 + QK_K / 16 + 2; // ql, qh, scales, d

/// ggml type ids that exist but that this runtime does not implement, with their names.
const UNSUPPORTED_GGML_TYPES: &[(u32, &str)] = &[
    (9, "Q8_1"),
    (10, "Q2_K"),
    (11, "Q3_K"),
    (15, "Q8_K"),
    (16, "IQ2_XXS"),
    (17, "IQ2_XS"),
    (18, "IQ3_XXS"),
    (19, "IQ1_S"),
    (20, "IQ4_NL"),
    (21, "IQ3_S"),
    (22, "IQ2_S"),
    (23, "IQ4_XS"),
    (24, "I8"),
    (25, "I16"),
    (26, "I32"),
    (27, "I64"),
    (28, "F64"),
    (29, "IQ1_M"),
    (34, "TQ1_0"),
    (35, "TQ2_0"),
    (39, "MXFP4"),
];

impl DType {
    /// Every supported type.
    pub const ALL: [DType; 11] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::Q8_0,
        DType::Q4_K,
        DType::Q5_K,
        DType::Q6_K,
    ];

    /// The type with ggml type id `id` (as stored in GGUF tensor infos).
    pub fn from_ggml_type(id: u32) -> Result<DType> {
        if let Some(t) = DType::ALL.iter().find(|t| t.ggml_type() == id) {
            return Ok(*t);
        }
        match UNSUPPORTED_GGML_TYPES.iter().find(|(i, _)| *i == id) {
            Some((_, name)) => Err(Error::UnsupportedModel(format!("tensor type {name} ({id}) is not supported"))),
            None => Err(Error::UnsupportedModel(format!("unknown tensor type {id}"))),
        }
    }

    /// The ggml type id.
    pub fn ggml_type(self) -> u32 {
        match self {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::Q4_0 => 2,
            DType::Q4_1 => 3,
            DType::Q5_0 => 6,
            DType::Q5_1 => 7,
            DType::Q8_0 => 8,
            DType::Q4_K => 12,
            DType::Q5_K => 13,
            DType::Q6_K => 14,
            DType::BF16 => 30,
        }
    }

    /// The ggml name of the type ("F32", "Q4_K", ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::Q4_0 => "Q4_0",
            DType::Q4_1 => "Q4_1",
            DType::Q5_0 => "Q5_0",
            DType::Q5_1 => "Q5_1",
            DType::Q8_0 => "Q8_0",
            DType::Q4_K => "Q4_K",
            DType::Q5_K => "Q5_K",
            DType::Q6_K => "Q6_K",
        }
    }

    /// Elements per block (1 for the plain float types).
    pub fn block_elems(self) -> usize {
        match self {
            DType::F32 | DType::F16 | DType::BF16 => 1,
            DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::Q8_0 => QK,
            DType::Q4_K | DType::Q5_K | DType::Q6_K => QK_K,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Q4_0 => Q4_0_BYTES,
            DType::Q4_1 => Q4_1_BYTES,
            DType::Q5_0 => Q5_0_BYTES,
            DType::Q5_1 => Q5_1_BYTES,
            DType::Q8_0 => Q8_0_BYTES,
            DType::Q4_K => Q4_K_BYTES,
            DType::Q5_K => Q5_K_BYTES,
            DType::Q6_K => Q6_K_BYTES,
        }
    }

    /// Bytes needed for `n` elements; an error if `n` is not a whole number of blocks or the
    /// size overflows.
    pub fn bytes_for(self, n: u64) -> Result<u64> {
        let per_block = self.block_elems() as u64;
        if !n.is_multiple_of(per_block) {
            return Err(Error::BadModel(format!(
                "{} data of {n} elements is not a whole number of {per_block}-element blocks",
                self.name()
            )));
        }
        (n / per_block)
            .checked_mul(self.block_bytes() as u64)
            .ok_or_else(|| Error::BadModel(format!("{} data of {n} elements is too large", self.name())))
    }
}

/// Checks that `bytes_len` bytes hold exactly `n` elements of `dtype`.
fn check_len(dtype: DType, bytes_len: usize, n: usize) -> Result<()> {
    let needed = dtype.bytes_for(n as u64)?;
    if bytes_len as u64 != needed {
        return Err(Error::BadModel(format!(
            "{} data for {n} elements needs {needed} bytes, got {bytes_len}",
            dtype.name()
        )));
    }
    Ok(())
}

/// The little-endian f16 at `b[at..at + 2]`, widened to f32.
pub(crate) fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

// ---------------------------------------------------------------------------------------------
// Legacy 32-element blocks
// ---------------------------------------------------------------------------------------------

/// Q4_0: `d: f16, qs: [u8; 16]`. Element `j` (j < 16) is the low nibble of `qs[j]`, element
/// `j + 16` its high nibble; `x = (q - 8) * d`.
pub fn dequant_q4_0_block(block: &[u8; Q4_0_BYTES], out: &mut [f32; QK]) {
    let d = f16_at(block, 0);
    let qs = &block[2..];
    for j in 0..QK / 2 {
        let lo = (qs[j] & 0x0F) as i32 - 8;
        let hi = (qs[j] >> 4) as i32 - 8;
        out[j] = lo as f32 * d;
        out[j + QK / 2] = hi as f32 * d;
    }
}

/// Q4_1: `d: f16, m: f16, qs: [u8; 16]`; nibbles as in Q4_0; `x = q * d + m`.
pub fn dequant_q4_1_block(block: &[u8; Q4_1_BYTES], out: &mut [f32; QK]) {
    let d = f16_at(block, 0);
    let m = f16_at(block, 2);
    let qs = &block[4..];
    for j in 0..QK / 2 {
        let lo = qs[j] & 0x0F;
        let hi = qs[j] >> 4;
        out[j] = lo as f32 * d + m;
        out[j + QK / 2] = hi as f32 * d + m;
    }
}

/// The 5th (high) bit of element `i` of a Q5 block: bit `i` of `qh`, as the value 0 or 16.
fn q5_high_bit(qh: u32, i: usize) -> u8 {
    (((qh >> i) & 1) as u8) << 4
}

/// Q5_0: `d: f16, qh: u32, qs: [u8; 16]`. The low four bits of each element come from the
/// nibbles as in Q4_0, the fifth bit of element `i` is bit `i` of `qh`; `x = (q - 16) * d`.
pub fn dequant_q5_0_block(block: &[u8; Q5_0_BYTES], out: &mut [f32; QK]) {
    let d = f16_at(block, 0);
    let qh = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
    let qs = &block[6..];
    for j in 0..QK / 2 {
        let lo = ((qs[j] & 0x0F) | q5_high_bit(qh, j)) as i32 - 16;
        let hi = ((qs[j] >> 4) | q5_high_bit(qh, j + QK / 2)) as i32 - 16;
        out[j] = lo as f32 * d;
        out[j + QK / 2] = hi as f32 * d;
    }
}

/// Q5_1: `d: f16, m: f16, qh: u32, qs: [u8; 16]`; bits as in Q5_0; `x = q * d + m`.
pub fn dequant_q5_1_block(block: &[u8; Q5_1_BYTES], out: &mut [f32; QK]) {
    let d = f16_at(block, 0);
    let m = f16_at(block, 2);
    let qh = u32::from_le_bytes([block[4], block[5], block[6], block[7]]);
    let qs = &block[8..];
    for j in 0..QK / 2 {
        let lo = (qs[j] & 0x0F) | q5_high_bit(qh, j);
        let hi = (qs[j] >> 4) | q5_high_bit(qh, j + QK / 2);
        out[j] = lo as f32 * d + m;
        out[j + QK / 2] = hi as f32 * d + m;
    }
}

/// Q8_0: `d: f16, qs: [i8; 32]`; `x = q * d`.
pub fn dequant_q8_0_block(block: &[u8; Q8_0_BYTES], out: &mut [f32; QK]) {
    let d = f16_at(block, 0);
    for (o, &q) in out.iter_mut().zip(&block[2..]) {
        *o = (q as i8) as f32 * d;
    }
}

// ---------------------------------------------------------------------------------------------
// K-quants: 256-element super-blocks
// ---------------------------------------------------------------------------------------------

/// The 6-bit scale and 6-bit min of sub-block `j` (0..8) from the 12 packed bytes of a Q4_K /
/// Q5_K super-block (ggml's `get_scale_min_k4`).
///
/// Bytes 0..4 hold the low 6 bits of scales 0..4 and bytes 4..8 those of mins 0..4; for
/// sub-blocks 4..8 the low 4 bits of the scale and min are the two nibbles of byte `j + 4`,
/// and their top 2 bits are the top 2 bits of bytes `j - 4` (scale) and `j` (min).
pub fn scale_min_k4(j: usize, scales: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        let sc = (scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4);
        let m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
        (sc, m)
    }
}

/// Q4_K: `d: f16, dmin: f16, scales: [u8; 12], qs: [u8; 128]`.
///
/// Eight sub-blocks of 32 elements, each with its own scale and min ([`scale_min_k4`]). Each
/// 64-element chunk `c` uses `qs[32c..32c + 32]`: the low nibbles are sub-block `2c`, the high
/// nibbles sub-block `2c + 1`. `x = d * sc * q - dmin * m`.
pub fn dequant_q4_k_block(block: &[u8; Q4_K_BYTES], out: &mut [f32; QK_K]) {
    let d = f16_at(block, 0);
    let dmin = f16_at(block, 2);
    let scales: &[u8; 12] = block[4..16].try_into().unwrap();
    let qs = &block[16..];
    for chunk in 0..QK_K / 64 {
        let (sc_lo, m_lo) = scale_min_k4(2 * chunk, scales);
        let (sc_hi, m_hi) = scale_min_k4(2 * chunk + 1, scales);
        let (d_lo, min_lo) = (d * sc_lo as f32, dmin * m_lo as f32);
        let (d_hi, min_hi) = (d * sc_hi as f32, dmin * m_hi as f32);
        let q = &qs[32 * chunk..32 * chunk + 32];
        let y = &mut out[64 * chunk..64 * chunk + 64];
        for l in 0..32 {
            y[l] = d_lo * (q[l] & 0x0F) as f32 - min_lo;
            y[l + 32] = d_hi * (q[l] >> 4) as f32 - min_hi;
        }
    }
}

/// Q5_K: `d: f16, dmin: f16, scales: [u8; 12], qh: [u8; 32], qs: [u8; 128]`.
///
/// Like Q4_K, plus a fifth bit: for element `l` (0..32) of sub-block `s` (0..8) it is bit `s`
/// of `qh[l]` (ggml walks this as masks `u1 = 1 << 2c`, `u2 = 1 << (2c + 1)` per chunk `c`).
/// `x = d * sc * q - dmin * m`.
pub fn dequant_q5_k_block(block: &[u8; Q5_K_BYTES], out: &mut [f32; QK_K]) {
    let d = f16_at(block, 0);
    let dmin = f16_at(block, 2);
    let scales: &[u8; 12] = block[4..16].try_into().unwrap();
    let qh = &block[16..48];
    let qs = &block[48..];
    for chunk in 0..QK_K / 64 {
        let (sc_lo, m_lo) = scale_min_k4(2 * chunk, scales);
        let (sc_hi, m_hi) = scale_min_k4(2 * chunk + 1, scales);
        let (d_lo, min_lo) = (d * sc_lo as f32, dmin * m_lo as f32);
        let (d_hi, min_hi) = (d * sc_hi as f32, dmin * m_hi as f32);
        let u_lo = 1u8 << (2 * chunk);
        let u_hi = 1u8 << (2 * chunk + 1);
        let q = &qs[32 * chunk..32 * chunk + 32];
        let y = &mut out[64 * chunk..64 * chunk + 64];
        for l in 0..32 {
            let high_lo = if qh[l] & u_lo != 0 { 16 } else { 0 };
            let high_hi = if qh[l] & u_hi != 0 { 16 } else { 0 };
            y[l] = d_lo * ((q[l] & 0x0F) + high_lo) as f32 - min_lo;
            y[l + 32] = d_hi * ((q[l] >> 4) + high_hi) as f32 - min_hi;
        }
    }
}

/// Q6_K: `ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16`.
///
/// Two halves of 128 elements; half `n` uses `ql[64n..64n + 64]`, `qh[32n..32n + 32]` and
/// `scales[8n..8n + 8]`. Within a half, for `l` in 0..32, the four elements `l`, `l + 32`,
/// `l + 64`, `l + 96` take their low 4 bits from the low nibble of `ql[l]`, the low nibble of
/// `ql[l + 32]`, the high nibble of `ql[l]`, the high nibble of `ql[l + 32]`, and their top 2
/// bits from bits 0-1, 2-3, 4-5, 6-7 of `qh[l]`. Each 16 elements share a scale:
/// `x = d * sc[l / 16 + 2k] * (q - 32)` for the k-th of the four.
pub fn dequant_q6_k_block(block: &[u8; Q6_K_BYTES], out: &mut [f32; QK_K]) {
    let d = f16_at(block, 208);
    for half in 0..2 {
        let ql = &block[64 * half..64 * half + 64];
        let qh = &block[128 + 32 * half..128 + 32 * half + 32];
        let sc = &block[192 + 8 * half..192 + 8 * half + 8];
        let y = &mut out[128 * half..128 * half + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0F) | (qh[l] & 3) << 4) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0F) | ((qh[l] >> 2) & 3) << 4) as i32 - 32;
            let q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) as i32 - 32;
            y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
            y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
            y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
            y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Whole rows
// ---------------------------------------------------------------------------------------------

/// Dequantizes one block of a quantized `dtype` into the first `dtype.block_elems()` elements
/// of `out`. `block` must be exactly one block long. Not for the plain float types.
fn dequant_block(dtype: DType, block: &[u8], out: &mut [f32; QK_K]) {
    fn arr<const N: usize>(b: &[u8]) -> &[u8; N] {
        b.try_into().expect("block length checked by caller")
    }
    fn head<const N: usize>(o: &mut [f32; QK_K]) -> &mut [f32; N] {
        (&mut o[..N]).try_into().unwrap()
    }
    match dtype {
        DType::Q4_0 => dequant_q4_0_block(arr(block), head(out)),
        DType::Q4_1 => dequant_q4_1_block(arr(block), head(out)),
        DType::Q5_0 => dequant_q5_0_block(arr(block), head(out)),
        DType::Q5_1 => dequant_q5_1_block(arr(block), head(out)),
        DType::Q8_0 => dequant_q8_0_block(arr(block), head(out)),
        DType::Q4_K => dequant_q4_k_block(arr(block), out),
        DType::Q5_K => dequant_q5_k_block(arr(block), out),
        DType::Q6_K => dequant_q6_k_block(arr(block), out),
        DType::F32 | DType::F16 | DType::BF16 => unreachable!("plain float types have no blocks"),
    }
}

/// Dequantizes `bytes`, which must be exactly `dtype.bytes_for(out.len())` long, into `out`.
pub fn dequantize(dtype: DType, bytes: &[u8], out: &mut [f32]) -> Result<()> {
    check_len(dtype, bytes.len(), out.len())?;
    match dtype {
        DType::F32 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        DType::F16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
            }
        }
        DType::BF16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
            }
        }
        _ => {
            let n = dtype.block_elems();
            let mut buf = [0f32; QK_K];
            for (o, block) in out.chunks_exact_mut(n).zip(bytes.chunks_exact(dtype.block_bytes())) {
                dequant_block(dtype, block, &mut buf);
                o.copy_from_slice(&buf[..n]);
            }
        }
    }
    Ok(())
}

/// The dot product of one row of `dtype` data with `x`, without materializing the row. `row`
/// must be exactly `dtype.bytes_for(x.len())` long.
pub fn dot(dtype: DType, row: &[u8], x: &[f32]) -> Result<f32> {
    check_len(dtype, row.len(), x.len())?;
    let mut sum = 0f32;
    match dtype {
        DType::F32 => {
            for (b, &xi) in row.chunks_exact(4).zip(x) {
                sum += f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * xi;
            }
        }
        DType::F16 => {
            for (b, &xi) in row.chunks_exact(2).zip(x) {
                sum += f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32() * xi;
            }
        }
        DType::BF16 => {
            for (b, &xi) in row.chunks_exact(2).zip(x) {
                sum += bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32() * xi;
            }
        }
        _ => {
            let n = dtype.block_elems();
            let mut buf = [0f32; QK_K];
            for (block, xs) in row.chunks_exact(dtype.block_bytes()).zip(x.chunks_exact(n)) {
                dequant_block(dtype, block, &mut buf);
                sum += buf[..n].iter().zip(xs).map(|(a, b)| a * b).sum::<f32>();
            }
        }
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Little-endian bytes of the f16 nearest `v` (all test values are exact in f16).
    fn h(v: f32) -> [u8; 2] {
        let x = f16::from_f32(v);
        assert_eq!(x.to_f32(), v, "{v} is not exact in f16");
        x.to_bits().to_le_bytes()
    }

    fn deq(dtype: DType, bytes: &[u8]) -> Vec<f32> {
        let n = bytes.len() / dtype.block_bytes() * dtype.block_elems();
        let mut out = vec![f32::NAN; n];
        dequantize(dtype, bytes, &mut out).unwrap();
        out
    }

    // ----- type table -------------------------------------------------------------------------

    #[test]
    fn type_table() {
        let expect = [
            (DType::F32, 0, "F32", 1, 4),
            (DType::F16, 1, "F16", 1, 2),
            (DType::BF16, 30, "BF16", 1, 2),
            (DType::Q4_0, 2, "Q4_0", 32, 18),
            (DType::Q4_1, 3, "Q4_1", 32, 20),
            (DType::Q5_0, 6, "Q5_0", 32, 22),
            (DType::Q5_1, 7, "Q5_1", 32, 24),
            (DType::Q8_0, 8, "Q8_0", 32, 34),
            (DType::Q4_K, 12, "Q4_K", 256, 144),
            (DType::Q5_K, 13, "Q5_K", 256, 176),
            (DType::Q6_K, 14, "Q6_K", 256, 210),
        ];
        for (t, id, name, elems, bytes) in expect {
            assert_eq!(t.ggml_type(), id);
            assert_eq!(DType::from_ggml_type(id).unwrap(), t);
            assert_eq!(t.name(), name);
            assert_eq!(t.block_elems(), elems);
            assert_eq!(t.block_bytes(), bytes);
        }
        assert_eq!(DType::ALL.len(), expect.len());
    }

    #[test]
    fn from_ggml_type_errors() {
        let msg = |id| match DType::from_ggml_type(id) {
            Err(Error::UnsupportedModel(m)) => m,
            other => panic!("{id}: {other:?}"),
        };
        assert_eq!(msg(999), "unknown tensor type 999");
        assert_eq!(msg(4), "unknown tensor type 4"); // removed Q4_2
        assert_eq!(msg(10), "tensor type Q2_K (10) is not supported");
        assert_eq!(msg(9), "tensor type Q8_1 (9) is not supported");
        assert_eq!(msg(15), "tensor type Q8_K (15) is not supported");
        assert_eq!(msg(20), "tensor type IQ4_NL (20) is not supported");
        assert_eq!(msg(24), "tensor type I8 (24) is not supported");
        // No supported type is also listed as unsupported.
        for (id, _) in UNSUPPORTED_GGML_TYPES {
            assert!(DType::ALL.iter().all(|t| t.ggml_type() != *id));
        }
    }

    #[test]
    fn bytes_for() {
        assert_eq!(DType::F32.bytes_for(3).unwrap(), 12);
        assert_eq!(DType::BF16.bytes_for(7).unwrap(), 14);
        assert_eq!(DType::Q4_0.bytes_for(64).unwrap(), 36);
        assert_eq!(DType::Q8_0.bytes_for(0).unwrap(), 0);
        assert_eq!(DType::Q6_K.bytes_for(512).unwrap(), 420);
        assert!(matches!(DType::Q4_0.bytes_for(33), Err(Error::BadModel(_))));
        assert!(matches!(DType::Q4_K.bytes_for(128), Err(Error::BadModel(_))));
        // Overflow: 2^62 f32 elements would need 2^64 bytes.
        assert!(matches!(DType::F32.bytes_for(1 << 62), Err(Error::BadModel(_))));
        assert!(matches!(DType::F16.bytes_for(1 << 63), Err(Error::BadModel(_))));
        // Quantized types take under a byte per element, so they cannot overflow u64.
        assert_eq!(DType::Q4_K.bytes_for(u64::MAX / 256 * 256).unwrap(), u64::MAX / 256 * 144);
    }

    #[test]
    fn wrong_lengths() {
        let mut out = vec![0f32; 32];
        let bad = |r: Result<()>| assert!(matches!(r, Err(Error::BadModel(_))), "{r:?}");
        bad(dequantize(DType::Q4_0, &[0; 17], &mut out));
        bad(dequantize(DType::Q4_0, &[0; 19], &mut out));
        bad(dequantize(DType::Q4_0, &[0; 36], &mut out));
        bad(dequantize(DType::F32, &[0; 127], &mut out));
        bad(dequantize(DType::Q4_K, &[0; 144], &mut out)); // 32 is not a whole super-block
        let mut out = vec![0f32; 256];
        bad(dequantize(DType::Q6_K, &[0; 209], &mut out));
        bad(dequantize(DType::Q5_K, &[0; 144], &mut out));
        assert!(dequantize(DType::Q5_K, &[0; 176], &mut out).is_ok());
        let x = vec![0f32; 256];
        assert!(matches!(dot(DType::Q4_K, &[0; 143], &x), Err(Error::BadModel(_))));
        assert!(matches!(dot(DType::F16, &[0; 511], &x), Err(Error::BadModel(_))));
        assert!(matches!(dot(DType::Q8_0, &[0; 34], &x[..33]), Err(Error::BadModel(_))));
        assert_eq!(dot(DType::Q8_0, &[], &[]).unwrap(), 0.0);
    }

    // ----- plain floats -----------------------------------------------------------------------

    #[test]
    fn plain_floats() {
        let mut b = Vec::new();
        for v in [1.5f32, -0.0, 1e-30, -3.25e7] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(deq(DType::F32, &b), [1.5, -0.0, 1e-30, -3.25e7]);

        // f16: 1.0 = 0x3C00, -2.0 = 0xC000, 0.5 = 0x3800, 65504 = 0x7BFF, 2^-24 = 0x0001.
        let b = [0x00, 0x3C, 0x00, 0xC0, 0x00, 0x38, 0xFF, 0x7B, 0x01, 0x00];
        assert_eq!(deq(DType::F16, &b), [1.0, -2.0, 0.5, 65504.0, 2f32.powi(-24)]);

        // bf16 is the top half of an f32: 1.0 = 0x3F80, -2.0 = 0xC000, 0x4049 -> 0x40490000.
        let b = [0x80, 0x3F, 0x00, 0xC0, 0x49, 0x40];
        assert_eq!(deq(DType::BF16, &b), [1.0, -2.0, 3.140625]);
    }

    // ----- legacy blocks ----------------------------------------------------------------------

    #[test]
    fn q4_0() {
        // d = 0.5; qs[i] has low nibble i and high nibble 15 - i.
        let mut b = [0u8; 18];
        b[0..2].copy_from_slice(&h(0.5));
        for i in 0..16 {
            b[2 + i] = i as u8 | ((15 - i as u8) << 4);
        }
        let y = deq(DType::Q4_0, &b);
        let expect: Vec<f32> =
            (0..16).map(|i| (i - 8) as f32 * 0.5).chain((0..16).map(|i| (15 - i - 8) as f32 * 0.5)).collect();
        assert_eq!(y, expect);
        assert_eq!(y[0], -4.0); // (0 - 8) * 0.5
        assert_eq!(y[15], 3.5); // (15 - 8) * 0.5
        assert_eq!(y[16], 3.5); // high nibble of qs[0] = 0xF
        assert_eq!(y[17], 3.0); // high nibble of qs[1] = 0xE: (14 - 8) * 0.5
        assert_eq!(y[31], -4.0); // high nibble of qs[15] = 0
    }

    #[test]
    fn q4_1() {
        // d = 0.25, m = -1.0; qs[i] = low nibble i, high nibble (3 * i) % 16.
        let mut b = [0u8; 20];
        b[0..2].copy_from_slice(&h(0.25));
        b[2..4].copy_from_slice(&h(-1.0));
        for i in 0..16 {
            b[4 + i] = i as u8 | ((((3 * i) % 16) as u8) << 4);
        }
        let y = deq(DType::Q4_1, &b);
        for i in 0..16 {
            assert_eq!(y[i], i as f32 * 0.25 - 1.0, "element {i}");
            assert_eq!(y[16 + i], ((3 * i) % 16) as f32 * 0.25 - 1.0, "element {}", 16 + i);
        }
        assert_eq!(y[0], -1.0);
        assert_eq!(y[5], 0.25); // 5 * 0.25 - 1
        assert_eq!(y[21], 2.75); // high nibble of qs[5] = 15: 15 * 0.25 - 1
        assert_eq!(y[22], -0.5); // high nibble of qs[6] = 18 % 16 = 2: 2 * 0.25 - 1
    }

    /// qs[j] = low nibble j, high nibble 15 - j; qh with bits 0, 1, 9, 16, 20, 31 set.
    fn q5_bits() -> ([u8; 16], u32) {
        let mut qs = [0u8; 16];
        for (j, q) in qs.iter_mut().enumerate() {
            *q = j as u8 | ((15 - j as u8) << 4);
        }
        let qh = (1 << 0) | (1 << 1) | (1 << 9) | (1 << 16) | (1 << 20) | (1u32 << 31);
        (qs, qh)
    }

    /// The 5-bit quant of element i built by `q5_bits`, written out by hand.
    fn q5_expected_q(i: usize) -> i32 {
        let low = if i < 16 { i as i32 } else { 15 - (i as i32 - 16) };
        let high = if [0, 1, 9, 16, 20, 31].contains(&i) { 16 } else { 0 };
        low + high
    }

    #[test]
    fn q5_0() {
        let (qs, qh) = q5_bits();
        let mut b = [0u8; 22];
        b[0..2].copy_from_slice(&h(2.0));
        b[2..6].copy_from_slice(&qh.to_le_bytes());
        b[6..].copy_from_slice(&qs);
        let y = deq(DType::Q5_0, &b);
        for (i, v) in y.iter().enumerate() {
            assert_eq!(*v, (q5_expected_q(i) - 16) as f32 * 2.0, "element {i}");
        }
        assert_eq!(y[0], 0.0); // (0 + 16 - 16) * 2
        assert_eq!(y[2], -28.0); // (2 - 16) * 2
        assert_eq!(y[9], 18.0); // (9 + 16 - 16) * 2
        assert_eq!(y[16], 30.0); // high nibble of qs[0] = 15, bit 16 set: (31 - 16) * 2
        assert_eq!(y[17], -4.0); // high nibble of qs[1] = 14, no high bit: (14 - 16) * 2
        assert_eq!(y[20], 22.0); // high nibble of qs[4] = 11 + 16: (27 - 16) * 2
        assert_eq!(y[31], 0.0); // high nibble of qs[15] = 0 + 16
    }

    #[test]
    fn q5_1() {
        let (qs, qh) = q5_bits();
        let mut b = [0u8; 24];
        b[0..2].copy_from_slice(&h(0.5));
        b[2..4].copy_from_slice(&h(-3.0));
        b[4..8].copy_from_slice(&qh.to_le_bytes());
        b[8..].copy_from_slice(&qs);
        let y = deq(DType::Q5_1, &b);
        for (i, v) in y.iter().enumerate() {
            assert_eq!(*v, q5_expected_q(i) as f32 * 0.5 - 3.0, "element {i}");
        }
        assert_eq!(y[1], 5.5); // (1 + 16) * 0.5 - 3
        assert_eq!(y[3], -1.5); // 3 * 0.5 - 3
        assert_eq!(y[16], 12.5); // (15 + 16) * 0.5 - 3
        assert_eq!(y[30], -2.5); // high nibble of qs[14] = 1: 1 * 0.5 - 3
        assert_eq!(y[31], 5.0); // (0 + 16) * 0.5 - 3
    }

    #[test]
    fn q8_0() {
        let mut b = [0u8; 34];
        b[0..2].copy_from_slice(&h(0.25));
        let qs: [i8; 32] = std::array::from_fn(|i| (i as i32 * 8 - 128) as i8);
        for (dst, q) in b[2..].iter_mut().zip(qs) {
            *dst = q as u8;
        }
        let y = deq(DType::Q8_0, &b);
        for (i, v) in y.iter().enumerate() {
            assert_eq!(*v, (i as f32 * 8.0 - 128.0) * 0.25, "element {i}");
        }
        assert_eq!(y[0], -32.0);
        assert_eq!(y[16], 0.0);
        assert_eq!(y[31], 30.0); // 120 * 0.25
    }

    #[test]
    fn multiple_blocks_in_order() {
        // Two Q8_0 blocks with different d: the second block is elements 32..64.
        let mut b = [0u8; 68];
        b[0..2].copy_from_slice(&h(1.0));
        b[34..36].copy_from_slice(&h(-2.0));
        b[2] = 3;
        b[36] = 5;
        b[67] = (-7i8) as u8;
        let y = deq(DType::Q8_0, &b);
        assert_eq!(y[0], 3.0);
        assert_eq!(y[32], -10.0);
        assert_eq!(y[63], 14.0);
        assert_eq!(y.iter().filter(|v| **v != 0.0).count(), 3);
    }

    // ----- K-quants ---------------------------------------------------------------------------

    /// Sub-block scales and mins used by the Q4_K / Q5_K tests, and their packed form.
    const KS: [u8; 8] = [1, 2, 3, 4, 17, 33, 50, 63];
    const KM: [u8; 8] = [5, 6, 7, 8, 20, 40, 3, 61];
    /// Packed by hand: bytes 0..4 = scales 0..4 with the top 2 bits of scales 4..8 in bits 6-7;
    /// bytes 4..8 = mins 0..4 with the top 2 bits of mins 4..8; bytes 8..12 = low nibble: low 4
    /// bits of scale j+4, high nibble: low 4 bits of min j+4.
    const KPACKED: [u8; 12] = [
        0x41, 0x82, 0xC3, 0xC4, // 1|1<<6, 2|2<<6, 3|3<<6, 4|3<<6
        0x45, 0x86, 0x07, 0xC8, // 5|1<<6, 6|2<<6, 7|0<<6, 8|3<<6
        0x41, 0x81, 0x32, 0xDF, // 1|4<<4, 1|8<<4, 2|3<<4, 15|13<<4
    ];

    #[test]
    fn k4_scale_unpacking() {
        for j in 0..8 {
            assert_eq!(scale_min_k4(j, &KPACKED), (KS[j], KM[j]), "sub-block {j}");
        }
    }

    /// qs pattern shared by the Q4_K / Q5_K tests.
    fn kqs(i: usize) -> u8 {
        (i % 16) as u8 | ((((i * 7 + 3) % 16) as u8) << 4)
    }

    /// The 4-bit quant of element e of a Q4_K / Q5_K block: sub-block s = e / 32 reads byte
    /// 32 * (s / 2) + e % 32 of qs, low nibble for even s, high nibble for odd s.
    fn k4_nibble(qs: &[u8], e: usize) -> u8 {
        let s = e / 32;
        let byte = qs[32 * (s / 2) + e % 32];
        if s.is_multiple_of(2) {
            byte & 0xF
        } else {
            byte >> 4
        }
    }

    #[test]
    fn q4_k() {
        let mut b = [0u8; 144];
        b[0..2].copy_from_slice(&h(0.5));
        b[2..4].copy_from_slice(&h(0.25));
        b[4..16].copy_from_slice(&KPACKED);
        for i in 0..128 {
            b[16 + i] = kqs(i);
        }
        let y = deq(DType::Q4_K, &b);
        for (e, v) in y.iter().enumerate() {
            let s = e / 32;
            let q = k4_nibble(&b[16..], e) as f32;
            assert_eq!(*v, 0.5 * KS[s] as f32 * q - 0.25 * KM[s] as f32, "element {e}");
        }
        assert_eq!(y[0], -1.25); // low nibble of qs[0] = 0: 0.5*1*0 - 0.25*5
        assert_eq!(y[32], 1.5); // high nibble of qs[0] = 3, sub-block 1: 0.5*2*3 - 0.25*6
        assert_eq!(y[100], 28.0); // sub-block 3, hi nibble of qs[36] = 15: 0.5*4*15 - 0.25*8
        assert_eq!(y[130], 12.0); // sub-block 4, lo nibble of qs[66] = 2: 0.5*17*2 - 0.25*20
        assert_eq!(y[255], 362.75); // sub-block 7, hi nibble of qs[127] = 12: 0.5*63*12 - 0.25*61
    }

    #[test]
    fn q5_k() {
        let mut b = [0u8; 176];
        b[0..2].copy_from_slice(&h(0.5));
        b[2..4].copy_from_slice(&h(0.25));
        b[4..16].copy_from_slice(&KPACKED);
        for l in 0..32 {
            b[16 + l] = (l * 37 + 11) as u8; // qh: varied bits
        }
        for i in 0..128 {
            b[48 + i] = kqs(i);
        }
        let y = deq(DType::Q5_K, &b);
        for (e, v) in y.iter().enumerate() {
            let s = e / 32;
            let high = (b[16 + e % 32] >> s) & 1; // bit s of qh[e % 32]
            let q = (k4_nibble(&b[48..], e) + 16 * high) as f32;
            assert_eq!(*v, 0.5 * KS[s] as f32 * q - 0.25 * KM[s] as f32, "element {e}");
        }
        // qh[0] = 11 = 0b1011: bits 0, 1, 3 set.
        assert_eq!(y[0], 6.75); // (0 + 16): 0.5*1*16 - 0.25*5
        assert_eq!(y[32], 17.5); // (3 + 16), sub-block 1: 0.5*2*19 - 0.25*6
        assert_eq!(y[64], -1.75); // lo nibble of qs[32] = 0, bit 2 clear: 0 - 0.25*7
        assert_eq!(y[96], 36.0); // hi nibble of qs[32] = 3, bit 3 set: 0.5*4*19 - 0.25*8
                                 // qh[31] = 1158 % 256 = 134 = 0b1000_0110: bit 7 set.
        assert_eq!(y[255], 866.75); // (12 + 16), sub-block 7: 0.5*63*28 - 0.25*61
    }

    #[test]
    fn q6_k() {
        let mut b = [0u8; 210];
        for (i, q) in b[..128].iter_mut().enumerate() {
            *q = (i * 5 + 1) as u8; // ql
        }
        for i in 0..64 {
            b[128 + i] = (i * 29 + 7) as u8; // qh
        }
        let scales: [i8; 16] = [1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12, 13, -14, 15, -128];
        for (i, s) in scales.iter().enumerate() {
            b[192 + i] = *s as u8;
        }
        b[208..210].copy_from_slice(&h(0.25));
        let (ql, qh) = (&b[..128], &b[128..192]);
        let y = deq(DType::Q6_K, &b);
        for (e, v) in y.iter().enumerate() {
            // Half n, quarter k (0..4) of that half, position l (0..32) in the quarter.
            let (n, k, l) = (e / 128, (e % 128) / 32, e % 32);
            let ql_byte = ql[64 * n + 32 * (k % 2) + l];
            let low = if k < 2 { ql_byte & 0xF } else { ql_byte >> 4 };
            let high = (qh[32 * n + l] >> (2 * k)) & 3;
            let q = (low | high << 4) as i32 - 32;
            let sc = scales[8 * n + 2 * k + l / 16];
            assert_eq!(*v, 0.25 * sc as f32 * q as f32, "element {e}");
        }
        // ql[0] = 1, qh[0] = 7: q = 1 | 3 << 4 = 49; 0.25 * 1 * (49 - 32)
        assert_eq!(y[0], 4.25);
        // Element 16: ql[16] = 81 = 0x51 lo 1, qh[16] = 471 % 256 = 215 = 0b11010111, bits 0-1
        // = 3: q = 49, scale 1 = -2: 0.25 * -2 * 17
        assert_eq!(y[16], -8.5);
        // Element 200: half 1, quarter 2, l = 8: hi nibble of ql[72] = 105 = 0x69 is 6; qh[40]
        // = 1167 % 256 = 143 = 0b1000_1111, bits 4-5 = 0; scale 8 + 4 = 12 -> 13.
        assert_eq!(y[200], -84.5); // 0.25 * 13 * (6 - 32)
                                   // Element 255: hi nibble of ql[127] = 636 % 256 = 0x7C is 7; qh[63] = 42, bits 6-7 = 0;
                                   // scale 15 = -128.
        assert_eq!(y[255], 800.0); // 0.25 * -128 * (7 - 32)
    }

    // ----- dot --------------------------------------------------------------------------------

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        /// Uniform in [-1, 1).
        fn f(&mut self) -> f32 {
            (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        }
    }

    /// Random data for `blocks` blocks of `dtype`, with finite, moderate scales and values.
    fn random_data(dtype: DType, blocks: usize, rng: &mut Rng) -> Vec<u8> {
        let bb = dtype.block_bytes();
        let mut b: Vec<u8> = (0..blocks * bb).map(|_| rng.next() as u8).collect();
        for block in b.chunks_exact_mut(bb) {
            let mut set_f16 = |at: usize, rng: &mut Rng| {
                let v = f16::from_f32(rng.f() * 0.1);
                block[at..at + 2].copy_from_slice(&v.to_bits().to_le_bytes());
            };
            match dtype {
                DType::F32 => block.copy_from_slice(&(rng.f() * 10.0).to_le_bytes()),
                DType::F16 => set_f16(0, rng),
                DType::BF16 => {
                    let v = bf16::from_f32(rng.f());
                    block.copy_from_slice(&v.to_bits().to_le_bytes());
                }
                DType::Q4_0 | DType::Q5_0 | DType::Q8_0 => set_f16(0, rng),
                DType::Q4_1 | DType::Q5_1 | DType::Q4_K | DType::Q5_K => {
                    set_f16(0, rng);
                    set_f16(2, rng);
                }
                DType::Q6_K => set_f16(208, rng),
            }
        }
        b
    }

    #[test]
    fn dot_matches_dequantize() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for dtype in DType::ALL {
            for blocks in [0, 1, 3] {
                let n = blocks * 256; // a whole number of blocks for every type
                let data = random_data(dtype, n / dtype.block_elems(), &mut rng);
                let x: Vec<f32> = (0..n).map(|_| rng.f()).collect();
                let mut row = vec![0f32; n];
                dequantize(dtype, &data, &mut row).unwrap();
                assert!(row.iter().all(|v| v.is_finite()), "{dtype:?}");
                let want: f64 = row.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
                let scale: f64 = row.iter().zip(&x).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum();
                let got = dot(dtype, &data, &x).unwrap() as f64;
                assert!((got - want).abs() <= 1e-5 * scale + 1e-6, "{dtype:?} blocks={blocks}: dot {got} vs {want}");
                if blocks > 0 {
                    assert!(scale > 0.0, "{dtype:?}: degenerate random data");
                }
            }
        }
    }
}
