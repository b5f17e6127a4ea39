//! Adam as one pass over each parameter's values on flex. Burn's `Adam` takes a dozen tensor
//! operations per parameter, each a pass over memory with a fresh buffer; here the parameter
//! and its two moments are read and written once, shared among the cores. The arithmetic is
//! Burn's, operation for operation, so the values are the same to the bit, and the state is
//! Burn's own `AdamState`, so checkpoints of either load in the other. Other backends take
//! Burn's `Adam` itself.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, backend_extension};
use burn::optim::LearningRate;
use burn::optim::{Adam, AdamConfig, AdamState, AdaptiveMomentumState, Optimizer};
use burn::tensor::{Device, Tensor};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use crate::Kernels;
use crate::math::{Vectorised, widest_vectors};
use crate::train::flex_buffers::{floats, writable};

/// Adam's update of one parameter as a backend operation.
#[backend_extension(Flex)]
pub trait AdamOps: Backend {
    /// The parameter and its first and second moments after one step with `grad`; `factors`
    /// are `[beta_1, beta_2, the bias-corrected step factor, the epsilon term, the learning
    /// rate]`.
    fn adam_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        factors: [f32; 5],
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// One Adam step of the values `p` with moments `m1`, `m2` and gradient `g`: Burn's
/// operations in Burn's order, each rounded to f32 as a tensor operation would be.
struct Update<'a> {
    p: &'a mut [f32],
    m1: &'a mut [f32],
    m2: &'a mut [f32],
    g: &'a [f32],
    /// `beta_1, beta_2`, the bias-corrected step factor, the epsilon term, the learning rate.
    factors: [f32; 5],
}

impl Vectorised for Update<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let [beta_1, beta_2, step, epsilon, lr] = self.factors;
        let (keep_1, keep_2) = (1.0 - beta_1, 1.0 - beta_2);
        let values = self.p.iter_mut().zip(self.m1).zip(self.m2).zip(self.g);
        for (((p, m1), m2), &g) in values {
            *m1 = *m1 * beta_1 + g * keep_1;
            *m2 = *m2 * beta_2 + g * g * keep_2;
            let delta = *m1 * step / (m2.sqrt() + epsilon);
            *p -= delta * lr;
        }
    }
}

/// Values per share of the work: below this a parameter is updated on the calling thread.
const SHARE: usize = 1 << 16;

impl AdamOps for Flex {
    fn adam_update(
        param: FlexTensor,
        grad: FlexTensor,
        moment_1: FlexTensor,
        moment_2: FlexTensor,
        factors: [f32; 5],
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let [mut param, mut moment_1, mut moment_2] = [param, moment_1, moment_2].map(writable);
        let (p, m1) = (param.storage_mut::<f32>(), moment_1.storage_mut::<f32>());
        let (m2, g) = (moment_2.storage_mut::<f32>(), floats(&grad));
        let update = |p, m1, m2, g| {
            widest_vectors(Update {
                p,
                m1,
                m2,
                g,
                factors,
            })
        };
        match p.len() > SHARE {
            true => p
                .par_chunks_mut(SHARE)
                .zip(m1.par_chunks_mut(SHARE))
                .zip(m2.par_chunks_mut(SHARE))
                .zip(g.par_chunks(SHARE))
                .for_each(|(((p, m1), m2), g)| update(p, m1, m2, g)),
            false => update(p, m1, m2, &g),
        }
        (param, moment_1, moment_2)
    }
}

/// Adam with Burn's defaults (`beta_1` 0.9, `beta_2` 0.999), no weight decay and no AMSGrad:
/// the fused update on flex, Burn's `Adam` elsewhere.
#[derive(Clone)]
pub struct FusedAdam {
    epsilon: f32,
    /// Burn's own, for other backends.
    burn: Adam,
}

/// Burn's `AdamConfig` defaults.
const BETA_1: f32 = 0.9;
const BETA_2: f32 = 0.999;

impl FusedAdam {
    /// Adam with `epsilon` added to the square root of the second moment.
    pub fn new(epsilon: f32) -> Self {
        let config = AdamConfig::new()
            .with_beta_1(BETA_1)
            .with_beta_2(BETA_2)
            .with_epsilon(epsilon);
        Self {
            epsilon,
            burn: config.build(),
        }
    }
}

impl Optimizer for FusedAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        if !Kernels::Fused.fused_on(&param.device()) {
            return self.burn.step(lr, param, grad, state);
        }
        let (time, moment_1, moment_2) = match state {
            Some(AdamState { momentum }) => (momentum.time, momentum.moment_1, momentum.moment_2),
            None => (0, param.zeros_like(), param.zeros_like()),
        };
        // Burn's bias correction, as Burn computes it.
        let time = time + 1;
        let correction_2 = (1.0 - BETA_2.powi(time as i32)).sqrt();
        let step = correction_2 / (1.0 - BETA_1.powi(time as i32));
        let factors = [BETA_1, BETA_2, step, self.epsilon * correction_2, lr as f32];
        let (param, moment_1, moment_2) = <Dispatch as AdamOps>::adam_update(
            param.into_dispatch(),
            grad.into_dispatch(),
            moment_1.into_dispatch(),
            moment_2.into_dispatch(),
            factors,
        );
        let momentum = AdaptiveMomentumState::new(
            time,
            Tensor::from_dispatch(moment_1),
            Tensor::from_dispatch(moment_2),
        );
        (Tensor::from_dispatch(param), Some(AdamState::new(momentum)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        AdamState::new(state.momentum.to_device(device))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::flex_buffers::values;
    use burn::tensor::Distribution;

    /// Three steps from no state, on a parameter shared among the cores and on one updated on
    /// the calling thread: the same parameters and moments as Burn's `Adam`, to the bit.
    #[test]
    fn the_fused_update_is_burns_adam_to_the_bit() {
        let device = Device::flex();
        device.seed(5);
        let fused = FusedAdam::new(1e-7);
        let burn = AdamConfig::new().with_epsilon(1e-7).build();
        for shape in [[300, 300], [3, 7]] {
            let start = Tensor::<2>::random(shape, Distribution::Normal(0.0, 1.0), &device);
            let (mut ours, mut theirs) = ((start.clone(), None), (start, None));
            for step in 0..3 {
                let grad = Tensor::<2>::random(shape, Distribution::Normal(0.0, 0.1), &device);
                let lr = 0.01 / (step + 1) as f64;
                ours = fused.step(lr, ours.0, grad.clone(), ours.1);
                theirs = burn.step(lr, theirs.0, grad, theirs.1);
                let (a, b) = (
                    ours.1.clone().unwrap().momentum,
                    theirs.1.clone().unwrap().momentum,
                );
                assert_eq!(a.time, b.time);
                let pairs = [
                    (ours.0.clone(), theirs.0.clone(), "parameter"),
                    (a.moment_1, b.moment_1, "first moment"),
                    (a.moment_2, b.moment_2, "second moment"),
                ];
                for (x, y, what) in pairs {
                    let (x, y) = (values(x), values(y));
                    let differ = x.iter().zip(&y).filter(|(x, y)| x.to_bits() != y.to_bits());
                    assert_eq!(differ.count(), 0, "{shape:?}, step {step}: {what}");
                }
            }
        }
    }
}
