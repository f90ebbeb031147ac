//! The CPU backend: the f32 reference forward pass and its KV cache. It is the oracle every GPU
//! kernel is checked against, and the fallback where a browser has no WebGPU.

mod forward;
pub mod ops;

pub use forward::{CpuModel, KvCache};
