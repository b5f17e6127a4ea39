//! Turning next-token logits into probabilities and picking a token from them.

use std::borrow::Cow;

use kernels::decode::bounded::{self, Bounds};
use kernels::decode::softmax;
use rand::Rng;

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Softmax temperature (> 0): below 1 sharpens, above 1 flattens the distribution.
    pub temperature: f32,
    /// Sample only among the `k` most likely tokens.
    pub top_k: Option<usize>,
    /// Nucleus sampling: only among the most likely tokens whose probabilities together
    /// reach `p` (in (0, 1]).
    pub top_p: Option<f32>,
    /// CTRL's repetition penalty over the tokens generated so far: their positive logits are
    /// divided by it, their negative ones multiplied (1 changes nothing).
    pub repetition_penalty: f32,
    /// Always take the most likely token (after the repetition penalty).
    pub greedy: bool,
}

impl Sampling {
    /// Plain sampling at `temperature`, checked to be a positive finite number.
    pub fn with_temperature(temperature: f32) -> Result<Self, SamplingError> {
        check_temperature(temperature)?;
        Ok(Self {
            temperature,
            greedy: false,
            ..Self::greedy()
        })
    }

    /// Always the most likely token.
    pub fn greedy() -> Self {
        Self {
            temperature: 1.0,
            top_k: None,
            top_p: None,
            repetition_penalty: 1.0,
            greedy: true,
        }
    }

    /// An error naming the first setting out of range.
    pub fn check(&self) -> Result<(), SamplingError> {
        check_temperature(self.temperature)?;
        if self.top_k == Some(0) {
            return Err(SamplingError::TopK);
        }
        if let Some(p) = self.top_p.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
            return Err(SamplingError::TopP(p));
        }
        let penalty = self.repetition_penalty;
        if !(penalty.is_finite() && penalty > 0.0) {
            return Err(SamplingError::RepetitionPenalty(penalty));
        }
        Ok(())
    }

    /// Picks a token id from `logits`, after the tokens `generated` so far.
    pub fn pick(&self, logits: &[f32], generated: &[u32], rng: &mut impl Rng) -> u32 {
        let u = self.draw(rng);
        self.choose(logits, generated, u)
    }

    /// The uniform number in `[0, 1)` a pick draws from `rng` (greedy draws none: 0).
    pub fn draw(&self, rng: &mut impl Rng) -> f64 {
        match self.greedy {
            true => 0.0,
            false => rng.random::<f64>(),
        }
    }

    /// The token [`Sampling::pick`] takes from `logits` when it draws `u`.
    pub fn choose(&self, logits: &[f32], generated: &[u32], u: f64) -> u32 {
        let logits = &*penalise_repetition(logits, generated, self.repetition_penalty);
        if self.greedy {
            return argmax(logits);
        }
        let plain = self.top_k.is_none_or(|k| k == 0 || k >= logits.len())
            && self.top_p.is_none_or(|p| p >= 1.0);
        if plain {
            // The inverse of the cumulative weights at u times their sum: the same draw as
            // normalising first, without the pass.
            let (weights, total) = weights(logits, self.temperature);
            return inverse(&weights, u * total).unwrap_or_else(|| argmax(logits));
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
        if let Some(p) = self.top_p.filter(|&p| p < 1.0) {
            keep_nucleus(&mut probs, f64::from(p));
        }
        let total: f64 = probs.iter().sum();
        inverse(&probs, u * total).unwrap_or_else(|| argmax(logits))
    }

    /// The token [`Sampling::choose`] takes for every logit vector within `bounds`, if it is
    /// the same for all of them (top-k and top-p are not resolved this way: `None`).
    pub fn choose_within(&self, bounds: Bounds<'_>, generated: &[u32], u: f64) -> Option<u32> {
        let n = bounds.centre.len();
        if self.top_k.is_some_and(|k| k > 0 && k < n) || self.top_p.is_some_and(|p| p < 1.0) {
            return None;
        }
        let (centre, slack) = penalise_bounds(bounds, generated, self.repetition_penalty);
        let bounds = Bounds {
            centre: &centre,
            slack: &slack,
            scale: bounds.scale,
        };
        let chosen = match self.greedy {
            true => bounded::certain_argmax(bounds),
            false => bounded::certain_draw(bounds, self.temperature, u),
        };
        chosen.map(|i| i as u32)
    }
}

/// The first index at which the running sum of `weights` passes `target`, if one does.
fn inverse(weights: &[f64], mut target: f64) -> Option<u32> {
    for (i, w) in weights.iter().enumerate() {
        target -= w;
        if target < 0.0 {
            return Some(i as u32);
        }
    }
    None
}

/// `logits` with CTRL's penalty applied to every token id in `generated` (borrowed unchanged
/// when there is nothing to penalise).
fn penalise_repetition<'a>(logits: &'a [f32], generated: &[u32], penalty: f32) -> Cow<'a, [f32]> {
    if penalty == 1.0 || generated.is_empty() {
        return Cow::Borrowed(logits);
    }
    let mut out = logits.to_vec();
    for id in distinct(generated, logits.len()) {
        out[id] = penalise(out[id], penalty);
    }
    Cow::Owned(out)
}

/// Bounds `centre[i] ± slack[i] * scale` after CTRL's penalty, as a centre and a slack again
/// (borrowed unchanged when there is nothing to penalise): the penalty is increasing, so a
/// bound's ends map to the new bound's ends.
fn penalise_bounds<'a>(
    bounds: Bounds<'a>,
    generated: &[u32],
    penalty: f32,
) -> (Cow<'a, [f32]>, Cow<'a, [f32]>) {
    let Bounds {
        centre,
        slack,
        scale,
    } = bounds;
    if penalty == 1.0 || generated.is_empty() || scale <= 0.0 {
        let centre = penalise_repetition(centre, generated, penalty);
        return (centre, Cow::Borrowed(slack));
    }
    let (mut c, mut s) = (centre.to_vec(), slack.to_vec());
    for id in distinct(generated, centre.len()) {
        let (lo, hi) = (c[id] - s[id] * scale, c[id] + s[id] * scale);
        let (lo, hi) = (penalise(lo, penalty), penalise(hi, penalty));
        c[id] = 0.5 * (lo + hi);
        // Widened by a part in 10^5 for the rounding of the centre and half-width.
        s[id] = 0.5 * (hi - lo) / scale * (1.0 + 1e-5) + 1e-5 * c[id].abs() / scale;
    }
    (Cow::Owned(c), Cow::Owned(s))
}

/// CTRL's penalty of one logit: a positive one divided by `penalty`, a negative one multiplied.
fn penalise(logit: f32, penalty: f32) -> f32 {
    if logit > 0.0 {
        logit / penalty
    } else {
        logit * penalty
    }
}

/// The ids in `generated` below `len`, each once.
fn distinct(generated: &[u32], len: usize) -> impl Iterator<Item = usize> + '_ {
    let mut seen = vec![false; len];
    generated
        .iter()
        .map(|&id| id as usize)
        .filter(move |&id| id < len && !std::mem::replace(&mut seen[id], true))
}

/// Zeroes every probability outside the smallest set of most likely tokens whose probabilities
/// together reach `p` of the (possibly already filtered) total.
fn keep_nucleus(probs: &mut [f64], p: f64) {
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    let target = p * probs.iter().sum::<f64>();
    let mut sum = 0.0;
    let mut kept = 0;
    for &i in &order {
        if sum >= target {
            break;
        }
        sum += probs[i];
        kept += 1;
    }
    for &i in &order[kept..] {
        probs[i] = 0.0;
    }
}

/// How many bytes at the end of `text` could begin one of `stops` (text a stream holds back
/// until the next token shows whether the stop string follows).
pub fn held_back(text: &str, stops: &[String]) -> usize {
    stops
        .iter()
        .flat_map(|stop| {
            (1..stop.len())
                .filter(|&k| stop.is_char_boundary(k) && text.ends_with(&stop[..k]))
                .max()
        })
        .max()
        .unwrap_or(0)
}

/// Where the first of `stops` begins in `text` (the byte offset), if any does.
pub fn stop_position(text: &str, stops: &[String]) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
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
    /// A top-k of 0.
    #[error("top_k must be at least 1")]
    TopK,
    /// A top-p outside (0, 1].
    #[error("top_p must be in (0, 1], got {0}")]
    TopP(f32),
    /// A repetition penalty that is not a number above 0.
    #[error("repetition_penalty must be a number greater than 0, got {0}")]
    RepetitionPenalty(f32),
}

impl SamplingError {
    /// The setting at fault, as the server's requests spell it (`top_p`); the CLI's flag is
    /// the same with dashes (`--top-p`).
    pub fn setting(&self) -> &'static str {
        match self {
            SamplingError::Temperature(_) => "temperature",
            SamplingError::TopK => "top_k",
            SamplingError::TopP(_) => "top_p",
            SamplingError::RepetitionPenalty(_) => "repetition_penalty",
        }
    }
}

/// `softmax(logits / temperature)`, the same as the chapter's `probs ** (1 / temperature)`
/// renormalised, computed in f64 so low temperatures do not underflow to NaN.
pub fn probabilities(logits: &[f32], temperature: f32) -> Vec<f64> {
    let (mut weights, sum) = weights(logits, temperature);
    weights.iter_mut().for_each(|w| *w /= sum);
    weights
}

/// `e^((logit - max) / temperature)` of every logit, and their sum: the softmax before it is
/// normalised.
fn weights(logits: &[f32], temperature: f32) -> (Vec<f64>, f64) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut weights = Vec::new();
    let sum = softmax::weights(logits, max, temperature, &mut weights);
    (weights, sum)
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
    fn greedy_top_k_and_bad_settings() {
        let logits = [0.0f32, 3.0, 2.9, -1.0];
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(Sampling::greedy().pick(&logits, &[], &mut rng), 1);
        let top2 = Sampling {
            top_k: Some(2),
            ..Sampling::with_temperature(5.0).unwrap()
        };
        for _ in 0..200 {
            assert!(matches!(top2.pick(&logits, &[], &mut rng), 1 | 2));
        }
        assert!(Sampling::with_temperature(0.0).is_err());
        assert!(Sampling::with_temperature(-1.0).is_err());
        assert!(Sampling::with_temperature(f32::NAN).is_err());
        let plain = Sampling::with_temperature(1.0).unwrap();
        for bad in [
            Sampling {
                top_k: Some(0),
                ..plain
            },
            Sampling {
                top_p: Some(0.0),
                ..plain
            },
            Sampling {
                top_p: Some(1.5),
                ..plain
            },
            Sampling {
                repetition_penalty: 0.0,
                ..plain
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
        assert!(plain.check().is_ok());
        assert_eq!(
            top(&probabilities(&logits, 1.0), 2)
                .iter()
                .map(|t| t.0)
                .collect::<Vec<_>>(),
            [1, 2]
        );
    }

    /// Probabilities 0.5, 0.3, 0.15, 0.05: top-p keeps the fewest most likely tokens whose
    /// probabilities reach p, and samples among all of those.
    #[test]
    fn top_p_keeps_the_smallest_set_that_reaches_p() {
        let logits = [0.5f32, 0.3, 0.15, 0.05].map(f32::ln);
        let mut rng = StdRng::seed_from_u64(2);
        for (p, kept) in [(0.45, vec![0]), (0.75, vec![0, 1]), (0.9, vec![0, 1, 2])] {
            let sampling = Sampling {
                top_p: Some(p),
                ..Sampling::with_temperature(1.0).unwrap()
            };
            let mut seen = vec![false; logits.len()];
            for _ in 0..2000 {
                seen[sampling.pick(&logits, &[], &mut rng) as usize] = true;
            }
            let picked: Vec<usize> = (0..logits.len()).filter(|&i| seen[i]).collect();
            assert_eq!(picked, kept, "top_p {p}");
        }
    }

    #[test]
    fn a_repetition_penalty_of_one_changes_nothing_and_above_one_avoids_repeats() {
        let logits = [0.2f32, 1.1, -0.4, 0.9, 0.0];
        let generated = [1, 3, 1];
        let plain = Sampling::with_temperature(0.8).unwrap();
        let (mut a, mut b) = (StdRng::seed_from_u64(3), StdRng::seed_from_u64(3));
        for _ in 0..200 {
            assert_eq!(
                plain.pick(&logits, &generated, &mut a),
                plain.pick(&logits, &[], &mut b)
            );
        }
        let mut penalised = |logits: &[f32]| {
            Sampling {
                repetition_penalty: 1.2,
                ..Sampling::greedy()
            }
            .pick(logits, &[0], &mut a)
        };
        // A positive logit is divided (2.0 -> 1.67), a negative one multiplied (-1.0 -> -1.2).
        assert_eq!(penalised(&[2.0, 1.9]), 1);
        assert_eq!(penalised(&[-1.0, -1.1]), 1);
    }

    #[test]
    fn stop_strings_cut_where_the_first_begins() {
        let stops = ["three".to_string(), ".".to_string(), String::new()];
        assert_eq!(stop_position("one two. three", &stops), Some(7));
        assert_eq!(stop_position("one two three", &stops), Some(8));
        assert_eq!(stop_position("one two", &stops), None);
        assert_eq!(held_back("one thr", &stops), 3);
        assert_eq!(held_back("one two", &stops), 0);
    }
}
