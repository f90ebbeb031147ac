//! `webgpu-llm`: the native command line over the same Engine the browser uses.

use std::collections::HashMap;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use web_time::Instant;
use webgpu_llm::chat::tools::{self, ToolChoice};
use webgpu_llm::chat::Message;
use webgpu_llm::constraint::Grammar;
use webgpu_llm::engine::{BackendKind, Chat, Engine, EngineOptions, EvaluateOptions, FinishReason, Generation};
use webgpu_llm::gguf::Header;
use webgpu_llm::gpu::{Gpu, GpuOptions};
use webgpu_llm::model::{catalog, synth};
use webgpu_llm::sampler::SamplingParams;
use webgpu_llm::{Error, Result};

/// Where `scripts/fetch-model.sh` puts the catalog's models, relative to the current directory.
const MODELS_DIR: &str = "models";

const USAGE: &str = r#"usage: webgpu-llm <command> [options]

commands:
  generate  (--prompt TEXT | --chat TEXT | --messages FILE.json) [sampling] [--json]
            [--tools FILE.json [--tool-choice auto|none|required|NAME]]
                                  continue raw text; answer TEXT as one chat message; or answer
                                  a conversation: an OpenAI-style JSON array of messages,
                                  [{"role": "system", "content": "..."}, {"role": "user", ...},
                                  {"role": "assistant", ...}, ...] (FILE - reads stdin).
                                  A base model (no chat template) takes --prompt only.
                                  --tools: an OpenAI-style JSON array of function tools for a
                                  template with tools support; calls in the answer are printed
                                  (with --json as "tool_calls"); --tool-choice required or a
                                  function's NAME constrains the answer to such a call
            [--n N] [--best-of B]   N choices (seeded seed, seed+1, ...), or the N of B with the
                                  highest mean log-probability; --json adds "choices": [...]
  chat      [--system TEXT] [sampling]
                                  interactive chat that keeps its context (/reset, /quit)
  perplexity --file TEXT [--ctx 512] [--chunks N] [--json]
                                  perplexity of a text file as llama.cpp's llama-perplexity
                                  computes it (chunks of --ctx tokens, the second half of each
                                  scored); prints each chunk's running value, or with --json
                                  {"ppl", "ppl_stderr", "chunks": [...], ...}
  tokenize  --text TEXT [--no-parse-special]
                                  print the token ids as a JSON array (no BOS added)
  bench     [--prompt-tokens 128] [--gen-tokens 64] [--sample [--seed S]] [--choices N] [--json]
                                  prefill and decode speed and work per token; greedy, or
                                  the default sampling knobs with --sample; --choices N decodes
                                  N choices as one batch (decode tokens/s summed over them); on
                                  the GPU also the adapter's copy bandwidth and the fraction of
                                  it decode reaches
  bench --kernels [NAME] [--prompt-tokens 128] [--json]
                                  the GPU's kernels one by one on the model's shapes (a decode
                                  step after --prompt-tokens positions, a 128-token prefill
                                  chunk): time, bytes, GB/s, FLOP, GFLOP/s; and the adapter's
                                  bandwidth (a buffer copy, a read-write kernel)
  split     --max-size BYTES --out PREFIX
                                  split the model at tensor boundaries the way llama.cpp's
                                  gguf-split does, into PREFIX-00001-of-0000N.gguf, ... (BYTES
                                  may end in K, M or G); load it by its first part's path
  info                            print as JSON the model's configuration, its catalog entry
                                  (recognised by file name and size), its template facts (own
                                  chat template or none, BOS/EOS, end-of-generation tokens) and
                                  the GPU adapter
  synth     --shape NAME --quant Q4_0|Q4_K|Q8_0|F16 --out FILE.gguf [--seed N] [--layers N]
                                  write a synthetic model: a real model's shape with random
                                  weights and a small byte-level BPE vocabulary, streamed to
                                  FILE (--layers: fewer layers of the same width). Shapes:
                                  {shapes}

common options:
  --model NAME|PATH     a catalog model by name (its file under models/; fetch it with
                        scripts/fetch-model.sh NAME) or a GGUF file's path. Names:
                        {names}
                        (default {default})
  --tokenizer PATH      a HF tokenizer.json to use instead of the GGUF vocabulary
  --backend auto|gpu|cpu
                        forward-pass backend (default auto: the GPU if it is real hardware,
                        else the CPU, which beats software adapters such as lavapipe)
  --no-f16              on the GPU, use the f32 path even where shader-f16 exists
  --kernels NAME        the GPU's kernel shapes: software (tuned on lavapipe and SwiftShader),
                        workgroup (shaped for GPUs) or subgroup (GPUs with subgroups); default:
                        the adapter's (software for a software adapter, else subgroup where
                        the device has subgroups, else workgroup); also WEBGPU_LLM_KERNELS=NAME
  --exact-cpu           on the CPU, compute in f32 on dequantized weights (the exact reference,
                        about 5x the memory) instead of 8-bit integer products as llama.cpp does
  --context N           KV-cache capacity in tokens (default min(model context, 4096))

sampling options (applied in this order; see src/sampler.rs):
  --logit-bias ID=B     add B to token ID's logit (repeatable; B may be -inf)
  --repeat-penalty R    --repeat-last-n N   --frequency-penalty F   --presence-penalty P
  --top-k K             --temperature T (0 = greedy)   --top-p P   --min-p M
  --seed S              --max-tokens N      --stop TEXT (repeatable)

speculative decoding (output-preserving: greedy output is plain greedy's, sampled output has
the target's distribution; see src/engine/speculative.rs):
  --draft-model NAME|PATH   a smaller model with the same vocabulary drafts tokens
  --draft-tokens K          tokens drafted per verification step (1..15; default adaptive;
                            0 turns the draft model off)
  --lookup N                without a draft model: draft from earlier n-grams of the text
                            (prompt lookup), n-gram size N down to 1 (1..8)

structured output (every token masked by the grammar; the answer always parses):
  --json-object         any JSON object
  --json-schema FILE    JSON valid under the JSON Schema in FILE
  --grammar FILE        a Lark grammar (llguidance's dialect: start: ...; %json {...})
"#;

/// Options that take no value.
const SWITCHES: &[&str] =
    &["--json", "--json-object", "--no-parse-special", "--no-f16", "--exact-cpu", "--sample", "--help"];

/// Options whose value may be left out (when the next argument is another option, or none).
const OPTIONAL_VALUES: &[&str] = &["--kernels"];

struct Args {
    command: String,
    values: HashMap<String, Vec<String>>,
}

impl Args {
    fn parse() -> Result<Args> {
        let mut it = std::env::args().skip(1).peekable();
        let command = it.next().unwrap_or_else(|| "--help".into());
        let mut values: HashMap<String, Vec<String>> = HashMap::new();
        while let Some(arg) = it.next() {
            if !arg.starts_with("--") {
                return Err(Error::InvalidArgument(format!("unexpected argument {arg:?}")));
            }
            let value = if SWITCHES.contains(&arg.as_str()) {
                String::new()
            } else if OPTIONAL_VALUES.contains(&arg.as_str()) {
                it.next_if(|next| !next.starts_with("--")).unwrap_or_default()
            } else {
                it.next().ok_or_else(|| Error::InvalidArgument(format!("{arg} needs a value")))?
            };
            values.entry(arg).or_default().push(value);
        }
        Ok(Args { command, values })
    }

    fn flag(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    fn str(&self, name: &str) -> Option<&str> {
        self.values.get(name).and_then(|v| v.last()).map(String::as_str)
    }

    fn all(&self, name: &str) -> &[String] {
        self.values.get(name).map_or(&[], Vec::as_slice)
    }

    fn num<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>> {
        self.str(name)
            .map(|v| v.parse().map_err(|_| Error::InvalidArgument(format!("{name}: {v:?} is not a valid number"))))
            .transpose()
    }

    /// Refuse options this command does not know, so a typo is not silently ignored.
    fn only(&self, allowed: &[&str]) -> Result<()> {
        let common =
            ["--model", "--tokenizer", "--backend", "--context", "--no-f16", "--exact-cpu", "--kernels", "--help"];
        match self.values.keys().find(|k| !allowed.contains(&k.as_str()) && !common.contains(&k.as_str())) {
            Some(k) => Err(Error::InvalidArgument(format!("{} does not take {k}", self.command))),
            None => Ok(()),
        }
    }

    fn sampling(&self) -> Result<SamplingParams> {
        let mut p = SamplingParams::default();
        macro_rules! set {
            ($flag:literal, $field:ident) => {
                if let Some(v) = self.num($flag)? {
                    p.$field = v;
                }
            };
        }
        set!("--temperature", temperature);
        set!("--top-k", top_k);
        set!("--top-p", top_p);
        set!("--min-p", min_p);
        set!("--repeat-penalty", repetition_penalty);
        set!("--repeat-last-n", repeat_last_n);
        set!("--frequency-penalty", frequency_penalty);
        set!("--presence-penalty", presence_penalty);
        set!("--max-tokens", max_tokens);
        p.seed = self.num("--seed")?;
        p.draft_tokens = self.num("--draft-tokens")?;
        p.lookup = self.num("--lookup")?;
        p.stop = self.all("--stop").to_vec();
        for b in self.all("--logit-bias") {
            let parsed = b.split_once('=').and_then(|(id, v)| Some((id.parse().ok()?, v.parse().ok()?)));
            p.logit_bias
                .push(parsed.ok_or_else(|| Error::InvalidArgument(format!("--logit-bias {b:?}: want ID=BIAS")))?);
        }
        p.grammar = self.grammar()?;
        p.validate()?;
        Ok(p)
    }

    /// `--json-object`, `--json-schema FILE` or `--grammar FILE` (at most one).
    fn grammar(&self) -> Result<Option<Grammar>> {
        let read = |flag: &str| -> Result<Option<String>> {
            self.str(flag)
                .map(|f| std::fs::read_to_string(f).map_err(|e| Error::InvalidArgument(format!("{flag} {f}: {e}"))))
                .transpose()
        };
        let schema = read("--json-schema")?
            .map(|text| {
                serde_json::from_str(&text)
                    .map_err(|e| Error::InvalidArgument(format!("--json-schema: not JSON: {e}")))
                    .map(|schema| Grammar::JsonSchema { schema })
            })
            .transpose()?;
        let lark = read("--grammar")?.map(|grammar| Grammar::Lark { grammar });
        let object = self.flag("--json-object").then_some(Grammar::JsonObject);
        let mut given = [schema, lark, object].into_iter().flatten();
        let first = given.next();
        match given.next() {
            Some(_) => Err(Error::InvalidArgument("give one of --json-object, --json-schema and --grammar".into())),
            None => Ok(first),
        }
    }
}

const SAMPLING_FLAGS: &[&str] = &[
    "--temperature",
    "--top-k",
    "--top-p",
    "--min-p",
    "--repeat-penalty",
    "--repeat-last-n",
    "--frequency-penalty",
    "--presence-penalty",
    "--max-tokens",
    "--seed",
    "--stop",
    "--logit-bias",
    "--json-object",
    "--json-schema",
    "--grammar",
    "--draft-model",
    "--draft-tokens",
    "--lookup",
];

/// `--model`: a catalog name (its file under models/, which must have been fetched) or a path;
/// the catalog's default model without it.
fn model_path(args: &Args) -> Result<PathBuf> {
    resolve_model(args.str("--model"))
}

/// A catalog name's file (which must have been fetched) or a path; `None`: the default model.
fn resolve_model(name: Option<&str>) -> Result<PathBuf> {
    let entry = match name {
        None => Some(catalog::default_entry()),
        Some(name) => catalog::find(name),
    };
    match (entry, name) {
        (Some(e), _) => {
            let path = Path::new(MODELS_DIR).join(&e.file);
            match path.is_file() {
                true => Ok(path),
                false => Err(Error::Io(format!(
                    "model {} is not fetched ({} is missing): run scripts/fetch-model.sh {}",
                    e.name,
                    path.display(),
                    e.name
                ))),
            }
        }
        (None, Some(path)) => Ok(PathBuf::from(path)),
        (None, None) => unreachable!("the default model is in the catalog"),
    }
}

/// The model's path, which must exist, and its header (the weights are mapped at load, not read).
fn model_header(args: &Args) -> Result<(PathBuf, Header)> {
    let path = model_path(args)?;
    if !path.is_file() {
        let names: Vec<&str> = catalog::entries().iter().map(|e| e.name.as_str()).collect();
        return Err(Error::Io(format!("{}: no such file, nor a catalog model ({})", path.display(), names.join(", "))));
    }
    let header = webgpu_llm::load::file::header(&path)?;
    Ok((path, header))
}

/// What a command asks of the model.
#[derive(Clone, Copy, PartialEq)]
enum Use {
    Any,
    /// A chat: the model must have its own chat template.
    Chat,
    /// The GPU's kernels (`bench --kernels`): the backend is the GPU whatever `--backend` says
    /// (the caller refuses another).
    Gpu,
}

/// A base model has no chat template. Rather than make one up (ChatML, which it was never
/// trained on), chat commands refuse it before its weights are loaded. The same test as
/// `Engine::has_chat_template`, on the file's metadata.
fn check_chat_template(path: &Path, gguf: &Header) -> Result<()> {
    if gguf.get("tokenizer.chat_template").is_some() {
        return Ok(());
    }
    let name = gguf.get("general.name").and_then(|v| v.as_str()).unwrap_or("the model");
    Err(Error::InvalidArgument(format!(
        "{} ({name}) is a base model: it has no chat template, so there is no chat format to follow; \
         use --prompt TEXT for a raw completion",
        path.display()
    )))
}

/// A conversation from `--messages FILE` (`-`: stdin): an OpenAI-style array of
/// `{"role", "content"}` objects.
fn read_messages(file: &str) -> Result<Vec<Message>> {
    let text = if file == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else {
        std::fs::read_to_string(file).map_err(|e| Error::Io(format!("{file}: {e}")))?
    };
    let want = r#"want a JSON array of {"role": "...", "content": "..."} objects"#;
    let bad = |e: String| Error::InvalidArgument(format!("--messages {file}: {e}; {want}"));
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    // Only an assistant turn that calls tools may leave its content out.
    if let Some(i) = value
        .as_array()
        .and_then(|a| a.iter().position(|m| m.get("content").is_none() && m.get("tool_calls").is_none()))
    {
        return Err(bad(format!("message {i} has no content")));
    }
    let messages: Vec<Message> = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
    if messages.is_empty() {
        return Err(Error::InvalidArgument(format!("--messages {file}: the array is empty; {want}")));
    }
    Ok(messages)
}

/// The kernel variant asked for: `--kernels NAME`, else `WEBGPU_LLM_KERNELS`; `None`: the
/// adapter's.
fn kernel_variant(args: &Args) -> Option<String> {
    let named = args.str("--kernels").filter(|v| !v.is_empty()).map(str::to_string);
    named.or_else(|| std::env::var("WEBGPU_LLM_KERNELS").ok().filter(|v| !v.is_empty()))
}

fn load(args: &Args, purpose: Use) -> Result<(Engine, f64)> {
    let asked = if purpose == Use::Gpu { "gpu" } else { args.str("--backend").unwrap_or("auto") };
    let backend = match asked {
        "auto" => BackendKind::Auto,
        "cpu" => BackendKind::Cpu,
        "gpu" => BackendKind::Gpu,
        other => return Err(Error::InvalidArgument(format!("--backend {other:?}: want auto, gpu or cpu"))),
    };
    let started = Instant::now();
    let (path, header) = model_header(args)?;
    if purpose == Use::Chat {
        check_chat_template(&path, &header)?;
    }
    let tokenizer_json = match args.str("--tokenizer") {
        Some(p) => Some(std::fs::read(p).map_err(|e| Error::Io(format!("{p}: {e}")))?),
        None => None,
    };
    let gpu = GpuOptions { allow_f16: !args.flag("--no-f16"), kernels: kernel_variant(args), ..GpuOptions::default() };
    let options = EngineOptions {
        backend,
        context_size: args.num("--context")?,
        exact_cpu: args.flag("--exact-cpu"),
        gpu,
        tokenizer_json,
        ..EngineOptions::default()
    };
    let mut engine = Engine::load_file(&path, &options)?;
    if let Some(name) = args.str("--draft-model") {
        let draft = Engine::load_file(&resolve_model(Some(name))?, &options)?;
        engine.set_draft(Some(draft))?;
    }
    Ok((engine, started.elapsed().as_secs_f64()))
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error [{}]: {e}", e.code());
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args = Args::parse()?;
    if args.flag("--help") || matches!(args.command.as_str(), "--help" | "-h" | "help") {
        let names: Vec<&str> = catalog::entries().iter().map(|e| e.name.as_str()).collect();
        let shapes: Vec<&str> = synth::SHAPES.iter().map(|s| s.name).collect();
        let usage = USAGE
            .replace("{names}", &names.join(", "))
            .replace("{default}", &catalog::default_entry().name)
            .replace("{shapes}", &shapes.join(", "));
        print!("{usage}");
        return Ok(());
    }
    match args.command.as_str() {
        "generate" => generate(&args),
        "chat" => chat(&args),
        "tokenize" => tokenize(&args),
        "perplexity" => perplexity(&args),
        "bench" => bench(&args),
        "info" => info(&args),
        "split" => split(&args),
        "synth" => synth_model(&args),
        other => Err(Error::InvalidArgument(format!("unknown command {other:?} (see --help)"))),
    }
}

fn generate(args: &Args) -> Result<()> {
    args.only(
        &[
            SAMPLING_FLAGS,
            &["--prompt", "--chat", "--messages", "--json", "--tools", "--tool-choice", "--n", "--best-of"],
        ]
        .concat(),
    )?;
    let mut params = args.sampling()?;
    let tools: Option<Vec<serde_json::Value>> = args
        .str("--tools")
        .map(|f| -> Result<_> {
            let text = std::fs::read_to_string(f).map_err(|e| Error::InvalidArgument(format!("--tools {f}: {e}")))?;
            serde_json::from_str(&text).map_err(|e| Error::InvalidArgument(format!("--tools: not a JSON array: {e}")))
        })
        .transpose()?;
    let choice = match args.str("--tool-choice") {
        None | Some("auto") => ToolChoice::Auto,
        Some("none") => ToolChoice::None,
        Some("required") => ToolChoice::Required,
        Some(name) => ToolChoice::Function(name.to_string()),
    };
    if let Some(t) = &tools {
        if params.grammar.is_none() {
            params.grammar = tools::grammar(t, &choice)?;
        }
    } else if args.flag("--tool-choice") {
        return Err(Error::InvalidArgument("--tool-choice needs --tools".into()));
    }
    // tool_choice "none": the template does not see the tools.
    let offered = tools.as_deref().filter(|_| choice != ToolChoice::None);
    let n: usize = args.num("--n")?.unwrap_or(1);
    let best_of: Option<usize> = args.num("--best-of")?;
    let messages = match (args.str("--prompt"), args.str("--chat"), args.str("--messages")) {
        (Some(_), None, None) => None,
        (None, Some(text), None) => Some(vec![Message::new("user", text)]),
        (None, None, Some(file)) => Some(read_messages(file)?),
        _ => {
            return Err(Error::InvalidArgument("generate needs exactly one of --prompt, --chat and --messages".into()))
        }
    };
    let (mut engine, _) = load(args, if messages.is_some() { Use::Chat } else { Use::Any })?;
    let prompt = match (&messages, args.str("--prompt")) {
        (Some(m), _) => engine.encode_chat_with_tools(m, offered)?,
        (None, _) if tools.is_some() => {
            return Err(Error::InvalidArgument("--tools needs --chat or --messages".into()))
        }
        (None, text) => engine.encode_prompt(text.unwrap_or_default())?,
    };
    let json = args.flag("--json");
    let several = n > 1 || best_of.is_some();
    let mut out = std::io::stdout();
    let choices = engine.generate_choices(&prompt, &params, n, best_of, &mut |_, t| {
        if !json && !several {
            print!("{}", t.text);
            let _ = out.flush();
        }
        true
    })?;
    let gen = &choices[0].generation;
    let calls = offered.map(|t| tools::parse(&gen.text, t).1).unwrap_or_default();
    if json {
        let mut report = serde_json::json!({
            "prompt_tokens": gen.prompt_tokens,
            "tokens": gen.tokens,
            "text": gen.text,
            "finish_reason": gen.finish_reason,
            "prefill_tokens_per_s": gen.prefill_tokens_per_s(),
            "decode_tokens_per_s": gen.decode_tokens_per_s(),
            "decode_secs": gen.decode_secs,
            "drafted_tokens": gen.drafted_tokens,
            "accepted_tokens": gen.accepted_tokens,
            "backend": engine.backend_name(),
        });
        if params.grammar.is_some() {
            // Each generated token's mask, and the one that allowed the end.
            let masks = gen.tokens.len() + usize::from(gen.finish_reason == FinishReason::Stop);
            report["mask_ms_per_token"] = (gen.mask_secs * 1e3 / masks.max(1) as f64).into();
        }
        if !calls.is_empty() {
            report["tool_calls"] = serde_json::to_value(&calls).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        }
        if several {
            let list: Vec<_> = choices
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "index": c.index,
                        "tokens": c.generation.tokens,
                        "text": c.generation.text,
                        "finish_reason": c.generation.finish_reason,
                        "seed": c.seed,
                        "mean_logprob": c.mean_logprob,
                    })
                })
                .collect();
            report["choices"] = list.into();
        }
        println!("{report}");
    } else if several {
        for c in &choices {
            println!("--- choice {} (mean log-probability {:.3})\n{}", c.index, c.mean_logprob, c.generation.text);
        }
    } else {
        println!();
        for c in &calls {
            println!("[tool call {}: {}({})]", c.id, c.function.name, c.function.arguments);
        }
    }
    Ok(())
}

fn chat(args: &Args) -> Result<()> {
    args.only(&[SAMPLING_FLAGS, &["--system"]].concat())?;
    let params = args.sampling()?;
    let (mut engine, secs) = load(args, Use::Chat)?;
    eprintln!(
        "{} loaded in {secs:.1}s on the {} backend; {} tokens of context. /reset starts over, /quit leaves.",
        engine.config().name,
        engine.backend_name(),
        engine.context_size()
    );
    let system = args.str("--system");
    let mut chat = Chat::new(system);
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    loop {
        print!("> ");
        let _ = out.flush();
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            println!();
            return Ok(());
        }
        let line = line.trim();
        match line {
            "" => continue,
            "/quit" | "/exit" => return Ok(()),
            "/reset" => {
                chat = Chat::new(system);
                engine.reset();
                continue;
            }
            _ => {}
        }
        let result = chat.send(&mut engine, line, &params, &mut |t| {
            print!("{}", t.text);
            let _ = out.flush();
            true
        });
        match result {
            Ok(gen) => eprintln!("\n[{} tokens, {:.1} tokens/s]", gen.tokens.len(), gen.decode_tokens_per_s()),
            Err(e @ Error::ContextOverflow { .. }) => eprintln!("\n{e}; /reset to start a new chat"),
            Err(e) => return Err(e),
        }
    }
}

fn perplexity(args: &Args) -> Result<()> {
    args.only(&["--file", "--ctx", "--chunks", "--json"])?;
    let file = args.str("--file").ok_or_else(|| Error::InvalidArgument("perplexity needs --file TEXT".into()))?;
    let text = std::fs::read_to_string(file).map_err(|e| Error::Io(format!("{file}: {e}")))?;
    let options = EvaluateOptions {
        context_size: args.num("--ctx")?.unwrap_or(EvaluateOptions::default().context_size),
        max_chunks: args.num("--chunks")?,
    };
    let (mut engine, _) = load(args, Use::Any)?;
    let json = args.flag("--json");
    let result = engine.evaluate(&text, &options, &mut |c| {
        if !json {
            eprint!("[{}]{:.4},", c.index + 1, c.cumulative_ppl);
        }
        true
    })?;
    if json {
        let mut report = serde_json::to_value(&result).map_err(|e| Error::Io(e.to_string()))?;
        report["backend"] = engine.backend_name().into();
        println!("{report}");
    } else {
        eprintln!();
        println!(
            "perplexity {:.4} ± {:.4} over {} tokens ({} chunks of {}), {:.1} s",
            result.ppl,
            result.ppl_stderr,
            result.scored_tokens,
            result.chunks.len(),
            result.context_size,
            result.secs
        );
    }
    Ok(())
}

fn tokenize(args: &Args) -> Result<()> {
    args.only(&["--text", "--no-parse-special"])?;
    let text = args.str("--text").ok_or_else(|| Error::InvalidArgument("tokenize needs --text".into()))?;
    let (_, gguf) = model_header(args)?;
    let tokenizer = match args.str("--tokenizer") {
        Some(p) => webgpu_llm::tokenizer::Tokenizer::from_json(&std::fs::read(p)?, &gguf)?,
        None => webgpu_llm::tokenizer::Tokenizer::from_gguf(&gguf)?,
    };
    let ids = tokenizer.encode(text, !args.flag("--no-parse-special"))?;
    println!("{}", serde_json::to_string(&ids).expect("ids serialize"));
    Ok(())
}

fn bench(args: &Args) -> Result<()> {
    if args.flag("--kernels") {
        return bench_kernels(args);
    }
    args.only(&["--prompt-tokens", "--gen-tokens", "--json", "--sample", "--seed", "--choices"])?;
    let prompt_tokens: usize = args.num("--prompt-tokens")?.unwrap_or(128);
    let gen_tokens: usize = args.num("--gen-tokens")?.unwrap_or(64);
    let n: usize = args.num("--choices")?.unwrap_or(1);
    if prompt_tokens == 0 || gen_tokens == 0 {
        return Err(Error::InvalidArgument("--prompt-tokens and --gen-tokens must be at least 1".into()));
    }
    let (mut engine, load_secs) = load(args, Use::Any)?;
    // A fixed English text, repeated as needed and cut to exactly the asked length.
    let text = "The quick brown fox jumps over the lazy dog while the river runs past the old mill. ";
    let unit = engine.encode_prompt(text)?;
    let prompt: Vec<u32> = unit.iter().cycle().take(prompt_tokens).copied().collect();
    // Greedy (or, with --sample, the default sampling knobs), and end-of-generation tokens banned
    // so that exactly gen_tokens come out.
    let params = SamplingParams {
        temperature: if args.flag("--sample") { SamplingParams::default().temperature } else { 0.0 },
        seed: Some(args.num("--seed")?.unwrap_or(0)),
        max_tokens: gen_tokens,
        logit_bias: engine.tokenizer().eog_ids().iter().map(|&id| (id, f32::NEG_INFINITY)).collect(),
        ..SamplingParams::default()
    };
    let mut first_token: Option<f64> = None;
    let started = Instant::now();
    let choices = engine.generate_choices(&prompt, &params, n, None, &mut |_, _| {
        first_token.get_or_insert_with(|| started.elapsed().as_secs_f64());
        true
    })?;
    let gen: &Generation = &choices[0].generation;
    // Every choice's tokens fed back, over the batch's decode time (each choice reports it).
    let decoded: usize = choices.iter().map(|c| c.generation.decoded_tokens).sum();
    let decode_rate = decoded as f64 / gen.decode_secs.max(f64::MIN_POSITIVE);
    let steps = gen.decode_work.steps as usize;
    let mut report = serde_json::json!({
        "model": engine.config().name,
        "backend": engine.backend_name(),
        "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "load_s": load_secs,
        "prompt_tokens": gen.prefill_tokens,
        "generated_tokens": gen.tokens.len(),
        "time_to_first_token_s": first_token.unwrap_or(0.0),
        "prefill_tokens_per_s": gen.prefill_tokens_per_s(),
        "decode_tokens_per_s": decode_rate,
        "adapter": engine.adapter().map(|a| &a.name),
        "f16": engine.adapter().is_some_and(|a| a.f16),
        "kernels": engine.adapter().map(|a| a.kernels),
        "prefill_submissions": gen.prefill_work.submissions,
        "prefill_dispatches": gen.prefill_work.dispatches,
        "dispatches_per_token": per_token(gen.decode_work.dispatches, steps),
        "submissions_per_token": per_token(gen.decode_work.submissions, steps),
        "read_back_bytes_per_token": per_token(gen.decode_work.read_back_bytes, steps),
        "weight_bytes": gen.decode_work.weight_bytes,
        "kv_cache_bytes": gen.decode_work.kv_bytes,
        "gpu_memory_bytes": gen.decode_work.device_bytes,
        "file_weight_bytes": engine.config().file_weight_bytes,
        "weight_bytes_read_per_token": per_token(gen.decode_work.weight_read_bytes, steps),
        // 1.0: each weight byte of the file read once per decode step (0 on the CPU).
        "weight_read_ratio": per_token(gen.decode_work.weight_read_bytes, steps)
            / engine.config().file_weight_bytes as f64,
    });
    if let Some(model) = engine.gpu_model() {
        // Weight bytes per token × tokens/s against what the adapter can move. The measurement
        // needs two more buffers: a device without room for them reports why, not a failed bench.
        match pollster::block_on(webgpu_llm::gpu::profile::bandwidth(model.gpu())) {
            Ok(bandwidth) => {
                let read_per_s = gen.decode_work.weight_read_bytes as f64 / gen.decode_secs.max(f64::MIN_POSITIVE);
                report["copy_gb_per_s"] = bandwidth.copy_gb_per_s.into();
                report["bandwidth_fraction"] = (read_per_s / (bandwidth.copy_gb_per_s * 1e9)).into();
            }
            Err(e) => report["bandwidth_error"] = e.to_string().into(),
        }
    }
    if n > 1 {
        // The per-token counters above are per decode step: one token of every live choice.
        report["choices"] = n.into();
        report["decode_steps_per_s"] = (steps as f64 / gen.decode_secs.max(f64::MIN_POSITIVE)).into();
    }
    if args.flag("--json") {
        println!("{report}");
    } else {
        println!(
            "{} on {}: load {:.2}s, prefill {} tokens at {:.1} tokens/s, decode {} tokens at {:.1} tokens/s, first token after {:.3}s",
            report["model"].as_str().unwrap_or(""),
            engine.backend_name(),
            load_secs,
            gen.prefill_tokens,
            gen.prefill_tokens_per_s(),
            decoded,
            decode_rate,
            first_token.unwrap_or(0.0)
        );
    }
    Ok(())
}

/// `bench --kernels`: a decode step after `--prompt-tokens` positions and a prefill chunk,
/// each kernel timed alone (see src/gpu/profile.rs).
fn bench_kernels(args: &Args) -> Result<()> {
    args.only(&["--kernels", "--prompt-tokens", "--json"])?;
    let depth: usize = args.num("--prompt-tokens")?.unwrap_or(128);
    if args.str("--backend").is_some_and(|b| b != "gpu") {
        return Err(Error::InvalidArgument("bench --kernels times the GPU's kernels: use --backend gpu".into()));
    }
    let (mut engine, _) = load(args, Use::Gpu)?;
    let name = engine.config().name.clone();
    let chunk = webgpu_llm::gpu::PREFILL_CHUNK;
    let model = engine.gpu_model().expect("Use::Gpu loads onto the GPU");
    let bandwidth = pollster::block_on(webgpu_llm::gpu::profile::bandwidth(model.gpu()))?;
    let decode = model.profile_kernels(1, depth)?;
    let prefill = model.profile_kernels(chunk, 0)?;
    let adapter = &model.gpu().report;
    if args.flag("--json") {
        let report = serde_json::json!({
            "model": name,
            "adapter": adapter.name,
            "device_type": adapter.device_type,
            "driver": adapter.driver,
            "f16": adapter.f16,
            "kernels": adapter.kernels,
            "subgroup_sizes": adapter.subgroup_sizes,
            "bandwidth": bandwidth,
            "decode": decode,
            "prefill": prefill,
            "decode_fraction_of_copy_bandwidth": decode.gb_per_s / bandwidth.copy_gb_per_s,
        });
        println!("{report}");
        return Ok(());
    }
    println!(
        "{name} on {} ({}, f16 {}), {} kernels",
        adapter.name,
        adapter.device_type,
        adapter.f16,
        adapter.kernels.name()
    );
    println!(
        "bandwidth ({} MiB buffers): copy {:.1} GB/s, read-write kernel {:.1} GB/s",
        bandwidth.bytes >> 20,
        bandwidth.copy_gb_per_s,
        bandwidth.kernel_gb_per_s
    );
    for (what, p) in [("decode", &decode), ("prefill", &prefill)] {
        println!(
            "\n{what}: {} token(s) after {} positions; kernels alone sum to {:.1} us a step, {:.1} GB/s",
            p.tokens, p.context, p.step_us, p.gb_per_s
        );
        println!("{:>10} {:>5} {:>12} {:>9} {:>10}  kernel", "us/launch", "n", "bytes", "GB/s", "GFLOP/s");
        for k in &p.kernels {
            println!(
                "{:>10.1} {:>5} {:>12} {:>9.2} {:>10.2}  {}",
                k.us_per_launch, k.launches, k.bytes_per_launch, k.gb_per_s, k.gflop_per_s, k.kernel
            );
        }
    }
    Ok(())
}

/// A decode counter per generated token fed back (the first token comes from the prefill).
fn per_token(count: u64, tokens: usize) -> f64 {
    if tokens == 0 {
        0.0
    } else {
        count as f64 / tokens as f64
    }
}

fn split(args: &Args) -> Result<()> {
    args.only(&["--max-size", "--out"])?;
    let path = model_path(args)?;
    let size = args.str("--max-size").ok_or_else(|| Error::InvalidArgument("split needs --max-size BYTES".into()))?;
    let (digits, unit) = size.split_at(size.trim_end_matches(['K', 'M', 'G']).len());
    let shift = match unit {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        _ => return Err(Error::InvalidArgument(format!("--max-size {size:?}"))),
    };
    let max: u64 = digits.parse().map_err(|_| Error::InvalidArgument(format!("--max-size {size:?}")))?;
    let out = args.str("--out").ok_or_else(|| Error::InvalidArgument("split needs --out PREFIX".into()))?;
    let bytes = std::fs::read(&path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    let parts = webgpu_llm::load::split::split_file(&bytes, max << shift)?;
    let n = parts.len();
    for (k, part) in parts.iter().enumerate() {
        let name = format!("{out}-{:05}-of-{n:05}.gguf", k + 1);
        std::fs::write(&name, part).map_err(|e| Error::Io(format!("{name}: {e}")))?;
        println!("{name}: {} bytes", part.len());
    }
    Ok(())
}

fn info(args: &Args) -> Result<()> {
    args.only(&[])?;
    let path = model_path(args)?;
    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
    let (engine, _) = load(args, Use::Any)?;
    // The adapter wgpu finds, even when the model runs on the CPU (auto on a software adapter).
    let adapter = match engine.adapter() {
        Some(a) => serde_json::to_value(a).expect("report serializes"),
        None => match Gpu::new_blocking(&GpuOptions { kernels: kernel_variant(args), ..GpuOptions::default() }) {
            Ok(gpu) => serde_json::to_value(&gpu.report).expect("report serializes"),
            Err(e) => serde_json::json!({ "error": e.to_string(), "code": e.code() }),
        },
    };
    let report = serde_json::json!({
        "file": path,
        "catalog": webgpu_llm::facts::catalog_facts(path.to_str(), size),
        "template": webgpu_llm::facts::template_facts(&engine),
        "config": engine.config(),
        "backend": engine.backend_name(),
        "adapter": adapter,
        "context_size": engine.context_size(),
        "weight_bytes": engine.stats().weight_bytes,
        "kv_cache_bytes": engine.stats().kv_bytes,
        // What the header said the model needs on this backend, as checked before loading.
        "estimate": engine.estimate(),
        "eog_ids": engine.tokenizer().eog_ids(),
        // The model's own template; null for a base model (which has none).
        "has_chat_template": engine.has_chat_template(),
        "chat_template": engine.template().map(|t| t.source()),
    });
    println!("{}", serde_json::to_string_pretty(&report).expect("report serializes"));
    Ok(())
}

fn synth_model(args: &Args) -> Result<()> {
    let allowed = ["--shape", "--quant", "--out", "--seed", "--layers"];
    if let Some(k) = args.values.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(Error::InvalidArgument(format!("synth does not take {k}")));
    }
    let need = |name: &str| args.str(name).ok_or_else(|| Error::InvalidArgument(format!("synth needs {name}")));
    let quant = synth::Quant::parse(need("--quant")?)?;
    let mut spec = synth::Spec::new(need("--shape")?, quant)?.with_seed(args.num("--seed")?.unwrap_or(0));
    if let Some(layers) = args.num("--layers")? {
        spec = spec.with_layers(layers)?;
    }
    let out = PathBuf::from(need("--out")?);
    eprintln!(
        "writing {} ({:.2} GiB) to {}",
        spec.name(),
        spec.file_size() as f64 / (1u64 << 30) as f64,
        out.display()
    );
    let written = spec.write_file(&out)?;
    println!(
        "{}: {} bytes ({:.2} GiB), {} tensors, in {:.1} s ({:.0} MB/s)",
        out.display(),
        written.bytes,
        written.bytes as f64 / (1u64 << 30) as f64,
        written.tensors,
        written.secs,
        written.bytes as f64 / 1e6 / written.secs.max(1e-9)
    );
    Ok(())
}
