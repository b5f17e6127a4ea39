//! Reading (optionally gzip-compressed) text files and writing files atomically.

use std::io::{BufRead, Read};
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};

use crate::DataError;

/// Maps an I/O error to a [`DataError`] naming `path`.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Files at least this large show a progress bar while they are read (on a terminal).
const PROGRESS_BYTES: u64 = 64 << 20;

/// A bar counting the bytes read of a file of `size` bytes, hidden for small files.
fn progress_bar(path: &Path, size: u64) -> ProgressBar {
    match size >= PROGRESS_BYTES {
        true => ProgressBar::new(size)
            .with_style(
                ProgressStyle::with_template("reading {msg} {bar:30} {bytes}/{total_bytes}")
                    .expect("a valid progress template"),
            )
            .with_message(path.display().to_string()),
        false => ProgressBar::hidden(),
    }
}

/// Reads a file's bytes, decompressing it when its name ends in `.gz`.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, DataError> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let size = file.metadata().map_err(io_err(path))?.len();
    let bar = progress_bar(path, size);
    let mut raw = Vec::with_capacity(size as usize);
    bar.wrap_read(file)
        .read_to_end(&mut raw)
        .map_err(io_err(path))?;
    bar.finish_and_clear();
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| DataError::Format {
                path: path.to_owned(),
                detail: format!("not a valid gzip file ({e})"),
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Reads a file as UTF-8 text, naming the byte offset of the first invalid sequence.
pub fn read_text(path: &Path) -> Result<String, DataError> {
    String::from_utf8(read_bytes(path)?).map_err(|e| DataError::Utf8 {
        path: path.to_owned(),
        detail: format!(
            "invalid byte sequence at byte {}",
            e.utf8_error().valid_up_to()
        ),
    })
}

/// Writes `bytes` to a temporary file beside `path` and renames it into place, so a crash
/// never leaves `path` half-written.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// Opens a file for streaming, decompressing it when its name ends in `.gz`; large files
/// show a progress bar (on a terminal) as they are read.
pub fn open_reader(path: &Path) -> Result<Box<dyn BufRead>, DataError> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let size = file.metadata().map_err(io_err(path))?.len();
    let file = progress_bar(path, size).wrap_read(file);
    let reader = std::io::BufReader::with_capacity(1 << 16, file);
    Ok(if path.extension().is_some_and(|e| e == "gz") {
        Box::new(std::io::BufReader::with_capacity(
            1 << 16,
            flate2::bufread::MultiGzDecoder::new(reader),
        ))
    } else {
        Box::new(reader)
    })
}
