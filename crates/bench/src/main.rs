//! `cargo run --release -p bench -- compare [--quick]`: our training step and generation
//! against the PyTorch reference on the same batches, interleaved in one run, as a table.
//! `bench serve`: a served model under concurrent streaming clients. `bench scale`: memory
//! against corpus size.

mod load;
mod ours;
mod peak;
mod pytorch;
mod record;
mod report;
mod scale;
mod shared_data;
mod work;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use ours::Row;
use pytorch::Variant;
use work::{Work, machine_threads};

/// Speed figures for the LSTM language model.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Our step and PyTorch's on the textbook model, interleaved, medians in a table.
    Compare(CompareArgs),
    /// The NumPy passage exercise (memorise a passage), ours and PyTorch's: steps and seconds to
    /// the loss target.
    Memorise(MemoriseArgs),
    /// Concurrent clients streaming completions from a served model: requests and tokens per
    /// second, latency to the first token and to the last, errors.
    Serve(load::LoadArgs),
    /// Memory against corpus size: builds corpora of about 100 MB and 1 GB from the shipped
    /// recipes, prepares each and trains a few steps on each, with the peak resident set.
    Scale(scale::ScaleArgs),
    /// (internal) One measuring process of ours, run by `compare`; prints one JSON line.
    #[command(hide = true)]
    Ours(ours::OursArgs),
    /// (internal) One phase of `scale` in its own process; prints one JSON line.
    #[command(hide = true)]
    ScalePhase(scale::PhaseArgs),
}

#[derive(clap::Args)]
struct CompareArgs {
    /// Fewer rounds and steps: finishes in a few minutes.
    #[arg(long)]
    quick: bool,
    /// Leave out the stock-Burn row (Burn's own LSTM, Linear and cross-entropy).
    #[arg(long)]
    no_stock: bool,
    /// Leave out PyTorch (on a machine without it).
    #[arg(long)]
    no_pytorch: bool,
    /// Add a row for PyTorch with the model compiled by `torch.compile` (what a PyTorch user
    /// tries next; compiling takes a minute or two on the first step, which is not timed).
    #[arg(long)]
    pytorch_compile: bool,
    /// Add a row for our step on wgpu's preferred adapter (build with `--features wgpu`).
    #[arg(long)]
    wgpu: bool,
    /// Where PyTorch runs: `cpu`, or `cuda` for the GPU figures beside `--wgpu`.
    #[arg(long, default_value = "cpu")]
    pytorch_device: String,
    /// Rounds of (ours, PyTorch); each round starts fresh processes.
    #[arg(long)]
    rounds: Option<usize>,
    /// Timed training steps per process (after one warm-up step).
    #[arg(long)]
    steps: Option<usize>,
    /// Tokens each system generates for each generation figure (after a warm-up generation).
    #[arg(long, default_value_t = 2000)]
    gen_tokens: usize,
    /// CPU threads for every system (each process runs on the first N CPUs with N pool
    /// threads); default: every CPU of this machine.
    #[arg(long)]
    threads: Option<usize>,
    /// A Python with torch and numpy; default: `$BENCH_PYTHON`, else a virtual environment in
    /// target/bench-venv, created on first use (PyPI's torch wheel is a 2.8 GB download).
    #[arg(long)]
    python: Option<PathBuf>,
}

#[derive(clap::Args)]
struct MemoriseArgs {
    /// As for `compare`.
    #[arg(long)]
    python: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Compare(args) => compare(args),
        Command::Memorise(args) => memorise(args),
        Command::Serve(args) => load::run(args),
        Command::Scale(args) => scale::run(args),
        Command::Ours(args) => ours::run(args),
        Command::ScalePhase(args) => scale::phase(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn compare(args: &CompareArgs) -> Result<()> {
    let (rounds, steps) = match args.quick {
        true => (args.rounds.unwrap_or(2), args.steps.unwrap_or(4)),
        false => (args.rounds.unwrap_or(4), args.steps.unwrap_or(8)),
    };
    let work = Work {
        steps,
        gen_tokens: args.gen_tokens,
        threads: args.threads.unwrap_or_else(machine_threads),
    };
    let python = match args.no_pytorch {
        true => None,
        false => Some(pytorch::python(args.python.as_deref())?),
    };
    let batches = shared_data::prepare(steps + 1)?;
    eprintln!("measuring this machine's matrix-product peak");
    let limit = peak::Limit::measure(&batches, work.threads)?;
    let mut runs = Vec::new();
    for round in 1..=rounds {
        eprintln!("round {round}/{rounds}: ours");
        runs.push(ours::spawn(&batches, &work, Row::Ours)?);
        if let Some(python) = &python {
            let mut variants = vec![Variant::Plain, Variant::PaddingSkipped];
            if args.pytorch_compile {
                variants.push(Variant::Compiled);
            }
            for variant in variants {
                eprintln!("round {round}/{rounds}: PyTorch ({variant:?})");
                runs.push(pytorch::spawn(
                    python,
                    &batches,
                    &work,
                    &args.pytorch_device,
                    variant,
                )?);
            }
        }
        if !args.no_stock {
            eprintln!("round {round}/{rounds}: stock Burn");
            runs.push(ours::spawn(&batches, &work, Row::Stock)?);
        }
        if args.wgpu {
            eprintln!("round {round}/{rounds}: ours on wgpu");
            runs.push(ours::spawn(&batches, &work, Row::Wgpu)?);
        }
    }
    let body = report::table(&batches, &work, &runs) + &limit.report(&runs);
    let results = serde_json::json!({"work": work, "limit": limit.json(), "runs": runs});
    record::publish("compare", &body, &results)
}

fn memorise(args: &MemoriseArgs) -> Result<()> {
    let python = pytorch::python(args.python.as_deref())?;
    eprintln!("ours: configs/ai-applications.toml");
    let ours = ours::memorise()?;
    eprintln!("PyTorch: the same model, data and target");
    // Ours runs in this process, on every CPU; PyTorch gets as many threads.
    let work = Work {
        steps: 0,
        gen_tokens: 0,
        threads: machine_threads(),
    };
    let runs = [ours, pytorch::memorise(&python, &work)?];
    record::publish("memorise", &report::memorise_table(&runs), &runs)
}
