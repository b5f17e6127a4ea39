//! A corpus read as one continuous token stream, for truncated backpropagation through time
//! (char-rnn, torch-rnn, and the NumPy passage exercise's `h_prev`/`C_prev` loop).
//!
//! The stream is cut into `batch_size` equal rows that are read side by side in consecutive
//! windows of `seq_len`; the LSTM state at the end of window k starts window k+1:
//!
//! ```text
//! stream: a b c d e f g h i j k l m n o p q r s t u v w x y
//! row 0:  a b c d e f g h i j k l        window 0: a b c d  -> b c d e
//! row 1:  m n o p q r s t u v w x        window 1: e f g h  -> f g h i   (state carried)
//!                                        window 2: i j k    -> j k l     (last may be short)
//! ```

use std::ops::Range;
use std::sync::Arc;

use crate::Batch;
use crate::error::StreamTooShort;
use crate::token_store::TokenStore;

/// Consecutive windows over parallel rows of one token stream.
#[derive(Debug, Clone)]
pub struct StreamWindows {
    store: Arc<TokenStore>,
    start: u64,
    rows: usize,
    row_len: usize,
    seq_len: usize,
}

impl StreamWindows {
    /// Cuts the stream at token positions `tokens` of `store` into `batch_size` rows (the
    /// remainder is dropped); an error when a row would hold fewer than two tokens.
    pub fn new(
        store: Arc<TokenStore>,
        tokens: Range<u64>,
        batch_size: usize,
        seq_len: usize,
    ) -> Result<Self, StreamTooShort> {
        let count = (tokens.end - tokens.start) as usize;
        let row_len = count / batch_size.max(1);
        if row_len < 2 {
            return Err(StreamTooShort {
                tokens: count,
                rows: batch_size,
            });
        }
        Ok(Self {
            store,
            start: tokens.start,
            rows: batch_size,
            row_len,
            seq_len,
        })
    }

    /// Windows per pass (the last one may be shorter than `seq_len`).
    pub fn count(&self) -> usize {
        (self.row_len - 1).div_ceil(self.seq_len)
    }

    /// Input positions per pass, over all rows.
    pub fn positions(&self) -> usize {
        self.rows * (self.row_len - 1)
    }

    /// Window `k`: inputs `[rows, len]` and the same positions one token later as targets.
    pub fn window(&self, k: usize) -> Batch {
        let start = k * self.seq_len;
        let len = self.seq_len.min(self.row_len - 1 - start);
        let mut b = Batch {
            batch_size: self.rows,
            seq_len: len,
            inputs: Vec::with_capacity(self.rows * len),
            targets: Vec::with_capacity(self.rows * len),
            weights: vec![1.0; self.rows * len],
            last_only: false,
        };
        let mut ids = Vec::with_capacity(len + 1);
        for r in 0..self.rows {
            let first = self.start + (r * self.row_len + start) as u64;
            ids.clear();
            self.store.read(first..first + len as u64 + 1, &mut ids);
            b.inputs.extend_from_slice(&ids[..len]);
            b.targets.extend_from_slice(&ids[1..]);
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_every_row_and_targets_are_shifted() {
        let store = Arc::new(TokenStore::in_memory((0..25).collect(), vec![0, 25]));
        let s = StreamWindows::new(Arc::clone(&store), 0..25, 2, 4).unwrap();
        assert_eq!(s.count(), 3);
        let w0 = s.window(0);
        assert_eq!(w0.inputs, [0, 1, 2, 3, 12, 13, 14, 15]);
        assert_eq!(w0.targets, [1, 2, 3, 4, 13, 14, 15, 16]);
        let w2 = s.window(2);
        assert_eq!(
            (w2.seq_len, w2.inputs.as_slice(), w2.targets.as_slice()),
            (3, &[8, 9, 10, 20, 21, 22][..], &[9, 10, 11, 21, 22, 23][..])
        );
        assert!(StreamWindows::new(Arc::clone(&store), 0..3, 2, 4).is_err());
        let held_out = StreamWindows::new(store, 20..25, 1, 4).unwrap();
        assert_eq!(held_out.window(0).inputs, [20, 21, 22, 23]);
    }
}
