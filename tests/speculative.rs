//! Speculative decoding (src/engine/speculative.rs): greedy output is plain greedy decoding's,
//! token for token, with a draft model and with prompt lookup, on the CPU and on the GPU
//! (lavapipe here); sampled output has the target's distribution (chi-square of many seeded
//! draws against the exact distribution computed from the target's logits, with and without
//! speculation); under a grammar, the mask follows every draft (greedy identity, and the masked
//! distribution kept); bad requests are typed errors.

mod common;

use std::collections::HashMap;

use serde_json::{json, Value};
use webgpu_llm::constraint::{Constraints, Grammar};
use webgpu_llm::engine::{BackendKind, Engine, EngineOptions, FinishReason, Generation};
use webgpu_llm::model::synth::{Quant, Spec};
use webgpu_llm::sampler::{Sampler, SamplingParams};

fn options(backend: BackendKind) -> EngineOptions {
    EngineOptions { backend, context_size: Some(512), ..EngineOptions::default() }
}

fn greedy(max_tokens: usize) -> SamplingParams {
    SamplingParams { temperature: 0.0, max_tokens, ..SamplingParams::default() }
}

fn run(engine: &mut Engine, prompt: &[u32], params: &SamplingParams) -> Generation {
    engine.generate(prompt, params, &mut |_| true).unwrap()
}

#[test]
fn greedy_with_a_draft_model_is_plain_greedy_on_the_cpu() {
    let mut target =
        Engine::load(&common::catalog_model_bytes("qwen2.5-coder-1.5b"), &options(BackendKind::Cpu)).unwrap();
    let draft = Engine::load(&common::catalog_model_bytes("qwen2.5-coder-0.5b"), &options(BackendKind::Cpu)).unwrap();
    let messages = [webgpu_llm::chat::Message::new("user", "Write a Python function that reverses a list.")];
    let prompt = target.encode_chat(&messages).unwrap();
    let plain = run(&mut target, &prompt, &greedy(24));
    target.set_draft(Some(draft)).unwrap();
    for k in [None, Some(3)] {
        let spec = run(&mut target, &prompt, &SamplingParams { draft_tokens: k, ..greedy(24) });
        eprintln!("draft_tokens {k:?}: drafted {}, accepted {}", spec.drafted_tokens, spec.accepted_tokens);
        assert_eq!(spec.tokens, plain.tokens, "draft_tokens {k:?}");
        assert_eq!(spec.text, plain.text);
        assert!(spec.accepted_tokens > 0 && spec.accepted_tokens <= spec.drafted_tokens);
        // The drafts are checked in one pass with the token before them.
        assert_eq!(spec.decoded_tokens, plain.decoded_tokens);
    }
    // draft_tokens 0 turns the draft model off for a request.
    let off = run(&mut target, &prompt, &SamplingParams { draft_tokens: Some(0), ..greedy(24) });
    assert_eq!((off.tokens, off.drafted_tokens), (plain.tokens, 0));
}

#[test]
fn greedy_with_prompt_lookup_is_plain_greedy_on_cpu_and_gpu() {
    for backend in [BackendKind::Cpu, BackendKind::Gpu] {
        let mut engine = Engine::load(&common::model_bytes(), &options(backend)).unwrap();
        let text = "Copy the list.\nList: apple, banana, cherry, grape, lemon, mango, peach, plum.\n\
                    Copy: apple, banana, cherry, grape, lemon, mango, peach, plum.\n\
                    List: red, green, blue, yellow, purple, orange, white, black.\nCopy:";
        let prompt = engine.encode_prompt(text).unwrap();
        let plain = run(&mut engine, &prompt, &greedy(32));
        let spec = run(&mut engine, &prompt, &SamplingParams { lookup: Some(3), ..greedy(32) });
        eprintln!("{backend:?}: drafted {}, accepted {}", spec.drafted_tokens, spec.accepted_tokens);
        assert_eq!(spec.tokens, plain.tokens, "{backend:?}");
        assert!(spec.accepted_tokens >= 10, "{backend:?}: the text repeats itself");
        assert!(spec.decode_work.steps + 10 <= plain.decode_work.steps, "{backend:?}: fewer target steps");
        assert_cache_holds_what_was_shown(&engine, &prompt, &spec);
    }
}

/// A draft model on the GPU; a stop string and max_tokens that end inside a step's accepted
/// drafts leave the cache holding only what was shown.
#[test]
fn greedy_with_a_draft_model_is_plain_greedy_on_the_gpu() {
    let mut target = Engine::load(&common::model_bytes(), &options(BackendKind::Gpu)).unwrap();
    let draft = Engine::load(&common::model_bytes(), &options(BackendKind::Gpu)).unwrap();
    let prompt = target.encode_prompt("The three primary colours are").unwrap();
    let plain = run(&mut target, &prompt, &greedy(20));
    target.set_draft(Some(draft)).unwrap();
    let spec = run(&mut target, &prompt, &greedy(20));
    assert_eq!(spec.tokens, plain.tokens);
    assert!(spec.accepted_tokens > 0);
    for n in [1, 2, 7] {
        let short = run(&mut target, &prompt, &greedy(n));
        assert_eq!(short.tokens, plain.tokens[..n]);
        assert_cache_holds_what_was_shown(&target, &prompt, &short);
    }
}

/// The cache holds the prompt and the tokens shown (the last one may not have been run, as in
/// plain decoding), never a draft beyond them: the next turn reuses it as it is.
fn assert_cache_holds_what_was_shown(engine: &Engine, prompt: &[u32], g: &Generation) {
    let shown = [prompt, &g.tokens].concat();
    let cached = engine.cached_tokens();
    assert!(shown.starts_with(cached) && cached.len() + 1 >= shown.len(), "cached {cached:?}, shown {shown:?}");
}

/// Every (t1, t2, t3) a generation of three tokens can give, with its exact probability under
/// the target: the sampler's final distribution at each step, from the target's own logits
/// (masked by `grammar` after the tokens before, when there is one).
fn exact_joint(
    engine: &mut Engine,
    prompt: &[u32],
    params: &SamplingParams,
    grammar: Option<&Grammar>,
) -> HashMap<Vec<u32>, f64> {
    let sampler = Sampler::new(params.clone()).unwrap();
    let eog: Vec<u32> = engine.tokenizer().eog_ids().to_vec();
    let constraints = grammar.map(|_| Constraints::new(engine.tokenizer()).unwrap());
    let mut out = HashMap::new();
    let mut stack = vec![(Vec::<u32>::new(), 1f64)];
    while let Some((seq, p)) = stack.pop() {
        // The grammar after `seq`: generation also ends when it is complete.
        let mut constraint = constraints.as_ref().map(|c| c.start(grammar.unwrap()).unwrap());
        let mut done = false;
        for &t in seq.iter().filter(|t| !eog.contains(t)) {
            if let Some(c) = &mut constraint {
                c.commit(t).unwrap();
                done = c.is_done();
            }
        }
        if seq.len() == 3 || done || seq.last().is_some_and(|t| eog.contains(t)) {
            let shown: Vec<u32> = seq.iter().copied().filter(|t| !eog.contains(t)).collect();
            *out.entry(shown).or_insert(0.0) += p;
            continue;
        }
        let ctx = [prompt, &seq].concat();
        let mut logits = engine.logits(&ctx).unwrap();
        if let Some(c) = &mut constraint {
            c.mask_row(&mut logits).unwrap();
        }
        for c in sampler.distribution(&logits, &ctx) {
            stack.push(([&seq[..], &[c.id]].concat(), p * c.prob as f64));
        }
    }
    out
}

/// Pearson's chi-square of `counts` against `expected` probabilities, cells expected fewer than
/// five times pooled; and the 0.999 quantile of its distribution (Wilson–Hilferty).
fn chi_square(counts: &HashMap<Vec<u32>, usize>, expected: &HashMap<Vec<u32>, f64>, n: usize) -> (f64, f64) {
    for k in counts.keys() {
        assert!(expected.contains_key(k), "{k:?} was drawn but has probability 0");
    }
    let (mut chi, mut cells, mut pooled_e, mut pooled_o) = (0.0, 0usize, 0.0, 0.0);
    for (k, &p) in expected {
        let (e, o) = (p * n as f64, *counts.get(k).unwrap_or(&0) as f64);
        if e < 5.0 {
            pooled_e += e;
            pooled_o += o;
            continue;
        }
        chi += (o - e).powi(2) / e;
        cells += 1;
    }
    if pooled_e > 0.0 {
        chi += (pooled_o - pooled_e).powi(2) / pooled_e.max(1e-9);
        cells += 1;
    }
    let df = (cells.max(2) - 1) as f64;
    let z = 3.09;
    let quantile = df * (1.0 - 2.0 / (9.0 * df) + z * (2.0 / (9.0 * df)).sqrt()).powi(3);
    (chi, quantile)
}

fn draws(
    engine: &mut Engine,
    prompt: &[u32],
    params: &SamplingParams,
    n: usize,
) -> (HashMap<Vec<u32>, usize>, usize, usize) {
    let (mut counts, mut drafted, mut accepted) = (HashMap::new(), 0, 0);
    for seed in 0..n as u64 {
        let g = run(engine, prompt, &SamplingParams { seed: Some(seed), max_tokens: 3, ..params.clone() });
        *counts.entry(g.tokens).or_insert(0) += 1;
        drafted += g.drafted_tokens;
        accepted += g.accepted_tokens;
    }
    (counts, drafted, accepted)
}

const DRAWS: usize = 600;

/// A random model of SmolLM2's shape and vocabulary with `layers` layers.
fn random_model(seed: u64, layers: usize) -> Engine {
    let mut bytes = Vec::new();
    Spec::new("smollm2-135m", Quant::Q8_0)
        .unwrap()
        .with_seed(seed)
        .with_layers(layers)
        .unwrap()
        .write(&mut bytes)
        .unwrap();
    Engine::load(&bytes, &options(BackendKind::Cpu)).unwrap()
}

/// Two random models of one shape and vocabulary: the draft's distribution is far from the
/// target's, so both acceptance and the residual draw are exercised.
#[test]
fn sampling_with_a_draft_model_keeps_the_target_distribution() {
    let mut target = random_model(1, 2);
    let params = SamplingParams { temperature: 1.0, top_k: 3, top_p: 1.0, min_p: 0.0, ..SamplingParams::default() };
    let prompt: Vec<u32> = (0..12).map(|i| 40 + 37 * i).collect();
    let exact = exact_joint(&mut target, &prompt, &params, None);

    let (plain, _, _) = draws(&mut target, &prompt, &params, DRAWS);
    let (chi, q) = chi_square(&plain, &exact, DRAWS);
    eprintln!("plain: chi-square {chi:.1} (0.999 quantile {q:.1}), {} outcomes", exact.len());
    assert!(chi < q, "plain sampling: chi-square {chi} over {q}");

    target.set_draft(Some(random_model(2, 1))).unwrap();
    let (spec, drafted, accepted) = draws(&mut target, &prompt, &params, DRAWS);
    let (chi, q) = chi_square(&spec, &exact, DRAWS);
    eprintln!("speculative: chi-square {chi:.1} (0.999 quantile {q:.1}); drafted {drafted}, accepted {accepted}");
    assert!(chi < q, "speculative sampling: chi-square {chi} over {q}");
    assert!(accepted > 0 && accepted < drafted, "both acceptance and rejection happen ({accepted} of {drafted})");
}

/// Under a grammar the draft model drafts within the mask and the target verifies each draft
/// under the mask at its position: the output has the masked target distribution.
#[test]
fn sampling_under_a_grammar_with_a_draft_model_keeps_the_masked_distribution() {
    let mut target = random_model(3, 2);
    let grammar = Grammar::Lark { grammar: "start: /[a-z]+( [a-z]+)?/".into() };
    let params = SamplingParams {
        temperature: 1.0,
        top_k: 3,
        top_p: 1.0,
        min_p: 0.0,
        grammar: Some(grammar.clone()),
        ..SamplingParams::default()
    };
    let prompt: Vec<u32> = (0..12).map(|i| 50 + 41 * i).collect();
    let exact = exact_joint(&mut target, &prompt, &params, Some(&grammar));
    target.set_draft(Some(random_model(4, 1))).unwrap();
    let (spec, drafted, accepted) = draws(&mut target, &prompt, &params, DRAWS);
    let (chi, q) = chi_square(&spec, &exact, DRAWS);
    eprintln!(
        "under a grammar: chi-square {chi:.1} (0.999 quantile {q:.1}), {} outcomes; drafted {drafted}, accepted {accepted}",
        exact.len()
    );
    assert!(chi < q, "speculative sampling under a grammar: chi-square {chi} over {q}");
    assert!(accepted > 0 && accepted < drafted, "both acceptance and rejection happen ({accepted} of {drafted})");
}

/// Under a JSON schema, greedy output with prompt lookup and with a draft model is plain
/// greedy's under the schema, on the CPU and on the GPU; sampled output follows the schema.
#[test]
fn speculation_under_a_json_schema_keeps_greedy_output_and_the_schema() {
    let colours = ["red", "green", "blue", "yellow"];
    let schema = json!({"type": "object", "properties": {"colours": {"type": "array", "items": {"enum": colours}, "minItems": 3, "maxItems": 6}}, "required": ["colours"], "additionalProperties": false});
    let valid = |g: &Generation| {
        assert_eq!(g.finish_reason, FinishReason::Stop, "the grammar completes: {:?}", g.text);
        let v: Value = serde_json::from_str(&g.text).unwrap_or_else(|e| panic!("{e}: {:?}", g.text));
        let items = v["colours"].as_array().unwrap();
        assert!(v.as_object().unwrap().len() == 1 && (3..=6).contains(&items.len()), "{v}");
        assert!(items.iter().all(|c| colours.contains(&c.as_str().unwrap())), "{v}");
    };
    for backend in [BackendKind::Cpu, BackendKind::Gpu] {
        let mut engine = Engine::load(&common::model_bytes(), &options(backend)).unwrap();
        let text = "Colours in JSON.\n{\"colours\": [\"red\", \"green\", \"blue\", \"yellow\"]}\n\
                    {\"colours\": [\"red\", \"green\", \"blue\", \"yellow\"]}\n";
        let prompt = engine.encode_prompt(text).unwrap();
        let p = SamplingParams { grammar: Some(Grammar::JsonSchema { schema: schema.clone() }), ..greedy(48) };
        let plain = run(&mut engine, &prompt, &p);
        valid(&plain);
        let lookup = run(&mut engine, &prompt, &SamplingParams { lookup: Some(3), ..p.clone() });
        eprintln!("{backend:?} lookup: drafted {}, accepted {}", lookup.drafted_tokens, lookup.accepted_tokens);
        assert_eq!(lookup.tokens, plain.tokens, "{backend:?} lookup");
        assert!(lookup.accepted_tokens >= 5, "{backend:?}: the answer repeats the prompt");
        assert_cache_holds_what_was_shown(&engine, &prompt, &lookup);

        engine.set_draft(Some(Engine::load(&common::model_bytes(), &options(backend)).unwrap())).unwrap();
        let drafted = run(&mut engine, &prompt, &p);
        eprintln!("{backend:?} draft: drafted {}, accepted {}", drafted.drafted_tokens, drafted.accepted_tokens);
        assert_eq!(drafted.tokens, plain.tokens, "{backend:?} draft model");
        assert!(drafted.accepted_tokens > 0);
        assert_cache_holds_what_was_shown(&engine, &prompt, &drafted);
        if backend == BackendKind::Cpu {
            for seed in 0..3 {
                let p = SamplingParams { temperature: 1.0, seed: Some(seed), lookup: Some(3), ..p.clone() };
                valid(&run(&mut engine, &prompt, &p));
            }
        }
    }
}

/// Prompt lookup's drafts are one-hot: accepted with the target's probability of the draft.
#[test]
fn sampling_with_prompt_lookup_keeps_the_target_distribution() {
    let mut engine = Engine::load(&common::model_bytes(), &options(BackendKind::Cpu)).unwrap();
    let prompt = engine.encode_prompt("one two three, one two three, one two three, one two").unwrap();
    let params = SamplingParams {
        temperature: 1.0,
        top_k: 4,
        top_p: 1.0,
        min_p: 0.0,
        lookup: Some(2),
        ..SamplingParams::default()
    };
    let exact = exact_joint(&mut engine, &prompt, &params, None);
    let (counts, drafted, accepted) = draws(&mut engine, &prompt, &params, DRAWS);
    let (chi, q) = chi_square(&counts, &exact, DRAWS);
    eprintln!("lookup: chi-square {chi:.1} (0.999 quantile {q:.1}); drafted {drafted}, accepted {accepted}");
    assert!(chi < q, "lookup sampling: chi-square {chi} over {q}");
    assert!(accepted > 0 && accepted < drafted, "both acceptance and rejection happen ({accepted} of {drafted})");
}

#[test]
fn bad_requests_are_typed_errors_and_the_engine_keeps_working() {
    let mut engine = Engine::load(&common::model_bytes(), &options(BackendKind::Cpu)).unwrap();
    let prompt = engine.encode_prompt("Hello").unwrap();
    for bad in [
        SamplingParams { draft_tokens: Some(16), ..greedy(4) },
        SamplingParams { lookup: Some(0), ..greedy(4) },
        SamplingParams { lookup: Some(9), ..greedy(4) },
    ] {
        let err = engine.generate(&prompt, &bad, &mut |_| true).unwrap_err();
        assert_eq!(err.code(), "invalid_argument", "{err}");
    }
    let qwen = Engine::load(&common::catalog_model_bytes("qwen2.5-coder-0.5b"), &options(BackendKind::Cpu)).unwrap();
    let err = engine.set_draft(Some(qwen)).unwrap_err();
    assert_eq!(err.code(), "invalid_argument");
    assert!(err.to_string().contains("vocabulary"), "{err}");
    assert!(engine.draft().is_none());
    run(&mut engine, &prompt, &greedy(4));
}
