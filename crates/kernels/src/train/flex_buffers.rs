//! What the fused operations share: plain `f32` buffers in and out of flex tensors, and a
//! `Linear` layer's bias.

use std::borrow::Cow;

use burn::nn::Linear;
use burn::tensor::{DType, Tensor, TensorData};
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

/// `t` as an f32 tensor whose storage is exactly its values in row-major order, so that
/// `storage_mut` updates them in place: `t` itself when it already is (its storage is copied
/// then only if another tensor shares it), else a copy.
pub(crate) fn writable(t: FlexTensor) -> FlexTensor {
    let n = t.layout().shape().num_elements();
    let exact = t.dtype() == DType::F32
        && t.layout().contiguous_offsets() == Some((0, n))
        && t.storage::<f32>().len() == n;
    match exact {
        true => t,
        false => tensor(floats(&t).into_owned(), &t.layout().shape().to_vec()),
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

/// The values of a tensor as f32, for the tests' comparisons.
#[cfg(test)]
pub(crate) fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}
