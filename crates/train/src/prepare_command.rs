//! `train prepare`: a config's corpus tokenised once into a prepared directory.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use data::Manifest;
use pipeline::Config;
use pipeline::config::config_name;
use pipeline::prepare::token_settings;

use crate::cli::PrepareArgs;

/// Prepares the corpus of `args.config`, printing what was read and how fast; the manifest
/// written.
pub fn prepare(args: &PrepareArgs) -> Result<Manifest> {
    let (config, config_path) = Config::load(&args.config)?;
    let dir = args
        .out
        .clone()
        .or_else(|| config.corpus.prepared.clone())
        .unwrap_or_else(|| Path::new("prepared").join(config_name(&config_path)));
    let started = Instant::now();
    let (manifest, read) = token_settings(&config).prepare(&dir)?;
    let seconds = started.elapsed().as_secs_f64();
    let bytes: u64 = manifest.sources.iter().map(|s| s.bytes).sum();
    println!("{}", read.summary);
    println!(
        "prepared {} records, {} tokens (vocabulary {} entries, {}-byte ids, {} shard(s)) into {} in {seconds:.1}s ({:.1} MB/s of source)",
        manifest.records,
        manifest.tokens,
        manifest.vocab_entries,
        manifest.id_bytes,
        manifest.shards.len(),
        dir.display(),
        bytes as f64 / 1e6 / seconds.max(1e-9)
    );
    match config.corpus.prepared.as_deref() == Some(dir.as_path()) {
        true => println!("{} trains from it (corpus.prepared)", config_path.display()),
        false => println!(
            "to train from it, add to [corpus] in {}:\n  prepared = \"{}\"",
            config_path.display(),
            dir.display()
        ),
    }
    Ok(manifest)
}
