//! The catalog against the model files that are present: size, and the numbers the demo's memory
//! estimate uses (layers, KV width, context) against each file's own metadata.

use std::collections::HashMap;
use std::io::{BufReader, Read};

use webgpu_llm::model::catalog;

/// A GGUF file's scalar metadata, read from its header alone (arrays are skipped).
fn metadata(path: &std::path::Path) -> HashMap<String, f64> {
    let mut r = BufReader::new(std::fs::File::open(path).unwrap());
    let mut take = |n: usize| {
        let mut b = vec![0; n];
        r.read_exact(&mut b).unwrap();
        b
    };
    fn num(b: &[u8]) -> u64 {
        b.iter().rev().fold(0, |n, &x| n << 8 | x as u64)
    }
    assert_eq!(take(4), b"GGUF");
    let _version = num(&take(4));
    let _tensors = num(&take(8));
    let kvs = num(&take(8));
    let mut out = HashMap::new();
    for _ in 0..kvs {
        let len = num(&take(8)) as usize;
        let key = String::from_utf8(take(len)).unwrap();
        let ty = num(&take(4));
        // value(type) → a number if it is one; strings and arrays are read past.
        fn value(ty: u64, take: &mut dyn FnMut(usize) -> Vec<u8>) -> Option<f64> {
            let size = |ty| match ty {
                0 | 1 | 7 => 1,
                2 | 3 => 2,
                4..=6 => 4,
                10..=12 => 8,
                _ => 0,
            };
            match ty {
                8 => {
                    let n = num(&take(8)) as usize;
                    take(n);
                    None
                }
                9 => {
                    let inner = num(&take(4));
                    let n = num(&take(8));
                    for _ in 0..n {
                        value(inner, take);
                    }
                    None
                }
                4 | 10 => Some(num(&take(size(ty))) as f64),
                _ => {
                    take(size(ty));
                    None
                }
            }
        }
        if let Some(v) = value(ty, &mut take) {
            out.insert(key, v);
        }
    }
    out
}

#[test]
fn present_model_files_agree_with_their_catalog_entries() {
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut checked = 0;
    for e in catalog::entries() {
        let path = models.join(&e.file);
        let Ok(meta) = std::fs::metadata(&path) else {
            eprintln!("note: {} is absent (scripts/fetch-model.sh {}): not checked", path.display(), e.name);
            continue;
        };
        assert_eq!(meta.len(), e.size_bytes, "{}: size", e.name);
        let m = metadata(&path);
        let a = &e.architecture;
        let get = |k: &str| m.get(&format!("{a}.{k}")).copied().map(|v| v as usize);
        let heads = get("attention.head_count").unwrap();
        let kv_heads = get("attention.head_count_kv").unwrap_or(heads);
        let head_dim = get("attention.key_length").unwrap_or_else(|| get("embedding_length").unwrap() / heads);
        assert_eq!(get("block_count"), Some(e.n_layers), "{}: layers", e.name);
        assert_eq!(kv_heads * head_dim, e.kv_width, "{}: KV width", e.name);
        assert_eq!(get("context_length"), Some(e.context_length), "{}: context", e.name);
        checked += 1;
    }
    assert!(checked > 0, "not even the default model is present");
}
