//! The CPU decoder for a model whose layers are all LSTMs, running on flex with the fused
//! kernels: the weights copied once into the kernels crate's [`LstmDecoder`].

use burn::tensor::{Device, Tensor};
use kernels::decoder::{LstmDecoder, LstmWeights};

use crate::LanguageModel;
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
                let (input, hidden, bias) = kernels::lstm::fused_weights(lstm);
                Some(LstmWeights {
                    input: values(input),
                    hidden: values(hidden),
                    bias: values(bias),
                })
            }
            Layer::Gru(_) | Layer::Rnn(_) => None,
        })
        .collect::<Option<Vec<_>>>()?;
    let vocab = model.vocab_size();
    let bias = match &model.output.bias {
        Some(bias) => values(bias.val()),
        None => vec![0.0; vocab],
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    Some(LstmDecoder::new(
        values(model.embedding.weight.val()),
        layers,
        &values(model.output.weight.val()),
        &bias,
        threads,
    ))
}

/// A float tensor's values, row-major.
fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("float values convert to f32")
}
