//! The loss of a model on a dataset: one batch's (which a training step minimises) and a whole
//! dataset's, for the validation loss and for scoring text.

use burn::prelude::s;
use burn::tensor::{Device, Tensor, TensorData};
use data::Batch;
use model::recurrent::State;
use model::{LanguageModel, ids_tensor};

use crate::dataset::Dataset;

/// The batch's mean loss over its counted positions, their number and the state after it.
pub fn batch_loss(
    model: &LanguageModel,
    batch: &Batch,
    device: &Device,
    state: Option<State>,
) -> (Tensor<1>, f64, State) {
    let weight: f32 = batch.weights.iter().sum();
    share_loss(model, batch, device, state, weight)
}

/// The batch's summed loss over its counted positions divided by `weight` (returned as the
/// second value), and the state after it: one share's part of the mean loss of a batch split
/// between devices, whose counted positions are `weight`.
pub fn share_loss(
    model: &LanguageModel,
    batch: &Batch,
    device: &Device,
    state: Option<State>,
    weight: f32,
) -> (Tensor<1>, f64, State) {
    let [b, t, n] = [batch.batch_size, batch.seq_len, batch.targets.len()];
    let inputs = ids_tensor(&batch.inputs, [b, t], device);
    let targets = ids_tensor(&batch.targets, [n], device);
    let weights = Tensor::<1>::from_data(TensorData::new(batch.weights.clone(), [n]), device);
    let (hidden, state) = model.hidden(inputs, state);
    // Many-to-one: the output layer only where there is a target.
    let hidden = if batch.last_only {
        hidden.slice(s![.., -1.., ..])
    } else {
        hidden
    };
    let [_, rows, width] = hidden.dims();
    let loss = model.loss(hidden.reshape([b * rows, width]), targets, weights, weight);
    (loss, f64::from(weight), state)
}

/// Mean loss of `model` (without autodiff) over every batch of `data`, the state carried
/// between windows of a stream.
pub fn evaluate(model: &LanguageModel, data: &Dataset, device: &Device) -> f64 {
    let (loss_sum, weight_sum) = loss_sums(model, data, device);
    loss_sum / weight_sum.max(1.0)
}

/// The summed loss of `model` over every counted position of `data`, and their number.
pub fn loss_sums(model: &LanguageModel, data: &Dataset, device: &Device) -> (f64, f64) {
    let (mut loss_sum, mut weight_sum) = (0.0f64, 0.0f64);
    let mut state = None;
    for batch in data.epoch(0, 0) {
        let (loss, weight, next) = batch_loss(model, &batch, device, state.take());
        loss_sum += f64::from(loss.into_scalar::<f32>()) * weight;
        weight_sum += weight;
        state = data.carries_state().then_some(next);
    }
    (loss_sum, weight_sum)
}
