//! One optimizer step, shared by the training loop and the bench.

use burn::grad_clipping::GradientClippingConfig;
use burn::optim::{AdaGradConfig, AdamConfig, GradientsParams, ModuleOptimizer};

use burn::tensor::Device;
use data::Batch;

use model::LanguageModel;
use model::recurrent::State;

use pipeline::config::{OptimizerKind, TrainConfig};
use pipeline::evaluation::batch_loss;

/// The configured optimizer with its gradient clipping.
pub fn optimizer(settings: &TrainConfig) -> ModuleOptimizer {
    let clip = settings
        .clip_value
        .map(GradientClippingConfig::Value)
        .or(settings.clip_norm.map(GradientClippingConfig::Norm));
    match settings.optimizer {
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
    /// The LSTM state after the batch, detached from the graph.
    pub state: State,
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
        state: state.detach(),
    }
}
