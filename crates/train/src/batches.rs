//! Where an epoch's batches come from: one padded sequence per record (the recipe chapter),
//! or consecutive windows of one continuous stream whose LSTM state carries over.

use anyhow::{Result, anyhow};
use data::{Batch, Batcher, Sequences, StreamWindows, Vocab};

use crate::config::DataConfig;

/// The training data of a run, encoded.
pub enum Batches {
    /// Shuffled batches of independent sequences; the state starts from zero each batch.
    Records {
        sequences: Sequences,
        batcher: Batcher,
    },
    /// Windows over parallel streams in order; the state carries from window to window.
    Stream(StreamWindows),
}

impl Batches {
    /// Encodes tokenized records (or, for a stream, one tokenized text) with `vocab`.
    pub fn new(tokenized: &[Vec<String>], vocab: &Vocab, config: &DataConfig) -> Result<Self> {
        if config.stream {
            let ids: Vec<u32> = tokenized.iter().flatten().map(|t| vocab.id(t)).collect();
            let windows = StreamWindows::new(&ids, config.batch_size, config.seq_len)
                .map_err(|e| anyhow!("data: {e}"))?;
            return Ok(Batches::Stream(windows));
        }
        let rows = tokenized.iter().map(|t| t.iter().map(String::as_str));
        Ok(Batches::Records {
            sequences: Sequences::encode(rows, vocab, config.seq_len),
            batcher: Batcher {
                batch_size: config.batch_size,
                loss_on_padding: config.loss_on_padding,
            },
        })
    }

    /// Batches in one epoch.
    pub fn per_epoch(&self) -> usize {
        match self {
            Batches::Records { sequences, batcher } => batcher.batches_per_epoch(sequences),
            Batches::Stream(windows) => windows.len(),
        }
    }

    /// The batches of epoch `epoch`, shuffled (records) or in stream order.
    pub fn epoch(&self, seed: u64, epoch: usize) -> Box<dyn Iterator<Item = Batch> + '_> {
        match self {
            Batches::Records { sequences, batcher } => {
                Box::new(batcher.epoch(sequences, seed, epoch))
            }
            Batches::Stream(windows) => Box::new((0..windows.len()).map(|k| windows.window(k))),
        }
    }

    /// Whether the LSTM state carries from one batch to the next.
    pub fn carries_state(&self) -> bool {
        matches!(self, Batches::Stream(_))
    }
}
