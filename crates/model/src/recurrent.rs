//! The recurrent core of the language model: `num_layers` LSTM (default), GRU or plain RNN
//! layers, with dropout between them, and the state carried from one call to the next.

use burn::module::Module;
use burn::nn::{Gru, GruConfig, Initializer, Linear, LinearConfig, Lstm, LstmConfig, LstmState};
use burn::prelude::s;
use burn::tensor::Tensor;
use burn::tensor::activation::tanh;
use serde::{Deserialize, Serialize};

use kernels::Kernels;

use crate::keras_init::{gate_block, glorot, orthogonal, set_linear};

/// Which recurrent cell the layers use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CellKind {
    /// Long short-term memory: hidden and cell state (the chapter, seeds 000, 003, 004).
    #[default]
    Lstm,
    /// Gated recurrent unit: hidden state only (the generative-networks lesson), PyTorch's
    /// reset-after variant.
    Gru,
    /// A plain recurrent cell, `h' = tanh(x W_ih + b_ih + h W_hh + b_hh)` (PyTorch's `nn.RNN`).
    Rnn,
}

impl CellKind {
    /// How logs name the cell: `LSTM`, `GRU` or `RNN`.
    pub fn name(self) -> &'static str {
        match self {
            CellKind::Lstm => "LSTM",
            CellKind::Gru => "GRU",
            CellKind::Rnn => "RNN",
        }
    }

    /// One layer of this cell from `d_input` to `d_hidden` features.
    pub fn layer(self, d_input: usize, d_hidden: usize, device: &burn::tensor::Device) -> Layer {
        match self {
            CellKind::Lstm => Layer::Lstm(LstmConfig::new(d_input, d_hidden, true).init(device)),
            CellKind::Gru => Layer::Gru(GruConfig::new(d_input, d_hidden, true).init(device)),
            CellKind::Rnn => Layer::Rnn(Rnn::new(d_input, d_hidden, device)),
        }
    }
}

/// One recurrent layer.
// A model holds a handful of layers, so the size difference costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Layer {
    /// An LSTM layer.
    Lstm(Lstm),
    /// A GRU layer.
    Gru(Gru),
    /// A plain tanh RNN layer.
    Rnn(Rnn),
}

impl Layer {
    /// Redraws the layer's weights as Keras initialises its LSTM, GRU or SimpleRNN (see
    /// [`crate::keras_init`]).
    pub(crate) fn keras_init(&mut self, device: &burn::tensor::Device) {
        match self {
            Layer::Lstm(lstm) => {
                let [d_input, units] = lstm.input_gate.input_transform.weight.dims();
                let kernel = glorot(d_input, 4 * units, device);
                let recurrent = orthogonal(units, 4 * units, device);
                // Keras's order: input, forget, cell candidate, output.
                let gates = [
                    Some(&mut lstm.input_gate),
                    lstm.forget_gate.as_mut(),
                    Some(&mut lstm.cell_gate),
                    Some(&mut lstm.output_gate),
                ];
                for (g, gate) in gates.into_iter().enumerate() {
                    let Some(gate) = gate else { continue };
                    let forget_bias = if g == 1 { 1.0 } else { 0.0 };
                    let input = gate_block(&kernel, g, units);
                    set_linear(&mut gate.input_transform, input, Some(forget_bias));
                    // One bias per gate, as Keras's.
                    let hidden = gate_block(&recurrent, g, units);
                    set_linear(&mut gate.hidden_transform, hidden, None);
                }
            }
            Layer::Gru(gru) => {
                let [d_input, units] = gru.update_gate.input_transform.weight.dims();
                let kernel = glorot(d_input, 3 * units, device);
                let recurrent = orthogonal(units, 3 * units, device);
                // Keras's order: update (z), reset (r), candidate (h).
                let gates = [&mut gru.update_gate, &mut gru.reset_gate, &mut gru.new_gate];
                for (g, gate) in gates.into_iter().enumerate() {
                    let input = gate_block(&kernel, g, units);
                    set_linear(&mut gate.input_transform, input, Some(0.0));
                    let hidden = gate_block(&recurrent, g, units);
                    set_linear(&mut gate.hidden_transform, hidden, Some(0.0));
                }
            }
            Layer::Rnn(rnn) => {
                let [d_input, units] = rnn.input.weight.dims();
                set_linear(&mut rnn.input, glorot(d_input, units, device), Some(0.0));
                set_linear(&mut rnn.hidden, orthogonal(units, units, device), None);
            }
        }
    }
}

/// A plain tanh recurrent layer with PyTorch's initialisation (every weight and bias uniform in
/// ±1/sqrt(hidden)).
#[derive(Module, Debug)]
pub struct Rnn {
    pub(crate) input: Linear,
    pub(crate) hidden: Linear,
}

impl Rnn {
    /// A layer from `d_input` to `d_hidden` features.
    pub fn new(d_input: usize, d_hidden: usize, device: &burn::tensor::Device) -> Self {
        let bound = 1.0 / (d_hidden as f64).sqrt();
        let linear = |d_in| {
            LinearConfig::new(d_in, d_hidden)
                .with_initializer(Initializer::Uniform {
                    min: -bound,
                    max: bound,
                })
                .init(device)
        };
        Self {
            input: linear(d_input),
            hidden: linear(d_hidden),
        }
    }

    /// Every position's hidden state `[batch, seq, hidden]` of `x` `[batch, seq, input]`,
    /// starting from `h0` (zero when `None`); the input projection runs once for all steps.
    pub fn forward(&self, x: Tensor<3>, h0: Option<Tensor<2>>) -> Tensor<3> {
        let [batch, steps, _] = x.dims();
        let [_, d_hidden] = self.hidden.weight.dims();
        let projected = self.input.forward(x);
        let mut h = h0.unwrap_or_else(|| Tensor::zeros([batch, d_hidden], &projected.device()));
        let mut outputs = Vec::with_capacity(steps);
        for t in 0..steps {
            let x_t = projected.clone().slice(s![.., t, ..]).squeeze_dim::<2>(1);
            h = tanh(x_t + self.hidden.forward(h));
            outputs.push(h.clone().unsqueeze_dim::<3>(1));
        }
        Tensor::cat(outputs, 1)
    }
}

/// One layer's state after a call: the hidden state, and for an LSTM the cell state.
#[derive(Debug, Clone)]
pub struct LayerState {
    /// `[batch, hidden]`.
    pub hidden: Tensor<2>,
    /// `[batch, hidden]`; `None` for a GRU.
    pub cell: Option<Tensor<2>>,
}

/// The state of every layer, bottom first.
#[derive(Debug, Clone)]
pub struct State {
    /// One entry per layer.
    pub layers: Vec<LayerState>,
}

impl State {
    /// The same values cut off from the autodiff graph (truncated backpropagation).
    pub fn detach(self) -> Self {
        let layers = self
            .layers
            .into_iter()
            .map(|l| LayerState {
                hidden: l.hidden.detach(),
                cell: l.cell.map(Tensor::detach),
            })
            .collect();
        Self { layers }
    }
}

impl Layer {
    /// Runs `x` `[batch, seq, input]` from `state` (zero when `None`) with `kernels`; returns
    /// every position's hidden state and the state after the last one.
    pub fn forward(
        &self,
        x: Tensor<3>,
        state: Option<LayerState>,
        kernels: Kernels,
    ) -> (Tensor<3>, LayerState) {
        match self {
            Layer::Lstm(lstm) => {
                let state = state.map(|s| {
                    let cell = s.cell.unwrap_or_else(|| s.hidden.zeros_like());
                    LstmState::new(cell, s.hidden)
                });
                let (h, state) = match kernels.fused_on(&x.device()) {
                    true => kernels::train::lstm::forward(lstm, x, state),
                    false => lstm.forward(x, state),
                };
                let state = LayerState {
                    hidden: state.hidden,
                    cell: Some(state.cell),
                };
                (h, state)
            }
            Layer::Gru(gru) => with_last_hidden(gru.forward(x, state.map(|s| s.hidden))),
            Layer::Rnn(rnn) => with_last_hidden(rnn.forward(x, state.map(|s| s.hidden))),
        }
    }
}

/// Every position's hidden state and, as the state, the last one (a cell without cell state).
fn with_last_hidden(h: Tensor<3>) -> (Tensor<3>, LayerState) {
    let last = h.clone().slice(s![.., -1.., ..]).squeeze_dim::<2>(1);
    let state = LayerState {
        hidden: last,
        cell: None,
    };
    (h, state)
}
