//! The comparison table: per system, step time (median, min, max over every timed step of
//! every round), tokens/s at the median, peak RSS and generation speed, greedy and sampled;
//! then the ratio lines.

use std::fmt::Write;

use crate::ours::{Measured, ToTarget};
use crate::shared_data::SharedData;
use crate::work::{ALLOCATOR_ENV, Work};

/// The middle value (the mean of the two middle ones for an even count).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// One row per system (in first-seen order), then `ratio ours/<system> tokens_per_s = X.XX`
/// for each of the others, and `ratio wgpu/pytorch` when both ran (the GPU figures).
pub fn table(batches: &SharedData, work: &Work, runs: &[Measured]) -> String {
    let tokens = (batches.batch_size * batches.seq_len) as f64;
    let systems = systems(runs);
    let allocator: Vec<String> = ALLOCATOR_ENV
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut out = format!(
        "B={} T={} V={} E={} H={}, {} timed steps per system after 1 warm-up step; {} threads each; \
         generation: {} tokens after a 2-token prompt and 1 warm-up generation, greedy and sampled at T=0.8; \
         every process with {}\n",
        batches.batch_size,
        batches.seq_len,
        batches.vocab_size,
        batches.embedding_dim,
        batches.hidden_size,
        runs.iter()
            .filter(|r| r.system == runs[0].system)
            .map(|r| r.ms.len())
            .sum::<usize>(),
        work.threads,
        work.gen_tokens,
        allocator.join(" "),
    );
    out.push_str("| system | ms/step median | min | max | tokens/s | peak RSS MiB | first/last loss | generation greedy, tokens/s | sampled T=0.8, tokens/s |\n|---|---|---|---|---|---|---|---|---|\n");
    let mut tokens_per_s = Vec::new();
    for system in &systems {
        let mine: Vec<&Measured> = runs.iter().filter(|r| r.system == *system).collect();
        let (min, max) =
            step_ms(runs, system).fold((f64::INFINITY, 0.0f64), |(a, b), x| (a.min(x), b.max(x)));
        let med = median_step_ms(runs, system);
        let rss = mine.iter().map(|r| r.peak_rss_mib).fold(0.0, f64::max);
        let greedy = median(mine.iter().map(|r| r.gen_greedy_tokens_per_s).collect());
        let sampled = median(mine.iter().map(|r| r.gen_sampled_tokens_per_s).collect());
        let losses = &mine[0].losses;
        let _ = writeln!(
            out,
            "| {system} | {med:.0} | {min:.0} | {max:.0} | {:.0} | {rss:.0} | {:.4}/{:.4} | {greedy:.0} | {sampled:.0} |",
            tokens * 1000.0 / med,
            losses.first().copied().unwrap_or(f64::NAN),
            losses.last().copied().unwrap_or(f64::NAN),
        );
        tokens_per_s.push(tokens * 1000.0 / med);
    }
    // Ours comes first; a ratio above 1 means the first-named system is the faster.
    let names: Vec<&str> = systems.iter().map(|s| kind(s)).collect();
    let mut pairs: Vec<(usize, usize)> = (1..systems.len()).map(|i| (0, i)).collect();
    if let (Some(w), Some(p)) = (
        names.iter().position(|n| *n == "wgpu"),
        names.iter().position(|n| *n == "pytorch"),
    ) {
        pairs.push((w, p));
    }
    for (a, b) in pairs {
        let _ = writeln!(
            out,
            "ratio {}/{} tokens_per_s = {:.2}",
            if a == 0 { "ours" } else { names[a] },
            names[b],
            tokens_per_s[a] / tokens_per_s[b]
        );
    }
    out
}

/// The systems of `runs`, each once, in first-seen order.
pub fn systems(runs: &[Measured]) -> Vec<&str> {
    let mut systems: Vec<&str> = Vec::new();
    for r in runs {
        if !systems.contains(&r.system.as_str()) {
            systems.push(&r.system);
        }
    }
    systems
}

/// The median of every timed step of `system` over all its runs, in milliseconds.
pub fn median_step_ms(runs: &[Measured], system: &str) -> f64 {
    median(step_ms(runs, system).collect())
}

/// Every timed step of `system` over all its runs, in milliseconds.
fn step_ms<'a>(runs: &'a [Measured], system: &'a str) -> impl Iterator<Item = f64> + 'a {
    runs.iter()
        .filter(move |r| r.system == system)
        .flat_map(|r| r.ms.iter().copied())
}

/// The short name of a system in the ratio lines.
fn kind(system: &str) -> &'static str {
    match system {
        s if s.starts_with("PyTorch") && s.contains("torch.compile") => "pytorch-compile",
        s if s.starts_with("PyTorch") && s.contains("padding rows skipped") => "pytorch-skipping",
        s if s.starts_with("PyTorch") => "pytorch",
        s if s.starts_with("stock Burn") => "stock-burn",
        s if s.starts_with("ours (wgpu") => "wgpu",
        _ => "ours",
    }
}

/// The passage exercise's time to its loss target, per system.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run(system: &str, ms: f64) -> Measured {
        Measured {
            system: system.into(),
            ms: vec![ms],
            losses: vec![9.2],
            peak_rss_mib: 100.0,
            gen_tokens: 2000,
            gen_greedy_tokens_per_s: 1000.0,
            gen_sampled_tokens_per_s: 900.0,
        }
    }

    #[test]
    fn ratios_set_ours_against_each_system_and_wgpu_against_pytorch() {
        let batches = SharedData {
            file: "b.bin".into(),
            meta: "b.json".into(),
            vocab: "v.txt".into(),
            batches: 1,
            batch_size: 32,
            seq_len: 200,
            vocab_size: 10_000,
            embedding_dim: 100,
            hidden_size: 128,
        };
        let runs = [
            run("ours (flex, gemm)", 1000.0),
            run("PyTorch 2.11.0 (cuda)", 40.0),
            run("PyTorch 2.11.0, padding rows skipped (cuda)", 30.0),
            run("ours (wgpu on NVIDIA H200 (DiscreteGpu), Vulkan)", 50.0),
        ];
        let work = Work {
            steps: 1,
            gen_tokens: 2000,
            threads: 2,
        };
        let table = table(&batches, &work, &runs);
        let ratios: Vec<&str> = table.lines().filter(|l| l.starts_with("ratio")).collect();
        assert_eq!(
            ratios,
            [
                "ratio ours/pytorch tokens_per_s = 0.04",
                "ratio ours/pytorch-skipping tokens_per_s = 0.03",
                "ratio ours/wgpu tokens_per_s = 0.05",
                "ratio wgpu/pytorch tokens_per_s = 0.80",
            ]
        );
        assert!(table.contains("| ours (flex, gemm) | 1000 | 1000 | 1000 | 6400 |"));
        assert!(table.contains("2 threads each"));
        assert!(table.contains("| 1000 | 900 |"));
    }
}
