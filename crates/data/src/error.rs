//! The data crate's error type: every variant names the file it is about.

use std::fmt;
use std::path::PathBuf;

/// Something wrong with a corpus or vocabulary file.
#[derive(Debug)]
pub enum DataError {
    /// The file could not be opened or read.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid UTF-8.
    Utf8 { path: PathBuf, detail: String },
    /// The file's contents do not fit the expected format.
    Format { path: PathBuf, detail: String },
    /// The file held no usable records or tokens.
    Empty { path: PathBuf, detail: String },
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            DataError::Utf8 { path, detail } => {
                write!(f, "{}: not valid UTF-8 ({detail})", path.display())
            }
            DataError::Format { path, detail } => write!(f, "{}: {detail}", path.display()),
            DataError::Empty { path, detail } => write!(f, "{}: {detail}", path.display()),
        }
    }
}

impl std::error::Error for DataError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DataError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
