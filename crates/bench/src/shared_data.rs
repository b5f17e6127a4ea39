//! The batches both systems train on: the textbook's first shuffled batches of the shipped
//! recipes (B=32, T=200, V=10,000), written once as raw little-endian arrays.

use std::path::PathBuf;

use anyhow::{Context, Result};
use data::CorpusSpec;
use pipeline::Config;
use pipeline::prepare;
use serde::{Deserialize, Serialize};

/// The batches both systems train on, as `batches.json` describes them (the PyTorch script
/// reads it too).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SharedData {
    /// The raw file: per batch, inputs (u32), targets (u32), weights (f32), `B*T` each.
    pub file: PathBuf,
    /// This description, as written.
    pub meta: PathBuf,
    /// The vocabulary, one token a line.
    pub vocab: PathBuf,
    /// Batches in the file.
    pub batches: usize,
    /// Sequences per batch.
    pub batch_size: usize,
    /// Positions per sequence.
    pub seq_len: usize,
    /// Vocabulary entries (the output layer's width).
    pub vocab_size: usize,
    /// The model's embedding width.
    pub embedding_dim: usize,
    /// The model's LSTM units.
    pub hidden_size: usize,
}

/// Writes the first `count` batches of the textbook config's first epoch into target/bench/
/// and describes them.
pub fn prepare(count: usize) -> Result<SharedData> {
    let dir = PathBuf::from("target/bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let config = Config::textbook(CorpusSpec::new("datasets/epicurious/recipes.json.gz"));
    let data = prepare::prepare(&config)?;
    let mut raw = Vec::new();
    for batch in data.training.epoch(config.train.seed, 1).take(count) {
        raw.extend(batch.inputs.iter().flat_map(|i| i.to_le_bytes()));
        raw.extend(batch.targets.iter().flat_map(|i| i.to_le_bytes()));
        raw.extend(batch.weights.iter().flat_map(|w| w.to_le_bytes()));
    }
    let file = SharedData {
        file: dir.join("batches.bin"),
        meta: dir.join("batches.json"),
        vocab: dir.join("vocab.txt"),
        batches: count,
        batch_size: config.data.batch_size,
        seq_len: config.data.seq_len,
        vocab_size: data.vocab.size(),
        embedding_dim: config.model.embedding_dim,
        hidden_size: config.model.hidden_size,
    };
    data::files::write_atomic(&file.file, &raw)?;
    data.vocab.save(&file.vocab)?;
    data::files::write_atomic(&file.meta, serde_json::to_string(&file)?.as_bytes())?;
    Ok(file)
}

impl SharedData {
    /// Reads the description written by [`prepare`].
    pub fn open(meta: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(meta)
            .with_context(|| format!("{}: cannot read", meta.display()))?;
        Ok(serde_json::from_str(&text)?)
    }

    /// Batch `i`: inputs, targets, weights.
    pub fn batch(&self, raw: &[u8], i: usize) -> data::Batch {
        let n = self.batch_size * self.seq_len;
        let words: Vec<[u8; 4]> = raw[i * 12 * n..(i + 1) * 12 * n]
            .chunks_exact(4)
            .map(|c| [c[0], c[1], c[2], c[3]])
            .collect();
        data::Batch {
            batch_size: self.batch_size,
            seq_len: self.seq_len,
            inputs: words[..n].iter().map(|w| u32::from_le_bytes(*w)).collect(),
            targets: words[n..2 * n]
                .iter()
                .map(|w| u32::from_le_bytes(*w))
                .collect(),
            weights: words[2 * n..]
                .iter()
                .map(|w| f32::from_le_bytes(*w))
                .collect(),
            last_only: false,
        }
    }
}
