//! The `inference` binary's library: `generate` continues a prompt, `probs` prints the most
//! likely next words at several temperatures, `trace` prints an LSTM cell's gates, all from a
//! checkpoint; `plot` draws a run's loss curves.

use std::fmt::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use data::defaults;
use model::burn::tensor::Device;
use model::generation::PreparedDecoder;
use model::generation::sampling::{check_temperature, probabilities, top};
use model::{BackendKind, Checkpoint, DeviceArgs, DeviceSpec, Generator, Sampling};

/// Use a trained LSTM language model.
#[derive(Debug, Clone, Parser)]
#[command(name = "inference", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to do with the model.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Continue a prompt, one token at a time.
    Generate(GenerateArgs),
    /// Print the most likely next words after a prompt, per temperature.
    Probs(ProbsArgs),
    /// Print the LSTM cell's gates (f, i, c~, c, o, h) for every token of the prompt.
    Trace(TraceArgs),
    /// Draw a run's training and validation loss per epoch into RUN/loss.svg.
    Plot(PlotArgs),
    /// Serve the model over HTTP: OpenAI-style completions (streamed or not), next-word tables.
    Serve(ServeArgs),
    /// The model's loss, perplexity and unknown-token share on text files, read as its run's
    /// training data was.
    Score(ScoreArgs),
}

/// `inference score` flags.
#[derive(Debug, Clone, Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub model: ModelSource,
    /// Files to score. JSON, JSON Lines and CSV records are formatted with the run's
    /// `corpus.template`; a plain-text file holds records already written as the model sees
    /// them (`Recipe for ... | ...`), one a line.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The files' format (`json`, `jsonl`, `csv`, `text`) when their names do not say it.
    #[arg(long, value_parser = model::parse_setting::<data::CorpusFormat>)]
    pub format: Option<data::CorpusFormat>,
}

/// `inference plot` flags.
#[derive(Debug, Clone, Args)]
pub struct PlotArgs {
    /// The run directory (the one holding metrics.csv).
    #[arg(long)]
    pub run: PathBuf,
}

/// `inference trace` flags.
#[derive(Debug, Clone, Args)]
pub struct TraceArgs {
    #[command(flatten)]
    pub source: Source,
    /// How many units of each vector to print (the norm covers them all).
    #[arg(long, default_value_t = 4)]
    pub units: usize,
}

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

/// `inference serve` flags.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelSource,
    /// Address and port to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Most generations running at once; more requests get 429.
    #[arg(long, default_value_t = server::Limits::default().max_concurrent)]
    pub max_concurrent: usize,
    /// Most tokens one completion may ask for.
    #[arg(long, default_value_t = server::Limits::default().max_tokens)]
    pub max_tokens_cap: usize,
    /// No log line per request.
    #[arg(long)]
    pub quiet: bool,
}

impl ServeArgs {
    /// The request log these flags ask for.
    pub fn request_log(&self) -> server::RequestLog {
        match self.quiet {
            true => server::RequestLog::Off,
            false => server::RequestLog::Stderr,
        }
    }
}

/// `inference generate` flags.
#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub source: Source,
    /// Sampling temperature (> 0).
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// Most new tokens to generate (generation also stops at the stop token).
    #[arg(long, default_value_t = defaults::MAX_TOKENS)]
    pub max_tokens: usize,
    /// Always take the most likely next token.
    #[arg(long)]
    pub greedy: bool,
    /// Sample only among the K most likely tokens.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Sample only among the most likely tokens whose probabilities together reach P (0 < P <= 1).
    #[arg(long, value_name = "P")]
    pub top_p: Option<f32>,
    /// Make tokens already generated less likely: their positive logits are divided by this,
    /// negative ones multiplied (1 = off; 1.1-1.3 is typical).
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Stop where this text appears in the generated text (which then ends before it); repeat
    /// the flag for several.
    #[arg(long, value_name = "TEXT")]
    pub stop: Vec<String>,
    /// Seed for sampling.
    #[arg(long, default_value_t = defaults::SEED)]
    pub seed: u64,
}

/// `inference probs` flags.
#[derive(Debug, Clone, Args)]
pub struct ProbsArgs {
    #[command(flatten)]
    pub source: Source,
    /// Comma-separated temperatures, each > 0.
    #[arg(long, value_delimiter = ',', default_value = "1.0,0.2")]
    pub temperatures: Vec<f32>,
    /// How many words to list per temperature.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
}

/// Runs a subcommand and returns what it prints on stdout (warnings go to stderr).
pub fn run(cli: &Cli) -> Result<String> {
    match &cli.command {
        Command::Generate(args) => generate(args),
        Command::Probs(args) => probs(args),
        Command::Trace(args) => trace(args),
        Command::Plot(args) => Ok(format!("{}\n", curves::plot_run(&args.run)?.display())),
        Command::Score(args) => score(args),
        Command::Serve(_) => bail!("`serve` runs from the binary's main, which owns the runtime"),
    }
}

/// The model `args` names, loaded for the server, and the server's limits.
pub fn served_model(args: &ServeArgs) -> Result<(server::ServedModel, server::Limits)> {
    let loaded = Loaded::open(&args.model)?;
    let dir = &loaded.ckpt.dir;
    let run_dir = run_dir_of(dir);
    let name = run_dir
        .as_deref()
        .unwrap_or(dir)
        .file_name()
        .map_or("model".into(), |n| n.to_string_lossy().into_owned());
    let limits = server::Limits {
        max_concurrent: args.max_concurrent.max(1),
        max_tokens: args.max_tokens_cap,
        ..server::Limits::default()
    };
    let prompts = run_dir.as_deref().map(run_prompts).unwrap_or_default();
    let decoder = PreparedDecoder::new(&loaded.model, &loaded.device);
    let served = server::ServedModel {
        name,
        prompts,
        decoder,
        model: loaded.model,
        vocab: loaded.vocab,
        meta: loaded.ckpt.meta.clone(),
        device: loaded.device,
        run_dir,
    };
    Ok((served, limits))
}

/// Loads the model `args` names and serves it on `args.addr` from a thread of its own for as
/// long as the process runs; returns the address it listens on (port 0 picks a free one).
pub fn serve_in_background(args: &ServeArgs) -> Result<SocketAddr> {
    let (served, limits) = served_model(args)?;
    let log = args.request_log();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(&args.addr))
        .with_context(|| format!("--addr {}: cannot listen", args.addr))?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        let router = server::router(served, limits, log);
        runtime.block_on(server::serve(listener, router, std::future::pending()))
    });
    Ok(addr)
}

/// The run directory of the checkpoint `dir`: checkpoints live in RUN/checkpoints/NAME.
fn run_dir_of(dir: &Path) -> Option<PathBuf> {
    dir.parent()
        .filter(|p| p.file_name().is_some_and(|n| n == "checkpoints"))
        .and_then(|p| p.parent())
        .map(PathBuf::from)
}

/// Per file and in total: tokens, mean loss per counted token, perplexity and the share of
/// tokens outside the vocabulary, each file read with the run's corpus and data settings.
fn score(args: &ScoreArgs) -> Result<String> {
    let loaded = Loaded::open(&args.model)?;
    let run_dir = run_dir_of(&loaded.ckpt.dir).ok_or_else(|| {
        anyhow!(
            "{}: score needs a checkpoint inside a run directory, whose config.toml says how its text was read",
            loaded.ckpt.dir.display()
        )
    })?;
    let (config, _) = pipeline::Config::load(&run_dir.join("config.toml"))?;
    let model = &loaded.model;
    let mut out = String::from("file\ttokens\tloss\tperplexity\tunknown\n");
    let (mut loss_total, mut counted_total, mut tokens_total, mut unknown_total) = (0.0, 0.0, 0, 0);
    let mut line = |name: &str, loss: f64, counted: f64, tokens: usize, unknown: usize| {
        let mean = loss / counted.max(1.0);
        let share = 100.0 * unknown as f64 / tokens.max(1) as f64;
        let _ = writeln!(
            out,
            "{name}\t{tokens}\t{mean:.4}\t{:.2}\t{share:.2}%",
            mean.exp()
        );
    };
    for file in &args.files {
        let mut settings = config.clone();
        let format = args.format.unwrap_or_else(|| config.corpus.format_of(file));
        settings.corpus.path = file.clone();
        settings.corpus.format = format;
        settings.corpus.max_records = None;
        if format == data::CorpusFormat::Text {
            // Plain text is already formatted: one record a line, as the model reads it.
            settings.corpus.template = None;
        }
        let (data, tokens, unknown) = pipeline::prepare::encode_with(&settings, &loaded.vocab)
            .with_context(|| format!("{}: cannot score", file.display()))?;
        let (loss, counted) = pipeline::evaluation::loss_sums(model, &data, &loaded.device);
        line(&file.display().to_string(), loss, counted, tokens, unknown);
        (loss_total, counted_total) = (loss_total + loss, counted_total + counted);
        (tokens_total, unknown_total) = (tokens_total + tokens, unknown_total + unknown);
    }
    if args.files.len() > 1 {
        line(
            "total",
            loss_total,
            counted_total,
            tokens_total,
            unknown_total,
        );
    }
    Ok(out)
}

/// The `[generate] prompts` of the run's `config.toml`, or none when it cannot be read.
fn run_prompts(run_dir: &Path) -> Vec<String> {
    pipeline::Config::load(&run_dir.join("config.toml"))
        .map(|(config, _)| config.generate.prompts)
        .unwrap_or_default()
}

/// A checkpoint loaded for one subcommand.
struct Loaded {
    model: model::LanguageModel,
    vocab: data::Vocab,
    ckpt: Checkpoint,
    device: Device,
}

impl Loaded {
    /// Opens the checkpoint `source` names and loads its model and vocabulary.
    fn open(source: &ModelSource) -> Result<Self> {
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
    fn generator(&self, prompt: &str, seed: u64) -> Result<(Generator<'_>, Vec<u32>)> {
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

fn generate(args: &GenerateArgs) -> Result<String> {
    let sampling = Sampling {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        repetition_penalty: args.repetition_penalty,
        greedy: args.greedy,
    };
    sampling
        .check()
        .map_err(|e| anyhow!("--{}: {e}", e.setting().replace('_', "-")))?;
    let loaded = Loaded::open(&args.source.model)?;
    if let Some(k) = args.top_k.filter(|&k| k > loaded.vocab.size()) {
        bail!(
            "--top-k {k} is above the model's vocabulary of {} entries; leave it out to sample from all of them",
            loaded.vocab.size()
        );
    }
    let (mut generator, prompt) = loaded.generator(&args.source.prompt, args.seed)?;
    let start = Instant::now();
    let done = generator.generate(&prompt, args.max_tokens, &sampling, &args.stop);
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{}: {} tokens in {secs:.2}s ({:.0} tokens/s)",
        loaded.ckpt.dir.display(),
        done.ids.len(),
        done.ids.len() as f64 / secs.max(1e-9)
    );
    let prompt = generator.decode(&prompt);
    Ok(match done.text.is_empty() {
        true => format!("{prompt}\n"),
        false => format!("{prompt}{}{}\n", generator.separator(), done.text),
    })
}

fn probs(args: &ProbsArgs) -> Result<String> {
    if args.temperatures.is_empty() {
        bail!("--temperatures needs at least one value");
    }
    for &t in &args.temperatures {
        check_temperature(t).context("--temperatures")?;
    }
    let loaded = Loaded::open(&args.source.model)?;
    let (generator, prompt) = loaded.generator(&args.source.prompt, 0)?;
    let logits = generator.next_token_logits(&prompt);
    let mut out = String::new();
    for &t in &args.temperatures {
        writeln!(
            out,
            "temperature = {t}\nPROMPT: {}",
            generator.decode(&prompt)
        )?;
        for (id, p) in top(&probabilities(&logits, t), args.top) {
            let word = if id == 0 {
                "<stop>"
            } else {
                loaded.vocab.token(id)
            };
            writeln!(out, "{:<16}{:.2}%", format!("{word}:"), p * 100.0)?;
        }
        out.push('\n');
    }
    Ok(out)
}

fn trace(args: &TraceArgs) -> Result<String> {
    let loaded = Loaded::open(&args.source.model)?;
    let (_, ids) = loaded.generator(&args.source.prompt, 0)?;
    let steps = model::generation::trace::trace(&loaded.model, &ids)
        .map_err(|e| anyhow::anyhow!("{}: {e}", loaded.ckpt.dir.display()))?;
    let mut out = String::new();
    for (t, (id, step)) in ids.iter().zip(steps).enumerate() {
        writeln!(out, "step {} token {:?}", t + 1, loaded.vocab.token(*id))?;
        for (name, v) in [
            ("f", &step.f),
            ("i", &step.i),
            ("c~", &step.candidate),
            ("c", &step.c),
            ("o", &step.o),
            ("h", &step.h),
        ] {
            let shown: Vec<String> = v
                .iter()
                .take(args.units)
                .map(|x| format!("{x:+.4}"))
                .collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            writeln!(
                out,
                "  {name:<3}[{}{}]  norm {norm:.4}",
                shown.join(", "),
                if v.len() > args.units { ", ..." } else { "" }
            )?;
        }
    }
    Ok(out)
}
