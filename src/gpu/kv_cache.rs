//! The KV cache on the GPU: per layer, a key buffer and a value buffer of `capacity × kv_dim`
//! elements (f16 on the f16 path, else f32), allocated whole at load. Positions `0 .. len` are
//! valid; truncating only moves `len`, and later steps overwrite what lies beyond it.

use super::buffers::storage;
use super::device::Gpu;
use crate::error::{Error, Result};

pub struct KvCache {
    pub k: Vec<wgpu::Buffer>,
    pub v: Vec<wgpu::Buffer>,
    pub capacity: usize,
    pub len: usize,
    bytes: u64,
}

impl KvCache {
    pub fn new(gpu: &Gpu, n_layers: usize, kv_dim: usize, capacity: usize) -> Result<KvCache> {
        let elem = if gpu.f16 { 2 } else { 4 };
        let layer_bytes = (capacity * kv_dim * elem) as u64;
        if layer_bytes > gpu.max_binding {
            return Err(Error::OutOfMemory(format!(
                "a KV cache of {capacity} positions needs {layer_bytes} bytes per layer, more than one storage \
                 binding ({} bytes); choose a smaller context size",
                gpu.max_binding
            )));
        }
        let k = (0..n_layers).map(|i| storage(gpu, &format!("k cache {i}"), layer_bytes)).collect();
        let v = (0..n_layers).map(|i| storage(gpu, &format!("v cache {i}"), layer_bytes)).collect();
        Ok(KvCache { k, v, capacity, len: 0, bytes: 2 * n_layers as u64 * layer_bytes })
    }

    /// GPU memory held by the cache.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}
