//! The `webgpu-llm` command line, run as a user would.

mod common;
use common::*;
use std::io::Write;
use std::process::{Command, Output, Stdio};

fn cli(args: &[&str]) -> Output {
    let model = model_path();
    Command::new(env!("CARGO_BIN_EXE_webgpu-llm"))
        .args(args)
        .args(["--model", model.to_str().unwrap()])
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
    let out = json(&cli(&["generate", "--chat", "What is the capital of France?", "--temperature", "0", "--json"]));
    assert_eq!(out["prompt_tokens"], g["prompt_token_ids"]);
    let r = &g["f32_reference"];
    let n = r["first_eog_index"].as_u64().unwrap() as usize;
    assert_eq!(out["tokens"].as_array().unwrap()[..], r["generated_token_ids"].as_array().unwrap()[..n]);
    assert_eq!(out["text"], "The capital of France is Paris.");
    assert_eq!(out["backend"], "cpu");
    assert_eq!(out["finish_reason"], "stop");
    assert!(out["decode_tokens_per_s"].as_f64().unwrap() > 0.0);
    assert!(out["prefill_tokens_per_s"].as_f64().unwrap() > 0.0);

    let raw = golden_json("raw_facts.json");
    let text = raw["prompt_text"].as_str().unwrap();
    let out = json(&cli(&["generate", "--prompt", text, "--temperature", "0", "--max-tokens", "6", "--json"]));
    assert_eq!(out["prompt_tokens"], raw["prompt_token_ids"]);
    let want = &raw["f32_reference"]["generated_token_ids"].as_array().unwrap()[..6];
    assert_eq!(out["tokens"].as_array().unwrap()[..], *want);
    assert_eq!(out["finish_reason"], "length");
}

#[test]
fn chat_answers_and_keeps_context() {
    let model = model_path();
    let mut child = Command::new(env!("CARGO_BIN_EXE_webgpu-llm"))
        .args(["chat", "--temperature", "0", "--max-tokens", "30", "--model", model.to_str().unwrap()])
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
    let out = json(&cli(&["bench", "--prompt-tokens", "12", "--gen-tokens", "5", "--json"]));
    assert_eq!((out["prompt_tokens"].as_u64(), out["generated_tokens"].as_u64()), (Some(12), Some(5)));
    for key in ["prefill_tokens_per_s", "decode_tokens_per_s", "load_s", "time_to_first_token_s"] {
        assert!(out[key].as_f64().unwrap() > 0.0, "{key}");
    }
}

#[test]
fn errors_are_clear_and_typed() {
    let out = cli(&["generate", "--prompt", "hi", "--backend", "gpu"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("error [no_webgpu]"));
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
