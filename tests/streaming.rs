//! The streamed load (src/load/): a model pushed in arbitrary chunks, as a download delivers it,
//! loads to exactly the model a whole file gives, on the CPU and on the GPU (lavapipe); a split
//! model gives the same tokens as its whole file; the fit check refuses at the header, before
//! the weights arrive; a broken stream is a typed error.

mod common;
use common::*;
use webgpu_llm::engine::{BackendKind, Engine, EngineOptions};
use webgpu_llm::gguf::{Header, Prefix};
use webgpu_llm::gpu::GpuOptions;
use webgpu_llm::load::{split, Loader};
use webgpu_llm::sampler::SamplingParams;
use webgpu_llm::Error;

/// One GPU test at a time: lavapipe is slow enough without two loads competing.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn options(backend: BackendKind) -> EngineOptions {
    EngineOptions { backend, context_size: Some(256), ..EngineOptions::default() }
}

/// The model streamed in `chunk`-byte pieces.
fn streamed(bytes: &[u8], chunk: usize, options: &EngineOptions) -> webgpu_llm::Result<Engine> {
    let mut loader = Loader::new(options.clone(), vec![bytes.len() as u64])?;
    pollster::block_on(async {
        for piece in bytes.chunks(chunk) {
            loader.push(piece).await?;
        }
        loader.finish().await
    })
}

/// Greedy tokens and each one's log-probability (equal log-probabilities: equal logits).
fn greedy(e: &mut Engine, n: usize) -> Vec<(u32, f32)> {
    let prompt = e.encode_prompt("The quick brown fox").unwrap();
    let params = SamplingParams { temperature: 0.0, max_tokens: n, ..SamplingParams::default() };
    let mut out = Vec::new();
    e.generate(&prompt, &params, &mut |t| {
        out.extend(t.token.as_ref().map(|i| (i.token.id, i.token.logprob)));
        true
    })
    .unwrap();
    out
}

#[test]
fn chunks_of_any_size_load_the_same_model_on_the_cpu() {
    let bytes = model_bytes();
    let o = options(BackendKind::Cpu);
    let whole = greedy(&mut Engine::load(&bytes, &o).unwrap(), 6);
    // Odd sizes cut blocks, rows and the header anywhere.
    for chunk in [7_777, (1 << 20) + 3] {
        assert_eq!(greedy(&mut streamed(&bytes, chunk, &o).unwrap(), 6), whole, "chunks of {chunk}");
    }
    let exact = EngineOptions { exact_cpu: true, ..o };
    assert_eq!(
        greedy(&mut streamed(&bytes, 65_537, &exact).unwrap(), 4),
        greedy(&mut Engine::load(&bytes, &exact).unwrap(), 4)
    );
}

#[test]
fn chunks_of_any_size_load_the_same_model_on_the_gpu() {
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let bytes = model_bytes();
    // Small bindings split every matrix into parts, whose edges the chunks cut too.
    let gpu = GpuOptions { max_binding_bytes: Some(3 << 20), ..GpuOptions::default() };
    let o = EngineOptions { gpu, ..options(BackendKind::Gpu) };
    let whole = greedy(&mut Engine::load(&bytes, &o).unwrap(), 3);
    let cut = greedy(&mut streamed(&bytes, 7_777, &o).unwrap(), 3);
    assert_eq!(cut, whole);
    // And the GPU's tokens are the CPU's (quantized CPU vs GPU: the same argmax here).
    let cpu = greedy(&mut Engine::load(&bytes, &options(BackendKind::Cpu)).unwrap(), 3);
    assert_eq!(cut.iter().map(|t| t.0).collect::<Vec<_>>(), cpu.iter().map(|t| t.0).collect::<Vec<_>>());
}

#[test]
fn a_split_model_gives_the_same_tokens_as_its_whole_file() {
    let bytes = model_bytes();
    let parts = split::split_file(&bytes, 24 << 20).unwrap();
    assert!(parts.len() >= 4, "{} parts", parts.len());
    let dir = std::env::temp_dir().join(format!("webgpu-llm-split-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let n = parts.len();
    for (k, p) in parts.iter().enumerate() {
        std::fs::write(dir.join(format!("smol-{:05}-of-{n:05}.gguf", k + 1)), p).unwrap();
    }
    let first = dir.join(format!("smol-00001-of-{n:05}.gguf"));
    let o = options(BackendKind::Cpu);
    let from_parts = Engine::load_file(&first, &o).map(|mut e| greedy(&mut e, 6));
    let gpu_parts = {
        let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
        let g = options(BackendKind::Gpu);
        (
            Engine::load_file(&first, &g).map(|mut e| greedy(&mut e, 2)),
            greedy(&mut Engine::load(&bytes, &g).unwrap(), 2),
        )
    };
    // A part missing, or given in the wrong order, is refused.
    let missing = Engine::load_file(&dir.join(format!("smol-00001-of-{:05}.gguf", n + 1)), &o).err();
    let mut loader = Loader::new(o.clone(), parts.iter().rev().map(|p| p.len() as u64).collect()).unwrap();
    let reversed = (1..n).map(|k| loader.part_header(k, &parts[n - 1 - k])).collect::<Result<Vec<_>, _>>();
    let wrong_order = reversed.and_then(|_| pollster::block_on(loader.push(&parts[n - 1])));
    std::fs::remove_dir_all(&dir).unwrap();

    assert_eq!(from_parts.unwrap(), greedy(&mut Engine::load(&bytes, &o).unwrap(), 6));
    assert_eq!(gpu_parts.0.unwrap(), gpu_parts.1);
    assert!(matches!(missing, Some(Error::Io(_))), "{missing:?}");
    assert!(matches!(wrong_order, Err(Error::BadModel(_))), "{wrong_order:?}");
}

#[test]
fn a_header_parses_from_a_prefix_and_asks_for_what_it_lacks() {
    let bytes = model_bytes();
    let whole = webgpu_llm::gguf::Gguf::parse(&bytes).unwrap();
    let size = bytes.len() as u64;
    let mut prefix = 4096;
    let header = loop {
        match Header::parse_prefix(&bytes[..prefix], size).unwrap() {
            Prefix::NeedBytes(n) => {
                assert!(n as usize > prefix && n <= size);
                prefix = n as usize;
            }
            Prefix::Header(h) => break h,
        }
    };
    assert_eq!(header.tensors, whole.tensors);
    assert_eq!(header.metadata, whole.metadata);
    assert!(header.data_start as usize <= prefix, "the parse needed no more than its header");
    // A prefix past the file, or a file shorter than its tensors, is bad_model.
    assert!(matches!(Header::parse_prefix(&bytes[..100], 50), Err(Error::BadModel(_))));
    assert!(matches!(Header::parse_prefix(&bytes[..prefix], size / 2), Err(Error::BadModel(_))));
}

/// Pushes 64 KiB chunks until the loader answers; returns the error and the bytes pushed.
fn refused_after(bytes: &[u8], options: &EngineOptions) -> (Error, u64) {
    let mut loader = Loader::new(options.clone(), vec![bytes.len() as u64]).unwrap();
    for piece in bytes.chunks(1 << 16) {
        if let Err(e) = pollster::block_on(loader.push(piece)) {
            return (e, loader.received());
        }
    }
    panic!("the model was not refused");
}

#[test]
fn the_fit_check_refuses_at_the_header_with_the_numbers() {
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let bytes = model_bytes();
    let header = webgpu_llm::gguf::Gguf::parse(&bytes).unwrap().data_start;
    // The header parse asks for twice the bytes it has each time it runs short, so the refusal
    // comes within twice the header (and a chunk): long before the weights (105 MB here).
    let early = |received: u64| received <= 2 * header + (1 << 16);
    for backend in [BackendKind::Cpu, BackendKind::Gpu] {
        let o = EngineOptions { memory_limit_bytes: Some(64 << 20), ..options(backend) };
        let (e, received) = refused_after(&bytes, &o);
        let Error::OutOfMemory(m) = &e else { panic!("{backend:?}: {e:?}") };
        assert!(m.contains("MB") && m.contains("64 MB"), "{m}");
        assert!(early(received), "{backend:?}: refused after {received} bytes (header {header})");
    }
    // A KV cache past a (forced small) binding: out_of_memory naming the cache.
    let gpu = GpuOptions { max_binding_bytes: Some(1 << 20), ..GpuOptions::default() };
    let o = EngineOptions { gpu, context_size: Some(8192), ..options(BackendKind::Gpu) };
    let (e, received) = refused_after(&bytes, &o);
    // Quoted once: the cache's own check is the message, without a second "out of memory:".
    assert!(matches!(&e, Error::OutOfMemory(m) if m.starts_with("a KV cache of 8192 positions")), "{e:?}");
    assert!(early(received));
    // The estimate from a prefix says the same before anything is loaded.
    let parts = [bytes.len() as u64];
    let limits = webgpu_llm::load::fit::Limits { memory_limit_bytes: Some(64 << 20), ..Default::default() };
    let est = webgpu_llm::load::estimate(&bytes[..header as usize], &parts, &options(BackendKind::Gpu), &limits)
        .unwrap()
        .unwrap();
    assert!(!est.fits && est.reason.as_deref().unwrap().contains("64 MB"), "{est:?}");
    assert!(est.weights_bytes > 90 << 20 && est.total_bytes > est.weights_bytes);
    let need = webgpu_llm::load::estimate(&bytes[..1000], &parts, &options(BackendKind::Gpu), &limits).unwrap();
    assert!(matches!(need, Err(n) if n > 1000));
}

#[test]
fn a_broken_stream_is_a_typed_error() {
    let bytes = model_bytes();
    let o = options(BackendKind::Cpu);
    // Cut short: bad_model at finish, naming where it stopped.
    let mut loader = Loader::new(o.clone(), vec![bytes.len() as u64]).unwrap();
    pollster::block_on(loader.push(&bytes[..bytes.len() / 2])).unwrap();
    let e = pollster::block_on(loader.finish()).err().unwrap();
    assert!(matches!(&e, Error::BadModel(m) if m.contains("stopped at")), "{e:?}");
    // Longer than announced.
    let mut loader = Loader::new(o.clone(), vec![1000]).unwrap();
    assert!(matches!(pollster::block_on(loader.push(&bytes[..1001])), Err(Error::BadModel(_))));
    // Not a GGUF file at all; and a push after a failure.
    let mut loader = Loader::new(o.clone(), vec![1 << 20]).unwrap();
    assert!(matches!(pollster::block_on(loader.push(&[7u8; 1 << 20])), Err(Error::BadModel(_))));
    assert!(pollster::block_on(loader.push(&[0])).is_err());
    // The whole stream's sha256 is the file's.
    let mut loader = Loader::new(o, vec![bytes.len() as u64]).unwrap();
    for piece in bytes.chunks(5 << 20) {
        pollster::block_on(loader.push(piece)).unwrap();
    }
    use sha2::Digest;
    let want: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(loader.sha256(), want);
}
