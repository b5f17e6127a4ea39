//! How close a step is to this machine's limit: the arithmetic of one training step of the
//! bench's model, the matrix-product peak measured here in the same run (a 1024^3 product on
//! every core, best of five), and the time that arithmetic needs at that peak, with every
//! position computed and with the padding positions (loss weight 0) skipped.

use std::fmt::Write;
use std::time::Instant;

use anyhow::{Context, Result};
use kernels::matmul::{Operand, matmul, select};
use model::Matmul;

use crate::ours::Measured;
use crate::report::{median_step_ms, systems};
use crate::shared_data::SharedData;

/// The arithmetic of a step and the peak it is measured against.
pub struct Limit {
    /// Floating-point operations of one step with every position computed, in GFLOP.
    step_gflop: f64,
    /// Share of the positions whose loss counts (the rest are padding).
    counted: f64,
    /// The fastest 1024^3 product measured here, in GFLOP/s, and by which library.
    peak_gflops: f64,
    peak_by: &'static str,
}

impl Limit {
    /// Counts the step's arithmetic for `batches` and measures the product peak.
    pub fn measure(batches: &SharedData) -> Result<Self> {
        let [n, e, h, v] = [
            batches.batch_size * batches.seq_len,
            batches.embedding_dim,
            batches.hidden_size,
            batches.vocab_size,
        ]
        .map(|x| x as f64);
        // Forward, then two products backward for each forward one: the LSTM's input and
        // recurrent products (4 gates) and the output layer's.
        let step_gflop = 6.0 * n * (4.0 * h * (e + h) + h * v) / 1e9;
        let raw = std::fs::read(&batches.file)
            .with_context(|| format!("{}: cannot read", batches.file.display()))?;
        let (mut counted, mut all) = (0usize, 0usize);
        for i in 0..batches.batches {
            let batch = batches.batch(&raw, i);
            counted += batch.weights.iter().filter(|&&w| w != 0.0).count();
            all += batch.weights.len();
        }
        let mut best = (0.0, "gemm");
        for choice in [Matmul::Builtin, Matmul::Openblas] {
            if select(choice).is_ok() {
                let gflops = product_gflops();
                if gflops > best.0 {
                    best = (gflops, kernels::matmul::implementation());
                }
            }
        }
        Ok(Self {
            step_gflop,
            counted: counted as f64 / all.max(1) as f64,
            peak_gflops: best.0,
            peak_by: best.1,
        })
    }

    /// Lines for the table: the arithmetic, the peak, the limit, and each of our rows' speed
    /// against it.
    pub fn report(&self, runs: &[Measured]) -> String {
        let limit_ms = self.step_gflop / self.peak_gflops * 1000.0;
        let skipped_ms = limit_ms * self.counted;
        let mut out = format!(
            "arithmetic: {:.1} GFLOP per step, {:.0}% of the positions counted (the rest padding)\n\
             matrix-product peak here: {:.0} GFLOP/s ({} on every core, 1024^3, best of 5)\n\
             limit at that peak: {limit_ms:.0} ms/step, {skipped_ms:.0} ms/step with the padding skipped\n",
            self.step_gflop,
            self.counted * 100.0,
            self.peak_gflops,
            self.peak_by,
        );
        let ours = systems(runs)
            .into_iter()
            .filter(|s| s.starts_with("ours (flex"));
        for system in ours {
            let ms = median_step_ms(runs, system);
            let _ = writeln!(
                out,
                "{system}: {:.0} GFLOP/s of the full step's arithmetic, {:.2}x the limit, {:.2}x the limit with the padding skipped",
                self.step_gflop / ms * 1000.0,
                ms / limit_ms,
                ms / skipped_ms,
            );
        }
        out
    }
}

/// GFLOP/s of the best of five 1024^3 products by the library selected now.
fn product_gflops() -> f64 {
    const N: usize = 1024;
    let a: Vec<f32> = (0..N * N).map(|i| (i % 17) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..N * N).map(|i| (i % 13) as f32 * 0.1).collect();
    let mut c = vec![0.0f32; N * N];
    let mut best = f64::INFINITY;
    for _ in 0..6 {
        let start = Instant::now();
        matmul(
            &mut c,
            [N, N, N],
            Operand::rows(&a, N),
            Operand::rows(&b, N),
            false,
        );
        best = best.min(start.elapsed().as_secs_f64());
    }
    2.0 * (N * N * N) as f64 / best / 1e9
}
