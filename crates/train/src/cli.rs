//! Command-line flags; each overrides the config value of the same name.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use model::{DeviceArgs, Kernels, Matmul};

/// Train an LSTM language model from a TOML config, generating text after every epoch.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "train",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Args {
    /// Something other than training.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Config file, or the name of one in configs/ (e.g. `recipes.toml` or `recipes`).
    #[arg(long, required = true)]
    pub config: Option<PathBuf>,
    /// Number of epochs (overrides `train.epochs`).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Run directory for checkpoints, metrics and samples (default: runs/<config name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Backend and wgpu adapter (override `train.backend`, `train.device`, `train.graphics_api`).
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Data-parallel training on N devices (overrides `train.devices`).
    #[arg(long)]
    pub devices: Option<usize>,
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

/// What else `train` does.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Tokenise a config's corpus once into a directory of token shards, which training then
    /// reads through a memory map (set `corpus.prepared` to it): for corpora larger than memory.
    Prepare(PrepareArgs),
    /// Serve this machine's device to training runs in other processes or on other machines
    /// (Burn's remote backend over WebSocket); they train on it with `--remote ws://HOST:PORT`.
    /// Needs the `remote` cargo feature.
    ServeDevice(ServeDeviceArgs),
}

/// The `serve-device` command's flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeDeviceArgs {
    /// Address to listen on: 127.0.0.1:PORT serves this machine only, 0.0.0.0:PORT the network
    /// (unencrypted: a trusted network only); port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub listen: String,
    /// The device to serve.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// The `prepare` command's flags.
#[derive(Debug, Clone, clap::Args)]
pub struct PrepareArgs {
    /// Config file, or the name of one in configs/.
    #[arg(long)]
    pub config: PathBuf,
    /// Where to write it (default: the config's `corpus.prepared`, else prepared/<config name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
}
