//! The PyTorch side: a Python with torch (installed into target/bench-venv on first use, never
//! in CI) running `crates/bench/pytorch/word_lm.py` on the same batches.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::ours::{Measured, ToTarget, read_report};
use crate::shared_data::SharedData;
use crate::work::Work;

const SCRIPT: &str = "crates/bench/pytorch/word_lm.py";
const VENV: &str = "target/bench-venv";

/// The Python to run: `--python`, `$BENCH_PYTHON`, or the bench's own virtual environment,
/// created and given torch and numpy from PyPI the first time.
pub fn python(chosen: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = chosen
        .map(Path::to_owned)
        .or_else(|| std::env::var_os("BENCH_PYTHON").map(PathBuf::from))
    {
        return Ok(p);
    }
    let python = Path::new(VENV).join("bin/python");
    if has_torch(&python) {
        return Ok(python);
    }
    eprintln!(
        "installing PyTorch into {VENV} (PyPI's wheel is a 2.8 GB CUDA build; it runs on the CPU)"
    );
    run(
        Command::new("python3").args(["-m", "venv", VENV]),
        "python3 -m venv",
    )?;
    run(
        Command::new(&python).args(["-m", "pip", "install", "--quiet", "torch", "numpy"]),
        "pip install torch numpy",
    )?;
    Ok(python)
}

fn has_torch(python: &Path) -> bool {
    python.is_file()
        && Command::new(python)
            .args(["-c", "import torch, numpy"])
            .status()
            .is_ok_and(|s| s.success())
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// How the reference trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The model as PyTorch's examples write it: every position through the output layer.
    Plain,
    /// The same model compiled by `torch.compile`.
    Compiled,
    /// Only the rows whose loss weight is not 0 through the output layer and the loss (the
    /// padding rows skipped, as ours does).
    PaddingSkipped,
}

/// Runs the reference script on `batches` for `work` on `device` (`cpu`, `cuda`).
pub fn spawn(
    python: &Path,
    batches: &SharedData,
    work: &Work,
    device: &str,
    variant: Variant,
) -> Result<Measured> {
    let mut cmd = work.command(python);
    cmd.arg(SCRIPT).arg("--batches").arg(&batches.meta).args([
        "--steps",
        &work.steps.to_string(),
        "--gen-tokens",
        &work.gen_tokens.to_string(),
        "--threads",
        &work.threads.to_string(),
        "--device",
        device,
    ]);
    match variant {
        Variant::Plain => {}
        Variant::Compiled => {
            cmd.arg("--compile");
        }
        Variant::PaddingSkipped => {
            cmd.arg("--skip-padding");
        }
    }
    read_report(cmd, "the PyTorch reference")
}

/// Runs the reference script's passage-memorising task to its target with `work`'s threads.
pub fn memorise(python: &Path, work: &Work) -> Result<ToTarget> {
    let mut cmd = work.command(python);
    cmd.arg(SCRIPT)
        .args(["--memorise", "datasets/ai-applications/passage.txt"])
        .args(["--threads", &work.threads.to_string()]);
    read_report(cmd, "the PyTorch reference")
}
