//! The model: hyper-parameters, the tensors they imply, the catalog of known models, and
//! synthetic models of real shapes (`synth`).

pub mod catalog;
mod config;
pub mod synth;
mod weights;

pub use config::{Activation, Arch, Config, RopeStyle};
pub use weights::{Described, Layer, Weights};
