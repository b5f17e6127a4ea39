//! A matrix kept as two half-precision parts, for matrix-vector products that read half the
//! bytes of f32: the high part is the matrix rounded to f16, the low part what that rounding
//! lost (rounded to f16 again). The high part alone gives each product row to within a bound
//! [`HalfMatrix::slack`] states; high plus low gives it to about f32 precision. Generation
//! reads the output layer's 10,000 x 128 weights once per token: 2.5 MB in f16 rather than
//! 5 MB in f32, split between the cores so that each core's share stays in its own cache.

use std::ops::Range;

use half::f16;

pub use crate::block_product::BLOCK;
use crate::block_product::{Strides, accumulate};

/// Which part of a [`HalfMatrix`] a product reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The matrix rounded to f16.
    High,
    /// What the rounding lost, rounded to f16.
    Low,
}

/// A `[rows, cols]` matrix in blocks of [`BLOCK`] rows, column by column within a block (the
/// layout [`accumulate`] reads), as two f16 parts, and a bias per row in f32 that the high
/// part's products add.
#[derive(Debug, Clone)]
pub struct HalfMatrix {
    rows: usize,
    cols: usize,
    high: Vec<u16>,
    low: Vec<u16>,
    /// The bias, padded to whole blocks with zeros.
    bias: Vec<f32>,
    slack: Vec<f32>,
}

/// Relative slack for f32 rounding in a product row, on top of the f16 rounding, as a part of
/// the norm of the row with its bias times the norm of the vector with a 1 for the bias: an
/// f32 sum of `terms` terms, started from the bias, is off by at most `terms * 2^-24` of that,
/// both here and in the f32 product it stands for, so `terms * 2^-22` covers them twice over;
/// never below 2^-15 (what a 128-term row gets).
fn rounding(terms: usize) -> f64 {
    (terms as f64 / f64::from(1u32 << 22)).max(1.0 / 32_768.0)
}

impl HalfMatrix {
    /// Splits the row-major `[rows, cols]` matrix `values`, with `bias [rows]`.
    pub fn new(values: &[f32], bias: &[f32], cols: usize) -> Self {
        let rows = bias.len();
        assert_eq!(values.len(), rows * cols, "a [{rows}, {cols}] matrix");
        let blocks = rows.div_ceil(BLOCK);
        let mut padded_bias = bias.to_vec();
        padded_bias.resize(blocks * BLOCK, 0.0);
        let mut high = vec![0u16; blocks * BLOCK * cols];
        let mut low = vec![0u16; blocks * BLOCK * cols];
        let mut slack = Vec::with_capacity(rows);
        for (r, row) in values.chunks_exact(cols.max(1)).enumerate().take(rows) {
            let (b, j) = (r / BLOCK, r % BLOCK);
            let (mut lost, mut norm) = (0.0f64, 0.0f64);
            for (c, &w) in row.iter().enumerate() {
                let h = f16::from_f32(w);
                let rest = w - h.to_f32();
                let at = (b * cols + c) * BLOCK + j;
                high[at] = h.to_bits();
                low[at] = f16::from_f32(rest).to_bits();
                lost += f64::from(rest) * f64::from(rest);
                norm += f64::from(w) * f64::from(w);
            }
            // The accumulators start from the bias: it is one more term of the sum, against
            // an input of 1, and its rounding counts with the row's (it is not rounded to f16).
            norm += f64::from(bias[r]) * f64::from(bias[r]);
            slack.push((lost.sqrt() + rounding(cols + 1) * norm.sqrt()) as f32);
        }
        Self {
            rows,
            cols,
            high,
            low,
            bias: padded_bias,
            slack,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of blocks of [`BLOCK`] rows (the last one padded with zero rows).
    pub fn blocks(&self) -> usize {
        self.rows.div_ceil(BLOCK)
    }

    /// Per row, how far the high part's product (bias included) can be from the exact one, per
    /// unit of the Euclidean norm of the vector extended by a 1 (the bias's input): the f16
    /// rounding's norm (Cauchy-Schwarz) plus f32 rounding. [`HalfMatrix::scale`] gives that norm.
    pub fn slack(&self) -> &[f32] {
        &self.slack
    }

    /// What [`HalfMatrix::slack`] is per unit of for the vector `x`: `sqrt(|x|^2 + 1)`.
    pub fn scale(x: &[f32]) -> f32 {
        (x.iter().map(|v| v * v).sum::<f32>() + 1.0).sqrt()
    }

    /// `out[i] = Σ_c part[row][c] * x[c]`, plus the bias for the high part, for the rows of
    /// `blocks`, `out` holding `blocks.len() * BLOCK` values (padding rows give 0).
    pub fn product(&self, part: Part, blocks: Range<usize>, x: &[f32], out: &mut [f32]) {
        assert_eq!(x.len(), self.cols, "a vector of {} values", self.cols);
        assert_eq!(out.len(), blocks.len() * BLOCK, "room for the blocks' rows");
        let values = match part {
            Part::High => &self.high,
            Part::Low => &self.low,
        };
        let values = &values[blocks.start * BLOCK * self.cols..blocks.end * BLOCK * self.cols];
        match part {
            Part::High => out.copy_from_slice(&self.bias[blocks.start * BLOCK..blocks.end * BLOCK]),
            Part::Low => out.fill(0.0),
        }
        let strides = Strides {
            column: BLOCK,
            block: self.cols * BLOCK,
        };
        accumulate(values, strides, x, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(rows: usize, cols: usize) -> Vec<f32> {
        (0..rows * cols)
            .map(|i| ((i * 7919 % 2003) as f32 / 2003.0 - 0.5) * 0.7)
            .collect()
    }

    /// High within its slack of the f64 product, high plus low within f32 rounding, on every
    /// code path this CPU has, for a row count that leaves a padded last block.
    #[test]
    fn the_parts_give_each_row_within_its_slack() {
        let (rows, cols) = (150, 40);
        let values = matrix(rows, cols);
        let bias: Vec<f32> = (0..rows).map(|r| r as f32 / 100.0).collect();
        let m = HalfMatrix::new(&values, &bias, cols);
        let x: Vec<f32> = (0..cols).map(|c| (c as f32 * 0.37).sin()).collect();
        let blocks = 0..m.blocks();
        let (mut high, mut low) = (
            vec![0.0; blocks.len() * BLOCK],
            vec![0.0; blocks.len() * BLOCK],
        );
        m.product(Part::High, blocks.clone(), &x, &mut high);
        m.product(Part::Low, blocks, &x, &mut low);
        let mut portable = m.bias.clone();
        let strides = Strides {
            column: BLOCK,
            block: cols * BLOCK,
        };
        crate::block_product::accumulate_portable(&m.high, strides, &x, &mut portable, 0);
        for r in 0..rows {
            let row = &values[r * cols..][..cols];
            let exact: f64 = row
                .iter()
                .zip(&x)
                .map(|(&w, &v)| f64::from(w) * f64::from(v))
                .sum::<f64>()
                + f64::from(bias[r]);
            let bound = f64::from(m.slack()[r] * HalfMatrix::scale(&x));
            assert!((f64::from(high[r]) - exact).abs() <= bound, "row {r}");
            assert!(
                (f64::from(high[r] + low[r]) - exact).abs() <= 1e-5,
                "row {r}"
            );
            assert!((high[r] - portable[r]).abs() <= 1e-5, "row {r}");
            assert!(bound < 1e-2 && bound > 0.0, "row {r}: {bound}");
        }
        assert!(high[rows..].iter().all(|&v| v == 0.0));
    }
}
