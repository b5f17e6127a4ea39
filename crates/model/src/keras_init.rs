//! Keras's default initialisation, for runs that reproduce the textbook's numbers: Embedding
//! uniform in [-0.05, 0.05]; LSTM, GRU and SimpleRNN kernels Glorot-uniform over the whole
//! `[input, gates x units]` matrix, recurrent kernels orthogonal over the whole
//! `[units, gates x units]` matrix (orthonormal rows), biases zero but the LSTM forget gate's, 1
//! (`unit_forget_bias`); Dense Glorot-uniform with a zero bias. Keras lays the gates out side by
//! side (LSTM: i, f, c, o; GRU: z, r, h); Burn keeps one pair of linear maps per gate, which
//! get the matching column blocks. Keras's LSTM and SimpleRNN have one bias per gate, so the
//! hidden side's bias is removed (two biases would learn at twice the rate under Adam); its GRU
//! (`reset_after`) has two, as Burn's.

use burn::module::Param;
use burn::nn::{Initializer, Linear};
use burn::prelude::s;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// How a fresh model's weights are drawn (`model.init`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// Burn's defaults for the recurrent and output layers (the embedding as Keras's).
    #[default]
    Burn,
    /// Keras's defaults throughout (see the module documentation).
    Keras,
}

/// A `[rows, cols]` matrix Glorot-uniform (fan in `rows`, fan out `cols`), as Keras's
/// `glorot_uniform` draws a kernel.
pub(crate) fn glorot(rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    Initializer::XavierUniform { gain: 1.0 }
        .init_with([rows, cols], Some(rows), Some(cols), device)
        .val()
}

/// A `[rows, cols]` matrix as Keras's `Orthogonal` draws it: orthonormal rows when there are
/// fewer rows than columns (a recurrent kernel), orthonormal columns otherwise.
pub(crate) fn orthogonal(rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    Initializer::Orthogonal { gain: 1.0 }
        .init([rows, cols], device)
        .val()
}

/// Gate `gate`'s block of `width` columns of a side-by-side gate matrix.
pub(crate) fn gate_block(matrix: &Tensor<2>, gate: usize, width: usize) -> Tensor<2> {
    matrix
        .clone()
        .slice(s![.., gate * width..(gate + 1) * width])
}

/// Replaces `linear`'s weight with `weight`, and its bias with one filled with `bias`, or none.
pub(crate) fn set_linear(linear: &mut Linear, weight: Tensor<2>, bias: Option<f32>) {
    let [_, outputs] = weight.dims();
    let device = weight.device();
    // A block sliced from a larger draw is not a leaf of the autodiff graph: detach it.
    linear.weight = Param::from_tensor(weight.detach());
    linear.bias = bias.map(|b| Param::from_tensor(Tensor::<1>::full([outputs], b, &device)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::language_model::float_values;
    use crate::recurrent::{CellKind, Layer};
    use crate::{LanguageModel, ModelConfig, ids_tensor};
    use burn::nn::GateController;
    use kernels::Kernels;

    fn values(param: &Param<Tensor<2>>) -> Vec<f32> {
        float_values(param.val())
    }

    fn bias(linear: &Linear) -> Vec<f32> {
        float_values(linear.bias.as_ref().expect("a bias").val())
    }

    /// Uniform in ±sqrt(6 / (fan_in + fan_out)): every value inside, the variance limit²/3
    /// within 5%.
    fn assert_glorot(name: &str, w: &[f32], fan_in: usize, fan_out: usize) {
        let limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
        assert!(
            w.iter().all(|&x| f64::from(x.abs()) <= limit),
            "{name} inside ±{limit}"
        );
        let n = w.len() as f64;
        let mean = w.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = w
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n;
        let expected = limit * limit / 3.0;
        assert!(
            (var / expected - 1.0).abs() < 0.05,
            "{name}: variance {var}, Glorot's {expected}"
        );
    }

    /// `rows` row-major rows of `cols` values: orthonormal (`m mᵀ = I`) to 1e-4.
    fn assert_orthonormal_rows(name: &str, m: &[f32], rows: usize, cols: usize) {
        for i in 0..rows {
            for j in 0..rows {
                let dot: f64 = (0..cols)
                    .map(|k| f64::from(m[i * cols + k]) * f64::from(m[j * cols + k]))
                    .sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-4, "{name}: row {i}·row {j} = {dot}");
            }
        }
    }

    /// Gate blocks `[units, units]` side by side as one `[units, gates x units]` matrix.
    fn side_by_side(blocks: &[Vec<f32>], units: usize) -> Vec<f32> {
        (0..units)
            .flat_map(|r| {
                blocks
                    .iter()
                    .flat_map(move |b| b[r * units..(r + 1) * units].to_vec())
            })
            .collect()
    }

    /// Gates side by side as Keras builds them: one Glorot kernel `[e, gates x h]`, one
    /// recurrent kernel with orthonormal rows, zero biases but a 1 on the input side of gate
    /// `forget`, and on the hidden side zero biases or, with `one_bias`, none.
    fn assert_keras_gates(
        name: &str,
        gates: &[&GateController],
        e: usize,
        forget: Option<usize>,
        one_bias: bool,
    ) {
        let [_, h] = gates[0].input_transform.weight.dims();
        let blocks = |part: fn(&GateController) -> &Linear| -> Vec<Vec<f32>> {
            gates.iter().map(|g| values(&part(g).weight)).collect()
        };
        // One draw over the whole kernel: its fans are e and gates x h, not e and h.
        let kernel = blocks(|g| &g.input_transform);
        assert_glorot(name, &kernel.concat(), e, gates.len() * h);
        let recurrent = side_by_side(&blocks(|g| &g.hidden_transform), h);
        assert_orthonormal_rows(name, &recurrent, h, gates.len() * h);
        for (g, gate) in gates.iter().enumerate() {
            let want = if Some(g) == forget { 1.0 } else { 0.0 };
            let input = bias(&gate.input_transform);
            assert!(input.iter().all(|&b| b == want), "{name}: gate {g}");
            match one_bias {
                true => assert!(gate.hidden_transform.bias.is_none(), "{name}: gate {g}"),
                false => {
                    let hidden = bias(&gate.hidden_transform);
                    assert!(hidden.iter().all(|&b| b == 0.0), "{name}: gate {g}");
                }
            }
        }
    }

    fn keras(cell: CellKind, vocab: usize, device: &Device) -> LanguageModel {
        let config = ModelConfig {
            cell,
            init: Init::Keras,
            ..ModelConfig::sized(100, 128)
        };
        config.init(vocab, device)
    }

    #[test]
    fn an_lstm_model_starts_as_keras_builds_it() {
        let device = Device::flex();
        device.seed(11);
        let (vocab, e, h) = (10_000, 100, 128);
        let model = keras(CellKind::Lstm, vocab, &device);
        let Some(lstm) = model.single_lstm() else {
            panic!("one LSTM layer")
        };
        let forget = lstm.forget_gate.as_ref().expect("a forget gate");
        // Keras's order: input, forget, cell candidate, output.
        let gates = [&lstm.input_gate, forget, &lstm.cell_gate, &lstm.output_gate];
        assert_keras_gates("LSTM", &gates, e, Some(1), true);
        assert_glorot("dense", &values(&model.output.weight), h, vocab);
        assert!(bias(&model.output).iter().all(|&b| b == 0.0));
        let embedding = values(&model.embedding.weight);
        assert!(embedding.iter().all(|x| x.abs() <= 0.05));
    }

    #[test]
    fn gru_and_simple_rnn_layers_start_as_keras_builds_them() {
        let device = Device::flex();
        device.seed(12);
        let (e, h) = (100, 128);
        let model = keras(CellKind::Gru, 500, &device);
        let Layer::Gru(gru) = &model.layers[0] else {
            panic!("a GRU layer")
        };
        let gates = [&gru.update_gate, &gru.reset_gate, &gru.new_gate];
        assert_keras_gates("GRU", &gates, e, None, false);
        let model = keras(CellKind::Rnn, 500, &device);
        let Layer::Rnn(rnn) = &model.layers[0] else {
            panic!("an RNN layer")
        };
        assert_glorot("RNN kernel", &values(&rnn.input.weight), e, h);
        assert_orthonormal_rows("RNN recurrent", &values(&rnn.hidden.weight), h, h);
        assert!(bias(&rnn.input).iter().all(|&b| b == 0.0));
        assert!(rnn.hidden.bias.is_none());
    }

    /// The fused LSTM reads the Keras-initialised gates as Burn's own layer does: the same
    /// logits from the same weights (the forget gate's bias of 1 in its place), on the
    /// training device (with autodiff).
    #[test]
    fn the_fused_and_the_stock_paths_read_the_keras_weights_alike() {
        let device = Device::flex().autodiff();
        device.seed(13);
        let model = keras(CellKind::Lstm, 300, &device);
        let ids: Vec<u32> = (0..40u32).map(|i| (i * 37) % 300).collect();
        let ids = ids_tensor(&ids, [2, 20], &device);
        let fused = model.clone().with_kernels(Kernels::Fused);
        let stock = model.with_kernels(Kernels::Reference);
        let (a, _) = fused.forward(ids.clone(), None);
        let (b, _) = stock.forward(ids, None);
        let largest = (a - b).abs().max().into_scalar::<f32>();
        assert!(largest < 1e-4, "logits differ by {largest}");
    }
}
