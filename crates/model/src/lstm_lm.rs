//! `Embedding(vocab, E) -> LSTM(H, whole sequence) -> Linear(H, vocab)`: the textbook's
//! word-level language model. Softmax lives in the loss and in sampling.

use burn::module::Module;
use burn::nn::{
    Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig, Lstm, LstmConfig, LstmState,
};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// Token ids as an integer tensor of `shape` (the model's input and target type).
pub fn ids_tensor<const D: usize>(
    ids: &[u32],
    shape: [usize; D],
    device: &Device,
) -> Tensor<D, Int> {
    let data = TensorData::new(ids.iter().map(|&i| i64::from(i)).collect(), shape);
    Tensor::from_data(data, device)
}

/// Layer sizes (the vocabulary size comes from the data).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Width of each token's embedding vector (the chapter: 100).
    pub embedding_dim: usize,
    /// LSTM units (the chapter: 128).
    pub hidden_size: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            embedding_dim: 100,
            hidden_size: 128,
        }
    }
}

impl ModelConfig {
    /// Builds a freshly initialised model for a vocabulary of `vocab_size` entries.
    pub fn init(&self, vocab_size: usize, device: &Device) -> LstmLm {
        LstmLm {
            // Keras's Embedding default; Burn's N(0, 1) starts training at a far higher loss.
            embedding: EmbeddingConfig::new(vocab_size, self.embedding_dim)
                .with_initializer(Initializer::Uniform {
                    min: -0.05,
                    max: 0.05,
                })
                .init(device),
            lstm: LstmConfig::new(self.embedding_dim, self.hidden_size, true).init(device),
            output: LinearConfig::new(self.hidden_size, vocab_size).init(device),
        }
    }
}

/// The language model.
#[derive(Module, Debug)]
pub struct LstmLm {
    pub(crate) embedding: Embedding,
    pub(crate) lstm: Lstm,
    pub(crate) output: Linear,
}

impl LstmLm {
    /// Ids `[batch, seq]` and an optional carried state -> logits `[batch, seq, vocab]` and
    /// the state after the last position.
    pub fn forward(
        &self,
        ids: Tensor<2, Int>,
        state: Option<LstmState<2>>,
    ) -> (Tensor<3>, LstmState<2>) {
        let x = self.embedding.forward(ids);
        let (h, state) = self.lstm.forward(x, state);
        (self.output.forward(h), state)
    }

    /// Number of vocabulary entries the model predicts over.
    pub fn vocab_size(&self) -> usize {
        let [vocab, _] = self.embedding.weight.shape().dims();
        vocab
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_shapes_follow_batch_seq_vocab() {
        let device = Device::flex();
        let model = ModelConfig {
            embedding_dim: 8,
            hidden_size: 16,
        }
        .init(50, &device);
        let ids = Tensor::<2, Int>::zeros([3, 7], &device);
        let (logits, state) = model.forward(ids, None);
        assert_eq!(logits.dims(), [3, 7, 50]);
        assert_eq!(state.hidden.dims(), [3, 16]);
        assert_eq!(model.vocab_size(), 50);
    }

    #[test]
    fn carried_state_over_windows_equals_one_pass() {
        let device = Device::flex();
        device.seed(3);
        let model = ModelConfig {
            embedding_dim: 8,
            hidden_size: 16,
        }
        .init(30, &device);
        let ids: Vec<u32> = (0..24u32).map(|i| (i * 7) % 30).collect();
        let ids = ids_tensor(&ids, [2, 12], &device);
        let (whole, whole_state) = model.forward(ids.clone(), None);
        let mut state = None;
        let mut pieces = Vec::new();
        for k in 0..3 {
            let (out, next) = model.forward(ids.clone().slice([0..2, k * 4..k * 4 + 4]), state);
            pieces.push(out);
            state = Some(next);
        }
        let state = state.unwrap();
        let close = |a: Tensor<3>, b: Tensor<3>| (a - b).abs().max().into_scalar::<f32>() < 1e-5;
        assert!(close(Tensor::cat(pieces, 1), whole));
        assert!(close(
            state.hidden.unsqueeze_dim(0),
            whole_state.hidden.unsqueeze_dim(0)
        ));
        assert!(close(
            state.cell.unsqueeze_dim(0),
            whole_state.cell.unsqueeze_dim(0)
        ));
    }
}
