//! Fused operations for Burn's flex CPU backend: an LSTM layer and the output layer with its
//! softmax cross-entropy, each one backend operation with a hand-written backward pass, Adam's
//! update in one pass, and the matrix products and vectorised math under them. Also a decoder that runs one sequence
//! a token at a time on plain slices, its output layer in half precision, and the bounds that
//! tell when half precision cannot change the token picked. Everything here works on tensors,
//! slices and shapes; it knows nothing of configs, vocabularies or checkpoints.

pub mod adam;
mod autodiff;
mod block_product;
pub mod bounded;
pub mod decoder;
mod even;
mod flex_buffers;
pub mod half_matrix;
pub mod linear_cross_entropy;
pub mod lstm;
mod math;
pub mod matmul;

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
