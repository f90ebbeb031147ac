//! The catalog's real models beside the default one — Qwen2.5-Coder 0.5B and 1.5B (qwen2) and
//! Gemma 3 270M (gemma3), all Q4_K_M — against llama.cpp's outputs in `tests/golden/<name>/`,
//! on the exact CPU path, the quantized CPU path and the GPU's f32 path (lavapipe here).
//!
//! The protocol of the golden README: prompt ids exact (tests/tokenizer_golden.rs); first-position
//! logits within a bar of `f32_reference`; greedy tokens equal up to the first step whose golden
//! top-1/top-2 margin is below 0.1, then teacher forcing (the golden id is fed at every step,
//! which is free running while the choices agree) with each step's golden top-10 logits within
//! the bar. The quantized path is held to the size of llama.cpp's own quantized deviation.

mod common;

use common::*;
use webgpu_llm::backend::Backend;
use webgpu_llm::cpu::CpuModel;
use webgpu_llm::gguf::Gguf;
use webgpu_llm::gpu::{Gpu, GpuModel, GpuOptions};
use webgpu_llm::model::{Config, Weights};
use webgpu_llm::sampler::{Sampler, SamplingParams};

// The 1.5B model's tests run one at a time under nextest (`.config/nextest.toml`): its exact
// path alone holds 6 GB.

#[derive(Clone, Copy)]
enum Path {
    ExactCpu,
    QuantizedCpu,
    GpuF32,
}

fn load(bytes: &[u8], path: Path) -> Box<dyn Backend> {
    let g = Gguf::parse(bytes).unwrap();
    let c = Config::from_gguf(&g).unwrap();
    let w = Weights::from_gguf(&g, &c).unwrap();
    match path {
        Path::ExactCpu => Box::new(CpuModel::reference(&c, &w, 256).unwrap()),
        Path::QuantizedCpu => Box::new(CpuModel::new(&c, &w, 256).unwrap()),
        Path::GpuF32 => {
            let gpu = Gpu::new_blocking(&GpuOptions { allow_f16: false, ..GpuOptions::default() }).unwrap();
            Box::new(GpuModel::load_blocking(gpu, &c, &w, 256).unwrap())
        }
    }
}

struct Golden {
    dir: std::path::PathBuf,
    index: serde_json::Value,
}

impl Golden {
    fn of(model: &str) -> Golden {
        let dir = golden_root().join(model);
        let index = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
        Golden { dir, index }
    }

    fn prompts(&self) -> Vec<(String, serde_json::Value)> {
        self.index["prompts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let name = p["name"].as_str().unwrap().to_string();
                let json =
                    serde_json::from_slice(&std::fs::read(self.dir.join(format!("{name}.json"))).unwrap()).unwrap();
                (name, json)
            })
            .collect()
    }

    fn logits(&self, prompt: &str, config: &str) -> Vec<f32> {
        let bytes = std::fs::read(self.dir.join(format!("{prompt}.{config}.logits0.f32"))).unwrap();
        bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
    }

    /// The end-of-generation ids llama.cpp masked ("EOG ids [1, 106, 212] masked …").
    fn masked_eog(&self) -> Vec<usize> {
        let s = self.index["greedy_semantics"].as_str().unwrap();
        let list = s.split("EOG ids [").nth(1).unwrap().split(']').next().unwrap();
        list.split(',').map(|x| x.trim().parse().unwrap()).collect()
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

fn argmax(logits: &[f32]) -> u32 {
    (0..logits.len()).fold(0, |best, i| if logits[i] > logits[best] { i } else { best }) as u32
}

/// First-position logits of the first `prompts` prompts within `bar` of llama.cpp's f32
/// reference; then, for the first `greedy_prompts`, the greedy protocol with the same bar on the
/// top-10.
fn against_f32_reference(model: &str, path: Path, bar: f32, (prompts, greedy_prompts): (usize, usize)) {
    let golden = Golden::of(model);
    let t0 = std::time::Instant::now();
    let mut m = load(&catalog_model_bytes(model), path);
    println!("{model}: loaded in {:.1} s", t0.elapsed().as_secs_f64());
    let eog = golden.masked_eog();
    for (i, (name, g)) in golden.prompts().iter().take(prompts).enumerate() {
        let t0 = std::time::Instant::now();
        m.truncate(0);
        let prompt = ids(&g["prompt_token_ids"]);
        let mut logits = m.forward_full(&prompt).unwrap();
        let first = max_diff(&logits, &golden.logits(name, "f32_reference"));
        println!("{model} {name}: first-position max |logit diff| {first:.5} ({:.1} s)", t0.elapsed().as_secs_f64());
        assert!(first <= bar, "{model} {name}: max |diff| {first} > {bar}");
        if i >= greedy_prompts {
            continue;
        }
        let r = &g["f32_reference"];
        let want = ids(&r["generated_token_ids"]);
        let margins: Vec<f64> =
            r["top1_top2_margin_per_step"].as_array().unwrap().iter().map(|m| m.as_f64().unwrap()).collect();
        let topk = r["topk_per_step"].as_array().unwrap();
        let free_run = margins.iter().position(|&m| m < 0.1).unwrap_or(want.len());
        let mut worst = 0f32;
        for (step, &expected) in want.iter().enumerate() {
            for pair in topk[step].as_array().unwrap() {
                let (id, value) = (pair[0].as_u64().unwrap() as usize, pair[1].as_f64().unwrap() as f32);
                worst = worst.max((logits[id] - value).abs());
            }
            assert!(worst <= bar, "{model} {name}: step {step}: top-10 logits off by {worst}");
            for &e in &eog {
                logits[e] = f32::NEG_INFINITY;
            }
            if step < free_run {
                assert_eq!(argmax(&logits), expected, "{model} {name}: greedy step {step}");
            }
            if step + 1 < want.len() {
                logits = m.forward_full(&[expected]).unwrap();
            }
        }
        println!(
            "{model} {name}: greedy tokens equal for the first {free_run} of {} steps (then teacher-forced), \
             top-10 logits within {worst:.5} ({:.1} s)",
            want.len(),
            t0.elapsed().as_secs_f64()
        );
    }
}

/// The quantized CPU path: its rms deviation from the exact run at most `per_prompt`× that of
/// llama.cpp's own quantized run (`quant_default`) on every prompt and 2× on average over the
/// prompts, and its first token among the exact run's top two.
fn quantized_deviation(model: &str, per_prompt: f64) {
    let golden = Golden::of(model);
    let mut m = load(&catalog_model_bytes(model), Path::QuantizedCpu);
    let rms = |a: &[f32], b: &[f32]| {
        (a.iter().zip(b).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>() / a.len() as f64).sqrt()
    };
    let (mut sum_ours, mut sum_theirs) = (0.0, 0.0);
    for (name, g) in golden.prompts() {
        m.truncate(0);
        let logits = m.forward_full(&ids(&g["prompt_token_ids"])).unwrap();
        let exact = golden.logits(&name, "f32_reference");
        let theirs = rms(&golden.logits(&name, "quant_default"), &exact);
        let ours = rms(&logits, &exact);
        let mut top2 = [0usize, 1];
        for i in 0..exact.len() {
            if exact[i] > exact[top2[0]] {
                top2 = [i, top2[0]];
            } else if i != top2[0] && exact[i] > exact[top2[1]] {
                top2[1] = i;
            }
        }
        println!(
            "{model} {name}: rms from the exact run: ours {ours:.3}, llama.cpp's quant_default {theirs:.3} ({:.2}x), \
             max |diff| {:.3}",
            ours / theirs,
            max_diff(&logits, &exact)
        );
        assert!(ours <= per_prompt * theirs, "{model} {name}: {ours} vs {theirs}");
        assert!(top2.contains(&(argmax(&logits) as usize)), "{model} {name}: first token {}", argmax(&logits));
        (sum_ours, sum_theirs) = (sum_ours + ours, sum_theirs + theirs);
    }
    println!("{model}: mean rms ours / llama.cpp's: {:.2}", sum_ours / sum_theirs);
    assert!(sum_ours <= 2.0 * sum_theirs, "{model}: mean rms {sum_ours} vs {sum_theirs}");
}

/// Gemma's bar is 2e-2, not 1e-2: llama.cpp's CPU GELU (the reference's) rounds its input and
/// output through f16 (`GGML_GELU_FP16`, a lookup table), ours is the exact tanh formula. Rounding
/// ours the same way takes the worst prompt from 0.0142 to 0.0101 and the others from about
/// 0.006 to 0.003; the Qwen models, which have no GELU, land within 3e-5.
/// Greedy decoding as the engine does it on the GPU: the default options (an f16 KV cache where
/// the device has shader-f16, as lavapipe does) and the logits read back as the sampler's
/// shortlist over the whole vocabulary. Every step whose golden margin is at least 0.1 picks
/// llama.cpp's token (the golden token is fed back at every step).
fn greedy_through_the_gpu_shortlist(model: &str, prompts: usize) {
    let golden = Golden::of(model);
    let bytes = catalog_model_bytes(model);
    let g = Gguf::parse(&bytes).unwrap();
    let c = Config::from_gguf(&g).unwrap();
    let w = Weights::from_gguf(&g, &c).unwrap();
    let gpu = Gpu::new_blocking(&GpuOptions::default()).unwrap();
    assert!(gpu.f16, "lavapipe has shader-f16");
    let mut m = GpuModel::load_blocking(gpu, &c, &w, 256).unwrap();
    let params = SamplingParams {
        temperature: 0.0,
        logit_bias: golden.masked_eog().iter().map(|&id| (id as u32, f32::NEG_INFINITY)).collect(),
        ..SamplingParams::default()
    };
    let mut sampler = Sampler::new(params).unwrap();
    for (name, g) in golden.prompts().into_iter().take(prompts) {
        let r = &g["f32_reference"];
        let want = ids(&r["generated_token_ids"]);
        let margins: Vec<f64> =
            r["top1_top2_margin_per_step"].as_array().unwrap().iter().map(|m| m.as_f64().unwrap()).collect();
        m.truncate(0);
        let prompt = ids(&g["prompt_token_ids"]);
        let mut context = prompt.clone();
        let mut logits = m.forward_blocking(&prompt, &sampler.request(&[], &prompt)).unwrap();
        let mut checked = 0;
        for (step, &expected) in want.iter().enumerate() {
            let got = sampler.sample_from(&logits, &context).unwrap().id;
            if margins[step] >= 0.1 {
                assert_eq!(got, expected, "{model} {name}: step {step}");
                checked += 1;
            }
            logits = m.forward_blocking(&[expected], &sampler.request(&context, &[expected])).unwrap();
            context.push(expected);
        }
        println!(
            "{model} {name}: {checked}/{} greedy steps (margin >= 0.1) equal, through the f16 shortlist",
            want.len()
        );
        assert!(checked * 2 >= want.len(), "{model} {name}: only {checked} steps compared");
    }
}

#[test]
fn gemma3_270m_exact_cpu_matches_llama_cpp() {
    against_f32_reference("gemma3-270m", Path::ExactCpu, 2e-2, (4, 4));
}

#[test]
fn qwen2_5_coder_0_5b_exact_cpu_matches_llama_cpp() {
    against_f32_reference("qwen2.5-coder-0.5b", Path::ExactCpu, 1e-2, (4, 4));
}

#[test]
fn qwen2_5_coder_1_5b_exact_cpu_matches_llama_cpp() {
    against_f32_reference("qwen2.5-coder-1.5b", Path::ExactCpu, 1e-2, (4, 1));
}

/// Gemma 3's per-prompt bar is 3×: its quantized run deviates 0.5–3.0× as much as llama.cpp's
/// (1.6× on average; on raw_story, where llama.cpp's own two runs part at the second token,
/// 3.0×), and leaving any one format's products unquantized moves it by as much, so no single
/// kernel is off. Its perplexity (below) is the steadier measure.
#[test]
fn gemma3_270m_quantized_cpu_deviates_like_llama_cpp() {
    quantized_deviation("gemma3-270m", 3.2);
}

#[test]
fn qwen2_5_coder_0_5b_quantized_cpu_deviates_like_llama_cpp() {
    quantized_deviation("qwen2.5-coder-0.5b", 2.0);
}

#[test]
fn qwen2_5_coder_1_5b_quantized_cpu_deviates_like_llama_cpp() {
    quantized_deviation("qwen2.5-coder-1.5b", 2.0);
}

#[test]
fn gemma3_270m_gpu_f32_matches_llama_cpp() {
    against_f32_reference("gemma3-270m", Path::GpuF32, 5e-2, (2, 1));
}

#[test]
fn qwen2_5_coder_0_5b_gpu_f32_matches_llama_cpp() {
    against_f32_reference("qwen2.5-coder-0.5b", Path::GpuF32, 5e-2, (2, 1));
}

#[test]
fn gemma3_270m_gpu_f16_greedy_matches_llama_cpp() {
    greedy_through_the_gpu_shortlist("gemma3-270m", 1);
}

/// The 1.5B model on lavapipe: the first position of one prompt (about a minute there).
#[test]
fn qwen2_5_coder_1_5b_gpu_f32_first_position_matches_llama_cpp() {
    against_f32_reference("qwen2.5-coder-1.5b", Path::GpuF32, 5e-2, (1, 0));
}

/// llama-perplexity's score of `perplexity.json`'s text (its `scoring` block) over its first
/// `chunks` chunks: chunks of 256 tokens from a cleared cache, the first token replaced by BOS,
/// the second half of each chunk scored. Tokens are fed one at a time (the backends return the
/// last position's logits), which is the same computation as llama.cpp's one batch.
fn perplexity(m: &mut dyn Backend, ppl: &serde_json::Value, chunks: usize) -> f64 {
    let s = &ppl["scoring"];
    let n_ctx = s["n_ctx"].as_u64().unwrap() as usize;
    let tokens = ids(&ppl["token_ids"]);
    // llama-perplexity overwrites each chunk's first token with BOS when the model adds BOS.
    let bos = (!s["bos"].as_str().unwrap().contains("does not add BOS")).then_some(tokens[0]);
    let (mut nll, mut count) = (0f64, 0usize);
    for chunk in tokens.chunks_exact(n_ctx).take(chunks) {
        m.truncate(0);
        let mut chunk = chunk.to_vec();
        if let Some(bos) = bos {
            chunk[0] = bos;
        }
        for j in 0..n_ctx - 1 {
            let logits = m.forward_full(&chunk[j..j + 1]).unwrap();
            if j >= n_ctx / 2 {
                let max = logits.iter().copied().fold(f32::MIN, f32::max);
                let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
                nll -= (logits[chunk[j + 1] as usize] - max) as f64 - sum.ln();
                count += 1;
            }
        }
    }
    assert_eq!(count, chunks * s["scored_tokens_per_chunk"].as_u64().unwrap() as usize);
    (nll / count as f64).exp()
}

/// Perplexity over llama.cpp's text against llama-perplexity's f32 reference run (its running
/// figure after as many chunks): within 0.1 % on the exact CPU path, within 1 % on the quantized
/// one (measured: Gemma +0.55 %, where llama.cpp's own quantized run is +0.06 %). `paths` says
/// which to run over how many chunks (the exact one is slow: one token costs it a pass over the
/// f32 weights).
fn perplexity_matches_llama_cpp(model: &str, paths: &[(Path, usize, f64)]) {
    let golden = Golden::of(model);
    let ppl: serde_json::Value =
        serde_json::from_slice(&std::fs::read(golden.dir.join("perplexity.json")).unwrap()).unwrap();
    let theirs =
        |config: &str, chunks: usize| ppl["runs"][config]["cumulative_ppl_after_chunk"][chunks - 1].as_f64().unwrap();
    let bytes = catalog_model_bytes(model);
    for &(path, chunks, bar) in paths {
        let t0 = std::time::Instant::now();
        let ours = perplexity(load(&bytes, path).as_mut(), &ppl, chunks);
        let rel = (ours / theirs("f32_reference", chunks) - 1.0).abs();
        println!(
            "{model}: perplexity {ours:.4} over {chunks} chunks on the {} path ({:.1} s); llama.cpp: f32 reference {}, quant_default {}",
            if matches!(path, Path::ExactCpu) { "exact" } else { "quantized" },
            t0.elapsed().as_secs_f64(),
            theirs("f32_reference", chunks),
            theirs("quant_default", chunks)
        );
        assert!(rel <= bar, "{model}: perplexity {ours} vs llama.cpp's {}", theirs("f32_reference", chunks));
    }
}

/// Qwen2.5-Coder 0.5B's perplexity is `tests/perplexity.rs`'s (through the engine, both paths).
#[test]
fn gemma3_270m_perplexity_matches_llama_cpp() {
    perplexity_matches_llama_cpp("gemma3-270m", &[(Path::ExactCpu, 1, 1e-3), (Path::QuantizedCpu, 4, 1e-2)]);
}
