//! Which files a corpus path names: one file, every corpus file under a directory
//! (recursively, in path order), or the files a glob pattern matches (in path order).

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use crate::DataError;
use crate::files::io_err;

/// File names read from a directory when the format is `auto` (each also with `.gz`).
const CORPUS_EXTENSIONS: [&str; 5] = ["json", "jsonl", "ndjson", "csv", "txt"];

/// One file of a corpus as it was when read: a prepared corpus remembers these to notice a
/// source that changed since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its modification time, in nanoseconds since 1970.
    pub modified_ns: u128,
}

impl Source {
    /// The file's current size and modification time.
    pub fn stat(path: &Path) -> Result<Self, DataError> {
        let meta = std::fs::metadata(path).map_err(io_err(path))?;
        let modified_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Ok(Self {
            path: path.to_owned(),
            bytes: meta.len(),
            modified_ns,
        })
    }
}

/// The files `path` names: itself when it is a file; under a directory, every file (or, when
/// `any_name` is false, every file with a corpus extension), hidden ones skipped; for a
/// pattern with `*`, `?` or `[`, the files it matches. Sorted by path; an error when none.
pub fn resolve(path: &Path, any_name: bool) -> Result<Vec<PathBuf>, DataError> {
    let text = path.to_string_lossy();
    let mut files: Vec<PathBuf> = if path.is_dir() {
        walkdir::WalkDir::new(path)
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .map(walkdir::DirEntry::into_path)
            .filter(|p| any_name || has_corpus_extension(p))
            .collect()
    } else if text.contains(['*', '?', '[']) {
        let pattern = glob::glob(&text).map_err(|e| DataError::Format {
            path: path.to_owned(),
            detail: format!("not a valid pattern: {e}"),
        })?;
        pattern
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .collect()
    } else {
        // A plain file; opening it later names it when it is missing.
        return Ok(vec![path.to_owned()]);
    };
    files.sort();
    if files.is_empty() {
        return Err(DataError::Empty {
            path: path.to_owned(),
            detail: format!(
                "no corpus file here (read: {}, each optionally .gz)",
                CORPUS_EXTENSIONS.map(|e| format!(".{e}")).join(", ")
            ),
        });
    }
    Ok(files)
}

fn has_corpus_extension(path: &Path) -> bool {
    let name = path.to_string_lossy().to_ascii_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    CORPUS_EXTENSIONS
        .iter()
        .any(|e| name.ends_with(&format!(".{e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_and_patterns_give_sorted_corpus_files() {
        let dir = std::env::temp_dir().join(format!("sources-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("b/.hidden")).unwrap();
        for name in [
            "b/2.txt",
            "a.json.gz",
            "b/.hidden/x.txt",
            "notes.md",
            "b/1.csv",
        ] {
            std::fs::write(dir.join(name), "x").unwrap();
        }
        let names = |files: Vec<PathBuf>| -> Vec<String> {
            files
                .iter()
                .map(|p| p.strip_prefix(&dir).unwrap().display().to_string())
                .collect()
        };
        assert_eq!(
            names(resolve(&dir, false).unwrap()),
            ["a.json.gz", "b/1.csv", "b/2.txt"]
        );
        assert_eq!(names(resolve(&dir, true).unwrap()).len(), 4);
        assert_eq!(
            names(resolve(&dir.join("b/*.txt"), false).unwrap()),
            ["b/2.txt"]
        );
        let none = resolve(&dir.join("*.jsonl"), false)
            .unwrap_err()
            .to_string();
        assert!(
            none.contains("*.jsonl") && none.contains("no corpus file"),
            "{none}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
