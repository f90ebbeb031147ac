//! Text ↔ token ids.
//!
//! The tokenizer is HF `tokenizers`, built from the GGUF vocabulary (`tokenizer.ggml.*`) or from a
//! `tokenizer.json`. Two kinds of GGUF vocabulary are supported:
//! - `gpt2`: byte-level BPE with merges, with the pre-tokenizer named by `tokenizer.ggml.pre`
//!   (smollm, gpt2/starcoder, llama3, qwen2);
//! - `llama`: SentencePiece BPE (Llama 2, TinyLlama, Mistral) with byte fallback; merges are
//!   derived from the vocabulary scores.
//!
//! Detokenization goes through each token's raw bytes (`token_bytes`), so streaming is UTF-8 safe.

use std::collections::HashMap;

use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior};

use crate::error::{Error, Result};
use crate::gguf::{Gguf, Value};

/// GGUF token types.
const TOKEN_CONTROL: u64 = 3;
const TOKEN_USER_DEFINED: u64 = 4;
const TOKEN_BYTE: u64 = 6;

/// Texts of control tokens that end a turn in the common chat formats.
const END_OF_TURN: &[&str] = &[
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end_of_text|>",
    "<|end|>",
    "<end_of_turn>",
    "</s>",
    "<EOT>",
];

/// The pre-tokenizer regexes of llama.cpp's `tokenizer.ggml.pre` names (byte-level BPE).
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const LLAMA3_NAMES: &[&str] = &["llama3", "llama-bpe", "llama-v3", "smaug-bpe"];
const QWEN2_REGEX: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How token strings map to bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    /// GPT-2 byte-to-unicode alphabet.
    ByteLevel,
    /// SentencePiece: '▁' is a space, `<0xNN>` is a raw byte.
    SentencePiece,
}

pub struct Tokenizer {
    /// Splits control-token text out of the input (chat templates need it).
    with_special: tokenizers::Tokenizer,
    /// Treats everything as plain text.
    plain: tokenizers::Tokenizer,
    tokens: Vec<String>,
    bytes: Vec<Vec<u8>>,
    control: Vec<bool>,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    eog: Vec<u32>,
    strip_leading_space: bool,
}

impl Tokenizer {
    /// Build the tokenizer from the GGUF vocabulary.
    pub fn from_gguf(g: &Gguf) -> Result<Tokenizer> {
        let model = g.str("tokenizer.ggml.model")?;
        let tokens = string_array(g, "tokenizer.ggml.tokens")?
            .ok_or_else(|| Error::BadModel("tokenizer.ggml.tokens is missing".into()))?;
        let n = tokens.len();
        if n == 0 || n > u32::MAX as usize {
            return Err(Error::BadModel(format!("a vocabulary of {n} tokens")));
        }
        let types: Vec<u64> = match g.array_opt("tokenizer.ggml.token_type")? {
            None => vec![1; n],
            Some(a) => a
                .iter()
                .map(|v| {
                    v.as_u64().ok_or_else(|| Error::BadModel("tokenizer.ggml.token_type holds a non-integer".into()))
                })
                .collect::<Result<_>>()?,
        };
        if types.len() != n {
            return Err(Error::BadModel(format!("{n} tokens but {} token types", types.len())));
        }
        let vocab: HashMap<String, u32> = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();

        let (bpe, encoding, normalizer, pre): (BPE, Encoding, Option<NormalizerWrapper>, Option<PreTokenizerWrapper>) =
            match model {
                "gpt2" => {
                    let merges = string_array(g, "tokenizer.ggml.merges")?
                        .ok_or_else(|| Error::BadModel("tokenizer.ggml.merges is missing".into()))?;
                    let merges = merges
                        .iter()
                        .map(|m| {
                            let (a, b) = m
                                .split_once(' ')
                                .ok_or_else(|| Error::BadModel(format!("merge {m:?} has no space")))?;
                            // The tokenizers crate panics on a merge whose result is not a token.
                            if [a, b, &format!("{a}{b}")].iter().any(|t| !vocab.contains_key(*t)) {
                                return Err(Error::BadModel(format!(
                                    "merge {m:?} names a token not in the vocabulary"
                                )));
                            }
                            Ok((a.to_string(), b.to_string()))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    let pre_name = g.get("tokenizer.ggml.pre").and_then(Value::as_str).unwrap_or("default");
                    // Llama 3's tokenizer takes a whole pre-token straight from the vocabulary when it
                    // is one token, before any merging (as llama.cpp and HF do).
                    let bpe = BPE::builder()
                        .vocab_and_merges(vocab.clone().into_iter().collect::<tokenizers::models::bpe::Vocab>(), merges)
                        .ignore_merges(LLAMA3_NAMES.contains(&pre_name))
                        .build()
                        .map_err(hf)?;
                    (bpe, Encoding::ByteLevel, None, Some(byte_level_pre_tokenizer(pre_name)?))
                }
                "llama" => {
                    let scores: Vec<f32> = match g.array_opt("tokenizer.ggml.scores")? {
                        None => vec![0.0; n],
                        Some(a) => a
                            .iter()
                            .map(|v| {
                                v.as_f64()
                                    .map(|x| x as f32)
                                    .ok_or_else(|| Error::BadModel("tokenizer.ggml.scores holds a non-number".into()))
                            })
                            .collect::<Result<_>>()?,
                    };
                    if scores.len() != n {
                        return Err(Error::BadModel(format!("{n} tokens but {} scores", scores.len())));
                    }
                    let merges = sentencepiece_merges(&tokens, &types, &scores, &vocab);
                    let unk =
                        g.u64_opt("tokenizer.ggml.unknown_token_id")?.and_then(|i| tokens.get(i as usize)).cloned();
                    let mut builder = BPE::builder()
                        .vocab_and_merges(vocab.clone().into_iter().collect::<tokenizers::models::bpe::Vocab>(), merges)
                        .byte_fallback(true);
                    if let Some(unk) = unk {
                        builder = builder.unk_token(unk);
                    }
                    let bpe = builder.build().map_err(hf)?;
                    let add_space = g.get("tokenizer.ggml.add_space_prefix").and_then(Value::as_bool).unwrap_or(true);
                    let mut steps: Vec<NormalizerWrapper> = Vec::new();
                    if add_space {
                        steps.push(Prepend::new("▁".into()).into());
                    }
                    steps.push(Replace::new(" ", "▁").map_err(hf)?.into());
                    (bpe, Encoding::SentencePiece, Some(NormalizerSequence::new(steps).into()), None)
                }
                other => {
                    return Err(Error::UnsupportedModel(format!(
                        "tokenizer model {other:?} is not supported (supported: gpt2, llama)"
                    )))
                }
            };

        let mut plain = tokenizers::Tokenizer::new(bpe);
        if let Some(n) = normalizer {
            plain.with_normalizer(Some(n)).map_err(hf)?;
        }
        plain.with_pre_tokenizer(pre);
        let mut with_special = plain.clone();
        let added: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, &t)| t == TOKEN_CONTROL || t == TOKEN_USER_DEFINED)
            .map(|(text, &t)| AddedToken::from(text.clone(), t == TOKEN_CONTROL).normalized(false))
            .collect();
        with_special.add_tokens(added).map_err(hf)?;

        let control: Vec<bool> = types.iter().map(|&t| t == TOKEN_CONTROL).collect();
        let bytes = tokens
            .iter()
            .zip(&types)
            .map(|(text, &t)| match t {
                TOKEN_CONTROL => Vec::new(),
                TOKEN_USER_DEFINED => text.as_bytes().to_vec(),
                TOKEN_BYTE if encoding == Encoding::SentencePiece => sentencepiece_bytes(text),
                _ => token_string_bytes(text, encoding),
            })
            .collect();
        let default_add_bos = encoding == Encoding::SentencePiece;
        Self::finish(
            g,
            with_special,
            plain,
            tokens,
            bytes,
            control,
            default_add_bos,
            encoding == Encoding::SentencePiece,
        )
    }

    /// Build the tokenizer from a HF `tokenizer.json`; special ids still come from the GGUF.
    pub fn from_json(json: &[u8], g: &Gguf) -> Result<Tokenizer> {
        let bad = |e: String| Error::BadModel(format!("tokenizer.json: {e}"));
        let with_special = tokenizers::Tokenizer::from_bytes(json).map_err(|e| bad(e.to_string()))?;
        // The same tokenizer without its added tokens treats control-token text as plain text.
        let mut doc: serde_json::Value = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
        let added = doc.get_mut("added_tokens").map(std::mem::take).unwrap_or_default();
        doc["added_tokens"] = serde_json::Value::Array(Vec::new());
        let plain = tokenizers::Tokenizer::from_bytes(doc.to_string()).map_err(|e| bad(e.to_string()))?;

        let n = with_special.get_vocab_size(true);
        let specials: HashMap<u32, bool> = added
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| Some((t["id"].as_u64()? as u32, t["special"].as_bool().unwrap_or(false))))
                    .collect()
            })
            .unwrap_or_default();
        let byte_level = json_mentions_byte_level(&doc);
        let encoding = if byte_level { Encoding::ByteLevel } else { Encoding::SentencePiece };
        let mut tokens = Vec::with_capacity(n);
        let mut bytes = Vec::with_capacity(n);
        let mut control = Vec::with_capacity(n);
        for id in 0..n as u32 {
            let text = with_special.id_to_token(id).unwrap_or_default();
            let is_control = specials.get(&id).copied().unwrap_or(false);
            bytes.push(match (is_control, specials.contains_key(&id)) {
                (true, _) => Vec::new(),
                (false, true) => text.as_bytes().to_vec(),
                _ if encoding == Encoding::SentencePiece && text.starts_with("<0x") => sentencepiece_bytes(&text),
                _ => token_string_bytes(&text, encoding),
            });
            control.push(is_control);
            tokens.push(text);
        }
        Self::finish(g, with_special, plain, tokens, bytes, control, !byte_level, !byte_level)
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        g: &Gguf,
        with_special: tokenizers::Tokenizer,
        plain: tokenizers::Tokenizer,
        tokens: Vec<String>,
        bytes: Vec<Vec<u8>>,
        control: Vec<bool>,
        default_add_bos: bool,
        strip_leading_space: bool,
    ) -> Result<Tokenizer> {
        let n = tokens.len() as u64;
        let id = |key: &str| -> Result<Option<u32>> {
            match g.u64_opt(key)? {
                Some(i) if i < n => Ok(Some(i as u32)),
                Some(i) => Err(Error::BadModel(format!("{key} = {i} is outside the vocabulary of {n}"))),
                None => Ok(None),
            }
        };
        let bos = id("tokenizer.ggml.bos_token_id")?;
        let eos = id("tokenizer.ggml.eos_token_id")?;
        id("tokenizer.ggml.unknown_token_id")?;
        let mut eog: Vec<u32> = [eos, id("tokenizer.ggml.eot_token_id")?, id("tokenizer.ggml.eom_token_id")?]
            .into_iter()
            .flatten()
            .collect();
        eog.extend(
            tokens
                .iter()
                .enumerate()
                .filter(|(i, t)| control[*i] && END_OF_TURN.contains(&t.as_str()))
                .map(|(i, _)| i as u32),
        );
        eog.sort_unstable();
        eog.dedup();
        let add_bos = g.get("tokenizer.ggml.add_bos_token").and_then(Value::as_bool).unwrap_or(default_add_bos);
        Ok(Tokenizer {
            with_special,
            plain,
            tokens,
            bytes,
            control,
            bos,
            eos,
            add_bos: add_bos && bos.is_some(),
            eog,
            strip_leading_space,
        })
    }

    /// Token ids of `text`. With `parse_special`, control-token text (such as `<|im_start|>`)
    /// becomes the control token; without it, it is plain text. No BOS is added.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>> {
        let tk = if parse_special { &self.with_special } else { &self.plain };
        let enc = tk.encode(text, false).map_err(|e| Error::InvalidArgument(format!("tokenizing failed: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The text of a whole sequence (invalid UTF-8 becomes U+FFFD). Control tokens appear as
    /// their text when `with_special`, and are skipped otherwise.
    pub fn decode(&self, ids: &[u32], with_special: bool) -> String {
        let mut out = Vec::new();
        for &id in ids {
            if with_special && self.is_control(id) {
                out.extend_from_slice(self.token_text(id).unwrap_or_default().as_bytes());
            } else {
                out.extend_from_slice(self.token_bytes(id));
            }
        }
        let text = String::from_utf8_lossy(&out).into_owned();
        match text.strip_prefix(' ') {
            Some(rest) if self.strip_leading_space => rest.to_string(),
            _ => text,
        }
    }

    /// This tokenizer as a HF `tokenizer.json` (for use elsewhere, or to edit and load back with
    /// `from_json`).
    pub fn to_json(&self) -> Result<String> {
        self.with_special.to_string(false).map_err(|e| Error::InvalidArgument(format!("tokenizer.json: {e}")))
    }

    /// The raw bytes a token stands for; empty for control tokens and unknown ids.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.bytes.get(id as usize).map_or(&[], Vec::as_slice)
    }

    /// The vocabulary string as stored in the model.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// How one token reads on its own: its bytes as text (invalid UTF-8 becomes U+FFFD), or the
    /// vocabulary string of a control token.
    pub fn piece(&self, id: u32) -> String {
        if self.is_control(id) {
            return self.token_text(id).unwrap_or_default().to_string();
        }
        String::from_utf8_lossy(self.token_bytes(id)).into_owned()
    }

    pub fn is_control(&self, id: u32) -> bool {
        self.control.get(id as usize).copied().unwrap_or(false)
    }

    /// Whether `text` spells a control token (such as `<|im_end|>`) somewhere.
    pub fn spells_control(&self, text: &str) -> bool {
        self.tokens.iter().zip(&self.control).any(|(t, &c)| c && !t.is_empty() && text.contains(t.as_str()))
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// Whether prompts start with the BOS token (`tokenizer.ggml.add_bos_token`).
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Tokens that end generation: EOS, EOT/EOM when declared, and end-of-turn control tokens.
    pub fn eog_ids(&self) -> &[u32] {
        &self.eog
    }
}

fn hf(e: impl std::fmt::Display) -> Error {
    Error::BadModel(format!("tokenizer: {e}"))
}

fn string_array(g: &Gguf, key: &str) -> Result<Option<Vec<String>>> {
    g.array_opt(key)?
        .map(|a| {
            a.iter()
                .map(|v| {
                    v.as_str().map(str::to_string).ok_or_else(|| Error::BadModel(format!("{key} holds a non-string")))
                })
                .collect()
        })
        .transpose()
}

fn byte_level_pre_tokenizer(name: &str) -> Result<PreTokenizerWrapper> {
    let split = |re: &str| -> Result<PreTokenizerWrapper> {
        let s = Split::new(SplitPattern::Regex(re.into()), SplitDelimiterBehavior::Isolated, false).map_err(hf)?;
        Ok(Sequence::new(vec![s.into(), ByteLevel::new(false, false, false).into()]).into())
    };
    match name {
        // Digits one by one, then the GPT-2 regex.
        "smollm" => Ok(Sequence::new(vec![Digits::new(true).into(), ByteLevel::new(false, true, true).into()]).into()),
        "default" | "gpt2" | "starcoder" | "refact" => Ok(ByteLevel::new(false, true, true).into()),
        n if LLAMA3_NAMES.contains(&n) => split(LLAMA3_REGEX),
        "qwen2" | "deepseek-r1-qwen" => split(QWEN2_REGEX),
        other => Err(Error::UnsupportedModel(format!(
            "pre-tokenizer {other:?} is not supported (supported: smollm, gpt2, starcoder, llama3, qwen2)"
        ))),
    }
}

/// SentencePiece BPE has no merge list: a pair merges when its concatenation is a token, and the
/// merge whose result has the highest score goes first.
fn sentencepiece_merges(
    tokens: &[String],
    types: &[u64],
    scores: &[f32],
    vocab: &HashMap<String, u32>,
) -> Vec<(String, String)> {
    let mut merges: Vec<(f32, u32, String, String)> = Vec::new();
    for (id, tok) in tokens.iter().enumerate() {
        if types[id] == TOKEN_CONTROL || types[id] == TOKEN_BYTE {
            continue;
        }
        for (i, _) in tok.char_indices().skip(1) {
            let (a, b) = tok.split_at(i);
            if vocab.contains_key(a) && vocab.contains_key(b) {
                merges.push((scores[id], id as u32, a.to_string(), b.to_string()));
            }
        }
    }
    merges.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
    merges.into_iter().map(|(_, _, a, b)| (a, b)).collect()
}

/// `<0xNN>` → the byte NN.
fn sentencepiece_bytes(text: &str) -> Vec<u8> {
    text.strip_prefix("<0x")
        .and_then(|s| s.strip_suffix('>'))
        .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        .map_or_else(|| text.as_bytes().to_vec(), |b| vec![b])
}

fn token_string_bytes(text: &str, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::SentencePiece => text.replace('▁', " ").into_bytes(),
        Encoding::ByteLevel => {
            let table = unicode_to_byte();
            text.chars()
                .map(|c| table.get(&c).copied())
                .collect::<Option<Vec<u8>>>()
                // A token outside the byte alphabet (rare, user-defined): its UTF-8 text.
                .unwrap_or_else(|| text.as_bytes().to_vec())
        }
    }
}

/// The inverse of GPT-2's byte-to-unicode table: printable bytes stand for themselves, the others
/// map to U+0100 onwards in byte order.
fn unicode_to_byte() -> &'static HashMap<char, u8> {
    use std::sync::OnceLock;
    static TABLE: OnceLock<HashMap<char, u8>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let mut next = 256u32;
        (0..=255u8)
            .map(|b| {
                let c = if printable(b) {
                    b as u32
                } else {
                    next += 1;
                    next - 1
                };
                (char::from_u32(c).expect("valid code point"), b)
            })
            .collect()
    })
}

fn json_mentions_byte_level(doc: &serde_json::Value) -> bool {
    match doc {
        serde_json::Value::Object(m) => {
            m.get("type").and_then(|t| t.as_str()) == Some("ByteLevel") || m.values().any(json_mentions_byte_level)
        }
        serde_json::Value::Array(a) => a.iter().any(json_mentions_byte_level),
        _ => false,
    }
}

/// Incremental, UTF-8-safe detokenization: push ids one at a time and get back only complete
/// characters. A character split across tokens comes out once, whole, with its last byte; bytes
/// that can never form a character become U+FFFD. Control tokens produce no text.
pub struct Detokenizer<'t> {
    tokenizer: &'t Tokenizer,
    pending: Vec<u8>,
}

impl<'t> Detokenizer<'t> {
    pub fn new(tokenizer: &'t Tokenizer) -> Self {
        Detokenizer { tokenizer, pending: Vec::new() }
    }

    pub fn push(&mut self, id: u32) -> String {
        self.pending.extend_from_slice(self.tokenizer.token_bytes(id));
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).expect("checked prefix"));
                    match e.error_len() {
                        // An incomplete character at the end: wait for the next token.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Whatever is left at the end (an unfinished character becomes U+FFFD).
    pub fn flush(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_is_a_bijection_matching_gpt2() {
        let t = unicode_to_byte();
        assert_eq!(t.len(), 256);
        assert_eq!(t[&'A'], b'A');
        assert_eq!(t[&'Ġ'], b' '); // U+0120
        assert_eq!(t[&'Ċ'], b'\n'); // U+010A
        assert_eq!(t[&'Ā'], 0); // U+0100
    }

    #[test]
    fn sentencepiece_byte_tokens() {
        assert_eq!(sentencepiece_bytes("<0x0A>"), vec![b'\n']);
        assert_eq!(sentencepiece_bytes("<0xE2>"), vec![0xE2]);
        assert_eq!(token_string_bytes("▁hello", Encoding::SentencePiece), b" hello");
    }
}
