//! Constrained decoding: a JSON schema, "any JSON object" or a Lark grammar becomes a token mask
//! at every step (llguidance), so the output always parses.
//!
//! [`Grammar`] is what a request asks for ([`crate::sampler::SamplingParams::grammar`]).
//! [`Constraints`] is built once per model from its [`Tokenizer`] (llguidance's token trie:
//! every token's bytes; control tokens get llguidance's `0xFF` marker in front, so no text
//! grammar can produce them; the end-of-generation ids are its EOS set). [`Constraint`] is one
//! generation's parser: [`Constraint::mask`] sets the logit of every token the grammar does not
//! allow to `-inf` (the whole vector: the engine asks the backend for full logits while a
//! constraint is active, which keeps sampling exact), [`Constraint::commit`] advances it.

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{ApproximateTokEnv, TokEnv, TokRxInfo, TokTrie};
use llguidance::{Matcher, ParserFactory};
use web_time::Instant;

use crate::error::{Error, Result};
use crate::sampler::Logits;
use crate::tokenizer::Tokenizer;

/// What the output must match.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Grammar {
    /// Any JSON object (OpenAI's `response_format: {type: "json_object"}`).
    JsonObject,
    /// A JSON value valid under `schema` (a JSON Schema).
    JsonSchema { schema: serde_json::Value },
    /// A Lark grammar in llguidance's dialect (`start: …`; `%json {…}` embeds a schema).
    Lark { grammar: String },
}

impl Grammar {
    /// OpenAI's `response_format`: `{type: "text"}` (no constraint), `{type: "json_object"}`, or
    /// `{type: "json_schema", json_schema: {schema, name?, strict?}}`.
    pub fn from_response_format(v: &serde_json::Value) -> Result<Option<Grammar>> {
        let bad = |why: &str| Error::InvalidArgument(format!("response_format: {why}"));
        match v.get("type").and_then(|t| t.as_str()) {
            Some("text") => Ok(None),
            Some("json_object") => Ok(Some(Grammar::JsonObject)),
            Some("json_schema") => {
                let schema = v
                    .get("json_schema")
                    .and_then(|j| j.get("schema"))
                    .ok_or_else(|| bad("json_schema needs a `schema`"))?;
                Ok(Some(Grammar::JsonSchema { schema: schema.clone() }))
            }
            Some(other) => Err(bad(&format!("unknown type {other:?} (text, json_object or json_schema)"))),
            None => Err(bad("needs a `type`")),
        }
    }

    fn top_level(&self) -> Result<TopLevelGrammar> {
        Ok(match self {
            Grammar::JsonObject => TopLevelGrammar::from_json_schema(compact(serde_json::json!({ "type": "object" }))),
            Grammar::JsonSchema { schema } => {
                if !(schema.is_object() || schema.is_boolean()) {
                    return Err(Error::InvalidArgument(format!(
                        "json_schema: a schema is an object or a boolean, got {schema}"
                    )));
                }
                TopLevelGrammar::from_json_schema(compact(schema.clone()))
            }
            Grammar::Lark { grammar } => TopLevelGrammar::from_lark(grammar.clone()),
        })
    }

    fn kind(&self) -> &'static str {
        match self {
            Grammar::JsonObject => "json_object",
            Grammar::JsonSchema { .. } => "json_schema",
            Grammar::Lark { .. } => "grammar",
        }
    }
}

/// JSON written as Python's `json.dumps` writes it (`", "` and `": "`, no other whitespace): what
/// models were trained on, and no run of spaces or newlines that a sampled answer could wander
/// into without end (llguidance's default allows any whitespace between tokens). A schema's own
/// `x-guidance` options win.
pub(crate) fn compact(mut schema: serde_json::Value) -> serde_json::Value {
    if let Some(o) = schema.as_object_mut() {
        o.entry("x-guidance").or_insert_with(
            || serde_json::json!({ "whitespace_flexible": false, "item_separator": ", ", "key_separator": ": " }),
        );
    }
    schema
}

/// A model's vocabulary as llguidance sees it; built once, shared by every [`Constraint`].
pub struct Constraints {
    factory: Arc<ParserFactory>,
    eog: Vec<u32>,
}

impl Constraints {
    pub fn new(tokenizer: &Tokenizer) -> Result<Constraints> {
        let n = tokenizer.vocab_size();
        let words: Vec<Vec<u8>> = (0..n as u32)
            .map(|id| match tokenizer.is_control(id) {
                true => {
                    let mut w = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                    w.extend_from_slice(tokenizer.token_text(id).unwrap_or_default().as_bytes());
                    w
                }
                false => tokenizer.token_bytes(id).to_vec(),
            })
            .collect();
        let mut eog = tokenizer.eog_ids().to_vec();
        if eog.is_empty() {
            eog.extend(tokenizer.eos_id());
        }
        let first = *eog
            .first()
            .ok_or_else(|| Error::InvalidArgument("constrained output needs an end-of-generation token".into()))?;
        let info = TokRxInfo::new(n as u32, first);
        let trie = TokTrie::from(&info, &words).with_eos_tokens(&eog);
        let env: TokEnv = Arc::new(ApproximateTokEnv::new(trie));
        let mut factory =
            ParserFactory::new_simple(&env).map_err(|e| Error::InvalidArgument(format!("grammar: {e}")))?;
        factory.quiet();
        Ok(Constraints { factory: Arc::new(factory), eog })
    }

    /// A parser for one generation. A grammar that does not compile (a schema that is not a
    /// schema, a feature llguidance does not implement, a Lark syntax error) is
    /// `invalid_argument` with llguidance's reason.
    pub fn start(&self, grammar: &Grammar) -> Result<Constraint> {
        let kind = grammar.kind();
        let parser = self
            .factory
            .create_parser(grammar.top_level()?)
            .map_err(|e| Error::InvalidArgument(format!("{kind}: {e}")))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(Error::InvalidArgument(format!("{kind}: {e}")));
        }
        Ok(Constraint { matcher, eog: self.eog.clone(), mask_secs: 0.0, masks: 0 })
    }
}

/// One generation's grammar state.
pub struct Constraint {
    matcher: Matcher,
    eog: Vec<u32>,
    /// Time spent computing masks, and how many.
    pub mask_secs: f64,
    pub masks: usize,
}

impl Constraint {
    /// Full logits with every token the grammar forbids at `-inf`. End-of-generation tokens are
    /// allowed exactly when the grammar is complete.
    pub fn mask(&mut self, logits: Logits) -> Result<Logits> {
        let Logits::Full(mut l) = logits else {
            return Err(Error::InvalidArgument("a constrained step needs the full logits".into()));
        };
        self.mask_row(&mut l)?;
        Ok(Logits::Full(l))
    }

    /// [`Constraint::mask`] on one row of logits, in place.
    pub fn mask_row(&mut self, l: &mut [f32]) -> Result<()> {
        let started = Instant::now();
        let mask = self.matcher.compute_mask_or_eos().map_err(grammar_error)?;
        let eog_ok = self.eog.iter().any(|&id| mask.is_allowed(id));
        for (id, x) in l.iter_mut().enumerate() {
            let id = id as u32;
            // A padded vocabulary (logits past the tokenizer's ids) is never allowed.
            let allowed = match (id as usize) < mask.len() {
                true => mask.is_allowed(id) || (eog_ok && self.eog.contains(&id)),
                false => false,
            };
            if !allowed {
                *x = f32::NEG_INFINITY;
            }
        }
        self.mask_secs += started.elapsed().as_secs_f64();
        self.masks += 1;
        Ok(())
    }

    /// Undo the last `n` [`Constraint::commit`]s (speculative decoding follows drafts that
    /// are then shown, or not, one by one).
    pub fn rollback(&mut self, n: usize) -> Result<()> {
        self.matcher.rollback(n).map_err(grammar_error)
    }

    /// The token was chosen.
    pub fn commit(&mut self, id: u32) -> Result<()> {
        self.matcher.consume_token(id).map_err(grammar_error)
    }

    /// The grammar cannot go on: the output is complete.
    pub fn is_done(&self) -> bool {
        self.matcher.is_stopped()
    }
}

fn grammar_error(e: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("grammar: {e}"))
}
