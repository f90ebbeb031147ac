//! What a loaded model is, for the people choosing one: its catalog entry and its template
//! facts. The CLI's `info` and the package's `engine.info()` report these.

use serde::Serialize;

use crate::engine::Engine;
use crate::model::catalog;

/// A token as a report shows it: its id and its vocabulary string.
#[derive(Clone, Debug, Serialize)]
pub struct TokenFact {
    pub id: u32,
    pub text: String,
}

/// How the model expects its input and ends its output.
#[derive(Clone, Debug, Serialize)]
pub struct TemplateFacts {
    /// The model has its own chat template; without one it is a base model: raw completion only.
    pub has_chat_template: bool,
    /// Prompts start with the BOS token.
    pub add_bos: bool,
    pub bos: Option<TokenFact>,
    pub eos: Option<TokenFact>,
    /// The tokens that end a generation (EOS, EOT, end-of-turn control tokens).
    pub eog: Vec<TokenFact>,
}

pub fn template_facts(engine: &Engine) -> TemplateFacts {
    let tok = engine.tokenizer();
    let fact = |id: u32| TokenFact { id, text: tok.token_text(id).map_or_else(|| tok.piece(id), str::to_string) };
    TemplateFacts {
        has_chat_template: engine.has_chat_template(),
        add_bos: tok.add_bos(),
        bos: tok.bos_id().map(fact),
        eos: tok.eos_id().map(fact),
        eog: tok.eog_ids().iter().map(|&id| fact(id)).collect(),
    }
}

/// The catalog entry of a file, recognised by its name (the last component of a path or URL)
/// and size; `None` as the name (bytes with no name) matches nothing.
pub fn catalog_facts(name: Option<&str>, size: u64) -> catalog::Recognised {
    let file = name.map(|n| n.rsplit(['/', '\\']).next().unwrap_or(n));
    match file {
        Some(f) => catalog::recognise(f.split(['?', '#']).next().unwrap_or(f), size),
        None => catalog::Recognised { entry: None, matched: false, note: Some("the model has no file name".into()) },
    }
}
