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
        let layer_bytes = KvCache::layer_bytes(kv_dim, capacity, gpu.f16);
        KvCache::check(layer_bytes, capacity, gpu.max_binding)?;
        let k = (0..n_layers).map(|i| storage(gpu, &format!("k cache {i}"), layer_bytes)).collect();
        let v = (0..n_layers).map(|i| storage(gpu, &format!("v cache {i}"), layer_bytes)).collect();
        Ok(KvCache { k, v, capacity, len: 0, bytes: 2 * n_layers as u64 * layer_bytes })
    }

    /// Bytes of one layer's K (or V) buffer.
    pub fn layer_bytes(kv_dim: usize, capacity: usize, f16: bool) -> u64 {
        (capacity * kv_dim * if f16 { 2 } else { 4 }) as u64
    }

    /// A layer's buffer is bound whole by the attention kernel: it must fit one binding.
    pub fn check(layer_bytes: u64, capacity: usize, max_binding: u64) -> Result<()> {
        if layer_bytes > max_binding {
            return Err(Error::OutOfMemory(format!(
                "a KV cache of {capacity} positions needs {layer_bytes} bytes per layer, more than one storage \
                 binding ({max_binding} bytes); choose a smaller context size"
            )));
        }
        Ok(())
    }

    /// GPU memory held by the cache.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}
