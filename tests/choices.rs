//! n choices and best_of (src/engine/choices.rs): each choice is the same request run alone with
//! its seed (seed + index); the prompt's prefill is shared; best_of keeps the choices with the
//! highest mean log-probability; bad counts are typed errors.

mod common;

use webgpu_llm::engine::{BackendKind, Engine, EngineOptions};
use webgpu_llm::sampler::SamplingParams;

fn engine() -> Engine {
    let options = EngineOptions { backend: BackendKind::Cpu, context_size: Some(256), ..EngineOptions::default() };
    Engine::load(&common::model_bytes(), &options).unwrap()
}

fn params(seed: u64) -> SamplingParams {
    SamplingParams { seed: Some(seed), max_tokens: 12, temperature: 1.0, ..SamplingParams::default() }
}

#[test]
fn each_choice_is_the_request_alone_with_its_seed() {
    let mut e = engine();
    let prompt = e.encode_prompt("Once upon a time").unwrap();
    let mut streamed = vec![Vec::new(); 4];
    let choices = e
        .generate_choices(&prompt, &params(40), 4, None, &mut |i, t| {
            if let Some(tok) = &t.token {
                streamed[i].push(tok.token.id);
            }
            true
        })
        .unwrap();
    assert_eq!(choices.len(), 4);
    // Later choices reuse the cached prompt: one prompt token runs again to get its logits.
    assert_eq!(choices[0].generation.prefill_tokens, prompt.len());
    for (i, c) in choices.iter().enumerate() {
        assert_eq!((c.index, c.seed), (i, Some(40 + i as u64)));
        assert_eq!(streamed[i], c.generation.tokens, "choice {i} streamed with its index");
        if i > 0 {
            assert_eq!(c.generation.prefill_tokens, 1, "choice {i} shares the prefill");
        }
        let alone = e.generate(&prompt, &params(40 + i as u64), &mut |_| true).unwrap();
        assert_eq!(alone.tokens, c.generation.tokens, "choice {i}");
        assert_eq!(alone.text, c.generation.text);
    }
    let distinct: std::collections::HashSet<_> = choices.iter().map(|c| &c.generation.tokens).collect();
    assert!(distinct.len() > 1, "different seeds sample different texts");
}

#[test]
fn best_of_keeps_the_highest_mean_logprob() {
    let mut e = engine();
    let prompt = e.encode_prompt("The best way to learn a language is").unwrap();
    let all = e.generate_choices(&prompt, &params(7), 5, None, &mut |_, _| true).unwrap();
    let mut streamed = 0;
    let best = e
        .generate_choices(&prompt, &params(7), 2, Some(5), &mut |_, _| {
            streamed += 1;
            true
        })
        .unwrap();
    assert_eq!(streamed, 0, "best_of > n does not stream");
    let mut ranked: Vec<_> = all.iter().map(|c| (c.mean_logprob, c.seed)).collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    assert_eq!(best.len(), 2);
    for (i, c) in best.iter().enumerate() {
        assert_eq!(c.index, i);
        assert_eq!((c.mean_logprob, c.seed), ranked[i]);
    }
    // The mean is over the tokens' raw log-probabilities.
    let mut lp = Vec::new();
    e.generate(&prompt, &params(best[0].seed.unwrap()), &mut |t| {
        lp.extend(t.token.as_ref().map(|t| t.token.logprob as f64));
        true
    })
    .unwrap();
    assert!((lp.iter().sum::<f64>() / lp.len() as f64 - best[0].mean_logprob).abs() < 1e-9);
}

#[test]
fn bad_counts_are_typed_errors_and_the_engine_keeps_working() {
    let mut e = engine();
    let prompt = e.encode_prompt("Hi").unwrap();
    for (n, best_of) in [(0, None), (17, None), (3, Some(2)), (2, Some(17))] {
        let err = e.generate_choices(&prompt, &params(1), n, best_of, &mut |_, _| true).unwrap_err();
        assert_eq!(err.code(), "invalid_argument", "n {n}, best_of {best_of:?}: {err}");
    }
    assert_eq!(e.generate_choices(&prompt, &params(1), 1, None, &mut |_, _| true).unwrap().len(), 1);
}
