//! A Q4_K_M model on the CPU (Qwen2.5-Coder-0.5B-Instruct: Q5_0, Q8_0, Q4_K and Q6_K matrices):
//! its matrices stay in their blocks, and its quantized forward pass lands as near llama.cpp's
//! f32 reference run as llama.cpp's own quantized run does.

mod common;

use std::path::PathBuf;

use webgpu_llm::backend::Backend;
use webgpu_llm::cpu::CpuModel;
use webgpu_llm::gguf::Gguf;
use webgpu_llm::model::{Config, Weights};

const MODEL: &str = "qwen2.5-coder-0.5b";
const PROMPTS: [&str; 4] = ["chat_palindrome", "chat_planets_system", "raw_quicksort", "raw_story"];

fn model_bytes() -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf");
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e} (run scripts/fetch-model.sh {MODEL})", p.display()))
}

fn golden(name: &str) -> Vec<u8> {
    let p = common::golden_root().join(MODEL).join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn golden_f32(name: &str) -> Vec<f32> {
    golden(name).chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

fn rms(a: &[f32], b: &[f32]) -> f64 {
    (a.iter().zip(b).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>() / a.len() as f64).sqrt()
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b]).then(b.cmp(&a))).unwrap()
}

#[test]
fn k_quant_model_keeps_its_matrices_quantized_and_deviates_like_llama_cpp() {
    let bytes = model_bytes();
    let g = Gguf::parse(&bytes).unwrap();
    let c = Config::from_gguf(&g).unwrap();
    let w = Weights::from_gguf(&g, &c).unwrap();
    let file: u64 = w.all().iter().map(|t| t.data.len() as u64).sum();
    let elements: u64 = w.all().iter().map(|t| t.info.elements()).sum();
    let mut model = CpuModel::new(&c, &w, 512).unwrap();
    let held = model.stats().weight_bytes;
    println!(
        "weights: {held} bytes held for {file} in the file ({:.3}×; {:.2} bytes per weight, f32 would be {})",
        held as f64 / file as f64,
        held as f64 / elements as f64,
        4 * elements
    );
    // K-quant and f32 tensors are held as stored; the 32-value blocks widen their f16 scales to
    // f32 (Q5_0: 24 bytes a block instead of 22, Q8_0: 36 instead of 34).
    assert!(held >= file && held as f64 <= 1.1 * file as f64, "{held} bytes held for {file} in the file");

    for name in PROMPTS {
        let meta: serde_json::Value = serde_json::from_slice(&golden(&format!("{name}.json"))).unwrap();
        let ids = common::ids(&meta["prompt_token_ids"]);
        model.truncate(0);
        let logits = model.forward_full(&ids).unwrap();
        let exact = golden_f32(&format!("{name}.f32_reference.logits0.f32"));
        let theirs = rms(&golden_f32(&format!("{name}.quant_default.logits0.f32")), &exact);
        let ours = rms(&logits, &exact);
        println!("{name}: rms from the f32 run: ours {ours:.3}, llama.cpp's quantized run {theirs:.3}");
        assert!(ours <= 2.0 * theirs, "{name}: {ours} vs {theirs}");
        assert_eq!(argmax(&logits), argmax(&exact), "{name}: first token");
    }
}
