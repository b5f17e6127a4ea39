//! What the fused operations share: plain `f32` buffers in and out of flex tensors, and a
//! `Linear` layer's bias.

use std::borrow::Cow;

use burn::nn::Linear;
use burn::tensor::{Tensor, TensorData};
use burn_flex::FlexTensor;

/// The values of `t` in row-major order, borrowed when its storage already is.
pub(crate) fn floats(t: &FlexTensor) -> Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(
            t.to_contiguous()
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .expect("f32 tensor"),
        ),
    }
}

/// A flex tensor of `shape` holding `values`.
pub(crate) fn tensor(values: Vec<f32>, shape: &[usize]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.to_vec()))
}

/// The layer's bias, or zeros for a layer without one.
pub(crate) fn linear_bias(linear: &Linear) -> Tensor<1> {
    let [_, d] = linear.weight.dims();
    linear
        .bias
        .as_ref()
        .map_or_else(|| Tensor::zeros([d], &linear.weight.device()), |b| b.val())
}
