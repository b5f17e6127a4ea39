//! The recurrent core of the language model: `num_layers` LSTM (default) or GRU layers, with
//! dropout between them, and the state carried from one call to the next.

use burn::module::Module;
use burn::nn::{Gru, GruConfig, Lstm, LstmConfig, LstmState};
use burn::prelude::s;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::device::runs_fused_ops;
use crate::fused_lstm;

/// Which recurrent cell the layers use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CellKind {
    /// Long short-term memory: hidden and cell state (the chapter, seeds 000, 003, 004).
    #[default]
    Lstm,
    /// Gated recurrent unit: hidden state only (seed 002), PyTorch's reset-after variant.
    Gru,
}

impl CellKind {
    /// One layer of this cell from `d_input` to `d_hidden` features.
    pub fn layer(self, d_input: usize, d_hidden: usize, device: &burn::tensor::Device) -> Layer {
        match self {
            CellKind::Lstm => Layer::Lstm(LstmConfig::new(d_input, d_hidden, true).init(device)),
            CellKind::Gru => Layer::Gru(GruConfig::new(d_input, d_hidden, true).init(device)),
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
    /// Runs `x` `[batch, seq, input]` from `state` (zero when `None`); returns every
    /// position's hidden state and the state after the last one.
    pub fn forward(&self, x: Tensor<3>, state: Option<LayerState>) -> (Tensor<3>, LayerState) {
        match self {
            Layer::Lstm(lstm) => {
                let state = state.map(|s| {
                    let cell = s.cell.unwrap_or_else(|| s.hidden.zeros_like());
                    LstmState::new(cell, s.hidden)
                });
                let (h, state) = match runs_fused_ops(&x.device()) {
                    true => fused_lstm::forward(lstm, x, state),
                    false => lstm.forward(x, state),
                };
                let state = LayerState {
                    hidden: state.hidden,
                    cell: Some(state.cell),
                };
                (h, state)
            }
            Layer::Gru(gru) => {
                let h = gru.forward(x, state.map(|s| s.hidden));
                let last = h.clone().slice(s![.., -1.., ..]).squeeze_dim::<2>(1);
                let state = LayerState {
                    hidden: last,
                    cell: None,
                };
                (h, state)
            }
        }
    }
}
