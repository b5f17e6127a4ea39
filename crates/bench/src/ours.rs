//! Our side of the comparison, in its own process (so its peak RSS is its own): the product's
//! training step (`train::step::train_step`, flex backend, Adam) and greedy generation.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::Device;
use data::{Tokenizer, Vocab};
use model::{
    BackendKind, DeviceArgs, DeviceSpec, Generator, Kernels, Matmul, ModelConfig, Sampling,
};
use pipeline::config::TrainConfig;
use serde::{Deserialize, Serialize};
use train::step::{optimizer, train_step};

use crate::shared_data::SharedData;
use crate::work::Work;

/// Arguments of the internal `ours` subcommand.
#[derive(clap::Args)]
pub struct OursArgs {
    /// The bench's batches.json.
    #[arg(long)]
    batches: PathBuf,
    /// Timed steps after one warm-up step.
    #[arg(long)]
    steps: usize,
    /// Tokens to generate for the generation figures, greedy and sampled.
    #[arg(long, default_value_t = 2000)]
    gen_tokens: usize,
    /// Backend and wgpu adapter (default: flex).
    #[command(flatten)]
    device: DeviceArgs,
    /// `fused` or `reference` (Burn's own operations).
    #[arg(long, default_value = "fused", value_parser = model::parse_setting::<Kernels>)]
    kernels: Kernels,
    /// `auto`, `openblas` or `builtin`.
    #[arg(long, default_value = "auto", value_parser = model::parse_setting::<Matmul>)]
    matmul: Matmul,
}

/// What one measuring process reports (the PyTorch script prints the same fields).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measured {
    /// Name and version.
    pub system: String,
    /// Milliseconds of every timed step.
    pub ms: Vec<f64>,
    /// Loss of every timed step.
    pub losses: Vec<f64>,
    /// Peak resident memory of the process.
    pub peak_rss_mib: f64,
    /// Tokens generated for each generation figure (after a warm-up generation).
    pub gen_tokens: usize,
    /// Greedy generation, one token at a time with the state carried.
    pub gen_greedy_tokens_per_s: f64,
    /// The same, sampled at temperature 0.8.
    pub gen_sampled_tokens_per_s: f64,
}

/// Time to the passage exercise's loss target: one training run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToTarget {
    /// Name and version.
    pub system: String,
    /// Optimizer steps until the smoothed loss reached the target.
    pub steps: u64,
    /// Wall time of the run.
    pub seconds: f64,
}

/// Trains `configs/ai-applications.toml` to its target in this process.
pub fn memorise() -> Result<ToTarget> {
    train::allocator::keep_freed_memory();
    let (mut config, _) = pipeline::Config::load(Path::new("ai-applications.toml"))?;
    config.train.eval_every = usize::MAX; // one checkpoint, at the end
    let run = PathBuf::from("target/bench/memorise");
    if run.exists() {
        std::fs::remove_dir_all(&run)
            .with_context(|| format!("{}: cannot clear", run.display()))?;
    }
    let start = Instant::now();
    let summary = train::train(&config, &run, false)?;
    Ok(ToTarget {
        system: format!("ours ({})", config.train.backend),
        steps: summary.epochs.last().map_or(0, |m| m.step),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Which build of our step a `bench ours` process measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Row {
    /// The product on flex as a new user gets it: fused operations, the built-in `gemm`
    /// crate for the matrix products.
    Ours,
    /// Burn's own `nn::Lstm`, `Linear` and cross-entropy on flex, with the `gemm` crate.
    Stock,
    /// The product on wgpu (Burn's stock operations on the GPU).
    Wgpu,
}

/// Runs `bench ours` as a child process for `row` and reads its report.
pub fn spawn(batches: &SharedData, work: &Work, row: Row) -> Result<Measured> {
    let exe = std::env::current_exe().context("locating the bench binary")?;
    let mut cmd = work.command(exe);
    cmd.args(["ours", "--batches"])
        .arg(&batches.meta)
        .args(["--steps", &work.steps.to_string()])
        .args(["--gen-tokens", &work.gen_tokens.to_string()]);
    match row {
        Row::Ours => {
            cmd.args(["--matmul", "builtin"]);
        }
        Row::Stock => {
            cmd.args(["--kernels", "reference", "--matmul", "builtin"]);
        }
        Row::Wgpu => {
            cmd.args(["--backend", "wgpu"]);
        }
    }
    read_report(cmd, "ours")
}

/// Runs `cmd`, passing its stderr through, and parses the JSON line it prints last.
pub fn read_report<T: serde::de::DeserializeOwned>(mut cmd: Command, what: &str) -> Result<T> {
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("starting {what}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("{what} failed ({}): {stdout}", out.status);
    }
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).with_context(|| format!("{what} printed no report: {stdout}"))
}

/// The `ours` subcommand.
pub fn run(args: &OursArgs) -> Result<()> {
    train::allocator::keep_freed_memory();
    let file = SharedData::open(&args.batches)?;
    let raw = std::fs::read(&file.file)
        .with_context(|| format!("{}: cannot read", file.file.display()))?;
    let vocab = Vocab::load(&file.vocab)?;
    let settings = TrainConfig::default();
    let spec = args.device.apply(DeviceSpec::default());
    let opened = spec.open()?;
    opened.check_logits_fit(file.batch_size * file.seq_len, vocab.size())?;
    let matmul = kernels::matmul::select(args.matmul)?;
    let device = opened.device.clone().autodiff();
    device.seed(settings.seed);
    let mut model = ModelConfig::sized(file.embedding_dim, file.hidden_size)
        .init(vocab.size(), &device)
        .with_kernels(args.kernels);
    let mut optim = optimizer(&settings);
    let (mut ms, mut losses) = (Vec::new(), Vec::new());
    for i in 0..=args.steps {
        let batch = file.batch(&raw, i % file.batches);
        let start = Instant::now();
        let out = train_step(
            model,
            &mut optim,
            &batch,
            settings.learning_rate,
            &device,
            None,
        );
        model = out.model;
        if i > 0 {
            ms.push(start.elapsed().as_secs_f64() * 1000.0);
            losses.push(out.loss);
        }
    }
    let model = model.valid();
    let greedy = Sampling::greedy();
    let sampled = Sampling::with_temperature(0.8)?;
    let speed =
        |sampling| generation_speed(&model, &vocab, &opened.device, args.gen_tokens, sampling);
    let (greedy, sampled) = (speed(&greedy), speed(&sampled));
    let report = Measured {
        system: match (spec.backend, args.kernels.fused_on(&device)) {
            (BackendKind::Wgpu, _) => format!("ours ({})", opened.description),
            (_, false) => format!("stock Burn ({})", opened.description),
            (_, true) => format!("ours ({}, {matmul})", opened.description),
        },
        ms,
        losses,
        peak_rss_mib: peak_rss_mib(),
        gen_tokens: args.gen_tokens,
        gen_greedy_tokens_per_s: greedy,
        gen_sampled_tokens_per_s: sampled,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Tokens per second generating `tokens` tokens after the prompt `[2, 3]`, after one short
/// generation that prepares the generator (on the CPU, its decoder's weights: what a served
/// model does once, not per token), as the PyTorch script warms up too. A stop token ends a
/// generation; the next one starts from the prompt again until `tokens` are generated, as
/// PyTorch's loop, which has no stop token, generates exactly `tokens`.
fn generation_speed(
    model: &model::LanguageModel,
    vocab: &Vocab,
    device: &Device,
    tokens: usize,
    sampling: &Sampling,
) -> f64 {
    let mut generator = Generator::new(model, vocab, Tokenizer::Word, device.clone(), 1);
    generator.generate(&[2, 3], 1, sampling, &[]);
    let start = Instant::now();
    let mut generated = 0;
    while generated < tokens {
        let done = generator.generate(&[2, 3], tokens - generated, sampling, &[]);
        generated += done.ids.len().max(1);
    }
    generated as f64 / start.elapsed().as_secs_f64()
}

/// Peak resident set size of this process (`VmHWM`), in MiB; 0 where /proc is missing.
pub(crate) fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string(Path::new("/proc/self/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
