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

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::Vocab;
use crate::vocab::PAD_ID;

/// Every record's ids, `seq_len + 1` per record.
#[derive(Debug, Clone)]
pub struct Sequences {
    seq_len: usize,
    ids: Vec<u32>,
}

impl Sequences {
    /// Encodes token lists to rows of `seq_len + 1` ids, truncating or padding with 0.
    pub fn encode<'a, I, T>(records: I, vocab: &Vocab, seq_len: usize) -> Self
    where
        I: IntoIterator<Item = T>,
        T: IntoIterator<Item = &'a str>,
    {
        Self::from_records(records, vocab, seq_len, |record, ids| {
            let start = ids.len();
            ids.extend(record.iter().take(seq_len + 1));
            ids.resize(start + seq_len + 1, PAD_ID);
        })
    }

    /// Every window of `seq_len` consecutive ids of each record, with the id after it
    /// (`a b c d e` with `seq_len` 3 -> `a b c d`, `b c d e`); shorter records give none.
    pub fn windows<'a, I, T>(records: I, vocab: &Vocab, seq_len: usize) -> Self
    where
        I: IntoIterator<Item = T>,
        T: IntoIterator<Item = &'a str>,
    {
        Self::from_records(records, vocab, seq_len, |record, ids| {
            record
                .windows(seq_len + 1)
                .for_each(|row| ids.extend_from_slice(row));
        })
    }

    /// Every prefix of each record (its last `seq_len` ids at most), pre-padded with 0 and
    /// followed by the id after it, as the n-gram prefix model's `pad_sequences(padding='pre')`.
    pub fn prefixes<'a, I, T>(records: I, vocab: &Vocab, seq_len: usize) -> Self
    where
        I: IntoIterator<Item = T>,
        T: IntoIterator<Item = &'a str>,
    {
        Self::from_records(records, vocab, seq_len, |record, ids| {
            for end in 1..record.len() {
                let context = &record[end.saturating_sub(seq_len)..end];
                ids.resize(ids.len() + seq_len - context.len(), PAD_ID);
                ids.extend_from_slice(context);
                ids.push(record[end]);
            }
        })
    }

    /// Maps each record to ids and lets `rows` append its rows of `seq_len + 1` ids.
    fn from_records<'a, I, T>(
        records: I,
        vocab: &Vocab,
        seq_len: usize,
        mut rows: impl FnMut(&[u32], &mut Vec<u32>),
    ) -> Self
    where
        I: IntoIterator<Item = T>,
        T: IntoIterator<Item = &'a str>,
    {
        let mut ids = Vec::new();
        for tokens in records {
            let record: Vec<u32> = tokens.into_iter().map(|t| vocab.id(t)).collect();
            rows(&record, &mut ids);
        }
        Self { seq_len, ids }
    }

    /// Number of sequences.
    pub fn len(&self) -> usize {
        self.ids.len() / (self.seq_len + 1)
    }

    /// True when there are no sequences.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The `seq_len + 1` ids of sequence `i`.
    pub fn row(&self, i: usize) -> &[u32] {
        let n = self.seq_len + 1;
        &self.ids[i * n..(i + 1) * n]
    }

    /// Input length of every sequence (one less than a row).
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

/// Cuts sequences into shuffled batches, reproducibly for a given seed and epoch.
#[derive(Debug, Clone, Copy)]
pub struct Collator {
    /// Sequences per batch.
    pub batch_size: usize,
    /// Which positions count in the loss.
    pub positions: LossPositions,
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
        order.shuffle(&mut rng);
        let this = *self;
        let chunks: Vec<Vec<usize>> = order
            .chunks(self.batch_size)
            .map(<[usize]>::to_vec)
            .collect();
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
        for &r in rows {
            let row = data.row(r);
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

    fn setup() -> (Vocab, Sequences) {
        let texts = ["a b c d e", "b c", "c"];
        let vocab = Vocab::build(texts.iter().flat_map(|t| t.split(' ')), 100);
        let seqs = Sequences::encode(texts.iter().map(|t| t.split(' ')), &vocab, 3);
        (vocab, seqs)
    }

    #[test]
    fn rows_are_truncated_or_padded_to_seq_len_plus_one() {
        let (v, s) = setup();
        assert_eq!(s.len(), 3);
        let ids = |w: &str| v.id(w);
        assert_eq!(s.row(0), [ids("a"), ids("b"), ids("c"), ids("d")]);
        assert_eq!(s.row(1), [ids("b"), ids("c"), 0, 0]);
    }

    #[test]
    fn target_is_input_shifted_and_weights_stop_after_first_pad() {
        let (_, s) = setup();
        let b = Collator {
            batch_size: 8,
            positions: LossPositions::RealAndStop,
        }
        .batch(&s, &[1]);
        assert_eq!(b.inputs, &s.row(1)[..3]);
        assert_eq!(b.targets, &s.row(1)[1..]);
        assert_eq!(b.weights, [1.0, 1.0, 0.0]);
        let keras = Collator {
            batch_size: 8,
            positions: LossPositions::All,
        }
        .batch(&s, &[1]);
        assert_eq!(keras.weights, [1.0, 1.0, 1.0]);
        assert_eq!(loss_weights(&[5, 6, 7], false), [1.0, 1.0, 1.0]);
    }

    #[test]
    fn many_to_one_rows_are_windows_or_pre_padded_prefixes() {
        let texts = ["a b c d e", "b c"];
        let vocab = Vocab::build(texts.iter().flat_map(|t| t.split(' ')), 100);
        let id = |w: &str| vocab.id(w);
        let rows = |s: &Sequences| (0..s.len()).map(|i| s.row(i).to_vec()).collect::<Vec<_>>();
        let w = Sequences::windows(texts.iter().map(|t| t.split(' ')), &vocab, 3);
        assert_eq!(
            rows(&w),
            [
                [id("a"), id("b"), id("c"), id("d")],
                [id("b"), id("c"), id("d"), id("e")]
            ]
        );
        let p = Sequences::prefixes(texts.iter().map(|t| t.split(' ')), &vocab, 2);
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
        }
        .batch(&s, &[0, 1]);
        assert!(b.last_only);
        assert_eq!(b.inputs.len(), 6);
        assert_eq!(b.targets, [s.row(0)[3], s.row(1)[3]]);
        assert_eq!(b.weights, [1.0, 1.0]);
    }

    #[test]
    fn shuffling_is_reproducible_and_covers_every_row_once() {
        let texts: Vec<String> = (0..20).map(|i| format!("w{i} x")).collect();
        let vocab = Vocab::build(texts.iter().flat_map(|t| t.split(' ')), 100);
        let s = Sequences::encode(texts.iter().map(|t| t.split(' ')), &vocab, 2);
        let collator = Collator {
            batch_size: 3,
            positions: LossPositions::RealAndStop,
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
        let mut want: Vec<u32> = (0..20).map(|r| s.row(r)[0]).collect();
        want.sort_unstable();
        assert_eq!(sorted, want, "every row exactly once");
    }
}
