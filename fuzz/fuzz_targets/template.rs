//! Any text as a chat template (up to the first NUL byte; the rest is the messages' text),
//! rendered with the runtime's limits. Loops, recursion and huge strings must end in an error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use webgpu_llm::chat::{ChatTemplate, Message};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (source, rest) = text.split_once('\0').unwrap_or((&text, "hello"));
    let Ok(t) = ChatTemplate::new(source, "<s>", "</s>") else { return };
    let messages: Vec<Message> = ["system", "user", "assistant"]
        .iter()
        .zip(rest.split('\0').chain(std::iter::repeat("")))
        .map(|(role, content)| Message::new(*role, content))
        .collect();
    let _ = t.render(&messages, true);
    let _ = t.render(&messages[..1], false);
});
