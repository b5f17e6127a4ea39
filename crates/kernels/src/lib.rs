//! Fused operations for Burn's flex CPU backend, in two parts: `train`, the LSTM layer and the
//! output layer with its softmax cross-entropy (each one backend operation with a hand-written
//! backward pass) and Adam's update in one pass; `decode`, a decoder that runs one sequence a
//! token at a time on plain slices, its output layer in half precision, and the bounds that
//! tell when half precision cannot change the token picked. Both stand on the LSTM cell's step
//! (`cell`), the matrix and block products and the vectorised math here. Everything works on
//! tensors, slices and shapes; it knows nothing of configs, vocabularies or checkpoints.

mod block_product;
mod cell;
pub mod decode;
mod even;
mod math;
pub mod matmul;
pub mod train;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

pub use matmul::{Matmul, MatmulError};

/// Which implementation runs the LSTM layers and the output layer's loss.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kernels {
    /// The fused operations of this crate on flex; Burn's own operations on other backends.
    #[default]
    Fused,
    /// Burn's own `nn::Lstm`, `Linear` and cross-entropy everywhere (the reference the fused
    /// operations are tested against).
    Reference,
}

impl Kernels {
    /// Whether the fused operations run on `device` (flex, with or without autodiff).
    pub fn fused_on(self, device: &Device) -> bool {
        self == Kernels::Fused && device.clone().inner() == Device::flex()
    }

    /// The config and flag spelling: `fused` or `reference`.
    pub fn name(self) -> &'static str {
        match self {
            Kernels::Fused => "fused",
            Kernels::Reference => "reference",
        }
    }
}
