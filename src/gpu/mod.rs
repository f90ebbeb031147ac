//! The GPU backend: the forward pass in WGSL compute kernels through wgpu (WebGPU in the
//! browser; Vulkan, Metal or DX12 natively).
//!
//! - `device`    — adapter, device, limits and features (`shader-f16` → the f16 path)
//! - `kernels`   — pipelines compiled from `shaders/*.wgsl`, and their parameter structs
//! - `buffers`   — matrices still quantized (split to fit a binding), plain buffers, read-back
//! - `weights`   — the model's weights on the GPU, placed as the file's bytes stream in
//! - `kv_cache`  — the KV cache: per layer, K and V buffers for the whole capacity
//! - `ops`       — each kernel launch, recorded with its bindings and parameters
//! - `forward`   — `GpuModel`: a step recorded once at load, replayed with one submission
//! - `shortlist` — the logits read-out: the GPU's top-k shortlist for the sampler, or all
//! - `oneshot`   — one kernel at a time on host data (the kernel tests use it)
//! - `profile`   — `bench --kernels`: each kernel timed alone, and the adapter's bandwidth

pub mod buffers;
pub mod device;
pub mod forward;
pub mod kernels;
pub mod kv_cache;
#[cfg(not(target_arch = "wasm32"))]
pub mod oneshot;
pub mod ops;
#[cfg(not(target_arch = "wasm32"))]
pub mod profile;
pub mod shortlist;
pub mod weights;

pub use device::{AdapterReport, Gpu, GpuOptions};
pub use forward::{GpuLoad, GpuModel, ALL_ROWS, PREFILL_CHUNK};
