//! `inference score`: a model's loss, perplexity and unknown-token share on text files.

use std::fmt::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use clap::Args;

use crate::loaded::{Loaded, ModelSource, run_dir_of};

/// `inference score` flags.
#[derive(Debug, Clone, Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub model: ModelSource,
    /// Files to score. JSON, JSON Lines and CSV records are formatted with the run's
    /// `corpus.template`; a plain-text file holds records already written as the model sees
    /// them (`Recipe for ... | ...`), one a line.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The files' format (`json`, `jsonl`, `csv`, `text`) when their names do not say it.
    #[arg(long, value_parser = model::parse_setting::<data::CorpusFormat>)]
    pub format: Option<data::CorpusFormat>,
}

/// Per file and in total: tokens, mean loss per counted token, perplexity and the share of
/// tokens outside the vocabulary, each file read with the run's corpus and data settings.
pub(crate) fn score(args: &ScoreArgs) -> Result<String> {
    let loaded = Loaded::open(&args.model)?;
    let run_dir = run_dir_of(&loaded.ckpt.dir).ok_or_else(|| {
        anyhow!(
            "{}: score needs a checkpoint inside a run directory, whose config.toml says how its text was read",
            loaded.ckpt.dir.display()
        )
    })?;
    let (config, _) = pipeline::Config::load(&run_dir.join("config.toml"))?;
    let model = &loaded.model;
    let mut out = String::from("file\ttokens\tloss\tperplexity\tunknown\n");
    let (mut loss_total, mut counted_total, mut tokens_total, mut unknown_total) = (0.0, 0.0, 0, 0);
    let mut line = |name: &str, loss: f64, counted: f64, tokens: usize, unknown: usize| {
        let mean = loss / counted.max(1.0);
        let share = 100.0 * unknown as f64 / tokens.max(1) as f64;
        let _ = writeln!(
            out,
            "{name}\t{tokens}\t{mean:.4}\t{:.2}\t{share:.2}%",
            mean.exp()
        );
    };
    for file in &args.files {
        let mut settings = config.clone();
        let format = args.format.unwrap_or_else(|| config.corpus.format_of(file));
        settings.corpus.path = file.clone();
        settings.corpus.format = format;
        settings.corpus.max_records = None;
        if format == data::CorpusFormat::Text {
            // Plain text is already formatted: one record a line, as the model reads it.
            settings.corpus.template = None;
        }
        let (data, tokens, unknown) = pipeline::prepare::encode_with(&settings, &loaded.vocab)
            .with_context(|| format!("{}: cannot score", file.display()))?;
        let (loss, counted) = pipeline::evaluation::loss_sums(model, &data, &loaded.device);
        line(&file.display().to_string(), loss, counted, tokens, unknown);
        (loss_total, counted_total) = (loss_total + loss, counted_total + counted);
        (tokens_total, unknown_total) = (tokens_total + tokens, unknown_total + unknown);
    }
    if args.files.len() > 1 {
        line(
            "total",
            loss_total,
            counted_total,
            tokens_total,
            unknown_total,
        );
    }
    Ok(out)
}
