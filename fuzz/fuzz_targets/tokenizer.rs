//! Any bytes as a GGUF file whose metadata builds a tokenizer and a chat template; a tokenizer
//! that builds must encode and decode text.
#![no_main]
use libfuzzer_sys::fuzz_target;
use webgpu_llm::gguf::Gguf;
use webgpu_llm::chat::{ChatTemplate, Message};
use webgpu_llm::tokenizer::{Detokenizer, Tokenizer};

fuzz_target!(|data: &[u8]| {
    let Ok(g) = Gguf::parse(data) else { return };
    let Ok(tok) = Tokenizer::from_gguf(&g) else { return };
    for text in ["Hello, world!", " <|im_end|> ünïcødé 日本 🦀\n\n", ""] {
        for special in [false, true] {
            if let Ok(ids) = tok.encode(text, special) {
                let _ = tok.decode(&ids, special);
                let mut d = Detokenizer::new(&tok);
                ids.iter().for_each(|&id| drop(d.push(id)));
                d.flush();
            }
        }
    }
    if let Ok(Some(t)) = ChatTemplate::from_gguf(&g, &tok) {
        let m = Message::new("user", "Hi <|im_end|>");
        let _ = t.encode(&tok, &[m], true);
    }
});
