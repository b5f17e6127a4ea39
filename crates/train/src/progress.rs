//! Training progress: a bar per epoch with loss, tokens/s and ETA on a terminal, plain lines
//! every few seconds otherwise (CI logs, pipes).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often plain-line progress is printed.
const LINE_EVERY: Duration = Duration::from_secs(15);

/// Progress of a run, epoch by epoch.
pub struct Progress {
    bar: Option<ProgressBar>,
    terminal: bool,
    epoch: usize,
    epochs: usize,
    total: usize,
    started: Instant,
    last_line: Option<Instant>,
}

impl Progress {
    /// A run of `epochs` epochs of `total` batches each.
    pub fn new(epochs: usize, total: usize) -> Self {
        let terminal = std::io::stdout().is_terminal();
        Self {
            bar: None,
            terminal,
            epoch: 0,
            epochs,
            total,
            started: Instant::now(),
            last_line: None,
        }
    }

    /// Starts reporting epoch `epoch` (1-based).
    pub fn begin_epoch(&mut self, epoch: usize) {
        self.epoch = epoch;
        self.started = Instant::now();
        if self.terminal {
            let bar = ProgressBar::new(self.total as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "epoch {prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}",
                )
                .expect("static template")
                .progress_chars("=> "),
            );
            bar.set_prefix(format!("{epoch}/{}", self.epochs));
            self.bar = Some(bar);
        }
    }

    /// Records that `done` batches of the epoch are finished, with running mean loss `loss`.
    pub fn update(&mut self, done: usize, loss: f64, tokens_per_s: f64) {
        let msg = format!("loss {loss:.4} | {tokens_per_s:.0} tok/s");
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
            bar.set_message(msg);
        } else if self.last_line.is_none_or(|t| t.elapsed() >= LINE_EVERY) {
            self.last_line = Some(Instant::now());
            let elapsed = self.started.elapsed().as_secs_f64();
            let eta = elapsed / done as f64 * (self.total - done) as f64;
            println!(
                "epoch {}/{} batch {done}/{} {msg} | ETA {eta:.0}s",
                self.epoch, self.epochs, self.total
            );
        }
    }

    /// Removes the epoch's bar (the caller prints the epoch summary).
    pub fn end_epoch(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
