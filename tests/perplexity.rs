//! Perplexity against llama.cpp's `llama-perplexity` (tests/golden/<model>/perplexity.json: the
//! same text, `-c 256`, on the f32 dequantized file and on the Q4_K_M file) on both CPU paths, the
//! GPU's against the exact CPU path's, and the all-positions forward pass they stand on.

mod common;

use webgpu_llm::backend::Backend;
use webgpu_llm::engine::{BackendKind, Engine, EngineOptions, EvaluateOptions};
use webgpu_llm::gguf::Gguf;
use webgpu_llm::gpu::{Gpu, GpuModel, GpuOptions};
use webgpu_llm::model::{Config, Weights};

fn golden() -> serde_json::Value {
    let p = common::golden_root().join("qwen2.5-coder-0.5b/perplexity.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn qwen(backend: BackendKind, exact_cpu: bool) -> Engine {
    let options = EngineOptions { backend, exact_cpu, context_size: Some(512), ..EngineOptions::default() };
    Engine::load(&common::catalog_model_bytes("qwen2.5-coder-0.5b"), &options).unwrap()
}

/// Our perplexity of the golden text over `chunks` chunks, with each running value, checked
/// against llama.cpp's run `run` within `tolerance` (relative).
fn check(engine: &mut Engine, run: &str, chunks: usize, tolerance: f64) {
    let g = golden();
    let text = g["text"].as_str().unwrap();
    assert_eq!(engine.encode_prompt(text).unwrap(), common::ids(&g["token_ids"]), "llama.cpp's tokens");
    let want: Vec<f64> =
        g["runs"][run]["cumulative_ppl_after_chunk"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let mut seen = Vec::new();
    let options = EvaluateOptions { context_size: 256, max_chunks: Some(chunks) };
    let got = engine
        .evaluate(text, &options, &mut |c| {
            seen.push(c.cumulative_ppl);
            true
        })
        .unwrap();
    assert_eq!(got.scored_tokens, 127 * chunks, "127 scored tokens a chunk");
    assert_eq!(got.tokens, 1240);
    for (k, (ours, theirs)) in seen.iter().zip(&want).enumerate() {
        let rel = (ours / theirs - 1.0).abs();
        eprintln!("{run} [{}] ours {ours:.4} llama.cpp {theirs:.4} ({:.3} %)", k + 1, rel * 100.0);
        assert!(rel < tolerance, "chunk {}: {ours} vs llama.cpp's {theirs} ({run})", k + 1);
    }
    assert_eq!(seen.len(), chunks);
    assert_eq!(got.ppl, *seen.last().unwrap());
    if chunks == 4 {
        let (ppl, pm) =
            (g["runs"][run]["final_ppl"].as_f64().unwrap(), g["runs"][run]["final_ppl_plus_minus"].as_f64().unwrap());
        assert!((got.ppl / ppl - 1.0).abs() < tolerance);
        assert!((got.ppl_stderr / pm - 1.0).abs() < 0.02, "± {} vs llama.cpp's {pm}", got.ppl_stderr);
    }
}

/// The first of the four chunks: the exact path is the slow one (the quantized run below scores
/// all four and checks the final figure and its ± too).
#[test]
fn exact_cpu_matches_llama_cpp_f32_within_half_a_percent() {
    check(&mut qwen(BackendKind::Cpu, true), "f32_reference", 1, 0.005);
}

#[test]
fn quantized_cpu_matches_llama_cpp_q4_k_m_within_two_percent() {
    check(&mut qwen(BackendKind::Cpu, false), "quant_default", 4, 0.02);
}

/// The GPU's perplexity (the engine's all-positions pass there, 16 rows a step) against the exact
/// CPU path's, whose own figure is held to llama.cpp's above: the default model, two chunks of 64
/// (lavapipe took about ten minutes for one of the 0.5B model's 256-token chunks in CI).
#[test]
fn gpu_matches_the_exact_cpu_path_within_half_a_percent() {
    let text = golden()["text"].as_str().unwrap().to_string();
    let options = EvaluateOptions { context_size: 64, max_chunks: Some(2) };
    let run = |backend, exact_cpu| {
        let load = EngineOptions { backend, exact_cpu, context_size: Some(64), ..EngineOptions::default() };
        let mut engine = Engine::load(&common::model_bytes(), &load).unwrap();
        let name = engine.backend_name().to_string();
        (name, engine.evaluate(&text, &options, &mut |_| true).unwrap())
    };
    let (exact_name, exact) = run(BackendKind::Cpu, true);
    let (gpu_name, gpu) = run(BackendKind::Gpu, false);
    assert_eq!((exact_name.as_str(), gpu_name.as_str()), ("cpu", "gpu"));
    assert_eq!((gpu.scored_tokens, gpu.chunks.len()), (exact.scored_tokens, 2));
    for (k, (g, e)) in gpu.chunks.iter().zip(&exact.chunks).enumerate() {
        let rel = (g.cumulative_ppl / e.cumulative_ppl - 1.0).abs();
        eprintln!("[{}] gpu {:.4} exact cpu {:.4} ({:.3} %)", k + 1, g.cumulative_ppl, e.cumulative_ppl, rel * 100.0);
        assert!(rel < 0.005, "chunk {}: gpu {} vs exact cpu {}", k + 1, g.cumulative_ppl, e.cumulative_ppl);
    }
}

#[test]
fn bad_requests_are_typed_errors_and_the_engine_keeps_working() {
    let options = EngineOptions { backend: BackendKind::Cpu, context_size: Some(64), ..EngineOptions::default() };
    let mut engine = Engine::load(&common::model_bytes(), &options).unwrap();
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(20);
    let eval = |e: &mut Engine, ctx, chunks| {
        e.evaluate(&text, &EvaluateOptions { context_size: ctx, max_chunks: chunks }, &mut |_| true)
    };
    assert_eq!(eval(&mut engine, 128, None).unwrap_err().code(), "context_overflow");
    assert_eq!(eval(&mut engine, 2, None).unwrap_err().code(), "invalid_argument");
    assert_eq!(eval(&mut engine, 32, Some(0)).unwrap_err().code(), "invalid_argument");
    let short = engine.evaluate("Too short.", &EvaluateOptions { context_size: 32, max_chunks: None }, &mut |_| true);
    assert_eq!(short.unwrap_err().code(), "invalid_argument");
    // Stopping after the first chunk gives that chunk's result.
    let one = engine.evaluate(&text, &EvaluateOptions { context_size: 32, max_chunks: None }, &mut |_| false).unwrap();
    assert_eq!((one.chunks.len(), one.scored_tokens), (1, 15));
    assert!(one.ppl.is_finite() && one.ppl > 1.0);
    let prompt = engine.encode_prompt("Hello").unwrap();
    let params = webgpu_llm::sampler::SamplingParams { max_tokens: 3, temperature: 0.0, ..Default::default() };
    engine.generate(&prompt, &params, &mut |_| true).unwrap();
}

/// Every token's logits from one pass equal the logits each token gets as the last of a plain
/// forward pass: bit for bit on the CPU; on the GPU (its matrix × matrix head against the
/// matrix × vector one) close to the exact CPU run.
#[test]
fn forward_all_gives_each_tokens_logits() {
    let bytes = common::model_bytes();
    let gguf = Gguf::parse(&bytes).unwrap();
    let config = Config::from_gguf(&gguf).unwrap();
    let weights = Weights::from_gguf(&gguf, &config).unwrap();
    let tokens = [1u32, 504, 3458, 282, 1345, 314, 260, 2307, 30, 198, 422, 253, 3140, 29, 42, 9, 77, 1200, 5];
    let mut cpu = webgpu_llm::cpu::CpuModel::reference(&config, &weights, 64).unwrap();
    let mut each = Vec::new();
    for i in 0..tokens.len() {
        cpu.truncate(i);
        each.push(cpu.forward_full(&tokens[i..i + 1]).unwrap());
    }
    cpu.truncate(0);
    let first = cpu.forward_full(&tokens[..3]).unwrap();
    let all = cpu.forward_all_blocking(&tokens[3..]).unwrap();
    assert_eq!(cpu.cached(), tokens.len());
    assert_eq!(first, each[2]);
    assert_eq!(all.len(), tokens.len() - 3);
    for (i, row) in all.iter().enumerate() {
        assert_eq!(row, &each[i + 3], "CPU row {}", i + 3);
    }

    let gpu = Gpu::new_blocking(&GpuOptions { allow_f16: false, ..GpuOptions::default() }).unwrap();
    let mut gpu = GpuModel::load_blocking(gpu, &config, &weights, 64).unwrap();
    gpu.forward_full(&tokens[..3]).unwrap();
    // 16 rows a step: 16 + 0 rows and a second step.
    let all = gpu.forward_all_blocking(&tokens[3..]).unwrap();
    assert_eq!(gpu.cached(), tokens.len());
    assert_eq!(all.len(), tokens.len() - 3);
    for (i, row) in all.iter().enumerate() {
        let want = &each[i + 3];
        let err = row.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(err < 2e-2, "GPU row {}: max |diff| {err}", i + 3);
        let argmax = |v: &[f32]| (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap();
        assert_eq!(argmax(row), argmax(want), "GPU row {}", i + 3);
    }
    // A token outside the vocabulary is an error that leaves the cache as it was.
    assert_eq!(gpu.forward_all_blocking(&[u32::MAX]).unwrap_err().code(), "invalid_argument");
    assert_eq!(gpu.cached(), tokens.len());
}
