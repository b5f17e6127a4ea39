//! Opening a checkpoint for a subcommand: which one (`--checkpoint`, `--best`, the device),
//! its model, vocabulary and device, and the run directory around it.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use clap::Args;
use model::burn::tensor::Device;
use model::{BackendKind, Checkpoint, DeviceArgs, DeviceSpec, Generator};

/// Which checkpoint, on which device.
#[derive(Debug, Clone, Args)]
pub struct ModelSource {
    /// A run directory (its latest checkpoint is used) or one checkpoint directory.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// With a run directory: its best checkpoint (lowest validation loss) instead.
    #[arg(long)]
    pub best: bool,
    /// Backend and wgpu adapter (default: flex).
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Which checkpoint and prompt.
#[derive(Debug, Clone, Args)]
pub struct Source {
    #[command(flatten)]
    pub model: ModelSource,
    /// The text to continue; standardised as the training data was.
    #[arg(long)]
    pub prompt: String,
}

/// The run directory of the checkpoint `dir`: checkpoints live in RUN/checkpoints/NAME.
pub(crate) fn run_dir_of(dir: &Path) -> Option<PathBuf> {
    dir.parent()
        .filter(|p| p.file_name().is_some_and(|n| n == "checkpoints"))
        .and_then(|p| p.parent())
        .map(PathBuf::from)
}

/// The `[generate] prompts` of the run's `config.toml`, or none when it cannot be read.
pub(crate) fn run_prompts(run_dir: &Path) -> Vec<String> {
    pipeline::Config::load(&run_dir.join("config.toml"))
        .map(|(config, _)| config.generate.prompts)
        .unwrap_or_default()
}

/// A checkpoint loaded for one subcommand.
pub(crate) struct Loaded {
    pub(crate) model: model::LanguageModel,
    pub(crate) vocab: data::Vocab,
    pub(crate) ckpt: Checkpoint,
    pub(crate) device: Device,
}

impl Loaded {
    /// Opens the checkpoint `source` names and loads its model and vocabulary.
    pub(crate) fn open(source: &ModelSource) -> Result<Self> {
        let spec = source.device.apply(DeviceSpec::default());
        let opened = spec.open()?;
        if spec.backend == BackendKind::Wgpu {
            eprintln!("device: {opened}");
        }
        let ckpt = match source.best {
            false => Checkpoint::open(&source.checkpoint)?,
            true => Checkpoint::best(&source.checkpoint)?.ok_or_else(|| {
                anyhow!(
                    "{}: --best: this run records no best checkpoint (a run records one when its config holds data.validation out)",
                    source.checkpoint.display()
                )
            })?,
        };
        let (model, vocab) = ckpt.load(&opened.device)?;
        Ok(Self {
            model,
            vocab,
            ckpt,
            device: opened.device,
        })
    }

    /// A generator over the loaded model, and the ids of `prompt` (unknown words reported).
    pub(crate) fn generator(&self, prompt: &str, seed: u64) -> Result<(Generator<'_>, Vec<u32>)> {
        let tokenizer = self.ckpt.meta.tokenizer;
        let generator = Generator::new(
            &self.model,
            &self.vocab,
            tokenizer,
            self.device.clone(),
            seed,
        )
        .with_context(self.ckpt.meta.context);
        let prompt = generator.prompt(prompt)?;
        if !prompt.unknown.is_empty() {
            eprintln!(
                "warning: not in the vocabulary, read as [UNK]: {}",
                prompt.unknown.join(", ")
            );
        }
        Ok((generator, prompt.ids))
    }
}
