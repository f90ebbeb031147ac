//! Structured output on the real Qwen2.5-Coder-0.5B (CPU backend): JSON schemas and grammars
//! constrain every token, the output parses and follows the schema at temperature 0 and 1; tool
//! calls come back in OpenAI's shape; bad grammars and tools without template support are
//! `invalid_argument`, and the engine keeps working after each.

mod common;
use common::*;
use serde_json::{json, Value};
use webgpu_llm::chat::tools::{self, ToolChoice};
use webgpu_llm::chat::Message;
use webgpu_llm::constraint::Grammar;
use webgpu_llm::engine::{BackendKind, Engine, EngineOptions, FinishReason};
use webgpu_llm::sampler::SamplingParams;
use webgpu_llm::Error;

fn engine(name: &str) -> Engine {
    let options = EngineOptions { backend: BackendKind::Cpu, context_size: Some(1024), ..EngineOptions::default() };
    Engine::load(&catalog_model_bytes(name), &options).unwrap()
}

fn params(temperature: f32, seed: u64, max_tokens: usize, grammar: Option<Grammar>) -> SamplingParams {
    SamplingParams { temperature, seed: Some(seed), max_tokens, grammar, ..SamplingParams::default() }
}

fn ask(e: &mut Engine, question: &str, p: &SamplingParams) -> webgpu_llm::Result<webgpu_llm::engine::Generation> {
    let prompt = e.encode_chat(&[Message::new("user", question)])?;
    e.generate(&prompt, p, &mut |_| true)
}

fn schema(s: &Value) -> Option<Grammar> {
    Some(Grammar::JsonSchema { schema: s.clone() })
}

type Check = fn(&Value) -> bool;

fn matches(pattern: &str, v: &Value) -> bool {
    v.as_str().is_some_and(|s| regex::Regex::new(pattern).unwrap().is_match(s))
}

/// (question, schema, what a valid answer satisfies, checked by hand for each schema).
fn cases() -> Vec<(&'static str, Value, Check)> {
    vec![
        (
            "Describe a person called Ada, 36 years old.",
            json!({"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer", "minimum": 0, "maximum": 150}}, "required": ["name", "age"], "additionalProperties": false}),
            |v| {
                let o = v.as_object().unwrap();
                o.len() == 2
                    && o["name"].as_str().is_some_and(|s| s.chars().count() <= 20)
                    && o["age"].as_i64().is_some_and(|a| (0..=150).contains(&a))
            },
        ),
        (
            "What colour is the sky? Answer with a mood too.",
            json!({"type": "object", "properties": {"colour": {"enum": ["red", "green", "blue"]}, "mood": {"type": "string", "enum": ["happy", "sad"]}}, "required": ["colour", "mood"], "additionalProperties": false}),
            |v| {
                ["red", "green", "blue"].contains(&v["colour"].as_str().unwrap_or(""))
                    && ["happy", "sad"].contains(&v["mood"].as_str().unwrap_or(""))
            },
        ),
        (
            "List a few prime numbers.",
            json!({"type": "object", "properties": {"primes": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 1000}, "minItems": 2, "maxItems": 4}}, "required": ["primes"], "additionalProperties": false}),
            |v| {
                v["primes"].as_array().is_some_and(|a| {
                    (2..=4).contains(&a.len()) && a.iter().all(|x| x.as_i64().is_some_and(|x| (0..=1000).contains(&x)))
                })
            },
        ),
        (
            "Give a flight from Paris to Rome.",
            json!({"type": "object", "properties": {
                "from": {"type": "string", "pattern": "^[A-Z]{3}$"},
                "to": {"type": "string", "pattern": "^[A-Z]{3}$"},
                "flight": {"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{2}[0-9]{2,4}$"}, "seats": {"type": "integer", "minimum": 1, "maximum": 500}}, "required": ["code", "seats"], "additionalProperties": false}
            }, "required": ["from", "to", "flight"], "additionalProperties": false}),
            |v| {
                matches("^[A-Z]{3}$", &v["from"])
                    && matches("^[A-Z]{3}$", &v["to"])
                    && matches("^[A-Z]{2}[0-9]{2,4}$", &v["flight"]["code"])
                    && v["flight"]["seats"].as_i64().is_some_and(|s| (1..=500).contains(&s))
                    && v["flight"].as_object().unwrap().len() == 2
            },
        ),
        (
            "Is water wet? Give tags.",
            json!({"type": "object", "properties": {"answer": {"type": "boolean"}, "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3}}, "required": ["answer"], "additionalProperties": false}),
            |v| {
                v["answer"].is_boolean()
                    && v.get("tags").is_none_or(|t| {
                        t.as_array().is_some_and(|a| {
                            a.len() <= 3 && a.iter().all(|s| s.as_str().is_some_and(|s| s.chars().count() <= 12))
                        })
                    })
            },
        ),
    ]
}

fn check_valid(what: &str, g: &webgpu_llm::engine::Generation, check: Check) {
    assert_eq!(g.finish_reason, FinishReason::Stop, "{what}: the grammar must complete: {:?}", g.text);
    let v: Value = serde_json::from_str(&g.text).unwrap_or_else(|e| panic!("{what}: {e}: {:?}", g.text));
    assert!(check(&v), "{what}: the answer does not follow the schema: {v}");
}

#[test]
fn json_schemas_constrain_every_token_at_temperature_0_and_1() {
    let mut e = engine("qwen2.5-coder-0.5b");
    let (mut mask_secs, mut masked) = (0.0, 0);
    for (i, (question, s, check)) in cases().into_iter().enumerate() {
        for (t, seed) in [(0.0, 0), (1.0, 1), (1.0, 2)] {
            let g = ask(&mut e, question, &params(t, seed, 96, schema(&s))).unwrap();
            println!("schema {i} t={t} seed={seed}: {}", g.text);
            check_valid(&format!("schema {i} at t={t} seed {seed}"), &g, check);
            mask_secs += g.mask_secs;
            masked += g.tokens.len() + 1;
        }
    }
    // Any JSON object.
    let g = ask(&mut e, "Describe a cat in JSON.", &params(1.0, 3, 96, Some(Grammar::JsonObject))).unwrap();
    check_valid("json_object", &g, |v| v.is_object());
    println!("mask: {:.3} ms per token over {masked} tokens", mask_secs * 1e3 / masked as f64);
}

#[test]
fn a_lark_grammar_and_a_retune_keep_the_constraint() {
    let mut e = engine("qwen2.5-coder-0.5b");
    let lark = r#"start: "The answer is " ANSWER "."
ANSWER: "yes" | "no""#;
    let g = ask(&mut e, "Is the sun hot?", &params(1.0, 5, 32, Some(Grammar::Lark { grammar: lark.into() }))).unwrap();
    assert!(["The answer is yes.", "The answer is no."].contains(&g.text.as_str()), "{:?}", g.text);
    assert_eq!(g.finish_reason, FinishReason::Stop);

    // Knobs changed while it runs (without a grammar of their own) keep the grammar.
    let retune = e.retune();
    let prompt = e.encode_chat(&[Message::new("user", "Describe a person called Ada, 36 years old.")]).unwrap();
    let (s, check) = (cases()[0].1.clone(), cases()[0].2);
    let mut n = 0;
    let g = e
        .generate(&prompt, &params(0.0, 0, 96, schema(&s)), &mut |_| {
            n += 1;
            if n == 2 {
                retune
                    .set(SamplingParams {
                        temperature: 1.5,
                        top_k: 0,
                        top_p: 1.0,
                        min_p: 0.0,
                        ..SamplingParams::default()
                    })
                    .unwrap();
            }
            true
        })
        .unwrap();
    assert!(g.sampling.len() > 1, "the retune applied");
    assert!(g.sampling.iter().all(|c| c.params.grammar.is_some()));
    check_valid("retuned", &g, check);
}

#[test]
fn bad_grammars_and_tools_without_support_are_invalid_arguments() {
    let mut e = engine("smollm2-135m");
    let bad = |e: &mut Engine, g: Grammar| match ask(e, "Hi", &params(0.0, 0, 8, Some(g))) {
        Err(err @ Error::InvalidArgument(_)) => err.to_string(),
        other => panic!("expected invalid_argument, got {other:?}"),
    };
    // Not a schema at all.
    let m = bad(&mut e, Grammar::JsonSchema { schema: json!([1, 2]) });
    assert!(m.contains("json_schema"), "{m}");
    let m = bad(&mut e, Grammar::JsonSchema { schema: json!({"type": 5}) });
    assert!(m.contains("json_schema"), "{m}");
    // A feature llguidance does not implement is named.
    let m = bad(&mut e, Grammar::JsonSchema { schema: json!({"type": "array", "uniqueItems": true}) });
    assert!(m.contains("uniqueItems"), "{m}");
    // A Lark syntax error.
    let m = bad(&mut e, Grammar::Lark { grammar: "start: (".into() });
    assert!(m.contains("grammar"), "{m}");
    // response_format values.
    assert!(Grammar::from_response_format(&json!({"type": "xml"})).is_err());
    assert_eq!(Grammar::from_response_format(&json!({"type": "text"})).unwrap(), None);
    // SmolLM2's template never reads `tools`.
    let tool = json!({"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}});
    match e.encode_chat_with_tools(&[Message::new("user", "Hi")], Some(&[tool])) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("tools"), "{m}"),
        other => panic!("expected invalid_argument, got {other:?}"),
    }
    // The engine still works, with and without a grammar.
    let g = ask(&mut e, "Say hi.", &params(0.0, 0, 8, None)).unwrap();
    assert!(!g.tokens.is_empty());
    let g = ask(&mut e, "Describe a cat.", &params(0.0, 0, 64, Some(Grammar::JsonObject))).unwrap();
    check_valid("json_object after errors", &g, |v| v.is_object());
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "The city name"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
        }, "required": ["city", "unit"], "additionalProperties": false}
    }})
}

#[test]
fn the_weather_tool_gets_a_call_with_valid_arguments() {
    let mut e = engine("qwen2.5-coder-0.5b");
    let tools = [weather_tool()];
    let messages = [Message::new("user", "What is the weather like in Paris right now, in celsius?")];
    let prompt = e.encode_chat_with_tools(&messages, Some(&tools)).unwrap();
    for (choice, t, seed) in [
        (ToolChoice::Function("get_weather".into()), 0.0, 0),
        (ToolChoice::Function("get_weather".into()), 1.0, 7),
        (ToolChoice::Required, 1.0, 8),
        (ToolChoice::Auto, 0.0, 0),
    ] {
        let grammar = tools::grammar(&tools, &choice).unwrap();
        let g = e.generate(&prompt, &params(t, seed, 80, grammar), &mut |_| true).unwrap();
        println!("{choice:?} t={t}: {:?}", g.text);
        let (_content, calls) = tools::parse(&g.text, &tools);
        assert_eq!(calls.len(), 1, "{choice:?}: one call in {:?}", g.text);
        let call = &calls[0];
        assert_eq!((call.kind.as_str(), call.function.name.as_str()), ("function", "get_weather"));
        let args: Value = serde_json::from_str(&call.function.arguments).unwrap();
        assert!(args["city"].as_str().is_some_and(|c| !c.is_empty()), "{args}");
        if choice != ToolChoice::Auto {
            assert!(["celsius", "fahrenheit"].contains(&args["unit"].as_str().unwrap_or("")), "{args}");
            assert_eq!(args.as_object().unwrap().len(), 2, "{args}");
        }
    }
    // A named function that is not among the tools.
    assert!(matches!(tools::grammar(&tools, &ToolChoice::Function("nope".into())), Err(Error::InvalidArgument(_))));
}

/// The mask's cost on Qwen's 151,936-token vocabulary, per token (run with `--ignored
/// --nocapture`).
#[test]
#[ignore]
fn mask_time_per_token() {
    let mut e = engine("qwen2.5-coder-0.5b");
    let t = std::time::Instant::now();
    let constraints = webgpu_llm::constraint::Constraints::new(e.tokenizer()).unwrap();
    println!("token trie of {} tokens: {:.1} ms", e.tokenizer().vocab_size(), t.elapsed().as_secs_f64() * 1e3);
    for (i, (question, s, _)) in cases().into_iter().enumerate() {
        let t = std::time::Instant::now();
        constraints.start(&Grammar::JsonSchema { schema: s.clone() }).unwrap();
        println!("schema {i}: compiled in {:.2} ms", t.elapsed().as_secs_f64() * 1e3);
        let g = ask(&mut e, question, &params(0.0, 0, 96, schema(&s))).unwrap();
        let n = g.tokens.len() + 1;
        println!(
            "schema {i}: {n} masks, {:.3} ms per mask, decode {:.1} ms per token",
            g.mask_secs * 1e3 / n as f64,
            g.decode_secs * 1e3 / n as f64
        );
    }
}
