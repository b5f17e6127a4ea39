//! `metrics.csv`: one row per epoch, rewritten atomically so a crash never truncates it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

const HEADER: &str = "epoch,step,loss,perplexity,val_loss,val_perplexity,tokens_per_s,seconds";

/// One epoch's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Optimizer steps taken so far.
    pub step: u64,
    /// Mean training loss over the epoch (nats per counted token).
    pub loss: f64,
    /// Mean loss on the held-out data, when the config holds some out.
    pub val_loss: Option<f64>,
    /// Positions processed per second (batch x sequence length per step).
    pub tokens_per_s: f64,
    /// Wall time of the epoch's training steps.
    pub seconds: f64,
}

/// The metrics file of a run.
pub struct MetricsLog {
    path: PathBuf,
    rows: Vec<String>,
}

impl MetricsLog {
    /// Opens `metrics.csv` in `run_dir`, keeping the rows of epochs up to `keep_epochs`
    /// (those of the checkpoint a run resumes from).
    pub fn open(run_dir: &Path, keep_epochs: usize) -> Result<Self> {
        let path = run_dir.join("metrics.csv");
        let rows = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .lines()
                .skip(1)
                .filter(|l| {
                    l.split(',')
                        .next()
                        .and_then(|e| e.parse::<usize>().ok())
                        .is_some_and(|e| e <= keep_epochs)
                })
                .map(str::to_owned)
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            // Starting over would discard the earlier epochs' rows.
            Err(e) => {
                return Err(e).with_context(|| format!("{}: cannot read", path.display()));
            }
        };
        Ok(Self { path, rows })
    }

    /// The validation loss of every kept row that has one, with its epoch.
    pub fn val_losses(&self) -> Vec<(usize, f64)> {
        self.rows
            .iter()
            .filter_map(|row| {
                let fields: Vec<&str> = row.split(',').collect();
                Some((fields.first()?.parse().ok()?, fields.get(4)?.parse().ok()?))
            })
            .collect()
    }

    /// Appends a row and rewrites the file.
    pub fn push(&mut self, m: EpochMetrics) -> Result<()> {
        let (val_loss, val_perplexity) = m.val_loss.map_or((String::new(), String::new()), |v| {
            (format!("{v:.6}"), format!("{:.4}", v.exp()))
        });
        self.rows.push(format!(
            "{},{},{:.6},{:.4},{val_loss},{val_perplexity},{:.1},{:.2}",
            m.epoch,
            m.step,
            m.loss,
            m.loss.exp(),
            m.tokens_per_s,
            m.seconds
        ));
        let mut text = format!("{HEADER}\n");
        for r in &self.rows {
            text.push_str(r);
            text.push('\n');
        }
        data::files::write_atomic(&self.path, text.as_bytes()).with_context(|| "writing metrics")
    }
}
