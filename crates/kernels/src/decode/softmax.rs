//! The softmax's weights of a vocabulary's logits, in f64 and vectorised: sampling reads all
//! of them for every token it draws, and libm's `exp` is a call per element.

use crate::math::{Vectorised, exp_f64, widest_vectors};

/// `out[i] = e^((logits[i] - max) / temperature)` in f64; returns their sum (added in
/// vector lanes, then the lanes).
pub fn weights(logits: &[f32], max: f32, temperature: f32, out: &mut Vec<f64>) -> f64 {
    out.clear();
    out.resize(logits.len(), 0.0);
    widest_vectors(Weights {
        logits,
        max: f64::from(max),
        temperature: f64::from(temperature),
        out,
    })
}

/// Partial sums kept apart, so the sum vectorises.
const LANES: usize = 8;

struct Weights<'a> {
    logits: &'a [f32],
    max: f64,
    temperature: f64,
    out: &'a mut [f64],
}

impl Vectorised for Weights<'_> {
    type Output = f64;

    #[inline(always)]
    fn run(self) -> f64 {
        for (o, &l) in self.out.iter_mut().zip(self.logits) {
            *o = exp_f64((f64::from(l) - self.max) / self.temperature);
        }
        let chunks = self.out.chunks_exact(LANES);
        let tail: f64 = chunks.remainder().iter().sum();
        let mut lanes = [0.0f64; LANES];
        for chunk in chunks {
            for (lane, w) in lanes.iter_mut().zip(chunk) {
                *lane += w;
            }
        }
        lanes.iter().sum::<f64>() + tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Within 2 ulp of libm's `exp` over the range sampling meets, and 0 below it.
    #[test]
    fn weights_match_libm() {
        let logits: Vec<f32> = (0..20_000).map(|i| -(i as f32) * 0.037).collect();
        let mut out = Vec::new();
        let sum = weights(&logits, 0.0, 0.9, &mut out);
        for (&l, &w) in logits.iter().zip(&out) {
            let reference = (f64::from(l) / f64::from(0.9f32)).exp();
            let error = (w - reference).abs();
            assert!(
                error <= 2.0 * f64::EPSILON * reference || reference < 1e-307,
                "{l}: {w} vs {reference}"
            );
        }
        assert!((sum - out.iter().sum::<f64>()).abs() < 1e-12 * sum);
        let mut tiny = Vec::new();
        weights(&[-1000.0, 0.0], 0.0, 1.0, &mut tiny);
        assert_eq!(tiny, [0.0, 1.0]);
    }
}
