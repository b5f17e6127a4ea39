//! The training config: a TOML file whose sections hold only what differs from the
//! defaults below (the chapter's settings). Unknown keys are rejected.

use std::path::{Path, PathBuf};

use data::defaults;
use data::{CorpusSpec, Shuffle, Tokenizer};
use model::{BackendKind, DeviceSpec, GraphicsApi, Kernels, Matmul, ModelConfig};
use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, PipelineError};

/// Where shipped configs live; a bare `--config NAME` that is not a file is looked up here.
pub const CONFIG_DIR: &str = "configs";

/// A whole training run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The corpus file and how its records become texts.
    pub corpus: CorpusSpec,
    /// Vocabulary, sequences and batches.
    #[serde(default)]
    pub data: DataConfig,
    /// Layer sizes.
    #[serde(default)]
    pub model: ModelConfig,
    /// Optimisation and run settings.
    #[serde(default)]
    pub train: TrainConfig,
    /// The per-epoch generation callback.
    #[serde(default)]
    pub generate: GenerateConfig,
}

/// Vocabulary, sequence and batch settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Vocabulary entries, padding and `[UNK]` included (the chapter: 10,000).
    pub vocab_size: usize,
    /// Input positions per sequence; each record is cut or padded to `seq_len + 1` ids.
    pub seq_len: usize,
    /// Sequences per batch.
    pub batch_size: usize,
    /// Count padding positions in the loss as Keras does; by default only the real tokens
    /// and the first stop token count, so the loss is not dominated by padding.
    pub loss_on_padding: bool,
    /// `word` (standardised words, the default) or `char` (every character).
    pub tokenizer: Tokenizer,
    /// How the corpus becomes training examples.
    pub examples: ExampleKind,
    /// What each epoch shuffles: `examples` (the default: the sequences, into new batches) or
    /// `batches` (fixed batches of consecutive records, in a new order: the chapter's
    /// `batch(32).shuffle(1000)`).
    pub shuffle: Shuffle,
    /// Fraction of the corpus held out for validation: the last records, or the end of the
    /// stream. Its loss is reported per epoch next to the training loss.
    pub validation: f64,
}

/// How the corpus becomes training examples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExampleKind {
    /// One sequence per record, cut or padded to `seq_len + 1`; every position predicts the
    /// next token (the chapter).
    #[default]
    Records,
    /// The corpus as one continuous stream read in consecutive windows of `seq_len`, the state
    /// carried from each window to the next (truncated BPTT: the NumPy passage exercise,
    /// char-rnn).
    Stream,
    /// Many-to-one: every window of `seq_len` tokens of a record predicts the token after it
    /// (the next-letter toy's `abc -> d`).
    Windows,
    /// Many-to-one: every prefix of a record, pre-padded to `seq_len`, predicts the token after
    /// it (the n-gram prefix model).
    Prefixes,
}

impl ExampleKind {
    /// For many-to-one examples, the context length a model trained on them predicts from.
    pub fn context(self, seq_len: usize) -> Option<usize> {
        matches!(self, ExampleKind::Windows | ExampleKind::Prefixes).then_some(seq_len)
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            vocab_size: defaults::VOCAB_SIZE,
            seq_len: defaults::SEQ_LEN,
            batch_size: defaults::BATCH_SIZE,
            loss_on_padding: false,
            tokenizer: Tokenizer::Word,
            examples: ExampleKind::Records,
            shuffle: Shuffle::Examples,
            validation: 0.0,
        }
    }
}

/// Optimiser and run settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Passes over the corpus.
    pub epochs: usize,
    /// Adam's learning rate (Keras's default).
    pub learning_rate: f64,
    /// `adam` (the chapter) or `adagrad` (the NumPy passage exercise, with `clip_value = 1.0`
    /// and lr 0.1).
    pub optimizer: OptimizerKind,
    /// Adam's epsilon: Keras uses 1e-7 (Burn's default is 1e-5).
    pub adam_epsilon: f32,
    /// Clip every gradient element to `[-clip_value, clip_value]` before the update.
    pub clip_value: Option<f32>,
    /// Rescale the gradients whose L2 norm exceeds `clip_norm` (instead of `clip_value`).
    pub clip_norm: Option<f32>,
    /// Seeds weight initialisation, shuffling and sampling.
    pub seed: u64,
    /// `flex` or `ndarray` (CPU), `wgpu` (GPU; needs the `wgpu` cargo feature), or `remote`
    /// (a device `train serve-device` serves at `remote`; needs the `remote` cargo feature).
    pub backend: BackendKind,
    /// For `backend = "remote"`: the server's address, such as `ws://127.0.0.1:3000`.
    pub remote: Option<String>,
    /// The wgpu adapter's number in the list the log prints (default: wgpu's pick); for a
    /// remote server, the number of its device (default 0).
    pub device: Option<usize>,
    /// Data-parallel training on this many devices: each batch is split between them, each
    /// computes the gradients of its share in its own thread, and Burn's optimizer adds them
    /// (`MultiGradientsParams`). For wgpu (or a remote server), the adapters (its devices)
    /// numbered from `device` (or 0) on; the CPU backends have one device, which then runs that
    /// many replicas.
    pub devices: usize,
    /// The graphics API wgpu uses: `auto`, `vulkan`, `gl`, `metal` or `dx12`.
    pub graphics_api: GraphicsApi,
    /// `fused` (the CPU operations of the `kernels` crate on flex) or `reference` (Burn's own
    /// LSTM, Linear and cross-entropy everywhere).
    pub kernels: Kernels,
    /// The fused operations' matrix products: `auto` (the system's OpenBLAS when installed),
    /// `openblas` or `builtin` (the `gemm` crate).
    pub matmul: Matmul,
    /// Stop each epoch after this many batches (quick experiments and tests).
    pub max_batches_per_epoch: Option<usize>,
    /// Run directory; defaults to `runs/<config name>`.
    pub out: Option<PathBuf>,
    /// Stop as soon as the loss named by `stop_loss` is at or below this value.
    pub stop_at_loss: Option<f64>,
    /// Which loss `stop_at_loss` watches.
    pub stop_loss: StopLoss,
    /// Never take more optimizer steps than this (a safety cap for `stop_at_loss`).
    pub max_steps: Option<u64>,
    /// Save a checkpoint, a metrics row and samples every this many epochs (and at the end).
    pub eval_every: usize,
    /// Also save a checkpoint every this many optimizer steps, inside epochs.
    pub checkpoint_every_steps: Option<u64>,
    /// Keep only the newest this many checkpoints (older ones are removed once a new one is
    /// complete, never the best); all when unset.
    pub keep_checkpoints: Option<usize>,
    /// Stop when the validation loss has not improved for this many evaluations (needs
    /// `data.validation`); the best checkpoint is named in `checkpoints/best`.
    pub early_stopping_patience: Option<usize>,
}

/// The optimisation algorithm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam with Keras's defaults.
    #[default]
    Adam,
    /// Adagrad, as the NumPy passage exercise's loop (epsilon 1e-8).
    Adagrad,
}

/// The loss a `stop_at_loss` target refers to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopLoss {
    /// The NumPy passage exercise's `smooth = 0.999 * smooth + 0.001 * loss`, with each step's loss
    /// summed over its window (not averaged), starting from `ln(vocab) * seq_len`.
    #[default]
    SmoothedWindowSum,
    /// The mean per-token training loss of an epoch.
    EpochMean,
}

impl TrainConfig {
    /// The backend and wgpu adapter this config asks for.
    pub fn device_spec(&self) -> DeviceSpec {
        DeviceSpec {
            backend: self.backend,
            adapter: self.device,
            graphics_api: self.graphics_api,
            remote: self.remote.clone(),
        }
    }

    /// Every device of a data-parallel run (`devices` of them): for wgpu (or a remote server)
    /// the adapters (its devices) numbered from `device` (or 0) on, for the CPU backends their
    /// one device each time.
    pub fn device_specs(&self) -> Vec<DeviceSpec> {
        let first = self.device_spec();
        let numbered = matches!(self.backend, BackendKind::Wgpu | BackendKind::Remote);
        if self.devices == 1 || !numbered {
            return vec![first; self.devices];
        }
        let start = self.device.unwrap_or(0);
        (start..start + self.devices)
            .map(|n| DeviceSpec {
                adapter: Some(n),
                ..first.clone()
            })
            .collect()
    }

    /// Sets the backend and wgpu adapter.
    pub fn set_device_spec(&mut self, spec: DeviceSpec) {
        self.backend = spec.backend;
        self.device = spec.adapter;
        self.graphics_api = spec.graphics_api;
        self.remote = spec.remote;
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 25,
            learning_rate: 1e-3,
            optimizer: OptimizerKind::Adam,
            adam_epsilon: 1e-7,
            clip_value: None,
            clip_norm: None,
            seed: defaults::SEED,
            backend: BackendKind::Flex,
            kernels: Kernels::Fused,
            matmul: Matmul::Auto,
            device: None,
            devices: 1,
            remote: None,
            graphics_api: GraphicsApi::Auto,
            max_batches_per_epoch: None,
            out: None,
            stop_at_loss: None,
            stop_loss: StopLoss::SmoothedWindowSum,
            max_steps: None,
            eval_every: 1,
            checkpoint_every_steps: None,
            keep_checkpoints: None,
            early_stopping_patience: None,
        }
    }
}

/// What the end-of-epoch callback generates.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerateConfig {
    /// Prompts to continue after every epoch.
    pub prompts: Vec<String>,
    /// Sampling temperatures (each > 0); every prompt is continued at each.
    pub temperatures: Vec<f32>,
    /// Most tokens to generate per prompt (generation also stops at the stop token).
    pub max_tokens: usize,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        Self {
            prompts: vec!["recipe for".into()],
            temperatures: vec![1.0],
            max_tokens: defaults::MAX_TOKENS,
        }
    }
}

impl Config {
    /// The textbook's run, every setting at its default, on `corpus`.
    pub fn textbook(corpus: CorpusSpec) -> Self {
        Self {
            corpus,
            data: DataConfig::default(),
            model: ModelConfig::default(),
            train: TrainConfig::default(),
            generate: GenerateConfig::default(),
        }
    }

    /// Finds and parses a config: `name` as a path, else `configs/<name>`.
    pub fn load(name: &Path) -> Result<(Self, PathBuf), PipelineError> {
        let path = resolve(name)?;
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) => return Err(PipelineError::ConfigUnreadable { path, error }),
        };
        let config: Config = match toml::from_str(&text) {
            Ok(config) => config,
            Err(e) => {
                let message = e.to_string().trim_end().to_owned();
                return Err(PipelineError::ConfigSyntax { path, message });
            }
        };
        match config.validate() {
            Ok(()) => Ok((config, path)),
            Err(error) => Err(PipelineError::InvalidConfig { path, error }),
        }
    }

    /// Checks values serde cannot: sizes above zero and a usable temperature.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let data = &self.data;
        for (key, v) in [
            ("data.vocab_size", data.vocab_size),
            ("data.seq_len", data.seq_len),
            ("data.batch_size", data.batch_size),
            ("train.eval_every", self.train.eval_every),
            ("train.devices", self.train.devices),
            ("generate.max_tokens", self.generate.max_tokens),
            (
                "train.keep_checkpoints",
                self.train.keep_checkpoints.unwrap_or(1),
            ),
            (
                "train.checkpoint_every_steps",
                self.train.checkpoint_every_steps.map_or(1, |n| n as usize),
            ),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero(key));
            }
        }
        if data.vocab_size < 3 {
            return Err(ConfigError::Rule(
                "`data.vocab_size` must be at least 3 (padding, [UNK] and one word)",
            ));
        }
        if !(self.train.learning_rate.is_finite() && self.train.learning_rate > 0.0) {
            return Err(ConfigError::Rule(
                "`train.learning_rate` must be greater than 0",
            ));
        }
        if !(0.0..1.0).contains(&data.validation) {
            return Err(ConfigError::Rule(
                "`data.validation` must be a fraction in [0, 1)",
            ));
        }
        if self.train.devices > 1 && data.examples == ExampleKind::Stream {
            return Err(ConfigError::Rule(
                "`train.devices` above 1 splits batches of independent sequences; a stream's windows carry their state from batch to batch (use 1)",
            ));
        }
        if self.train.early_stopping_patience.is_some() && data.validation == 0.0 {
            return Err(ConfigError::Rule(
                "`train.early_stopping_patience` watches the validation loss: set `data.validation` above 0",
            ));
        }
        self.model.check()?;
        if self.train.clip_value.is_some() && self.train.clip_norm.is_some() {
            return Err(ConfigError::Rule(
                "set `train.clip_value` or `train.clip_norm`, not both",
            ));
        }
        for &t in &self.generate.temperatures {
            model::generation::sampling::check_temperature(t)?;
        }
        Ok(())
    }
}

/// A config's name: its file name without `.toml` (the default run directory's name).
pub fn config_name(path: &Path) -> String {
    path.file_stem()
        .map_or("run".into(), |s| s.to_string_lossy().into_owned())
}

fn resolve(name: &Path) -> Result<PathBuf, PipelineError> {
    if name.is_file() {
        return Ok(name.to_owned());
    }
    let in_dir = Path::new(CONFIG_DIR).join(name);
    if name.components().count() == 1 && in_dir.is_file() {
        return Ok(in_dir);
    }
    let with_ext = in_dir.with_extension("toml");
    if name.components().count() == 1 && with_ext.is_file() {
        return Ok(with_ext);
    }
    Err(PipelineError::ConfigNotFound {
        name: name.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        toml::from_str::<Config>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_the_chapters() {
        let c = parse("[corpus]\npath = \"x.json\"\n").unwrap();
        assert_eq!(
            (c.data.vocab_size, c.data.seq_len, c.data.batch_size),
            (10_000, 200, 32)
        );
        assert_eq!((c.model.embedding_dim, c.model.hidden_size), (100, 128));
        assert_eq!(c.train.epochs, 25);
        assert_eq!(c.generate.prompts, ["recipe for"]);
    }

    #[test]
    fn kernel_switches_are_config_values_and_unknown_ones_are_named() {
        let c = parse(
            "[corpus]\npath = \"x\"\n[train]\nkernels = \"reference\"\nmatmul = \"builtin\"\n",
        )
        .unwrap();
        assert_eq!(
            (c.train.kernels, c.train.matmul),
            (Kernels::Reference, Matmul::Builtin)
        );
        let defaults = parse("[corpus]\npath = \"x\"\n").unwrap();
        assert_eq!(
            (defaults.train.kernels, defaults.train.matmul),
            (Kernels::Fused, Matmul::Auto)
        );
        let e = parse("[corpus]\npath = \"x\"\n[train]\nkernels = \"fast\"\n").unwrap_err();
        assert!(
            e.contains("kernels") && e.contains("`fused` or `reference`"),
            "{e}"
        );
        let e = parse("[corpus]\npath = \"x\"\n[train]\nmatmul = \"mkl\"\n").unwrap_err();
        assert!(e.contains("matmul") && e.contains("`openblas`"), "{e}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = parse("[corpus]\npath = \"x\"\n[train]\nepocs = 3\n").unwrap_err();
        assert!(e.contains("epocs"), "{e}");
        let e = parse("[corpus]\npath = \"x\"\n[modle]\n").unwrap_err();
        assert!(e.contains("modle"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let mut c =
            parse("[corpus]\npath = \"x\"\n[generate]\ntemperatures = [1.0, 0.0]\n").unwrap();
        let e = format!("{:#}", c.validate().unwrap_err());
        assert!(
            e.contains("generate.temperatures") && e.contains("greater than 0"),
            "{e}"
        );
        c.generate.temperatures = vec![1.0];
        c.train.clip_value = Some(1.0);
        c.train.clip_norm = Some(5.0);
        assert!(format!("{:#}", c.validate().unwrap_err()).contains("not both"));
        c.train.clip_norm = None;
        c.data.batch_size = 0;
        assert!(format!("{:#}", c.validate().unwrap_err()).contains("data.batch_size"));
    }

    #[test]
    fn missing_config_names_the_path() {
        let e = Config::load(Path::new("no-such-config.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no-such-config.toml") && e.contains("not found"),
            "{e}"
        );
    }
}
