//! Softmax cross-entropy as one operation with a hand-written backward, for the flex backend.
//!
//! The stock loss (`log_softmax` then `gather`) keeps a probabilities tensor as large as the
//! logits (6,400 x 10,000 floats for the textbook batch) and walks it several times forward
//! and backward. Here the forward pass reads each row of logits once for its log-sum-exp and
//! keeps only that number per row; the backward pass writes `g * (softmax - one_hot)` straight
//! into the logits' own buffer when nothing else holds it, so no tensor of that size is
//! allocated for the loss at all.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::{Int, Tensor, TensorData};
use burn_flex::FlexTensor;
use rayon::prelude::*;

/// Per-row softmax cross-entropy as a backend operation.
#[backend_extension(Flex, Autodiff)]
pub trait CrossEntropyOps: Backend {
    /// `-log softmax(logits[r])[targets[r]]` for every row r of `logits [N, V]`: shape `[N]`.
    fn softmax_cross_entropy(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// The kernels a backend supplies for the fused loss.
pub trait CrossEntropyKernels: Backend {
    /// The target ids.
    fn target_ids(targets: IntTensor<Self>) -> Vec<i64>;
    /// Per-row losses and log-sum-exps.
    fn ce_forward(logits: &FloatTensor<Self>, targets: &[i64]) -> (FloatTensor<Self>, Vec<f32>);
    /// `grad[r] * (softmax(logits[r]) - one_hot(targets[r]))`, reusing the logits' buffer.
    fn ce_backward(
        logits: FloatTensor<Self>,
        lse: &[f32],
        targets: &[i64],
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// Per-row softmax cross-entropy of `logits [N, V]` against `targets [N]`; flex devices only
/// (see [`crate::device::runs_fused_ops`]).
pub fn softmax_cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let out = <Dispatch as CrossEntropyOps>::softmax_cross_entropy(
        logits.into_dispatch(),
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

impl CrossEntropyKernels for Flex {
    fn target_ids(targets: FlexTensor) -> Vec<i64> {
        targets
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .expect("integer targets")
    }

    fn ce_forward(logits: &FlexTensor, targets: &[i64]) -> (FlexTensor, Vec<f32>) {
        let logits = if logits.is_contiguous() {
            logits.clone()
        } else {
            logits.clone().to_contiguous()
        };
        let [n, v] = logits.layout().shape().dims::<2>();
        let values = logits.as_slice::<f32>().expect("f32 logits");
        let lse: Vec<f32> = values.par_chunks(v).map(row_lse).collect();
        let loss: Vec<f32> = (0..n)
            .map(|r| lse[r] - values[r * v + targets[r] as usize])
            .collect();
        (FlexTensor::from_data(TensorData::new(loss, [n])), lse)
    }

    fn ce_backward(
        logits: FlexTensor,
        lse: &[f32],
        targets: &[i64],
        grad: FlexTensor,
    ) -> FlexTensor {
        let mut out = if logits.is_contiguous() && logits.layout().start_offset() == 0 {
            logits
        } else {
            logits.to_contiguous()
        };
        let [_, v] = out.layout().shape().dims::<2>();
        let g = grad
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 gradient");
        // Writes in place when the buffer is ours alone; copies once otherwise.
        out.storage_mut::<f32>()
            .par_chunks_mut(v)
            .enumerate()
            .for_each(|(r, row)| {
                let (g, lse) = (g[r], lse[r]);
                if g == 0.0 {
                    row.fill(0.0);
                    return;
                }
                row.iter_mut().for_each(|x| *x = g * exp(*x - lse));
                row[targets[r] as usize] -= g;
            });
        out
    }
}

impl CrossEntropyOps for Flex {
    fn softmax_cross_entropy(logits: FlexTensor, targets: FlexTensor) -> FlexTensor {
        Self::ce_forward(&logits, &Self::target_ids(targets)).0
    }
}

impl<B: Backend + CrossEntropyKernels, C: CheckpointStrategy> CrossEntropyOps for Autodiff<B, C> {
    fn softmax_cross_entropy(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct SoftmaxCrossEntropy;

        impl<B: Backend + CrossEntropyKernels> Backward<B, 1> for SoftmaxCrossEntropy {
            type State = (FloatTensor<B>, Vec<f32>, Vec<i64>);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let (logits, lse, targets) = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    B::ce_backward(logits, &lse, &targets, grad)
                });
            }
        }

        let targets = B::target_ids(targets);
        let guard = logits.node();
        let logits = logits.into_primitive();
        let (loss, lse) = B::ce_forward(&logits, &targets);
        match SoftmaxCrossEntropy
            .prepare::<C>([guard])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((logits, lse, targets), loss),
            OpsKind::UnTracked(prep) => prep.finish(loss),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::reference_cross_entropy;
    use burn::tensor::{Device, Distribution};

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap()
    }

    /// Random logits `[n, v]`, targets and row weights (some zero, as padding) on `device`.
    fn problem(n: usize, v: usize, device: &Device) -> (Tensor<2>, Tensor<1, Int>, Tensor<1>) {
        device.seed(7);
        let logits = Tensor::<2>::random([n, v], Distribution::Normal(0.0, 3.0), device);
        let targets: Vec<u32> = (0..n).map(|r| ((r * 7919) % v) as u32).collect();
        let targets = crate::ids_tensor(&targets, [n], device);
        let weights: Vec<f32> = (0..n).map(|r| if r % 5 == 4 { 0.0 } else { 1.0 }).collect();
        let weights = Tensor::<1>::from_data(TensorData::new(weights, [n]), device);
        (logits, targets, weights)
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
    fn forward_and_gradient_match_the_reference_loss() {
        let device = Device::flex().autodiff();
        let (logits, targets, weights) = problem(37, 1000, &device);
        let run = |fused: bool| {
            let logits = logits.clone().require_grad();
            let rows = match fused {
                true => softmax_cross_entropy(logits.clone(), targets.clone()),
                false => reference_cross_entropy(logits.clone(), targets.clone()),
            };
            let loss = (rows.clone() * weights.clone()).sum();
            let grads = loss.backward();
            let rows = rows
                .inner()
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap();
            (rows, values(logits.grad(&grads).unwrap()))
        };
        let (fused_rows, fused_grad) = run(true);
        let (ref_rows, ref_grad) = run(false);
        for (a, b) in fused_rows.iter().zip(&ref_rows) {
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "loss {a} vs {b}");
        }
        for (a, b) in fused_grad.iter().zip(&ref_grad) {
            assert!((a - b).abs() <= 1e-6, "gradient {a} vs {b}");
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let device = Device::flex().autodiff();
        let (n, v) = (6, 5);
        let (logits, targets, weights) = problem(n, v, &device);
        let w = weights.clone().inner().into_data().convert::<f32>();
        let w = w.try_into_vec::<f32>().unwrap();
        // Only row `r` changes when one of its logits does; reading that row alone keeps the
        // other rows' rounding out of the difference.
        let row_loss = |l: Tensor<2>, r: usize| -> f64 {
            let rows = softmax_cross_entropy(l, targets.clone().inner()).into_data();
            f64::from(rows.convert::<f32>().try_into_vec::<f32>().unwrap()[r] * w[r])
        };
        let x = logits.clone().require_grad();
        let grads = (softmax_cross_entropy(x.clone(), targets.clone()) * weights.clone())
            .sum()
            .backward();
        let analytic = values(x.grad(&grads).unwrap());
        let base = values(logits.clone().inner());
        let eps = 5e-2f32;
        for i in 0..n * v {
            let shifted = |d: f32| {
                let mut p = base.clone();
                p[i] += d;
                let p = Tensor::from_data(TensorData::new(p, [n, v]), &Device::flex());
                row_loss(p, i / v)
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
