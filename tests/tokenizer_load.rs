//! What building the tokenizer of the largest vocabulary (Gemma 3's 262,144 SentencePiece tokens)
//! costs: time, and the memory the tokenizer holds, counted by a counting global allocator. The
//! numbers are printed (`cargo test --test tokenizer_load -- --nocapture`); the memory is held
//! to a bound, so deriving anything per token pair, or keeping copies of the vocabulary, fails.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use webgpu_llm::gguf::Gguf;
use webgpu_llm::tokenizer::Tokenizer;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
        PEAK.fetch_max(live, Relaxed);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MIB: f64 = (1 << 20) as f64;

#[test]
fn building_the_largest_vocabulary_is_quick_and_small() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/gemma-3-270m.Q4_K_M.gguf");
    let bytes =
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (scripts/fetch-model.sh gemma3-270m)", path.display()));
    let g = Gguf::parse(&bytes).unwrap();
    let before = LIVE.load(Relaxed);
    PEAK.store(before, Relaxed);
    let started = std::time::Instant::now();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let took = started.elapsed();
    let (held, peak) = (LIVE.load(Relaxed) - before, PEAK.load(Relaxed) - before);
    eprintln!(
        "gemma3-270m tokenizer ({} tokens): built in {:.0} ms, holds {:.1} MiB (peak {:.1} MiB while building)",
        tok.vocab_size(),
        took.as_secs_f64() * 1e3,
        held as f64 / MIB,
        peak as f64 / MIB
    );
    assert_eq!(tok.vocab_size(), 262_144);
    assert!(held < 32 << 20, "the tokenizer holds {:.1} MiB", held as f64 / MIB);
    assert!(peak < 64 << 20, "building it took {:.1} MiB", peak as f64 / MIB);
}
