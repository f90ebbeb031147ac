//! Every WGSL kernel against the CPU reference on fresh random inputs, on lavapipe (or whatever
//! adapter wgpu finds): shapes that are not multiples of the workgroup sizes, both the f32 path
//! and the f16 path (f16 KV cache), outputs poisoned with NaN before each run. Relative error
//! ‖gpu − cpu‖ / ‖cpu‖ ≤ 1e-4 on the f32 path and ≤ 1e-2 on the f16 path.

use half::{bf16, f16};
use webgpu_llm::cpu::ops::{rmsnorm, rope, rope_cos_sin, silu, softmax};
use webgpu_llm::gpu::kernels::Variant;
use webgpu_llm::gpu::oneshot::{Fused, Oneshot};
use webgpu_llm::gpu::ops::Shape;
use webgpu_llm::gpu::{Gpu, GpuOptions};
use webgpu_llm::model::RopeStyle;
use webgpu_llm::quant::{self, DType};
use webgpu_llm::sampler::{Logits, LogitsRequest, Sampler, SamplingParams, MAX_SHORTLIST};

fn oneshot(f16: bool) -> Oneshot {
    let gpu = Gpu::new_blocking(&GpuOptions { allow_f16: f16, ..GpuOptions::default() }).expect("a WebGPU adapter");
    if f16 {
        assert!(gpu.f16, "the f16 tests need shader-f16 (lavapipe has it)");
    }
    Oneshot::new(gpu).unwrap()
}

/// The f32 path with each kernel variant (their matrix × vector shapes differ), and at most
/// `max_binding` bytes a binding.
fn variants(max_binding: Option<u64>) -> Vec<(Variant, Oneshot)> {
    Variant::ALL
        .into_iter()
        .map(|v| {
            let options = GpuOptions {
                allow_f16: false,
                max_binding_bytes: max_binding,
                kernels: Some(v.name().into()),
                ..GpuOptions::default()
            };
            let gpu = Gpu::new_blocking(&options).expect("a WebGPU adapter");
            assert_eq!(gpu.kernels, v);
            (v, Oneshot::new(gpu).unwrap())
        })
        .collect()
}

/// xorshift64*: fresh inputs per seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    fn f(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f()).collect()
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn rel_err(gpu: &[f32], cpu: &[f32]) -> f64 {
    assert_eq!(gpu.len(), cpu.len());
    if let Some(i) = gpu.iter().position(|v| !v.is_finite()) {
        panic!("element {i} is {} (unwritten or overflowed)", gpu[i]);
    }
    let diff: f64 = gpu.iter().zip(cpu).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
    let norm: f64 = cpu.iter().map(|b| (*b as f64).powi(2)).sum();
    (diff / norm.max(1e-30)).sqrt()
}

fn check(what: &str, gpu: &[f32], cpu: &[f32], tol: f64) {
    let e = rel_err(gpu, cpu);
    assert!(e <= tol, "{what}: relative error {e:e} > {tol:e}");
}

fn put_f16(b: &mut [u8], at: usize, v: f32) {
    b[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
}

/// Random weights of `rows × cols` in `dtype`'s GGUF layout: random quants, with every f16
/// scale replaced by a sane value (random bits could be NaN).
fn random_weights(rng: &mut Rng, dtype: DType, rows: usize, cols: usize) -> Vec<u8> {
    let n = rows * cols;
    match dtype {
        DType::F32 => return rng.vec(n).iter().flat_map(|v| v.to_le_bytes()).collect(),
        DType::F16 => return rng.vec(n).iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect(),
        DType::BF16 => return rng.vec(n).iter().flat_map(|v| bf16::from_f32(*v).to_le_bytes()).collect(),
        _ => {}
    }
    let (be, bb) = (dtype.block_elems(), dtype.block_bytes());
    let mut bytes = rng.bytes(n / be * bb);
    for block in bytes.chunks_exact_mut(bb) {
        let (a, b) = (rng.f() * 0.1, rng.f() * 0.1);
        match dtype {
            DType::Q4_0 | DType::Q5_0 | DType::Q8_0 => put_f16(block, 0, a),
            DType::Q4_1 | DType::Q5_1 | DType::Q4_K | DType::Q5_K => {
                put_f16(block, 0, a);
                put_f16(block, 2, b);
            }
            DType::Q6_K => put_f16(block, 208, a),
            _ => unreachable!(),
        }
    }
    bytes
}

/// `y[t][r] = Σ_c W[r][c] x[t][c]` in f64.
fn cpu_matmul(dtype: DType, data: &[u8], rows: usize, cols: usize, x: &[f32]) -> Vec<f32> {
    let mut w = vec![0f32; rows * cols];
    quant::dequantize(dtype, data, &mut w).unwrap();
    let n = x.len() / cols;
    let mut y = vec![0f32; n * rows];
    for t in 0..n {
        for r in 0..rows {
            let s: f64 = (0..cols).map(|c| w[r * cols + c] as f64 * x[t * cols + c] as f64).sum();
            y[t * rows + r] = s as f32;
        }
    }
    y
}

#[test]
fn matmul_every_format_matches_cpu() {
    for (variant, gpu) in variants(None) {
        matmul_every_format_case(variant, &gpu);
    }
}

fn matmul_every_format_case(variant: Variant, gpu: &Oneshot) {
    let mut rng = Rng(0x1234_5678);
    for dtype in DType::ALL {
        let cols_options: &[usize] = if dtype.block_elems() == 256 { &[256, 768] } else { &[32, 96, 576] };
        for &cols in cols_options {
            // Rows: below, at and past the matvec's 8 rows and the tile's 64; tokens: one, a few
            // and 16 (matrix × vector, 4 tokens a pass), 17 and past the tile's 32 (tiled).
            for (rows, n) in [(1, 1), (7, 1), (67, 1), (5, 3), (9, 6), (67, 16), (13, 17), (130, 37)] {
                let w = random_weights(&mut rng, dtype, rows, cols);
                let x = rng.vec(n * cols);
                let got = gpu.matmul(dtype, &w, (rows, cols), &x, None).unwrap();
                let want = cpu_matmul(dtype, &w, rows, cols, &x);
                check(&format!("{variant:?} {} {rows}×{cols}, {n} tokens", dtype.name()), &got, &want, 1e-4);
            }
        }
    }
}

#[test]
fn matmul_accumulates_into_its_output() {
    for (variant, gpu) in variants(None) {
        let mut rng = Rng(77);
        for n in [1, 9] {
            let (rows, cols) = (40, 64);
            let w = random_weights(&mut rng, DType::Q4_1, rows, cols);
            let x = rng.vec(n * cols);
            let init = rng.vec(n * rows);
            let got = gpu.matmul(DType::Q4_1, &w, (rows, cols), &x, Some(&init)).unwrap();
            let want: Vec<f32> =
                cpu_matmul(DType::Q4_1, &w, rows, cols, &x).iter().zip(&init).map(|(a, b)| a + b).collect();
            check(&format!("{variant:?} accumulate, {n} tokens"), &got, &want, 1e-4);
        }
    }
}

#[test]
fn matrices_larger_than_a_binding_are_split_by_rows() {
    // 3 KiB per binding: a 100 × 256 Q8_0 matrix (272 bytes a row) takes 10 parts.
    let split = variants(Some(3 * 1024));
    let gpu = &split[0].1;
    let mut rng = Rng(99);
    let (rows, cols) = (100, 256);
    for dtype in [DType::Q8_0, DType::Q4_K, DType::F32] {
        let w = random_weights(&mut rng, dtype, rows, cols);
        for n in [1, 5] {
            let x = rng.vec(n * cols);
            let want = cpu_matmul(dtype, &w, rows, cols, &x);
            for (variant, gpu) in &split {
                let got = gpu.matmul(dtype, &w, (rows, cols), &x, None).unwrap();
                check(&format!("{variant:?} split {} ({n} tokens)", dtype.name()), &got, &want, 1e-4);
            }
        }
        let tokens = [0, 99, 42, 11, 57];
        let got = gpu.embed(dtype, &w, (rows, cols), &tokens).unwrap();
        let mut all = vec![0f32; rows * cols];
        quant::dequantize(dtype, &w, &mut all).unwrap();
        let want: Vec<f32> = tokens.iter().flat_map(|&t| all[t as usize * cols..][..cols].to_vec()).collect();
        check(&format!("split embed {}", dtype.name()), &got, &want, 0.0);
    }
    // A row larger than a binding cannot be split: a clear error.
    let w = random_weights(&mut rng, DType::F32, 2, 1024);
    let err = gpu.matmul(DType::F32, &w, (2, 1024), &rng.vec(1024), None).unwrap_err();
    assert_eq!(err.code(), "unsupported_model", "{err}");
}

#[test]
fn embedding_lookup_is_exact() {
    let gpu = oneshot(false);
    let mut rng = Rng(5);
    for dtype in DType::ALL {
        let cols = if dtype.block_elems() == 256 { 256 } else { 96 };
        let rows = 50;
        let w = random_weights(&mut rng, dtype, rows, cols);
        let mut all = vec![0f32; rows * cols];
        quant::dequantize(dtype, &w, &mut all).unwrap();
        let tokens = [49, 0, 7, 7, 23];
        let got = gpu.embed(dtype, &w, (rows, cols), &tokens).unwrap();
        let want: Vec<f32> = tokens.iter().flat_map(|&t| all[t as usize * cols..][..cols].to_vec()).collect();
        check(dtype.name(), &got, &want, 0.0);
    }
}

/// The norm prologue, the last-token head, the bias epilogue and the residual add against
/// the CPU's rmsnorm and an f64 matmul, decode (1 token) and prefill (several tiles).
#[test]
fn matmul_with_norm_prologue_and_bias_matches_cpu() {
    for (variant, gpu) in variants(None) {
        let mut rng = Rng(11);
        for (dtype, rows, cols, n) in [
            (DType::Q4_1, 67, 576, 1),
            (DType::Q8_0, 130, 96, 37),
            (DType::F16, 9, 1024, 3),
            (DType::Q4_K, 17, 256, 11),
        ] {
            let x: Vec<f32> = rng.vec(n * cols).iter().map(|v| v * 5.0).collect();
            let (norm_w, bias, init) = (rng.vec(cols), rng.vec(rows), rng.vec(n * rows));
            let w = random_weights(&mut rng, dtype, rows, cols);
            let mut normed = vec![0f32; n * cols];
            for (xi, oi) in x.chunks_exact(cols).zip(normed.chunks_exact_mut(cols)) {
                rmsnorm(xi, &norm_w, 1e-5, oi);
            }
            let plain = cpu_matmul(dtype, &w, rows, cols, &normed);
            let what = format!("{variant:?} {} {rows}×{cols}, {n} tokens", dtype.name());

            let norm = Some((norm_w.as_slice(), 1e-5));
            let got = gpu.matmul_fused(dtype, &w, (rows, cols), &x, &Fused { norm, ..Fused::default() }).unwrap();
            check(&format!("norm {what}"), &got, &plain, 1e-4);

            let fused = Fused { norm, bias: Some(&bias), init: Some(&init), ..Fused::default() };
            let got = gpu.matmul_fused(dtype, &w, (rows, cols), &x, &fused).unwrap();
            let want: Vec<f32> = plain.iter().enumerate().map(|(i, v)| v + bias[i % rows] + init[i]).collect();
            check(&format!("norm + bias + accumulate {what}"), &got, &want, 1e-4);

            let got =
                gpu.matmul_fused(dtype, &w, (rows, cols), &x, &Fused { norm, last_only: true, ..Fused::default() });
            check(&format!("norm, last token {what}"), &got.unwrap(), &plain[(n - 1) * rows..], 1e-4);
        }
    }
}

/// A step of up to 16 tokens gives each token bit for bit what it gets alone (so n choices
/// decoded together equal each one decoded alone): plain, with the norm prologue, the SwiGLU
/// prologue and the SwiGLU epilogue.
#[test]
fn matvec_tokens_are_bitwise_the_single_token_products() {
    for (variant, gpu) in variants(None) {
        let mut rng = Rng(97);
        let (rows, cols, n) = (70, 512, 11);
        for dtype in [DType::Q4_K, DType::Q8_0, DType::F16] {
            let w = random_weights(&mut rng, dtype, rows, cols);
            let x: Vec<f32> = rng.vec(n * 2 * cols).iter().map(|v| v * 4.0).collect();
            let norm_w = rng.vec(cols);
            let norm = Some((norm_w.as_slice(), 1e-5));
            for (what, f, per_token) in [
                ("plain", Fused::default(), cols),
                ("norm", Fused { norm, ..Fused::default() }, cols),
                ("swiglu in", Fused { swiglu: true, ..Fused::default() }, 2 * cols),
            ] {
                let x = &x[..n * per_token];
                let all = gpu.matmul_fused(dtype, &w, (rows, cols), x, &f).unwrap();
                for (t, xt) in x.chunks_exact(per_token).enumerate() {
                    let alone = gpu.matmul_fused(dtype, &w, (rows, cols), xt, &f).unwrap();
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&all[t * rows..(t + 1) * rows]),
                        bits(&alone),
                        "{variant:?} {what} {} token {t}",
                        dtype.name()
                    );
                }
            }
            let up = random_weights(&mut rng, dtype, 64, cols);
            let gate = random_weights(&mut rng, dtype, 64, cols);
            let x = &x[..n * cols];
            let all = gpu.gate_up(dtype, (&gate, &up), (64, cols), x, (&norm_w, 1e-5)).unwrap();
            for (t, xt) in x.chunks_exact(cols).enumerate() {
                let alone = gpu.gate_up(dtype, (&gate, &up), (64, cols), xt, (&norm_w, 1e-5)).unwrap();
                assert!(
                    all[t * 64..(t + 1) * 64].iter().zip(&alone).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{variant:?} gate_up {t}"
                );
            }
        }
    }
}

/// The SwiGLU prologue: the matrix sees silu(gate) * up of rows that hold gate then up.
#[test]
fn matmul_with_swiglu_prologue_matches_cpu() {
    for (variant, gpu) in variants(None) {
        let mut rng = Rng(41);
        for (rows, cols, n) in [(576, 1536, 1), (70, 96, 33)] {
            let gate_up: Vec<f32> = rng.vec(n * 2 * cols).iter().map(|v| v * 8.0).collect();
            let act: Vec<f32> =
                gate_up.chunks_exact(2 * cols).flat_map(|r| (0..cols).map(|i| silu(r[i]) * r[cols + i])).collect();
            let w = random_weights(&mut rng, DType::Q4_0, rows, cols);
            let got =
                gpu.matmul_fused(DType::Q4_0, &w, (rows, cols), &gate_up, &Fused { swiglu: true, ..Fused::default() });
            check(
                &format!("{variant:?} swiglu {rows}×{cols}, {n} tokens"),
                &got.unwrap(),
                &cpu_matmul(DType::Q4_0, &w, rows, cols, &act),
                1e-4,
            );
        }
    }
}

/// The SwiGLU epilogue: gate and up interleaved in one matrix, silu(gate) * up out, decode and
/// prefill, and split across bindings (parts of whole 64-row blocks).
#[test]
fn gate_up_with_swiglu_epilogue_matches_cpu() {
    let mut rng = Rng(43);
    let (whole, split) = (variants(None), variants(Some(64 * 1024)));
    for (dtype, rows, cols, n) in
        [(DType::Q4_1, 1536, 576, 1), (DType::Q8_0, 96, 64, 37), (DType::Q4_K, 64, 256, 2), (DType::Q6_K, 128, 256, 7)]
    {
        let x: Vec<f32> = rng.vec(n * cols).iter().map(|v| v * 3.0).collect();
        let norm_w = rng.vec(cols);
        let (gate, up) = (random_weights(&mut rng, dtype, rows, cols), random_weights(&mut rng, dtype, rows, cols));
        let mut normed = vec![0f32; n * cols];
        for (xi, oi) in x.chunks_exact(cols).zip(normed.chunks_exact_mut(cols)) {
            rmsnorm(xi, &norm_w, 1e-5, oi);
        }
        let (g, u) = (cpu_matmul(dtype, &gate, rows, cols, &normed), cpu_matmul(dtype, &up, rows, cols, &normed));
        let want: Vec<f32> = g.iter().zip(&u).map(|(g, u)| silu(*g) * u).collect();
        let every = whole.iter().map(|g| (g, "whole")).chain(split.iter().map(|g| (g, "split")));
        for ((variant, gpu), what) in every {
            let got = gpu.gate_up(dtype, (&gate, &up), (rows, cols), &x, (&norm_w, 1e-5)).unwrap();
            let what = format!("{variant:?} gate_up {what} {} {rows}×{cols}, {n} tokens", dtype.name());
            check(&what, &got, &want, 1e-4);
        }
    }
    // A binding too small for 64 rows would cut a gate|up block apart: refused, not miscomputed.
    let tiny =
        Gpu::new_blocking(&GpuOptions { allow_f16: false, max_binding_bytes: Some(8 * 1024), ..GpuOptions::default() })
            .unwrap();
    let (rows, cols) = (64, 576);
    let (gate, up) =
        (random_weights(&mut rng, DType::Q4_1, rows, cols), random_weights(&mut rng, DType::Q4_1, rows, cols));
    let err = Oneshot::new(tiny).unwrap().gate_up(
        DType::Q4_1,
        (&gate, &up),
        (rows, cols),
        &rng.vec(cols),
        (&rng.vec(cols), 1e-5),
    );
    assert_eq!(err.unwrap_err().code(), "unsupported_model");
}

/// RoPE fused into the cache write: rotated queries out, rotated keys and plain values appended
/// after the old positions (which stay as they were).
fn rope_kv_cases(f16: bool, tol: f64) {
    let gpu = oneshot(f16);
    let mut rng = Rng(if f16 { 22 } else { 21 });
    for (neox, rope_dim, start, n) in [(false, 64, 0, 1), (false, 64, 37, 9), (true, 64, 5, 3), (true, 32, 100, 2)] {
        let s = Shape { n_heads: 3, n_kv_heads: 1, head_dim: 64, rope_dim, neox, scale: 0.125, window: 0 };
        let style = if neox { RopeStyle::Neox } else { RopeStyle::Normal };
        let (base, scale) = (10000.0, 2.0);
        let half = rope_dim / 2;
        let table: Vec<f32> = (0..start + n)
            .flat_map(|pos| {
                (0..half).flat_map(move |i| {
                    let (c, s) = rope_cos_sin(pos, i, rope_dim, base, scale, 1.0);
                    [c, s]
                })
            })
            .collect();
        let qkv = rng.vec(n * 5 * 64);
        let (old_k, old_v) = (rng.vec(start * 64), rng.vec(start * 64));
        let (gq, gk, gv) = gpu.rope_kv(&qkv, &table, &s, (&old_k, &old_v)).unwrap();
        let (mut wq, mut wk, mut wv) = (Vec::new(), old_k.clone(), old_v.clone());
        for (t, row) in qkv.chunks_exact(5 * 64).enumerate() {
            let heads: Vec<Vec<f32>> = row.chunks_exact(64).map(|h| h.to_vec()).collect();
            for mut h in heads[..4].iter().cloned() {
                rope(&mut h, start + t, rope_dim, base, scale, None, style);
                if wq.len() < (t + 1) * 3 * 64 {
                    wq.extend(h);
                } else {
                    wk.extend(h);
                }
            }
            wv.extend(&heads[4]);
        }
        let what = format!("f16={f16} neox={neox} dim={rope_dim} start={start} n={n}");
        check(&format!("rope_kv q {what}"), &gq, &wq, 1e-4);
        check(&format!("rope_kv k cache {what}"), &gk, &wk, tol);
        check(&format!("rope_kv v cache {what}"), &gv, &wv, tol);
    }
}

#[test]
fn rope_kv_matches_cpu_f32_path() {
    rope_kv_cases(false, 1e-4);
}

#[test]
fn rope_kv_matches_cpu_f16_path() {
    rope_kv_cases(true, 1e-3);
}

/// Causal grouped-query attention in f64: the last `n` positions' queries over all positions
/// (the last `window` of them when there is a window).
fn cpu_attention(q: &[f32], keys: &[f32], values: &[f32], s: &Shape) -> Vec<f32> {
    let (hd, kvd) = (s.head_dim, s.n_kv_heads * s.head_dim);
    let positions = keys.len() / kvd;
    let n = q.len() / (s.n_heads * hd);
    let mut out = vec![0f32; q.len()];
    for t in 0..n {
        let seen = positions - n + t + 1;
        let first = if s.window > 0 { seen.saturating_sub(s.window) } else { 0 };
        for h in 0..s.n_heads {
            let kvh = h / (s.n_heads / s.n_kv_heads);
            let qh = &q[(t * s.n_heads + h) * hd..][..hd];
            let mut scores: Vec<f32> = (first..seen)
                .map(|p| {
                    let k = &keys[p * kvd + kvh * hd..][..hd];
                    let d: f64 = qh.iter().zip(k).map(|(a, b)| *a as f64 * *b as f64).sum();
                    (d * s.scale as f64) as f32
                })
                .collect();
            softmax(&mut scores);
            for d in 0..hd {
                let v: f64 =
                    (first..seen).map(|p| scores[p - first] as f64 * values[p * kvd + kvh * hd + d] as f64).sum();
                out[(t * s.n_heads + h) * hd + d] = v as f32;
            }
        }
    }
    out
}

fn attention_cases(f16: bool, tol: f64) {
    let gpu = oneshot(f16);
    let mut rng = Rng(if f16 { 31 } else { 32 });
    // (heads, KV heads, head size, positions, queries, sliding window)
    for (heads, kv_heads, hd, positions, n, window) in [
        (4, 2, 64, 1, 1, 0),
        (4, 2, 64, 70, 1, 0),
        (9, 3, 64, 200, 5, 0),
        (2, 2, 32, 64, 64, 0),
        (2, 1, 128, 65, 3, 0),
        (3, 3, 96, 10, 2, 0),
        // Windows: shorter than a tile, straddling tiles, wider than the context, and Gemma 3's
        // shape (4 query heads on 1 KV head of 256).
        (4, 2, 64, 200, 5, 7),
        (2, 1, 64, 300, 40, 100),
        (2, 2, 32, 20, 3, 512),
        (4, 1, 256, 150, 2, 64),
    ] {
        let scale = if window == 0 { 1.0 / (hd as f32).sqrt() } else { 0.0625 };
        let s = Shape { n_heads: heads, n_kv_heads: kv_heads, head_dim: hd, rope_dim: hd, neox: false, scale, window };
        let q: Vec<f32> = rng.vec(n * heads * hd).iter().map(|v| v * 3.0).collect();
        let keys = rng.vec(positions * kv_heads * hd);
        let values = rng.vec(positions * kv_heads * hd);
        let got = gpu.attention(&q, &keys, &values, &s).unwrap();
        let want = cpu_attention(&q, &keys, &values, &s);
        check(
            &format!(
                "attention f16={f16} {heads}/{kv_heads}×{hd}, {positions} positions, {n} queries, window {window}"
            ),
            &got,
            &want,
            tol,
        );
    }
}

#[test]
fn attention_matches_cpu_f32_path() {
    attention_cases(false, 1e-4);
}

#[test]
fn attention_matches_cpu_f16_path() {
    attention_cases(true, 1e-2);
}

/// Logits with many exact ties (values on a coarse grid), so tie-breaking is exercised.
fn tied_logits(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| (rng.f() * 40.0).round() / 4.0).collect()
}

#[test]
fn gpu_shortlist_picks_the_same_tokens_as_the_cpu_sampler() {
    let gpu = oneshot(false);
    let mut rng = Rng(51);
    let history: Vec<u32> = (0..80).map(|i| (i * 37 % 3000) as u32).collect();
    let cases = [
        SamplingParams { seed: Some(1), ..SamplingParams::default() },
        SamplingParams { temperature: 0.0, seed: Some(2), top_logprobs: 20, ..SamplingParams::default() },
        SamplingParams { temperature: 1.3, top_k: 1, seed: Some(3), top_logprobs: 5, ..SamplingParams::default() },
        SamplingParams {
            temperature: 0.9,
            top_k: 100,
            top_p: 0.8,
            min_p: 0.0,
            repetition_penalty: 1.3,
            frequency_penalty: 0.5,
            presence_penalty: 0.3,
            logit_bias: vec![(5, 3.0), (4999, f32::NEG_INFINITY), (17, -2.0)],
            seed: Some(4),
            ..SamplingParams::default()
        },
        SamplingParams { temperature: 0.0, repetition_penalty: 1.5, seed: Some(5), ..SamplingParams::default() },
        SamplingParams { top_k: 500, repetition_penalty: 1.1, seed: Some(6), ..SamplingParams::default() },
        SamplingParams { top_k: 0, seed: Some(7), ..SamplingParams::default() },
    ];
    // Up to Gemma 3's 262,144 logits (Qwen2.5: 151,936).
    for vocab in [5000, 49152, 700, 151_936, 262_144] {
        for p in &cases {
            let mut on_gpu = Sampler::new(p.clone()).unwrap();
            let mut on_cpu = Sampler::new(p.clone()).unwrap();
            for step in 0..12 {
                let logits = tied_logits(&mut rng, vocab);
                let recent = &history[..40 + step];
                let want = on_gpu.request(&recent[..recent.len() - 1], &recent[recent.len() - 1..]);
                let (got, bytes) = gpu.read_logits(&logits, &want).unwrap();
                match (&want, &got) {
                    (LogitsRequest::Full, Logits::Full(l)) => assert_eq!(l, &logits),
                    (LogitsRequest::Shortlist { top, ids }, Logits::Shortlist(s)) => {
                        assert!(*top + ids.len() <= 2 * MAX_SHORTLIST);
                        // Ids outside the vocabulary are not gathered.
                        let inside = ids.iter().filter(|&&i| (i as usize) < vocab).count();
                        assert_eq!(bytes as usize, (1 + top + inside) * 8);
                        assert_eq!(s.vocab, vocab);
                    }
                    _ => panic!("asked {want:?}, got the other kind"),
                }
                let a = on_gpu.sample_from(&got, recent).unwrap();
                let b = on_cpu.sample(&logits, recent).unwrap();
                assert_eq!((a.id, a.prob), (b.id, b.prob), "vocab {vocab}, {p:?}, step {step}");
                assert!((a.logprob_raw - b.logprob_raw).abs() < 1e-4, "{} vs {}", a.logprob_raw, b.logprob_raw);
                assert_eq!(a.top.len(), p.top_logprobs);
                for (x, y) in a.top.iter().zip(&b.top) {
                    assert_eq!((x.id, x.prob), (y.id, y.prob));
                    assert!((x.logprob - y.logprob).abs() < 1e-4);
                }
            }
        }
    }
    // The default knobs read back 41 pairs: the top 40 and the normalizer, 328 bytes.
    let s = Sampler::new(SamplingParams::default()).unwrap();
    let (_, bytes) = gpu.read_logits(&tied_logits(&mut rng, 49152), &s.request(&[], &[1])).unwrap();
    assert_eq!(bytes, 328);
}

/// What the device refuses while a model loads comes back as a typed error from the error scope
/// the load runs in, and the device stays usable: not a device loss later. (Exhausting real
/// device memory is not something a test can do safely here; a buffer past the device's
/// `max_buffer_size` is refused through the same scope.)
#[test]
fn an_allocation_the_device_refuses_is_a_typed_error_and_the_device_lives_on() {
    let gpu = Gpu::new_blocking(&GpuOptions::default()).unwrap();
    let allocate = |what: &str, size: u64| {
        pollster::block_on(gpu.scoped(what, || {
            let usage = wgpu::BufferUsages::STORAGE;
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(what),
                size,
                usage,
                mapped_at_creation: false,
            })
        }))
    };
    let err = allocate("a test buffer", gpu.device.limits().max_buffer_size + 4).expect_err("refused");
    assert_eq!(err.code(), "unsupported_model", "{err}");
    assert!(err.to_string().contains("a test buffer"), "{err}");
    gpu.check().expect("no error leaks out of the scope");
    assert!(allocate("a small buffer", 256).is_ok(), "the device still allocates");
    gpu.wait().expect("the device is alive");
}

/// The adapter's variant unless one is named; a name that is none is `invalid_argument`
/// listing them. lavapipe is a software adapter: it gets the software shapes. It offers
/// subgroups (of 8), so the subgroup variant runs on it in the tests above.
#[test]
fn kernel_variants_are_chosen_per_adapter_or_by_name() {
    let gpu = Gpu::new_blocking(&GpuOptions::default()).unwrap();
    let subgroups = gpu.report.features.iter().any(|f| f == "SUBGROUP");
    assert_eq!(gpu.kernels, Variant::for_adapter(gpu.software, subgroups));
    assert!(gpu.report.kernels_chosen_for_adapter);
    if gpu.report.device_type == "Cpu" {
        assert_eq!(gpu.kernels, Variant::Software);
    }
    let named = Gpu::new_blocking(&GpuOptions { kernels: Some("workgroup".into()), ..GpuOptions::default() }).unwrap();
    assert_eq!((named.kernels, named.report.kernels_chosen_for_adapter), (Variant::Workgroup, false));
    let err =
        Gpu::new_blocking(&GpuOptions { kernels: Some("fastest".into()), ..GpuOptions::default() }).err().unwrap();
    assert_eq!(err.code(), "invalid_argument");
    assert!(err.to_string().contains("software, workgroup, subgroup"), "{err}");
}
