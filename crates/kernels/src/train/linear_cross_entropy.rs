//! The output layer and its weighted softmax cross-entropy as one operation, for the flex
//! backend: the technique of Liger Kernel's fused linear cross-entropy.
//!
//! The stock path (`Linear`, `log_softmax`, `gather`) builds the logits, a probabilities
//! tensor of the same size (6,400 x 10,000 floats, 256 MB, for the textbook batch) and walks
//! them several times forward and backward, at memory speed. Here the rows are taken in blocks
//! small enough that a block's logits stay in a core's cache: a block's logits, log-sum-exps,
//! losses and, when a backward pass can follow, `weight * (softmax - one_hot)` and its products
//! into the input, weight and bias gradients are all computed while the block is in cache, so
//! the full logits never exist. Rows of weight 0 (padding) are skipped: their loss counts for
//! nothing and their gradient is exactly zero. Because the operation's output is one weighted
//! sum, its gradient is one number, and the gradients computed in the forward pass are only
//! scaled by it in the backward pass.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::nn::Linear;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use crate::even;
use crate::math::{Vectorised, exp_in_place, widest_vectors};
use crate::matmul::{Operand, matmul_on_this_thread};
use crate::train::autodiff::{HandBackward, record};
use crate::train::flex_buffers::{floats, linear_bias, tensor};

/// The output layer's weighted cross-entropy as a backend operation.
#[backend_extension(Flex, Autodiff)]
pub trait CrossEntropyOps: Backend {
    /// `sum over r of weights[r] * -log softmax(hidden[r] · weight + bias)[targets[r]]` for
    /// the rows of `hidden [N, H]`, with `weight [H, V]`, `bias [V]`, `targets [N]` and
    /// `weights [N]` (not differentiated): shape `[1]`.
    fn linear_cross_entropy(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        targets: IntTensor<Self>,
        weights: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// The kernels a backend supplies for the fused loss.
pub trait CrossEntropyKernels: Backend {
    /// The weighted loss, and with `gradients` the gradients of hidden, weight and bias for an
    /// output gradient of 1.
    #[allow(clippy::type_complexity)]
    fn ce_forward(
        hidden: &FloatTensor<Self>,
        weight: &FloatTensor<Self>,
        bias: &FloatTensor<Self>,
        targets: IntTensor<Self>,
        weights: &FloatTensor<Self>,
        gradients: bool,
    ) -> (FloatTensor<Self>, Option<[FloatTensor<Self>; 3]>);
    /// `gradients` scaled by the output's gradient `grad [1]`.
    fn ce_scale(
        gradients: [FloatTensor<Self>; 3],
        grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3];
}

/// The weighted cross-entropy of `output` applied to `hidden [N, H]` against `targets [N]`:
/// `sum over r of weights[r] * loss[r]`, shape `[1]`; flex devices only (see
/// [`crate::Kernels::fused_on`]).
pub fn linear_cross_entropy(
    output: &Linear,
    hidden: Tensor<2>,
    targets: Tensor<1, Int>,
    weights: Tensor<1>,
) -> Tensor<1> {
    let weight = output.weight.val();
    let bias = linear_bias(output);
    let out = <Dispatch as CrossEntropyOps>::linear_cross_entropy(
        hidden.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        targets.into_dispatch(),
        weights.into_dispatch(),
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

/// The most rows in a block: the block's logits (128 x 10,000 floats for the textbook model,
/// 5 MB) stay in cache from their product to their gradient's products.
const BLOCK_ROWS: usize = 128;

/// Logits at most this many are handled on the calling thread: waking the thread pool costs
/// more than the work (the passage-memorising model's 50 x 42 logits).
const PARALLEL: usize = 1 << 16;

/// The sizes and inputs of one loss, as plain buffers.
struct Problem<'a> {
    hidden: &'a [f32],
    /// The output layer's weight `[H, V]` with its bias as one more row, `[H + 1, V]`: the
    /// products then add the bias (and sum its gradient) for a hidden row extended by a 1.
    weight: &'a [f32],
    targets: &'a [i64],
    weights: &'a [f32],
    /// Rows, hidden width, vocabulary.
    dims: [usize; 3],
}

/// What one worker accumulates over its run of rows.
struct Part<'a> {
    gradients: bool,
    loss: f64,
    /// The hidden gradient's rows from this worker's first row up to the next worker's,
    /// `[rows, H]`; empty without gradients.
    d_hidden: &'a mut [f32],
    /// The index of `d_hidden`'s first row.
    first_row: usize,
    /// `[H + 1, V]`, the weight's gradient and the bias's as its last row; empty without
    /// gradients.
    d_weight: Vec<f32>,
    /// A block's hidden rows, gathered and each extended by a 1 `[n, H + 1]`, its logits,
    /// which become `exp(logit - the row's maximum)`, each row's `weight / the sum of its
    /// exponentials`, its hidden gradient before the rows are scaled, and its hidden rows
    /// scaled: reused from block to block.
    block_hidden: Vec<f32>,
    logits: Vec<f32>,
    scales: Vec<f32>,
    block_d_hidden: Vec<f32>,
    scaled_hidden: Vec<f32>,
}

impl<'a> Part<'a> {
    fn new(
        [_, h, v]: [usize; 3],
        gradients: bool,
        d_hidden: &'a mut [f32],
        first_row: usize,
    ) -> Self {
        let sized = |len: usize| match gradients {
            true => vec![0.0f32; len],
            false => Vec::new(),
        };
        Self {
            gradients,
            loss: 0.0,
            d_hidden,
            first_row,
            d_weight: sized((h + 1) * v),
            block_hidden: Vec::with_capacity(BLOCK_ROWS * (h + 1)),
            logits: vec![0.0f32; BLOCK_ROWS * v],
            scales: Vec::with_capacity(BLOCK_ROWS),
            block_d_hidden: sized(BLOCK_ROWS * h),
            scaled_hidden: Vec::with_capacity(BLOCK_ROWS * (h + 1)),
        }
    }

    /// Adds one block of rows' loss and, with gradients, their gradients. The gradient of a
    /// row's logits is `weight * (softmax - one_hot)`, that is `scale * (exponentials - sum *
    /// one_hot)` with `scale = weight / sum`: the products take the exponentials as they lie
    /// but for the target's, and the scales are applied to the block's hidden rows and hidden
    /// gradient (a row each, not a row of the vocabulary each).
    fn block(&mut self, p: &Problem, rows: &[usize]) {
        let [_, h, v] = p.dims;
        let (n, k) = (rows.len(), h + 1);
        self.block_hidden.clear();
        for &r in rows {
            self.block_hidden
                .extend_from_slice(&p.hidden[r * h..(r + 1) * h]);
            self.block_hidden.push(1.0);
        }
        let logits = &mut self.logits[..n * v];
        let hidden = Operand::rows(&self.block_hidden, h + 1);
        matmul_on_this_thread(
            logits,
            [n, v, h + 1],
            hidden,
            Operand::rows(p.weight, v),
            false,
        );
        self.scales.clear();
        self.loss += widest_vectors(RowLosses {
            logits,
            rows,
            problem: p,
            scales: &mut self.scales,
        });
        if !self.gradients {
            return;
        }
        let exponentials = Operand::rows(&self.logits[..n * v], v);
        let d_hidden = &mut self.block_d_hidden[..n * h];
        matmul_on_this_thread(
            d_hidden,
            [n, h, v],
            exponentials,
            Operand::transposed(p.weight, v),
            false,
        );
        let parts = rows.iter().zip(d_hidden.chunks_exact(h)).zip(&self.scales);
        for ((&r, d), scale) in parts {
            let out = &mut self.d_hidden[(r - self.first_row) * h..][..h];
            out.iter_mut().zip(d).for_each(|(o, d)| *o = scale * d);
        }
        self.scaled_hidden.clear();
        for (row, scale) in self.block_hidden.chunks_exact(k).zip(&self.scales) {
            self.scaled_hidden.extend(row.iter().map(|x| x * scale));
        }
        matmul_on_this_thread(
            &mut self.d_weight,
            [k, v, n],
            Operand::transposed(&self.scaled_hidden, k),
            exponentials,
            true,
        );
    }
}

/// A block's logits turned into its weighted loss and in place into `exp(logit - the row's
/// maximum)`, less the exponentials' sum at the target; each row's `weight / that sum` is
/// pushed onto `scales`.
struct RowLosses<'a> {
    logits: &'a mut [f32],
    rows: &'a [usize],
    problem: &'a Problem<'a>,
    scales: &'a mut Vec<f32>,
}

impl Vectorised for RowLosses<'_> {
    type Output = f64;

    #[inline(always)]
    fn run(self) -> f64 {
        let v = self.problem.dims[2];
        let mut loss = 0.0f64;
        for (row, &r) in self.logits.chunks_exact_mut(v).zip(self.rows) {
            let (t, w) = (self.problem.targets[r] as usize, self.problem.weights[r]);
            let target = row[t];
            let (max, sum) = exp_in_place(row);
            loss += f64::from(w * (max + sum.ln() - target));
            row[t] -= sum;
            self.scales.push(w / sum);
        }
        loss
    }
}

/// The weighted loss of `p` and, with `gradients`, the gradients of hidden, weight and bias.
/// The rows of non-zero weight are shared among the cores in equal contiguous runs, each cut
/// into blocks of equal size; the parts are added in a fixed order, so the sums come out the
/// same in every run on the same machine.
fn fused(p: &Problem, gradients: bool) -> (f32, Option<[Vec<f32>; 3]>) {
    let [n, h, v] = p.dims;
    let rows: Vec<usize> = (0..n).filter(|&r| p.weights[r] != 0.0).collect();
    let workers = match n * v > PARALLEL {
        true => rayon::current_num_threads().clamp(1, rows.len().div_ceil(BLOCK_ROWS).max(1)),
        false => 1,
    };
    let runs: Vec<&[usize]> = even::ranges(rows.len(), workers)
        .map(|run| &rows[run])
        .collect();
    // Each worker writes the hidden gradient's rows from its first row (the first worker:
    // row 0) up to the next worker's first; padding rows stay zero.
    let mut d_hidden = vec![0.0f32; if gradients { n * h } else { 0 }];
    let mut regions = Vec::with_capacity(workers);
    let mut rest = &mut d_hidden[..];
    for (w, run) in runs.iter().enumerate() {
        let first = if w == 0 { 0 } else { run[0] };
        let end = runs.get(w + 1).map_or(n, |next| next[0]);
        let len = if gradients { (end - first) * h } else { 0 };
        let (region, tail) = std::mem::take(&mut rest).split_at_mut(len);
        rest = tail;
        regions.push((*run, region, first));
    }
    let run = |(run, region, first): (&[usize], &mut [f32], usize)| {
        let mut part = Part::new(p.dims, gradients, region, first);
        let blocks = run.len().div_ceil(BLOCK_ROWS).max(1);
        for block in run.chunks(run.len().div_ceil(blocks).max(1)) {
            part.block(p, block);
        }
        (part.loss, part.d_weight)
    };
    let parts: Vec<(f64, Vec<f32>)> = match workers {
        1 => regions.into_iter().map(run).collect(),
        _ => regions.into_par_iter().map(run).collect(),
    };
    let loss = parts.iter().map(|part| part.0).sum::<f64>() as f32;
    if !gradients {
        return (loss, None);
    }
    let mut parts = parts.into_iter();
    let (_, mut d_weight) = parts.next().expect("one worker at least");
    for (_, part) in parts {
        add(&mut d_weight, &part);
    }
    let d_bias = d_weight.split_off(h * v);
    (loss, Some([d_hidden, d_weight, d_bias]))
}

/// `sum += part`, in pieces shared among the cores.
fn add(sum: &mut [f32], part: &[f32]) {
    const PIECE: usize = 1 << 14;
    sum.par_chunks_mut(PIECE)
        .zip(part.par_chunks(PIECE))
        .for_each(|(s, x)| s.iter_mut().zip(x).for_each(|(s, x)| *s += x));
}

impl CrossEntropyKernels for Flex {
    fn ce_forward(
        hidden: &FlexTensor,
        weight: &FlexTensor,
        bias: &FlexTensor,
        targets: FlexTensor,
        weights: &FlexTensor,
        gradients: bool,
    ) -> (FlexTensor, Option<[FlexTensor; 3]>) {
        let [n, h] = hidden.layout().shape().dims::<2>();
        let v = weight.layout().shape().dims::<2>()[1];
        let targets = targets
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .expect("integer targets");
        // Ids come from the vocabulary that sized the output layer; one beyond it would read
        // past the row's logits.
        assert!(
            targets.iter().all(|&t| (0..v as i64).contains(&t)),
            "a target id is outside the {v}-entry output layer"
        );
        let (hidden, weights) = (floats(hidden), floats(weights));
        let weight = [floats(weight), floats(bias)].concat();
        let problem = Problem {
            hidden: &hidden,
            weight: &weight,
            targets: &targets,
            weights: &weights,
            dims: [n, h, v],
        };
        let (loss, grads) = fused(&problem, gradients);
        let grads = grads.map(|[d_hidden, d_weight, d_bias]| {
            [
                tensor(d_hidden, &[n, h]),
                tensor(d_weight, &[h, v]),
                tensor(d_bias, &[v]),
            ]
        });
        (tensor(vec![loss], &[1]), grads)
    }

    fn ce_scale(gradients: [FlexTensor; 3], grad: FlexTensor) -> [FlexTensor; 3] {
        let g = floats(&grad)[0];
        if g == 1.0 {
            return gradients;
        }
        gradients.map(|t| {
            let shape = t.layout().shape().to_vec();
            let scaled = floats(&t).iter().map(|x| x * g).collect();
            tensor(scaled, &shape)
        })
    }
}

impl CrossEntropyOps for Flex {
    fn linear_cross_entropy(
        hidden: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        targets: FlexTensor,
        weights: FlexTensor,
    ) -> FlexTensor {
        Self::ce_forward(&hidden, &weight, &bias, targets, &weights, false).0
    }
}

/// The loss's backward pass on the tape: the forward pass's gradients, scaled.
#[derive(Debug)]
struct LinearCrossEntropy;

impl<B: Backend + CrossEntropyKernels> HandBackward<B, 3> for LinearCrossEntropy {
    type State = Option<[FloatTensor<B>; 3]>;

    fn gradients(state: Self::State, grad: FloatTensor<B>) -> [FloatTensor<B>; 3] {
        let gradients = state.expect("gradients are computed whenever an input is tracked");
        B::ce_scale(gradients, grad)
    }
}

impl<B: Backend + CrossEntropyKernels, C: CheckpointStrategy> CrossEntropyOps for Autodiff<B, C> {
    fn linear_cross_entropy(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        targets: IntTensor<Self>,
        weights: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let weights = weights.into_primitive();
        record::<B, C, LinearCrossEntropy, 3>(
            [hidden, weight, bias],
            |[hidden, weight, bias], tracked| {
                B::ce_forward(&hidden, &weight, &bias, targets, &weights, tracked)
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::central_difference;
    use crate::train::flex_buffers::values;
    use burn::module::{Module, Param};
    use burn::nn::LinearConfig;
    use burn::tensor::{Device, Distribution, TensorData};

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

    /// The fused loss and the stock path's weighted sum, each times 2.5 (so the gradients
    /// are scaled in the backward pass), with their gradients of hidden, weight and bias.
    fn losses_and_gradients([n, h, v]: [usize; 3], padded: bool) -> [[Vec<f32>; 4]; 2] {
        let device = Device::flex().autodiff();
        let (output, hidden, targets, mut weights) = problem([n, h, v], &device);
        if !padded {
            weights = weights.ones_like();
        }
        [true, false].map(|fused| {
            let hidden = hidden.clone().require_grad();
            let loss = match fused {
                true => {
                    linear_cross_entropy(&output, hidden.clone(), targets.clone(), weights.clone())
                }
                false => (reference(output.forward(hidden.clone()), targets.clone())
                    * weights.clone())
                .sum(),
            };
            let grads = (loss.clone() * 2.5).backward();
            let bias = output.bias.as_ref().unwrap().grad(&grads).unwrap();
            [
                values(loss.inner()),
                values(hidden.grad(&grads).unwrap()),
                values(output.weight.grad(&grads).unwrap()),
                values(bias),
            ]
        })
    }

    #[test]
    fn loss_and_gradients_match_the_stock_path() {
        // One block on the calling thread; a block per core; several blocks per core.
        for dims in [[37, 16, 1000], [300, 16, 1000], [700, 16, 200]] {
            for padded in [false, true] {
                let [fused, stock] = losses_and_gradients(dims, padded);
                let what = [
                    "loss",
                    "hidden gradient",
                    "weight gradient",
                    "bias gradient",
                ];
                for ((a, b), what) in fused.iter().zip(&stock).zip(what) {
                    let scale = b.iter().fold(1.0f32, |m, x| m.max(x.abs()));
                    for (x, y) in a.iter().zip(b) {
                        assert!(
                            (x - y).abs() <= 2e-5 * scale,
                            "{dims:?}, padded {padded}, {what}: {x} vs {y}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn padding_rows_get_no_gradient() {
        let [fused, _] = losses_and_gradients([300, 16, 1000], true);
        let hidden = &fused[1];
        for (r, row) in hidden.chunks_exact(16).enumerate() {
            let zero = row.iter().all(|&x| x == 0.0);
            assert_eq!(zero, r % 5 == 4, "row {r}: {row:?}");
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let device = Device::flex().autodiff();
        let [n, h, v] = [6, 3, 5];
        let (output, hidden, targets, weights) = problem([n, h, v], &device);
        let x = hidden.clone().require_grad();
        let grads =
            linear_cross_entropy(&output, x.clone(), targets.clone(), weights.clone()).backward();
        let analytic = values(x.grad(&grads).unwrap());
        let w = values(weights.inner());
        let inner = output.valid();
        // Only row `r` changes when one of its inputs does; weighing that row alone keeps the
        // other rows' rounding out of the difference.
        let row_loss = |p: Vec<f32>, r: usize| -> f64 {
            let p = Tensor::from_data(TensorData::new(p, [n, h]), &Device::flex());
            let mut only = vec![0.0f32; n];
            only[r] = w[r];
            let only = Tensor::from_data(TensorData::new(only, [n]), &Device::flex());
            f64::from(
                values(linear_cross_entropy(
                    &inner,
                    p,
                    targets.clone().inner(),
                    only,
                ))[0],
            )
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
