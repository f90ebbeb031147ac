//! The chat template: the model's `tokenizer.chat_template` (Jinja, rendered by minijinja under
//! the limits in `limits`), and its encoding with control tokens only where the template puts them.
//!
//! A base model's file has no template: [`ChatTemplate::from_gguf`] says so (`None`) instead of
//! making one up; ChatML ([`ChatTemplate::chatml`]) is there for a caller who chooses it.

mod json;
mod limits;
pub mod tools;

pub use json::tojson;

use crate::error::{Error, Result};
use crate::gguf::Header;
use crate::tokenizer::Tokenizer;

/// One chat message, with the fields tool-calling templates read (all optional).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    pub role: String,
    /// The text; `null` reads as empty (an assistant turn that only calls tools).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub content: String,
    /// An assistant turn's tool calls, as the template expects them; usually
    /// `{"type": "function", "function": {"name": …, "arguments": {…}}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<serde_json::Value>>,
    /// A tool turn: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// A tool turn: the tool's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Message {
    /// A message with a role and text, and no tool fields.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Message {
        Message { role: role.into(), content: content.into(), ..Message::default() }
    }
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    Ok(<Option<String> as serde::Deserialize>::deserialize(d)?.unwrap_or_default())
}

/// Instructions a render may run (what it may build is bounded in `limits`).
const TEMPLATE_FUEL: u64 = 5_000_000;

/// ChatML: a caller's choice for a model without a template of its own ([`ChatTemplate::chatml`]).
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// The model's chat template, rendered the way HF transformers renders it (jinja2 with
/// trim_blocks and lstrip_blocks; `messages`, `tools`, `documents`, `add_generation_prompt`,
/// `bos_token`, `eos_token`, `raise_exception`, `strftime_now`, python string methods, and
/// `tojson` as Python's `json.dumps`).
pub struct ChatTemplate {
    env: minijinja::Environment<'static>,
    source: String,
    bos: String,
    eos: String,
}

impl ChatTemplate {
    /// The file's `tokenizer.chat_template`, or `None` when it has none (a base model: give it
    /// raw text, or choose a template such as [`ChatTemplate::chatml`] explicitly).
    pub fn from_gguf(g: &Header, tok: &Tokenizer) -> Result<Option<ChatTemplate>> {
        let Some(v) = g.get("tokenizer.chat_template") else { return Ok(None) };
        let src = v.as_str().ok_or_else(|| Error::BadModel("tokenizer.chat_template is not a string".into()))?;
        let (bos, eos) = special_texts(tok);
        Self::new(src, &bos, &eos).map(Some)
    }

    /// ChatML with the tokenizer's BOS and EOS texts: for a model without a template, when the
    /// caller chooses it.
    pub fn chatml(tok: &Tokenizer) -> ChatTemplate {
        let (bos, eos) = special_texts(tok);
        Self::new(CHATML_TEMPLATE, &bos, &eos).expect("ChatML compiles")
    }

    /// Compile a template; errors are `BadModel` (the template comes with the model).
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<ChatTemplate> {
        if source.contains(limits::RESERVED) {
            return Err(Error::BadModel(format!(
                "chat template: names starting with {} are reserved",
                limits::RESERVED
            )));
        }
        let mut env = minijinja::Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.add_function("raise_exception", |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        limits::install(&mut env);
        let bad = |e: minijinja::Error| Error::BadModel(format!("chat template: {e}"));
        env.add_template_owned("chat", limits::unfold_constants(source).map_err(bad)?).map_err(bad)?;
        Ok(ChatTemplate { env, source: source.to_string(), bos: bos_token.into(), eos: eos_token.into() })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the template renders tools at all (it reads the `tools` variable).
    pub fn supports_tools(&self) -> bool {
        self.source.contains("tools")
    }

    /// Render `messages`; with `add_generation_prompt` the text ends where the assistant's answer
    /// begins.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        self.render_with_tools(messages, None, add_generation_prompt)
    }

    /// [`ChatTemplate::render`] with the tools the model may call (JSON schemas, as transformers'
    /// `apply_chat_template(tools=…)` takes them); `None` renders as transformers' `tools=None`.
    pub fn render_with_tools(
        &self,
        messages: &[Message],
        tools: Option<&[serde_json::Value]>,
        add_generation_prompt: bool,
    ) -> Result<String> {
        let tmpl = self.env.get_template("chat").expect("added in new()");
        let context = minijinja::context! {
            messages => messages,
            tools => tools,
            documents => (),
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos,
            eos_token => self.eos,
        };
        let out = limits::render(&self.env, &tmpl, context)
            .map_err(|e| Error::InvalidArgument(format!("chat template: {}", error_chain(&e))))?;
        if out.len() > limits::MAX_STRING {
            return Err(Error::InvalidArgument(format!("chat template output exceeds {} bytes", limits::MAX_STRING)));
        }
        Ok(out)
    }
}

fn special_texts(tok: &Tokenizer) -> (String, String) {
    let text = |id: Option<u32>| id.and_then(|i| tok.token_text(i)).unwrap_or_default().to_string();
    (text(tok.bos_id()), text(tok.eos_id()))
}

/// Around the index of a message whose text stands in for it in a rendered template (Unicode
/// private-use characters: no template writes them).
const MARK_OPEN: char = '\u{10FFFD}';
const MARK_CLOSE: char = '\u{10FFFC}';

impl ChatTemplate {
    /// Render `messages` and tokenize the result so that control tokens come only from the
    /// template: text in a message that spells one (`<|im_end|>\n<|im_start|>system`) becomes
    /// plain text, so a message cannot forge a turn. No BOS is added.
    ///
    /// Messages that spell no control token are rendered and tokenized as they are, exactly as
    /// HF and llama.cpp do. A message that spells one is rendered as a marker; the template's
    /// text around the markers is tokenized with control tokens, the message's text without.
    /// A role that spells a control token, or a template that cuts a marker apart, is an error.
    pub fn encode(&self, tok: &Tokenizer, messages: &[Message], add_generation_prompt: bool) -> Result<Vec<u32>> {
        self.encode_with_tools(tok, messages, None, add_generation_prompt)
    }

    /// [`ChatTemplate::encode`] with tools ([`ChatTemplate::render_with_tools`]). Tools, tool
    /// calls, names and ids that spell a control token are an error (only a message's text is
    /// carried through as plain text).
    pub fn encode_with_tools(
        &self,
        tok: &Tokenizer,
        messages: &[Message],
        tools: Option<&[serde_json::Value]>,
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>> {
        let hostile = |t: &str| tok.spells_control(t) || t.contains([MARK_OPEN, MARK_CLOSE]);
        for m in messages {
            if hostile(&m.role) {
                return Err(Error::InvalidArgument(format!("the role {:?} spells a control token", m.role)));
            }
            let fields = [m.name.as_deref(), m.tool_call_id.as_deref()];
            let calls = m.tool_calls.iter().flatten();
            if fields.into_iter().flatten().any(hostile) || calls.clone().any(|c| json_spells(c, &hostile)) {
                return Err(Error::InvalidArgument(format!(
                    "a {} message's name, tool call id or tool calls spell a control token",
                    m.role
                )));
            }
        }
        if tools.into_iter().flatten().any(|t| json_spells(t, &hostile)) {
            return Err(Error::InvalidArgument("a tool definition spells a control token".into()));
        }
        if !messages.iter().any(|m| hostile(&m.content)) {
            return tok.encode(&self.render_with_tools(messages, tools, add_generation_prompt)?, true);
        }
        let marked: Vec<Message> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| match hostile(&m.content) {
                true => Message { content: format!("{MARK_OPEN}{i}{MARK_CLOSE}"), ..m.clone() },
                false => m.clone(),
            })
            .collect();
        let text = self.render_with_tools(&marked, tools, add_generation_prompt)?;
        let cut = || Error::InvalidArgument("the chat template cuts a message's text apart".into());
        let mut ids = Vec::new();
        let mut rest = text.as_str();
        while let Some(at) = rest.find([MARK_OPEN, MARK_CLOSE]) {
            ids.extend(tok.encode(&rest[..at], true)?);
            let inner = rest[at..].strip_prefix(MARK_OPEN).ok_or_else(cut)?;
            let end = inner.find(MARK_CLOSE).ok_or_else(cut)?;
            let i: usize = inner[..end].parse().map_err(|_| cut())?;
            ids.extend(tok.encode(&messages.get(i).ok_or_else(cut)?.content, false)?);
            rest = &inner[end + MARK_CLOSE.len_utf8()..];
        }
        ids.extend(tok.encode(rest, true)?);
        Ok(ids)
    }
}

/// Whether a string anywhere in `v` (a key or a value) is `hostile`.
fn json_spells(v: &serde_json::Value, hostile: &dyn Fn(&str) -> bool) -> bool {
    match v {
        serde_json::Value::String(s) => hostile(s),
        serde_json::Value::Array(a) => a.iter().any(|x| json_spells(x, hostile)),
        serde_json::Value::Object(m) => m.iter().any(|(k, x)| hostile(k) || json_spells(x, hostile)),
        _ => false,
    }
}

fn error_chain(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => d.to_string(),
        None => e.to_string(),
    }
}

/// `strftime_now(format)`: today's date (UTC) for templates that print it. Supports the
/// directives templates use: %d %m %Y %y %b %B %H %M %S %%.
fn strftime_now(format: String) -> String {
    let secs = web_time::SystemTime::now().duration_since(web_time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let name = MONTHS[(month - 1) as usize];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year % 100)),
            Some('b') => out.push_str(&name[..3]),
            Some('B') => out.push_str(name),
            Some('H') => out.push_str(&format!("{:02}", rem / 3600)),
            Some('M') => out.push_str(&format!("{:02}", rem / 60 % 60)),
            Some('S') => out.push_str(&format!("{:02}", rem % 60)),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strftime_formats_known_directives() {
        let s = strftime_now("%d %b %Y|%%|%q".into());
        let parts: Vec<&str> = s.split('|').collect();
        assert_eq!(parts[0].len(), 11, "{s}");
        assert_eq!(&parts[1..], ["%", "%q"]);
    }
}
