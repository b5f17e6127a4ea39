//! One step of the LSTM cell for a batch of sequences, from the gates' pre-activations: what
//! the training forward pass and the decoder both run.

use crate::math::{Vectorised, sigmoid, tanh};

/// One step of the cell for every sequence: the gates' pre-activations `[B, 4H]` become
/// their activations (input, forget, cell, output) in place, and the new cell and hidden
/// states `[B, H]` are written.
pub(crate) struct CellForward<'a> {
    pub(crate) gates: &'a mut [f32],
    pub(crate) c_prev: &'a [f32],
    pub(crate) c_next: &'a mut [f32],
    pub(crate) h_next: &'a mut [f32],
    pub(crate) hd: usize,
}

impl Vectorised for CellForward<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let hd = self.hd;
        let states = self
            .c_prev
            .chunks_exact(hd)
            .zip(self.c_next.chunks_exact_mut(hd));
        let rows = self.gates.chunks_exact_mut(4 * hd).zip(states);
        // Short loops over few slices each: with more, the vectoriser gives up on proving
        // that they do not overlap.
        for ((row, (c_prev, c_next)), h_next) in rows.zip(self.h_next.chunks_exact_mut(hd)) {
            let (ifg, o) = row.split_at_mut(3 * hd);
            let (i_f, g) = ifg.split_at_mut(2 * hd);
            i_f.iter_mut().for_each(|x| *x = sigmoid(*x));
            g.iter_mut().for_each(|x| *x = tanh(*x));
            o.iter_mut().for_each(|x| *x = sigmoid(*x));
            let (i, f) = i_f.split_at(hd);
            for (((c, c_prev), (i, f)), g) in c_next
                .iter_mut()
                .zip(c_prev)
                .zip(i.iter().zip(f))
                .zip(g.iter())
            {
                *c = f * c_prev + i * g;
            }
            for ((h, c), o) in h_next.iter_mut().zip(c_next.iter()).zip(o.iter()) {
                *h = o * tanh(*c);
            }
        }
    }
}
