//! The `tojson` filter as HF transformers defines it for chat templates: Python's
//! `json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`, not
//! jinja2's or minijinja's (which escape `<`, `>`, `&` and `'` for HTML and write no spaces).
//! Tool definitions reach the model through it, so it must write the same bytes: `", "` and
//! `": "` between items, keys in their given order, non-ASCII as it is, floats as Python's
//! `repr` writes them (`1.0`, `1e+20`).

use std::fmt::Write;

use minijinja::value::{Rest, Value, ValueKind};
use minijinja::{Error, ErrorKind};

use super::limits::MAX_STRING;

/// How deep `tojson` follows nested lists and maps.
const MAX_DEPTH: usize = 128;

/// `x|tojson(ensure_ascii=False, indent=None, separators=None, sort_keys=False)`, arguments by
/// position or by name.
pub fn tojson(value: &Value, args: Rest<Value>) -> Result<Value, Error> {
    const NAMES: [&str; 4] = ["ensure_ascii", "indent", "separators", "sort_keys"];
    let (positional, named) = match args.split_last() {
        Some((last, rest)) if last.is_kwargs() => (rest, Some(last)),
        _ => (&args[..], None),
    };
    if positional.len() > NAMES.len() {
        return Err(Error::new(ErrorKind::TooManyArguments, "tojson takes at most 4 arguments"));
    }
    let mut given: [Value; 4] = Default::default();
    given[..positional.len()].clone_from_slice(positional);
    if let Some(named) = named {
        for key in named.try_iter()? {
            let i = NAMES.iter().position(|n| key.as_str() == Some(n)).ok_or_else(|| {
                Error::new(ErrorKind::InvalidOperation, format!("tojson got an unexpected argument {key}"))
            })?;
            given[i] = named.get_item(&key)?;
        }
    }
    let [ensure_ascii, indent, separators, sort_keys] = given;
    let indent = match indent.kind() {
        ValueKind::Undefined | ValueKind::None => None,
        ValueKind::String => Some(indent.as_str().unwrap_or_default().to_string()),
        // Python's bools are the integers 0 and 1.
        ValueKind::Bool => Some(if indent.is_true() { " " } else { "" }.to_string()),
        // Python: ' ' * n, so a negative indent is none at all (but still one item a line).
        _ => Some(" ".repeat(indent.as_i64().ok_or_else(|| bad_arg("indent"))?.clamp(0, 64) as usize)),
    };
    let (item_sep, key_sep) = match separators.kind() {
        ValueKind::Undefined | ValueKind::None => (if indent.is_some() { "," } else { ", " }.to_string(), ": ".into()),
        _ => {
            let parts: Vec<Value> = separators.try_iter()?.collect();
            match parts.as_slice() {
                [a, b] => (
                    a.as_str().ok_or_else(|| bad_arg("separators"))?.to_string(),
                    b.as_str().ok_or_else(|| bad_arg("separators"))?.to_string(),
                ),
                _ => return Err(bad_arg("separators")),
            }
        }
    };
    let options = Options { ascii: ensure_ascii.is_true(), indent, item_sep, key_sep, sort_keys: sort_keys.is_true() };
    let mut out = Out(String::new());
    write_value(&mut out, &options, value, 0)?;
    Ok(Value::from(out.0))
}

fn bad_arg(name: &str) -> Error {
    Error::new(ErrorKind::InvalidOperation, format!("tojson: bad {name}"))
}

struct Options {
    ascii: bool,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

/// The text being built, refused once it passes [`MAX_STRING`] bytes.
struct Out(String);

impl Out {
    fn push(&mut self, s: &str) -> Result<(), Error> {
        if self.0.len() + s.len() > MAX_STRING {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("the chat template builds a string over {MAX_STRING} bytes"),
            ));
        }
        self.0.push_str(s);
        Ok(())
    }

    /// A line break and the indentation of `depth`, when indenting.
    fn newline(&mut self, options: &Options, depth: usize) -> Result<(), Error> {
        if let Some(indent) = &options.indent {
            self.push("\n")?;
            for _ in 0..depth {
                self.push(indent)?;
            }
        }
        Ok(())
    }
}

fn write_value(out: &mut Out, options: &Options, value: &Value, depth: usize) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(Error::new(ErrorKind::InvalidOperation, format!("tojson: values nest over {MAX_DEPTH} deep")));
    }
    match value.kind() {
        ValueKind::None => out.push("null"),
        ValueKind::Bool => out.push(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push(&number(value)),
        ValueKind::String => out.push(&string(value.as_str().unwrap_or_default(), options.ascii)),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            write_container(out, options, depth, "[", "]", &items, |out, item| {
                write_value(out, options, item, depth + 1)
            })
        }
        ValueKind::Map => {
            let mut entries: Vec<(String, Value)> = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                entries.push((key_text(&key)?, item));
            }
            if options.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            write_container(out, options, depth, "{", "}", &entries, |out, (key, item)| {
                out.push(&string(key, options.ascii))?;
                out.push(&options.key_sep)?;
                write_value(out, options, item, depth + 1)
            })
        }
        _ => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("tojson: Object of type {} is not JSON serializable", value.kind()),
        )),
    }
}

/// `[a, b]` or, indenting, one item a line; empty containers stay `[]` and `{}`.
fn write_container<T>(
    out: &mut Out,
    options: &Options,
    depth: usize,
    open: &str,
    close: &str,
    items: &[T],
    mut write_item: impl FnMut(&mut Out, &T) -> Result<(), Error>,
) -> Result<(), Error> {
    out.push(open)?;
    if items.is_empty() {
        return out.push(close);
    }
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(&options.item_sep)?;
        }
        out.newline(options, depth + 1)?;
        write_item(out, item)?;
    }
    out.newline(options, depth)?;
    out.push(close)
}

/// A map key as Python converts it: strings as they are, other scalars as JSON writes them.
fn key_text(key: &Value) -> Result<String, Error> {
    match key.kind() {
        ValueKind::String => Ok(key.as_str().unwrap_or_default().to_string()),
        ValueKind::Number => Ok(number(key)),
        ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.into()),
        ValueKind::None => Ok("null".into()),
        _ => Err(Error::new(ErrorKind::InvalidOperation, format!("tojson: keys must be str, not {}", key.kind()))),
    }
}

/// An integer as it is, a float as Python's `float.__repr__` writes it.
fn number(value: &Value) -> String {
    if value.is_integer() {
        return value.to_string();
    }
    let x = f64::try_from(value.clone()).unwrap_or(f64::NAN);
    python_float(x)
}

/// Python's `repr` of a float: the shortest text that reads back the same, in exponent form
/// below 1e-4 and from 1e16 on (the same bounds as Rust's `{:?}`, written `1e+16`, `1e-05`).
pub(crate) fn python_float(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let s = format!("{x:?}");
    match s.split_once('e') {
        Some((mantissa, exp)) => {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => s,
    }
}

/// A JSON string as Python writes it: `"` and `\` escaped, `\n` `\r` `\t` `\b` `\f` by name, other
/// control characters as `\u00XX`, and (with `ascii`) everything past ASCII as `\uXXXX` (UTF-16).
fn string(s: &str, ascii: bool) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ascii && !c.is_ascii() => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_read_as_python_writes_them() {
        for (x, want) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-0.0, "-0.0"),
            (1e16, "1e+16"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (123456789012345.6, "123456789012345.6"),
            (1e300, "1e+300"),
            (f64::INFINITY, "Infinity"),
        ] {
            assert_eq!(python_float(x), want);
        }
    }

    #[test]
    fn strings_escape_as_python_does() {
        assert_eq!(string("a\"b\\c\n\u{1}é😀<&>", false), "\"a\\\"b\\\\c\\n\\u0001é😀<&>\"");
        assert_eq!(string("é😀", true), "\"\\u00e9\\ud83d\\ude00\"");
    }
}
