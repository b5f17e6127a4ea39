//! `bench scale`: memory against corpus size. Corpora of the sizes asked for are built by
//! resampling the shipped recipes (a different seed each), then each is prepared and trained
//! on for a few steps, every phase in a fresh process whose peak resident set is reported.

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ours::peak_rss_mib;
use crate::record;

/// Where the corpora, prepared directories and runs go.
const DIR: &str = "target/bench/scale";

/// `bench scale`'s flags.
#[derive(clap::Args)]
pub struct ScaleArgs {
    /// Corpus sizes in MB.
    #[arg(long, value_delimiter = ',', default_values_t = [100, 1000])]
    pub sizes: Vec<u64>,
    /// Training steps on each.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Keep the corpora and prepared directories (several GB) instead of removing them.
    #[arg(long)]
    pub keep: bool,
}

/// One measured phase, run in its own process.
#[derive(clap::Args)]
pub struct PhaseArgs {
    /// `prepare`, `train` (from the prepared form) or `train-text` (from the text).
    phase: String,
    /// The config.
    config: PathBuf,
}

/// What a phase's process prints.
#[derive(Debug, Serialize, Deserialize)]
struct PhaseResult {
    seconds: f64,
    peak_rss_mib: f64,
    tokens: u64,
}

/// Runs one phase here and prints its figures as one JSON line.
pub fn phase(args: &PhaseArgs) -> Result<()> {
    let started = Instant::now();
    let tokens = match args.phase.as_str() {
        "prepare" => {
            let prepare = train::PrepareArgs {
                config: args.config.clone(),
                out: None,
            };
            train::prepare_command::prepare(&prepare)?.tokens
        }
        "train" | "train-text" => {
            let (mut config, _) = pipeline::Config::load(&args.config)?;
            if args.phase == "train-text" {
                config.corpus.prepared = None;
            }
            let run = config
                .train
                .out
                .clone()
                .context("the config names its run")?;
            if run.exists() {
                std::fs::remove_dir_all(&run)?;
            }
            train::train(&config, &run, false)?;
            0
        }
        other => bail!("unknown phase `{other}`"),
    };
    let result = PhaseResult {
        seconds: started.elapsed().as_secs_f64(),
        peak_rss_mib: peak_rss_mib(),
        tokens,
    };
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

/// Builds the corpora, measures each phase on each and prints the table.
pub fn run(args: &ScaleArgs) -> Result<()> {
    let dir = Path::new(DIR);
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let records = recipes()?;
    let mut rows = Vec::new();
    for &mb in &args.sizes {
        let corpus = dir.join(format!("recipes-{mb}MB.jsonl"));
        eprintln!(
            "building {} by resampling the shipped recipes",
            corpus.display()
        );
        let count = resample(&records, mb * 1_000_000, mb, &corpus)?;
        let config = write_config(dir, mb, &corpus, args.steps)?;
        eprintln!("{mb} MB: prepare");
        let prepare = spawn("prepare", &config)?;
        eprintln!(
            "{mb} MB: {} training steps from the prepared form",
            args.steps
        );
        let train = spawn("train", &config)?;
        eprintln!("{mb} MB: {} training steps from the text", args.steps);
        let text = spawn("train-text", &config)?;
        rows.push((mb, count, prepare, train, text));
        if !args.keep {
            std::fs::remove_file(&corpus)?;
            std::fs::remove_dir_all(dir.join(format!("prepared-{mb}MB")))?;
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| corpus | records | tokens | prepare | prepare MB/s | prepare peak RSS | {} steps from prepared | peak RSS | {} steps from text | peak RSS |",
        args.steps, args.steps
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for (mb, count, prepare, train, text) in &rows {
        let _ = writeln!(
            out,
            "| {mb} MB | {count} | {} | {:.1} s | {:.1} | {:.0} MiB | {:.1} s | {:.0} MiB | {:.1} s | {:.0} MiB |",
            prepare.tokens,
            prepare.seconds,
            *mb as f64 / prepare.seconds,
            prepare.peak_rss_mib,
            train.seconds,
            train.peak_rss_mib,
            text.seconds,
            text.peak_rss_mib,
        );
    }
    if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
        let _ = writeln!(
            out,
            "peak RSS, {} MB against {} MB: prepare {:.2}x, training from the prepared form {:.2}x",
            last.0,
            first.0,
            last.2.peak_rss_mib / first.2.peak_rss_mib,
            last.3.peak_rss_mib / first.3.peak_rss_mib,
        );
        let _ = writeln!(
            out,
            "training from the text instead: {:.2}x",
            last.4.peak_rss_mib / first.4.peak_rss_mib
        );
    }
    let results: Vec<_> = rows
        .iter()
        .map(|(mb, records, prepare, train, text)| {
            serde_json::json!({"mb": mb, "records": records, "prepare": prepare, "train_prepared": train, "train_text": text})
        })
        .collect();
    record::publish("scale", &out, &results)
}

/// The shipped recipes as JSON objects.
fn recipes() -> Result<Vec<Value>> {
    let path = Path::new("datasets/epicurious/recipes.json.gz");
    let text = data::files::read_text(path)?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a JSON array", path.display()))
}

/// Writes randomly drawn records (seeded by `seed`) as JSON Lines until `bytes`; how many.
fn resample(records: &[Value], bytes: u64, seed: u64, path: &Path) -> Result<usize> {
    let file = std::fs::File::create(path).with_context(|| format!("{}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut written, mut count) = (0u64, 0);
    while written < bytes {
        let line = serde_json::to_string(&records[rng.random_range(0..records.len())])?;
        writeln!(out, "{line}")?;
        written += line.len() as u64 + 1;
        count += 1;
    }
    out.flush()?;
    Ok(count)
}

/// The textbook config on `corpus`, prepared into a directory beside it, `steps` steps.
fn write_config(dir: &Path, mb: u64, corpus: &Path, steps: usize) -> Result<PathBuf> {
    let (mut config, _) = pipeline::Config::load(Path::new("recipes.toml"))?;
    config.corpus.path = corpus.to_owned();
    config.corpus.prepared = Some(dir.join(format!("prepared-{mb}MB")));
    config.train.epochs = 1;
    config.train.max_batches_per_epoch = Some(steps);
    config.train.out = Some(dir.join(format!("run-{mb}MB")));
    config.generate.max_tokens = 20;
    let path = dir.join(format!("recipes-{mb}MB.toml"));
    std::fs::write(&path, toml::to_string(&config)?)?;
    Ok(path)
}

/// Runs `phase` on `config` in a fresh process of this binary.
fn spawn(phase: &str, config: &Path) -> Result<PhaseResult> {
    let out = Command::new(std::env::current_exe()?)
        .args(["scale-phase", phase])
        .arg(config)
        .stderr(std::process::Stdio::inherit())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("{phase} on {} failed:\n{stdout}", config.display());
    }
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).with_context(|| format!("{phase}: no figures in:\n{stdout}"))
}
