//! The output layer and its softmax cross-entropy as one operation with a hand-written
//! backward, for the flex backend.
//!
//! The stock path (`Linear`, `log_softmax`, `gather`) builds the logits, a probabilities
//! tensor of the same size (6,400 x 10,000 floats for the textbook batch) and walks them
//! several times forward and backward. Here the forward pass multiplies once into a logits
//! buffer and reads each row once for its log-sum-exp; the backward pass turns that buffer
//! into `g * (softmax - one_hot)` in place and multiplies it out into the input and weight
//! gradients. Every product goes through [`crate::blas`].

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::nn::Linear;
use burn::tensor::{Int, Tensor};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use crate::blas::{Operand, matmul};
use crate::fused_support::{floats, linear_bias, tensor};

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
pub struct Saved {
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
    ) -> (FloatTensor<Self>, Saved);
    /// Gradients of hidden, weight and bias for the per-row loss gradient `grad [N]`, from
    /// the forward pass's inputs.
    fn ce_backward(
        saved: Saved,
        hidden: &FloatTensor<Self>,
        weight: &FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3];
}

/// Per-row cross-entropy of `output` applied to `hidden [N, H]` against `targets [N]`; flex
/// devices only (see [`crate::device::runs_fused_ops`]).
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

/// `e^x` for `x <= 0` to about 2 ulp, written so the compiler vectorises a loop of it
/// (libm's `expf` is a call per element). Cephes' polynomial on `[-ln2/2, ln2/2]`. Rounding
/// to an integer adds and subtracts 1.5 * 2^23, and the integer is read from the sum's bits:
/// `round` and float-to-int casts are calls or branches on baseline x86-64 and stop the
/// vectoriser.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0;
    let x = x.max(-87.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let exponent = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let y = p * r * r + r + 1.0;
    // Wrapping arithmetic: the dev profile's overflow checks would add a branch.
    y * f32::from_bits((exponent.wrapping_add(127) << 23) as u32)
}

/// Lanes of the row reductions: independent partial results the compiler keeps in one vector
/// register (a single running sum would have to be added in order, one element at a time).
const LANES: usize = 8;

fn row_lse(row: &[f32]) -> f32 {
    let chunks = row.chunks_exact(LANES);
    let mut max = [f32::NEG_INFINITY; LANES];
    for c in chunks.clone() {
        for l in 0..LANES {
            max[l] = if c[l] > max[l] { c[l] } else { max[l] };
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(&max)
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    // exp into a small buffer first (a plain element-wise loop vectorises), then sum it.
    let mut sum = [0.0f32; LANES];
    let mut buf = [0.0f32; 256];
    for block in row.chunks(buf.len()) {
        let buf = &mut buf[..block.len()];
        for (e, &x) in buf.iter_mut().zip(block) {
            *e = exp(x - max);
        }
        let lanes = buf.chunks_exact(LANES);
        let tail: f32 = lanes.remainder().iter().sum();
        for c in lanes {
            for l in 0..LANES {
                sum[l] += c[l];
            }
        }
        sum[0] += tail;
    }
    max + sum.iter().sum::<f32>().ln()
}

/// Logits at most this many are handled on the calling thread: waking the thread pool costs
/// more than the work (seed 000's 50 x 42 logits).
const PARALLEL: usize = 1 << 16;

impl CrossEntropyKernels for Flex {
    fn ce_forward(
        hidden: &FlexTensor,
        weight: &FlexTensor,
        bias: &FlexTensor,
        targets: FlexTensor,
    ) -> (FlexTensor, Saved) {
        let [n, h] = hidden.layout().shape().dims::<2>();
        let v = weight.layout().shape().dims::<2>()[1];
        let targets = targets
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .expect("integer targets");
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
        let saved = Saved {
            logits,
            lse,
            targets,
            dims: [n, h, v],
        };
        (tensor(loss, &[n]), saved)
    }

    fn ce_backward(
        saved: Saved,
        hidden: &FlexTensor,
        weight: &FlexTensor,
        grad: FlexTensor,
    ) -> [FlexTensor; 3] {
        let Saved {
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

impl<B: Backend + CrossEntropyKernels, C: CheckpointStrategy> CrossEntropyOps for Autodiff<B, C> {
    fn linear_cross_entropy(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct LinearCrossEntropy;

        impl<B: Backend + CrossEntropyKernels> Backward<B, 3> for LinearCrossEntropy {
            type State = (Saved, FloatTensor<B>, FloatTensor<B>);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let (saved, hidden, weight) = ops.state;
                let grad = grads.consume::<B>(&ops.node);
                let out = B::ce_backward(saved, &hidden, &weight, grad);
                for (parent, g) in ops.parents.into_iter().zip(out) {
                    if let Some(node) = parent {
                        grads.register::<B>(node.id, g);
                    }
                }
            }
        }

        let guards = [hidden.node(), weight.node(), bias.node()];
        let [hidden, weight, bias] = [hidden, weight, bias].map(|t| t.into_primitive());
        let (loss, saved) = B::ce_forward(&hidden, &weight, &bias, targets);
        match LinearCrossEntropy
            .prepare::<C>(guards)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((saved, hidden, weight), loss),
            OpsKind::UnTracked(prep) => prep.finish(loss),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::reference_cross_entropy;
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
        let targets: Vec<u32> = (0..n).map(|r| ((r * 7919) % v) as u32).collect();
        let targets = crate::ids_tensor(&targets, [n], device);
        let weights: Vec<f32> = (0..n).map(|r| if r % 5 == 4 { 0.0 } else { 1.0 }).collect();
        let weights = Tensor::<1>::from_data(TensorData::new(weights, [n]), device);
        (output, hidden, targets, weights)
    }

    #[test]
    fn the_vectorised_exp_matches_libm() {
        for i in 0..=100_000 {
            let x = -87.0 * i as f32 / 100_000.0;
            let (got, want) = (exp(x), x.exp());
            assert!(
                (got - want).abs() <= 2e-7 * want,
                "exp({x}) = {got}, libm {want}"
            );
        }
    }

    #[test]
    fn forward_and_gradients_match_the_reference_loss() {
        let device = Device::flex().autodiff();
        let (output, hidden, targets, weights) = problem([37, 16, 1000], &device);
        let run = |fused: bool| {
            let hidden = hidden.clone().require_grad();
            let rows = match fused {
                true => linear_cross_entropy(&output, hidden.clone(), targets.clone()),
                false => reference_cross_entropy(output.forward(hidden.clone()), targets.clone()),
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
            // Fourth-order central difference.
            let near = shifted(eps) - shifted(-eps);
            let far = shifted(2.0 * eps) - shifted(-2.0 * eps);
            let numeric = (8.0 * near - far) / (12.0 * f64::from(eps));
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
