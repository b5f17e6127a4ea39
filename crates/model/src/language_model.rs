//! `Embedding(vocab, E) -> LSTM/GRU(H) x num_layers -> Linear(H, vocab)`: the textbook's
//! word-level language model, and the character-level and toy models of the other originals.
//! Softmax lives in the loss and in sampling.

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig, Lstm,
};
use burn::tensor::{Device, Int, Tensor, TensorData};
use kernels::Kernels;
use serde::{Deserialize, Serialize};

use crate::keras_init::{Init, glorot, set_linear};
use crate::recurrent::{CellKind, Layer, State};

/// Token ids as an integer tensor of `shape` (the model's input and target type).
pub fn ids_tensor<const D: usize>(
    ids: &[u32],
    shape: [usize; D],
    device: &Device,
) -> Tensor<D, Int> {
    let data = TensorData::new(ids.iter().map(|&i| i64::from(i)).collect(), shape);
    Tensor::from_data(data, device)
}

/// A float tensor's values, row-major.
pub(crate) fn float_values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("float values convert to f32")
}

/// Layer sizes (the vocabulary size comes from the data).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Width of each token's embedding vector (the chapter: 100).
    pub embedding_dim: usize,
    /// Units per recurrent layer (the chapter: 128).
    pub hidden_size: usize,
    /// `lstm` (default), `gru` or `rnn` (a plain tanh cell).
    pub cell: CellKind,
    /// Recurrent layers stacked on each other (at least 1).
    pub num_layers: usize,
    /// Dropout probability between recurrent layers, during training only.
    pub dropout: f64,
    /// How the weights are first drawn: `burn` (default) or `keras` (Keras's defaults, as the
    /// textbook's model starts).
    pub init: Init,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            embedding_dim: 100,
            hidden_size: 128,
            cell: CellKind::Lstm,
            num_layers: 1,
            dropout: 0.0,
            init: Init::Burn,
        }
    }
}

impl ModelConfig {
    /// A default config with other layer sizes.
    pub fn sized(embedding_dim: usize, hidden_size: usize) -> Self {
        Self {
            embedding_dim,
            hidden_size,
            ..Self::default()
        }
    }

    /// What is wrong with these settings, if anything.
    pub fn check(&self) -> Result<(), ModelConfigError> {
        for (key, value) in [
            ("num_layers", self.num_layers),
            ("embedding_dim", self.embedding_dim),
            ("hidden_size", self.hidden_size),
        ] {
            if value == 0 {
                return Err(ModelConfigError::Zero(key));
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(ModelConfigError::Dropout(self.dropout));
        }
        Ok(())
    }

    /// Builds a freshly initialised model for a vocabulary of `vocab_size` entries.
    pub fn init(&self, vocab_size: usize, device: &Device) -> LanguageModel {
        let layers = (0..self.num_layers)
            .map(|l| {
                let d_input = if l == 0 {
                    self.embedding_dim
                } else {
                    self.hidden_size
                };
                self.cell.layer(d_input, self.hidden_size, device)
            })
            .collect();
        let mut model = LanguageModel {
            // Keras's Embedding default; Burn's N(0, 1) starts training at a far higher loss.
            embedding: EmbeddingConfig::new(vocab_size, self.embedding_dim)
                .with_initializer(Initializer::Uniform {
                    min: -0.05,
                    max: 0.05,
                })
                .init(device),
            layers,
            dropout: DropoutConfig::new(self.dropout).init(),
            output: LinearConfig::new(self.hidden_size, vocab_size).init(device),
            kernels: Kernels::default(),
        };
        if self.init == Init::Keras {
            for layer in &mut model.layers {
                layer.keras_init(device);
            }
            let output = glorot(self.hidden_size, vocab_size, device);
            set_linear(&mut model.output, output, Some(0.0));
        }
        // Burn draws a parameter's initial values when it is first read. Reading them all
        // now, in declaration order, makes the weights a function of the seed alone, not of
        // which forward path (fused or stock) touches them first.
        model.visit(&mut Materialise);
        model
    }
}

/// A layer setting out of range.
#[derive(Debug, thiserror::Error)]
pub enum ModelConfigError {
    /// A size of zero.
    #[error("`model.{0}` must be at least 1")]
    Zero(&'static str),
    /// A dropout probability outside [0, 1).
    #[error("`model.dropout` must be in [0, 1), not {0}")]
    Dropout(f64),
}

/// Reads every float parameter once.
struct Materialise;

impl ModuleVisitor for Materialise {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

/// The language model.
#[derive(Module, Debug)]
pub struct LanguageModel {
    pub(crate) embedding: Embedding,
    pub(crate) layers: Vec<Layer>,
    pub(crate) dropout: Dropout,
    pub(crate) output: Linear,
    /// Which implementation runs the recurrent layers and the loss (not saved).
    #[module(skip)]
    kernels: Kernels,
}

impl LanguageModel {
    /// Ids `[batch, seq]` and an optional carried state -> logits `[batch, seq, vocab]` and
    /// the state after the last position.
    pub fn forward(&self, ids: Tensor<2, Int>, state: Option<State>) -> (Tensor<3>, State) {
        let (h, state) = self.hidden(ids, state);
        (self.logits(h), state)
    }

    /// The last recurrent layer's output `[batch, seq, hidden]` and the state after it.
    pub fn hidden(&self, ids: Tensor<2, Int>, state: Option<State>) -> (Tensor<3>, State) {
        let mut x = self.embedding.forward(ids);
        let mut carried = state.map(|s| s.layers.into_iter());
        let mut layers = Vec::with_capacity(self.layers.len());
        for (l, layer) in self.layers.iter().enumerate() {
            if l > 0 {
                x = self.dropout.forward(x);
            }
            let carried = carried.as_mut().and_then(Iterator::next);
            let (h, state) = layer.forward(x, carried, self.kernels);
            x = h;
            layers.push(state);
        }
        (x, State { layers })
    }

    /// Logits `[batch, seq, vocab]` of hidden states `[batch, seq, hidden]`.
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        self.output.forward(hidden)
    }

    /// The output layer's cross-entropy on `hidden [N, H]` against `targets [N]`, weighted
    /// by `weights [N]` and divided by `weight_sum` (fused on flex: the logits are never a
    /// tensor of their own).
    pub fn loss(
        &self,
        hidden: Tensor<2>,
        targets: Tensor<1, Int>,
        weights: Tensor<1>,
        weight_sum: f32,
    ) -> Tensor<1> {
        crate::loss::output_loss(
            &self.output,
            hidden,
            targets,
            weights,
            weight_sum,
            self.kernels,
        )
    }

    /// The same model running `kernels`.
    pub fn with_kernels(mut self, kernels: Kernels) -> Self {
        self.kernels = kernels;
        self
    }

    /// Which implementation runs the recurrent layers and the loss.
    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// Number of vocabulary entries the model predicts over.
    pub fn vocab_size(&self) -> usize {
        let [vocab, _] = self.embedding.weight.shape().dims();
        vocab
    }

    /// The LSTM layer of a one-layer LSTM model (what the gate trace reads).
    pub fn single_lstm(&self) -> Option<&Lstm> {
        match self.layers.as_slice() {
            [Layer::Lstm(lstm)] => Some(lstm),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_shapes_follow_batch_seq_vocab() {
        let device = Device::flex();
        let model = ModelConfig::sized(8, 16).init(50, &device);
        let ids = Tensor::<2, Int>::zeros([3, 7], &device);
        let (logits, state) = model.forward(ids, None);
        assert_eq!(logits.dims(), [3, 7, 50]);
        assert_eq!(state.layers[0].hidden.dims(), [3, 16]);
        assert_eq!(model.vocab_size(), 50);
    }

    /// Window by window with the state carried equals one pass, for every layer's hidden and
    /// cell state, for a 1-layer LSTM, a 2-layer GRU and a plain RNN.
    #[test]
    fn carried_state_over_windows_equals_one_pass() {
        let device = Device::flex();
        device.seed(3);
        let two_layer_gru = ModelConfig {
            cell: CellKind::Gru,
            num_layers: 2,
            ..ModelConfig::sized(8, 16)
        };
        let rnn = ModelConfig {
            cell: CellKind::Rnn,
            ..ModelConfig::sized(8, 16)
        };
        for config in [ModelConfig::sized(8, 16), two_layer_gru, rnn] {
            let model = config.init(30, &device);
            let ids: Vec<u32> = (0..24u32).map(|i| (i * 7) % 30).collect();
            let ids = ids_tensor(&ids, [2, 12], &device);
            let (whole, whole_state) = model.forward(ids.clone(), None);
            let mut state = None;
            let mut pieces = Vec::new();
            for k in 0..3 {
                let window = ids.clone().slice([0..2, k * 4..k * 4 + 4]);
                let (out, next) = model.forward(window, state);
                pieces.push(out);
                state = Some(next);
            }
            let close =
                |a: Tensor<2>, b: Tensor<2>| (a - b).abs().max().into_scalar::<f32>() < 1e-5;
            let whole_logits = whole.reshape([24, 30]);
            assert!(close(
                Tensor::cat(pieces, 1).reshape([24, 30]),
                whole_logits
            ));
            let layers = state.unwrap().layers.into_iter().zip(whole_state.layers);
            assert_eq!(layers.len(), config.num_layers);
            for (carried, whole) in layers {
                assert!(close(carried.hidden, whole.hidden));
                assert_eq!(carried.cell.is_some(), config.cell == CellKind::Lstm);
                if let (Some(a), Some(b)) = (carried.cell, whole.cell) {
                    assert!(close(a, b));
                }
            }
        }
    }

    /// Dropout between layers changes training passes only: an autodiff forward is random,
    /// the same model without autodiff is not.
    #[test]
    fn dropout_applies_when_training_only() {
        let device = Device::flex().autodiff();
        device.seed(4);
        let config = ModelConfig {
            num_layers: 2,
            dropout: 0.5,
            ..ModelConfig::sized(8, 16)
        };
        let model = config.init(30, &device);
        let ids = ids_tensor(&[1, 2, 3, 4], [1, 4], &device);
        let run = |m: &LanguageModel, ids: Tensor<2, Int>| m.forward(ids, None).0;
        let differ = |a: Tensor<3>, b: Tensor<3>| (a - b).abs().max().into_scalar::<f32>() > 1e-6;
        assert!(differ(run(&model, ids.clone()), run(&model, ids.clone())));
        let valid = model.valid();
        let ids = ids_tensor(&[1, 2, 3, 4], [1, 4], &Device::flex());
        assert!(!differ(run(&valid, ids.clone()), run(&valid, ids)));
        assert!(config.check().is_ok());
        let bad = ModelConfig {
            dropout: 1.0,
            ..config
        };
        assert!(bad.check().unwrap_err().to_string().contains("dropout"));
    }
}
