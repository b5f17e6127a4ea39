//! The data crate's error type: every variant names the file it is about.

use std::path::PathBuf;

/// Something wrong with a corpus or vocabulary file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened, read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file is not valid UTF-8.
    #[error("{}: not valid UTF-8 ({detail})", path.display())]
    Utf8 {
        /// The file.
        path: PathBuf,
        /// Where the first invalid byte is.
        detail: String,
    },
    /// The file's contents do not fit the expected format.
    #[error("{}: {detail}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What does not fit, and where.
        detail: String,
    },
    /// The file held no usable records or tokens.
    #[error("{}: {detail}", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
        /// What was missing.
        detail: String,
    },
}

/// A token stream too short for the windows asked of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{tokens} tokens are too few for {rows} parallel streams (each needs at least 2)")]
pub struct StreamTooShort {
    /// Tokens in the stream.
    pub tokens: usize,
    /// Parallel rows asked for.
    pub rows: usize,
}
