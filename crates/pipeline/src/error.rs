//! What can go wrong between a config file and a run's batches, each naming the file, key or
//! corpus it concerns.

use std::path::PathBuf;

use data::{DataError, StreamTooShort};
use model::generation::SamplingError;
use model::language_model::ModelConfigError;

use crate::config::{CONFIG_DIR, ExampleKind};

/// A config that cannot be found, read or used, or a corpus that yields no batches.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Neither a path nor a name in `configs/`.
    #[error("{}: config not found (looked for it as a path and in {CONFIG_DIR}/)", name.display())]
    ConfigNotFound {
        /// What was asked for.
        name: PathBuf,
    },
    /// The config file exists but cannot be read.
    #[error("{}: cannot read the config: {error}", path.display())]
    ConfigUnreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// Not valid TOML, an unknown key or a wrong type (TOML's message names the line and key).
    #[error("{}: {message}", path.display())]
    ConfigSyntax {
        /// The file.
        path: PathBuf,
        /// TOML's message.
        message: String,
    },
    /// A value that parses but cannot be used.
    #[error("{}: invalid config: {error}", path.display())]
    InvalidConfig {
        /// The file.
        path: PathBuf,
        /// Which key and why.
        error: ConfigError,
    },
    /// Reading or encoding the corpus failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The corpus yields no example of the configured kind.
    #[error("corpus {}: {error}", corpus.display())]
    Corpus {
        /// The config's `corpus.path`.
        corpus: PathBuf,
        /// What is missing.
        error: ExamplesError,
    },
}

/// A config value that cannot be used, naming its key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A count that must be at least 1.
    #[error("`{0}` must be at least 1")]
    Zero(&'static str),
    /// A rule between keys, or a range, that the config breaks (the message names the keys).
    #[error("{0}")]
    Rule(&'static str),
    /// The `[model]` table.
    #[error(transparent)]
    Model(#[from] ModelConfigError),
    /// A temperature of `generate.temperatures`.
    #[error("`generate.temperatures`: {0}")]
    Temperature(#[from] SamplingError),
}

/// Why a part of the corpus yields no batches.
#[derive(Debug, thiserror::Error)]
pub enum ExamplesError {
    /// A stream too short for its parallel rows.
    #[error("data: {0}")]
    Stream(#[from] StreamTooShort),
    /// No record long enough for the configured kind of example.
    #[error(
        "data: no {kind:?} examples: windows need records of at least data.seq_len + 1 = {} tokens, prefixes records of at least 2",
        seq_len + 1
    )]
    None {
        /// `data.examples`.
        kind: ExampleKind,
        /// `data.seq_len`.
        seq_len: usize,
    },
}
