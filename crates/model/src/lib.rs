//! The LSTM language model and everything that uses a trained one: the loss it trains on,
//! sampling, generation with carried state, and checkpoints shared by `train` and `inference`.

pub mod blas;
pub mod checkpoint;
pub mod device;
pub mod fused_cross_entropy;
pub mod fused_lstm;
mod fused_support;
pub mod generator;
pub mod language_model;
pub mod loss;
pub mod recurrent;
pub mod sampling;
pub mod trace;
#[cfg(feature = "wgpu")]
mod wgpu_device;

pub use burn;
pub use checkpoint::{Checkpoint, CheckpointError, CheckpointMeta};
pub use device::{Backend, DeviceArgs, DeviceSpec, GraphicsApi, OpenDevice};
pub use generator::Generator;
pub use language_model::{LanguageModel, ModelConfig, ids_tensor};
pub use sampling::Sampling;
