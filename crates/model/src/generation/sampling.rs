//! Turning next-token logits into probabilities and picking a token from them.

use rand::Rng;

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Softmax temperature (> 0): below 1 sharpens, above 1 flattens the distribution.
    pub temperature: f32,
    /// Sample only among the `k` most likely tokens.
    pub top_k: Option<usize>,
    /// Always take the most likely token (temperature and top-k are then irrelevant).
    pub greedy: bool,
}

impl Sampling {
    /// Plain sampling at `temperature`, checked to be a positive finite number.
    pub fn with_temperature(temperature: f32) -> Result<Self, SamplingError> {
        check_temperature(temperature)?;
        Ok(Self {
            temperature,
            top_k: None,
            greedy: false,
        })
    }

    /// Always the most likely token.
    pub fn greedy() -> Self {
        Self {
            temperature: 1.0,
            top_k: None,
            greedy: true,
        }
    }

    /// Picks a token id from `logits`.
    pub fn pick(&self, logits: &[f32], rng: &mut impl Rng) -> u32 {
        if self.greedy {
            return argmax(logits);
        }
        let mut probs = probabilities(logits, self.temperature);
        if let Some(k) = self.top_k.filter(|&k| k > 0 && k < probs.len()) {
            let mut sorted: Vec<f64> = probs.clone();
            sorted.sort_unstable_by(|a, b| b.total_cmp(a));
            let cutoff = sorted[k - 1];
            let mut kept = 0;
            for p in probs.iter_mut() {
                if *p < cutoff || kept == k {
                    *p = 0.0;
                } else {
                    kept += 1;
                }
            }
        }
        let total: f64 = probs.iter().sum();
        let mut u = rng.random::<f64>() * total;
        for (i, p) in probs.iter().enumerate() {
            u -= p;
            if u < 0.0 {
                return i as u32;
            }
        }
        argmax(logits)
    }
}

/// An error unless `temperature` is a positive finite number.
pub fn check_temperature(temperature: f32) -> Result<(), SamplingError> {
    if temperature.is_finite() && temperature > 0.0 {
        Ok(())
    } else {
        Err(SamplingError::Temperature(temperature))
    }
}

/// A sampling setting out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplingError {
    /// A temperature that is not a number above 0.
    #[error("temperature must be a number greater than 0, got {0}")]
    Temperature(f32),
}

/// `softmax(logits / temperature)`, the same as the chapter's `probs ** (1 / temperature)`
/// renormalised, computed in f64 so low temperatures do not underflow to NaN.
pub fn probabilities(logits: &[f32], temperature: f32) -> Vec<f64> {
    let t = f64::from(temperature);
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exps: Vec<f64> = logits
        .iter()
        .map(|&l| ((l as f64 - max) / t).exp())
        .collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// The `n` most likely ids with their probabilities, most likely first (ties by lower id).
pub fn top(probs: &[f64], n: usize) -> Vec<(u32, f64)> {
    let mut ranked: Vec<(u32, f64)> = probs
        .iter()
        .enumerate()
        .map(|(i, &p)| (i as u32, p))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.truncate(n);
    ranked
}

fn argmax(logits: &[f32]) -> u32 {
    logits
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &l)| {
            if l > best.1 { (i, l) } else { best }
        })
        .0 as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn temperature_matches_the_chapters_power_formula() {
        let logits = [1.0f32, 2.0, 0.5];
        let p1 = probabilities(&logits, 1.0);
        let pow: Vec<f64> = p1.iter().map(|p| p.powf(1.0 / 0.2)).collect();
        let s: f64 = pow.iter().sum();
        for (a, b) in probabilities(&logits, 0.2)
            .iter()
            .zip(pow.iter().map(|p| p / s))
        {
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
        assert!((p1.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn greedy_top_k_and_bad_temperatures() {
        let logits = [0.0f32, 3.0, 2.9, -1.0];
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(Sampling::greedy().pick(&logits, &mut rng), 1);
        let top2 = Sampling {
            temperature: 5.0,
            top_k: Some(2),
            greedy: false,
        };
        for _ in 0..200 {
            assert!(matches!(top2.pick(&logits, &mut rng), 1 | 2));
        }
        assert!(Sampling::with_temperature(0.0).is_err());
        assert!(Sampling::with_temperature(-1.0).is_err());
        assert!(Sampling::with_temperature(f32::NAN).is_err());
        assert_eq!(
            top(&probabilities(&logits, 1.0), 2)
                .iter()
                .map(|t| t.0)
                .collect::<Vec<_>>(),
            [1, 2]
        );
    }
}
