//! Any JSON as sampling parameters: validation accepts or rejects them with a typed error, and
//! accepted ones sample from awkward logits (ties, -inf, NaN, huge values) without a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use webgpu_llm::sampler::{Logits, LogitsRequest, Sampler, SamplingParams};

fuzz_target!(|data: &[u8]| {
    let Ok(params) = serde_json::from_slice::<SamplingParams>(data) else { return };
    if params.validate().is_err() {
        assert!(Sampler::new(params).is_err(), "the sampler takes what validate refuses");
        return;
    }
    let Ok(mut sampler) = Sampler::new(params) else { panic!("validate accepted it") };
    let vocab = 300;
    let logits: Vec<f32> = (0..vocab)
        .map(|i| match i % 7 {
            0 => f32::NEG_INFINITY,
            1 => 1e30,
            2 => (i / 7) as f32 * 0.25,
            _ => ((i * 37) % 11) as f32 - 5.0,
        })
        .collect();
    let history: Vec<u32> = (0..40).map(|i| (i * 13) % vocab as u32).collect();
    for step in 0..3 {
        let _ = sampler.sample(&logits, &history[..20 + step]);
        match sampler.request(&history, &history[30..]) {
            LogitsRequest::Full => {}
            LogitsRequest::Shortlist { .. } => {
                let _ = sampler.sample_from(&Logits::Full(logits.clone()), &history);
            }
        }
    }
});
