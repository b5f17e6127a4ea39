//! The LSTM language model and everything that uses a trained one: the loss it trains on,
//! sampling, generation with carried state, and checkpoints shared by `train` and `inference`.

pub mod checkpoint;
pub mod device;
pub mod generator;
pub mod loss;
pub mod lstm_lm;
pub mod sampling;
pub mod trace;

pub use burn;
pub use checkpoint::{Checkpoint, CheckpointError, CheckpointMeta};
pub use device::Backend;
pub use generator::Generator;
pub use lstm_lm::{LstmLm, ModelConfig, ids_tensor};
pub use sampling::Sampling;
