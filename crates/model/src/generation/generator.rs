//! Text generation: the prompt is run through the model once, then one token at a time is
//! fed back with the LSTM state carried forward, until the stop id (0) or the token limit.
//! The training callback and `inference generate` both use this. A many-to-one model (trained
//! on windows or prefixes) instead predicts each token from the last `context` ids,
//! pre-padded with 0, from a zero state, as the n-gram prefix model's `generate_text` does.
//!
//! On the CPU with the fused kernels, an LSTM model generates through the kernels crate's
//! decoder, whose output layer is read in half precision: each pick is checked against the
//! bound on what that rounding can change, and the logits are computed in full precision
//! whenever the bound cannot rule out another token, so the tokens are those of the f32 model.

use std::sync::{Arc, OnceLock};

use burn::prelude::s;
use burn::tensor::Device;
use data::vocab::PAD_ID;
use data::{Tokenizer, Vocab};
use kernels::decode::bounded::Bounds;
use kernels::decode::decoder::{LstmDecoder, Session};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::sampling::{Sampling, probabilities, top};
use super::sequence::{BoundedLogits, ExactLogits, Logits, Sequence, Settings};
use crate::language_model::float_values;
use crate::recurrent::State;
use crate::{LanguageModel, ids_tensor};

/// A prompt converted to ids, with the words the vocabulary lacked.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// The prompt's ids (unknown words map to `[UNK]`).
    pub ids: Vec<u32>,
    /// Words of the prompt that are not in the vocabulary.
    pub unknown: Vec<String>,
}

impl Prompt {
    /// `text` split by `tokenizer` and mapped to the ids of `vocab`; an error if it has no
    /// token, or none the vocabulary knows.
    pub fn read(text: &str, tokenizer: Tokenizer, vocab: &Vocab) -> Result<Self, GenerationError> {
        let tokens = tokenizer.tokens(text);
        if tokens.is_empty() {
            return Err(GenerationError::EmptyPrompt(text.to_owned()));
        }
        let unknown: Vec<String> = tokens
            .iter()
            .filter(|t| !vocab.contains(t))
            .cloned()
            .collect();
        if unknown.len() == tokens.len() {
            return Err(GenerationError::AllUnknown {
                prompt: text.to_owned(),
                unit: match tokenizer {
                    Tokenizer::Word => "word",
                    Tokenizer::Char => "token",
                },
            });
        }
        let ids = tokens.iter().map(|t| vocab.id(t)).collect();
        Ok(Self { ids, unknown })
    }
}

/// A prompt that cannot be generated from.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GenerationError {
    /// The prompt standardises to no token at all.
    #[error("the prompt `{0}` has no tokens")]
    EmptyPrompt(String),
    /// No token of the prompt is in the vocabulary: the model would see only `[UNK]`, most
    /// likely a prompt meant for another model.
    #[error("no {unit} of the prompt `{prompt}` is in the model's vocabulary")]
    AllUnknown {
        /// The prompt as given.
        prompt: String,
        /// What its tokens are: `word`, or `token` for a character model.
        unit: &'static str,
    },
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The model chose the stop token, or a stop string appeared.
    Stop,
    /// The token limit was reached.
    Length,
}

/// What one generation produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The generated ids (a stop string's tokens included; the stop token not).
    pub ids: Vec<u32>,
    /// Their text, cut where a stop string begins.
    pub text: String,
    /// Why generation ended.
    pub finish: Finish,
    /// One entry per id when [`Generator::with_logprobs`] asked for them, else empty.
    pub logprobs: Vec<TokenLogprobs>,
}

/// A generated token's natural-log probability under the model (temperature 1, before any
/// sampling setting) and the most likely tokens at that position: OpenAI's `logprobs`.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    /// The token chosen.
    pub id: u32,
    /// Its log-probability.
    pub logprob: f32,
    /// The most likely ids and their log-probabilities, most likely first.
    pub top: Vec<(u32, f32)>,
}

impl TokenLogprobs {
    /// The log-probability of `id` and of the `n` most likely tokens after `logits`.
    pub(crate) fn new(logits: &[f32], id: u32, n: usize) -> Self {
        let probs = probabilities(logits, 1.0);
        let log = |p: f64| p.ln() as f32;
        Self {
            id,
            logprob: log(probs[id as usize]),
            top: top(&probs, n)
                .into_iter()
                .map(|(i, p)| (i, log(p)))
                .collect(),
        }
    }
}

/// A model's weights copied once for generating on the CPU (see the module notes), for the
/// generators of one model to share: a server prepares it when it loads the model rather than
/// on every request (the textbook model takes about 20 ms).
#[derive(Debug, Clone, Default)]
pub struct PreparedDecoder(pub(crate) Option<Arc<LstmDecoder>>);

impl PreparedDecoder {
    /// Prepares `model` on `device`; holds nothing where generation runs through tensors.
    pub fn new(model: &LanguageModel, device: &Device) -> Self {
        Self(super::decoding::decoder(model, device).map(Arc::new))
    }
}

/// A trained model with its vocabulary and a seeded random generator.
pub struct Generator<'a> {
    model: &'a LanguageModel,
    vocab: &'a Vocab,
    tokenizer: Tokenizer,
    device: Device,
    rng: StdRng,
    context: Option<usize>,
    logprobs: Option<usize>,
    /// The CPU decoder, built on the first generation that can use it.
    decoder: OnceLock<Option<Arc<LstmDecoder>>>,
}

impl<'a> Generator<'a> {
    /// A generator whose sampling is reproducible for a given `seed`.
    pub fn new(
        model: &'a LanguageModel,
        vocab: &'a Vocab,
        tokenizer: Tokenizer,
        device: Device,
        seed: u64,
    ) -> Self {
        Self {
            model,
            vocab,
            tokenizer,
            device,
            rng: StdRng::seed_from_u64(seed),
            context: None,
            logprobs: None,
            decoder: OnceLock::new(),
        }
    }

    /// Predicts every token from the last `context` ids alone (a many-to-one model), or from
    /// the whole text with the state carried (`None`, the default).
    pub fn with_context(mut self, context: Option<usize>) -> Self {
        self.context = context;
        self
    }

    /// Records each generated token's log-probability and the `top` most likely alternatives
    /// in [`Completion::logprobs`] (`None`, the default, records nothing).
    pub fn with_logprobs(mut self, top: Option<usize>) -> Self {
        self.logprobs = top;
        self
    }

    /// Generates with `decoder`, prepared from this generator's model and device, instead of
    /// preparing its own on the first generation.
    pub fn with_decoder(self, decoder: &PreparedDecoder) -> Self {
        let _ = self.decoder.set(decoder.0.clone());
        self
    }

    /// Tokenizes `text` as the training data was and maps it to ids (see [`Prompt::read`]).
    pub fn prompt(&self, text: &str) -> Result<Prompt, GenerationError> {
        Prompt::read(text, self.tokenizer, self.vocab)
    }

    /// Runs `ids` through the model from `state`; returns the last position's logits.
    fn step(&self, ids: &[u32], state: Option<State>) -> (Vec<f32>, State) {
        let input = ids_tensor(ids, [1, ids.len()], &self.device);
        let (logits, state) = self.model.forward(input, state);
        (float_values(logits.slice(s![.., -1.., ..])), state)
    }

    /// Logits of every next token after `prompt` (see [`super::sampling::probabilities`]).
    pub fn next_token_logits(&self, prompt: &[u32]) -> Vec<f32> {
        match self.context {
            Some(n) => self.step(&window(prompt, n), None).0,
            None => self.step(prompt, None).0,
        }
    }

    /// Generates up to `max_tokens` new tokens after `prompt`, stopping early at the stop id
    /// (which is not returned) or where one of `stops` begins in the generated text.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        max_tokens: usize,
        sampling: &Sampling,
        stops: &[String],
    ) -> Completion {
        self.generate_streaming(prompt, max_tokens, sampling, stops, |_, _| true)
    }

    /// [`Generator::generate`], handing the text to `emit` piece by piece as it is generated
    /// (the pieces join to the completion's text: text that may begin a stop string is held
    /// back until it is clear), with the log-probabilities of the tokens that piece completes
    /// (empty unless asked for). Generation ends early when `emit` returns false.
    pub fn generate_streaming(
        &mut self,
        prompt: &[u32],
        max_tokens: usize,
        sampling: &Sampling,
        stops: &[String],
        emit: impl FnMut(&str, &[TokenLogprobs]) -> bool,
    ) -> Completion {
        let mut settings = Settings::new(max_tokens, *sampling, stops);
        settings.logprobs = self.logprobs;
        self.generate_with(prompt, settings, emit)
    }

    /// [`Generator::generate_streaming`] as `settings` ask (their `logprobs` replace
    /// [`Generator::with_logprobs`]'s).
    pub fn generate_with(
        &mut self,
        prompt: &[u32],
        settings: Settings,
        emit: impl FnMut(&str, &[TokenLogprobs]) -> bool,
    ) -> Completion {
        let decoder = self
            .decoder
            .get_or_init(|| PreparedDecoder::new(self.model, &self.device).0)
            .clone();
        match decoder {
            Some(decoder) => decoder.run(|session| {
                let mut source = DecoderLogits {
                    session,
                    context: self.context,
                };
                self.generate_from(&mut source, prompt, settings, emit)
            }),
            None => {
                let mut source = TensorLogits::default();
                self.generate_from(&mut source, prompt, settings, emit)
            }
        }
    }

    /// [`Generator::generate_with`] with the logits from `source`.
    fn generate_from(
        &mut self,
        source: &mut impl NextLogits,
        prompt: &[u32],
        settings: Settings,
        mut emit: impl FnMut(&str, &[TokenLogprobs]) -> bool,
    ) -> Completion {
        let rng = std::mem::replace(&mut self.rng, StdRng::seed_from_u64(0));
        let mut sequence = Sequence::with_rng(self.vocab, self.tokenizer, prompt, settings, rng);
        if !sequence.is_finished() {
            source.read(self, prompt, prompt.len());
        }
        while sequence.advance(source, &mut emit).is_some() {
            source.read(self, sequence.ids(), 1);
        }
        let (completion, rng) = sequence.finish(emit);
        self.rng = rng;
        completion
    }

    /// Each prompt token's log-probability after the tokens before it, with the `top` most
    /// likely alternatives there (OpenAI's `echo` with `logprobs`); the first token has none.
    pub fn prompt_logprobs(&self, prompt: &[u32], top: usize) -> Vec<TokenLogprobs> {
        let input = ids_tensor(prompt, [1, prompt.len()], &self.device);
        let (logits, _) = self.model.forward(input, None);
        let values = float_values(logits);
        let v = self.vocab.size();
        prompt
            .iter()
            .skip(1)
            .enumerate()
            .map(|(position, &id)| TokenLogprobs::new(&values[position * v..][..v], id, top))
            .collect()
    }

    /// The text of `ids`: words joined by spaces, as the chapter prints them, or characters.
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter()
            .map(|&i| self.vocab.token(i))
            .collect::<Vec<_>>()
            .join(self.separator())
    }

    /// What joins two decoded tokens: a space between words, nothing between characters.
    pub fn separator(&self) -> &'static str {
        self.tokenizer.separator()
    }
}

/// The last `n` of `ids`, pre-padded with the stop id to `n`.
pub(crate) fn window(ids: &[u32], n: usize) -> Vec<u32> {
    let start = ids.len().saturating_sub(n);
    let mut window = vec![PAD_ID; n - (ids.len() - start)];
    window.extend_from_slice(&ids[start..]);
    window
}

/// Where the next token's logits come from during one generation.
trait NextLogits: Logits {
    /// Moves on to the logits after `ids`, of which the last `new` have not been read yet.
    fn read(&mut self, generator: &Generator<'_>, ids: &[u32], new: usize);
}

/// Logits from the model's tensors, the state carried as a tensor.
#[derive(Default)]
struct TensorLogits {
    logits: Vec<f32>,
    state: Option<State>,
}

impl NextLogits for TensorLogits {
    fn read(&mut self, generator: &Generator<'_>, ids: &[u32], new: usize) {
        self.logits = match generator.context {
            Some(_) => generator.next_token_logits(ids),
            None => {
                let (logits, state) = generator.step(&ids[ids.len() - new..], self.state.take());
                self.state = Some(state);
                logits
            }
        };
    }
}

impl Logits for TensorLogits {
    fn pick(&mut self, sampling: &Sampling, generated: &[u32], u: f64) -> u32 {
        ExactLogits(&self.logits).pick(sampling, generated, u)
    }

    fn exact(&mut self) -> &[f32] {
        &self.logits
    }
}

/// Logits from the CPU decoder: half precision where the bound settles the pick.
struct DecoderLogits<'s, 'a> {
    session: &'s mut Session<'a>,
    context: Option<usize>,
}

impl NextLogits for DecoderLogits<'_, '_> {
    fn read(&mut self, _: &Generator<'_>, ids: &[u32], new: usize) {
        match self.context {
            Some(n) => {
                self.session.reset();
                window(ids, n).iter().for_each(|&id| self.session.feed(id));
            }
            None => ids[ids.len() - new..]
                .iter()
                .for_each(|&id| self.session.feed(id)),
        }
    }
}

impl BoundedLogits for DecoderLogits<'_, '_> {
    fn approximate(&mut self) -> Bounds<'_> {
        self.session.approximate()
    }

    fn exact(&mut self) -> &[f32] {
        self.session.exact()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ModelConfig;
    use burn::module::Param;
    use burn::tensor::{Tensor, TensorData};
    use kernels::Kernels;

    fn setup(favourite: usize) -> (LanguageModel, Vocab, Device) {
        let device = Device::flex();
        device.seed(5);
        let vocab = Vocab::build("recipe for roast chicken with salt".split(' '), 20);
        let mut model = ModelConfig::sized(8, 16).init(vocab.size(), &device);
        let mut bias = vec![0.0f32; vocab.size()];
        bias[favourite] = 50.0;
        model.output.bias = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(bias, [vocab.size()]),
            &device,
        )));
        (model, vocab, device)
    }

    #[test]
    fn generation_stops_at_the_stop_id_a_stop_string_or_the_limit() {
        let (model, vocab, device) = setup(0);
        let mut g = Generator::new(&model, &vocab, Tokenizer::Word, device.clone(), 1);
        let prompt = g.prompt("Recipe for").unwrap();
        let sampled = Sampling::with_temperature(1.0).unwrap();
        let done = g.generate(&prompt.ids, 10, &sampled, &[]);
        assert_eq!((done.ids.len(), done.finish), (0, Finish::Stop));

        let (model, vocab, device) = setup(3);
        let mut g = Generator::new(&model, &vocab, Tokenizer::Word, device, 1);
        let greedy = Sampling::greedy();
        let done = g.generate(&prompt.ids, 4, &greedy, &[]);
        assert_eq!((done.ids, done.finish), (vec![3, 3, 3, 3], Finish::Length));
        let word = vocab.token(3).to_owned();
        let stops = [format!("{word} {word}")];
        let done = g.generate(&prompt.ids, 4, &greedy, &stops);
        assert_eq!((done.ids.len(), done.finish), (2, Finish::Stop));
        assert_eq!(done.text, "");
    }

    /// The streamed pieces join to the same text as one call, for the same seed, with a stop
    /// string that the text first only begins.
    #[test]
    fn streamed_pieces_join_to_the_completion_text() {
        let device = Device::flex();
        device.seed(8);
        let vocab = Vocab::build("a b c d e f g h".split(' '), 20);
        let model = ModelConfig::sized(8, 16).init(vocab.size(), &device);
        let sampling = Sampling::with_temperature(1.5).unwrap();
        for stops in [vec![], vec!["c d".to_string(), "h h".to_string()]] {
            let mut whole = Generator::new(&model, &vocab, Tokenizer::Word, device.clone(), 4);
            let done = whole.generate(&[2], 30, &sampling, &stops);
            let mut streamed = Generator::new(&model, &vocab, Tokenizer::Word, device.clone(), 4);
            let mut pieces = Vec::new();
            let again = streamed.generate_streaming(&[2], 30, &sampling, &stops, |piece, _| {
                pieces.push(piece.to_owned());
                true
            });
            assert_eq!(again, done);
            assert_eq!(pieces.concat(), done.text, "{pieces:?}");
            assert!(pieces.len() > 1, "{pieces:?}");
        }
    }

    /// Greedy picks the most likely token, so each one's log-probability heads its own list;
    /// the probabilities of a list add up to at most 1.
    #[test]
    fn logprobs_describe_each_generated_token() {
        let device = Device::flex();
        device.seed(3);
        let vocab = Vocab::build("a b c d e f g h".split(' '), 20);
        let model = ModelConfig::sized(8, 16).init(vocab.size(), &device);
        let mut g =
            Generator::new(&model, &vocab, Tokenizer::Word, device, 0).with_logprobs(Some(3));
        let done = g.generate(&[2], 6, &Sampling::greedy(), &[]);
        assert_eq!(done.logprobs.len(), done.ids.len());
        for (entry, &id) in done.logprobs.iter().zip(&done.ids) {
            assert_eq!((entry.id, entry.top.len()), (id, 3));
            assert_eq!(entry.top[0], (id, entry.logprob));
            assert!(entry.top.windows(2).all(|w| w[0].1 >= w[1].1), "{entry:?}");
            let total: f32 = entry.top.iter().map(|(_, l)| l.exp()).sum();
            assert!(entry.logprob < 0.0 && total <= 1.0 + 1e-5, "{entry:?}");
        }
    }

    /// At the textbook's sizes (the output layer split between threads), with the output
    /// weights scaled up so that some picks are close calls, the CPU decoder picks the same
    /// tokens as Burn's own operations, and its logits agree with theirs.
    #[test]
    fn the_cpu_decoder_matches_the_tensor_path_at_the_textbooks_sizes() {
        let device = Device::flex();
        device.seed(11);
        let words: Vec<String> = (0..3000).map(|i| format!("w{i}")).collect();
        let vocab = Vocab::build(words.iter().map(String::as_str), 3000);
        let mut model = ModelConfig::default().init(vocab.size(), &device);
        model.output.weight = model.output.weight.clone().map(|w| w * 8.0);
        let reference = model.clone().with_kernels(Kernels::Reference);
        let prepared = PreparedDecoder::new(&model, &device);
        assert!(prepared.0.is_some());
        let settings = [
            Sampling::greedy(),
            Sampling::with_temperature(1.0).unwrap(),
            Sampling {
                repetition_penalty: 1.5,
                ..Sampling::with_temperature(0.3).unwrap()
            },
        ];
        for sampling in &settings {
            let generator = |model, seed| {
                Generator::new(model, &vocab, Tokenizer::Word, device.clone(), seed)
                    .with_logprobs(Some(1))
            };
            for seed in 0..3 {
                let fast = generator(&model, seed).with_decoder(&prepared).generate(
                    &[5, 9],
                    120,
                    sampling,
                    &[],
                );
                let stock = generator(&reference, seed).generate(&[5, 9], 120, sampling, &[]);
                assert_eq!(fast.ids, stock.ids, "{sampling:?} seed {seed}");
                for (a, b) in fast.logprobs.iter().zip(&stock.logprobs) {
                    assert!((a.logprob - b.logprob).abs() < 1e-4, "{a:?} vs {b:?}");
                }
            }
        }
    }

    /// Two tokens whose output weights round to the same half-precision values: the bound
    /// cannot separate them, so the decoder computes the logits in full and takes the one the
    /// f32 model takes, not the first of the tie.
    #[test]
    fn a_pick_half_precision_cannot_settle_is_made_in_full_precision() {
        let device = Device::flex();
        device.seed(4);
        let vocab = Vocab::build("a b c d e f".split(' '), 20);
        let (v, hd) = (vocab.size(), 16);
        let base = 0.099_975_586_f32; // an f16 value; adding 2e-5 rounds back to it
        let initial = ModelConfig::sized(8, hd).init(v, &device);
        let model_with = |nudge: f32| {
            let mut model = initial.clone();
            let mut weight = vec![0.0f32; hd * v];
            for h in 0..hd {
                weight[h * v + 2] = base;
                weight[h * v + 3] = base + nudge;
            }
            let mut bias = vec![-50.0f32; v];
            (bias[2], bias[3]) = (0.0, 0.0);
            model.output.weight =
                Param::from_tensor(Tensor::from_data(TensorData::new(weight, [hd, v]), &device));
            model.output.bias = Some(Param::from_tensor(Tensor::from_data(
                TensorData::new(bias, [v]),
                &device,
            )));
            model
        };
        let first = |model: &LanguageModel| {
            let mut g = Generator::new(model, &vocab, Tokenizer::Word, device.clone(), 0);
            g.generate(&[4], 1, &Sampling::greedy(), &[]).ids[0]
        };
        // The nudge's sign that makes token 3 the f32 model's choice.
        let nudge = match first(&model_with(2e-5).with_kernels(Kernels::Reference)) {
            3 => 2e-5,
            _ => -2e-5,
        };
        let model = model_with(nudge);
        assert_eq!(first(&model.clone().with_kernels(Kernels::Reference)), 3);
        assert_eq!(first(&model), 3);
    }

    #[test]
    fn carried_state_gives_the_same_logits_as_rerunning_the_prefix() {
        let device = Device::flex();
        device.seed(9);
        let vocab = Vocab::build("a b c d e f g".split(' '), 20);
        let model = ModelConfig::sized(8, 16).init(vocab.size(), &device);
        let g = Generator::new(&model, &vocab, Tokenizer::Word, device, 0);
        let ids = [2u32, 5, 3, 7, 4];
        let (_, mut state) = g.step(&ids[..1], None);
        let mut carried = Vec::new();
        for &id in &ids[1..] {
            let (logits, next) = g.step(&[id], Some(state));
            carried = logits;
            state = next;
        }
        let full = g.next_token_logits(&ids);
        for (a, b) in carried.iter().zip(&full) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        assert_eq!(g.prompt("A, b!").unwrap().unknown, [",", "!"]);
        assert_eq!(
            g.prompt("!?").unwrap_err(),
            GenerationError::AllUnknown {
                prompt: "!?".into(),
                unit: "word"
            }
        );
    }
}
