//! The models this project knows by name (`catalog.json`): where `scripts/fetch-model.sh` gets
//! each one, its sha256, size, licence and what it is. The CLI takes these names for `--model`,
//! and the npm package lists them for the demo's model picker.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// One wheel member; a model file is its parts' members concatenated in order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Part {
    pub package: String,
    pub member: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CatalogEntry {
    /// The short name: `smollm2-135m`, `qwen2.5-coder-0.5b`, …
    pub name: String,
    /// For display.
    pub title: String,
    /// The file's name under `models/`.
    pub file: String,
    pub parts: Vec<Part>,
    pub sha256: String,
    pub size_bytes: u64,
    pub license: String,
    /// `general.architecture`.
    pub architecture: String,
    pub quant: String,
    /// `chat` (instruction-tuned, has a chat template) or `completion` (a base model: raw text).
    pub kind: String,
    pub parameters: String,
    /// Transformer layers (`<arch>.block_count`): with `kv_width`, the KV cache's size.
    pub n_layers: usize,
    /// Width of one position's K (and V) vector in one layer: KV heads × head size.
    pub kv_width: usize,
    /// The longest context the model was trained for (`<arch>.context_length`).
    pub context_length: usize,
}

impl CatalogEntry {
    /// Bytes of a KV cache of `context` positions holding `value_bytes`-byte values (4 for f32,
    /// 2 for f16): K and V, every layer.
    pub fn kv_cache_bytes(&self, context: usize, value_bytes: usize) -> u64 {
        2 * (self.n_layers * self.kv_width * context * value_bytes) as u64
    }
}

/// How a loaded file compares with the catalog: the entry of its file name, and whether its size
/// is that entry's too (`matched`). Name and size, not the sha256: hashing a large file at every
/// load would cost seconds.
#[derive(Clone, Debug, Serialize)]
pub struct Recognised {
    pub entry: Option<&'static CatalogEntry>,
    pub matched: bool,
    /// Why it did not match, in words (`None` when it matched).
    pub note: Option<String>,
}

/// Recognise a file by its name (the last component of a path or URL) and size.
pub fn recognise(file: &str, size: u64) -> Recognised {
    match by_file(file) {
        Some(e) if e.size_bytes == size => Recognised { entry: Some(e), matched: true, note: None },
        Some(e) => Recognised {
            entry: Some(e),
            matched: false,
            note: Some(format!("named like {} but {size} bytes long, not {}", e.name, e.size_bytes)),
        },
        None => Recognised { entry: None, matched: false, note: Some(format!("{file:?} is not a catalog file")) },
    }
}

#[derive(Debug, Deserialize)]
struct Catalog {
    default: String,
    models: Vec<CatalogEntry>,
}

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| serde_json::from_str(include_str!("catalog.json")).expect("catalog.json is valid"))
}

/// Every model of the catalog, the default first.
pub fn entries() -> &'static [CatalogEntry] {
    &catalog().models
}

/// The model fetched and used when none is named.
pub fn default_entry() -> &'static CatalogEntry {
    find(&catalog().default).expect("the default model is in the catalog")
}

pub fn find(name: &str) -> Option<&'static CatalogEntry> {
    entries().iter().find(|e| e.name == name)
}

/// The entry whose sha256 is `sha256` (how a loaded file is recognised).
pub fn by_sha256(sha256: &str) -> Option<&'static CatalogEntry> {
    entries().iter().find(|e| e.sha256.eq_ignore_ascii_case(sha256))
}

/// The entry whose file name is `file` (the last component of a path or URL).
pub fn by_file(file: &str) -> Option<&'static CatalogEntry> {
    entries().iter().find(|e| e.file == file)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_catalog_parses_and_names_are_unique() {
        let e = super::entries();
        assert!(e.len() >= 4);
        assert_eq!(super::default_entry().name, "smollm2-135m");
        for (i, a) in e.iter().enumerate() {
            assert!(e[i + 1..].iter().all(|b| b.name != a.name && b.file != a.file), "{} twice", a.name);
            assert_eq!(a.sha256.len(), 64);
            assert!(!a.parts.is_empty());
            assert!(a.n_layers > 0 && a.kv_width > 0 && a.context_length > 0, "{}", a.name);
        }
    }

    #[test]
    fn files_are_recognised_by_name_and_size() {
        let d = super::default_entry();
        let r = super::recognise(&d.file, d.size_bytes);
        assert!(r.matched && r.entry.is_some_and(|e| e.name == d.name) && r.note.is_none());
        let r = super::recognise(&d.file, d.size_bytes + 1);
        assert!(!r.matched && r.entry.is_some() && r.note.unwrap().contains("bytes long"));
        let r = super::recognise("other.gguf", d.size_bytes);
        assert!(!r.matched && r.entry.is_none());
        // SmolLM2-135M: 30 layers × 192 (3 KV heads of 64) × 2 (K and V) × 4 bytes a position.
        assert_eq!(d.kv_cache_bytes(4096, 4), 30 * 192 * 2 * 4 * 4096);
    }
}
