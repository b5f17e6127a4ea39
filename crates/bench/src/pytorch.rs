//! The PyTorch side: a Python with torch (installed into target/bench-venv on first use, never
//! in CI) running `crates/bench/pytorch/word_lm.py` on the same batches.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::ours::{Measured, ToTarget, read_report};
use crate::shared_data::SharedData;

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

/// Runs the reference script on `batches` for `steps` timed steps on `device` (`cpu`, `cuda`),
/// with the model compiled by `torch.compile` when `compile`.
pub fn spawn(
    python: &Path,
    batches: &SharedData,
    steps: usize,
    device: &str,
    compile: bool,
) -> Result<Measured> {
    let mut cmd = Command::new(python);
    cmd.arg(SCRIPT).arg("--batches").arg(&batches.meta).args([
        "--steps",
        &steps.to_string(),
        "--device",
        device,
    ]);
    if compile {
        cmd.arg("--compile");
    }
    read_report(cmd, "the PyTorch reference")
}

/// Runs the reference script's passage-memorising task to its target.
pub fn memorise(python: &Path) -> Result<ToTarget> {
    let mut cmd = Command::new(python);
    cmd.arg(SCRIPT)
        .args(["--memorise", "datasets/ai-applications/passage.txt"]);
    read_report(cmd, "the PyTorch reference")
}
