//! Text data for the LSTM language models: corpus loading, standardisation, vocabulary and
//! batching. Nothing here depends on a tensor library, so it builds and tests in seconds.

pub mod batcher;
pub mod corpus;
pub mod error;
pub mod files;
pub mod stream;
pub mod tokenizer;
pub mod vocab;

pub use batcher::{Batch, Batcher, LossPositions, Sequences};
pub use corpus::{CorpusFormat, CorpusSpec, LoadedCorpus, RECIPE_TEMPLATE};
pub use error::DataError;
pub use stream::StreamWindows;
pub use tokenizer::Tokenizer;
pub use vocab::Vocab;
