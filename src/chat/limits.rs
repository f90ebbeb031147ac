//! What a chat template may build while it renders.
//!
//! The template comes inside the model file, so it is untrusted. minijinja's fuel bounds the
//! instructions it runs and its recursion limit bounds depth, but one instruction can double a
//! value (`ns.s ~ ns.s`) or multiply it (`s|replace('a', s)`), so a loop of 40 steps asks for a
//! terabyte. minijinja has no hook on its operators, so before each render the compiled template
//! is rewritten, one instruction at a time, to go through the checks here:
//! - `~`, `+` and `*` become calls that check the size of their result before building it;
//! - filters that multiply their input (replace, join, indent, format, batch, slice, list, split,
//!   lines, tojson) are checked before they run; every filter, method and function result is
//!   checked after;
//! - a value stored into a namespace may hold no namespace and nest at most [`MAX_DEPTH`]
//!   deep: namespaces are the only mutable values, so no value can come to hold itself (which
//!   printing, comparing or dropping would follow until the stack overflows);
//! - raw template text is emitted through the formatter like `{{ … }}`, and the formatter counts
//!   every byte written, to the output or into a capture (macros, `set` blocks).
//!
//! minijinja also folds constant expressions when it compiles, so `'x' * 100000000` would be
//! built at load, before any check: [`unfold_constants`] turns integer literals into `(n|int)`,
//! which is not a constant, so such products are made (and checked) when the template runs.
//!
//! Each string may hold [`MAX_STRING`] bytes and each list [`MAX_ITEMS`] items, and everything
//! one render builds or writes counts against [`MAX_BUILT`] bytes.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::OnceLock;

use minijinja::machinery::{self, Instruction, Instructions, Token};
use minijinja::value::{Rest, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Expression, State, Template};

/// The largest string a template may build (the rendered prompt is held to this too).
pub const MAX_STRING: usize = 4 << 20;
/// The most items a list built by a template may hold.
pub const MAX_ITEMS: usize = 1 << 18;
/// How deep a value kept in a namespace may nest lists and maps.
pub const MAX_DEPTH: usize = 64;
/// Everything one render may build and write, in bytes (a list item counts [`ITEM_BYTES`]).
pub const MAX_BUILT: usize = 64 << 20;
const ITEM_BYTES: usize = 32;

/// Names the rewritten template calls; a template that spells this prefix is refused at load.
pub const RESERVED: &str = "__webgpu_llm_";
const CONCAT: &str = "__webgpu_llm_concat";
const ADD: &str = "__webgpu_llm_add";
const MUL: &str = "__webgpu_llm_mul";
const CHECK: &str = "__webgpu_llm_check";
const STORABLE: &str = "__webgpu_llm_storable";

/// Filters checked before they run: (name, the name the rewritten template calls).
const CHECKED_FILTERS: &[(&str, &str)] = &[
    ("replace", "__webgpu_llm_replace"),
    ("join", "__webgpu_llm_join"),
    ("indent", "__webgpu_llm_indent"),
    ("format", "__webgpu_llm_format"),
    ("batch", "__webgpu_llm_batch"),
    ("slice", "__webgpu_llm_slice"),
    ("list", "__webgpu_llm_list"),
    ("split", "__webgpu_llm_split"),
    ("lines", "__webgpu_llm_lines"),
    ("tojson", "__webgpu_llm_tojson"),
];

thread_local! {
    /// Bytes built and written by the render running on this thread.
    static BUILT: Cell<usize> = const { Cell::new(0) };
}

/// Register the checked operators, filters and methods, and the counting formatter.
pub fn install(env: &mut Environment<'static>) {
    env.add_function(CONCAT, |a: Value, b: Value| {
        text(&a)?.len().checked_add(text(&b)?.len()).map_or(Err(too_long()), fits_string)?;
        checked(ops().concat.eval(minijinja::context! { a, b }))
    });
    env.add_function(ADD, |a: Value, b: Value| {
        match (a.as_str(), b.as_str()) {
            (Some(x), Some(y)) => fits_string(x.len() + y.len())?,
            _ if is_list(&a) && is_list(&b) => fits_items(items(&a)? + items(&b)?)?,
            _ => {}
        }
        checked(ops().add.eval(minijinja::context! { a, b }))
    });
    env.add_function(MUL, |a: Value, b: Value| {
        for (x, n) in [(&a, &b), (&b, &a)] {
            let n = n.as_i64().filter(|_| n.kind() == ValueKind::Number).map(|n| n.max(0) as usize);
            match (x.as_str(), n) {
                (Some(s), Some(n)) => fits_string(s.len().saturating_mul(n))?,
                (None, Some(n)) if is_list(x) => fits_items(items(x)?.saturating_mul(n))?,
                _ => {}
            }
        }
        checked(ops().mul.eval(minijinja::context! { a, b }))
    });
    env.add_function(CHECK, |v: Value| checked(Ok(v)));
    env.add_function(STORABLE, storable);
    env.add_function("debug", || -> Result<Value, Error> {
        Err(Error::new(ErrorKind::InvalidOperation, "debug() is not available to chat templates"))
    });
    for &(name, checked_name) in CHECKED_FILTERS {
        env.add_filter(checked_name, move |state: &State, args: Rest<Value>| {
            before_filter(name, &args)?;
            state.apply_filter(name, &args)
        });
    }
    env.set_unknown_method_callback(|state, value, method, args| {
        before_method(value, method, args)?;
        minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
    });
    env.set_formatter(|out, state, value| {
        charge(text(value)?.len())?;
        minijinja::escape_formatter(out, state, value)
    });
}

/// `source` with each integer literal `n` written `(n|int)`: the same value, but not a constant,
/// so the compiler folds no `'x' * 100000000` at load. (`x.0` stays: `.` takes a literal.)
pub fn unfold_constants(source: &str) -> Result<String, Error> {
    let mut out = String::with_capacity(source.len());
    let (mut copied, mut after_dot) = (0, false);
    for token in machinery::tokenize(source, false, Default::default(), Default::default()) {
        let (token, span) = token?;
        if matches!(token, Token::Int(_) | Token::Int128(_)) && !after_dot {
            let (start, end) = (span.start_offset as usize, span.end_offset as usize);
            out.push_str(&source[copied..start]);
            out.push('(');
            out.push_str(&source[start..end]);
            out.push_str("|int)");
            copied = end;
        }
        after_dot = matches!(token, Token::Dot);
    }
    out.push_str(&source[copied..]);
    Ok(out)
}

/// Render `tmpl` with the checks in place.
pub fn render(env: &Environment<'_>, tmpl: &Template<'_, '_>, ctx: Value) -> Result<String, Error> {
    let compiled = machinery::get_compiled_template(tmpl);
    let instructions = rewrite(&compiled.instructions);
    let blocks: BTreeMap<_, _> = compiled.blocks.iter().map(|(name, b)| (*name, rewrite(b))).collect();
    BUILT.with(|b| b.set(0));
    let mut rendered = String::new();
    let mut out = machinery::make_string_output(&mut rendered);
    machinery::Vm::new(env).eval(&instructions, ctx, &blocks, &mut out, compiled.initial_auto_escape)?;
    Ok(rendered)
}

/// The template's instructions with each one that builds or writes text routed through a check.
/// Instructions are inserted, so jump targets are moved to where their instructions went.
fn rewrite<'s>(old: &Instructions<'s>) -> Instructions<'s> {
    let mut new = Instructions::new(old.name(), old.source());
    let mut moved = Vec::with_capacity(old.len() + 1);
    for i in 0..old.len() as u32 {
        moved.push(new.len() as u32);
        let mut push = |instruction: Instruction<'s>| match old.get_span(i) {
            Some(span) => new.add_with_span(instruction, span),
            None => new.add_with_line(instruction, old.get_line(i).unwrap_or(0) as u16),
        };
        match old.get(i).expect("in range").clone() {
            Instruction::StringConcat => push(Instruction::CallFunction(CONCAT, Some(2))),
            Instruction::Add => push(Instruction::CallFunction(ADD, Some(2))),
            Instruction::Mul => push(Instruction::CallFunction(MUL, Some(2))),
            // The value under the namespace on the stack is checked on its way in.
            Instruction::SetAttr(name) => {
                push(Instruction::Swap);
                push(Instruction::CallFunction(STORABLE, Some(1)));
                push(Instruction::Swap);
                push(Instruction::SetAttr(name))
            }
            Instruction::EmitRaw(raw) => {
                push(Instruction::LoadConst(Value::from_safe_string(raw.to_string())));
                push(Instruction::Emit)
            }
            Instruction::ApplyFilter(name, args, local) => {
                let name = CHECKED_FILTERS.iter().find(|f| f.0 == name).map_or(name, |f| f.1);
                push(Instruction::ApplyFilter(name, args, local));
                push(Instruction::CallFunction(CHECK, Some(1)))
            }
            call @ (Instruction::CallFunction(..) | Instruction::CallMethod(..) | Instruction::CallObject(..)) => {
                push(call);
                push(Instruction::CallFunction(CHECK, Some(1)))
            }
            other => push(other),
        };
    }
    moved.push(new.len() as u32);
    for i in 0..new.len() as u32 {
        if let Some(
            Instruction::Jump(to)
            | Instruction::JumpIfFalse(to)
            | Instruction::JumpIfFalseOrPop(to)
            | Instruction::JumpIfTrueOrPop(to)
            | Instruction::Iterate(to)
            | Instruction::BuildMacro(_, to, _),
        ) = new.get_mut(i)
        {
            *to = moved[*to as usize];
        }
    }
    new
}

/// minijinja's own `+`, `*` and `~`, run once a check has passed.
struct Ops {
    add: Expression<'static, 'static>,
    mul: Expression<'static, 'static>,
    concat: Expression<'static, 'static>,
}

fn ops() -> &'static Ops {
    static OPS: OnceLock<Ops> = OnceLock::new();
    OPS.get_or_init(|| {
        let env: &'static Environment<'static> = Box::leak(Box::new(Environment::new()));
        let compile = |e| env.compile_expression(e).expect("a valid expression");
        Ops { add: compile("a + b"), mul: compile("a * b"), concat: compile("a ~ b") }
    })
}

fn too_long() -> Error {
    Error::new(ErrorKind::InvalidOperation, format!("the chat template builds a string over {MAX_STRING} bytes"))
}

fn fits_string(bytes: usize) -> Result<(), Error> {
    if bytes > MAX_STRING {
        return Err(too_long());
    }
    Ok(())
}

fn fits_items(n: usize) -> Result<(), Error> {
    if n > MAX_ITEMS {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("the chat template builds a list over {MAX_ITEMS} items"),
        ));
    }
    Ok(())
}

fn charge(bytes: usize) -> Result<(), Error> {
    let total = BUILT.with(|b| {
        let total = b.get().saturating_add(bytes);
        b.set(total);
        total
    });
    if total > MAX_BUILT {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("the chat template builds and writes over {MAX_BUILT} bytes"),
        ));
    }
    Ok(())
}

/// Check a value the template has just built, and count it.
fn checked(v: Result<Value, Error>) -> Result<Value, Error> {
    let v = v?;
    if let Some(s) = v.as_str() {
        fits_string(s.len())?;
        charge(s.len())?;
    } else if matches!(v.kind(), ValueKind::Seq | ValueKind::Map | ValueKind::Iterable) {
        let n = items(&v)?;
        fits_items(n)?;
        charge(n * ITEM_BYTES)?;
    }
    Ok(v)
}

/// `v` if it may be stored into a namespace: it holds no namespace, at any depth, and nests at
/// most [`MAX_DEPTH`] deep. Each value looked at counts a byte against the render's budget.
fn storable(v: Value) -> Result<Value, Error> {
    fn walk(v: &Value, depth: usize) -> Result<(), Error> {
        charge(1)?;
        // minijinja's namespace type is private; its name is what there is to go by.
        if v.as_object().is_some_and(|o| o.type_name().ends_with("::Namespace")) {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "a namespace cannot hold a namespace in a chat template",
            ));
        }
        if depth > MAX_DEPTH {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("the chat template nests values over {MAX_DEPTH} deep"),
            ));
        }
        match v.kind() {
            ValueKind::Seq | ValueKind::Iterable => v.try_iter()?.try_for_each(|item| walk(&item, depth + 1)),
            ValueKind::Map => v.try_iter()?.try_for_each(|key| walk(&v.get_item(&key)?, depth + 1)),
            _ => Ok(()),
        }
    }
    walk(&v, 0)?;
    Ok(v)
}

fn is_list(v: &Value) -> bool {
    matches!(v.kind(), ValueKind::Seq | ValueKind::Iterable)
}

/// How many items `v` holds; counting stops past [`MAX_ITEMS`].
fn items(v: &Value) -> Result<usize, Error> {
    match v.len() {
        Some(n) => Ok(n),
        None => Ok(v.try_iter().map_or(0, |it| it.take(MAX_ITEMS + 1).count())),
    }
}

/// `v` as the text a template would print, or an error once that passes [`MAX_STRING`] bytes
/// (a list of one long string repeated prints far more than it holds).
fn text(v: &Value) -> Result<std::borrow::Cow<'_, str>, Error> {
    struct Capped(String);
    impl Write for Capped {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            if self.0.len() + s.len() > MAX_STRING {
                return Err(std::fmt::Error);
            }
            self.0.push_str(s);
            Ok(())
        }
    }
    if let Some(s) = v.as_str() {
        return Ok(s.into());
    }
    let mut w = Capped(String::new());
    write!(w, "{v}").map_err(|_| too_long())?;
    Ok(w.0.into())
}

/// The largest whole number among `args` and the values of keyword arguments: the widths and
/// counts a filter is asked for.
fn widest(args: &[Value]) -> usize {
    let mut widest = 0;
    for a in args {
        let mut note = |v: &Value| {
            if v.kind() == ValueKind::Number {
                widest = widest.max(v.as_i64().map_or(usize::MAX, |n| n.max(0) as usize));
            }
        };
        if a.kind() == ValueKind::Map {
            for key in a.try_iter().into_iter().flatten() {
                note(&a.get_item(&key).unwrap_or_default());
            }
        } else {
            note(a);
        }
    }
    widest
}

/// The length of `s` with `count` (all when `None`) of its `from`s replaced by `to`.
fn replaced_len(s: &str, from: &str, to: &str, count: Option<usize>) -> usize {
    let found = if from.is_empty() { s.chars().count() + 1 } else { s.matches(from).count() };
    let n = count.map_or(found, |c| c.min(found));
    (s.len() - n * from.len()).saturating_add(n.saturating_mul(to.len()))
}

/// Text produced by `sep.join(items)`.
fn joined_len(seq: &Value, sep: &str) -> Result<usize, Error> {
    fits_items(items(seq)?)?;
    let mut total = 0usize;
    for (i, item) in seq.try_iter()?.enumerate() {
        total = total.saturating_add(text(&item)?.len()).saturating_add(if i > 0 { sep.len() } else { 0 });
        fits_string(total)?;
    }
    Ok(total)
}

/// A bound on what a format string makes: each placeholder (`%…` or `{…}`; `%%`, `{{` and `}}`
/// are literal) may take the widest width or precision it names plus the longest argument.
fn formatted_len(format: &str, args: &[Value]) -> Result<usize, Error> {
    let mut longest = 0;
    for a in args {
        longest = longest.max(text(a)?.len());
    }
    let mut total = format.len();
    let mut rest = format;
    while let Some(at) = rest.find(['%', '{']) {
        let (open, after) = (&rest[at..at + 1], &rest[at + 1..]);
        if after.starts_with(open) {
            rest = &after[1..];
            continue;
        }
        let spec: String = match open {
            "%" => after.chars().take_while(|c| "-+ #0123456789.".contains(*c)).take(64).collect(),
            _ => after.chars().take_while(|&c| c != '}').take(64).collect(),
        };
        let digits = spec.split(|c: char| !c.is_ascii_digit()).filter(|d| !d.is_empty());
        let widest = digits.map(|d| d.parse::<usize>().unwrap_or(usize::MAX)).max().unwrap_or(0);
        total = total.saturating_add(widest.saturating_add(longest));
        rest = after;
    }
    Ok(total)
}

/// Pieces `s.split(sep)` makes (whitespace when `None`).
fn split_len(s: &str, sep: Option<&str>) -> usize {
    match sep {
        None => s.split_whitespace().count(),
        Some("") => 1,
        Some(sep) => s.matches(sep).count() + 1,
    }
}

fn before_filter(name: &str, args: &[Value]) -> Result<(), Error> {
    let Some(value) = args.first() else { return Ok(()) };
    let arg = |i: usize| args.get(i).filter(|v| v.kind() != ValueKind::Map);
    let arg_text = |i: usize| arg(i).map(text).transpose();
    match name {
        "replace" => {
            let (from, to) = (arg_text(1)?.unwrap_or_default(), arg_text(2)?.unwrap_or_default());
            let count = arg(3).and_then(Value::as_i64).filter(|&c| c >= 0).map(|c| c as usize);
            fits_string(replaced_len(&text(value)?, &from, &to, count))
        }
        "join" => joined_len(value, &arg_text(1)?.unwrap_or_default()).map(drop),
        "indent" => {
            let lines = text(value)?.lines().count() + 1;
            fits_string(text(value)?.len().saturating_add(lines.saturating_mul(widest(&args[1..]))))
        }
        "format" => fits_string(formatted_len(&text(value)?, &args[1..])?),
        "batch" | "slice" => fits_items(widest(&args[1..])),
        "list" => match value.as_str() {
            Some(s) => fits_items(s.chars().count()),
            None => fits_items(items(value)?),
        },
        "split" => fits_items(split_len(&text(value)?, arg_text(1)?.as_deref())),
        "lines" => fits_items(text(value)?.lines().count()),
        // Indenting by more than this is not a chat format; the output is checked after.
        "tojson" if widest(&args[1..]) > 16 => {
            Err(Error::new(ErrorKind::InvalidOperation, "tojson indent is limited to 16 in chat templates"))
        }
        _ => Ok(()),
    }
}

/// The Python string methods (minijinja-contrib's pycompat) that multiply their input.
fn before_method(value: &Value, method: &str, args: &[Value]) -> Result<(), Error> {
    let Some(s) = value.as_str() else { return Ok(()) };
    let arg_text = |i: usize| args.get(i).map(text).transpose();
    match method {
        "replace" => {
            let (from, to) = (arg_text(0)?.unwrap_or_default(), arg_text(1)?.unwrap_or_default());
            let count = args.get(2).and_then(Value::as_i64).filter(|&c| c >= 0).map(|c| c as usize);
            fits_string(replaced_len(s, &from, &to, count))
        }
        "join" => args.first().map_or(Ok(0), |seq| joined_len(seq, s)).map(drop),
        "format" => fits_string(formatted_len(s, args)?),
        "split" | "rsplit" => fits_items(split_len(s, arg_text(0)?.as_deref())),
        "splitlines" => fits_items(s.lines().count()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_computed_before_building() {
        assert_eq!(replaced_len("abab", "a", "xyz", None), 8);
        assert_eq!(replaced_len("abab", "a", "xyz", Some(1)), 6);
        assert_eq!(replaced_len("ab", "", "-", None), 5); // "-a-b-"
        assert_eq!(split_len("a b  c", None), 3);
        assert_eq!(split_len("a,b,c", Some(",")), 3);
        let seq = Value::from(vec!["ab", "c"]);
        assert_eq!(joined_len(&seq, ", ").unwrap(), 5);
        assert!(formatted_len("%99999999s", &[Value::from("x")]).unwrap() > MAX_STRING);
        assert!(formatted_len("{:>99999999}", &[Value::from("x")]).unwrap() > MAX_STRING);
        // Escaped braces and percents are text: a long literal with a big number is no bomb.
        let text = format!("100%% {{{{\"id\": 12345678}}}} {}", "y".repeat(1000));
        assert_eq!(formatted_len(&text, &[]).unwrap(), text.len());
        assert_eq!(formatted_len("%5s|%s", &[Value::from("abc")]).unwrap(), 6 + (5 + 3) + 3);
        assert_eq!(widest(&[Value::from(3), Value::from("x"), Value::from(12)]), 12);
    }
}
