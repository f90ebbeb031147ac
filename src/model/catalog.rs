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
        }
    }
}
