//! The comparison table: per system, step time (median, min, max over every timed step of
//! every round), tokens/s at the median, peak RSS and generation speed; then the ratio line.

use std::fmt::Write;

use crate::batches::BatchFile;
use crate::ours::{Measured, ToTarget};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// One row per system (in first-seen order), then `ratio ours/<system> tokens_per_s = X.XX`
/// for each of the others.
pub fn table(batches: &BatchFile, runs: &[Measured]) -> String {
    let tokens = (batches.batch_size * batches.seq_len) as f64;
    let mut systems: Vec<&str> = Vec::new();
    for r in runs {
        if !systems.contains(&r.system.as_str()) {
            systems.push(&r.system);
        }
    }
    let mut out = format!(
        "B={} T={} V={} E={} H={}, {} timed steps per system\n",
        batches.batch_size,
        batches.seq_len,
        batches.vocab_size,
        batches.embedding_dim,
        batches.hidden_size,
        runs.iter()
            .filter(|r| r.system == runs[0].system)
            .map(|r| r.ms.len())
            .sum::<usize>()
    );
    out.push_str("| system | ms/step median | min | max | tokens/s | peak RSS MiB | first/last loss | generation tokens/s |\n|---|---|---|---|---|---|---|---|\n");
    let mut tokens_per_s = Vec::new();
    for system in &systems {
        let mine: Vec<&Measured> = runs.iter().filter(|r| r.system == *system).collect();
        let ms: Vec<f64> = mine.iter().flat_map(|r| r.ms.iter().copied()).collect();
        let (min, max) = ms
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(a, b), &x| (a.min(x), b.max(x)));
        let med = median(ms);
        let rss = mine.iter().map(|r| r.peak_rss_mib).fold(0.0, f64::max);
        let generation = median(mine.iter().map(|r| r.gen_tokens_per_s).collect());
        let losses = &mine[0].losses;
        let _ = writeln!(
            out,
            "| {system} | {med:.0} | {min:.0} | {max:.0} | {:.0} | {rss:.0} | {:.4}/{:.4} | {generation:.0} |",
            tokens * 1000.0 / med,
            losses.first().copied().unwrap_or(f64::NAN),
            losses.last().copied().unwrap_or(f64::NAN),
        );
        tokens_per_s.push(tokens * 1000.0 / med);
    }
    // Ours comes first; a ratio above 1 means ours (on the CPU) is faster than that system.
    for (system, theirs) in systems.iter().zip(&tokens_per_s).skip(1) {
        let name = match system {
            s if s.starts_with("PyTorch") => "pytorch",
            s if s.starts_with("stock Burn") => "stock-burn",
            _ => "wgpu",
        };
        let _ = writeln!(
            out,
            "ratio ours/{name} tokens_per_s = {:.2}",
            tokens_per_s[0] / theirs
        );
    }
    out
}

/// Seed 000's time to target per system.
pub fn memorise_table(runs: &[ToTarget]) -> String {
    let mut out =
        String::from("| system | steps to target | seconds | ms/step |\n|---|---|---|---|\n");
    for r in runs {
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {:.2} |",
            r.system,
            r.steps,
            r.seconds,
            r.seconds * 1000.0 / r.steps.max(1) as f64
        );
    }
    out
}
