//! Text data for the LSTM language models: corpus loading, standardisation, vocabulary and
//! batching. Nothing here depends on a tensor library, so it builds and tests in seconds.

pub mod corpus;
pub mod defaults;
pub mod encoding;
pub mod error;
pub mod files;
pub mod prepared;
pub mod sequences;
pub mod sources;
pub mod stream;
pub mod token_store;
pub mod tokenizer;
pub mod vocab;

pub use corpus::{CorpusFormat, CorpusSpec, LoadedCorpus, RECIPE_TEMPLATE, RecordsRead};
pub use encoding::Encoder;
pub use error::{DataError, StreamTooShort};
pub use prepared::{Encoded, Manifest, Part, PrepareSettings, Split, TokenSettings};
pub use sequences::{Batch, Collator, LossPositions, Sequences, Shape, Shuffle};
pub use stream::StreamWindows;
pub use token_store::TokenStore;
pub use tokenizer::Tokenizer;
pub use vocab::Vocab;
