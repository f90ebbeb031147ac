//! Paths shared by the integration tests: the default model and llama.cpp's golden outputs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use webgpu_llm::engine::{Engine, EngineOptions};

/// The default model, fetched by `scripts/fetch-model.sh` (override with WEBGPU_LLM_MODEL).
pub fn model_path() -> PathBuf {
    std::env::var_os("WEBGPU_LLM_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf"))
}

pub fn model_bytes() -> Vec<u8> {
    let p = model_path();
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e} (run scripts/fetch-model.sh)", p.display()))
}

/// llama.cpp's reference outputs, one folder per catalog model: `tests/golden/<name>/`
/// (override the root with WEBGPU_LLM_GOLDEN).
pub fn golden_root() -> PathBuf {
    std::env::var_os("WEBGPU_LLM_GOLDEN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden"))
}

/// The default model's golden folder.
pub fn golden_dir() -> PathBuf {
    golden_root().join("smollm2-135m")
}

pub fn golden_json(name: &str) -> serde_json::Value {
    let p = golden_dir().join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

/// Raw little-endian f32 file.
pub fn golden_f32(name: &str) -> Vec<f32> {
    let p = golden_dir().join(name);
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

pub const PROMPTS: [&str; 6] = ["chat_capital", "chat_haiku", "chat_math", "raw_code", "raw_facts", "raw_story"];

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// A catalog model's file under `models/` (fetched by `scripts/fetch-model.sh NAME`).
pub fn catalog_model_bytes(name: &str) -> Vec<u8> {
    let entry = webgpu_llm::model::catalog::find(name).unwrap_or_else(|| panic!("{name} is not in the catalog"));
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models").join(&entry.file);
    let bytes =
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e} (run scripts/fetch-model.sh {name})", p.display()));
    assert_eq!(bytes.len() as u64, entry.size_bytes, "{}: not the catalog's file", p.display());
    bytes
}

/// Load a model file, memory-mapped and streamed onto the backend (`Engine::load_file`).
pub fn load_file(path: &Path, options: &EngineOptions) -> webgpu_llm::Result<Engine> {
    Engine::load_file(path, options)
}
