//! The model: hyper-parameters, the tensors they imply, and the catalog of known models.

pub mod catalog;
mod config;
mod weights;

pub use config::{Activation, Arch, Config, RopeStyle};
pub use weights::{Described, Layer, Weights};
