//! The GGUF reader on the real model and on truncated, bit-flipped and hand-crafted hostile files:
//! every bad file must give a typed error, never a panic or a huge allocation.

mod common;
use common::*;
use webgpu_llm::gguf::writer::GgufWriter;
use webgpu_llm::gguf::{Gguf, Value};
use webgpu_llm::model::{Config, Weights};
use webgpu_llm::quant::DType;
use webgpu_llm::Error;

#[test]
fn reads_the_default_model_like_gguf_py() {
    let bytes = model_bytes();
    let g = Gguf::parse(&bytes).unwrap();
    let meta = golden_json("metadata.json");
    let kv = &meta["all_kv"];
    assert_eq!(g.version as u64, kv["GGUF.version"].as_u64().unwrap());
    assert_eq!(g.tensors.len() as u64, kv["GGUF.tensor_count"].as_u64().unwrap());
    assert_eq!(g.metadata.len() as u64, kv["GGUF.kv_count"].as_u64().unwrap());
    // Every scalar value gguf-py read equals ours.
    let mut compared = 0;
    for (key, want) in kv.as_object().unwrap() {
        if key.starts_with("GGUF.") {
            continue;
        }
        let got = g.get(key).unwrap_or_else(|| panic!("{key} missing"));
        match want {
            serde_json::Value::String(s) if s.starts_with("<array") => {
                let len: usize = s.trim_start_matches("<array len=").trim_end_matches('>').parse().unwrap();
                assert_eq!(got.as_array().unwrap().len(), len, "{key}");
            }
            serde_json::Value::String(s) => assert_eq!(got.as_str(), Some(s.as_str()), "{key}"),
            serde_json::Value::Bool(b) => assert_eq!(got.as_bool(), Some(*b), "{key}"),
            serde_json::Value::Number(n) => assert_eq!(got.as_f64(), n.as_f64(), "{key}"),
            serde_json::Value::Array(a) => assert_eq!(got.as_array().unwrap().len(), a.len(), "{key}"),
            other => panic!("{key}: unexpected {other}"),
        }
        compared += 1;
    }
    assert!(compared >= 30);
    let count = |t: DType| g.tensors.iter().filter(|x| x.dtype == t).count();
    assert_eq!((count(DType::Q8_0), count(DType::F32), count(DType::Q4_1)), (1, 61, 210));
    let embd = g.tensor("token_embd.weight").unwrap();
    assert_eq!(embd.info.dims, vec![576, 49152]);
    assert_eq!(embd.data.len() as u64, 576 * 49152 / 32 * 34);
    assert_eq!(g.tensor_bytes(), g.tensors.iter().map(|t| t.size).sum::<u64>());
    // Zero-copy: the view points into the file's bytes.
    let start = bytes.as_ptr() as usize;
    let at = embd.data.as_ptr() as usize;
    assert!(at >= start && at + embd.data.len() <= start + bytes.len());

    let c = Config::from_gguf(&g).unwrap();
    assert_eq!(
        (c.n_layers, c.d_model, c.n_heads, c.n_kv_heads, c.head_dim, c.ffn_dim, c.vocab_size),
        (30, 576, 9, 3, 64, 1536, 49152)
    );
    assert_eq!((c.rope_base, c.context_length, c.tied_embeddings), (100_000.0, 8192, true));
    Weights::from_gguf(&g, &c).unwrap();
}

/// A small but complete file: one metadata value of every type and two tensors.
fn sample() -> GgufWriter {
    let mut w = GgufWriter::default();
    w.kv("u8", Value::U8(7))
        .kv("i8", Value::I8(-7))
        .kv("u16", Value::U16(700))
        .kv("i16", Value::I16(-700))
        .kv("u32", Value::U32(70_000))
        .kv("i32", Value::I32(-70_000))
        .kv("u64", Value::U64(7 << 40))
        .kv("i64", Value::I64(-7 << 40))
        .kv("f32", Value::F32(0.5))
        .kv("f64", Value::F64(-0.25))
        .kv("bool", Value::Bool(true))
        .kv("str", Value::String("héllo".into()))
        .kv(
            "nested",
            Value::Array(vec![
                Value::Array(vec![Value::U32(1), Value::U32(2)]),
                Value::Array(vec![Value::String("a".into())]),
            ]),
        )
        .tensor("a", &[4, 2], 0, (0..8u32).flat_map(|i| (i as f32).to_le_bytes()).collect())
        .tensor("b", &[32], 8, vec![1u8; 34]);
    w
}

#[test]
fn round_trips_every_value_type_and_tensor() {
    let bytes = sample().to_bytes();
    let g = Gguf::parse(&bytes).unwrap();
    assert_eq!(g.get("u8"), Some(&Value::U8(7)));
    assert_eq!(g.get("i64").and_then(Value::as_i64), Some(-7 << 40));
    assert_eq!(g.get("u64").and_then(Value::as_u64), Some(7 << 40));
    assert_eq!(g.get("i8").and_then(Value::as_u64), None, "negative is not unsigned");
    assert_eq!(g.get("f64"), Some(&Value::F64(-0.25)));
    assert_eq!(g.str("str").unwrap(), "héllo");
    let nested = g.array_opt("nested").unwrap().unwrap();
    assert_eq!(nested[0], Value::Array(vec![Value::U32(1), Value::U32(2)]));
    let a = g.tensor("a").unwrap();
    assert_eq!((a.info.dims.clone(), a.info.dtype, a.data.len()), (vec![4, 2], DType::F32, 32));
    assert_eq!(f32::from_le_bytes(a.data[28..32].try_into().unwrap()), 7.0);
    let b = g.tensor("b").unwrap();
    assert_eq!((b.info.dtype, b.data.len(), b.info.offset % 32), (DType::Q8_0, 34, 0));
    assert!(g.tensor("c").is_none());
    assert!(matches!(g.str("u8"), Err(Error::BadModel(_))));
    assert!(matches!(g.str("missing"), Err(Error::BadModel(_))));
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = sample().to_bytes();
    for len in 0..bytes.len() {
        // The last tensor's data must be complete; alignment padding may not be.
        match Gguf::parse(&bytes[..len]) {
            Err(Error::BadModel(_)) => {}
            other => panic!("truncated to {len}: {other:?}"),
        }
    }
}

#[test]
fn truncations_of_the_real_header_are_errors() {
    let bytes = model_bytes();
    // The header (metadata with the whole vocabulary, tensor table) is about 1.6 MB.
    let header = Gguf::parse(&bytes).unwrap().tensors.iter().map(|t| t.offset).min().unwrap() as usize;
    for i in 0..300 {
        let len = (header as u64 * i / 300) as usize + i as usize % 7;
        assert!(matches!(Gguf::parse(&bytes[..len]), Err(Error::BadModel(_))), "truncated to {len}");
    }
    assert!(Gguf::parse(&bytes[..bytes.len() - 1]).is_err());
}

/// A tiny deterministic generator for the fuzz-style tests.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn bit_flips_never_panic() {
    let clean = sample().to_bytes();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut errors = 0;
    for _ in 0..20_000 {
        let mut bytes = clean.clone();
        for _ in 0..1 + next(&mut rng) % 4 {
            let bit = next(&mut rng) as usize % (bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
        }
        match Gguf::parse(&bytes) {
            Ok(g) => {
                // Whatever parses must also be safe to interpret.
                let _ = Config::from_gguf(&g).and_then(|c| Weights::from_gguf(&g, &c).map(|_| ()));
            }
            Err(_) => errors += 1,
        }
    }
    assert!(errors > 1000, "flips in counts and lengths must be caught ({errors})");
}

#[test]
fn bit_flips_in_the_real_header_never_panic() {
    let clean = model_bytes();
    let mut rng = 12345u64;
    for _ in 0..200 {
        let mut bytes = clean[..4096].to_vec();
        let bit = next(&mut rng) as usize % (bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        assert!(Gguf::parse(&bytes).is_err());
    }
}

/// Header: magic, version, tensor count, kv count.
fn header(version: u32, tensors: u64, kvs: u64) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&tensors.to_le_bytes());
    b.extend_from_slice(&kvs.to_le_bytes());
    b
}

fn put_str(b: &mut Vec<u8>, s: &[u8]) {
    b.extend_from_slice(&(s.len() as u64).to_le_bytes());
    b.extend_from_slice(s);
}

fn bad_model(bytes: &[u8], needle: &str) {
    match Gguf::parse(bytes) {
        Err(Error::BadModel(m)) => assert!(m.contains(needle), "{m:?} should mention {needle:?}"),
        other => panic!("expected BadModel({needle}), got {other:?}"),
    }
}

#[test]
fn hostile_headers_are_rejected_before_allocating() {
    bad_model(b"GGML\x03\0\0\0", "magic");
    bad_model(&header(3, u64::MAX, 0), "tensor entries");
    bad_model(&header(3, 0, 1 << 60), "metadata entries");
    assert!(matches!(Gguf::parse(&header(1, 0, 0)), Err(Error::UnsupportedModel(_))));
    assert!(
        matches!(Gguf::parse(&header(3u32.swap_bytes(), 0, 0)), Err(Error::UnsupportedModel(m)) if m.contains("big-endian"))
    );
    assert!(matches!(Gguf::parse(&header(7, 0, 0)), Err(Error::UnsupportedModel(_))));

    // A metadata array claiming 2^40 strings.
    let mut b = header(3, 0, 1);
    put_str(&mut b, b"huge");
    b.extend_from_slice(&9u32.to_le_bytes());
    b.extend_from_slice(&8u32.to_le_bytes());
    b.extend_from_slice(&(1u64 << 40).to_le_bytes());
    bad_model(&b, "cannot fit");

    // A string claiming 2^63 bytes.
    let mut b = header(3, 0, 1);
    put_str(&mut b, b"s");
    b.extend_from_slice(&8u32.to_le_bytes());
    b.extend_from_slice(&(1u64 << 63).to_le_bytes());
    bad_model(&b, "truncated");

    // Non-UTF-8 key, unknown value type, bad bool.
    let mut b = header(3, 0, 1);
    put_str(&mut b, &[0xff, 0xfe]);
    b.extend_from_slice(&[0; 16]);
    bad_model(&b, "UTF-8");
    let mut b = header(3, 0, 1);
    put_str(&mut b, b"k");
    b.extend_from_slice(&13u32.to_le_bytes());
    b.extend_from_slice(&[0; 16]);
    bad_model(&b, "unknown value type");
    let mut b = header(3, 0, 1);
    put_str(&mut b, b"k");
    b.extend_from_slice(&7u32.to_le_bytes());
    b.push(2);
    b.extend_from_slice(&[0; 16]);
    bad_model(&b, "boolean");

    // Arrays nested a thousand deep.
    let mut b = header(3, 0, 1);
    put_str(&mut b, b"deep");
    b.extend_from_slice(&9u32.to_le_bytes());
    for _ in 0..1000 {
        b.extend_from_slice(&9u32.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes());
    }
    bad_model(&b, "nested too deeply");
}

fn with_tensor(edit: impl FnOnce(&mut GgufWriter)) -> Vec<u8> {
    let mut w = sample();
    edit(&mut w);
    w.to_bytes()
}

#[test]
fn hostile_tensor_tables_are_rejected() {
    // Five dimensions; a zero dimension; dimensions whose product overflows.
    bad_model(&with_tensor(|w| w.tensors[0].1 = vec![1, 1, 1, 1, 8]), "dimensions");
    bad_model(&with_tensor(|w| w.tensors[0].1 = vec![8, 0]), "zero dimension");
    bad_model(&with_tensor(|w| w.tensors[0].1 = vec![1 << 32, 1 << 32, 1 << 32]), "overflow");
    // More data than the file holds.
    bad_model(&with_tensor(|w| w.tensors[1].1 = vec![64]), "past the end");
    // A row length that is not a whole number of blocks.
    bad_model(&with_tensor(|w| w.tensors[1].1 = vec![16]), "block size");
    // Bad alignment value; duplicate key; duplicate tensor name.
    bad_model(&with_tensor(|w| w.metadata.push(("general.alignment".into(), Value::U32(3)))), "alignment");
    bad_model(&with_tensor(|w| w.metadata.push(("u8".into(), Value::U8(1)))), "twice");
    bad_model(&with_tensor(|w| w.tensors[1].0 = "a".into()), "twice");
    // An unknown and a known-but-unsupported tensor type.
    let unknown = with_tensor(|w| w.tensors[0].2 = 999);
    assert!(matches!(Gguf::parse(&unknown), Err(Error::UnsupportedModel(m)) if m.contains("\"a\"")));
    let q2k = with_tensor(|w| w.tensors[1].2 = 10);
    assert!(matches!(Gguf::parse(&q2k), Err(Error::UnsupportedModel(m)) if m.contains("Q2_K")));
}

/// Rewrite the offset field of tensor `index` in a file built from `sample()`.
fn set_offset(bytes: &mut [u8], index: usize, offset: u64) {
    let g = Gguf::parse(bytes).unwrap();
    let name = g.tensors[index].name.clone();
    let dims = g.tensors[index].dims.len();
    // The tensor table entry: name, n_dims, dims, type, offset. Find it by its name bytes.
    let mut needle = (name.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(name.as_bytes());
    needle.extend_from_slice(&(dims as u32).to_le_bytes());
    let at = bytes.windows(needle.len()).rposition(|w| w == needle).unwrap();
    let field = at + needle.len() + 8 * dims + 4;
    bytes[field..field + 8].copy_from_slice(&offset.to_le_bytes());
}

#[test]
fn overlapping_and_misaligned_tensors_are_rejected() {
    let mut b = sample().to_bytes();
    set_offset(&mut b, 1, 0);
    bad_model(&b, "overlap");
    let mut b = sample().to_bytes();
    set_offset(&mut b, 1, 33);
    bad_model(&b, "aligned");
    let mut b = sample().to_bytes();
    set_offset(&mut b, 1, u64::MAX - 31);
    bad_model(&b, "past the end");
}

#[test]
fn config_errors_name_the_problem() {
    let mut w = GgufWriter::default();
    w.kv("general.architecture", Value::String("gpt2".into()));
    let b = w.to_bytes();
    let g = Gguf::parse(&b).unwrap();
    assert!(matches!(Config::from_gguf(&g), Err(Error::UnsupportedModel(m)) if m.contains("gpt2")));

    let llama = |heads: u32, kv_heads: u32, layers: u64| {
        let mut w = GgufWriter::default();
        w.kv("general.architecture", Value::String("llama".into()))
            .kv("llama.block_count", Value::U64(layers))
            .kv("llama.embedding_length", Value::U32(64))
            .kv("llama.feed_forward_length", Value::U32(128))
            .kv("llama.context_length", Value::U32(256))
            .kv("llama.attention.head_count", Value::U32(heads))
            .kv("llama.attention.head_count_kv", Value::U32(kv_heads))
            .tensor("token_embd.weight", &[64, 10], 0, vec![0; 64 * 10 * 4]);
        w.to_bytes()
    };
    let b = llama(4, 3, 2);
    assert!(matches!(Config::from_gguf(&Gguf::parse(&b).unwrap()), Err(Error::BadModel(m)) if m.contains("grouped")));
    let b = llama(4, 2, 1 << 40);
    assert!(
        matches!(Config::from_gguf(&Gguf::parse(&b).unwrap()), Err(Error::BadModel(m)) if m.contains("block_count"))
    );
    // A valid config whose tensors are missing.
    let b = llama(4, 2, 2);
    let g = Gguf::parse(&b).unwrap();
    let c = Config::from_gguf(&g).unwrap();
    assert_eq!((c.head_dim, c.vocab_size, c.rope_base, c.tied_embeddings), (16, 10, 10_000.0, true));
    assert!(matches!(Weights::from_gguf(&g, &c), Err(Error::BadModel(m)) if m.contains("blk.0.attn_norm.weight")));
}
