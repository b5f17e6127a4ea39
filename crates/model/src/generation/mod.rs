//! Using a trained model: sampling the next token, generating text with the state carried,
//! and tracing one LSTM cell's gates.

mod decoding;
pub mod generator;
pub mod sampling;
pub mod trace;

pub use generator::{
    Completion, Finish, GenerationError, Generator, PreparedDecoder, Prompt, TokenLogprobs,
};
pub use sampling::{Sampling, SamplingError};
