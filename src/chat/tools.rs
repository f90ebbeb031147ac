//! Tool calls, OpenAI's shape over Hermes-style templates (Qwen2.5): the template gets the
//! tools, the answer's `<tool_call>{"name": …, "arguments": …}</tool_call>` blocks become
//! `tool_calls`, and a `tool_choice` that demands a call becomes a grammar for it.

use serde_json::Value;

use crate::constraint::Grammar;
use crate::error::{Error, Result};

/// OpenAI's `tool_choice`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum ToolChoice {
    /// No call: the template does not get the tools.
    None,
    /// The model decides (the default).
    #[default]
    Auto,
    /// Some call must come (one of the tools, its arguments valid under its parameters).
    Required,
    /// This function must be called.
    Function(String),
}

impl ToolChoice {
    /// `"none" | "auto" | "required" | {type: "function", function: {name}}`; `null` is auto.
    pub fn from_value(v: &Value) -> Result<ToolChoice> {
        let bad = || {
            Error::InvalidArgument(format!("tool_choice: expected \"none\", \"auto\", \"required\" or {{type: \"function\", function: {{name}}}}, got {v}"))
        };
        match v {
            Value::Null => Ok(ToolChoice::Auto),
            Value::String(s) => match s.as_str() {
                "none" => Ok(ToolChoice::None),
                "auto" => Ok(ToolChoice::Auto),
                "required" => Ok(ToolChoice::Required),
                _ => Err(bad()),
            },
            Value::Object(_) => {
                let name = v.pointer("/function/name").and_then(Value::as_str).ok_or_else(bad)?;
                Ok(ToolChoice::Function(name.to_string()))
            }
            _ => Err(bad()),
        }
    }
}

/// One parsed call, as OpenAI's `message.tool_calls[i]`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionCall,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FunctionCall {
    pub name: String,
    /// The arguments as a JSON string (OpenAI's shape).
    pub arguments: String,
}

/// A function tool's name and parameter schema; anything else is `invalid_argument`.
fn function(tool: &Value) -> Result<(&str, Value)> {
    let f = tool.get("function").unwrap_or(tool);
    let name = f
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::InvalidArgument(format!("tools: a tool needs function.name, got {tool}")))?;
    let params = f.get("parameters").cloned().unwrap_or_else(|| serde_json::json!({ "type": "object" }));
    Ok((name, params))
}

/// Check that every tool names its function.
pub fn validate(tools: &[Value]) -> Result<()> {
    tools.iter().try_for_each(|t| function(t).map(|_| ()))
}

/// The grammar `choice` imposes on the answer: `None` for auto and none; for a named function
/// (or, with `required`, any of them) exactly one `<tool_call>` block whose arguments follow
/// the function's parameter schema.
pub fn grammar(tools: &[Value], choice: &ToolChoice) -> Result<Option<Grammar>> {
    let fns: Vec<(&str, Value)> = tools.iter().map(function).collect::<Result<_>>()?;
    let chosen: Vec<&(&str, Value)> = match choice {
        ToolChoice::None | ToolChoice::Auto => return Ok(None),
        ToolChoice::Required => fns.iter().collect(),
        ToolChoice::Function(name) => {
            let f = fns
                .iter()
                .find(|f| f.0 == name)
                .ok_or_else(|| Error::InvalidArgument(format!("tool_choice: no tool is named {name:?}")))?;
            vec![f]
        }
    };
    if chosen.is_empty() {
        return Err(Error::InvalidArgument("tool_choice: \"required\" needs at least one tool".into()));
    }
    let lit = |s: &str| serde_json::to_string(s).expect("a string");
    let mut lark =
        format!("start: {}\n", (0..chosen.len()).map(|i| format!("call_{i}")).collect::<Vec<_>>().join(" | "));
    for (i, (name, params)) in chosen.iter().enumerate() {
        let head = format!("<tool_call>\n{{\"name\": {}, \"arguments\": ", lit(name));
        lark += &format!("call_{i}: {} args_{i} {}\n", lit(&head), lit("}\n</tool_call>"));
        lark += &format!(
            "args_{i}: %json {}\n",
            serde_json::to_string(&crate::constraint::compact(params.clone())).expect("json")
        );
    }
    Ok(Some(Grammar::Lark { grammar: lark }))
}

/// Split an answer into its text and its `<tool_call>` blocks (Hermes/Qwen2.5 format). A block
/// that is not `{"name": string, "arguments": …}` JSON stays in the text. Small models sometimes
/// answer with the call's JSON alone (bare or in a ```json fence): an answer that is only that,
/// naming one of `tools`, is a call too.
pub fn parse(text: &str, tools: &[Value]) -> (String, Vec<ToolCall>) {
    let (content, calls) = parse_blocks(text);
    if !calls.is_empty() {
        return (content, calls);
    }
    let bare = content.trim();
    let bare = bare.strip_prefix("```json").or_else(|| bare.strip_prefix("```")).unwrap_or(bare);
    let bare = bare.strip_suffix("```").unwrap_or(bare);
    match parse_call(bare, 0) {
        Some(call) if tools.iter().filter_map(|t| function(t).ok()).any(|f| f.0 == call.function.name) => {
            (String::new(), vec![call])
        }
        _ => (content, calls),
    }
}

fn parse_blocks(text: &str) -> (String, Vec<ToolCall>) {
    const OPEN: &str = "<tool_call>";
    const CLOSE: &str = "</tool_call>";
    let (mut content, mut calls) = (String::new(), Vec::new());
    let mut rest = text;
    while let Some(at) = rest.find(OPEN) {
        let body_start = at + OPEN.len();
        let (body, next) = match rest[body_start..].find(CLOSE) {
            Some(end) => (&rest[body_start..body_start + end], body_start + end + CLOSE.len()),
            None => (&rest[body_start..], rest.len()),
        };
        match parse_call(body, calls.len()) {
            Some(call) => {
                content.push_str(&rest[..at]);
                calls.push(call);
            }
            None => content.push_str(&rest[..next]),
        }
        rest = &rest[next..];
    }
    content.push_str(rest);
    (content.trim().to_string(), calls)
}

fn parse_call(body: &str, n: usize) -> Option<ToolCall> {
    let v: Value = serde_json::from_str(body.trim()).ok()?;
    let name = v.get("name")?.as_str()?.to_string();
    let arguments = match v.get("arguments") {
        Some(Value::String(s)) => s.clone(),
        Some(a) => a.to_string(),
        None => "{}".into(),
    };
    Some(ToolCall { id: format!("call_{n}"), kind: "function".into(), function: FunctionCall { name, arguments } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_calls_are_parsed_out_of_the_text() {
        let text =
            "Sure.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
        let (content, calls) = parse(text, &[]);
        assert_eq!(content, "Sure.");
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].function.name, "get_weather");
        assert_eq!(calls[0].function.arguments, "{\"city\":\"Paris\"}");
        let (content, calls) = parse("<tool_call>not json</tool_call> hi", &[]);
        assert_eq!((content.as_str(), calls.len()), ("<tool_call>not json</tool_call> hi", 0));
        let tools = [serde_json::json!({"type": "function", "function": {"name": "f"}})];
        let fenced = "```json\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n```";
        assert_eq!(parse(fenced, &tools).1.len(), 1);
        assert_eq!(parse(fenced, &[]).1.len(), 0);
        assert_eq!(parse("{\"name\": \"g\", \"arguments\": {}}", &tools).1.len(), 0);
    }

    #[test]
    fn tool_choice_reads_openai_values() {
        let f = serde_json::json!({"type": "function", "function": {"name": "f"}});
        assert_eq!(ToolChoice::from_value(&f).unwrap(), ToolChoice::Function("f".into()));
        assert_eq!(ToolChoice::from_value(&"required".into()).unwrap(), ToolChoice::Required);
        assert!(ToolChoice::from_value(&"sometimes".into()).is_err());
        let tools = [serde_json::json!({"type": "function", "function": {"name": "g"}})];
        assert!(matches!(grammar(&tools, &ToolChoice::Function("f".into())), Err(Error::InvalidArgument(_))));
    }
}
