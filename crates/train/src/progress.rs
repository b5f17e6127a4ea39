//! Per-epoch progress: a bar with loss, tokens/s and ETA on a terminal, plain lines every few
//! seconds otherwise (CI logs, pipes).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often plain-line progress is printed.
const LINE_EVERY: Duration = Duration::from_secs(15);

/// Progress of one epoch.
pub struct EpochProgress {
    bar: Option<ProgressBar>,
    epoch: usize,
    epochs: usize,
    total: usize,
    started: Instant,
    last_line: Instant,
}

impl EpochProgress {
    /// Starts reporting epoch `epoch` (1-based) of `epochs`, with `total` batches.
    pub fn start(epoch: usize, epochs: usize, total: usize) -> Self {
        let bar = std::io::stdout().is_terminal().then(|| {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "epoch {prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}",
                )
                .expect("static template")
                .progress_chars("=> "),
            );
            bar.set_prefix(format!("{epoch}/{epochs}"));
            bar
        });
        let now = Instant::now();
        Self {
            bar,
            epoch,
            epochs,
            total,
            started: now,
            last_line: now,
        }
    }

    /// Records that `done` batches are finished with running mean loss `loss`.
    pub fn update(&mut self, done: usize, loss: f64, tokens_per_s: f64) {
        let msg = format!("loss {loss:.4} | {tokens_per_s:.0} tok/s");
        match &self.bar {
            Some(bar) => {
                bar.set_position(done as u64);
                bar.set_message(msg);
            }
            None if self.last_line.elapsed() >= LINE_EVERY || done == 1 => {
                self.last_line = Instant::now();
                let elapsed = self.started.elapsed().as_secs_f64();
                let eta = elapsed / done as f64 * (self.total - done) as f64;
                println!(
                    "epoch {}/{} batch {done}/{} {msg} | ETA {eta:.0}s",
                    self.epoch, self.epochs, self.total
                );
            }
            None => {}
        }
    }

    /// Removes the bar (the caller prints the epoch summary).
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
