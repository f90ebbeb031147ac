//! The golden data copied from llama.cpp's runs is byte-identical to what was produced: every file
//! listed in each model's `index.json` has its recorded sha256, and nothing unlisted lies beside it.

mod common;

use sha2::{Digest, Sha256};

#[test]
fn golden_files_match_their_recorded_sha256() {
    let models = ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "gemma3-270m"];
    for model in models {
        let dir = common::golden_root().join(model);
        let index: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
        let listed = index["files_sha256"].as_object().unwrap();
        assert!(listed.len() >= 10, "{model}: only {} files listed", listed.len());
        for (file, want) in listed {
            let bytes = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{model}/{file}: {e}"));
            let got: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(&got, want.as_str().unwrap(), "{model}/{file} differs from llama.cpp's");
        }
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(
                name == "index.json" || name == "README.md" || listed.contains_key(&name),
                "{model}/{name} is not in index.json"
            );
        }
    }
}
