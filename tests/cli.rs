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
            // Besides: activations, tables and the read-out (under 8 MB), and the 16 rows of
            // logits a verification step writes and reads back (2 × 16 × 49152 × 4 bytes).
            let logits_all = 2 * 16 * 49152 * 4;
            assert!(
                memory > held + logits_all && memory < held + logits_all + (8 << 20),
                "{memory} vs weights + cache {held}"
            );
            assert!(out["kv_cache_bytes"].as_u64().unwrap() > 0);
            assert!(out["adapter"].is_string());
            // The copy bandwidth, and decode's share of it: weight bytes a second over it.
            let copy = per_token("copy_gb_per_s");
            let read = per_token("weight_bytes_read_per_token") * per_token("decode_tokens_per_s");
            assert!(copy > 0.0 && (per_token("bandwidth_fraction") - read / (copy * 1e9)).abs() < 1e-2, "{out}");
            assert_eq!(out["kernels"], "software", "lavapipe is a software adapter");
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
    // A kernel variant that does not exist, whichever the backend; bench --kernels is the GPU's.
    for backend in ["cpu", "gpu", "auto"] {
        let out = cli(&["generate", "--prompt", "hi", "--kernels", "fastest", "--backend", backend]);
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("kernels \"fastest\": want one of software, workgroup, subgroup"),
            "{out:?}"
        );
    }
    let out = cli(&["bench", "--kernels", "--backend", "cpu"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("error [invalid_argument]"), "{out:?}");
    let out = json(&cli(&["info", "--kernels", "workgroup"]));
    assert_eq!(
        (&out["adapter"]["kernels"], &out["adapter"]["kernels_chosen_for_adapter"]),
        (&"workgroup".into(), &false.into())
    );
    let help = Command::new(env!("CARGO_BIN_EXE_webgpu-llm")).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("usage: webgpu-llm"));
}

/// The command line with no `--model` added, run in `dir`.
fn cli_in(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_webgpu-llm")).args(args).current_dir(dir).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn model_takes_a_catalog_name_and_a_missing_model_says_how_to_fetch_it() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let default = webgpu_llm::model::catalog::default_entry();
    if std::env::var_os("WEBGPU_LLM_MODEL").is_none() {
        // By name, from the repository root (where models/ is): the default model's file.
        let out = json(&cli_in(root, &["info", "--model", &default.name, "--backend", "cpu"]));
        assert_eq!(out["file"], format!("models/{}", default.file));
        assert_eq!(out["catalog"]["entry"]["name"], default.name.as_str());
        assert_eq!(out["catalog"]["matched"], true);
    }
    // Where models/ has nothing, each name says which script fetches it.
    let empty = std::env::temp_dir().join(format!("webgpu-llm-cli-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    for name in ["qwen2.5-coder-0.5b", "gemma3-270m"] {
        let out = cli_in(&empty, &["generate", "--model", name, "--prompt", "hi"]);
        assert!(!out.status.success());
        let e = stderr(&out);
        assert!(e.contains("error [io]") && e.contains(&format!("run scripts/fetch-model.sh {name}")), "{e}");
    }
    // Without --model: the default, which is missing there too.
    let e = stderr(&cli_in(&empty, &["info"]));
    assert!(e.contains("error [io]") && e.contains(&format!("scripts/fetch-model.sh {}", default.name)), "{e}");
    // Neither a name nor a file.
    let e = stderr(&cli_in(&empty, &["info", "--model", "smollm3"]));
    assert!(e.contains("error [io]") && e.contains("nor a catalog model") && e.contains("gemma3-270m"), "{e}");
    std::fs::remove_dir_all(&empty).unwrap();
}

#[test]
fn info_shows_the_catalog_entry_and_the_template_facts() {
    let out = json(&cli(&["info", "--backend", "cpu"]));
    let c = &out["catalog"];
    assert_eq!((c["entry"]["name"].as_str(), c["matched"].as_bool()), (Some("smollm2-135m"), Some(true)), "{c}");
    assert_eq!(c["entry"]["license"], "Apache-2.0");
    let t = &out["template"];
    assert_eq!(t["has_chat_template"], true);
    assert_eq!(t["add_bos"], false);
    assert_eq!(t["bos"], serde_json::json!({ "id": 1, "text": "<|im_start|>" }));
    assert_eq!(t["eos"], serde_json::json!({ "id": 2, "text": "<|im_end|>" }));
    let eog: Vec<(u64, &str)> =
        t["eog"].as_array().unwrap().iter().map(|e| (e["id"].as_u64().unwrap(), e["text"].as_str().unwrap())).collect();
    // llama.cpp's rules make `<reponame>` (a FIM token) end generation too.
    assert_eq!(eog, [(0, "<|endoftext|>"), (2, "<|im_end|>"), (4, "<reponame>")]);
    assert_eq!(out["eog_ids"], serde_json::json!([0, 2, 4]));
    assert!(out["chat_template"].as_str().unwrap().contains("<|im_start|>"));
}

/// The default model with its chat template's key renamed: a model without a template (a base
/// model, as far as the runtime can tell), saved as `dir/name`.
fn without_template(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let mut bytes = model_bytes();
    let key = b"tokenizer.chat_template";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap();
    bytes[at + key.len() - 1] = b'X';
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn a_model_without_a_chat_template_completes_text_and_refuses_chats() {
    let dir = std::env::temp_dir().join(format!("webgpu-llm-base-{}", std::process::id()));
    let base = without_template(&dir, "base.gguf");
    let messages = dir.join("messages.json");
    std::fs::write(&messages, r#"[{"role": "user", "content": "Hi"}]"#).unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_webgpu-llm"))
            .args(args)
            .args(["--model", base.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let info = json(&run(&["info", "--backend", "cpu"]));
    assert_eq!(info["template"]["has_chat_template"], false);
    assert_eq!(info["chat_template"], serde_json::Value::Null);
    // Not a catalog file: another name.
    assert_eq!((info["catalog"]["entry"].is_null(), info["catalog"]["matched"].as_bool()), (true, Some(false)));
    for args in [&["generate", "--chat", "Hi"][..], &["generate", "--messages", messages.to_str().unwrap()], &["chat"]]
    {
        let e = stderr(&run(args));
        assert!(
            e.contains("error [invalid_argument]") && e.contains("is a base model") && e.contains("--prompt"),
            "{e}"
        );
    }
    let out = json(&run(&["generate", "--prompt", "The capital of France is", "--max-tokens", "3", "--json"]));
    assert_eq!(out["tokens"].as_array().unwrap().len(), 3);
    // Named like the default model's file and as long as it: recognised by name and size (the
    // sha256 is not checked).
    let same_name = without_template(&dir, &webgpu_llm::model::catalog::default_entry().file);
    let out = Command::new(env!("CARGO_BIN_EXE_webgpu-llm"))
        .args(["info", "--backend", "cpu", "--model", same_name.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(json(&out)["catalog"]["matched"], true);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gemma3_is_a_base_model_refused_for_chats() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let entry = webgpu_llm::model::catalog::find("gemma3-270m").unwrap();
    if !root.join("models").join(&entry.file).is_file() {
        eprintln!("note: models/{} is absent (scripts/fetch-model.sh gemma3-270m): skipped", entry.file);
        return;
    }
    for args in [&["generate", "--model", "gemma3-270m", "--chat", "Hi"][..], &["chat", "--model", "gemma3-270m"]] {
        let e = stderr(&cli_in(root, args));
        assert!(
            e.contains("error [invalid_argument]") && e.contains("is a base model") && e.contains("--prompt"),
            "{e}"
        );
    }
}

#[test]
fn generate_messages_answers_a_conversation_with_a_system_message() {
    let dir = std::env::temp_dir().join(format!("webgpu-llm-messages-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let conversation = serde_json::json!([
        { "role": "system", "content": "You are terse. Answer in one word." },
        { "role": "user", "content": "What is the capital of France?" },
        { "role": "assistant", "content": "Paris." },
        { "role": "user", "content": "And of Italy?" },
    ]);
    let path = file("conversation.json", &conversation.to_string());
    let out = json(&cli(&["generate", "--messages", &path, "--temperature", "0", "--max-tokens", "8", "--json"]));
    // The prompt is the conversation rendered by the model's own template.
    let bytes = model_bytes();
    let gguf = webgpu_llm::gguf::Gguf::parse(&bytes).unwrap();
    let tok = webgpu_llm::tokenizer::Tokenizer::from_gguf(&gguf).unwrap();
    let template = webgpu_llm::chat::ChatTemplate::from_gguf(&gguf, &tok).unwrap().expect("SmolLM2 has a template");
    let messages: Vec<webgpu_llm::chat::Message> = serde_json::from_value(conversation.clone()).unwrap();
    let want = template.encode(&tok, &messages, true).unwrap();
    assert_eq!(ids(&out["prompt_tokens"]), want);
    let text = template.render(&messages, true).unwrap();
    assert!(
        text.starts_with("<|im_start|>system\nYou are terse.") && text.ends_with("<|im_start|>assistant\n"),
        "{text}"
    );
    assert!(!out["text"].as_str().unwrap().is_empty());
    // One user message is --chat.
    let one = file("one.json", r#"[{"role": "user", "content": "What is the capital of France?"}]"#);
    let by_file = json(&cli(&["generate", "--messages", &one, "--temperature", "0", "--max-tokens", "8", "--json"]));
    let by_flag = json(&cli(&[
        "generate",
        "--chat",
        "What is the capital of France?",
        "--temperature",
        "0",
        "--max-tokens",
        "8",
        "--json",
    ]));
    assert_eq!((&by_file["prompt_tokens"], &by_file["tokens"]), (&by_flag["prompt_tokens"], &by_flag["tokens"]));

    // Bad JSON and wrong shapes are invalid_argument, saying what is wanted.
    for (name, text) in [
        ("not-json.json", "[{"),
        ("object.json", r#"{"role": "user", "content": "Hi"}"#),
        ("no-content.json", r#"[{"role": "user"}]"#),
        ("content-parts.json", r#"[{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]"#),
        ("empty.json", "[]"),
    ] {
        let e = stderr(&cli(&["generate", "--messages", &file(name, text)]));
        assert!(e.contains("error [invalid_argument]") && e.contains(r#"want a JSON array of {"role""#), "{name}: {e}");
    }
    let e = stderr(&cli(&["generate", "--messages", &one, "--chat", "Hi"]));
    assert!(
        e.contains("error [invalid_argument]") && e.contains("exactly one of --prompt, --chat and --messages"),
        "{e}"
    );
    let e = stderr(&cli(&["generate", "--messages", &dir.join("missing.json").to_string_lossy()]));
    assert!(e.contains("error [io]"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn structured_output_and_tool_calls_on_the_command_line() {
    let dir = std::env::temp_dir().join(format!("webgpu-llm-cli-structured-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let schema = write(
        "schema.json",
        r#"{"type": "object", "properties": {"colour": {"enum": ["red", "blue"]}, "n": {"type": "integer", "minimum": 1, "maximum": 9}}, "required": ["colour", "n"], "additionalProperties": false}"#,
    );
    let out = cli(&[
        "generate",
        "--chat",
        "Pick a colour and a digit.",
        "--json-schema",
        &schema,
        "--temperature",
        "1",
        "--seed",
        "3",
        "--json",
    ]);
    let report = json(&out);
    let v: serde_json::Value = serde_json::from_str(report["text"].as_str().unwrap()).unwrap();
    assert!(["red", "blue"].contains(&v["colour"].as_str().unwrap()), "{v}");
    assert!((1..=9).contains(&v["n"].as_i64().unwrap()), "{v}");
    assert!(report["mask_ms_per_token"].as_f64().unwrap() > 0.0);

    let lark = write("yes.lark", "start: \"yes\" | \"no\"\n");
    let out = cli(&["generate", "--chat", "Is it?", "--grammar", &lark, "--json"]);
    assert!(["yes", "no"].contains(&json(&out)["text"].as_str().unwrap()));

    let bad = write("bad.json", r#"{"type": "array", "uniqueItems": true}"#);
    let out = cli(&["generate", "--chat", "hi", "--json-schema", &bad]);
    assert!(
        stderr(&out).contains("error [invalid_argument]") && stderr(&out).contains("uniqueItems"),
        "{}",
        stderr(&out)
    );
    let out = cli(&["generate", "--chat", "hi", "--json-object", "--grammar", &lark]);
    assert!(stderr(&out).contains("error [invalid_argument]"), "{}", stderr(&out));

    let tools = write(
        "tools.json",
        r#"[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]"#,
    );
    // SmolLM2's template has no tools support.
    let out = cli(&["generate", "--chat", "Weather in Oslo?", "--tools", &tools]);
    assert!(stderr(&out).contains("error [invalid_argument]") && stderr(&out).contains("tools"), "{}", stderr(&out));
    let out = Command::new(env!("CARGO_BIN_EXE_webgpu-llm"))
        .args(["generate", "--model", "qwen2.5-coder-0.5b", "--backend", "cpu", "--chat", "Weather in Oslo?"])
        .args(["--tools", &tools, "--tool-choice", "get_weather", "--max-tokens", "48", "--json"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let calls = json(&out)["tool_calls"].clone();
    assert_eq!(calls[0]["type"], "function", "{calls}");
    assert_eq!(calls[0]["function"]["name"], "get_weather", "{calls}");
    let args: serde_json::Value = serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(args["city"].is_string(), "{args}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn speculative_choices_and_perplexity_on_the_command_line() {
    let prompt = "Copy the list.\nList: apple, banana, cherry, grape, lemon, mango, peach, plum.\n\
                  Copy: apple, banana, cherry, grape, lemon, mango, peach, plum.\n\
                  List: red, green, blue, yellow, purple, orange, white, black.\nCopy:";
    let base =
        ["generate", "--prompt", prompt, "--temperature", "0", "--max-tokens", "24", "--backend", "cpu", "--json"];
    let plain = json(&cli(&base));
    let lookup = json(&cli(&[&base[..], &["--lookup", "3"]].concat()));
    assert_eq!(lookup["tokens"], plain["tokens"], "prompt lookup keeps greedy's tokens");
    assert!(lookup["accepted_tokens"].as_u64().unwrap() > 0);
    assert!(lookup["accepted_tokens"].as_u64() <= lookup["drafted_tokens"].as_u64());
    assert_eq!(plain["drafted_tokens"], 0);
    let model = model_path();
    let draft = json(&cli(&[&base[..], &["--draft-model", model.to_str().unwrap(), "--draft-tokens", "4"]].concat()));
    assert_eq!(draft["tokens"], plain["tokens"], "a draft model keeps greedy's tokens");
    assert_eq!(draft["accepted_tokens"], draft["drafted_tokens"], "the model drafting for itself");

    // --n: choices seeded seed, seed + 1, each the request alone with its seed.
    let sampled = ["generate", "--prompt", "Once upon a time", "--max-tokens", "8", "--backend", "cpu", "--json"];
    let three = json(&cli(&[&sampled[..], &["--n", "3", "--seed", "5"]].concat()));
    let choices = three["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    for (i, c) in choices.iter().enumerate() {
        let alone = json(&cli(&[&sampled[..], &["--seed", &(5 + i).to_string()]].concat()));
        assert_eq!((c["index"].as_u64(), &c["tokens"]), (Some(i as u64), &alone["tokens"]), "choice {i}");
    }
    assert_eq!(three["tokens"], choices[0]["tokens"]);
    let out = cli(&[&sampled[..], &["--n", "0"]].concat());
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("[invalid_argument]"));

    // perplexity: --json's fields; a context past the text is a typed error.
    let dir = std::env::temp_dir().join(format!("webgpu-llm-ppl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("text.txt");
    std::fs::write(&file, "The quick brown fox jumps over the lazy dog. ".repeat(30)).unwrap();
    let ppl =
        json(&cli(&["perplexity", "--file", file.to_str().unwrap(), "--ctx", "64", "--backend", "cpu", "--json"]));
    let chunks = ppl["chunks"].as_array().unwrap();
    assert!(chunks.len() >= 2);
    assert_eq!(ppl["scored_tokens"].as_u64(), Some(31 * chunks.len() as u64));
    let last = chunks.last().unwrap()["cumulative_ppl"].as_f64().unwrap();
    assert_eq!(ppl["ppl"].as_f64(), Some(last));
    assert!(last > 1.0 && ppl["ppl_stderr"].as_f64().unwrap() > 0.0);
    let out =
        cli(&["perplexity", "--file", file.to_str().unwrap(), "--ctx", "256", "--context", "128", "--backend", "cpu"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("[context_overflow]"));
    let out = cli(&["perplexity", "--file", file.to_str().unwrap(), "--ctx", "4096", "--backend", "cpu"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("needs at least 8192"));
    std::fs::remove_dir_all(&dir).unwrap();
}
