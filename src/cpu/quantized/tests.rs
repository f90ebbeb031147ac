use super::*;
use crate::gguf::{TensorInfo, TensorView};
use crate::quant::{scale_min_k4, Q4_K_BYTES};

/// Every format with an integer product.
const INTEGER: [DType; 8] =
    [DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K];

/// Deterministic pseudo-random bytes and floats.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    /// Uniform in [-1, 1].
    fn f(&mut self) -> f32 {
        (self.next() % 20001) as f32 / 10000.0 - 1.0
    }
}

fn put_f16(b: &mut [u8], at: usize, v: f32) {
    b[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
}

/// One random block of `dtype`: random bytes, with small positive scales (`d`, `dmin`) and small
/// mins of either sign. `extreme`: every other byte all ones (the largest values, scales and
/// fifth / sixth bits), to reach the SIMD versions' widest intermediate sums.
fn block(rng: &mut Rng, dtype: DType, extreme: bool) -> Vec<u8> {
    let mut b: Vec<u8> = (0..dtype.block_bytes()).map(|_| if extreme { 0xFF } else { rng.next() as u8 }).collect();
    let d = 0.01 + rng.f().abs() * 0.05;
    match dtype {
        DType::Q4_0 | DType::Q5_0 | DType::Q8_0 => put_f16(&mut b, 0, d),
        DType::Q4_1 | DType::Q5_1 => {
            put_f16(&mut b, 0, d);
            put_f16(&mut b, 2, rng.f() * 0.2);
        }
        DType::Q4_K | DType::Q5_K => {
            put_f16(&mut b, 0, d * 0.1);
            put_f16(&mut b, 2, d * 0.05);
        }
        DType::Q6_K => put_f16(&mut b, 208, d * 0.1),
        _ => unreachable!(),
    }
    b
}

/// A `rows × cols` tensor of `dtype` from `data`.
fn matrix(dtype: DType, rows: usize, cols: usize, data: &[u8]) -> QMatrix {
    let info = TensorInfo {
        name: "w".into(),
        dims: vec![cols as u64, rows as u64],
        dtype,
        offset: 0,
        size: data.len() as u64,
    };
    let m = QMatrix::from_tensor(TensorView { info: &info, data }).unwrap();
    assert_eq!((m.rows, m.cols), (rows, cols));
    m
}

/// A random matrix (its bytes and its `QMatrix`), every `extreme_every`-th block extreme.
fn random_matrix(rng: &mut Rng, dtype: DType, rows: usize, cols: usize, extreme_every: usize) -> (Vec<u8>, QMatrix) {
    let blocks = rows * cols / dtype.block_elems();
    let data: Vec<u8> = (0..blocks).flat_map(|i| block(rng, dtype, i % extreme_every == extreme_every - 1)).collect();
    let m = matrix(dtype, rows, cols, &data);
    (data, m)
}

/// The input as the product sees it: quantized with `dtype`'s quantizer, dequantized in f64;
/// and for the formats with a min, llama.cpp's rounding of `s = dx·Σ qx` to f16 in each block,
/// `s - dx·Σ qx` (zero elsewhere).
struct SeenInput {
    x: Vec<f64>,
    s_error: Vec<f64>,
}

fn seen(dtype: DType, x: &[f32]) -> SeenInput {
    if dtype.block_elems() == QK_K {
        let q = Q8KVec::quantize(x);
        let x = q.qs.iter().enumerate().map(|(i, &v)| v as f64 * q.d[i / QK_K] as f64).collect();
        return SeenInput { x, s_error: vec![0.0; q.d.len() * 8] };
    }
    let q = Q8Vec::quantize(x);
    let x: Vec<f64> = q.qs.iter().enumerate().map(|(i, &v)| v as f64 * q.d[i / QK] as f64).collect();
    let s_error = x.chunks_exact(QK).zip(&q.s).map(|(xb, &s)| s as f64 - xb.iter().sum::<f64>()).collect();
    SeenInput { x, s_error }
}

/// The min `m` of every 32-value block of a Q4_1 / Q5_1 tensor (none for the others).
fn block_mins(dtype: DType, data: &[u8]) -> Vec<f64> {
    match dtype {
        DType::Q4_1 | DType::Q5_1 => data.chunks_exact(dtype.block_bytes()).map(|b| f16_at(b, 2) as f64).collect(),
        _ => Vec::new(),
    }
}

/// For row `r` and token `t`: what the integer product must give (the dequantized weights times
/// the dequantized 8-bit input, plus each block's `m·(s - dx·Σ qx)` where the format has a min),
/// and the sum of the terms' magnitudes (the scale of f32 rounding).
fn expected(deq: &[f32], mins: &[f64], xs: &SeenInput, cols: usize, r: usize, t: usize) -> (f64, f64) {
    let (mut want, mut size) = (0f64, 0f64);
    for c in 0..cols {
        let p = deq[r * cols + c] as f64 * xs.x[t * cols + c];
        want += p;
        size += p.abs();
    }
    if !mins.is_empty() {
        let nb = cols / QK;
        for b in 0..nb {
            let e = mins[r * nb + b] * xs.s_error[t * nb + b];
            want += e;
            size += e.abs();
        }
    }
    (want, size)
}

/// The integer products equal the dequantized weights times the dequantized 8-bit inputs, up to
/// f32 rounding, for every format and awkward shapes (several rows, blocks, super-blocks and
/// tokens; the largest spans threads natively), and stay near the f32 inputs' product.
#[test]
fn integer_products_are_the_dequantized_products() {
    let mut rng = Rng(7);
    for dtype in INTEGER {
        let mut shapes = vec![(5, 768, 3), (7, 256, 2), (1, 1280, 1), (600, 768, 10)];
        if dtype.block_elems() == QK {
            shapes.push((5, 96, 3));
        }
        for (rows, cols, n) in shapes {
            let (data, w) = random_matrix(&mut rng, dtype, rows, cols, 7);
            let mut deq = vec![0f32; rows * cols];
            crate::quant::dequantize(dtype, &data, &mut deq).unwrap();
            let mins = block_mins(dtype, &data);
            // A positive offset, so that the mins weigh in the sums.
            let x: Vec<f32> = (0..n * cols).map(|_| rng.f() * 3.0 + 0.5).collect();
            let xs = seen(dtype, &x);
            let mut out = vec![0f32; n * rows];
            matmul_q(&w, &x, &mut out);
            for t in 0..n {
                for r in 0..rows {
                    let (want, size) = expected(&deq, &mins, &xs, cols, r, t);
                    let got = out[t * rows + r] as f64;
                    assert!((got - want).abs() <= 1e-5 * size, "{dtype:?} {rows}x{cols} {r},{t}: {got} vs {want}");
                    // 8-bit inputs: each term off by at most half a step of its block.
                    let (mut exact, mut size) = (0f64, 0f64);
                    for c in 0..cols {
                        let p = deq[r * cols + c] as f64 * x[t * cols + c] as f64;
                        exact += p;
                        size += p.abs();
                    }
                    assert!((got - exact).abs() <= 1e-2 * size, "{dtype:?} {r},{t}: {got} vs {exact} (of {size})");
                }
            }
            let mut row = vec![0f32; cols];
            for r in [0, rows / 2, rows - 1] {
                w.row_f32(r, &mut row);
                assert_eq!(row, deq[r * cols..(r + 1) * cols], "{dtype:?} row {r}");
            }
        }
    }
}

/// Every SIMD version gives the plain loop's result: exactly for the K-quants (the same integers,
/// then the same f32 operations in the same order); for the 32-value blocks up to the order of the
/// f32 additions, and the SIMD versions exactly one another's (natively SSE2 and AVX2; SIMD128
/// adds in SSE2's order too). Every third block is all ones: the largest values the 16-bit sums
/// must hold.
#[test]
fn simd_versions_equal_the_plain_loop() {
    let isas = Isa::available();
    println!("instruction sets: {isas:?}");
    #[cfg(target_arch = "x86_64")]
    assert!(isas.contains(&Isa::Sse2));
    let mut rng = Rng(11);
    for dtype in INTEGER {
        let (rows, cols, n) = (6, 1024, 3);
        let (data, w) = random_matrix(&mut rng, dtype, rows, cols, 3);
        let mut deq = vec![0f32; rows * cols];
        crate::quant::dequantize(dtype, &data, &mut deq).unwrap();
        let mins = block_mins(dtype, &data);
        // Some tokens all ±1: their 8-bit values are all ±127.
        let x: Vec<f32> = (0..n * cols)
            .map(|i| match i / cols {
                0 => rng.f() * 2.0 + 0.3,
                1 => 1.0,
                _ => -1.0,
            })
            .collect();
        let xs = seen(dtype, &x);
        let (xq, xk) = (Q8Vec::quantize(&x), Q8KVec::quantize(&x));
        let dot = |isa, r, t| {
            if dtype.block_elems() == QK_K {
                w.dot_super(isa, r, &xk, t)
            } else {
                w.dot_blocks(isa, r, &xq, t)
            }
        };
        for &isa in &isas {
            let mut out = vec![0f32; n * rows];
            matmul_with(isa, &w, &x, &mut out);
            for t in 0..n {
                for r in 0..rows {
                    let plain = dot(Isa::Portable, r, t);
                    let got = dot(isa, r, t);
                    assert_eq!(out[t * rows + r].to_bits(), got.to_bits(), "{dtype:?} {isa:?}: matmul and dot");
                    if dtype.block_elems() == QK_K {
                        assert_eq!(got.to_bits(), plain.to_bits(), "{dtype:?} {isa:?} {r},{t}: {got} vs {plain}");
                    } else {
                        if let Some(&simd) = isas.get(1) {
                            let first = dot(simd, r, t);
                            if isa != Isa::Portable {
                                assert_eq!(got.to_bits(), first.to_bits(), "{dtype:?} {isa:?} vs {simd:?} {r},{t}");
                            }
                        }
                        let (_, size) = expected(&deq, &mins, &xs, cols, r, t);
                        let diff = (got as f64 - plain as f64).abs();
                        assert!(diff <= 1e-6 * size, "{dtype:?} {isa:?} {r},{t}: {got} vs {plain}");
                    }
                    let (want, size) = expected(&deq, &mins, &xs, cols, r, t);
                    assert!((got as f64 - want).abs() <= 1e-5 * size, "{dtype:?} {isa:?} {r},{t}: {got} vs {want}");
                }
            }
        }
    }
}

/// The 16-value groups that share a scale (and a min) in one 256-value stretch of `dtype`, as
/// their first elements and lengths: Q6_K's 16 groups of 16, the 32-value sub-blocks or blocks
/// of the others.
fn scale_groups(dtype: DType) -> Vec<(usize, usize)> {
    let len = if dtype == DType::Q6_K { 16 } else { 32 };
    (0..QK_K / len).map(|g| (g * len, len)).collect()
}

/// One 256-value row whose every scale group has its own scale and min (all nonzero): each
/// group alone (an input of ones there, zeros elsewhere) must give that group's dequantized
/// sum, which differs from the sum with its min or offset dropped. A product that used another
/// group's scale or min, or dropped one, fails here.
#[test]
fn every_scale_and_min_counts() {
    let mut rng = Rng(5);
    for dtype in INTEGER {
        let per_row = QK_K / dtype.block_elems();
        let mut data: Vec<u8> = (0..per_row).flat_map(|_| block(&mut rng, dtype, false)).collect();
        // Distinct nonzero scales and mins: sub-block j has scale 3 + 7j and min 60 - 5j (Q4_K,
        // Q5_K); group g of Q6_K has scale (-1)^g (10 + 6g).
        match dtype {
            DType::Q4_K | DType::Q5_K => {
                let sc: [u8; 8] = std::array::from_fn(|j| 3 + 7 * j as u8);
                let m: [u8; 8] = std::array::from_fn(|j| 60 - 5 * j as u8);
                let p = &mut data[4..16];
                for j in 0..4 {
                    p[j] = sc[j] | (sc[j + 4] >> 4) << 6;
                    p[j + 4] = m[j] | (m[j + 4] >> 4) << 6;
                    p[j + 8] = (sc[j + 4] & 15) | (m[j + 4] & 15) << 4;
                }
                let packed: &[u8; 12] = data[4..16].try_into().unwrap();
                for j in 0..8 {
                    assert_eq!(scale_min_k4(j, packed), (sc[j], m[j]));
                }
            }
            DType::Q6_K => {
                for g in 0..16 {
                    let s = 10 + 6 * g as i32;
                    data[192 + g] = (if g % 2 == 0 { s } else { -s }) as i8 as u8;
                }
            }
            _ => {}
        }
        if matches!(dtype, DType::Q4_1 | DType::Q5_1) {
            // Mins of either sign, none near zero.
            for (b, block) in data.chunks_exact_mut(dtype.block_bytes()).enumerate() {
                put_f16(block, 2, if b % 2 == 0 { 0.07 } else { -0.05 });
            }
        }
        let w = matrix(dtype, 1, QK_K, &data);
        let mut deq = vec![0f32; QK_K];
        crate::quant::dequantize(dtype, &data, &mut deq).unwrap();
        let mins = block_mins(dtype, &data);
        for (start, len) in scale_groups(dtype) {
            let mut x = vec![0f32; QK_K];
            x[start..start + len].fill(1.0);
            let xs = seen(dtype, &x);
            assert!(xs.x[start..start + len].iter().all(|&v| (v - 1.0).abs() < 1e-3), "{dtype:?}: ones stay ones");
            let (want, size) = expected(&deq, &mins, &xs, QK_K, 0, 0);
            // What the group's min (or Q4_0's -8, Q5_0's -16, Q6_K's -32 offset) adds to it.
            let block = &data[(start / dtype.block_elems()) * dtype.block_bytes()..][..dtype.block_bytes()];
            let min_part: f64 = match dtype {
                DType::Q4_K | DType::Q5_K => {
                    let (_, m) = scale_min_k4(start / 32, block[4..16].try_into().unwrap());
                    -32.0 * f16_at(block, 2) as f64 * m as f64
                }
                DType::Q6_K => -32.0 * 16.0 * f16_at(block, 208) as f64 * block[192 + start / 16] as i8 as f64,
                DType::Q4_0 => -8.0 * 32.0 * f16_at(block, 0) as f64,
                DType::Q5_0 => -16.0 * 32.0 * f16_at(block, 0) as f64,
                DType::Q4_1 | DType::Q5_1 => 32.0 * f16_at(block, 2) as f64,
                _ => 0.0,
            };
            let tol = 1e-5 * size;
            if dtype != DType::Q8_0 {
                assert!(min_part.abs() > 100.0 * tol, "{dtype:?} group at {start}: the min adds only {min_part}");
            }
            for isa in Isa::available() {
                let mut out = [0f32];
                matmul_with(isa, &w, &x, &mut out);
                let got = out[0] as f64;
                assert!((got - want).abs() <= tol, "{dtype:?} {isa:?} group at {start}: {got} vs {want}");
            }
        }
    }
}

/// Q8_K as llama.cpp's `quantize_row_q8_K_ref`: the scale from the signed value of largest
/// magnitude, `q = round(-127/max · x)` half to even, `d = 1/(-127/max)`, the 16-value sums.
#[test]
fn q8k_quantization_follows_llama_cpp() {
    let mut x = vec![0f32; 2 * QK_K];
    // First super-block: max = -127 (iscale = 1): values round half to even.
    x[..6].copy_from_slice(&[2.5, 3.5, -0.5, -127.0, 127.0, 1.49]);
    x[20] = -2.5;
    let q = Q8KVec::quantize(&x);
    assert_eq!(q.d[0], 1.0);
    assert_eq!(&q.qs[..6], &[2, 4, 0, -127, 127, 1]);
    assert_eq!(q.qs[20], -2);
    assert_eq!(q.bsums[0], 2 + 4 - 127 + 127 + 1);
    assert_eq!(q.bsums[1], -2);
    // The second super-block is zero: d = 0 and no values.
    assert_eq!(q.d[1], 0.0);
    assert!(q.qs[QK_K..].iter().all(|&v| v == 0) && q.bsums[16..].iter().all(|&s| s == 0));
    // A positive max: d = max / -127 < 0, and the max itself quantizes to -127.
    let y: Vec<f32> = (0..QK_K).map(|i| i as f32 / 255.0).collect();
    let q = Q8KVec::quantize(&y);
    assert_eq!(q.d[0], 1.0 / (-127.0 / 1.0));
    assert_eq!(q.qs[255], -127);
    assert_eq!(q.qs[0], 0);
    for (g, s) in q.bsums.iter().enumerate() {
        assert_eq!(*s as i32, q.qs[16 * g..16 * g + 16].iter().map(|&v| v as i32).sum::<i32>());
    }
}

/// F16 and BF16 matrices stay 16-bit and multiply exactly as their f32 widening does.
#[test]
fn half_float_matrices_stay_16_bit() {
    let mut rng = Rng(3);
    for dtype in [DType::F16, DType::BF16] {
        let (rows, cols, n) = (9, 40, 3);
        let values: Vec<f32> = (0..rows * cols).map(|_| rng.f()).collect();
        let data: Vec<u8> = values
            .iter()
            .flat_map(|&v| match dtype {
                DType::F16 => f16::from_f32(v).to_le_bytes(),
                _ => bf16::from_f32(v).to_le_bytes(),
            })
            .collect();
        let w = matrix(dtype, rows, cols, &data);
        assert_eq!(w.bytes(), 2 * rows * cols);
        let mut deq = vec![0f32; rows * cols];
        crate::quant::dequantize(dtype, &data, &mut deq).unwrap();
        let f32m = super::super::ops::Matrix { rows, cols, data: deq.clone() };
        let x: Vec<f32> = (0..n * cols).map(|_| rng.f()).collect();
        let (mut got, mut want) = (vec![0f32; n * rows], vec![0f32; n * rows]);
        matmul_q(&w, &x, &mut got);
        super::super::ops::matmul(&f32m, &x, &mut want);
        assert_eq!(got, want, "{dtype:?}");
        let mut row = vec![0f32; cols];
        w.row_f32(4, &mut row);
        assert_eq!(row, deq[4 * cols..5 * cols]);
    }
}

/// The bytes a matrix holds: the file's for K-quants and 16-bit floats, a little more for the
/// 32-value blocks (scales widened to f32).
#[test]
fn matrices_hold_about_their_file_bytes() {
    let mut rng = Rng(9);
    for dtype in INTEGER {
        let (data, w) = random_matrix(&mut rng, dtype, 4, 512, 5);
        let ratio = w.bytes() as f64 / data.len() as f64;
        if dtype.block_elems() == QK_K {
            assert_eq!(w.bytes(), data.len(), "{dtype:?}");
        } else {
            assert!((1.0..=1.2).contains(&ratio), "{dtype:?}: {ratio}");
        }
    }
    // Rows must be whole blocks; F32 matrices are not kept here.
    let info = |dtype, cols: u64| TensorInfo { name: "w".into(), dims: vec![cols, 2], dtype, offset: 0, size: 0 };
    let zeros = vec![0u8; 2 * Q4_K_BYTES];
    assert!(QMatrix::from_tensor(TensorView { info: &info(DType::Q4_K, 128), data: &zeros }).is_none());
    assert!(QMatrix::from_tensor(TensorView { info: &info(DType::F32, 8), data: &zeros[..64] }).is_none());
    assert!(QMatrix::from_tensor(TensorView { info: &info(DType::Q4_K, 256), data: &zeros }).is_some());
}
