//! A step-by-step trace of the LSTM cell, as the next-letter toy traces one cell by hand: for every
//! input token the forget gate f, input gate i, candidate c~, cell state c, output gate o and
//! hidden state h.

use burn::prelude::s;
use burn::tensor::Tensor;
use burn::tensor::activation::{sigmoid, tanh};

use crate::{LanguageModel, ids_tensor};

/// The cell's vectors after one input token.
#[derive(Debug, Clone, PartialEq)]
pub struct CellStep {
    /// Forget gate.
    pub f: Vec<f32>,
    /// Input gate.
    pub i: Vec<f32>,
    /// Candidate cell values.
    pub candidate: Vec<f32>,
    /// New cell state.
    pub c: Vec<f32>,
    /// Output gate.
    pub o: Vec<f32>,
    /// New hidden state.
    pub h: Vec<f32>,
}

/// A model the trace cannot follow.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TraceError {
    /// Several layers, or a cell other than an LSTM.
    #[error("the gate trace needs a one-layer LSTM model (model.cell = \"lstm\", num_layers = 1)")]
    NotOneLstmLayer,
}

/// Runs `ids` through the LSTM one token at a time from a zero state, recording every gate;
/// an error unless the model is a one-layer LSTM.
pub fn trace(model: &LanguageModel, ids: &[u32]) -> Result<Vec<CellStep>, TraceError> {
    let Some(lstm) = model.single_lstm() else {
        return Err(TraceError::NotOneLstmLayer);
    };
    let device = model.embedding.weight.device();
    let x = model
        .embedding
        .forward(ids_tensor(ids, [1, ids.len()], &device));
    let hidden = lstm.d_hidden;
    let mut h = Tensor::<2>::zeros([1, hidden], &device);
    let mut c = Tensor::<2>::zeros([1, hidden], &device);
    let values = |t: &Tensor<2>| {
        t.to_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap_or_default()
    };
    let mut steps = Vec::with_capacity(ids.len());
    for t in 0..ids.len() {
        let x_t = x.clone().slice(s![.., t, ..]).squeeze_dim::<2>(1);
        let gate = |g: &burn::nn::GateController| g.gate_product(x_t.clone(), h.clone());
        let i = sigmoid(gate(&lstm.input_gate));
        let f = match &lstm.forget_gate {
            Some(g) => sigmoid(gate(g)),
            None => i.clone().neg().add_scalar(1.0),
        };
        let o = sigmoid(gate(&lstm.output_gate));
        let candidate = tanh(gate(&lstm.cell_gate));
        c = f.clone() * c + i.clone() * candidate.clone();
        h = o.clone() * tanh(c.clone());
        steps.push(CellStep {
            f: values(&f),
            i: values(&i),
            candidate: values(&candidate),
            c: values(&c),
            o: values(&o),
            h: values(&h),
        });
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ModelConfig;
    use burn::tensor::Device;

    #[test]
    fn traced_h_equals_the_models_own_forward_pass() {
        let device = Device::flex();
        device.seed(11);
        let model = ModelConfig::sized(6, 10).init(20, &device);
        let ids = [3u32, 17, 5, 5, 9];
        let steps = trace(&model, &ids).unwrap();
        let input = ids_tensor(&ids, [1, ids.len()], &device);
        let (h_all, _) = model
            .single_lstm()
            .unwrap()
            .forward(model.embedding.forward(input), None);
        let h_all = h_all
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        for (t, step) in steps.iter().enumerate() {
            for (u, &v) in step.h.iter().enumerate() {
                assert!((v - h_all[t * 10 + u]).abs() < 1e-5, "step {t} unit {u}");
            }
            assert!(
                step.f
                    .iter()
                    .chain(&step.i)
                    .chain(&step.o)
                    .all(|g| (0.0..=1.0).contains(g))
            );
        }
    }
}
