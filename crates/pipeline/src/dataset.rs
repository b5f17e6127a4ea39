//! Where an epoch's batches come from: one padded sequence per record (the recipe chapter),
//! many-to-one windows or prefixes, or consecutive windows of one continuous stream whose
//! recurrent state carries over.

use std::sync::Arc;

use data::{Batch, Collator, LossPositions, Part, Sequences, Shape, StreamWindows, TokenStore};

use crate::config::{DataConfig, ExampleKind};
use crate::error::ExamplesError;

/// One part of a run's data (training or validation), encoded: it yields each epoch's batches.
pub enum Dataset {
    /// Shuffled batches of independent sequences; the state starts from zero each batch.
    Records {
        /// Every example's ids.
        sequences: Sequences,
        /// How they are shuffled into batches.
        collator: Collator,
    },
    /// Windows over parallel streams in order; the state carries from window to window.
    Stream(StreamWindows),
}

impl Dataset {
    /// The examples of `part` of `store`, in batches of at most `config.batch_size`; an error
    /// when they yield no example.
    pub fn new(
        store: &Arc<TokenStore>,
        part: &Part,
        config: &DataConfig,
    ) -> Result<Self, ExamplesError> {
        let batch_size = config.batch_size;
        let seq_len = config.seq_len;
        let records = match part {
            Part::Tokens(tokens) => {
                // A small held-out stream gets fewer parallel rows rather than none.
                let count = (tokens.end - tokens.start) as usize;
                let rows = batch_size.min(count / (seq_len + 1)).max(1);
                let windows = StreamWindows::new(Arc::clone(store), tokens.clone(), rows, seq_len)?;
                return Ok(Dataset::Stream(windows));
            }
            Part::Records(records) => records.clone(),
        };
        let (shape, positions) = match config.examples {
            ExampleKind::Windows => (Shape::Windows, LossPositions::Last),
            ExampleKind::Prefixes => (Shape::Prefixes, LossPositions::Last),
            _ if config.loss_on_padding => (Shape::Padded, LossPositions::All),
            _ => (Shape::Padded, LossPositions::RealAndStop),
        };
        let sequences = Sequences::new(Arc::clone(store), records, shape, seq_len);
        if sequences.is_empty() {
            return Err(ExamplesError::None {
                kind: config.examples,
                seq_len,
            });
        }
        Ok(Dataset::Records {
            sequences,
            collator: Collator {
                batch_size,
                positions,
                shuffle: config.shuffle,
            },
        })
    }

    /// The first token of the first example (after any pre-padding), in corpus order.
    pub fn first_token(&self) -> Option<u32> {
        match self {
            Dataset::Records { sequences, .. } => {
                let mut row = Vec::new();
                sequences.row(0, &mut row);
                row.into_iter().find(|&id| id != data::vocab::PAD_ID)
            }
            Dataset::Stream(windows) => windows.window(0).inputs.first().copied(),
        }
    }

    /// Training examples (sequences or stream positions) in one epoch.
    pub fn examples(&self) -> usize {
        match self {
            Dataset::Records { sequences, .. } => sequences.len(),
            Dataset::Stream(windows) => windows.positions(),
        }
    }

    /// Batches in one epoch.
    pub fn per_epoch(&self) -> usize {
        match self {
            Dataset::Records {
                sequences,
                collator,
            } => collator.batches_per_epoch(sequences),
            Dataset::Stream(windows) => windows.count(),
        }
    }

    /// The batches of epoch `epoch`, shuffled (records) or in stream order.
    pub fn epoch(&self, seed: u64, epoch: usize) -> Box<dyn Iterator<Item = Batch> + '_> {
        match self {
            Dataset::Records {
                sequences,
                collator,
            } => Box::new(collator.epoch(sequences, seed, epoch)),
            Dataset::Stream(windows) => Box::new((0..windows.count()).map(|k| windows.window(k))),
        }
    }

    /// Whether the LSTM state carries from one batch to the next.
    pub fn carries_state(&self) -> bool {
        matches!(self, Dataset::Stream(_))
    }
}
