//! How close a step is to this machine's limit: the arithmetic of one training step of the
//! bench's model, the matrix-product peak measured here in the same run (a 1024^3 product on
//! the measured threads, best of five after one warm-up), and the time that arithmetic needs at
//! that peak. The headline is the work ours does: the LSTM over every position, the output
//! layer over the counted rows only (padding rows are skipped). The full step's arithmetic,
//! every position through the output layer as PyTorch's plain step computes it, is beside it.

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
    /// Floating-point operations of the work ours does: the output layer's rows of padding
    /// positions skipped, in GFLOP.
    work_gflop: f64,
    /// Share of the positions whose loss counts (the rest are padding).
    counted: f64,
    /// The fastest 1024^3 product measured here by the `gemm` crate, in GFLOP/s, and on how
    /// many threads.
    peak_gflops: f64,
    threads: usize,
}

impl Limit {
    /// Counts the step's arithmetic for `batches` and measures the product peak on `threads`
    /// threads.
    pub fn measure(batches: &SharedData, threads: usize) -> Result<Self> {
        let [n, e, h, v] = [
            batches.batch_size * batches.seq_len,
            batches.embedding_dim,
            batches.hidden_size,
            batches.vocab_size,
        ]
        .map(|x| x as f64);
        // Forward, then two products backward for each forward one: the LSTM's input and
        // recurrent products (4 gates) over every position, and the output layer's.
        let lstm_gflop = 6.0 * n * 4.0 * h * (e + h) / 1e9;
        let output_gflop = 6.0 * n * h * v / 1e9;
        let raw = std::fs::read(&batches.file)
            .with_context(|| format!("{}: cannot read", batches.file.display()))?;
        let (mut counted, mut all) = (0usize, 0usize);
        for i in 0..batches.batches {
            let batch = batches.batch(&raw, i);
            counted += batch.weights.iter().filter(|&&w| w != 0.0).count();
            all += batch.weights.len();
        }
        let counted = counted as f64 / all.max(1) as f64;
        // Ours does its products with the `gemm` crate (the built-in choice); measured on a
        // pool of the threads the systems get.
        select(Matmul::Builtin)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .context("starting the threads for the peak")?;
        let peak_gflops = pool.install(product_gflops);
        Ok(Self {
            step_gflop: lstm_gflop + output_gflop,
            work_gflop: lstm_gflop + output_gflop * counted,
            counted,
            peak_gflops,
            threads,
        })
    }

    /// Lines for the table: the arithmetic, the peak, the limits, and each of our rows' speed
    /// against them.
    pub fn report(&self, runs: &[Measured]) -> String {
        let (work_ms, full_ms) = (
            self.limit_ms(self.work_gflop),
            self.limit_ms(self.step_gflop),
        );
        let mut out = format!(
            "arithmetic: {:.1} GFLOP of work done per step (the output layer over the {:.0}% of positions counted, the rest padding), {:.1} GFLOP with every position\n\
             matrix-product peak here: {:.0} GFLOP/s (the gemm crate on {} threads, 1024^3, best of 5 after a warm-up)\n\
             limit at that peak: {work_ms:.0} ms/step for the work done, {full_ms:.0} ms/step for every position\n",
            self.work_gflop,
            self.counted * 100.0,
            self.step_gflop,
            self.peak_gflops,
            self.threads,
        );
        let ours = systems(runs)
            .into_iter()
            .filter(|s| s.starts_with("ours (flex"));
        for system in ours {
            let ms = median_step_ms(runs, system);
            let _ = writeln!(
                out,
                "{system}: {:.2}x the limit of the work done ({:.0} GFLOP/s); the full step's arithmetic would be {:.2}x",
                ms / work_ms,
                self.work_gflop / ms * 1000.0,
                ms / full_ms,
            );
        }
        out
    }

    /// The figures as JSON: the arithmetic, the peak and the limits.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "work_gflop": self.work_gflop,
            "step_gflop": self.step_gflop,
            "counted": self.counted,
            "peak_gflops": self.peak_gflops,
            "peak_threads": self.threads,
            "work_limit_ms": self.limit_ms(self.work_gflop),
            "full_limit_ms": self.limit_ms(self.step_gflop),
        })
    }

    /// Milliseconds that `gflop` of arithmetic take at the measured peak.
    fn limit_ms(&self, gflop: f64) -> f64 {
        gflop / self.peak_gflops * 1000.0
    }
}

/// GFLOP/s of the best of five 1024^3 products by the library selected now, after one
/// untimed product.
fn product_gflops() -> f64 {
    const N: usize = 1024;
    let a: Vec<f32> = (0..N * N).map(|i| (i % 17) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..N * N).map(|i| (i % 13) as f32 * 0.1).collect();
    let mut c = vec![0.0f32; N * N];
    let mut product = || {
        let start = Instant::now();
        matmul(
            &mut c,
            [N, N, N],
            Operand::rows(&a, N),
            Operand::rows(&b, N),
            false,
        );
        start.elapsed().as_secs_f64()
    };
    product();
    let best = (0..5).map(|_| product()).fold(f64::INFINITY, f64::min);
    2.0 * (N * N * N) as f64 / best / 1e9
}
