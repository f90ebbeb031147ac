//! Text ↔ token ids.
//!
//! A GGUF vocabulary (`tokenizer.ggml.*`) is tokenized the way llama.cpp tokenizes it:
//! 1. Special tokens are cut out of the text first, as llama.cpp's `tokenizer_st_partition`
//!    does: the longest first, each one's occurrences left to right in what is still text.
//!    Control and unknown tokens are cut only when parsing special tokens; user-defined tokens
//!    (Qwen's `<tool_call>`, Gemma's runs of spaces and newlines, HTML tags) always are.
//! 2. Each stretch of text between them goes to the model:
//!    - `gpt2`: byte-level BPE with merges (HF `tokenizers`), with the pre-tokenizer named by
//!      `tokenizer.ggml.pre` (smollm, gpt2/starcoder, llama3, qwen2);
//!    - `llama`: SentencePiece (Llama 2, Mistral, Gemma), llama.cpp's `llm_tokenizer_spm`:
//!      neighbouring pieces merge while their concatenation is a token, the highest-scoring
//!      result first (the leftmost on ties); what is left that is no token falls back to its
//!      `<0xNN>` byte tokens. Nothing is derived from the scores at load: a lookup table sorted
//!      by text is all it needs.
//!
//! Token types are llama.cpp's, with its overrides: a token whose text ends generation
//! (`<|im_end|>`, `</s>`, `<end_of_turn>`, FIM pad/repo/file separator, …) is an end-of-generation
//! id and a control token, whatever type the file gives it.
//!
//! A HF `tokenizer.json` ([`Tokenizer::from_json`]) is run by HF `tokenizers` as a whole, its
//! added tokens included; [`Tokenizer::to_json`] writes one for any tokenizer.
//!
//! Detokenization goes through each token's raw bytes (`token_bytes`), so streaming is UTF-8 safe.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::hash::BuildHasher;

use aho_corasick::{AhoCorasick, AhoCorasickKind};
use hashbrown::hash_table::{Entry, HashTable};
use hashbrown::DefaultHashBuilder;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior};

use crate::error::{Error, Result};
use crate::gguf::{Header, Value};

/// What a token is (GGUF `tokenizer.ggml.token_type`, after llama.cpp's overrides).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Undefined,
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl Kind {
    fn from_gguf(t: u64) -> Option<Kind> {
        Some(match t {
            0 => Kind::Undefined,
            1 => Kind::Normal,
            2 => Kind::Unknown,
            3 => Kind::Control,
            4 => Kind::UserDefined,
            5 => Kind::Unused,
            6 => Kind::Byte,
            _ => return None,
        })
    }

    /// Matched in text only when parsing special tokens, and without text of its own (llama.cpp's
    /// CONTROL | UNKNOWN attributes).
    fn is_special(self) -> bool {
        matches!(self, Kind::Control | Kind::Unknown)
    }
}

/// Token texts that llama.cpp makes end-of-generation ids, and control tokens whatever their type
/// (`llama_vocab::impl::load`).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<｜end▁of▁sentence｜>",
];

/// Fill-in-the-middle tokens llama.cpp finds by text when the file names none: (metadata key,
/// texts; the first token found becomes a control token), and whether the token ends generation.
const FIM_TOKENS: &[(&str, &[&str], bool)] = &[
    (
        "tokenizer.ggml.fim_pre_token_id",
        &["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>"],
        false,
    ),
    (
        "tokenizer.ggml.fim_suf_token_id",
        &["<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>"],
        false,
    ),
    (
        "tokenizer.ggml.fim_mid_token_id",
        &["<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>"],
        false,
    ),
    ("tokenizer.ggml.fim_pad_token_id", &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>"], true),
    ("tokenizer.ggml.fim_rep_token_id", &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"], true),
    ("tokenizer.ggml.fim_sep_token_id", &["<|file_sep|>"], true),
];

/// The pre-tokenizer regexes of llama.cpp's `tokenizer.ggml.pre` names (byte-level BPE).
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const LLAMA3_NAMES: &[&str] = &["llama3", "llama-bpe", "llama-v3", "smaug-bpe"];
const QWEN2_REGEX: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Many short strings in one buffer: a vocabulary of 262,144 tokens as two allocations.
#[derive(Default)]
struct Packed<T> {
    data: T,
    ends: Vec<u32>,
}

impl<T: AsRef<[u8]>> Packed<T> {
    /// End the current string where the data ends now.
    fn end_here(&mut self) -> Result<()> {
        let end = u32::try_from(self.data.as_ref().len())
            .map_err(|_| Error::BadModel("the vocabulary holds over 4 GiB of text".into()))?;
        self.ends.push(end);
        Ok(())
    }

    fn range(&self, i: usize) -> Option<std::ops::Range<usize>> {
        let end = *self.ends.get(i)? as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        Some(start..end)
    }

    fn len(&self) -> usize {
        self.ends.len()
    }
}

impl Packed<String> {
    fn from_strings<'a>(texts: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let mut p = Packed::<String>::default();
        for t in texts {
            p.data.push_str(t);
            p.end_here()?;
        }
        Ok(p)
    }

    fn get(&self, i: usize) -> &str {
        self.range(i).map_or("", |r| &self.data[r])
    }
}

impl Packed<Vec<u8>> {
    fn push(&mut self, bytes: impl AsRef<[u8]>) -> Result<()> {
        self.data.extend_from_slice(bytes.as_ref());
        self.end_here()
    }

    fn get(&self, i: usize) -> &[u8] {
        self.range(i).map_or(&[], |r| &self.data[r])
    }
}

/// How a tokenizer turns the text between special tokens into ids.
enum Model {
    /// GGUF byte-level BPE: HF `tokenizers` without added tokens.
    Bpe(Box<tokenizers::Tokenizer>),
    /// GGUF SentencePiece: llama.cpp's algorithm.
    Spm(Spm),
    /// A `tokenizer.json`, which splits out its own added tokens: all of them, or (`plain`) only
    /// the non-special ones.
    Json { with_special: Box<tokenizers::Tokenizer>, plain: Box<tokenizers::Tokenizer> },
}

pub struct Tokenizer {
    model: Model,
    specials: Specials,
    tokens: Packed<String>,
    bytes: Packed<Vec<u8>>,
    kinds: Vec<Kind>,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    eog: Vec<u32>,
    strip_leading_space: bool,
}

impl Tokenizer {
    /// Build the tokenizer from the GGUF vocabulary.
    pub fn from_gguf(g: &Header) -> Result<Tokenizer> {
        let model_name = g.str("tokenizer.ggml.model")?;
        let token_values = g
            .array_opt("tokenizer.ggml.tokens")?
            .ok_or_else(|| Error::BadModel("tokenizer.ggml.tokens is missing".into()))?;
        let n = token_values.len();
        if n == 0 || n > u32::MAX as usize {
            return Err(Error::BadModel(format!("a vocabulary of {n} tokens")));
        }
        let tokens = Packed::from_strings(
            token_values
                .iter()
                .map(|v| v.as_str().ok_or_else(|| Error::BadModel("tokenizer.ggml.tokens holds a non-string".into())))
                .collect::<Result<Vec<&str>>>()?,
        )?;
        let mut kinds: Vec<Kind> = match g.array_opt("tokenizer.ggml.token_type")? {
            None => vec![Kind::Normal; n],
            Some(a) => a
                .iter()
                .map(|v| {
                    v.as_u64().and_then(Kind::from_gguf).ok_or_else(|| {
                        Error::BadModel(format!("tokenizer.ggml.token_type holds {v:?}, not a token type 0-6"))
                    })
                })
                .collect::<Result<_>>()?,
        };
        if kinds.len() != n {
            return Err(Error::BadModel(format!("{n} tokens but {} token types", kinds.len())));
        }
        let eog = end_of_generation(g, &tokens, &mut kinds)?;
        let add_space_prefix = g.get("tokenizer.ggml.add_space_prefix").and_then(Value::as_bool).unwrap_or(true);

        let (model, encoding) = match model_name {
            "gpt2" => (Model::Bpe(Box::new(byte_level_bpe(g, &tokens)?)), Encoding::ByteLevel),
            "llama" => {
                let scores: Vec<f32> = match g.array_opt("tokenizer.ggml.scores")? {
                    None => vec![0.0; n],
                    Some(a) => a
                        .iter()
                        .map(|v| match v.as_f64() {
                            Some(x) if !x.is_nan() => Ok(x as f32),
                            _ => Err(Error::BadModel(format!("tokenizer.ggml.scores holds {v:?}, not a number"))),
                        })
                        .collect::<Result<_>>()?,
                };
                if scores.len() != n {
                    return Err(Error::BadModel(format!("{n} tokens but {} scores", scores.len())));
                }
                let unk = g.u64_opt("tokenizer.ggml.unknown_token_id")?.filter(|&i| i < n as u64).map(|i| i as u32);
                (Model::Spm(Spm::new(&tokens, scores, unk, add_space_prefix)), Encoding::SentencePiece)
            }
            other => {
                return Err(Error::UnsupportedModel(format!(
                    "tokenizer model {other:?} is not supported (supported: gpt2, llama)"
                )))
            }
        };

        let mut bytes = Packed::<Vec<u8>>::default();
        for (i, kind) in kinds.iter().enumerate() {
            let text = tokens.get(i);
            match kind {
                // As llama.cpp's token_to_piece: control, unknown and unused tokens have no text.
                Kind::Control | Kind::Unknown | Kind::Unused | Kind::Undefined => bytes.push(b"")?,
                Kind::UserDefined => bytes.push(text.as_bytes())?,
                Kind::Byte if encoding == Encoding::SentencePiece => bytes.push(sentencepiece_bytes(text))?,
                _ => bytes.push(token_string_bytes(text, encoding))?,
            }
        }
        let sentencepiece = encoding == Encoding::SentencePiece;
        Self::finish(g, model, tokens, bytes, kinds, eog, sentencepiece, sentencepiece && add_space_prefix)
    }

    /// Build the tokenizer from a HF `tokenizer.json`; special ids still come from the GGUF.
    pub fn from_json(json: &[u8], g: &Header) -> Result<Tokenizer> {
        let bad = |e: String| Error::BadModel(format!("tokenizer.json: {e}"));
        let with_special = tokenizers::Tokenizer::from_bytes(json).map_err(|e| bad(e.to_string()))?;
        // The same tokenizer without its special added tokens treats control-token text as plain
        // text; non-special added tokens are still matched (llama.cpp's user-defined tokens).
        let mut doc: serde_json::Value = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
        let added: Vec<serde_json::Value> = match doc.get_mut("added_tokens").map(std::mem::take) {
            Some(serde_json::Value::Array(a)) => a,
            _ => Vec::new(),
        };
        let is_special = |t: &serde_json::Value| t["special"].as_bool().unwrap_or(false);
        doc["added_tokens"] = added.iter().filter(|t| !is_special(t)).cloned().collect();
        let plain = tokenizers::Tokenizer::from_bytes(doc.to_string()).map_err(|e| bad(e.to_string()))?;

        let n = with_special.get_vocab_size(true);
        let specials: HashMap<u32, bool> =
            added.iter().filter_map(|t| Some((u32::try_from(t["id"].as_u64()?).ok()?, is_special(t)))).collect();
        let byte_level = json_mentions_byte_level(&doc);
        let encoding = if byte_level { Encoding::ByteLevel } else { Encoding::SentencePiece };
        let texts: Vec<String> = (0..n as u32).map(|id| with_special.id_to_token(id).unwrap_or_default()).collect();
        let tokens = Packed::from_strings(texts.iter().map(String::as_str))?;
        let mut kinds: Vec<Kind> = texts
            .iter()
            .enumerate()
            .map(|(id, text)| match specials.get(&(id as u32)) {
                Some(true) => Kind::Control,
                Some(false) => Kind::UserDefined,
                None if !byte_level && text.starts_with("<0x") => Kind::Byte,
                None => Kind::Normal,
            })
            .collect();
        let eog = end_of_generation(g, &tokens, &mut kinds)?;
        let mut bytes = Packed::<Vec<u8>>::default();
        for (i, kind) in kinds.iter().enumerate() {
            let text = tokens.get(i);
            match kind {
                Kind::Control => bytes.push(b"")?,
                Kind::UserDefined => bytes.push(text.as_bytes())?,
                Kind::Byte => bytes.push(sentencepiece_bytes(text))?,
                _ => bytes.push(token_string_bytes(text, encoding))?,
            }
        }
        let add_space_prefix = g.get("tokenizer.ggml.add_space_prefix").and_then(Value::as_bool).unwrap_or(true);
        let model = Model::Json { with_special: Box::new(with_special), plain: Box::new(plain) };
        Self::finish(g, model, tokens, bytes, kinds, eog, !byte_level, !byte_level && add_space_prefix)
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        g: &Header,
        model: Model,
        tokens: Packed<String>,
        bytes: Packed<Vec<u8>>,
        kinds: Vec<Kind>,
        eog: Vec<u32>,
        default_add_bos: bool,
        strip_leading_space: bool,
    ) -> Result<Tokenizer> {
        let n = tokens.len() as u64;
        let bos = special_id(g, "tokenizer.ggml.bos_token_id", n)?;
        let eos = special_id(g, "tokenizer.ggml.eos_token_id", n)?;
        special_id(g, "tokenizer.ggml.unknown_token_id", n)?;
        let add_bos = g.get("tokenizer.ggml.add_bos_token").and_then(Value::as_bool).unwrap_or(default_add_bos);
        let specials = Specials::new(&tokens, &kinds)?;
        Ok(Tokenizer {
            model,
            specials,
            tokens,
            bytes,
            kinds,
            bos,
            eos,
            add_bos: add_bos && bos.is_some(),
            eog,
            strip_leading_space,
        })
    }

    /// Token ids of `text`. With `parse_special`, control-token text (such as `<|im_start|>`)
    /// becomes the control token; without it, it is plain text. User-defined tokens are matched
    /// either way. No BOS is added.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>> {
        let hf_encode = |tk: &tokenizers::Tokenizer, text: &str, out: &mut Vec<u32>| -> Result<()> {
            let enc = tk.encode(text, false).map_err(|e| Error::InvalidArgument(format!("tokenizing failed: {e}")))?;
            out.extend_from_slice(enc.get_ids());
            Ok(())
        };
        let mut ids = Vec::new();
        if let Model::Json { with_special, plain } = &self.model {
            hf_encode(if parse_special { with_special } else { plain }, text, &mut ids)?;
            return Ok(ids);
        }
        // llama.cpp prefixes a space to the text at the start and after each special token.
        let mut after_special = true;
        for piece in self.specials.split(&self.tokens, text, parse_special) {
            match (piece, &self.model) {
                (Piece::Token(id), _) => {
                    ids.push(id);
                    after_special = true;
                    continue;
                }
                (Piece::Text(text), Model::Bpe(tk)) => hf_encode(tk, text, &mut ids)?,
                (Piece::Text(text), Model::Spm(spm)) => spm.encode(&self.tokens, text, after_special, &mut ids)?,
                (Piece::Text(_), Model::Json { .. }) => unreachable!("handled above"),
            }
            after_special = false;
        }
        Ok(ids)
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
    /// `from_json`). For a SentencePiece vocabulary the merges are derived from the scores here,
    /// which takes a while for a big vocabulary.
    pub fn to_json(&self) -> Result<String> {
        let json_error = |e: tokenizers::Error| Error::InvalidArgument(format!("tokenizer.json: {e}"));
        let mut tk = match &self.model {
            Model::Json { with_special, .. } => return with_special.to_string(false).map_err(json_error),
            Model::Bpe(tk) => (**tk).clone(),
            Model::Spm(spm) => spm.to_hf(&self.tokens, &self.kinds)?,
        };
        let added: Vec<AddedToken> = self
            .specials
            .ids
            .iter()
            .map(|&id| {
                AddedToken::from(self.tokens.get(id as usize).to_string(), self.is_control(id)).normalized(false)
            })
            .collect();
        tk.add_tokens(added).map_err(hf)?;
        tk.to_string(false).map_err(json_error)
    }

    /// The raw bytes a token stands for; empty for control tokens and unknown ids.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.bytes.get(id as usize)
    }

    /// The vocabulary string as stored in the model.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        ((id as usize) < self.tokens.len()).then(|| self.tokens.get(id as usize))
    }

    /// How one token reads on its own: its bytes as text (invalid UTF-8 becomes U+FFFD), or the
    /// vocabulary string of a control token.
    pub fn piece(&self, id: u32) -> String {
        if self.is_control(id) {
            return self.token_text(id).unwrap_or_default().to_string();
        }
        String::from_utf8_lossy(self.token_bytes(id)).into_owned()
    }

    /// Whether `id` is a control token (or the unknown token): matched in text only when parsing
    /// special tokens, and with no text of its own.
    pub fn is_control(&self, id: u32) -> bool {
        self.kinds.get(id as usize).is_some_and(|k| k.is_special())
    }

    /// Whether `text` spells a control token (such as `<|im_end|>`) somewhere.
    pub fn spells_control(&self, text: &str) -> bool {
        self.specials.spells_special(text)
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

    /// Tokens that end generation, as llama.cpp counts them: EOS, EOT and EOM when declared, the
    /// FIM pad/repo/file-separator tokens, and the tokens whose text ends a turn.
    pub fn eog_ids(&self) -> &[u32] {
        &self.eog
    }
}

/// How token strings map to bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    /// GPT-2 byte-to-unicode alphabet.
    ByteLevel,
    /// SentencePiece: '▁' is a space, `<0xNN>` is a raw byte.
    SentencePiece,
}

fn hf(e: impl std::fmt::Display) -> Error {
    Error::BadModel(format!("tokenizer: {e}"))
}

/// An optional token id from the metadata; one outside the vocabulary is a bad file.
fn special_id(g: &Header, key: &str, n: u64) -> Result<Option<u32>> {
    match g.u64_opt(key)? {
        Some(i) if i < n => Ok(Some(i as u32)),
        Some(i) => Err(Error::BadModel(format!("{key} = {i} is outside the vocabulary of {n}"))),
        None => Ok(None),
    }
}

/// The end-of-generation ids, as llama.cpp finds them; the tokens it finds by their text become
/// control tokens.
fn end_of_generation(g: &Header, tokens: &Packed<String>, kinds: &mut [Kind]) -> Result<Vec<u32>> {
    let n = tokens.len() as u64;
    let mut eog = Vec::new();
    for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
        eog.extend(special_id(g, key, n)?);
    }
    // One pass over the vocabulary: the texts that end a turn, and the first token of each FIM
    // kind (every such text starts with one of these).
    let mut fim_found = [None; FIM_TOKENS.len()];
    for (i, kind) in kinds.iter_mut().enumerate() {
        let text = tokens.get(i);
        if !text.starts_with(['<', '[', '_', '▁']) {
            continue;
        }
        if EOG_TEXTS.contains(&text) {
            *kind = Kind::Control;
            eog.push(i as u32);
        }
        for (found, (_, texts, _)) in fim_found.iter_mut().zip(FIM_TOKENS) {
            if found.is_none() && texts.contains(&text) {
                *found = Some(i as u32);
            }
        }
    }
    for (&(key, _, ends), found) in FIM_TOKENS.iter().zip(fim_found) {
        let id = match special_id(g, key, n)? {
            Some(id) => Some(id),
            None => {
                if let Some(i) = found {
                    kinds[i as usize] = Kind::Control;
                }
                found
            }
        };
        if ends {
            eog.extend(id);
        }
    }
    eog.sort_unstable();
    eog.dedup();
    Ok(eog)
}

/// A stretch of text, or a special token cut out of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Piece<'t> {
    Text(&'t str),
    Token(u32),
}

/// The tokens cut out of the text before the model sees it (control, unknown and user-defined),
/// in llama.cpp's order: longer texts first, then lower ids.
struct Specials {
    /// Finds every special token's text; pattern `i` is token `ids[i]`.
    matcher: Option<AhoCorasick>,
    ids: Vec<u32>,
    /// Whether pattern `i` is matched only when parsing special tokens.
    special: Vec<bool>,
}

impl Specials {
    fn new(tokens: &Packed<String>, kinds: &[Kind]) -> Result<Specials> {
        let mut ids: Vec<u32> = (0..tokens.len())
            .filter(|&i| matches!(kinds[i], Kind::Control | Kind::Unknown | Kind::UserDefined))
            .filter(|&i| !tokens.get(i).is_empty())
            .map(|i| i as u32)
            .collect();
        ids.sort_by_key(|&i| Reverse(tokens.get(i as usize).len()));
        let matcher = match ids.is_empty() {
            true => None,
            false => Some(
                AhoCorasick::builder()
                    .kind(Some(AhoCorasickKind::ContiguousNFA))
                    .build(ids.iter().map(|&i| tokens.get(i as usize)))
                    .map_err(hf)?,
            ),
        };
        let special = ids.iter().map(|&i| kinds[i as usize].is_special()).collect();
        Ok(Specials { matcher, ids, special })
    }

    /// `text` cut into stretches of text and special tokens, as llama.cpp's
    /// `tokenizer_st_partition` cuts it: each special token in turn, longest first, takes its
    /// occurrences left to right from what is still text. Only the tokens that occur are looked
    /// for, so this costs the text's length times the number of distinct special tokens in it.
    fn split<'t>(&self, tokens: &Packed<String>, text: &'t str, parse_special: bool) -> Vec<Piece<'t>> {
        let mut pieces = Vec::new();
        if text.is_empty() {
            return pieces;
        }
        pieces.push(Piece::Text(text));
        let Some(matcher) = &self.matcher else { return pieces };
        let mut occurs = vec![false; self.ids.len()];
        for m in matcher.find_overlapping_iter(text) {
            occurs[m.pattern().as_usize()] = true;
        }
        for p in (0..self.ids.len()).filter(|&p| occurs[p] && (parse_special || !self.special[p])) {
            let (id, needle) = (self.ids[p], tokens.get(self.ids[p] as usize));
            let mut cut = Vec::with_capacity(pieces.len() + 2);
            for piece in pieces {
                let Piece::Text(mut rest) = piece else {
                    cut.push(piece);
                    continue;
                };
                while let Some(at) = rest.find(needle) {
                    if at > 0 {
                        cut.push(Piece::Text(&rest[..at]));
                    }
                    cut.push(Piece::Token(id));
                    rest = &rest[at + needle.len()..];
                }
                if !rest.is_empty() {
                    cut.push(Piece::Text(rest));
                }
            }
            pieces = cut;
        }
        pieces
    }

    /// Whether `text` holds the text of a token matched only when parsing special tokens.
    fn spells_special(&self, text: &str) -> bool {
        self.matcher
            .as_ref()
            .is_some_and(|m| m.find_overlapping_iter(text).any(|x| self.special[x.pattern().as_usize()]))
    }
}

/// llama.cpp's SentencePiece tokenizer (`llm_tokenizer_spm`).
struct Spm {
    scores: Vec<f32>,
    /// Token ids by their text (of equal texts, the lower id), hashed by `hasher`.
    by_text: HashTable<u32>,
    hasher: DefaultHashBuilder,
    /// The token for each byte a character falls back to: `<0xNN>`, else the byte itself as a
    /// token, else the unknown token.
    byte_tokens: Vec<Option<u32>>,
    unk: Option<u32>,
    add_space_prefix: bool,
}

/// Two neighbouring symbols whose concatenation is a token.
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl Ord for Bigram {
    /// The highest score first, then the leftmost (llama.cpp's `llm_bigram_spm::comparator`).
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then(other.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}

/// A piece of the text being merged: `text[start..start + len]`, linked to its neighbours
/// (`NONE` at the ends). A symbol merged into its left neighbour has `len` 0.
struct Symbol {
    start: usize,
    len: usize,
    prev: usize,
    next: usize,
}

const NONE: usize = usize::MAX;

impl Spm {
    fn new(tokens: &Packed<String>, scores: Vec<f32>, unk: Option<u32>, add_space_prefix: bool) -> Spm {
        let hasher = DefaultHashBuilder::default();
        let mut by_text = HashTable::with_capacity(tokens.len());
        for id in 0..tokens.len() {
            let text = tokens.get(id);
            let same = |&other: &u32| tokens.get(other as usize) == text;
            let rehash = |&other: &u32| hasher.hash_one(tokens.get(other as usize));
            if let Entry::Vacant(slot) = by_text.entry(hasher.hash_one(text), same, rehash) {
                slot.insert(id as u32);
            }
        }
        let mut spm = Spm { scores, by_text, hasher, byte_tokens: Vec::new(), unk, add_space_prefix };
        spm.byte_tokens = (0..=255u8)
            .map(|b| {
                let single = if b.is_ascii() { spm.lookup(tokens, &char::from(b).to_string()) } else { None };
                spm.lookup(tokens, &format!("<0x{b:02X}>")).or(single).or(unk)
            })
            .collect();
        spm
    }

    fn lookup(&self, tokens: &Packed<String>, text: &str) -> Option<u32> {
        self.by_text.find(self.hasher.hash_one(text), |&id| tokens.get(id as usize) == text).copied()
    }

    /// Append the ids of `text` (a stretch between special tokens) to `out`.
    fn encode(&self, tokens: &Packed<String>, text: &str, after_special: bool, out: &mut Vec<u32>) -> Result<()> {
        let mut escaped = String::with_capacity(text.len() + 3);
        if self.add_space_prefix && after_special {
            escaped.push('▁');
        }
        for c in text.chars() {
            escaped.push(if c == ' ' { '▁' } else { c });
        }
        let text = escaped.as_str();
        let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
        for (start, c) in text.char_indices() {
            let i = symbols.len();
            symbols.push(Symbol { start, len: c.len_utf8(), prev: i.wrapping_sub(1), next: i + 1 });
        }
        let Some(last) = symbols.last_mut() else { return Ok(()) };
        last.next = NONE;

        let mut queue = BinaryHeap::new();
        let try_add = |symbols: &[Symbol], queue: &mut BinaryHeap<Bigram>, left: usize, right: usize| {
            if left == NONE || right == NONE {
                return;
            }
            let (l, r) = (&symbols[left], &symbols[right]);
            let piece = &text[l.start..r.start + r.len];
            if let Some(id) = self.lookup(tokens, piece) {
                queue.push(Bigram { score: self.scores[id as usize], left, right, size: piece.len() });
            }
        };
        for i in 1..symbols.len() {
            try_add(&symbols, &mut queue, i - 1, i);
        }
        while let Some(Bigram { left, right, size, .. }) = queue.pop() {
            let (l, r) = (symbols[left].len, symbols[right].len);
            // One of them was merged since.
            if l == 0 || r == 0 || l + r != size {
                continue;
            }
            symbols[left].len += r;
            symbols[right].len = 0;
            let next = symbols[right].next;
            symbols[left].next = next;
            if next != NONE {
                symbols[next].prev = left;
            }
            try_add(&symbols, &mut queue, symbols[left].prev, left);
            try_add(&symbols, &mut queue, left, next);
        }

        // Every merged symbol is a token; a character that is none falls back to bytes.
        let mut i = 0;
        while i != NONE {
            let s = &symbols[i];
            let piece = &text[s.start..s.start + s.len];
            match self.lookup(tokens, piece) {
                Some(id) => out.push(id),
                None => {
                    for b in piece.bytes() {
                        let id = self.byte_tokens[b as usize].ok_or_else(|| {
                            Error::InvalidArgument(format!(
                                "the vocabulary has no token for the byte 0x{b:02X} of {piece:?}"
                            ))
                        })?;
                        out.push(id);
                    }
                }
            }
            i = s.next;
        }
        Ok(())
    }

    /// The same tokenizer in HF `tokenizers` (for `to_json`): BPE whose merges are every split of
    /// a token into two tokens, the highest-scoring result first. That is llama.cpp's order when
    /// no two results share a score. Linear in the vocabulary's length in characters.
    fn to_hf(&self, tokens: &Packed<String>, kinds: &[Kind]) -> Result<tokenizers::Tokenizer> {
        let vocab: tokenizers::models::bpe::Vocab =
            (0..tokens.len()).rev().map(|i| (tokens.get(i).to_string(), i as u32)).collect();
        let mut merges: Vec<(f32, u32, usize)> = Vec::new();
        for (id, kind) in kinds.iter().enumerate() {
            if kind.is_special() || *kind == Kind::Byte {
                continue;
            }
            let tok = tokens.get(id);
            for (at, _) in tok.char_indices().skip(1) {
                if vocab.contains_key(&tok[..at]) && vocab.contains_key(&tok[at..]) {
                    merges.push((self.scores[id], id as u32, at));
                }
            }
        }
        merges.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
        let merges = merges
            .into_iter()
            .map(|(_, id, at)| {
                let tok = tokens.get(id as usize);
                (tok[..at].to_string(), tok[at..].to_string())
            })
            .collect();
        let mut builder = BPE::builder().vocab_and_merges(vocab, merges).byte_fallback(true);
        if let Some(unk) = self.unk {
            builder = builder.unk_token(tokens.get(unk as usize).to_string());
        }
        let mut tk = tokenizers::Tokenizer::new(builder.build().map_err(hf)?);
        let mut steps: Vec<NormalizerWrapper> = Vec::new();
        if self.add_space_prefix {
            steps.push(Prepend::new("▁".into()).into());
        }
        steps.push(Replace::new(" ", "▁").map_err(hf)?.into());
        tk.with_normalizer(Some(NormalizerSequence::new(steps))).map_err(hf)?;
        Ok(tk)
    }
}

/// The byte-level BPE of a `gpt2` vocabulary, with the pre-tokenizer `tokenizer.ggml.pre` names.
fn byte_level_bpe(g: &Header, tokens: &Packed<String>) -> Result<tokenizers::Tokenizer> {
    let vocab: tokenizers::models::bpe::Vocab =
        (0..tokens.len()).rev().map(|i| (tokens.get(i).to_string(), i as u32)).collect();
    let merges = g
        .array_opt("tokenizer.ggml.merges")?
        .ok_or_else(|| Error::BadModel("tokenizer.ggml.merges is missing".into()))?;
    let merges = merges
        .iter()
        .map(|m| {
            let m = m.as_str().ok_or_else(|| Error::BadModel("tokenizer.ggml.merges holds a non-string".into()))?;
            let (a, b) = m.split_once(' ').ok_or_else(|| Error::BadModel(format!("merge {m:?} has no space")))?;
            // The tokenizers crate panics on a merge whose result is not a token.
            if [a, b, &format!("{a}{b}")].iter().any(|t| !vocab.contains_key(*t)) {
                return Err(Error::BadModel(format!("merge {m:?} names a token not in the vocabulary")));
            }
            Ok((a.to_string(), b.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    let pre_name = g.get("tokenizer.ggml.pre").and_then(Value::as_str).unwrap_or("default");
    let pre = byte_level_pre_tokenizer(pre_name)?;
    // Llama 3's tokenizer takes a whole pre-token straight from the vocabulary when it is one
    // token, before any merging (as llama.cpp and HF do).
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(LLAMA3_NAMES.contains(&pre_name))
        .build()
        .map_err(hf)?;
    let mut tk = tokenizers::Tokenizer::new(bpe);
    tk.with_pre_tokenizer(Some(pre));
    Ok(tk)
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

    fn specials(texts: &[&str], kinds: &[Kind]) -> (Packed<String>, Specials) {
        let tokens = Packed::from_strings(texts.iter().copied()).unwrap();
        let s = Specials::new(&tokens, kinds).unwrap();
        (tokens, s)
    }

    /// Longer special tokens are cut first, even where a shorter one starts earlier (llama.cpp's
    /// order, not leftmost-longest); control tokens only when parsing special tokens.
    #[test]
    fn special_tokens_are_cut_longest_first() {
        use Kind::*;
        use Piece::{Text, Token};
        let (tokens, s) = specials(&["ab", "bcd", "<c>", "x"], &[UserDefined, UserDefined, Control, Normal]);
        assert_eq!(s.split(&tokens, "abcd", false), [Text("a"), Token(1)]);
        assert_eq!(s.split(&tokens, "ab<c>abab", false), [Token(0), Text("<c>"), Token(0), Token(0)]);
        assert_eq!(s.split(&tokens, "ab<c>x", true), [Token(0), Token(2), Text("x")]);
        assert_eq!(s.split(&tokens, "", true), []);
        assert!(s.spells_special("a<c>") && !s.spells_special("abcd"));
    }
}
