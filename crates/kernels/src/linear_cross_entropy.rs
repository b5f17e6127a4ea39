//! The output layer and its softmax cross-entropy as one operation with a hand-written
//! backward, for the flex backend.
//!
//! The stock path (`Linear`, `log_softmax`, `gather`) builds the logits, a probabilities
//! tensor of the same size (6,400 x 10,000 floats for the textbook batch) and walks them
//! several times forward and backward. Here the forward pass multiplies once into a logits
//! buffer and reads each row once for its log-sum-exp; the backward pass turns that buffer
//! into `g * (softmax - one_hot)` in place and multiplies it out into the input and weight
//! gradients. Every product goes through [`crate::matmul`].

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::nn::Linear;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use crate::autodiff::{HandBackward, record};
use crate::flex_buffers::{floats, linear_bias, tensor};
use crate::math::{exp, row_lse};
use crate::matmul::{Operand, matmul};

/// The output layer's per-row cross-entropy as a backend operation.
#[backend_extension(Flex, Autodiff)]
pub trait CrossEntropyOps: Backend {
    /// `-log softmax(hidden[r] · weight + bias)[targets[r]]` for every row r of
    /// `hidden [N, H]`, with `weight [H, V]` and `bias [V]`: shape `[N]`.
    fn linear_cross_entropy(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// What the forward pass keeps for the backward pass.
#[derive(Debug, Clone)]
pub struct LogitsCache {
    /// `[N, V]`, row-major.
    logits: Vec<f32>,
    lse: Vec<f32>,
    targets: Vec<i64>,
    dims: [usize; 3],
}

/// The kernels a backend supplies for the fused loss.
pub trait CrossEntropyKernels: Backend {
    /// Per-row losses, and what backward needs.
    fn ce_forward(
        hidden: &FloatTensor<Self>,
        weight: &FloatTensor<Self>,
        bias: &FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> (FloatTensor<Self>, LogitsCache);
    /// Gradients of hidden, weight and bias for the per-row loss gradient `grad [N]`, from
    /// the forward pass's inputs.
    fn ce_backward(
        saved: LogitsCache,
        hidden: &FloatTensor<Self>,
        weight: &FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3];
}

/// Per-row cross-entropy of `output` applied to `hidden [N, H]` against `targets [N]`; flex
/// devices only (see [`crate::Kernels::fused_on`]).
pub fn linear_cross_entropy(
    output: &Linear,
    hidden: Tensor<2>,
    targets: Tensor<1, Int>,
) -> Tensor<1> {
    let weight = output.weight.val();
    let bias = linear_bias(output);
    let out = <Dispatch as CrossEntropyOps>::linear_cross_entropy(
        hidden.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        targets.into_dispatch(),
    );
    Tensor::from_dispatch(out)
}

/// Per-row cross-entropy of `logits [N, V]` from Burn's own `log_softmax` and `gather`: the
/// reference the fused operation is tested against, and the path on other backends.
pub fn reference(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    log_softmax(logits, 1)
        .gather(1, targets.unsqueeze_dim(1))
        .squeeze_dim::<1>(1)
        .neg()
}

/// Logits at most this many are handled on the calling thread: waking the thread pool costs
/// more than the work (the passage-memorising model's 50 x 42 logits).
const PARALLEL: usize = 1 << 16;

impl CrossEntropyKernels for Flex {
    fn ce_forward(
        hidden: &FlexTensor,
        weight: &FlexTensor,
        bias: &FlexTensor,
        targets: FlexTensor,
    ) -> (FlexTensor, LogitsCache) {
        let [n, h] = hidden.layout().shape().dims::<2>();
        let v = weight.layout().shape().dims::<2>()[1];
        let targets = targets
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .expect("integer targets");
        // Ids come from the vocabulary that sized the output layer; one beyond it would read
        // the next row's logits.
        assert!(
            targets.iter().all(|&t| (0..v as i64).contains(&t)),
            "a target id is outside the {v}-entry output layer"
        );
        let (hidden, weight) = (floats(hidden), floats(weight));
        let mut logits: Vec<f32> = floats(bias).iter().copied().cycle().take(n * v).collect();
        let (h_m, w_m) = (Operand::rows(&hidden, h), Operand::rows(&weight, v));
        matmul(&mut logits, [n, v, h], h_m, w_m, true);
        let lse: Vec<f32> = match logits.len() > PARALLEL {
            true => logits.par_chunks(v).map(row_lse).collect(),
            false => logits.chunks(v).map(row_lse).collect(),
        };
        let loss: Vec<f32> = (0..n)
            .map(|r| lse[r] - logits[r * v + targets[r] as usize])
            .collect();
        let saved = LogitsCache {
            logits,
            lse,
            targets,
            dims: [n, h, v],
        };
        (tensor(loss, &[n]), saved)
    }

    fn ce_backward(
        saved: LogitsCache,
        hidden: &FlexTensor,
        weight: &FlexTensor,
        grad: FlexTensor,
    ) -> [FlexTensor; 3] {
        let LogitsCache {
            mut logits,
            lse,
            targets,
            dims: [n, h, v],
        } = saved;
        let (hidden, weight) = (floats(hidden), floats(weight));
        let g = floats(&grad);
        // The logits become d loss / d logits in place.
        let softmax_grad = |(r, row): (usize, &mut [f32])| {
            let (g, lse) = (g[r], lse[r]);
            if g == 0.0 {
                row.fill(0.0);
                return;
            }
            row.iter_mut().for_each(|x| *x = g * exp(*x - lse));
            row[targets[r] as usize] -= g;
        };
        match logits.len() > PARALLEL {
            true => logits.par_chunks_mut(v).enumerate().for_each(softmax_grad),
            false => logits.chunks_mut(v).enumerate().for_each(softmax_grad),
        }
        let d = Operand::rows(&logits, v);
        let mut d_hidden = vec![0.0f32; n * h];
        matmul(
            &mut d_hidden,
            [n, h, v],
            d,
            Operand::transposed(&weight, v),
            false,
        );
        let mut d_weight = vec![0.0f32; h * v];
        matmul(
            &mut d_weight,
            [h, v, n],
            Operand::transposed(&hidden, h),
            d,
            false,
        );
        let column_sums = |rows: &[f32]| {
            let mut sum = vec![0.0f32; v];
            for row in rows.chunks_exact(v) {
                sum.iter_mut().zip(row).for_each(|(s, x)| *s += x);
            }
            sum
        };
        let add = |mut a: Vec<f32>, b: Vec<f32>| {
            a.iter_mut().zip(&b).for_each(|(s, x)| *s += x);
            a
        };
        let d_bias = match logits.len() > PARALLEL {
            true => logits
                .par_chunks(v * 256)
                .map(column_sums)
                .reduce(|| vec![0.0f32; v], add),
            false => column_sums(&logits),
        };
        [
            tensor(d_hidden, &[n, h]),
            tensor(d_weight, &[h, v]),
            tensor(d_bias, &[v]),
        ]
    }
}

impl CrossEntropyOps for Flex {
    fn linear_cross_entropy(
        hidden: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        targets: FlexTensor,
    ) -> FlexTensor {
        Self::ce_forward(&hidden, &weight, &bias, targets).0
    }
}

/// The loss's backward pass on the tape.
#[derive(Debug)]
struct LinearCrossEntropy;

impl<B: Backend + CrossEntropyKernels> HandBackward<B, 3> for LinearCrossEntropy {
    type State = (LogitsCache, FloatTensor<B>, FloatTensor<B>);

    fn gradients(
        (saved, hidden, weight): Self::State,
        grad: FloatTensor<B>,
    ) -> [FloatTensor<B>; 3] {
        B::ce_backward(saved, &hidden, &weight, grad)
    }
}

impl<B: Backend + CrossEntropyKernels, C: CheckpointStrategy> CrossEntropyOps for Autodiff<B, C> {
    fn linear_cross_entropy(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        record::<B, C, LinearCrossEntropy, 3>([hidden, weight, bias], |[hidden, weight, bias]| {
            let (loss, saved) = B::ce_forward(&hidden, &weight, &bias, targets);
            (loss, (saved, hidden, weight))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::central_difference;
    use burn::module::{Module, Param};
    use burn::nn::LinearConfig;
    use burn::tensor::{Device, Distribution, TensorData};

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        let data = t.into_data().convert::<f32>();
        data.try_into_vec::<f32>().unwrap()
    }

    /// An output layer `[h, v]` with a non-zero bias, hidden states `[n, h]`, targets and row
    /// weights (some zero, as padding) on `device`.
    fn problem(
        [n, h, v]: [usize; 3],
        device: &Device,
    ) -> (Linear, Tensor<2>, Tensor<1, Int>, Tensor<1>) {
        device.seed(7);
        let mut output = LinearConfig::new(h, v).init(device);
        let bias = Tensor::<1>::random([v], Distribution::Normal(0.0, 1.0), device);
        output.bias = Some(Param::from_tensor(bias));
        let hidden = Tensor::<2>::random([n, h], Distribution::Normal(0.0, 2.0), device);
        let targets: Vec<i64> = (0..n).map(|r| ((r * 7919) % v) as i64).collect();
        let targets = Tensor::from_data(TensorData::new(targets, [n]), device);
        let weights: Vec<f32> = (0..n).map(|r| if r % 5 == 4 { 0.0 } else { 1.0 }).collect();
        let weights = Tensor::<1>::from_data(TensorData::new(weights, [n]), device);
        (output, hidden, targets, weights)
    }

    #[test]
    fn forward_and_gradients_match_the_reference_loss() {
        let device = Device::flex().autodiff();
        let (output, hidden, targets, weights) = problem([37, 16, 1000], &device);
        let run = |fused: bool| {
            let hidden = hidden.clone().require_grad();
            let rows = match fused {
                true => linear_cross_entropy(&output, hidden.clone(), targets.clone()),
                false => reference(output.forward(hidden.clone()), targets.clone()),
            };
            let grads = (rows.clone() * weights.clone()).sum().backward();
            let bias = output.bias.as_ref().unwrap().grad(&grads).unwrap();
            [
                values(rows.inner()),
                values(hidden.grad(&grads).unwrap()),
                values(output.weight.grad(&grads).unwrap()),
                values(bias),
            ]
        };
        let fused = run(true);
        let stock = run(false);
        let what = [
            "loss",
            "hidden gradient",
            "weight gradient",
            "bias gradient",
        ];
        for ((a, b), what) in fused.iter().zip(&stock).zip(what) {
            for (x, y) in a.iter().zip(b) {
                assert!(
                    (x - y).abs() <= 1e-5 * y.abs().max(1.0),
                    "{what}: {x} vs {y}"
                );
            }
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let device = Device::flex().autodiff();
        let [n, h, v] = [6, 3, 5];
        let (output, hidden, targets, weights) = problem([n, h, v], &device);
        let x = hidden.clone().require_grad();
        let grads = (linear_cross_entropy(&output, x.clone(), targets.clone()) * weights.clone())
            .sum()
            .backward();
        let analytic = values(x.grad(&grads).unwrap());
        let w = values(weights.inner());
        let inner = output.valid();
        // Only row `r` changes when one of its inputs does; reading that row alone keeps the
        // other rows' rounding out of the difference.
        let row_loss = |p: Vec<f32>, r: usize| -> f64 {
            let p = Tensor::from_data(TensorData::new(p, [n, h]), &Device::flex());
            let rows = linear_cross_entropy(&inner, p, targets.clone().inner());
            f64::from(values(rows)[r] * w[r])
        };
        let base = values(hidden.inner());
        let eps = 5e-2f32;
        for i in 0..n * h {
            let shifted = |d: f32| {
                let mut p = base.clone();
                p[i] += d;
                row_loss(p, i / h)
            };
            let numeric = central_difference(shifted, eps);
            let a = f64::from(analytic[i]);
            // f32 rounding of a loss near 2 is ~2e-7; through the difference quotient that is
            // ~2e-5 of noise, hence the floor under the relative tolerance.
            assert!(
                (numeric - a).abs() <= 1e-3 * a.abs().max(0.05),
                "element {i}: analytic {a}, finite difference {numeric}"
            );
        }
    }
}
