//! The textbook's settings: the defaults of every config, flag and benchmark.

/// Vocabulary entries, padding and `[UNK]` included.
pub const VOCAB_SIZE: usize = 10_000;
/// Input positions per sequence.
pub const SEQ_LEN: usize = 200;
/// Sequences per batch.
pub const BATCH_SIZE: usize = 32;
/// Seeds initialisation, shuffling and sampling.
pub const SEED: u64 = 42;
/// Most tokens one generation adds.
pub const MAX_TOKENS: usize = 100;
