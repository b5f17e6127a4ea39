//! Fixed-length training sequences and shuffled batches.
//!
//! Each record becomes `seq_len + 1` ids (truncated, or padded with 0 at the end), and the
//! model learns to predict each id from the ones before it:
//!
//! ```text
//! ids:     recipe for toast | butter it . 0 0 0
//! input:   recipe for toast | butter it . 0 0      (ids[0..seq_len])
//! target:  for toast | butter it . 0 0 0           (ids[1..seq_len+1])
//! weight:  1   1     1 1      1  1 1 0 0           (real tokens + the first stop)
//! ```
//!
//! Many-to-one examples (the n-gram prefix model and the next-letter toy) are rows of the same
//! shape whose loss counts only the last position: every window of `seq_len` tokens followed by the
//! next one (`a b c -> d`), or every prefix of a record, pre-padded with 0 (`0 0 recipe -> for`).

use std::ops::Range;
use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::token_store::TokenStore;
use crate::vocab::PAD_ID;

/// How records become rows of `seq_len + 1` ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One row per record, truncated or padded with 0 at the end.
    Padded,
    /// Every window of `seq_len` consecutive ids of each record with the id after it
    /// (`a b c d e` with `seq_len` 3 -> `a b c d`, `b c d e`); shorter records give none.
    Windows,
    /// Every prefix of each record (its last `seq_len` ids at most), pre-padded with 0 and
    /// followed by the id after it, as the n-gram prefix model's `pad_sequences(padding='pre')`.
    Prefixes,
}

/// Training rows of `seq_len + 1` ids over some records of a token store, read from it when
/// a batch needs them.
#[derive(Debug, Clone)]
pub struct Sequences {
    store: Arc<TokenStore>,
    records: Range<usize>,
    shape: Shape,
    seq_len: usize,
    /// For windows and prefixes: the rows before each record, and the total at the end.
    before: Vec<u64>,
}

impl Sequences {
    /// The rows of records `records` of `store`.
    pub fn new(
        store: Arc<TokenStore>,
        records: Range<usize>,
        shape: Shape,
        seq_len: usize,
    ) -> Self {
        let before = match shape {
            Shape::Padded => Vec::new(),
            Shape::Windows | Shape::Prefixes => {
                let mut total = 0;
                let mut before = Vec::with_capacity(records.len() + 1);
                before.push(0);
                for r in records.clone() {
                    let span = store.record(r);
                    let len = span.end - span.start;
                    total += match shape {
                        Shape::Windows => len.saturating_sub(seq_len as u64),
                        _ => len.saturating_sub(1),
                    };
                    before.push(total);
                }
                before
            }
        };
        Self {
            store,
            records,
            shape,
            seq_len,
            before,
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        match self.shape {
            Shape::Padded => self.records.len(),
            _ => *self.before.last().unwrap_or(&0) as usize,
        }
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the `seq_len + 1` ids of row `i` to `out`.
    pub fn row(&self, i: usize, out: &mut Vec<u32>) {
        let n = self.seq_len as u64;
        let (record, k) = match self.shape {
            Shape::Padded => (self.records.start + i, 0),
            _ => {
                let r = self.before.partition_point(|&b| b <= i as u64) - 1;
                (self.records.start + r, i as u64 - self.before[r])
            }
        };
        let span = self.store.record(record);
        let start = out.len();
        match self.shape {
            Shape::Padded => {
                self.store
                    .read(span.start..span.end.min(span.start + n + 1), out);
                out.resize(start + self.seq_len + 1, PAD_ID);
            }
            Shape::Windows => self.store.read(span.start + k..span.start + k + n + 1, out),
            Shape::Prefixes => {
                let end = k + 1;
                let context = end.min(n);
                out.resize(start + (n - context) as usize, PAD_ID);
                self.store
                    .read(span.start + end - context..span.start + end + 1, out);
            }
        }
    }

    /// Input length of every row (one less than a row).
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }
}

/// Which target positions of a row count in the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossPositions {
    /// Real tokens and the first stop token after them; the rest of the padding does not.
    RealAndStop,
    /// Every position, padding included (Keras's default).
    All,
    /// Only the last position (many-to-one examples).
    Last,
}

/// Loss weight of each target position: 1 for real tokens and for the first stop token that
/// follows them, 0 for the rest of the padding; or 1 everywhere when `on_padding` (Keras).
pub fn loss_weights(targets: &[u32], on_padding: bool) -> Vec<f32> {
    if on_padding {
        return vec![1.0; targets.len()];
    }
    let real = targets
        .iter()
        .position(|&t| t == PAD_ID)
        .map_or(targets.len(), |p| p + 1);
    (0..targets.len())
        .map(|i| if i < real { 1.0 } else { 0.0 })
        .collect()
}

/// One batch, row-major `[batch, seq_len]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Number of sequences in this batch (the last batch of an epoch may be short).
    pub batch_size: usize,
    /// Positions per sequence.
    pub seq_len: usize,
    /// Input ids.
    pub inputs: Vec<u32>,
    /// Target ids: the inputs shifted left by one; with `last_only`, one per sequence.
    pub targets: Vec<u32>,
    /// Per-target loss weights (see [`loss_weights`]).
    pub weights: Vec<f32>,
    /// Many-to-one: only the last position of each sequence has a target, so the model need
    /// not compute the output layer anywhere else.
    pub last_only: bool,
}

impl Batch {
    /// The batch cut into at most `parts` batches of consecutive sequences, as even as can be
    /// (the first ones one sequence larger), for data-parallel training.
    pub fn split(&self, parts: usize) -> Vec<Batch> {
        let (per_row, targets_per_row) =
            (self.seq_len, self.targets.len() / self.batch_size.max(1));
        let parts = parts.clamp(1, self.batch_size.max(1));
        let mut start = 0;
        (0..parts)
            .map(|k| {
                let rows = self.batch_size / parts + usize::from(k < self.batch_size % parts);
                let (inputs, targets) = (start * per_row, start * targets_per_row);
                let share = Batch {
                    batch_size: rows,
                    seq_len: self.seq_len,
                    inputs: self.inputs[inputs..inputs + rows * per_row].to_vec(),
                    targets: self.targets[targets..targets + rows * targets_per_row].to_vec(),
                    weights: self.weights[targets..targets + rows * targets_per_row].to_vec(),
                    last_only: self.last_only,
                };
                start += rows;
                share
            })
            .collect()
    }
}

/// What an epoch shuffles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shuffle {
    /// The sequences, into new batches every epoch.
    #[default]
    Examples,
    /// The order of fixed batches of consecutive sequences, as the chapter's
    /// `tf.data.Dataset.from_tensor_slices(text).batch(32).shuffle(1000)` does.
    Batches,
}

/// Cuts sequences into shuffled batches, reproducibly for a given seed and epoch.
#[derive(Debug, Clone, Copy)]
pub struct Collator {
    /// Sequences per batch.
    pub batch_size: usize,
    /// Which positions count in the loss.
    pub positions: LossPositions,
    /// What an epoch shuffles.
    pub shuffle: Shuffle,
}

impl Collator {
    /// Number of batches per epoch (the last one may be short).
    pub fn batches_per_epoch(&self, data: &Sequences) -> usize {
        data.len().div_ceil(self.batch_size)
    }

    /// The batches of one epoch, shuffled with a generator seeded by `seed` and `epoch`.
    pub fn epoch<'a>(
        &self,
        data: &'a Sequences,
        seed: u64,
        epoch: usize,
    ) -> impl Iterator<Item = Batch> + 'a {
        let mut order: Vec<usize> = (0..data.len()).collect();
        let mut rng =
            StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64));
        if self.shuffle == Shuffle::Examples {
            order.shuffle(&mut rng);
        }
        let this = *self;
        let mut chunks: Vec<Vec<usize>> = order
            .chunks(self.batch_size)
            .map(<[usize]>::to_vec)
            .collect();
        if self.shuffle == Shuffle::Batches {
            chunks.shuffle(&mut rng);
        }
        chunks.into_iter().map(move |rows| this.batch(data, &rows))
    }

    /// Assembles the given rows into one batch.
    pub fn batch(&self, data: &Sequences, rows: &[usize]) -> Batch {
        let t = data.seq_len();
        let mut b = Batch {
            batch_size: rows.len(),
            seq_len: t,
            inputs: Vec::with_capacity(rows.len() * t),
            targets: Vec::with_capacity(rows.len() * t),
            weights: Vec::with_capacity(rows.len() * t),
            last_only: self.positions == LossPositions::Last,
        };
        let mut row = Vec::with_capacity(t + 1);
        for &r in rows {
            row.clear();
            data.row(r, &mut row);
            b.inputs.extend_from_slice(&row[..t]);
            if b.last_only {
                b.targets.push(row[t]);
                b.weights.push(1.0);
            } else {
                b.targets.extend_from_slice(&row[1..]);
                let on_padding = self.positions == LossPositions::All;
                b.weights.extend(loss_weights(&row[1..], on_padding));
            }
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Vocab;

    /// The rows of `shape` over `texts`, words split on spaces, with their vocabulary.
    fn sequences(texts: &[&str], shape: Shape, seq_len: usize) -> (Vocab, Sequences) {
        let vocab = Vocab::build(texts.iter().flat_map(|t| t.split(' ')), 100);
        let (mut ids, mut starts) = (Vec::new(), vec![0]);
        for t in texts {
            ids.extend(t.split(' ').map(|w| vocab.id(w)));
            starts.push(ids.len() as u64);
        }
        let store = Arc::new(TokenStore::in_memory(ids, starts));
        let seqs = Sequences::new(store, 0..texts.len(), shape, seq_len);
        (vocab, seqs)
    }

    fn rows(s: &Sequences) -> Vec<Vec<u32>> {
        (0..s.len())
            .map(|i| {
                let mut row = Vec::new();
                s.row(i, &mut row);
                row
            })
            .collect()
    }

    fn setup() -> (Vocab, Sequences) {
        sequences(&["a b c d e", "b c", "c"], Shape::Padded, 3)
    }

    #[test]
    fn rows_are_truncated_or_padded_to_seq_len_plus_one() {
        let (v, s) = setup();
        assert_eq!(s.len(), 3);
        let ids = |w: &str| v.id(w);
        let rows = rows(&s);
        assert_eq!(rows[0], [ids("a"), ids("b"), ids("c"), ids("d")]);
        assert_eq!(rows[1], [ids("b"), ids("c"), 0, 0]);
    }

    #[test]
    fn target_is_input_shifted_and_weights_stop_after_first_pad() {
        let (_, s) = setup();
        let b = Collator {
            batch_size: 8,
            positions: LossPositions::RealAndStop,
            shuffle: Shuffle::Examples,
        }
        .batch(&s, &[1]);
        let row = &rows(&s)[1];
        assert_eq!(b.inputs, &row[..3]);
        assert_eq!(b.targets, &row[1..]);
        assert_eq!(b.weights, [1.0, 1.0, 0.0]);
        let keras = Collator {
            batch_size: 8,
            positions: LossPositions::All,
            shuffle: Shuffle::Examples,
        }
        .batch(&s, &[1]);
        assert_eq!(keras.weights, [1.0, 1.0, 1.0]);
        assert_eq!(loss_weights(&[5, 6, 7], false), [1.0, 1.0, 1.0]);
    }

    #[test]
    fn many_to_one_rows_are_windows_or_pre_padded_prefixes() {
        let texts = ["a b c d e", "b c"];
        let (vocab, w) = sequences(&texts, Shape::Windows, 3);
        let id = |w: &str| vocab.id(w);
        assert_eq!(
            rows(&w),
            [
                [id("a"), id("b"), id("c"), id("d")],
                [id("b"), id("c"), id("d"), id("e")]
            ]
        );
        let (_, p) = sequences(&texts, Shape::Prefixes, 2);
        assert_eq!(
            rows(&p),
            [
                [0, id("a"), id("b")],
                [id("a"), id("b"), id("c")],
                [id("b"), id("c"), id("d")],
                [id("c"), id("d"), id("e")],
                [0, id("b"), id("c")]
            ]
        );
    }

    #[test]
    fn a_many_to_one_batch_has_one_target_per_sequence() {
        let (_, s) = setup();
        let b = Collator {
            batch_size: 8,
            positions: LossPositions::Last,
            shuffle: Shuffle::Examples,
        }
        .batch(&s, &[0, 1]);
        assert!(b.last_only);
        assert_eq!(b.inputs.len(), 6);
        let rows = rows(&s);
        assert_eq!(b.targets, [rows[0][3], rows[1][3]]);
        assert_eq!(b.weights, [1.0, 1.0]);
    }

    #[test]
    fn a_split_batch_keeps_every_sequence_once_in_order() {
        let (_, s) = setup();
        for positions in [LossPositions::RealAndStop, LossPositions::Last] {
            let collator = Collator {
                batch_size: 8,
                positions,
                shuffle: Shuffle::Examples,
            };
            let b = collator.batch(&s, &[0, 1, 2]);
            let parts = b.split(2);
            assert_eq!(
                parts.iter().map(|p| p.batch_size).collect::<Vec<_>>(),
                [2, 1]
            );
            assert_eq!(parts[0], collator.batch(&s, &[0, 1]));
            assert_eq!(parts[1], collator.batch(&s, &[2]));
            assert_eq!(b.split(5).len(), 3, "no empty share");
        }
    }

    /// Twenty one-word records padded to rows of 2 inputs, and each row's first id.
    fn twenty_rows() -> (Sequences, Vec<u32>) {
        let texts: Vec<String> = (0..20).map(|i| format!("w{i} x")).collect();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let (_, s) = sequences(&texts, Shape::Padded, 2);
        let firsts_of_rows = rows(&s).iter().map(|r| r[0]).collect();
        (s, firsts_of_rows)
    }

    #[test]
    fn shuffling_is_reproducible_and_covers_every_row_once() {
        let (s, firsts_of_rows) = twenty_rows();
        let collator = Collator {
            batch_size: 3,
            positions: LossPositions::RealAndStop,
            shuffle: Shuffle::Examples,
        };
        let firsts = |epoch: usize| -> Vec<u32> {
            let batches: Vec<Batch> = collator.epoch(&s, 7, epoch).collect();
            assert_eq!(batches.len(), 7);
            batches
                .iter()
                .flat_map(|b| b.inputs.chunks(2).map(|row| row[0]))
                .collect()
        };
        let order = firsts(0);
        assert_eq!(order, firsts(0), "same seed and epoch, same order");
        assert_ne!(order, firsts(1), "another epoch, another order");
        let mut sorted = order.clone();
        sorted.sort_unstable();
        let mut want = firsts_of_rows;
        want.sort_unstable();
        assert_eq!(sorted, want, "every row exactly once");
    }

    /// `Shuffle::Batches` keeps each batch's consecutive rows together and shuffles the
    /// batches' order from epoch to epoch, as the chapter's `batch(32).shuffle(1000)`.
    #[test]
    fn shuffling_batches_keeps_consecutive_rows_together() {
        let (s, firsts_of_rows) = twenty_rows();
        let collator = Collator {
            batch_size: 3,
            positions: LossPositions::RealAndStop,
            shuffle: Shuffle::Batches,
        };
        let batches = |epoch: usize| -> Vec<Vec<u32>> {
            let firsts = |b: &Batch| b.inputs.chunks(2).map(|row| row[0]).collect();
            collator.epoch(&s, 7, epoch).map(|b| firsts(&b)).collect()
        };
        let fixed: Vec<Vec<u32>> = firsts_of_rows.chunks(3).map(<[u32]>::to_vec).collect();
        let (mut first, second) = (batches(0), batches(1));
        assert_ne!(first, second, "another epoch, another order of batches");
        assert_ne!(first, fixed, "the batches are shuffled");
        first.sort_unstable();
        let mut want = fixed;
        want.sort_unstable();
        assert_eq!(first, want, "the same batches of consecutive rows");
    }
}
