//! Data-parallel training through Burn's multi-device optimizer step: a batch split between
//! two devices trains exactly as the whole batch on one.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use data::Batch;
use e2e::{scratch, small_config};
use model::LanguageModel;
use pipeline::Config;
use pipeline::prepare::prepare;
use train::step::{optimizer, train_step, train_step_on};

/// Every float parameter, in the model's order.
struct Flatten(Vec<f32>);

impl ModuleVisitor for Flatten {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.extend(
            param
                .val()
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32 parameters"),
        );
    }
}

fn weights(model: &LanguageModel) -> Vec<f32> {
    let mut flat = Flatten(Vec::new());
    model.visit(&mut flat);
    flat.0
}

#[test]
fn two_devices_with_b_sequences_each_step_as_one_device_with_2b() {
    let dir = scratch("data-parallel");
    let (mut config, _) = Config::load(&small_config(&dir, "")).unwrap();
    config.train.devices = 2;
    // Long enough that some recipes end in padding.
    config.data.seq_len = 150;
    let devices: Vec<Device> = config
        .train
        .device_specs()
        .iter()
        .map(|spec| spec.open().unwrap().device.autodiff())
        .collect();
    assert_eq!(devices.len(), 2);
    let data = prepare(&config).unwrap();
    // Three batches of 2B = 16 recipes, with their padding, so the shares count different
    // numbers of positions.
    let batches: Vec<Batch> = data.training.epoch(42, 1).take(3).collect();
    let device = &devices[0];
    device.seed(7);
    let start = config.model.init(data.vocab.size(), device);
    let initial = weights(&start);
    let (mut one, mut two) = (start.clone(), start);
    let (mut optim_one, mut optim_two) = (optimizer(&config.train), optimizer(&config.train));
    let lr = config.train.learning_rate;
    for (step, batch) in batches.iter().enumerate() {
        assert_eq!(batch.batch_size, 16);
        let shares = batch.split(2);
        let counted = |b: &Batch| b.weights.iter().sum::<f32>();
        assert_ne!(counted(&shares[0]), counted(&shares[1]));
        let a = train_step(one, &mut optim_one, batch, lr, device, None);
        let b = train_step_on(two, &mut optim_two, batch, lr, &devices, None);
        assert!(
            (a.loss - b.loss).abs() < 1e-5,
            "step {step}: loss {} on one device, {} on two",
            a.loss,
            b.loss
        );
        assert_eq!(a.weight, b.weight);
        (one, two) = (a.model, b.model);
    }
    let (w1, w2) = (weights(&one), weights(&two));
    assert_eq!(w1.len(), w2.len());
    let worst = w1
        .iter()
        .zip(&w2)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-5, "largest weight difference {worst}");
    assert!(
        w1.iter().zip(&initial).any(|(x, y)| x != y),
        "the steps moved the weights from where they started"
    );
}

#[test]
fn a_run_on_two_devices_trains_and_a_stream_is_refused() {
    let dir = scratch("data-parallel-run");
    let (mut config, _) = Config::load(&small_config(&dir, "")).unwrap();
    config.train.devices = 2;
    config.train.epochs = 1;
    config.train.max_batches_per_epoch = Some(4);
    let summary = train::train(&config, &dir.join("run"), false).unwrap();
    assert!(summary.epochs[0].loss.is_finite());

    config.data.examples = pipeline::config::ExampleKind::Stream;
    let e = format!("{:#}", config.validate().unwrap_err());
    assert!(e.contains("train.devices") && e.contains("stream"), "{e}");
}
