//! `inference generate`: continue a prompt, one token at a time.

use std::time::Instant;

use anyhow::{Result, anyhow, bail};
use clap::Args;
use data::defaults;
use model::Sampling;

use crate::loaded::{Loaded, Source};

/// `inference generate` flags.
#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub source: Source,
    /// Sampling temperature (> 0).
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// Most new tokens to generate (generation also stops at the stop token).
    #[arg(long, default_value_t = defaults::MAX_TOKENS)]
    pub max_tokens: usize,
    /// Always take the most likely next token.
    #[arg(long)]
    pub greedy: bool,
    /// Sample only among the K most likely tokens.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Sample only among the most likely tokens whose probabilities together reach P (0 < P <= 1).
    #[arg(long, value_name = "P")]
    pub top_p: Option<f32>,
    /// Make tokens already generated less likely: their positive logits are divided by this,
    /// negative ones multiplied (1 = off; 1.1-1.3 is typical).
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Stop where this text appears in the generated text (which then ends before it); repeat
    /// the flag for several.
    #[arg(long, value_name = "TEXT")]
    pub stop: Vec<String>,
    /// Seed for sampling.
    #[arg(long, default_value_t = defaults::SEED)]
    pub seed: u64,
}

pub(crate) fn generate(args: &GenerateArgs) -> Result<String> {
    let sampling = Sampling {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        repetition_penalty: args.repetition_penalty,
        greedy: args.greedy,
    };
    sampling
        .check()
        .map_err(|e| anyhow!("--{}: {e}", e.setting().replace('_', "-")))?;
    let loaded = Loaded::open(&args.source.model)?;
    if let Some(k) = args.top_k.filter(|&k| k > loaded.vocab.size()) {
        bail!(
            "--top-k {k} is above the model's vocabulary of {} entries; leave it out to sample from all of them",
            loaded.vocab.size()
        );
    }
    let (mut generator, prompt) = loaded.generator(&args.source.prompt, args.seed)?;
    let start = Instant::now();
    let done = generator.generate(&prompt, args.max_tokens, &sampling, &args.stop);
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{}: {} tokens in {secs:.2}s ({:.0} tokens/s)",
        loaded.ckpt.dir.display(),
        done.ids.len(),
        done.ids.len() as f64 / secs.max(1e-9)
    );
    let prompt = generator.decode(&prompt);
    Ok(match done.text.is_empty() {
        true => format!("{prompt}\n"),
        false => format!("{prompt}{}{}\n", generator.separator(), done.text),
    })
}
