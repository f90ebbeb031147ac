//! The JavaScript boundary (wasm32 only): arguments in, results out, as plain JS objects through
//! serde-wasm-bindgen; errors become JS `Error`s with a stable `code`. No logic of its own: the
//! npm package (`pkg/`) wraps this in the public API.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;

use crate::chat::Message;
use crate::engine::{Engine, EngineOptions, EvaluateOptions, Pause, Retune, TokenEvent};
use crate::error::Error;
use crate::sampler::SamplingParams;

#[wasm_bindgen(start)]
pub fn start() {
    // A panic is a bug; this makes it readable in the console instead of "unreachable".
    console_error_panic_hook::set_once();
}

/// An `Error` whose `code` is the Rust error's stable code.
fn js_error(e: Error) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    err.set_name("WebGpuLlmError");
    let _ = js_sys::Reflect::set(&err, &"code".into(), &e.code().into());
    err.into()
}

fn from_js<T: serde::de::DeserializeOwned>(what: &str, v: JsValue) -> Result<T, JsValue> {
    if v.is_undefined() || v.is_null() {
        return serde_wasm_bindgen::from_value(js_sys::Object::new().into())
            .map_err(|e| js_error(Error::InvalidArgument(format!("{what}: {e}"))));
    }
    serde_wasm_bindgen::from_value(v).map_err(|e| js_error(Error::InvalidArgument(format!("{what}: {e}"))))
}

fn to_js<T: serde::Serialize>(v: &T) -> Result<JsValue, JsValue> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| js_error(Error::InvalidArgument(format!("result: {e}"))))
}

/// A JS callback the engine calls as it works: returns `false` (stop) when the callback does,
/// or when it throws or its argument cannot cross; the first such error is kept for the caller.
struct Callback {
    f: js_sys::Function,
    error: Option<JsValue>,
}

impl Callback {
    fn new(f: js_sys::Function) -> Callback {
        Callback { f, error: None }
    }

    /// Call it with `value` (after `index`, when given).
    fn call<T: serde::Serialize>(&mut self, index: Option<usize>, value: &T) -> bool {
        let result = to_js(value).and_then(|v| match index {
            Some(i) => self.f.call2(&JsValue::NULL, &JsValue::from(i as u32), &v),
            None => self.f.call1(&JsValue::NULL, &v),
        });
        match result {
            Ok(v) => v.as_bool() != Some(false),
            Err(err) => {
                self.error.get_or_insert(err);
                false
            }
        }
    }

    /// The work's result, or the callback's error first.
    fn finish<T: serde::Serialize>(self, result: T) -> Result<JsValue, JsValue> {
        match self.error {
            Some(err) => Err(err),
            None => to_js(&result),
        }
    }
}

fn busy() -> JsValue {
    js_error(Error::InvalidArgument("the engine is busy with another generation".into()))
}

/// A model loading from a stream of bytes ([`crate::load::Loader`]): `push` each chunk in
/// order (awaiting each), across all parts of a split model, then `finish`. Once the header is in,
/// the model is checked against the device and its buffers made; later bytes go straight to the
/// GPU (or, on the CPU, into the weights a tensor at a time): no copy of the file is ever held.
#[wasm_bindgen]
pub struct ModelLoader {
    loader: Rc<RefCell<Option<crate::load::Loader>>>,
    name: Option<String>,
}

#[wasm_bindgen]
impl ModelLoader {
    /// `options`: `EngineOptions`; `name`: the file's name or URL (recognises its catalog
    /// entry); `part_sizes`: each part's length in bytes (one for a whole file).
    #[wasm_bindgen(constructor)]
    pub fn new(options: JsValue, name: Option<String>, part_sizes: Vec<f64>) -> Result<ModelLoader, JsValue> {
        let options: EngineOptions = from_js("options", options)?;
        let parts = part_sizes.iter().map(|&s| s as u64).collect();
        let loader = crate::load::Loader::new(options, parts).map_err(js_error)?;
        Ok(ModelLoader { loader: Rc::new(RefCell::new(Some(loader))), name })
    }

    /// Part `k`'s first bytes, ahead of the stream (every part after the first of a split
    /// model): 0 once its header is parsed, else the bytes it needs.
    #[wasm_bindgen(js_name = partHeader)]
    pub fn part_header(&self, k: usize, prefix: &[u8]) -> Result<f64, JsValue> {
        let mut slot = self.loader.try_borrow_mut().map_err(|_| busy())?;
        let loader = slot.as_mut().ok_or_else(finished)?;
        loader.part_header(k, prefix).map(|n| n as f64).map_err(js_error)
    }

    /// The next bytes of the stream; await it before the next push.
    // The loader stays borrowed across the await on purpose: a push before this one ends is
    // "busy".
    #[allow(clippy::await_holding_refcell_ref)]
    pub fn push(&self, chunk: Vec<u8>) -> js_sys::Promise {
        let loader = self.loader.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let mut slot = loader.try_borrow_mut().map_err(|_| busy())?;
            let l = slot.as_mut().ok_or_else(finished)?;
            l.push(&chunk).await.map_err(js_error)?;
            Ok(JsValue::UNDEFINED)
        })
    }

    #[wasm_bindgen(getter)]
    pub fn received(&self) -> f64 {
        self.peek(|l| l.received() as f64)
    }

    /// Bytes placed into the backend's weights so far.
    #[wasm_bindgen(getter)]
    pub fn placed(&self) -> f64 {
        self.peek(|l| l.placed() as f64)
    }

    #[wasm_bindgen(getter)]
    pub fn total(&self) -> f64 {
        self.peek(|l| l.total() as f64)
    }

    #[wasm_bindgen(getter, js_name = headerParsed)]
    pub fn header_parsed(&self) -> bool {
        self.peek(|l| l.header_parsed())
    }

    /// The estimate the model was checked with (`null` before the header is in).
    pub fn estimate(&self) -> Result<JsValue, JsValue> {
        let slot = self.loader.try_borrow().map_err(|_| busy())?;
        match slot.as_ref().and_then(|l| l.estimate()) {
            Some(e) => to_js(e),
            None => Ok(JsValue::NULL),
        }
    }

    /// Lowercase hex SHA-256 of every byte pushed.
    pub fn sha256(&self) -> Result<String, JsValue> {
        let slot = self.loader.try_borrow().map_err(|_| busy())?;
        Ok(slot.as_ref().ok_or_else(finished)?.sha256())
    }

    /// Every byte is in: the loaded `Engine`.
    pub fn finish(&self) -> js_sys::Promise {
        let (loader, name) = (self.loader.clone(), self.name.clone());
        wasm_bindgen_futures::future_to_promise(async move {
            let l = loader.try_borrow_mut().map_err(|_| busy())?.take().ok_or_else(finished)?;
            let catalog = crate::facts::catalog_facts(name.as_deref(), l.total());
            let engine = l.finish().await.map_err(js_error)?;
            let retune = engine.retune();
            Ok(WasmEngine { engine: Rc::new(RefCell::new(engine)), retune, catalog }.into())
        })
    }

    fn peek<T: Default>(&self, f: impl FnOnce(&crate::load::Loader) -> T) -> T {
        self.loader.try_borrow().ok().and_then(|s| s.as_ref().map(f)).unwrap_or_default()
    }
}

fn finished() -> JsValue {
    js_error(Error::InvalidArgument("this load has finished (or failed)".into()))
}

/// What a model needs, from the first bytes of its (first) file: `{ need_bytes }` when the
/// prefix is too short for the header, else the estimate (`fits`, `reason`, the byte counts).
/// `limits`: the adapter's `{ max_buffer_size, max_storage_buffer_binding_size, f16 }`, or null.
#[wasm_bindgen(js_name = estimateModel)]
pub fn estimate_model(
    prefix: &[u8],
    part_sizes: Vec<f64>,
    options: JsValue,
    limits: JsValue,
) -> Result<JsValue, JsValue> {
    let options: EngineOptions = from_js("options", options)?;
    let limits: crate::load::fit::Limits = from_js("limits", limits)?;
    let parts: Vec<u64> = part_sizes.iter().map(|&s| s as u64).collect();
    match crate::load::estimate(prefix, &parts, &options, &limits).map_err(js_error)? {
        Err(need) => to_js(&serde_json::json!({ "need_bytes": need })),
        Ok(e) => to_js(&e),
    }
}

/// A loaded model.
#[wasm_bindgen(js_name = Engine)]
pub struct WasmEngine {
    engine: Rc<RefCell<Engine>>,
    retune: Retune,
    /// The file's catalog entry, recognised by its name and size at load.
    catalog: crate::model::catalog::Recognised,
}

#[wasm_bindgen(js_class = Engine)]
impl WasmEngine {
    /// What runs the model: backend, adapter, configuration, context and memory; the model's
    /// catalog entry and template facts.
    pub fn info(&self) -> Result<JsValue, JsValue> {
        let e = self.engine.try_borrow().map_err(|_| busy())?;
        let stats = e.stats();
        to_js(&serde_json::json!({
            "backend": e.backend_name(),
            "adapter": e.adapter(),
            "config": e.config(),
            "context_size": e.context_size(),
            "eog_ids": e.tokenizer().eog_ids(),
            "template": crate::facts::template_facts(&e),
            "chat_template": e.template().map(|t| t.source()),
            // A base model has no chat template: offer raw completion (encodePrompt) instead.
            "has_chat_template": e.has_chat_template(),
            "catalog": self.catalog,
            "cached_tokens": e.cached_tokens().len(),
            // The draft model attached for speculative decoding (setDraft), or null.
            "draft": e.draft().map(|d| serde_json::json!({
                "backend": d.backend_name(),
                "config": d.config(),
                "context_size": d.context_size(),
            })),
            "weight_bytes": stats.weight_bytes,
            "kv_cache_bytes": stats.kv_bytes,
            "gpu_memory_bytes": stats.device_bytes,
            "estimate": e.estimate(),
            // Linear memory never shrinks: its size is the most this engine's thread has held.
            "wasm_memory_bytes": core::arch::wasm32::memory_size(0) * 65536,
        }))
    }

    /// Token ids of a conversation (`[{role, content}]`) rendered with the model's template, with
    /// the OpenAI-style function `tools` the model may call (`undefined`: none).
    #[wasm_bindgen(js_name = encodeChat)]
    pub fn encode_chat(&self, messages: JsValue, tools: JsValue) -> Result<Vec<u32>, JsValue> {
        let messages: Vec<Message> = from_js("messages", messages)?;
        let tools: Option<Vec<serde_json::Value>> = match tools.is_undefined() || tools.is_null() {
            true => None,
            false => Some(from_js("tools", tools)?),
        };
        let e = self.engine.try_borrow().map_err(|_| busy())?;
        e.encode_chat_with_tools(&messages, tools.as_deref()).map_err(js_error)
    }

    /// [`Engine::encode_chat_fitting`]: `{ ids, dropped }`, the oldest turns dropped until the
    /// prompt leaves `reserve` positions free.
    #[wasm_bindgen(js_name = encodeChatFitting)]
    pub fn encode_chat_fitting(&self, messages: JsValue, reserve: usize) -> Result<JsValue, JsValue> {
        let messages: Vec<Message> = from_js("messages", messages)?;
        let e = self.engine.try_borrow().map_err(|_| busy())?;
        let (ids, dropped) = e.encode_chat_fitting(&messages, reserve).map_err(js_error)?;
        to_js(&serde_json::json!({ "ids": ids, "dropped": dropped }))
    }

    /// Token ids of raw text.
    #[wasm_bindgen(js_name = encodePrompt)]
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>, JsValue> {
        self.engine.try_borrow().map_err(|_| busy())?.encode_prompt(text).map_err(js_error)
    }

    /// Generate from `prompt` ids with `params` (`SamplingParams`); `on_token` receives each
    /// `TokenEvent` and returns `false` to stop. Resolves to the `Generation`.
    // The engine stays borrowed across the awaits on purpose: it is busy until the generation
    // ends, and other calls meanwhile get a "busy" error (setSampling does not borrow it).
    #[allow(clippy::await_holding_refcell_ref)]
    pub fn generate(&self, prompt: Vec<u32>, params: JsValue, on_token: js_sys::Function) -> js_sys::Promise {
        let engine = self.engine.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let params: SamplingParams = from_js("params", params)?;
            let mut e = engine.try_borrow_mut().map_err(|_| busy())?;
            let mut callback = Callback::new(on_token);
            let gen = e.generate_async(&prompt, &params, &mut |t| callback.call(None, t)).await.map_err(js_error)?;
            callback.finish(gen)
        })
    }

    /// [`Engine::generate_choices_async`]: `n` choices of `prompt` (choice i seeded `seed + i`),
    /// or the `n` best by mean log-probability of `best_of` (null: `n`); `on_token(index,
    /// event)` receives each choice's `TokenEvent`s (only when `best_of` is null or `n`) and
    /// returns `false` to stop that choice. Resolves to the `Choice`s (a `Generation` each, with
    /// `index`, `seed` and `mean_logprob`).
    #[wasm_bindgen(js_name = generateChoices)]
    #[allow(clippy::await_holding_refcell_ref)]
    pub fn generate_choices(
        &self,
        prompt: Vec<u32>,
        params: JsValue,
        n: usize,
        best_of: Option<usize>,
        on_token: js_sys::Function,
    ) -> js_sys::Promise {
        let engine = self.engine.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let params: SamplingParams = from_js("params", params)?;
            let mut e = engine.try_borrow_mut().map_err(|_| busy())?;
            let mut callback = Callback::new(on_token);
            let mut forward = |i: usize, t: &TokenEvent| callback.call(Some(i), t);
            let choices =
                e.generate_choices_async(&prompt, &params, n, best_of, &mut forward).await.map_err(js_error)?;
            callback.finish(choices)
        })
    }

    /// [`Engine::evaluate_async`]: the perplexity of `text` as llama-perplexity computes it;
    /// `options`: `{ contextSize, maxChunks }`; `on_chunk` receives each `ChunkPerplexity` as it
    /// ends and returns `false` to stop. Resolves to the `Perplexity`.
    #[allow(clippy::await_holding_refcell_ref)]
    pub fn evaluate(&self, text: String, options: JsValue, on_chunk: js_sys::Function) -> js_sys::Promise {
        let engine = self.engine.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let options: EvaluateOptions = from_js("options", options)?;
            let mut e = engine.try_borrow_mut().map_err(|_| busy())?;
            let mut callback = Callback::new(on_chunk);
            let ppl = e.evaluate_async(&text, &options, &mut |c| callback.call(None, c)).await.map_err(js_error)?;
            callback.finish(ppl)
        })
    }

    /// Attach `draft` (another loaded `Engine`, with the same vocabulary) as this one's draft
    /// model for speculative decoding, or detach it with `null`. The other engine is moved: its
    /// JS object is consumed (its methods throw afterwards), even when attaching fails (a
    /// different vocabulary is `invalid_argument`, and the other model is then freed).
    #[wasm_bindgen(js_name = setDraft)]
    pub fn set_draft(&self, draft: Option<WasmEngine>) -> Result<(), JsValue> {
        let mut e = self.engine.try_borrow_mut().map_err(|_| busy())?;
        let draft = match draft {
            None => None,
            // Another handle to it is a call still running on the other engine.
            Some(d) => Some(Rc::try_unwrap(d.engine).map_err(|_| busy())?.into_inner()),
        };
        e.set_draft(draft).map_err(js_error)
    }

    /// New sampling knobs for the running generation, from its next step on.
    #[wasm_bindgen(js_name = setSampling)]
    pub fn set_sampling(&self, params: JsValue) -> Result<(), JsValue> {
        let params: SamplingParams = from_js("params", params)?;
        self.retune.set(params).map_err(js_error)
    }

    /// Await `pause()` (a function returning a Promise) between tokens, so that messages and
    /// other tasks get a turn during a generation; a Promise of `false` stops the generation.
    /// `null` turns it off.
    #[wasm_bindgen(js_name = setPause)]
    pub fn set_pause(&self, pause: Option<js_sys::Function>) -> Result<(), JsValue> {
        let pause: Option<Pause> = pause.map(|f| -> Pause {
            Box::new(move || {
                let promise = f.call0(&JsValue::NULL).ok().and_then(|v| v.dyn_into::<js_sys::Promise>().ok());
                Box::pin(async move {
                    match promise {
                        Some(p) => {
                            wasm_bindgen_futures::JsFuture::from(p).await.map_or(true, |v| v.as_bool() != Some(false))
                        }
                        None => true,
                    }
                })
            })
        });
        self.engine.try_borrow_mut().map_err(|_| busy())?.set_pause(pause);
        Ok(())
    }

    /// Forget the KV cache.
    pub fn reset(&self) -> Result<(), JsValue> {
        self.engine.try_borrow_mut().map_err(|_| busy())?.reset();
        Ok(())
    }
}

/// The `grammar` sampling parameter for OpenAI's `response_format` (`null` for `{type: "text"}`).
#[wasm_bindgen(js_name = responseFormatGrammar)]
pub fn response_format_grammar(format: JsValue) -> Result<JsValue, JsValue> {
    let format: serde_json::Value = from_js("response_format", format)?;
    to_js(&crate::constraint::Grammar::from_response_format(&format).map_err(js_error)?)
}

/// The `grammar` a `tool_choice` imposes on the answer (`null` for "auto" and "none").
#[wasm_bindgen(js_name = toolChoiceGrammar)]
pub fn tool_choice_grammar(tools: JsValue, choice: JsValue) -> Result<JsValue, JsValue> {
    let tools: Vec<serde_json::Value> = from_js("tools", tools)?;
    let choice: serde_json::Value = from_js("tool_choice", choice)?;
    let choice = crate::chat::tools::ToolChoice::from_value(&choice).map_err(js_error)?;
    to_js(&crate::chat::tools::grammar(&tools, &choice).map_err(js_error)?)
}

/// `{ content, tool_calls }`: the answer's text and its tool calls in OpenAI's shape.
#[wasm_bindgen(js_name = parseToolCalls)]
pub fn parse_tool_calls(text: &str, tools: JsValue) -> Result<JsValue, JsValue> {
    let tools: Vec<serde_json::Value> = from_js("tools", tools)?;
    let (content, calls) = crate::chat::tools::parse(text, &tools);
    to_js(&serde_json::json!({ "content": content, "tool_calls": calls }))
}
