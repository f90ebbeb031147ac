//! The CPU backend: the forward pass and its KV cache. Its exact f32 mode is the oracle every GPU
//! kernel is checked against; its quantized mode is the fallback where a browser has no WebGPU.

mod forward;
pub mod ops;
pub mod quantized;

pub use forward::{CpuLoad, CpuModel, KvCache};
