//! Text data for the LSTM language models: corpus loading, standardisation, vocabulary and
//! batching. Nothing here depends on a tensor library, so it builds and tests in seconds.

pub mod corpus;
pub mod defaults;
pub mod error;
pub mod files;
pub mod sequences;
pub mod stream;
pub mod tokenizer;
pub mod vocab;

pub use corpus::{CorpusFormat, CorpusSpec, LoadedCorpus, RECIPE_TEMPLATE};
pub use error::{DataError, StreamTooShort};
pub use sequences::{Batch, Collator, LossPositions, Sequences};
pub use stream::StreamWindows;
pub use tokenizer::Tokenizer;
pub use vocab::Vocab;
