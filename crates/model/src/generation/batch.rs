//! Many generations decoded together, as serving systems batch them: each sequence keeps its
//! own LSTM state, sampler, seed, stop strings and penalties, and joins or leaves at any
//! step, while the output layer, most of the bytes a token reads, is one matrix product for
//! all of them per step. A sequence's tokens do not depend on what else is in the batch: its
//! row of the product is the same number for number (see
//! [`kernels::decode::decoder::LstmDecoder::logits_of`]).

use std::sync::Arc;

use rayon::prelude::*;

use kernels::decode::decoder::{LstmDecoder, LstmState};

use super::generator::{Completion, PreparedDecoder, TokenLogprobs, window};
use super::sequence::{ExactLogits, Sequence};

/// Sequences decoded together, each carrying a `T` (where its text goes).
pub struct Batch<'v, T> {
    decoder: Arc<LstmDecoder>,
    context: Option<usize>,
    members: Vec<Member<'v, T>>,
    logits: Vec<f32>,
}

struct Member<'v, T> {
    state: LstmState,
    sequence: Sequence<'v>,
    tag: T,
}

impl<'v, T: Send> Batch<'v, T> {
    /// An empty batch over `prepared`, for a model that reads the last `context` ids (or the
    /// whole text, `None`); `None` where the model generates through tensors (see
    /// [`PreparedDecoder::new`]).
    pub fn new(prepared: &PreparedDecoder, context: Option<usize>) -> Option<Self> {
        Some(Self {
            decoder: prepared.0.clone()?,
            context,
            members: Vec::new(),
            logits: Vec::new(),
        })
    }

    /// The sequences under way.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether no sequence is under way.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Adds `sequence`, running its prompt through a fresh state; a sequence that asks for no
    /// token comes straight back finished.
    pub fn join(&mut self, sequence: Sequence<'v>, tag: T) -> Option<(Completion, T)> {
        if sequence.is_finished() {
            let (completion, _) = sequence.finish(|_, _| true);
            return Some((completion, tag));
        }
        let mut member = Member {
            state: self.decoder.state(),
            sequence,
            tag,
        };
        member.read(&self.decoder, self.context, None);
        self.members.push(member);
        None
    }

    /// One token for every sequence: `emit` gets each sequence's tag and the text now clear
    /// (see [`Sequence::advance`]; false ends that sequence). The sequences pick their tokens
    /// and run them through their states on every core. Returns the sequences that ended,
    /// with their completions.
    pub fn step(
        &mut self,
        emit: impl Fn(&T, &str, &[TokenLogprobs]) -> bool + Sync,
    ) -> Vec<(Completion, T)> {
        let states: Vec<&LstmState> = self.members.iter().map(|m| &m.state).collect();
        self.decoder.logits_of(&states, &mut self.logits);
        let v = self.decoder.vocab();
        let (decoder, context) = (&*self.decoder, self.context);
        self.members
            .par_iter_mut()
            .zip(self.logits.par_chunks(v))
            .for_each(|(member, logits)| {
                let tag = &member.tag;
                let next = member
                    .sequence
                    .advance(&mut ExactLogits(logits), |piece, entries| {
                        emit(tag, piece, entries)
                    });
                if let Some(id) = next {
                    member.read(decoder, context, Some(id));
                }
            });
        let mut finished = Vec::new();
        let mut k = 0;
        while k < self.members.len() {
            if self.members[k].sequence.is_finished() {
                let Member { sequence, tag, .. } = self.members.swap_remove(k);
                let (completion, _) = sequence.finish(|piece, entries| emit(&tag, piece, entries));
                finished.push((completion, tag));
            } else {
                k += 1;
            }
        }
        finished
    }
}

impl<T> Member<'_, T> {
    /// Runs the state on to the position after the sequence's ids: the whole prompt when
    /// joining (`None`), else the id just taken; a many-to-one model reads its window again
    /// from a zero state.
    fn read(&mut self, decoder: &LstmDecoder, context: Option<usize>, taken: Option<u32>) {
        let ids = self.sequence.ids();
        match (context, taken) {
            (Some(n), _) => {
                self.state.reset();
                for id in window(ids, n) {
                    self.state.feed(decoder, id);
                }
            }
            (None, Some(id)) => self.state.feed(decoder, id),
            (None, None) => ids.iter().for_each(|&id| self.state.feed(decoder, id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generation::{Generator, Sampling, Settings};
    use crate::{LanguageModel, ModelConfig};
    use burn::tensor::Device;
    use data::{Tokenizer, Vocab};

    fn setup() -> (LanguageModel, Vocab, Device) {
        let device = Device::flex();
        device.seed(21);
        let words: Vec<String> = (0..300).map(|i| format!("w{i}")).collect();
        let vocab = Vocab::build(words.iter().map(String::as_str), 300);
        let mut model = ModelConfig::sized(8, 32).init(vocab.size(), &device);
        model.output.weight = model.output.weight.clone().map(|w| w * 6.0);
        (model, vocab, device)
    }

    /// Runs `sequences` (each joining at its step) to their ends; their completions' texts.
    fn run(
        prepared: &PreparedDecoder,
        sequences: Vec<(usize, Sequence<'_>)>,
    ) -> Vec<(usize, String)> {
        let mut batch = Batch::new(prepared, None).expect("an LSTM on flex");
        let mut waiting: Vec<(usize, usize, Sequence)> = sequences
            .into_iter()
            .enumerate()
            .map(|(k, (at, s))| (k, at, s))
            .collect();
        let (mut done, mut step) = (Vec::new(), 0);
        while !(waiting.is_empty() && batch.is_empty()) {
            while let Some(k) = waiting.iter().position(|w| w.1 <= step) {
                let (tag, _, sequence) = waiting.remove(k);
                let streamed = std::sync::Mutex::new(String::new());
                if let Some((completion, _)) = batch.join(sequence, (tag, streamed)) {
                    done.push((tag, completion.text));
                }
            }
            for (completion, (tag, streamed)) in batch.step(|(_, streamed), piece, _| {
                streamed.lock().unwrap().push_str(piece);
                true
            }) {
                assert_eq!(streamed.into_inner().unwrap(), completion.text);
                done.push((tag, completion.text));
            }
            step += 1;
        }
        done.sort();
        done
    }

    /// A sequence's text is the same alone, in a batch that others join and leave at other
    /// steps, and from a lone generator with the same seed.
    #[test]
    fn a_sequence_gets_the_same_text_alone_or_batched() {
        let (model, vocab, device) = setup();
        let prepared = PreparedDecoder::new(&model, &device);
        let sampled = Sampling::with_temperature(0.9).unwrap();
        let settings = |n, sampling| Settings::new(n, sampling, &["w7 w7".to_string()]);
        let sequence = |prompt: &[u32], n, sampling, seed| {
            Sequence::new(&vocab, Tokenizer::Word, prompt, settings(n, sampling), seed)
        };
        let alone = run(&prepared, vec![(0, sequence(&[4, 9], 40, sampled, 7))]);
        let together = run(
            &prepared,
            vec![
                (0, sequence(&[4, 9], 40, sampled, 7)),
                (0, sequence(&[5], 25, Sampling::greedy(), 1)),
                (3, sequence(&[6, 6, 6], 30, sampled, 2)),
                (9, sequence(&[8], 0, sampled, 3)),
            ],
        );
        assert_eq!(together.len(), 4);
        assert_eq!(together[0], alone[0]);
        assert!(alone[0].1.split(' ').count() > 5, "{alone:?}");
        let mut generator =
            Generator::new(&model, &vocab, Tokenizer::Word, device, 7).with_decoder(&prepared);
        let lone = generator.generate_with(&[4, 9], settings(40, sampled), |_, _| true);
        assert_eq!(lone.text, alone[0].1);
    }
}
