//! A corpus tokenised once into a directory, for corpora larger than memory:
//!
//! ```text
//! prepared/recipes/
//!   manifest.json      how it was made, counts, the source files with sizes and times
//!   vocab.txt          the vocabulary, one token a line in id order
//!   tokens-00000.bin   little-endian ids, u16 when the vocabulary fits, else u32
//!   records.bin        little-endian u64 token positions: record i is [i, i+1)
//! ```
//!
//! Training maps the shards and reads only the records a batch needs. Preparing streams:
//! what grows with the corpus is on disk, and in memory only the distinct tokens.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::encoding::{Encoder, map_shards};
use crate::files::{io_err, write_atomic};
use crate::sources::Source;
use crate::token_store::{Column, TokenStore};
use crate::{CorpusSpec, DataError, Tokenizer, Vocab};

/// The version of the layout written here.
const LAYOUT_VERSION: u32 = 1;
/// The record index's file name.
const INDEX: &str = "records.bin";
/// The manifest's file name.
pub const MANIFEST: &str = "manifest.json";

/// Everything that decides a prepared corpus's ids, named as a training config names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrepareSettings {
    /// The corpus and how its records become texts.
    pub corpus: CorpusSpec,
    /// How the texts become ids.
    pub data: TokenSettings,
}

/// The settings of `[data]` that decide the ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenSettings {
    /// `word` or `char`.
    pub tokenizer: Tokenizer,
    /// `stream` (one continuous text) or `records` (records, windows and prefixes share it).
    pub examples: String,
    /// Most vocabulary entries.
    pub vocab_size: usize,
    /// Fraction held out at the end, whose words the vocabulary does not count.
    pub validation: f64,
}

impl TokenSettings {
    /// Whether the corpus is read as one stream.
    pub fn stream(&self) -> bool {
        self.examples == "stream"
    }
}

/// The part of the corpus the model trains on and the part held out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The training part.
    pub training: Part,
    /// The held-out part (possibly empty).
    pub held_out: Part,
}

/// A part of a corpus: whole records, or (for a stream) token positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Records by number.
    Records(Range<usize>),
    /// Token positions of the stream.
    Tokens(Range<u64>),
}

impl Part {
    /// True when it holds nothing.
    pub fn is_empty(&self) -> bool {
        match self {
            Part::Records(r) => r.is_empty(),
            Part::Tokens(t) => t.is_empty(),
        }
    }
}

/// A tokenised corpus: its vocabulary, ids and split.
#[derive(Debug)]
pub struct Encoded {
    /// The vocabulary the training part builds.
    pub vocab: Vocab,
    /// Every record's ids.
    pub store: TokenStore,
    /// Training and held-out parts.
    pub split: Split,
}

/// What a prepared directory says about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The layout's version.
    pub version: u32,
    /// The settings it was prepared with.
    pub settings: PrepareSettings,
    /// The source files as they were read.
    pub sources: Vec<Source>,
    /// Vocabulary entries.
    pub vocab_entries: usize,
    /// SHA-256 of `vocab.txt`.
    pub vocab_sha256: String,
    /// Records (for a stream: the pieces it was read in).
    pub records: usize,
    /// Tokens.
    pub tokens: u64,
    /// Records of the training part (the rest is held out).
    pub training_records: usize,
    /// Tokens of the training part.
    pub training_tokens: u64,
    /// Bytes per id: 2 or 4.
    pub id_bytes: usize,
    /// The shard files and their ids, in order.
    pub shards: Vec<(String, u64)>,
}

impl Manifest {
    fn split(&self) -> Split {
        split_at(
            self.settings.data.stream(),
            self.records,
            self.training_records,
            self.tokens,
            self.training_tokens,
        )
    }
}

fn split_at(stream: bool, records: usize, keep: usize, tokens: u64, keep_tokens: u64) -> Split {
    match stream {
        true => Split {
            training: Part::Tokens(0..keep_tokens),
            held_out: Part::Tokens(keep_tokens..tokens),
        },
        false => Split {
            training: Part::Records(0..keep),
            held_out: Part::Records(keep..records),
        },
    }
}

/// What [`PrepareSettings::read_into`] read: the files and a line for the log.
pub struct Read {
    /// The files, in order.
    pub files: Vec<PathBuf>,
    /// What was read, for the log.
    pub summary: String,
}

impl PrepareSettings {
    /// Streams the corpus into `encoder`: one record per usable record, or, for a stream,
    /// the text in pieces.
    pub fn read_into(&self, encoder: &mut Encoder) -> Result<Read, DataError> {
        let path = self.corpus.path.display();
        if self.data.stream() {
            let mut chars = 0;
            let files = self.corpus.read_stream(|piece| {
                chars += piece.chars().count();
                encoder.push(piece)
            })?;
            let summary = format!("corpus {path}: {chars} characters, read as one stream");
            return Ok(Read { files, summary });
        }
        let read = self.corpus.read_records(|text| encoder.push(text))?;
        let summary = format!(
            "corpus {path}: {} records ({} skipped for a missing {})",
            read.records,
            read.skipped,
            read.fields.join(" or ")
        );
        Ok(Read {
            files: read.files,
            summary,
        })
    }

    /// Where the training part ends: records kept, tokens kept.
    fn keep(&self, encoder: &mut Encoder) -> Result<(usize, u64), DataError> {
        let keep = |n: u64| n - (n as f64 * self.data.validation).round() as u64;
        if self.data.stream() {
            return Ok((encoder.records(), keep(encoder.tokens())));
        }
        let records = keep(encoder.records() as u64) as usize;
        Ok((records, encoder.record_start(records)?))
    }

    /// Reads, tokenises and encodes the corpus in memory.
    pub fn encode(&self) -> Result<(Encoded, Read), DataError> {
        let mut encoder = Encoder::in_memory(self.data.tokenizer);
        let read = self.read_into(&mut encoder)?;
        let (keep, keep_tokens) = self.keep(&mut encoder)?;
        let vocab = encoder.vocab(keep_tokens, self.data.vocab_size)?;
        let (records, tokens) = (encoder.records(), encoder.tokens());
        let store = encoder.into_store(&vocab)?;
        let split = split_at(self.data.stream(), records, keep, tokens, keep_tokens);
        Ok((
            Encoded {
                vocab,
                store,
                split,
            },
            read,
        ))
    }

    /// Prepares the corpus into `out`, streaming: files are written into `out.partial` and
    /// renamed into place at the end, so an interrupted preparation leaves any earlier `out`
    /// as it was.
    pub fn prepare(&self, out: &Path) -> Result<(Manifest, Read), DataError> {
        let partial = with_suffix(out, ".partial");
        if partial.exists() {
            std::fs::remove_dir_all(&partial).map_err(io_err(&partial))?;
        }
        std::fs::create_dir_all(&partial).map_err(io_err(&partial))?;
        let mut encoder = Encoder::spooled(self.data.tokenizer, &partial, &partial.join(INDEX))?;
        let read = self.read_into(&mut encoder)?;
        let sources = read
            .files
            .iter()
            .map(|f| Source::stat(f))
            .collect::<Result<_, _>>()?;
        let (keep, keep_tokens) = self.keep(&mut encoder)?;
        let vocab = encoder.vocab(keep_tokens, self.data.vocab_size)?;
        let id_bytes = if vocab.size() <= 1 << 16 { 2 } else { 4 };
        let (records, tokens) = (encoder.records(), encoder.tokens());
        let shards = encoder.write_shards(&vocab, &partial, id_bytes)?;
        vocab.save(&partial.join("vocab.txt"))?;
        let mut settings = self.clone();
        settings.corpus.prepared = None;
        let manifest = Manifest {
            version: LAYOUT_VERSION,
            settings,
            sources,
            vocab_entries: vocab.size(),
            vocab_sha256: vocab.fingerprint(),
            records,
            tokens,
            training_records: keep,
            training_tokens: keep_tokens,
            id_bytes,
            shards,
        };
        let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
        write_atomic(&partial.join(MANIFEST), &json)?;
        let old = with_suffix(out, ".old");
        if out.exists() {
            std::fs::rename(out, &old).map_err(io_err(out))?;
        }
        std::fs::rename(&partial, out).map_err(io_err(out))?;
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(io_err(&old))?;
        }
        Ok((manifest, read))
    }

    /// Opens the corpus prepared in `dir`, refusing it when it was prepared with other
    /// settings, when a source file changed since, or when a file is damaged.
    pub fn open(&self, dir: &Path) -> Result<(Encoded, Manifest), DataError> {
        let manifest_path = dir.join(MANIFEST);
        let format = |detail: String| DataError::Format {
            path: manifest_path.clone(),
            detail,
        };
        if !manifest_path.exists() {
            return Err(DataError::Empty {
                path: dir.to_owned(),
                detail: "no prepared corpus here (no manifest.json): run `cargo run -p train -- prepare --config CONFIG` first".into(),
            });
        }
        let text = crate::files::read_text(&manifest_path)?;
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| format(format!("not a prepared corpus's manifest: {e}")))?;
        if manifest.version != LAYOUT_VERSION {
            return Err(format(format!(
                "layout version {} (this build reads {LAYOUT_VERSION}): prepare it again",
                manifest.version
            )));
        }
        let mut wanted = self.clone();
        wanted.corpus.prepared = None;
        if let Some((key, then, now)) = first_difference(&manifest.settings, &wanted) {
            return Err(format(format!(
                "prepared with {key} = {then}, but the config has {now}: prepare it again with this config"
            )));
        }
        let files = self.corpus.files()?;
        let listed: Vec<&Path> = manifest.sources.iter().map(|s| s.path.as_path()).collect();
        if files
            .iter()
            .map(PathBuf::as_path)
            .ne(listed.iter().copied())
        {
            return Err(format(format!(
                "prepared from {} file(s), but {} now names {}: prepare it again",
                listed.len(),
                self.corpus.path.display(),
                files.len()
            )));
        }
        for then in &manifest.sources {
            let now = Source::stat(&then.path)?;
            if now != *then {
                return Err(format(format!(
                    "the source {} changed since it was prepared ({} bytes then, {} now{}): prepare it again",
                    then.path.display(),
                    then.bytes,
                    now.bytes,
                    if now.bytes == then.bytes {
                        ", modified since"
                    } else {
                        ""
                    }
                )));
            }
        }
        let vocab = Vocab::load(&dir.join("vocab.txt"))?;
        if vocab.fingerprint() != manifest.vocab_sha256 {
            return Err(DataError::Format {
                path: dir.join("vocab.txt"),
                detail: format!(
                    "its SHA-256 is {}, the manifest says {}: prepare it again",
                    vocab.fingerprint(),
                    manifest.vocab_sha256
                ),
            });
        }
        let shards = map_shards(dir, &manifest.shards, manifest.id_bytes)?;
        let index_path = dir.join(INDEX);
        let starts = Column::map(&index_path, 8)?;
        let store = TokenStore::new(shards, starts);
        if store.records() != manifest.records || store.tokens() != manifest.tokens {
            return Err(DataError::Format {
                path: index_path,
                detail: format!(
                    "indexes {} records of {} tokens, the manifest says {} of {}",
                    store.records(),
                    store.tokens(),
                    manifest.records,
                    manifest.tokens
                ),
            });
        }
        let split = manifest.split();
        Ok((
            Encoded {
                vocab,
                store,
                split,
            },
            manifest,
        ))
    }
}

/// `path` with `suffix` added to its last component.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The first setting (as `section.key`) whose values differ, with both values.
fn first_difference(
    then: &PrepareSettings,
    now: &PrepareSettings,
) -> Option<(String, String, String)> {
    let (then, now) = (
        serde_json::to_value(then).expect("settings serialise"),
        serde_json::to_value(now).expect("settings serialise"),
    );
    let sections = ["corpus", "data"];
    sections.iter().find_map(|section| {
        let (Some(Value::Object(a)), Some(Value::Object(b))) =
            (then.get(section), now.get(section))
        else {
            return None;
        };
        let keys = a.keys().chain(b.keys().filter(|k| !a.contains_key(*k)));
        keys.into_iter().find_map(|key| {
            let (x, y) = (
                a.get(key).unwrap_or(&Value::Null),
                b.get(key).unwrap_or(&Value::Null),
            );
            (x != y).then(|| (format!("{section}.{key}"), x.to_string(), y.to_string()))
        })
    })
}
