//! The Llama-family model: hyper-parameters and the tensors they imply.

mod config;
mod weights;

pub use config::{Arch, Config, RopeStyle};
pub use weights::{Layer, Weights};
