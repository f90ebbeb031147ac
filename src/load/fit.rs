//! What a model will need on a backend, computed from its header alone (before the download),
//! and whether that fits the device: the GPU's buffer limits and, on the CPU, the address space
//! (4 GiB of wasm32 memory in a browser).

use crate::cpu::CpuLoad;
use crate::error::{Error, Result};
use crate::gguf::TensorInfo;
use crate::gpu::buffers::{part_rows, rows_cols, GpuLayout};
use crate::gpu::kv_cache::KvCache;
use crate::gpu::{ALL_ROWS, PREFILL_CHUNK};
use crate::model::{Config, Weights};

/// What the header says a load will need.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MemoryEstimate {
    /// "gpu" or "cpu".
    pub backend: &'static str,
    pub context_size: usize,
    /// The weights as the backend holds them.
    pub weights_bytes: u64,
    /// K and V of every layer for the whole context.
    pub kv_cache_bytes: u64,
    /// Activations, logits, RoPE tables.
    pub scratch_bytes: u64,
    /// On the backend (GPU memory, or CPU memory on the CPU backend).
    pub total_bytes: u64,
    /// The largest single buffer (GPU) or allocation (CPU).
    pub largest_buffer_bytes: u64,
    /// CPU memory the load needs at its peak (wasm memory in a browser): on the GPU backend the
    /// header, tokenizer and a row in flight; on the CPU the weights, the tensor in flight and
    /// the KV cache.
    pub cpu_peak_bytes: u64,
    pub fits: bool,
    /// Why it does not fit.
    pub reason: Option<String>,
    /// The reason is a shape the kernels cannot take (not a size that a smaller context fixes).
    #[serde(skip)]
    unsupported: bool,
}

/// The limits a model is checked against.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct Limits {
    /// The GPU adapter's `maxBufferSize` and `maxStorageBufferBindingSize` (unknown: no check).
    pub max_buffer_size: Option<u64>,
    pub max_storage_buffer_binding_size: Option<u64>,
    /// A budget for the backend's total (GPU memory, or CPU memory), when the caller has one.
    pub memory_limit_bytes: Option<u64>,
    /// f16 KV cache (the GPU has shader-f16).
    pub f16: bool,
}

/// CPU memory a load uses besides the weights: the header (vocabulary), tokenizer, templates.
fn host_overhead(header_bytes: u64, vocab: usize) -> u64 {
    2 * header_bytes + vocab as u64 * 64 + (16 << 20)
}

/// wasm32 addresses 4 GiB; some of it is the module's own code, stack and heap.
pub const WASM32_BYTES: u64 = 4 << 30;

/// The estimate on the GPU backend.
pub fn gpu(
    c: &Config,
    w: &Weights<&TensorInfo>,
    capacity: usize,
    header_bytes: u64,
    limits: &Limits,
) -> MemoryEstimate {
    let binding =
        limits.max_storage_buffer_binding_size.unwrap_or(u64::MAX).min(limits.max_buffer_size.unwrap_or(u64::MAX));
    let mut reason = None;
    let mut unsupported = false;
    let mut weights = 0u64;
    let mut largest = 0u64;
    for t in w.all() {
        if t.dims.len() == 2 {
            let (rows, cols) = rows_cols(t);
            match part_rows(binding, &t.name, t.dtype, rows, cols) {
                Ok((words, per_part)) => {
                    weights += rows as u64 * words as u64 * 4;
                    largest = largest.max(per_part.min(rows) as u64 * words as u64 * 4);
                }
                Err(e) => {
                    unsupported |= reason.is_none();
                    reason.get_or_insert(e.detail());
                    weights += rows as u64 * GpuLayout::of(t.dtype).row_words(cols) as u64 * 4;
                }
            }
        } else {
            weights += t.elements() * 4;
        }
    }
    let kv_layer = KvCache::layer_bytes(c.kv_dim(), capacity, limits.f16);
    let kv = 2 * c.n_layers as u64 * kv_layer;
    largest = largest.max(kv_layer);
    if let Err(e) = KvCache::check(kv_layer, capacity, binding) {
        reason.get_or_insert(e.detail());
    }
    let per_token = c.d_model + c.q_dim() + 2 * c.kv_dim() + 2 * c.q_dim() + c.d_model + 2 * c.ffn_dim;
    let tables = (capacity * c.rope_dim * 4) as u64 * if c.swa_layers.iter().any(|&s| s) { 2 } else { 1 };
    // The logits: the last token's, and every token's of a verification step with its read-back.
    let logits = (1 + 2 * ALL_ROWS) * c.vocab_size * 4;
    let scratch = (PREFILL_CHUNK * per_token * 4 + logits) as u64 + tables + (1 << 20);
    let total = weights + kv + scratch;
    if let Some(limit) = limits.memory_limit_bytes.filter(|&l| total > l) {
        reason.get_or_insert(format!(
            "the model needs {} MB of GPU memory (weights {} MB, KV cache {} MB at {capacity} positions, scratch {} MB), \
             more than the {} MB allowed",
            mb(total),
            mb(weights),
            mb(kv),
            mb(scratch),
            mb(limit)
        ));
    }
    let cpu_peak = host_overhead(header_bytes, c.vocab_size);
    MemoryEstimate {
        backend: "gpu",
        context_size: capacity,
        weights_bytes: weights,
        kv_cache_bytes: kv,
        scratch_bytes: scratch,
        total_bytes: total,
        largest_buffer_bytes: largest,
        cpu_peak_bytes: cpu_peak,
        fits: reason.is_none(),
        reason,
        unsupported,
    }
}

/// The estimate on the CPU backend (`quantized`: blocks kept; else the exact f32 reference).
pub fn cpu(
    c: &Config,
    w: &Weights<&TensorInfo>,
    capacity: usize,
    header_bytes: u64,
    quantized: bool,
    limits: &Limits,
) -> MemoryEstimate {
    let (weights, largest) = CpuLoad::estimate(w, quantized);
    // The CPU's cache is f32, as a GPU's without shader-f16.
    let kv = 2 * c.n_layers as u64 * KvCache::layer_bytes(c.kv_dim(), capacity, false);
    let scratch = (64 * (4 * c.d_model + 3 * c.q_dim() + 2 * c.kv_dim() + 2 * c.ffn_dim) * 4
        + c.vocab_size * 4
        + capacity * 4) as u64;
    let total = weights + kv + scratch;
    let peak = total + largest + host_overhead(header_bytes, c.vocab_size);
    let address_space = if cfg!(target_arch = "wasm32") { Some(WASM32_BYTES) } else { None };
    let limit = match (limits.memory_limit_bytes, address_space) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let reason = limit.filter(|&l| peak > l).map(|l| {
        format!(
            "the model needs about {} MB of memory on the CPU (weights {} MB, KV cache {} MB at {capacity} positions, \
             {} MB for the largest tensor while loading), more than the {} MB {}; load it on the GPU backend \
             (backend: \"gpu\"), whose memory is bounded by the GPU's",
            mb(peak),
            mb(weights),
            mb(kv),
            mb(largest),
            mb(l),
            if Some(l) == address_space { "wasm32 can address" } else { "allowed" }
        )
    });
    MemoryEstimate {
        backend: "cpu",
        context_size: capacity,
        weights_bytes: weights,
        kv_cache_bytes: kv,
        scratch_bytes: scratch,
        total_bytes: total,
        largest_buffer_bytes: largest,
        cpu_peak_bytes: peak,
        fits: reason.is_none(),
        reason,
        unsupported: false,
    }
}

impl MemoryEstimate {
    /// `out_of_memory` with the numbers when the model does not fit.
    pub fn check(&self) -> Result<()> {
        match &self.reason {
            None => Ok(()),
            Some(r) if self.unsupported => Err(Error::UnsupportedModel(r.clone())),
            Some(r) => Err(Error::OutOfMemory(r.clone())),
        }
    }
}

fn mb(b: u64) -> u64 {
    b.div_ceil(1 << 20)
}

impl MemoryEstimate {
    /// An estimate from sizes alone (a split model seen from its first part).
    pub fn rough(backend: &'static str, context_size: usize, weights: u64, kv: u64, reason: Option<String>) -> Self {
        MemoryEstimate {
            backend,
            context_size,
            weights_bytes: weights,
            kv_cache_bytes: kv,
            scratch_bytes: 0,
            total_bytes: weights + kv,
            largest_buffer_bytes: 0,
            cpu_peak_bytes: if backend == "cpu" { weights + kv } else { 0 },
            fits: reason.is_none(),
            reason,
            unsupported: false,
        }
    }
}
