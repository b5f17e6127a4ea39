//! The CPU decoder for a model whose layers are all LSTMs, running on flex with the fused
//! kernels: the weights copied once into the kernels crate's [`LstmDecoder`].

use burn::tensor::Device;
use kernels::decode::decoder::{LstmDecoder, LstmWeights};

use crate::LanguageModel;
use crate::language_model::float_values;
use crate::recurrent::Layer;

/// A decoder for `model` on `device`, or `None` where generation runs through tensors: on
/// other backends, with the reference kernels, or with GRU or plain RNN layers.
pub(crate) fn decoder(model: &LanguageModel, device: &Device) -> Option<LstmDecoder> {
    if !model.kernels().fused_on(device) {
        return None;
    }
    let layers = model
        .layers
        .iter()
        .map(|layer| match layer {
            Layer::Lstm(lstm) => {
                let (input, hidden, bias) = kernels::train::lstm::fused_weights(lstm);
                Some(LstmWeights {
                    input: float_values(input),
                    hidden: float_values(hidden),
                    bias: float_values(bias),
                })
            }
            Layer::Gru(_) | Layer::Rnn(_) => None,
        })
        .collect::<Option<Vec<_>>>()?;
    let vocab = model.vocab_size();
    let bias = match &model.output.bias {
        Some(bias) => float_values(bias.val()),
        None => vec![0.0; vocab],
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    Some(LstmDecoder::new(
        float_values(model.embedding.weight.val()),
        layers,
        &float_values(model.output.weight.val()),
        &bias,
        threads,
    ))
}
