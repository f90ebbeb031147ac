//! The `webgpu-llm` command line, run as a user would.

mod common;
use common::*;
use std::io::Write;
use std::process::{Command, Output, Stdio};

fn cli(args: &[&str]) -> Output {
    cli_with_env(args, &[])
}

fn cli_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let model = model_path();
    Command::new(env!("CARGO_BIN_EXE_webgpu-llm"))
        .args(args)
        .args(["--model", model.to_str().unwrap()])
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn tokenize_prints_llama_cpp_ids() {
    let cases = golden_json("tokenizer_cases.json");
    let case = cases["cases"].as_array().unwrap().iter().find(|c| c["text"].as_str().unwrap().len() > 20).unwrap();
    let text = case["text"].as_str().unwrap();
    assert_eq!(json(&cli(&["tokenize", "--text", text])), case["ids_parse_special"]);
    assert_eq!(json(&cli(&["tokenize", "--text", text, "--no-parse-special"])), case["ids_no_parse_special"]);
}

#[test]
fn generate_json_matches_llama_cpp_greedy() {
    let g = golden_json("chat_capital.json");
    // The exact f32 CPU path and the GPU (f32 math on the quantized weights) give llama.cpp's
    // f32 reference tokens.
    for backend in ["cpu", "gpu"] {
        let question = "What is the capital of France?";
        let args =
            ["generate", "--chat", question, "--temperature", "0", "--json", "--exact-cpu", "--backend", backend];
        let out = json(&cli(&args));
        assert_eq!(out["prompt_tokens"], g["prompt_token_ids"]);
        let r = &g["f32_reference"];
        let n = r["first_eog_index"].as_u64().unwrap() as usize;
        assert_eq!(out["tokens"].as_array().unwrap()[..], r["generated_token_ids"].as_array().unwrap()[..n]);
        assert_eq!(out["text"], "The capital of France is Paris.");
        assert_eq!(out["backend"], backend);
        assert_eq!(out["finish_reason"], "stop");
        assert!(out["decode_tokens_per_s"].as_f64().unwrap() > 0.0);
        assert!(out["prefill_tokens_per_s"].as_f64().unwrap() > 0.0);
    }

    let raw = golden_json("raw_facts.json");
    let text = raw["prompt_text"].as_str().unwrap();
    let out =
        json(&cli(&["generate", "--prompt", text, "--temperature", "0", "--max-tokens", "6", "--json", "--exact-cpu"]));
    assert_eq!(out["prompt_tokens"], raw["prompt_token_ids"]);
    let want = &raw["f32_reference"]["generated_token_ids"].as_array().unwrap()[..6];
    assert_eq!(out["tokens"].as_array().unwrap()[..], *want);
    assert_eq!(out["finish_reason"], "length");
}

#[test]
fn chat_answers_and_keeps_context() {
    let model = model_path();
    let mut child = Command::new(env!("CARGO_BIN_EXE_webgpu-llm"))
        .args(["chat", "--temperature", "0", "--max-tokens", "30", "--exact-cpu", "--model", model.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"What is the capital of France?\n/reset\nHi!\n/quit\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("The capital of France is Paris."), "{stdout}");
    assert_eq!(String::from_utf8_lossy(&out.stderr).matches("tokens/s]").count(), 2);
}

#[test]
fn bench_reports_what_it_measured() {
    for backend in ["cpu", "gpu"] {
        let args = ["bench", "--prompt-tokens", "12", "--gen-tokens", "5", "--json", "--backend", backend];
        let out = json(&cli(&args));
        assert_eq!((out["prompt_tokens"].as_u64(), out["generated_tokens"].as_u64()), (Some(12), Some(5)));
        for key in ["prefill_tokens_per_s", "decode_tokens_per_s", "load_s", "time_to_first_token_s", "weight_bytes"] {
            assert!(out[key].as_f64().unwrap() > 0.0, "{backend}: {key}");
        }
        let per_token = |key: &str| out[key].as_f64().unwrap();
        if backend == "gpu" {
            // One submission per decoded token. Greedy with the three end-of-generation ids
            // banned reads back the normalizer, the top 1 + 3 and the 3 banned ids: 8 pairs.
            assert_eq!(per_token("submissions_per_token"), 1.0);
            assert_eq!(per_token("read_back_bytes_per_token"), 64.0);
            // 30 layers of 6 launches, the embedding, the head, and the read-out's 4 (two top-k
            // rounds over 49152 logits, logsumexp, gather).
            assert_eq!(per_token("dispatches_per_token"), 30.0 * 6.0 + 2.0 + 4.0, "{out}");
            // Each weight matrix read once a token: at least the file's bytes (the padding that
            // puts Q8_0 blocks on whole words outweighs the norms, which are not counted), at
            // most what the GPU holds.
            let ratio = per_token("weight_read_ratio");
            let held = out["weight_bytes"].as_f64().unwrap() / out["file_weight_bytes"].as_f64().unwrap();
            assert!(ratio >= 1.0 && ratio <= held, "{ratio} (the GPU holds {held} × the file's weights)");
            let memory = out["gpu_memory_bytes"].as_u64().unwrap();
            let held = out["weight_bytes"].as_u64().unwrap() + out["kv_cache_bytes"].as_u64().unwrap();
            assert!(memory > held && memory < held + (8 << 20), "{memory} vs weights + cache {held}");
            assert!(out["kv_cache_bytes"].as_u64().unwrap() > 0);
            assert!(out["adapter"].is_string());
        } else {
            assert_eq!(per_token("dispatches_per_token"), 0.0);
            assert_eq!(per_token("weight_read_ratio"), 0.0);
        }
    }
    // The default sampling knobs (top-k 40, three banned ids): the normalizer, 43 best, 3 gathered.
    let out =
        json(&cli(&["bench", "--prompt-tokens", "5", "--gen-tokens", "3", "--json", "--backend", "gpu", "--sample"]));
    assert_eq!(out["read_back_bytes_per_token"].as_f64(), Some(47.0 * 8.0));
}

#[test]
fn a_missing_gpu_is_a_typed_error_and_auto_falls_back_to_the_cpu() {
    // No Vulkan driver to be found: no adapter.
    let no_driver = [("VK_ICD_FILENAMES", "/nonexistent.json"), ("VK_DRIVER_FILES", "/nonexistent.json")];
    let out = cli_with_env(&["generate", "--prompt", "hi", "--max-tokens", "2", "--backend", "gpu"], &no_driver);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("error [no_webgpu]"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli_with_env(&["generate", "--prompt", "hi", "--max-tokens", "2", "--json"], &no_driver);
    assert_eq!(json(&out)["backend"], "cpu");
}

#[test]
fn errors_are_clear_and_typed() {
    let out = cli(&["generate", "--prompt", "hi", "--backend", "metal"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("error [invalid_argument]"));
    let out = cli(&["generate", "--prompt", "hi", "--temperature", "-1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("error [invalid_argument]"));
    let out = cli(&["tokenize", "--text", "hi", "--top-k", "3"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not take --top-k"));
    let out =
        Command::new(env!("CARGO_BIN_EXE_webgpu-llm")).args(["info", "--model", "/nonexistent.gguf"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("error [io]"));
    let help = Command::new(env!("CARGO_BIN_EXE_webgpu-llm")).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("usage: webgpu-llm"));
}
