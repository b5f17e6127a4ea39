//! Using a trained model: sampling the next token, generating text with the state carried,
//! and tracing one LSTM cell's gates.

pub mod batch;
mod decoding;
pub mod generator;
pub mod sampling;
pub mod sequence;
pub mod trace;

pub use batch::Batch;
pub use generator::{
    Completion, Finish, GenerationError, Generator, PreparedDecoder, Prompt, TokenLogprobs,
};
pub use sampling::{Sampling, SamplingError};
pub use sequence::{Adjustments, Sequence, Settings};
