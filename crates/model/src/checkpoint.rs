//! Checkpoints: one directory per save holding the weights, the optimizer state, the
//! vocabulary and `meta.json` (what rebuilds the model). Both binaries read them here.
//!
//! ```text
//! runs/recipes/checkpoints/epoch-003/     after an epoch
//! runs/recipes/checkpoints/step-0001234/  inside one (every N steps, or at Ctrl-C)
//!     meta.json       model sizes, vocabulary size, epoch, step, loss, place in the epoch
//!     model.bpk       weights (Burn's burnpack format)
//!     optimizer.bpk   Adam's moments, for resuming
//!     vocab.txt       one token a line in id order
//!     carried.json    inside an epoch of a stream: the recurrent state carried on
//! ```
//! A checkpoint is written to `NAME.tmp`, flushed to disk and renamed into place, so an
//! interrupted save never leaves a half-written checkpoint under a real name; one it replaces
//! is moved aside first and removed only once the new one is in place.

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::{Device, Tensor, TensorData};
use data::{Tokenizer, Vocab};
use serde::{Deserialize, Serialize};

use crate::language_model::float_values;
use crate::recurrent::{LayerState, State};
use crate::{LanguageModel, ModelConfig};

const META: &str = "meta.json";
const MODEL: &str = "model.bpk";
const OPTIMIZER: &str = "optimizer.bpk";
const VOCAB: &str = "vocab.txt";
const CARRIED: &str = "carried.json";
/// `checkpoints/best`: the name of the checkpoint with the lowest validation loss.
const BEST: &str = "best";

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
    /// Mean training loss of the last epoch (inside an epoch: of its steps so far).
    pub loss: f64,
    /// Where a checkpoint taken inside epoch `epoch + 1` stood; `None` after an epoch.
    #[serde(default)]
    pub within_epoch: Option<EpochProgress>,
    /// The smoothed loss that `train.stop_at_loss` watches, carried across a resume.
    #[serde(default)]
    pub smoothed_loss: Option<f64>,
}

/// How far an epoch had gone when a checkpoint was taken inside it: what a resume needs to
/// continue it exactly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochProgress {
    /// Batches of the epoch's (seeded, reproducible) order already trained on.
    pub batches: usize,
    /// Their loss times their counted positions, summed.
    pub loss_sum: f64,
    /// Their counted positions.
    pub weight_sum: f64,
    /// Their positions (batch x sequence length), for the tokens-per-second figure.
    pub positions: usize,
    /// Seconds spent on them.
    pub seconds: f64,
}

impl EpochProgress {
    /// The mean loss per counted position of the batches so far.
    pub fn mean_loss(&self) -> f64 {
        self.loss_sum / self.weight_sum.max(1.0)
    }
}

/// The recurrent state a stream carries from one window to the next, as plain numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarriedState {
    /// Per layer, bottom first.
    pub layers: Vec<CarriedLayer>,
}

/// One layer's carried state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarriedLayer {
    /// `[batch, hidden]`.
    pub shape: [usize; 2],
    /// The hidden state, row by row.
    pub hidden: Vec<f32>,
    /// The LSTM's cell state; `None` for a GRU or a plain RNN.
    pub cell: Option<Vec<f32>>,
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
    /// `meta.json` (or `carried.json`) is not what a checkpoint writes there.
    #[error("{}: not a checkpoint's file (corrupt or from another program): {source}", path.display())]
    Meta {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The vocabulary file (or the best-checkpoint pointer) could not be read or written.
    #[error(transparent)]
    Data(#[from] data::DataError),
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
    /// `meta.json` parses but holds a value no checkpoint has.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the field.
        message: String,
    },
    /// The weights hold another number of parameters than `meta.json`'s sizes give.
    #[error("{}: {what}: {found} parameters where {expected} were expected", path.display())]
    Sizes {
        /// The weights file.
        path: PathBuf,
        /// What this means.
        what: String,
        /// Parameters in the file.
        found: usize,
        /// Parameters the sizes give.
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

/// Writes `bytes` to `path` and flushes them to the disk.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let mut file = std::fs::File::create(path).map_err(io_err(path))?;
    file.write_all(bytes).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

/// Flushes every file in `dir`, and the directory's own entries, to the disk.
fn sync_dir(dir: &Path) -> Result<(), CheckpointError> {
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        if path.is_file() {
            let file = std::fs::File::open(&path).map_err(io_err(&path))?;
            file.sync_all().map_err(io_err(&path))?;
        }
    }
    // A directory opens read-only for fsync on Unix; elsewhere this is best effort.
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
    Ok(())
}

impl CarriedState {
    /// The numbers of `state`.
    pub fn of(state: &State) -> Self {
        let values = |t: &Tensor<2>| float_values(t.clone());
        let layers = state
            .layers
            .iter()
            .map(|l| CarriedLayer {
                shape: l.hidden.dims(),
                hidden: values(&l.hidden),
                cell: l.cell.as_ref().map(values),
            })
            .collect();
        Self { layers }
    }

    /// The state on `device`.
    pub fn to_state(&self, device: &Device) -> State {
        let tensor = |shape: [usize; 2], values: &[f32]| {
            Tensor::<2>::from_data(TensorData::new(values.to_vec(), shape), device)
        };
        let layers = self
            .layers
            .iter()
            .map(|l| LayerState {
                hidden: tensor(l.shape, &l.hidden),
                cell: l.cell.as_ref().map(|c| tensor(l.shape, c)),
            })
            .collect();
        State { layers }
    }
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

    /// The directory name for a checkpoint `meta` describes: `epoch-NNN` after an epoch,
    /// `step-NNNNNNN` inside one.
    fn name_for(meta: &CheckpointMeta) -> String {
        match meta.within_epoch {
            None => Self::dir_name(meta.epoch),
            Some(_) => format!("step-{:07}", meta.step),
        }
    }

    /// Writes a checkpoint into `checkpoints_dir` (named for `meta`), with the optimizer
    /// state and, inside an epoch of a stream, the `carried` recurrent state.
    pub fn save(
        checkpoints_dir: &Path,
        model: &LanguageModel,
        optimizer: Option<&ModuleOptimizer>,
        carried: Option<&State>,
        vocab: &Vocab,
        meta: CheckpointMeta,
    ) -> Result<Self, CheckpointError> {
        let name = Self::name_for(&meta);
        let dir = checkpoints_dir.join(&name);
        let tmp = checkpoints_dir.join(format!("{name}.tmp"));
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
        if let Some(state) = carried {
            let json = serde_json::to_string(&CarriedState::of(state))
                .expect("a carried state serialises");
            write_file(&tmp.join(CARRIED), json.as_bytes())?;
        }
        vocab.save(&tmp.join(VOCAB))?;
        let json =
            serde_json::to_string_pretty(&meta).expect("a checkpoint description serialises");
        write_file(&tmp.join(META), json.as_bytes())?;
        sync_dir(&tmp)?;
        // An earlier checkpoint of the same name is moved aside, not deleted, until the new
        // one is in place.
        let aside = checkpoints_dir.join(format!("{name}.old"));
        if dir.exists() {
            if aside.exists() {
                std::fs::remove_dir_all(&aside).map_err(io_err(&aside))?;
            }
            std::fs::rename(&dir, &aside).map_err(io_err(&dir))?;
        }
        std::fs::rename(&tmp, &dir).map_err(io_err(&dir))?;
        sync_dir(checkpoints_dir)?;
        if aside.exists() {
            std::fs::remove_dir_all(&aside).map_err(io_err(&aside))?;
        }
        Ok(Self { dir, meta })
    }

    /// Opens a checkpoint directory, or the latest checkpoint of a run directory.
    pub fn open(path: &Path) -> Result<Self, CheckpointError> {
        if path.join(META).is_file() {
            return Self::open_dir(path);
        }
        Self::latest(path)?.ok_or_else(|| CheckpointError::NotFound(path.to_owned()))
    }

    /// The checkpoints of a run directory, oldest (fewest steps) first; an epoch's own
    /// checkpoint comes after one taken at the same step inside it. None when the run has no
    /// `checkpoints/` yet.
    pub fn all(run_dir: &Path) -> Result<Vec<Self>, CheckpointError> {
        let dir = run_dir.join("checkpoints");
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // `NAME.tmp` and `NAME.old` are saves in progress or interrupted.
            let named = name.starts_with("epoch-") || name.starts_with("step-");
            if named && !name.contains('.') && entry.path().join(META).is_file() {
                found.push(Self::open_dir(&entry.path())?);
            }
        }
        found.sort_by_key(|c| (c.meta.step, c.meta.within_epoch.is_none(), c.meta.epoch));
        Ok(found)
    }

    /// The latest checkpoint of a run directory (the most steps), if it has any.
    pub fn latest(run_dir: &Path) -> Result<Option<Self>, CheckpointError> {
        Ok(Self::all(run_dir)?.pop())
    }

    /// Records this checkpoint as its run's best: `checkpoints/best` names it.
    pub fn mark_best(&self) -> Result<(), CheckpointError> {
        let name = self.dir.file_name().unwrap_or_default().to_string_lossy();
        let pointer = self.dir.with_file_name(BEST);
        Ok(data::files::write_atomic(&pointer, name.as_bytes())?)
    }

    /// The checkpoint a run recorded as its best (lowest validation loss), if it has one.
    pub fn best(run_dir: &Path) -> Result<Option<Self>, CheckpointError> {
        let pointer = run_dir.join("checkpoints").join(BEST);
        let name = match std::fs::read_to_string(&pointer) {
            Ok(name) => name,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&pointer)(e)),
        };
        Self::open_dir(&run_dir.join("checkpoints").join(name.trim())).map(Some)
    }

    /// The carried recurrent state saved with a checkpoint inside an epoch of a stream.
    pub fn carried(&self, device: &Device) -> Result<Option<State>, CheckpointError> {
        let path = self.dir.join(CARRIED);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        let carried: CarriedState =
            serde_json::from_str(&text).map_err(|source| CheckpointError::Meta {
                path: path.clone(),
                source,
            })?;
        Ok(Some(carried.to_state(device)))
    }

    fn open_dir(dir: &Path) -> Result<Self, CheckpointError> {
        let path = dir.join(META);
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        let meta: CheckpointMeta =
            serde_json::from_str(&text).map_err(|source| CheckpointError::Meta {
                path: path.clone(),
                source,
            })?;
        let invalid = match (meta.context, meta.vocab_size) {
            (Some(0), _) => Some("`context` is 0: a many-to-one model reads at least one token"),
            (_, 0..3) => Some("`vocab_size` is below 3 (padding, [UNK] and one word)"),
            _ => None,
        };
        if let Some(message) = invalid {
            return Err(CheckpointError::Invalid {
                path,
                message: message.into(),
            });
        }
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
        let fits = format!(
            "the weights do not fit a {}-entry vocabulary with {:?} (a checkpoint from another vocabulary, or from before the model's layout changed)",
            self.meta.vocab_size, self.meta.model
        );
        let fresh = self.meta.model.init(self.meta.vocab_size, device);
        let expected = fresh.num_params();
        let model = fresh
            .try_load_file(&path)
            .map_err(record_err(&path, fits.clone()))?;
        // Burn takes tensors of other shapes as they come: count what was loaded.
        if model.num_params() != expected {
            return Err(CheckpointError::Sizes {
                path,
                what: fits,
                found: model.num_params(),
                expected,
            });
        }
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
