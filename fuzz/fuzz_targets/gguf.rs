//! Any bytes as a GGUF file: parse it, read the model's configuration and check its weights.
//! Every failure must be a typed error, never a panic, a hang or a huge allocation.
#![no_main]
use libfuzzer_sys::fuzz_target;
use webgpu_llm::gguf::{Gguf, Header};
use webgpu_llm::model::{Config, Weights};

fuzz_target!(|data: &[u8]| {
    // The streamed load parses a header from a prefix of a file of known size.
    let _ = Header::parse_prefix(&data[..data.len() / 2], data.len() as u64);
    let Ok(g) = Gguf::parse(data) else { return };
    let _ = g.tensor_bytes();
    if let Ok(c) = Config::from_gguf(&g) {
        let _ = Weights::from_gguf(&g, &c);
    }
});
