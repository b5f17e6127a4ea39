//! What `--resume` checks: the run's settings and its vocabulary are those the checkpoint was
//! made with.

use std::path::Path;

use anyhow::{Context, Result, bail};
use data::Vocab;
use pipeline::config::Config;

/// An error naming the first setting of `config` that changes the corpus, the data, the model
/// or the seed (the batch order) from those the run in `run_dir` was started with.
pub(super) fn same_settings(config: &Config, run_dir: &Path) -> Result<()> {
    let path = run_dir.join("config.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read the run's config", path.display()))?;
    let saved: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}: not a config", path.display()))?;
    let now = toml::Table::try_from(config).context("serialising the config")?;
    let keys = ["corpus", "data", "model"]
        .into_iter()
        .flat_map(|section| {
            let keys = now.get(section).and_then(toml::Value::as_table);
            keys.into_iter()
                .flat_map(|t| t.keys())
                .map(move |key| (section, key.as_str()))
        })
        // Reading the corpus as text or prepared gives the same ids; the vocabulary check
        // catches a prepared form that disagrees.
        .filter(|&key| key != ("corpus", "prepared"))
        .chain([("train", "seed")]);
    for (section, key) in keys {
        let value = |table: &toml::Table| table.get(section).and_then(|s| s.get(key)).cloned();
        let (before, after) = (value(&saved), value(&now));
        if before != after {
            let show = |v: Option<toml::Value>| v.map_or("unset".into(), |v| v.to_string());
            bail!(
                "{}: `{section}.{key}` was {} when this run started and is {} now; resuming needs the same corpus, data, model and seed (start a new run with --out DIR)",
                path.display(),
                show(before),
                show(after)
            );
        }
    }
    Ok(())
}

/// An error unless the checkpoint's vocabulary is the one the corpus builds now.
pub(super) fn same_vocab(saved: &Vocab, built: &Vocab, dir: &Path) -> Result<()> {
    if saved == built {
        return Ok(());
    }
    let first = saved
        .tokens()
        .iter()
        .zip(built.tokens())
        .position(|(a, b)| a != b)
        .unwrap_or(saved.size().min(built.size()));
    bail!(
        "{}: the checkpoint's vocabulary ({} entries, SHA-256 {}) differs from the one this corpus and config build ({} entries, SHA-256 {}), first at id {first}; resume with the same corpus and data settings, or start a new run with --out",
        dir.display(),
        saved.size(),
        saved.fingerprint(),
        built.size(),
        built.fingerprint()
    )
}
