//! The engine on the default model: greedy output against llama.cpp, chat turns that reuse the KV
//! cache, stop strings, limits, seeds, abort.

mod common;
use common::*;
use webgpu_llm::chat::{ChatTemplate, Message};
use webgpu_llm::engine::{BackendKind, Chat, Engine, EngineOptions, FinishReason};
use webgpu_llm::sampler::SamplingParams;
use webgpu_llm::Error;

/// The exact CPU path, so that greedy answers are llama.cpp's f32 reference answers.
fn engine(context: Option<usize>) -> Engine {
    let options =
        EngineOptions { backend: BackendKind::Cpu, context_size: context, exact_cpu: true, ..EngineOptions::default() };
    Engine::load(&model_bytes(), &options).unwrap()
}

fn greedy(max_tokens: usize) -> SamplingParams {
    SamplingParams { temperature: 0.0, max_tokens, ..SamplingParams::default() }
}

fn user(text: &str) -> Message {
    Message::new("user", text)
}

#[test]
fn chat_answer_matches_llama_cpp_and_stops_at_end_of_turn() {
    let mut e = engine(None);
    let g = golden_json("chat_capital.json");
    let prompt = e.encode_chat(&[user("What is the capital of France?")]).unwrap();
    assert_eq!(prompt, ids(&g["prompt_token_ids"]));
    let mut streamed = String::new();
    let mut infos = Vec::new();
    let gen = e
        .generate(&prompt, &greedy(48), &mut |t| {
            streamed.push_str(t.text);
            infos.extend(t.token.clone());
            true
        })
        .unwrap();
    // Each token is reported once; greedy picks with certainty, and the raw log-probability of
    // the first answer token is log softmax of llama.cpp's logits (within f32 rounding).
    assert_eq!(infos.iter().map(|i| i.token.id).collect::<Vec<_>>(), gen.tokens);
    assert!(infos.iter().all(|i| i.token.prob == 1.0 && i.token.logprob <= 0.0));
    let logits = golden_f32("chat_capital.f32_reference.logits0.f32");
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let log_z = max + logits.iter().map(|&l| (l as f64 - max).exp()).sum::<f64>().ln();
    let want = logits[gen.tokens[0] as usize] as f64 - log_z;
    assert!((infos[0].token.logprob as f64 - want).abs() < 1e-3, "{} vs {want}", infos[0].token.logprob);
    let r = &g["f32_reference"];
    let eog_at = r["first_eog_index"].as_u64().unwrap() as usize;
    assert_eq!(gen.tokens, ids(&r["generated_token_ids"])[..eog_at]);
    assert_eq!(gen.text, r["generated_text_until_eog"].as_str().unwrap());
    assert_eq!(gen.text, "The capital of France is Paris.");
    assert_eq!((gen.finish_reason, streamed), (FinishReason::Stop, gen.text.clone()));
    // Every answer token was fed back (the end-of-turn token that followed needs no step).
    assert_eq!(gen.decoded_tokens, gen.tokens.len());
}

/// A second turn runs only its new tokens, and gives exactly what a fresh engine computes from
/// scratch for the same conversation.
/// Chats render with the model's own template; without one (a base model's file has none) a
/// chat is an error until a template is chosen explicitly, and raw prompts work either way.
#[test]
fn chats_need_a_template_and_none_is_made_up() {
    let mut e = engine(None);
    assert!(e.has_chat_template());
    let own = e.encode_chat(&[user("Hi")]).unwrap();
    e.set_chat_template(None);
    assert!(!e.has_chat_template() && e.template().is_none());
    let refused = e.encode_chat(&[user("Hi")]);
    assert!(matches!(&refused, Err(Error::InvalidArgument(m)) if m.contains("no chat template")), "{refused:?}");
    assert!(!e.encode_prompt("Hi").unwrap().is_empty());
    e.set_chat_template(Some(ChatTemplate::chatml(e.tokenizer())));
    let chatml = e.encode_chat(&[user("Hi")]).unwrap();
    // Plain ChatML, without SmolLM's default system turn.
    assert_eq!(e.tokenizer().decode(&chatml, true), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    assert!(own.len() > chatml.len());
}

#[test]
fn chat_turns_reuse_the_kv_cache() {
    let mut e = engine(None);
    let mut chat = Chat::new(None);
    let params = greedy(24);
    let first = chat.send(&mut e, "What is the capital of France?", &params, &mut |_| true).unwrap();
    assert_eq!(first.reused_tokens, 0);
    let second = chat.send(&mut e, "And of Germany?", &params, &mut |_| true).unwrap();
    let total = second.prompt_tokens.len();
    // Everything of turn one (prompt and answer) was cached; only the new message ran.
    assert!(second.reused_tokens >= first.prompt_tokens.len() + first.tokens.len() - 1, "{}", second.reused_tokens);
    assert_eq!(second.prefill_tokens, total - second.reused_tokens);
    assert!(second.prefill_tokens < 20, "{} new tokens", second.prefill_tokens);
    assert_eq!(chat.messages.len(), 4);

    let mut fresh = engine(None);
    let again = fresh.generate(&second.prompt_tokens, &params, &mut |_| true).unwrap();
    assert_eq!(again.reused_tokens, 0);
    assert_eq!(again.tokens, second.tokens);
}

#[test]
fn stop_strings_spanning_tokens_end_generation_without_showing_them() {
    let mut e = engine(None);
    let g = golden_json("raw_story.json");
    let pieces: Vec<String> = g["f32_reference"]["generated_pieces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    // A stop string made of the end of piece 5 and the start of piece 6.
    let (a, b) = (&pieces[5], &pieces[6]);
    assert!(a.len() >= 2 && b.len() >= 2, "{a:?} {b:?}");
    let stop = format!("{}{}", &a[a.len() - 2..], &b[..2]);
    let prefix: String = pieces[..5].concat() + &a[..a.len() - 2];
    assert!(!prefix.contains(&stop));
    let params = SamplingParams { stop: vec![stop.clone()], ..greedy(48) };
    let prompt = ids(&g["prompt_token_ids"]);
    let mut streamed = Vec::new();
    let gen = e
        .generate(&prompt, &params, &mut |t| {
            streamed.push(t.text.to_string());
            true
        })
        .unwrap();
    assert_eq!(gen.finish_reason, FinishReason::Stop);
    assert_eq!(gen.text, prefix);
    assert_eq!(streamed.concat(), prefix);
    assert_eq!(gen.tokens.len(), 7);
    // The text before the stop string's first character was held back, not lost.
    assert!(streamed.iter().any(String::is_empty));
}

#[test]
fn limits_end_generation_with_length_and_overflow_is_an_error_before_work() {
    let mut e = engine(Some(40));
    let prompt = e.encode_prompt("Once upon a time").unwrap();
    let gen = e.generate(&prompt, &greedy(5), &mut |_| true).unwrap();
    assert_eq!((gen.finish_reason, gen.tokens.len()), (FinishReason::Length, 5));
    assert_eq!(gen.decoded_tokens, 4, "the fifth token ends generation without a step");
    // The context fills up: generation stops with Length at capacity.
    let bans = e.tokenizer().eog_ids().iter().map(|&id| (id, f32::NEG_INFINITY)).collect();
    let params = SamplingParams { logit_bias: bans, ..greedy(1000) };
    let gen = e.generate(&prompt, &params, &mut |_| true).unwrap();
    assert_eq!(gen.finish_reason, FinishReason::Length);
    assert_eq!(prompt.len() + gen.tokens.len(), 41, "the last token is sampled but never needs a slot");
    // A prompt longer than the context fails before any work.
    let long = e.encode_prompt(&"word ".repeat(60)).unwrap();
    let cached = e.cached_tokens().to_vec();
    match e.generate(&long, &greedy(5), &mut |_| true) {
        Err(Error::ContextOverflow { needed, capacity }) => assert_eq!((needed, capacity), (long.len(), 40)),
        other => panic!("{other:?}"),
    }
    assert_eq!(e.cached_tokens(), cached);
    assert!(matches!(e.generate(&[], &greedy(5), &mut |_| true), Err(Error::InvalidArgument(_))));
    assert!(matches!(e.generate(&[49152], &greedy(5), &mut |_| true), Err(Error::InvalidArgument(_))));
}

#[test]
fn seeds_reproduce_and_abort_leaves_the_engine_usable() {
    let mut e = engine(None);
    let prompt = e.encode_chat(&[user("Write a poem about the sea.")]).unwrap();
    let params =
        |seed| SamplingParams { temperature: 1.0, seed: Some(seed), max_tokens: 16, ..SamplingParams::default() };
    let a = e.generate(&prompt, &params(7), &mut |_| true).unwrap();
    let b = e.generate(&prompt, &params(7), &mut |_| true).unwrap();
    let c = e.generate(&prompt, &params(8), &mut |_| true).unwrap();
    assert_eq!(a.tokens, b.tokens);
    assert_ne!(a.tokens, c.tokens);
    assert!(b.reused_tokens > 0, "the same prompt again is served from the cache");

    let mut seen = 0;
    let stopped = e
        .generate(&prompt, &params(7), &mut |_| {
            seen += 1;
            seen < 3
        })
        .unwrap();
    assert_eq!((stopped.finish_reason, stopped.tokens.len()), (FinishReason::Abort, 3));
    assert_eq!(stopped.tokens, a.tokens[..3]);
    let after = e.generate(&prompt, &params(7), &mut |_| true).unwrap();
    assert_eq!(after.tokens, a.tokens);
}

#[test]
fn bad_options_are_typed_errors() {
    let bytes = model_bytes();
    let zero = EngineOptions { context_size: Some(0), ..EngineOptions::default() };
    assert!(matches!(Engine::load(&bytes, &zero), Err(Error::InvalidArgument(_))));
    assert!(matches!(Engine::load(&bytes[..1000], &EngineOptions::default()), Err(Error::BadModel(_))));
    let mut e = engine(Some(64));
    let bad = SamplingParams { top_p: 0.0, ..SamplingParams::default() };
    assert!(matches!(e.generate(&[1, 2], &bad, &mut |_| true), Err(Error::InvalidArgument(_))));
}

#[test]
fn retuned_knobs_apply_from_the_next_token() {
    let mut e = engine(None);
    let prompt = e.encode_chat(&[user("Write a poem about the sea.")]).unwrap();
    let sampled = SamplingParams { temperature: 1.0, seed: Some(7), max_tokens: 12, ..SamplingParams::default() };
    let plain = e.generate(&prompt, &sampled, &mut |_| true).unwrap();
    let retune = e.retune();
    assert!(matches!(retune.set(SamplingParams { top_p: 2.0, ..greedy(1) }), Err(Error::InvalidArgument(_))));
    let mut seen = 0;
    let gen = e
        .generate(&prompt, &sampled, &mut |t| {
            seen += t.token.is_some() as usize;
            if seen == 3 {
                // Greedy from here on; the running generation keeps its max_tokens of 12.
                retune.set(greedy(1)).unwrap();
            }
            true
        })
        .unwrap();
    assert_eq!(gen.tokens[..3], plain.tokens[..3]);
    assert_eq!(gen.tokens.len(), 12);
    let mut context = prompt.clone();
    context.extend_from_slice(&gen.tokens[..3]);
    let greedy_rest = e.generate(&context, &greedy(9), &mut |_| true).unwrap();
    assert_eq!(gen.tokens[3..], greedy_rest.tokens[..]);
    assert_ne!(gen.tokens, plain.tokens, "the knobs did change the output");
    // The generation records which knobs sampled which tokens.
    let record: Vec<(usize, f32)> = gen.sampling.iter().map(|c| (c.from_token, c.params.temperature)).collect();
    assert_eq!(record, [(0, 1.0), (3, 0.0)]);
    assert_eq!(gen.sampling[1].params.max_tokens, 12, "the record keeps the running generation's limit");
    assert_eq!(plain.sampling.len(), 1);
}

#[test]
fn tokens_carry_their_alternatives() {
    let mut e = engine(None);
    let prompt = e.encode_prompt("The capital of France is").unwrap();
    let p = SamplingParams {
        top_logprobs: 4,
        temperature: 0.8,
        top_k: 2,
        top_p: 1.0,
        min_p: 0.0,
        seed: Some(3),
        max_tokens: 4,
        ..SamplingParams::default()
    };
    let mut infos = Vec::new();
    e.generate(&prompt, &p, &mut |t| {
        infos.extend(t.token.clone());
        true
    })
    .unwrap();
    assert_eq!(infos.len(), 4);
    for t in &infos {
        assert_eq!(t.top.len(), 4);
        // top_k 2: exactly the two most likely tokens survive, and the drawn one is among them.
        assert!(t.top[..2].iter().all(|a| a.prob > 0.0) && t.top[2..].iter().all(|a| a.prob == 0.0));
        assert!(t.top.windows(2).all(|w| w[0].logprob >= w[1].logprob));
        let sum: f32 = t.top.iter().map(|a| a.prob).sum();
        assert!((sum - 1.0).abs() < 1e-5, "{sum}");
        let me = t.top.iter().find(|a| a.id == t.token.id).expect("the drawn token is among the top two");
        assert_eq!(me, &t.token);
        assert_eq!(me.text, e.tokenizer().piece(me.id));
    }
}

#[test]
fn a_pause_between_tokens_can_stop_the_generation() {
    use std::cell::Cell;
    use std::rc::Rc;
    let mut e = engine(None);
    let prompt = e.encode_prompt("Once upon a time").unwrap();
    let calls = Rc::new(Cell::new(0));
    let counter = calls.clone();
    e.set_pause(Some(Box::new(move || {
        counter.set(counter.get() + 1);
        let go_on = counter.get() < 2;
        Box::pin(async move { go_on })
    })));
    let gen = e.generate(&prompt, &greedy(10), &mut |_| true).unwrap();
    assert_eq!((gen.finish_reason, gen.tokens.len(), calls.get()), (FinishReason::Abort, 2, 2));
    e.set_pause(None);
    let whole = e.generate(&prompt, &greedy(10), &mut |_| true).unwrap();
    assert_eq!(whole.tokens[..2], gen.tokens[..]);
}

/// A conversation past the context: the oldest turns go (the system prompt and the last turn
/// stay) until the prompt leaves the reserve free; a last turn that cannot fit is an error.
#[test]
fn long_conversations_drop_their_oldest_turns() {
    let e = engine(Some(96));
    let msg = |role: &str, content: &str| Message::new(role, content);
    let mut messages = vec![msg("system", "Be brief.")];
    for i in 0..6 {
        messages.push(msg("user", &format!("Question {i}: tell me something about the number {i}, please.")));
        messages.push(msg("assistant", &format!("The number {i} is a number that comes after {}.", i - 1)));
    }
    messages.push(msg("user", "And the last question?"));
    assert!(e.encode_chat(&messages).unwrap().len() > 96, "the whole conversation does not fit");

    let (ids, dropped) = e.encode_chat_fitting(&messages, 16).unwrap();
    assert!(ids.len() <= 96 - 16, "{} tokens", ids.len());
    assert!(dropped > 0 && dropped % 2 == 0, "whole turns go: {dropped}");
    let kept: Vec<Message> = [&messages[..1], &messages[1 + dropped..]].concat();
    assert_eq!(ids, e.encode_chat(&kept).unwrap());
    // Only as many as needed: one more turn would not have fitted.
    let one_more: Vec<Message> = [&messages[..1], &messages[dropped - 1..]].concat();
    assert!(e.encode_chat(&one_more).unwrap().len() > 96 - 16);
    // Everything fits: nothing dropped, the same ids as encode_chat.
    let short = &messages[..3];
    assert_eq!(e.encode_chat_fitting(short, 16).unwrap(), (e.encode_chat(short).unwrap(), 0));
    // A last turn longer than the context itself.
    let huge = [msg("system", "Be brief."), msg("user", &"word ".repeat(200))];
    assert!(matches!(e.encode_chat_fitting(&huge, 16), Err(Error::ContextOverflow { capacity: 96, .. })));
}

/// With a pause (as in the browser) a prompt runs in pieces: the same answer as in one step, and
/// an abort between pieces stops during prefill with the pieces already run kept in the cache.
#[test]
fn prefill_in_pieces_answers_the_same_and_can_be_aborted() {
    let mut whole = engine(None);
    let prompt = whole.encode_prompt(&"The river runs past the old mill and the stone bridge. ".repeat(12)).unwrap();
    assert!(prompt.len() > 128, "the prompt spans several pieces: {}", prompt.len());
    let want = whole.generate(&prompt, &greedy(4), &mut |_| true).unwrap();

    let mut paused = engine(None);
    paused.set_pause(Some(Box::new(|| Box::pin(async { true }))));
    let got = paused.generate(&prompt, &greedy(4), &mut |_| true).unwrap();
    assert_eq!(got.tokens, want.tokens);

    let mut aborted = engine(None);
    aborted.set_pause(Some(Box::new(|| Box::pin(async { false }))));
    let gen = aborted.generate(&prompt, &greedy(4), &mut |_| panic!("no token after an abort in prefill")).unwrap();
    assert_eq!((gen.finish_reason, gen.tokens.len()), (FinishReason::Abort, 0));
    assert_eq!(aborted.cached_tokens(), &prompt[..64], "the first piece stays in the cache");
    // The engine goes on from there.
    aborted.set_pause(None);
    let again = aborted.generate(&prompt, &greedy(4), &mut |_| true).unwrap();
    assert_eq!((again.tokens, again.reused_tokens), (want.tokens, 64));
}
