//! The `inference` binary's library, the command line and one file per command: `generate`
//! continues a prompt, `probs` prints the most likely next words at several temperatures,
//! `trace` prints an LSTM cell's gates, `score` a text's loss, `serve` puts the model behind the
//! HTTP server, all from a checkpoint (`loaded.rs`); `plot` draws a run's loss curves.

mod generate;
mod loaded;
mod probs;
mod score;
mod serve;
mod trace;

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};

pub use generate::GenerateArgs;
pub use loaded::{ModelSource, Source};
pub use probs::ProbsArgs;
pub use score::ScoreArgs;
pub use serve::{ServeArgs, serve_in_background, served_model};
pub use trace::TraceArgs;

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

/// `inference plot` flags.
#[derive(Debug, Clone, Args)]
pub struct PlotArgs {
    /// The run directory (the one holding metrics.csv).
    #[arg(long)]
    pub run: PathBuf,
}

/// Runs a subcommand and returns what it prints on stdout (warnings go to stderr).
pub fn run(cli: &Cli) -> Result<String> {
    match &cli.command {
        Command::Generate(args) => generate::generate(args),
        Command::Probs(args) => probs::probs(args),
        Command::Trace(args) => trace::trace(args),
        Command::Plot(args) => Ok(format!("{}\n", curves::plot_run(&args.run)?.display())),
        Command::Score(args) => score::score(args),
        Command::Serve(_) => bail!("`serve` runs from the binary's main, which owns the runtime"),
    }
}
