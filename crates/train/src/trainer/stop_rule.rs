//! The stop rules: `train.stop_at_loss` on the passage exercise's smoothed window loss or on
//! an epoch's mean.

use std::time::Instant;

use pipeline::config::{Config, StopLoss};

/// Watches the loss for `train.stop_at_loss`.
pub(super) struct StopRule {
    target: Option<f64>,
    kind: StopLoss,
    pub(super) smooth: f64,
}

impl StopRule {
    pub(super) fn new(config: &Config, vocab_size: usize) -> Self {
        let settings = &config.train;
        // The NumPy passage exercise starts its smoothed loss at a uniform guess summed over
        // a window.
        let smooth = (vocab_size as f64).ln() * config.data.seq_len as f64;
        Self {
            target: settings.stop_at_loss,
            kind: settings.stop_loss,
            smooth,
        }
    }

    /// Folds in one step's loss summed over its window; true once the target is reached.
    pub(super) fn after_step(&mut self, window_loss: f64, step: u64, started: Instant) -> bool {
        self.smooth = 0.999 * self.smooth + 0.001 * window_loss;
        self.kind == StopLoss::SmoothedWindowSum && self.reached(self.smooth, step, started)
    }

    /// Checks an epoch's mean loss; true once the target is reached.
    pub(super) fn after_epoch(&self, mean_loss: f64, step: u64, started: Instant) -> bool {
        self.kind == StopLoss::EpochMean && self.reached(mean_loss, step, started)
    }

    pub(super) fn reached(&self, loss: f64, step: u64, started: Instant) -> bool {
        let hit = self.target.is_some_and(|target| loss <= target);
        if hit {
            println!(
                "reached the target loss: {:?} loss {loss:.4} at step {step} after {:.1}s",
                self.kind,
                started.elapsed().as_secs_f64()
            );
        }
        hit
    }
}
