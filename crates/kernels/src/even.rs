//! Work cut among the cores: contiguous parts whose sizes differ by at most one.

use std::ops::Range;

/// `0..len` cut into `parts` contiguous ranges, in order, whose lengths differ by at most one.
pub(crate) fn ranges(len: usize, parts: usize) -> impl Iterator<Item = Range<usize>> {
    (0..parts).map(move |i| i * len / parts..(i + 1) * len / parts)
}
