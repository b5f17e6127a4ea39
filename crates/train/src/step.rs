//! One optimizer step, shared by the training loop and the bench.

use burn::grad_clipping::GradientClippingConfig;
use burn::module::Module;
use burn::optim::{
    AdaGradConfig, AdamConfig, GradientsParams, ModuleOptimizer, MultiGradientsParams,
};

use burn::tensor::Device;
use data::Batch;
use kernels::Kernels;
use kernels::train::adam::FusedAdam;

use model::LanguageModel;
use model::recurrent::State;

use pipeline::config::{OptimizerKind, TrainConfig};
use pipeline::evaluation::{batch_loss, share_loss};

/// The configured optimizer with its gradient clipping. Adam with the fused kernels is the
/// kernels crate's one-pass update (Burn's arithmetic and state, Burn's `Adam` off flex).
pub fn optimizer(settings: &TrainConfig) -> ModuleOptimizer {
    let clip = settings
        .clip_value
        .map(GradientClippingConfig::Value)
        .or(settings.clip_norm.map(GradientClippingConfig::Norm));
    match settings.optimizer {
        OptimizerKind::Adam if settings.kernels == Kernels::Fused => {
            let optim = ModuleOptimizer::from(FusedAdam::new(settings.adam_epsilon));
            match clip {
                Some(clip) => optim.with_grad_clipping(clip.init()),
                None => optim,
            }
        }
        OptimizerKind::Adam => AdamConfig::new()
            .with_epsilon(settings.adam_epsilon)
            .with_grad_clipping(clip)
            .init(),
        OptimizerKind::Adagrad => AdaGradConfig::new()
            .with_epsilon(1e-8)
            .with_grad_clipping(clip)
            .init(),
    }
}

/// What one optimizer step returns.
pub struct StepOutput {
    /// The updated model.
    pub model: LanguageModel,
    /// Mean loss over the counted positions.
    pub loss: f64,
    /// Number of counted positions.
    pub weight: f64,
    /// The LSTM state after the batch, detached from the graph (on one device only).
    pub state: Option<State>,
}

/// One Adam step on one batch, starting from `state` (zero when `None`).
pub fn train_step(
    model: LanguageModel,
    optim: &mut ModuleOptimizer,
    batch: &Batch,
    learning_rate: f64,
    device: &Device,
    state: Option<State>,
) -> StepOutput {
    let (loss, weight, state) = batch_loss(&model, batch, device, state);
    let value: f32 = loss.clone().into_scalar();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    StepOutput {
        model: optim.step(learning_rate, model, grads),
        loss: f64::from(value),
        weight,
        state: Some(state.detach()),
    }
}

/// One step with the batch split between `devices` (data parallel, as Burn's own multi-device
/// learner does it): each device runs the forward and backward pass of its share in its own
/// thread on a fork of the model, and the optimizer's multi-device step adds the gradients
/// (`MultiGradientsParams`). Each share's loss is divided by the whole batch's counted
/// positions, so the sum of the gradients is the gradient of the whole batch's mean loss.
/// On one device, [`train_step`].
pub fn train_step_on(
    model: LanguageModel,
    optim: &mut ModuleOptimizer,
    batch: &Batch,
    learning_rate: f64,
    devices: &[Device],
    state: Option<State>,
) -> StepOutput {
    if let [device] = devices {
        return train_step(model, optim, batch, learning_rate, device, state);
    }
    let weight: f32 = batch.weights.iter().sum();
    let shares = batch.split(devices.len());
    let results: Vec<(GradientsParams, f32, Device)> = std::thread::scope(|scope| {
        let workers: Vec<_> = shares
            .iter()
            .zip(devices)
            .map(|(share, device)| {
                let model = model.clone();
                scope.spawn(move || {
                    let model = model.fork(device);
                    let (loss, _, _) = share_loss(&model, share, device, None, weight);
                    let value: f32 = loss.clone().into_scalar();
                    let grads = GradientsParams::from_grads(loss.backward(), &model);
                    (grads, value, device.clone())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let loss: f32 = results.iter().map(|(_, value, _)| value).sum();
    let grads = MultiGradientsParams {
        grads: results
            .into_iter()
            .map(|(grads, _, device)| (grads, device))
            .collect(),
    };
    StepOutput {
        model: optim.step_multi(learning_rate, model, grads),
        loss: f64::from(loss),
        weight: f64::from(weight),
        state: None,
    }
}
