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

use std::fmt;
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

/// Why a checkpoint could not be written or read.
#[derive(Debug)]
pub enum CheckpointError {
    /// Nothing that looks like a checkpoint at this path.
    NotFound(PathBuf),
    /// A file inside the checkpoint could not be read or written.
    File { path: PathBuf, detail: String },
    /// The vocabulary does not fit the weights or the data it is used with.
    VocabMismatch { path: PathBuf, detail: String },
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointError::NotFound(p) => write!(
                f,
                "{}: no checkpoint here (expected a run directory with checkpoints/epoch-NNN/ or a checkpoint directory with {META})",
                p.display()
            ),
            CheckpointError::File { path, detail } => write!(f, "{}: {detail}", path.display()),
            CheckpointError::VocabMismatch { path, detail } => {
                write!(f, "{}: vocabulary mismatch: {detail}", path.display())
            }
        }
    }
}

impl std::error::Error for CheckpointError {}

fn file_err(path: &Path, detail: impl fmt::Display) -> CheckpointError {
    CheckpointError::File {
        path: path.to_owned(),
        detail: detail.to_string(),
    }
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
            std::fs::remove_dir_all(&tmp).map_err(|e| file_err(&tmp, e))?;
        }
        std::fs::create_dir_all(&tmp).map_err(|e| file_err(&tmp, e))?;
        model
            .clone()
            .save_file(tmp.join(MODEL))
            .map_err(|e| file_err(&tmp.join(MODEL), e))?;
        if let Some(optim) = optimizer {
            optim
                .save(tmp.join(OPTIMIZER))
                .map_err(|e| file_err(&tmp.join(OPTIMIZER), e))?;
        }
        vocab
            .save(&tmp.join(VOCAB))
            .map_err(|e| file_err(&tmp.join(VOCAB), e))?;
        let json = serde_json::to_string_pretty(&meta).map_err(|e| file_err(&tmp.join(META), e))?;
        std::fs::write(tmp.join(META), json).map_err(|e| file_err(&tmp.join(META), e))?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| file_err(&dir, e))?;
        }
        std::fs::rename(&tmp, &dir).map_err(|e| file_err(&dir, e))?;
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
        let text = std::fs::read_to_string(&path).map_err(|e| file_err(&path, e))?;
        let meta = serde_json::from_str(&text)
            .map_err(|e| file_err(&path, format!("not a checkpoint description: {e}")))?;
        Ok(Self {
            dir: dir.to_owned(),
            meta,
        })
    }

    /// The checkpoint's vocabulary, checked against the recorded vocabulary size.
    pub fn vocab(&self) -> Result<Vocab, CheckpointError> {
        let path = self.dir.join(VOCAB);
        let vocab = Vocab::load(&path).map_err(|e| file_err(&path, e))?;
        if vocab.len() != self.meta.vocab_size {
            return Err(CheckpointError::VocabMismatch {
                path,
                detail: format!(
                    "{} entries, but the model was trained on {}",
                    vocab.len(),
                    self.meta.vocab_size
                ),
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
            .map_err(|e| {
                file_err(
                    &path,
                    format!(
                        "the weights do not fit a {}-entry vocabulary with {:?} (a checkpoint from another vocabulary, or from before the model's layout changed): {e}",
                        self.meta.vocab_size, self.meta.model
                    ),
                )
            })?;
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
        optimizer.load(&path).map_err(|e| file_err(&path, e))
    }
}
