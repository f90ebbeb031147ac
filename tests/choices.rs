//! n choices and best_of (src/engine/choices.rs): each choice is the same request run alone with
//! its seed (seed + index), decoded as one batch (one backend step per token of all live
//! choices) on the CPU and the GPU, or one after another when their regions do not fit the
//! context; the prompt's prefill is shared; best_of keeps the choices with the highest mean
//! log-probability; bad counts are typed errors.

mod common;

use webgpu_llm::engine::{BackendKind, Choice, Engine, EngineOptions};
use webgpu_llm::sampler::SamplingParams;

fn engine() -> Engine {
    engine_on(BackendKind::Cpu)
}

fn engine_on(backend: BackendKind) -> Engine {
    let options = EngineOptions { backend, context_size: Some(256), ..EngineOptions::default() };
    Engine::load(&common::model_bytes(), &options).unwrap()
}

fn params(seed: u64) -> SamplingParams {
    SamplingParams { seed: Some(seed), max_tokens: 12, temperature: 1.0, ..SamplingParams::default() }
}

/// Choices of `params` and each one's tokens streamed under its index.
fn choices(e: &mut Engine, prompt: &[u32], params: &SamplingParams, n: usize) -> (Vec<Choice>, Vec<Vec<u32>>) {
    let mut streamed = vec![Vec::new(); n];
    let choices = e
        .generate_choices(prompt, params, n, None, &mut |i, t| {
            if let Some(tok) = &t.token {
                streamed[i].push(tok.token.id);
            }
            true
        })
        .unwrap();
    (choices, streamed)
}

#[test]
fn each_choice_is_the_request_alone_with_its_seed_decoded_as_one_batch() {
    for backend in [BackendKind::Cpu, BackendKind::Gpu] {
        let mut e = engine_on(backend);
        let prompt = e.encode_prompt("Once upon a time").unwrap();
        // A repetition penalty: each choice's window is its own tokens.
        let params = SamplingParams { repetition_penalty: 1.3, ..params(40) };
        let (choices, streamed) = choices(&mut e, &prompt, &params, 4);
        assert_eq!(choices.len(), 4);
        // Afterwards the cache holds the prompt and choice 0's tokens, as after a generation.
        let fed = &choices[0].generation.tokens[..choices[0].generation.decoded_tokens];
        assert_eq!(e.cached_tokens(), [&prompt[..], fed].concat(), "{backend:?}");
        // One prefill; then one step per token of all live choices together.
        assert_eq!(choices[0].generation.prefill_tokens, prompt.len());
        let longest = choices.iter().map(|c| c.generation.decoded_tokens).max().unwrap();
        assert_eq!(choices[0].generation.decode_work.steps, longest as u64, "{backend:?}: one step per batch");
        for (i, c) in choices.iter().enumerate() {
            assert_eq!((c.index, c.seed), (i, Some(40 + i as u64)));
            assert_eq!(streamed[i], c.generation.tokens, "choice {i} streamed with its index");
            if i > 0 {
                assert_eq!((c.generation.prefill_tokens, c.generation.reused_tokens), (0, prompt.len()));
            }
            let p = SamplingParams { seed: Some(40 + i as u64), ..params.clone() };
            let alone = e.generate(&prompt, &p, &mut |_| true).unwrap();
            assert_eq!(alone.tokens, c.generation.tokens, "{backend:?}: choice {i}");
            assert_eq!(
                (alone.text.as_str(), alone.finish_reason),
                (c.generation.text.as_str(), c.generation.finish_reason)
            );
        }
        let distinct: std::collections::HashSet<_> = choices.iter().map(|c| &c.generation.tokens).collect();
        assert!(distinct.len() > 1, "different seeds sample different texts");
    }
}

/// Regions of max_tokens - 1 slots for every choice past the context: the choices run one
/// after another (each later one reruns one prompt token), with the same tokens.
#[test]
fn choices_that_do_not_fit_side_by_side_run_one_after_another() {
    let mut e = engine();
    let prompt = e.encode_prompt("Once upon a time").unwrap();
    let batched = SamplingParams { max_tokens: 40, ..params(3) };
    let (together, _) = choices(&mut e, &prompt, &batched, 3);
    assert_eq!(together[1].generation.prefill_tokens, 0);
    // 3 × 99 slots do not fit 256 positions.
    let long = SamplingParams { max_tokens: 100, ..batched.clone() };
    let (apart, streamed) = choices(&mut e, &prompt, &long, 3);
    for (i, c) in apart.iter().enumerate() {
        assert_eq!(streamed[i], c.generation.tokens);
        if i > 0 {
            assert_eq!(c.generation.prefill_tokens, 1, "choice {i} reruns one prompt token");
        }
        let n = together[i].generation.tokens.len();
        assert_eq!(&c.generation.tokens[..n], &together[i].generation.tokens[..], "choice {i}");
    }
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

/// Under a grammar each choice of the batch has its own matcher: every one matches, and each
/// equals the request alone.
#[test]
fn batched_choices_each_follow_the_grammar() {
    let mut e = engine();
    let prompt = e.encode_prompt("Is the sun hot? Answer:").unwrap();
    let lark = r#"start: " " ("yes" | "no" | "maybe") "." "#;
    let grammar = Some(webgpu_llm::constraint::Grammar::Lark { grammar: lark.into() });
    let params = SamplingParams { temperature: 1.5, grammar, ..params(11) };
    let (choices, _) = choices(&mut e, &prompt, &params, 4);
    assert_eq!(
        choices[0].generation.decode_work.steps as usize,
        choices.iter().map(|c| c.generation.decoded_tokens).max().unwrap()
    );
    for (i, c) in choices.iter().enumerate() {
        assert!(
            [" yes.", " no.", " maybe."].contains(&c.generation.text.as_str()),
            "choice {i}: {:?}",
            c.generation.text
        );
        let alone = e.generate(&prompt, &SamplingParams { seed: Some(11 + i as u64), ..params.clone() }, &mut |_| true);
        assert_eq!(alone.unwrap().tokens, c.generation.tokens, "choice {i}");
    }
}
