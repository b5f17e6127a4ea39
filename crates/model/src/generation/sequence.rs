//! One generation's progress, given the logits of each next position in turn: the token
//! picked from them, the text so far, what a stream may already show, and why it ended. A
//! [`super::Generator`] drives one sequence through its own logits; a [`super::Batch`] drives
//! many, one product for all of them per token.

use data::vocab::PAD_ID;
use data::{Tokenizer, Vocab};
use kernels::decode::bounded::Bounds;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::generator::{Completion, Finish, TokenLogprobs};
use super::sampling::{Sampling, held_back, stop_position};

/// What one generation asks for beyond its prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Most new tokens.
    pub max_tokens: usize,
    /// How each token is chosen.
    pub sampling: Sampling,
    /// Text that ends the generation where it begins.
    pub stops: Vec<String>,
    /// OpenAI's penalties and logit biases, applied before sampling.
    pub adjustments: Adjustments,
    /// Record each token's log-probability and this many most likely alternatives.
    pub logprobs: Option<usize>,
}

impl Settings {
    /// `max_tokens` tokens chosen by `sampling`, ending at `stops`, nothing else asked.
    pub fn new(max_tokens: usize, sampling: Sampling, stops: &[String]) -> Self {
        Self {
            max_tokens,
            sampling,
            stops: stops.to_vec(),
            adjustments: Adjustments::default(),
            logprobs: None,
        }
    }
}

/// OpenAI's `frequency_penalty`, `presence_penalty` and `logit_bias`: for each token j,
/// `logit[j] += bias[j] - count[j] * frequency - (count[j] > 0) * presence`, with `count[j]`
/// the times j was generated so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Adjustments {
    /// Subtracted once per earlier occurrence, in [-2, 2].
    pub frequency_penalty: f32,
    /// Subtracted once when the token occurred at all, in [-2, 2].
    pub presence_penalty: f32,
    /// Added to a token's logit, in [-100, 100].
    pub logit_bias: Vec<(u32, f32)>,
}

impl Adjustments {
    /// Whether these change no logit.
    pub fn is_empty(&self) -> bool {
        self.frequency_penalty == 0.0 && self.presence_penalty == 0.0 && self.logit_bias.is_empty()
    }

    /// Applies them to `logits` after the tokens `generated`.
    pub fn apply(&self, logits: &mut [f32], generated: &[u32]) {
        for &(id, bias) in &self.logit_bias {
            if let Some(logit) = logits.get_mut(id as usize) {
                *logit += bias;
            }
        }
        if self.frequency_penalty == 0.0 && self.presence_penalty == 0.0 {
            return;
        }
        let mut counts = vec![0u32; logits.len()];
        for &id in generated {
            if let Some(count) = counts.get_mut(id as usize) {
                *count += 1;
            }
        }
        for (logit, &count) in logits.iter_mut().zip(&counts).filter(|(_, c)| **c > 0) {
            *logit -= count as f32 * self.frequency_penalty + self.presence_penalty;
        }
    }
}

/// The next position's logits, as a source has them.
pub trait Logits {
    /// The token `sampling` takes with the draw `u`, after `generated`.
    fn pick(&mut self, sampling: &Sampling, generated: &[u32], u: f64) -> u32;
    /// The logits in full precision.
    fn exact(&mut self) -> &[f32];
}

/// Logits computed in full precision.
pub struct ExactLogits<'a>(pub &'a [f32]);

impl Logits for ExactLogits<'_> {
    fn pick(&mut self, sampling: &Sampling, generated: &[u32], u: f64) -> u32 {
        sampling.choose(self.0, generated, u)
    }

    fn exact(&mut self) -> &[f32] {
        self.0
    }
}

/// Logits in half precision with the bound on their rounding, the full-precision ones
/// computed only when the bound cannot settle a pick.
pub trait BoundedLogits {
    /// The half-precision logits and their bound.
    fn approximate(&mut self) -> Bounds<'_>;
    /// The logits in full precision.
    fn exact(&mut self) -> &[f32];
}

impl<B: BoundedLogits> Logits for B {
    fn pick(&mut self, sampling: &Sampling, generated: &[u32], u: f64) -> u32 {
        let certain = sampling.choose_within(self.approximate(), generated, u);
        certain.unwrap_or_else(|| sampling.choose(BoundedLogits::exact(self), generated, u))
    }

    fn exact(&mut self) -> &[f32] {
        BoundedLogits::exact(self)
    }
}

/// One generation under way.
pub struct Sequence<'v> {
    vocab: &'v Vocab,
    separator: &'static str,
    settings: Settings,
    rng: StdRng,
    /// The prompt and then every generated id.
    all: Vec<u32>,
    prompt_len: usize,
    /// The generated text, grown a token at a time as `decode` would join it.
    text: String,
    logprobs: Vec<TokenLogprobs>,
    /// Bytes of text and entries of `logprobs` already handed to `emit`.
    emitted: (usize, usize),
    finish: Option<Finish>,
}

impl<'v> Sequence<'v> {
    /// A generation after `prompt` (ids of `vocab`, split by `tokenizer`) as `settings` ask,
    /// its draws seeded by `seed`.
    pub fn new(
        vocab: &'v Vocab,
        tokenizer: Tokenizer,
        prompt: &[u32],
        settings: Settings,
        seed: u64,
    ) -> Self {
        Self::with_rng(
            vocab,
            tokenizer,
            prompt,
            settings,
            StdRng::seed_from_u64(seed),
        )
    }

    /// [`Sequence::new`] drawing from `rng` (a generator's, handed back by
    /// [`Sequence::finish`]).
    pub(crate) fn with_rng(
        vocab: &'v Vocab,
        tokenizer: Tokenizer,
        prompt: &[u32],
        settings: Settings,
        rng: StdRng,
    ) -> Self {
        let finish = (settings.max_tokens == 0).then_some(Finish::Length);
        Self {
            vocab,
            separator: tokenizer.separator(),
            settings,
            rng,
            all: prompt.to_vec(),
            prompt_len: prompt.len(),
            text: String::new(),
            logprobs: Vec::new(),
            emitted: (0, 0),
            finish,
        }
    }

    /// The prompt's ids and every id generated so far.
    pub fn ids(&self) -> &[u32] {
        &self.all
    }

    /// Whether the generation has ended.
    pub fn is_finished(&self) -> bool {
        self.finish.is_some()
    }

    /// Takes the next token from `logits` (those after every id so far) and hands `emit` the
    /// text that is now clear (held back while it may begin a stop string) with the
    /// log-probabilities of the tokens it completes. Returns the id to run through the model
    /// next, or `None` when the generation has ended: the stop id, a stop string, the token
    /// limit, or `emit` returning false (a reader that went away).
    pub fn advance(
        &mut self,
        logits: &mut impl Logits,
        mut emit: impl FnMut(&str, &[TokenLogprobs]) -> bool,
    ) -> Option<u32> {
        if self.finish.is_some() {
            return None;
        }
        let generated = &self.all[self.prompt_len..];
        let sampling = &self.settings.sampling;
        let u = sampling.draw(&mut self.rng);
        let next = match self.settings.adjustments.is_empty() {
            true => logits.pick(sampling, generated, u),
            false => {
                let mut adjusted = logits.exact().to_vec();
                self.settings.adjustments.apply(&mut adjusted, generated);
                sampling.choose(&adjusted, generated, u)
            }
        };
        if next == PAD_ID {
            return self.end(Finish::Stop);
        }
        if let Some(n) = self.settings.logprobs {
            self.logprobs
                .push(TokenLogprobs::new(logits.exact(), next, n));
        }
        if self.all.len() > self.prompt_len {
            self.text.push_str(self.separator);
        }
        self.text.push_str(self.vocab.token(next));
        self.all.push(next);
        if let Some(cut) = stop_position(&self.text, &self.settings.stops) {
            self.text.truncate(cut);
            return self.end(Finish::Stop);
        }
        let clear = self.text.len() - held_back(&self.text, &self.settings.stops);
        let (text, entries) = self.emitted;
        if clear > text {
            if !emit(&self.text[text..clear], &self.logprobs[entries..]) {
                return self.end(Finish::Stop);
            }
            self.emitted = (clear, self.logprobs.len());
        }
        if self.all.len() - self.prompt_len >= self.settings.max_tokens {
            return self.end(Finish::Length);
        }
        Some(next)
    }

    fn end(&mut self, finish: Finish) -> Option<u32> {
        self.finish = Some(finish);
        None
    }

    /// The completion, once ended, after handing `emit` whatever text or log-probabilities it
    /// has not had yet; with the random generator, to go on drawing from.
    pub fn finish(self, emit: impl FnOnce(&str, &[TokenLogprobs]) -> bool) -> (Completion, StdRng) {
        let (text, entries) = self.emitted;
        if self.text.len() > text || self.logprobs.len() > entries {
            emit(&self.text[text..], &self.logprobs[entries..]);
        }
        let mut all = self.all;
        let completion = Completion {
            ids: all.split_off(self.prompt_len),
            text: self.text,
            finish: self.finish.unwrap_or(Finish::Stop),
            logprobs: self.logprobs,
        };
        (completion, self.rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjustments_follow_openais_formulas() {
        let adjustments = Adjustments {
            frequency_penalty: 0.5,
            presence_penalty: 1.0,
            logit_bias: vec![(3, -100.0), (9, 2.0)],
        };
        let mut logits = vec![0.0f32; 5];
        adjustments.apply(&mut logits, &[1, 1, 2, 1]);
        assert_eq!(logits, [0.0, -2.5, -1.5, -100.0, 0.0]);
        assert!(Adjustments::default().is_empty() && !adjustments.is_empty());
    }
}
