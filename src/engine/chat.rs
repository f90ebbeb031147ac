//! Chat sessions over the engine's KV cache.

use super::*;

#[derive(Clone, Debug, Default)]
pub struct Chat {
    pub messages: Vec<Message>,
}

impl Chat {
    pub fn new(system: Option<&str>) -> Chat {
        let messages = system.map(|s| vec![Message::new("system", s)]).unwrap_or_default();
        Chat { messages }
    }

    /// [`Chat::send_async`], waiting for it (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn send(
        &mut self,
        engine: &mut Engine,
        user: &str,
        params: &SamplingParams,
        on_token: &mut dyn FnMut(&TokenEvent) -> bool,
    ) -> Result<Generation> {
        pollster::block_on(self.send_async(engine, user, params, on_token))
    }

    /// Add the user's message, generate the assistant's answer, and keep both in the history.
    pub async fn send_async(
        &mut self,
        engine: &mut Engine,
        user: &str,
        params: &SamplingParams,
        on_token: &mut dyn FnMut(&TokenEvent) -> bool,
    ) -> Result<Generation> {
        self.messages.push(Message::new("user", user));
        let result = match engine.encode_chat(&self.messages) {
            Ok(prompt) => engine.generate_async(&prompt, params, on_token).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(gen) => {
                self.messages.push(Message::new("assistant", gen.text.clone()));
                Ok(gen)
            }
            Err(e) => {
                self.messages.pop();
                Err(e)
            }
        }
    }
}
