//! The CPU reference forward pass against llama.cpp's f32 reference run of the default model.

mod common;
use common::*;
use webgpu_llm::backend::Backend;
use webgpu_llm::cpu::CpuModel;
use webgpu_llm::gguf::Gguf;
use webgpu_llm::model::{Config, Weights};

/// The exact f32 reference path.
fn load(bytes: &[u8]) -> CpuModel {
    let g = Gguf::parse(bytes).unwrap();
    let c = Config::from_gguf(&g).unwrap();
    let w = Weights::from_gguf(&g, &c).unwrap();
    CpuModel::reference(&c, &w, 512).unwrap()
}

/// The fast path: weights in their blocks, 8-bit inputs.
fn load_quantized(bytes: &[u8]) -> CpuModel {
    let g = Gguf::parse(bytes).unwrap();
    let c = Config::from_gguf(&g).unwrap();
    let w = Weights::from_gguf(&g, &c).unwrap();
    CpuModel::new(&c, &w, 512).unwrap()
}

fn top_ids(logits: &[f32], k: usize) -> Vec<u32> {
    let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
    ids.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
    ids.truncate(k);
    ids
}

fn argmax(logits: &[f32]) -> u32 {
    top_ids(logits, 1)[0]
}

#[test]
fn first_position_logits_match_llama_cpp_f32_reference() {
    let bytes = model_bytes();
    let mut model = load(&bytes);
    for name in PROMPTS {
        let g = golden_json(&format!("{name}.json"));
        let prompt = ids(&g["prompt_token_ids"]);
        model.truncate(0);
        let logits = model.forward_full(&prompt).unwrap();
        let want = golden_f32(&format!("{name}.f32_reference.logits0.f32"));
        assert_eq!(logits.len(), want.len());
        let max_diff = logits.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        println!("{name}: max |logit diff| = {max_diff:.5}");
        assert!(max_diff <= 1e-2, "{name}: max |diff| {max_diff}");
        assert_eq!(top_ids(&logits, 10), top_ids(&want, 10), "{name}: top-10 ids");
    }
}

/// Greedy continuation equals llama.cpp's token for token, and at every step the golden top-10
/// logits are reproduced within 1e-2. The issue allows stopping at the first step whose golden
/// top-1/top-2 margin is below 0.1; our logits sit within ~1e-4 of the reference, so we hold a
/// stricter line: we always feed the golden token (teacher forcing, identical to free running while
/// the choices agree) and require the same argmax at every step whose margin is at least 0.01.
#[test]
fn greedy_continuations_match_llama_cpp_f32_reference() {
    let bytes = model_bytes();
    let mut model = load(&bytes);
    // llama.cpp masked these end-of-generation ids so that 48 tokens always come out.
    let eog = [0usize, 2, 4];
    for name in PROMPTS {
        let g = golden_json(&format!("{name}.json"));
        let r = &g["f32_reference"];
        let want = ids(&r["generated_token_ids"]);
        let margins: Vec<f64> =
            r["top1_top2_margin_per_step"].as_array().unwrap().iter().map(|m| m.as_f64().unwrap()).collect();
        let topk = r["topk_per_step"].as_array().unwrap();
        model.truncate(0);
        let mut logits = model.forward_full(&ids(&g["prompt_token_ids"])).unwrap();
        let mut matched = 0;
        let mut worst = 0f32;
        for (step, &expected) in want.iter().enumerate() {
            for pair in topk[step].as_array().unwrap() {
                let (id, value) = (pair[0].as_u64().unwrap() as usize, pair[1].as_f64().unwrap() as f32);
                worst = worst.max((logits[id] - value).abs());
            }
            assert!(worst <= 1e-2, "{name}: step {step}: top-10 logits off by {worst}");
            for &e in &eog {
                logits[e] = f32::NEG_INFINITY;
            }
            if margins[step] >= 0.01 {
                assert_eq!(argmax(&logits), expected, "{name}: step {step}");
                matched += 1;
            }
            logits = model.forward_full(&[expected]).unwrap();
        }
        println!("{name}: {matched}/{} greedy tokens identical, top-10 logits within {worst:.5}", want.len());
        assert!(matched >= want.len() - 2, "{name}: only {matched} steps compared");
    }
}

/// The quantized path computes what llama.cpp's own CPU kernels compute (Q4_1 weights times
/// inputs quantized to Q8_1, Q8_0 for the Q8_0 output matrix); its single products are checked
/// exactly in `cpu::quantized`. On this model the whole computation is chaotic: llama.cpp's two
/// quantized runs (f32 and f16 KV cache) differ by up to 0.59 root-mean-square, and rounding
/// `1/d` differently moves ours by as much, so no run reproduces another's logits. What holds is
/// the size of the deviation: ours stays as close to the exact f32 run as llama.cpp's quantized
/// runs do (rms at most 2× theirs; measured up to 1.46×), and its first token is among the exact run's top two.
#[test]
fn quantized_path_deviates_like_llama_cpp_quantized_kernels() {
    let bytes = model_bytes();
    let mut model = load_quantized(&bytes);
    let rms = |a: &[f32], b: &[f32]| {
        (a.iter().zip(b).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>() / a.len() as f64).sqrt()
    };
    for name in PROMPTS {
        let g = golden_json(&format!("{name}.json"));
        model.truncate(0);
        let logits = model.forward_full(&ids(&g["prompt_token_ids"])).unwrap();
        let exact = golden_f32(&format!("{name}.f32_reference.logits0.f32"));
        let theirs = ["q4_1_fa_off_kv_f32", "q4_1_llamacpp_default"]
            .map(|c| rms(&golden_f32(&format!("{name}.{c}.logits0.f32")), &exact))
            .into_iter()
            .fold(0.0, f64::max);
        let ours = rms(&logits, &exact);
        println!("{name}: rms from the exact run: ours {ours:.3}, llama.cpp's quantized runs up to {theirs:.3}");
        assert!(ours <= 2.0 * theirs, "{name}: {ours} vs {theirs}");
        assert!(top_ids(&exact, 2).contains(&argmax(&logits)), "{name}: first token {}", argmax(&logits));
    }
}
