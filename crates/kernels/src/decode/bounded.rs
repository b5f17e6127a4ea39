//! Choices that hold for every vector within bounds: given per-entry lower and upper bounds
//! on logits known only approximately, the token that greedy decoding or a given random draw
//! picks, if it is the same for all logits within them. Generation uses these with the
//! half-precision output layer and computes the logits exactly only when they say it matters.

use crate::math::{Vectorised, exp, largest, widest_vectors};

/// Relative room for the f32 exponentials and the f64 sums below, at temperature 1 and
/// logits near 0; [`margin`] adds what grows with the logits' size over the temperature.
const MARGIN: f64 = 1e-4;

/// Relative room for each exponential `e^((bound - max) / temperature)` computed in f32: the
/// difference `bound - max` is rounded to about `2^-24` of the larger of the two, which the
/// division by the temperature multiplies, and the weights near the largest (the ones that
/// matter) have bounds near `max`; eight units of rounding of `|max| / temperature` cover it,
/// on top of [`MARGIN`] for the exponential itself and the sums.
fn margin(max: f32, temperature: f32) -> f64 {
    MARGIN + 8.0 * f64::from(f32::EPSILON) * f64::from(max.abs()) / f64::from(temperature)
}

/// Per-entry bounds on a vector: entry `i` lies within `slack[i] * scale` of `centre[i]`.
#[derive(Debug, Clone, Copy)]
pub struct Bounds<'a> {
    /// The approximate values.
    pub centre: &'a [f32],
    /// Each value's bound per unit of `scale`.
    pub slack: &'a [f32],
    /// What the slack is multiplied by.
    pub scale: f32,
}

impl Bounds<'_> {
    /// The lower bound of entry `i`.
    #[inline(always)]
    fn lo(&self, i: usize) -> f32 {
        self.centre[i] - self.slack[i] * self.scale
    }
}

/// The index of the largest entry if it is the same for every vector within `bounds`: the
/// first largest lower bound, when it is above every other entry's upper bound.
pub fn certain_argmax(bounds: Bounds<'_>) -> Option<usize> {
    let floor = widest_vectors(Largest(bounds));
    let best = (0..bounds.centre.len()).position(|i| bounds.lo(i) == floor)?;
    // The best's own upper bound is one; any other could reach the best's floor.
    let reaching = widest_vectors(Reaching { bounds, floor });
    (reaching == 1).then_some(best)
}

/// The largest lower bound.
struct Largest<'a>(Bounds<'a>);

impl Vectorised for Largest<'_> {
    type Output = f32;

    #[inline(always)]
    fn run(self) -> f32 {
        let Bounds {
            centre,
            slack,
            scale,
        } = self.0;
        largest(centre, slack, |c, s| c - s * scale)
    }
}

/// How many upper bounds are at least `floor`.
struct Reaching<'a> {
    bounds: Bounds<'a>,
    floor: f32,
}

impl Vectorised for Reaching<'_> {
    type Output = usize;

    #[inline(always)]
    fn run(self) -> usize {
        let Bounds {
            centre,
            slack,
            scale,
        } = self.bounds;
        let above = centre
            .iter()
            .zip(slack)
            .map(|(c, s)| u32::from(c + s * scale >= self.floor));
        above.fold(0u32, u32::wrapping_add) as usize
    }
}

/// The index that the draw `u` in `[0, 1)` picks from `softmax(v / temperature)` (the first
/// index whose cumulative probability exceeds `u`) if it is the same for every vector `v`
/// within `bounds`.
pub fn certain_draw(bounds: Bounds<'_>, temperature: f32, u: f64) -> Option<usize> {
    let n = bounds.centre.len();
    // The largest upper bound: the largest lower bound of the bounds with the slack negated.
    let max = widest_vectors(Largest(Bounds {
        scale: -bounds.scale,
        ..bounds
    }));
    if !max.is_finite() {
        return None;
    }
    let mut weights = vec![0.0f32; 2 * n];
    let (low, high) = weights.split_at_mut(n);
    widest_vectors(Exponentials {
        bounds,
        low,
        high,
        max,
        scale: 1.0 / temperature,
    });
    let (low, high) = (&*low, &*high);
    let total_low: f64 = low.iter().map(|&w| f64::from(w)).sum();
    let total_high: f64 = high.iter().map(|&w| f64::from(w)).sum();
    let tolerance = 1e-9 * total_high;
    let margin = margin(max, temperature);
    // The first k at which even the smallest cumulative weight beats the largest share of the
    // total the draw can ask for: no vector in the bounds picks a later index.
    let (mut below_low, mut below_high) = (0.0f64, 0.0f64);
    for (k, (&l, &h)) in low.iter().zip(high).enumerate() {
        let (through_low, through_high) = (below_low + f64::from(l), below_high + f64::from(h));
        let reached = (1.0 - u) * through_low * (1.0 - margin);
        let asked = u * (total_high - through_high) * (1.0 + margin);
        if reached - asked > tolerance {
            // Nor an earlier one: the weight before k falls short of the smallest share.
            let left = u * (total_low - below_low) * (1.0 - margin);
            let before = (1.0 - u) * below_high * (1.0 + margin);
            return (left - before > tolerance).then_some(k);
        }
        (below_low, below_high) = (through_low, through_high);
    }
    None
}

/// `e^((bound - max) * scale)` of every lower and upper bound, for bounds at most `max`.
struct Exponentials<'a> {
    bounds: Bounds<'a>,
    low: &'a mut [f32],
    high: &'a mut [f32],
    max: f32,
    scale: f32,
}

impl Vectorised for Exponentials<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Bounds {
            centre,
            slack,
            scale,
        } = self.bounds;
        let weights = self.low.iter_mut().zip(self.high.iter_mut());
        for ((lo, hi), (c, s)) in weights.zip(centre.iter().zip(slack)) {
            *lo = exp((c - s * scale - self.max) * self.scale);
            *hi = exp((c + s * scale - self.max) * self.scale);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `e^((x - max) / temperature)` of every logit `x`, in f64.
    pub(crate) fn softmax_weights(logits: &[f64], temperature: f32) -> Vec<f64> {
        let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let t = f64::from(temperature);
        logits.iter().map(|&x| ((x - max) / t).exp()).collect()
    }

    /// The reference, in f64: the first index whose cumulative softmax(logits / temperature)
    /// exceeds `u`.
    pub(crate) fn draw(logits: &[f64], temperature: f32, u: f64) -> usize {
        let weights = softmax_weights(logits, temperature);
        let mut left = u * weights.iter().sum::<f64>();
        for (i, w) in weights.iter().enumerate() {
            left -= w;
            if left < 0.0 {
                return i;
            }
        }
        logits.len() - 1
    }

    /// Whenever a choice is certain, every vector tried within the bounds makes it; with
    /// tight bounds most draws are certain, and a draw on a boundary is not.
    #[test]
    fn certain_choices_hold_across_the_bounds() {
        let n = 300;
        let centre: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 101) as f32 / 20.0).sin() * 4.0)
            .collect();
        let mut certain = 0;
        for (trial, width) in [1e-4f32, 1e-2, 0.3].into_iter().enumerate() {
            let slack = vec![width; n];
            let bounds = Bounds {
                centre: &centre,
                slack: &slack,
                scale: 1.0,
            };
            let corners: Vec<Vec<f32>> = (0..8)
                .map(|k| {
                    centre
                        .iter()
                        .enumerate()
                        .map(|(i, c)| {
                            c + width * (((i * 13 + k * 7 + trial) % 5) as f32 / 2.0 - 1.0)
                        })
                        .collect()
                })
                .collect();
            if let Some(best) = certain_argmax(bounds) {
                for v in &corners {
                    let top = v
                        .iter()
                        .enumerate()
                        .reduce(|a, b| if b.1 > a.1 { b } else { a });
                    assert_eq!(top.unwrap().0, best);
                }
            }
            for d in 0..200 {
                let u = (d as f64 + 0.5) / 200.0;
                for t in [0.2f32, 1.0] {
                    if let Some(k) = certain_draw(bounds, t, u) {
                        certain += 1;
                        for v in &corners {
                            let v: Vec<f64> = v.iter().map(|&x| f64::from(x)).collect();
                            assert_eq!(draw(&v, t, u), k, "width {width} u {u} t {t}");
                        }
                    }
                }
            }
        }
        assert!(certain > 400, "{certain} of 1200 draws certain");
        // Two equal logits: the draw at exactly half way is on their boundary.
        let equal = Bounds {
            centre: &[1.0, 1.0],
            slack: &[1e-3, 1e-3],
            scale: 1.0,
        };
        assert_eq!(certain_draw(equal, 1.0, 0.5), None);
        assert_eq!(certain_draw(equal, 1.0, 0.2), Some(0));
        assert_eq!(certain_argmax(equal), None);
        let apart = Bounds {
            centre: &[0.5, 2.5],
            slack: &[0.25, 0.25],
            scale: 2.0,
        };
        assert_eq!(certain_argmax(apart), Some(1));
    }
}
