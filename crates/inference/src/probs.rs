//! `inference probs`: the chapter's next-word tables, per temperature.

use std::fmt::Write;

use anyhow::{Context, Result, bail};
use clap::Args;
use model::generation::sampling::{check_temperature, probabilities, top};

use crate::loaded::{Loaded, Source};

/// `inference probs` flags.
#[derive(Debug, Clone, Args)]
pub struct ProbsArgs {
    #[command(flatten)]
    pub source: Source,
    /// Comma-separated temperatures, each > 0.
    #[arg(long, value_delimiter = ',', default_value = "1.0,0.2")]
    pub temperatures: Vec<f32>,
    /// How many words to list per temperature.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
}

pub(crate) fn probs(args: &ProbsArgs) -> Result<String> {
    if args.temperatures.is_empty() {
        bail!("--temperatures needs at least one value");
    }
    for &t in &args.temperatures {
        check_temperature(t).context("--temperatures")?;
    }
    let loaded = Loaded::open(&args.source.model)?;
    let (generator, prompt) = loaded.generator(&args.source.prompt, 0)?;
    let logits = generator.next_token_logits(&prompt);
    let mut out = String::new();
    for &t in &args.temperatures {
        writeln!(
            out,
            "temperature = {t}\nPROMPT: {}",
            generator.decode(&prompt)
        )?;
        for (id, p) in top(&probabilities(&logits, t), args.top) {
            let word = if id == 0 {
                "<stop>"
            } else {
                loaded.vocab.token(id)
            };
            writeln!(out, "{:<16}{:.2}%", format!("{word}:"), p * 100.0)?;
        }
        out.push('\n');
    }
    Ok(out)
}
