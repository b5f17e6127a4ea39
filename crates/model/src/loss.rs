//! Weighted softmax cross-entropy over next-token logits.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

use crate::device::runs_fused_ops;
use crate::fused_cross_entropy;

/// Mean cross-entropy of `logits [N, vocab]` against `targets [N]`, each position weighted by
/// `weights [N]` (0 drops a padding position); the mean is over the weights' sum. Runs the
/// fused operation on flex and [`reference_cross_entropy`] elsewhere.
pub fn weighted_cross_entropy(
    logits: Tensor<2>,
    targets: Tensor<1, Int>,
    weights: Tensor<1>,
    weight_sum: f32,
) -> Tensor<1> {
    let per_row = if runs_fused_ops(&logits.device()) {
        fused_cross_entropy::softmax_cross_entropy(logits, targets)
    } else {
        reference_cross_entropy(logits, targets)
    };
    (per_row * weights).sum().div_scalar(weight_sum.max(1.0))
}

/// Per-row cross-entropy from Burn's own `log_softmax` and `gather`: the reference the fused
/// operation is tested against, and the path on other backends.
pub fn reference_cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    log_softmax(logits, 1)
        .gather(1, targets.unsqueeze_dim(1))
        .squeeze_dim::<1>(1)
        .neg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn matches_a_hand_computed_value_and_ignores_zero_weights() {
        let d = Device::flex();
        let logits = Tensor::<2>::from_floats(
            [
                [0.0, 0.0, 0.0, 0.0],
                [5.0, 0.0, 0.0, 0.0],
                [1.0, 2.0, 3.0, 4.0],
            ],
            &d,
        );
        let targets = Tensor::<1, Int>::from_ints([2, 0, 3], &d);
        let weights = Tensor::<1>::from_floats([1.0, 0.0, 1.0], &d);
        let lse = (1f64.exp() + 2f64.exp() + 3f64.exp() + 4f64.exp()).ln();
        let want = (4f64.ln() + (lse - 4.0)) / 2.0;
        for device in [d.clone(), crate::Backend::Ndarray.device()] {
            let got: f32 = weighted_cross_entropy(
                logits.clone().to_device(&device),
                targets.clone().to_device(&device),
                weights.clone().to_device(&device),
                2.0,
            )
            .into_scalar();
            assert!(
                (got as f64 - want).abs() < 1e-5,
                "{device:?}: {got} vs {want}"
            );
        }
    }
}
