//! Using a trained model: sampling the next token, generating text with the state carried,
//! and tracing one LSTM cell's gates.

pub mod checked_picks;
mod decoding;
pub mod generator;
pub mod sampling;
pub mod trace;

pub use checked_picks::CheckedPicks;
pub use generator::{
    Completion, Finish, GenerationError, Generator, PreparedDecoder, Prompt, TokenLogprobs,
};
pub use sampling::{Sampling, SamplingError};
