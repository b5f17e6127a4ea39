//! Command-line flags; each overrides the config value of the same name.

use std::path::PathBuf;

use clap::Parser;
use model::{DeviceArgs, Kernels, Matmul};

/// Train an LSTM language model from a TOML config, generating text after every epoch.
#[derive(Debug, Clone, Parser)]
#[command(name = "train", version)]
pub struct Args {
    /// Config file, or the name of one in configs/ (e.g. `recipes.toml` or `recipes`).
    #[arg(long)]
    pub config: PathBuf,
    /// Number of epochs (overrides `train.epochs`).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Run directory for checkpoints, metrics and samples (default: runs/<config name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Backend and wgpu adapter (override `train.backend`, `train.device`, `train.graphics_api`).
    #[command(flatten)]
    pub device: DeviceArgs,
    /// `fused` or `reference` (Burn's own operations) (overrides `train.kernels`).
    #[arg(long, value_parser = model::parse_setting::<Kernels>)]
    pub kernels: Option<Kernels>,
    /// `auto`, `openblas` or `builtin`: the fused operations' matrix products (overrides
    /// `train.matmul`).
    #[arg(long, value_parser = model::parse_setting::<Matmul>)]
    pub matmul: Option<Matmul>,
    /// Random seed for initialisation, shuffling and sampling (overrides `train.seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop each epoch after N batches, for a quick look (overrides `train.max_batches_per_epoch`).
    #[arg(long)]
    pub max_batches: Option<usize>,
    /// Continue from the run directory's latest checkpoint (weights, optimizer, epoch).
    #[arg(long)]
    pub resume: bool,
}
