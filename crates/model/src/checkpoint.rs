//! Checkpoints: one directory per save holding the weights, the optimizer state, the
//! vocabulary and `meta.json` (what rebuilds the model). Both binaries read them here.
//!
//! ```text
//! runs/recipes/checkpoints/epoch-003/
//!     meta.json       model sizes, vocabulary size, epoch, step, loss
//!     model.bpk       weights (Burn's burnpack format)
//!     optimizer.bpk   Adam's moments, for resuming
//!     vocab.txt       one token a line in id order
//! ```
//! A checkpoint is written to `epoch-NNN.tmp` and renamed into place, so an interrupted save
//! never leaves a half-written checkpoint under a real name.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use data::{Tokenizer, Vocab};
use serde::{Deserialize, Serialize};

use crate::{LanguageModel, ModelConfig};

const META: &str = "meta.json";
const MODEL: &str = "model.bpk";
const OPTIMIZER: &str = "optimizer.bpk";
const VOCAB: &str = "vocab.txt";

/// What a checkpoint records besides the tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointMeta {
    /// Layer sizes.
    pub model: ModelConfig,
    /// Entries in `vocab.txt`, which is also the model's output width.
    pub vocab_size: usize,
    /// How prompts are split into tokens and tokens joined back into text.
    #[serde(default)]
    pub tokenizer: Tokenizer,
    /// For a many-to-one model, the number of last tokens it predicts from (pre-padded with 0);
    /// `None` for a language model that reads the whole prompt with its state carried.
    #[serde(default)]
    pub context: Option<usize>,
    /// Epochs completed when this was saved.
    pub epoch: usize,
    /// Optimizer steps taken when this was saved.
    pub step: u64,
    /// Mean training loss of the last epoch.
    pub loss: f64,
}

/// A checkpoint directory on disk.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The `epoch-NNN` directory.
    pub dir: PathBuf,
    /// Its `meta.json`.
    pub meta: CheckpointMeta,
}

/// Why a checkpoint could not be found, read or written; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Neither a checkpoint directory nor a run directory with checkpoints.
    #[error(
        "{}: no checkpoint here (expected a run directory with checkpoints/epoch-NNN/ or a checkpoint directory with {META})",
        .0.display()
    )]
    NotFound(PathBuf),
    /// A file or directory could not be read, written or renamed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// `meta.json` is not a checkpoint description.
    #[error("{}: not a checkpoint description: {source}", path.display())]
    Meta {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The vocabulary file could not be read or written.
    #[error(transparent)]
    Vocab(#[from] data::DataError),
    /// The vocabulary does not match the model's size.
    #[error("{}: vocabulary mismatch: {entries} entries, but the model was trained on {expected}", path.display())]
    VocabSize {
        /// The vocabulary file.
        path: PathBuf,
        /// Its entries.
        entries: usize,
        /// The model's vocabulary size.
        expected: usize,
    },
    /// Weights or optimizer state could not be written or did not load.
    #[error("{}: {what}: {source}", path.display())]
    Record {
        /// The file.
        path: PathBuf,
        /// What was being done, and the likely causes.
        what: String,
        /// Burn's error.
        source: burn::store::RecordError,
    },
}

/// An I/O error on `path`.
fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A Burn record error on `path` while doing `what`.
fn record_err(
    path: &Path,
    what: impl Into<String>,
) -> impl FnOnce(burn::store::RecordError) -> CheckpointError {
    let (path, what) = (path.to_owned(), what.into());
    move |source| CheckpointError::Record { path, what, source }
}

impl Checkpoint {
    /// The directory name for the checkpoint after `epoch`.
    pub fn dir_name(epoch: usize) -> String {
        format!("epoch-{epoch:03}")
    }

    /// Writes a checkpoint into `checkpoints_dir/epoch-NNN`, replacing one of the same epoch.
    pub fn save(
        checkpoints_dir: &Path,
        model: &LanguageModel,
        optimizer: Option<&ModuleOptimizer>,
        vocab: &Vocab,
        meta: CheckpointMeta,
    ) -> Result<Self, CheckpointError> {
        let dir = checkpoints_dir.join(Self::dir_name(meta.epoch));
        let tmp = checkpoints_dir.join(format!("{}.tmp", Self::dir_name(meta.epoch)));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        let weights = tmp.join(MODEL);
        model
            .clone()
            .save_file(&weights)
            .map_err(record_err(&weights, "cannot write the weights"))?;
        if let Some(optim) = optimizer {
            let state = tmp.join(OPTIMIZER);
            optim
                .save(&state)
                .map_err(record_err(&state, "cannot write the optimizer state"))?;
        }
        vocab.save(&tmp.join(VOCAB))?;
        let json =
            serde_json::to_string_pretty(&meta).expect("a checkpoint description serialises");
        std::fs::write(tmp.join(META), json).map_err(io_err(&tmp.join(META)))?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
        }
        std::fs::rename(&tmp, &dir).map_err(io_err(&dir))?;
        Ok(Self { dir, meta })
    }

    /// Opens a checkpoint directory, or the latest checkpoint of a run directory.
    pub fn open(path: &Path) -> Result<Self, CheckpointError> {
        if path.join(META).is_file() {
            return Self::open_dir(path);
        }
        Self::latest(path)?.ok_or_else(|| CheckpointError::NotFound(path.to_owned()))
    }

    /// The highest-epoch checkpoint of a run directory, if it has any.
    pub fn latest(run_dir: &Path) -> Result<Option<Self>, CheckpointError> {
        let dir = run_dir.join("checkpoints");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(None);
        };
        let best = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let epoch: usize = name.strip_prefix("epoch-")?.parse().ok()?;
                e.path().join(META).is_file().then_some((epoch, e.path()))
            })
            .max_by_key(|(epoch, _)| *epoch);
        best.map(|(_, p)| Self::open_dir(&p)).transpose()
    }

    fn open_dir(dir: &Path) -> Result<Self, CheckpointError> {
        let path = dir.join(META);
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        let meta = serde_json::from_str(&text).map_err(|source| CheckpointError::Meta {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            dir: dir.to_owned(),
            meta,
        })
    }

    /// The checkpoint's vocabulary, checked against the recorded vocabulary size.
    pub fn vocab(&self) -> Result<Vocab, CheckpointError> {
        let path = self.dir.join(VOCAB);
        let vocab = Vocab::load(&path)?;
        if vocab.size() != self.meta.vocab_size {
            return Err(CheckpointError::VocabSize {
                path,
                entries: vocab.size(),
                expected: self.meta.vocab_size,
            });
        }
        Ok(vocab)
    }

    /// Rebuilds the model on `device` and loads its weights and vocabulary.
    pub fn load(&self, device: &Device) -> Result<(LanguageModel, Vocab), CheckpointError> {
        let vocab = self.vocab()?;
        Ok((self.load_model(device)?, vocab))
    }

    /// Rebuilds the model on `device` and loads its weights, checked against `meta.json`
    /// (for a caller that has read the vocabulary already).
    pub fn load_model(&self, device: &Device) -> Result<LanguageModel, CheckpointError> {
        let path = self.dir.join(MODEL);
        let model = self
            .meta
            .model
            .init(self.meta.vocab_size, device)
            .try_load_file(&path)
            .map_err(record_err(
                &path,
                format!(
                    "the weights do not fit a {}-entry vocabulary with {:?} (a checkpoint from another vocabulary, or from before the model's layout changed)",
                    self.meta.vocab_size, self.meta.model
                ),
            ))?;
        Ok(model)
    }

    /// Restores the optimizer state saved with this checkpoint, if there is one.
    pub fn load_optimizer(
        &self,
        optimizer: ModuleOptimizer,
    ) -> Result<ModuleOptimizer, CheckpointError> {
        let path = self.dir.join(OPTIMIZER);
        if !path.is_file() {
            return Ok(optimizer);
        }
        optimizer
            .load(&path)
            .map_err(record_err(&path, "cannot load the optimizer state"))
    }
}
