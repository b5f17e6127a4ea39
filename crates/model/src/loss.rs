//! Weighted softmax cross-entropy over next-token logits.

use burn::nn::Linear;
use burn::tensor::{Int, Tensor};
use kernels::Kernels;
use kernels::train::linear_cross_entropy::{linear_cross_entropy, reference};

/// The cross-entropy of `output` applied to `hidden [N, H]` against `targets [N]`, weighted
/// per row by `weights [N]` (0 drops a padding position) and divided by `weight_sum`: the
/// fused operation where `kernels` runs it, Burn's own of the layer's logits elsewhere.
pub fn output_loss(
    output: &Linear,
    hidden: Tensor<2>,
    targets: Tensor<1, Int>,
    weights: Tensor<1>,
    weight_sum: f32,
    kernels: Kernels,
) -> Tensor<1> {
    let divisor = weight_sum.max(1.0);
    if kernels.fused_on(&hidden.device()) {
        linear_cross_entropy(output, hidden, targets, weights.div_scalar(divisor))
    } else {
        let rows = reference(output.forward(hidden), targets);
        (rows * weights).sum().div_scalar(divisor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::nn::LinearConfig;
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
        // An identity output layer passes the logits through: fused (flex) and stock (ndarray).
        #[allow(deprecated)] // the stock path's CPU backend
        let ndarray = Device::ndarray();
        for device in [d.clone(), ndarray] {
            let mut output = LinearConfig::new(4, 4).init(&device);
            output.weight = Param::from_tensor(Tensor::eye(4, &device));
            output.bias = Some(Param::from_tensor(Tensor::zeros([4], &device)));
            let [hidden, weights] = [logits.clone(), weights.clone().unsqueeze_dim::<2>(0)]
                .map(|t| t.to_device(&device));
            let targets = targets.clone().to_device(&device);
            let loss = output_loss(
                &output,
                hidden,
                targets,
                weights.squeeze_dim(0),
                2.0,
                Kernels::Fused,
            );
            let got: f32 = loss.into_scalar();
            assert!(
                (got as f64 - want).abs() < 1e-5,
                "{device:?}: {got} vs {want}"
            );
        }
    }
}
