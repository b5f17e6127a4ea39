//! The LSTM language model and everything that uses a trained one: the loss it trains on,
//! generation with carried state, checkpoints shared by `train` and `inference`, and the
//! choice of backend. The fused CPU operations it runs on flex live in the `kernels` crate.

pub mod checkpoint;
pub mod device;
pub mod generation;
pub mod keras_init;
pub mod language_model;
pub mod loss;
pub mod recurrent;

pub use burn;
pub use checkpoint::{Checkpoint, CheckpointError, CheckpointMeta};
pub use device::{BackendKind, DeviceArgs, DeviceError, DeviceSpec, GraphicsApi, OpenDevice};
pub use generation::{Generator, Sampling};
pub use keras_init::Init;
pub use kernels::{Kernels, Matmul};
pub use language_model::{LanguageModel, ModelConfig, ids_tensor};

/// Parses a setting spelled on the command line as the config file spells it (`--backend
/// wgpu`, `--kernels reference`): one spelling, and serde's message naming the choices.
pub fn parse_setting<T: serde::de::DeserializeOwned>(
    value: &str,
) -> Result<T, serde::de::value::Error> {
    T::deserialize(serde::de::value::StrDeserializer::new(value))
}
