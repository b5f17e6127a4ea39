//! The wgpu backend against the CPU one (`--features wgpu`; in CI on Mesa's llvmpipe through
//! OpenGL): the same tiny model trained the same 10 Adam steps gives the same losses and the
//! same greedy text, and checkpoints and optimizer state move between the backends.

use std::path::Path;
use std::sync::Once;

use data::{Tokenizer, Vocab};
use e2e::{root, scratch};
use model::burn::module::Module;
use model::burn::tensor::Device;
use model::{
    BackendKind, Checkpoint, CheckpointMeta, DeviceSpec, Generator, GraphicsApi, LanguageModel,
    ModelConfig, Sampling,
};
use pipeline::config::TrainConfig;
use pipeline::dataset::Dataset;
use pipeline::prepare::{PreparedData, prepare};
use train::step::{optimizer, train_step};

/// The largest relative difference allowed between the two backends' losses.
const LOSS_TOLERANCE: f64 = 1e-5;

/// The wgpu device through OpenGL: it needs no Vulkan driver (Mesa's Vulkan software driver,
/// lavapipe 22.3, crashes on Burn's matmul kernel) and runs on llvmpipe without a GPU.
fn wgpu_spec() -> DeviceSpec {
    static ENV: Once = Once::new();
    // SAFETY: each test calls this first, and `Once` holds the others until it returns, so no
    // other thread of this process runs yet, let alone reads the environment.
    // `no_opt`: llvmpipe compiles each new shader in seconds instead of minutes; `minimal`:
    // CubeCL times fewer kernel variants before it picks one.
    ENV.call_once(|| unsafe {
        std::env::set_var("GALLIVM_PERF", "no_opt");
        std::env::set_var("CUBECL_AUTOTUNE_LEVEL", "minimal");
    });
    DeviceSpec {
        backend: BackendKind::Wgpu,
        adapter: None,
        graphics_api: GraphicsApi::Gl,
        remote: None,
    }
}

fn open(spec: DeviceSpec) -> Device {
    let opened = spec.open().unwrap_or_else(|e| panic!("{e}"));
    eprintln!("device: {opened}");
    opened.device
}

/// Tiny Shakespeare through the product's pipeline: its 50 most frequent characters, read as
/// 4 parallel streams in windows of 8 with the state carried.
fn shakespeare() -> PreparedData {
    let (mut config, _) =
        pipeline::Config::load(&root().join("configs/shakespeare-char.toml")).unwrap();
    config.corpus.path = root().join(&config.corpus.path);
    config.data.vocab_size = 50;
    config.data.seq_len = 8;
    config.data.batch_size = 4;
    config.data.validation = 0.0;
    let data = prepare(&config).unwrap();
    assert_eq!(data.vocab.size(), 50);
    data
}

fn meta(vocab: &Vocab, step: u64) -> CheckpointMeta {
    CheckpointMeta {
        model: ModelConfig::sized(8, 16),
        vocab_size: vocab.size(),
        tokenizer: Tokenizer::Char,
        context: None,
        epoch: step as usize,
        step,
        loss: 0.0,
        within_epoch: None,
        smoothed_loss: None,
    }
}

/// 10 Adam steps (lr 0.01) on batches of 4 x 8 characters, state carried between windows,
/// from the checkpoint in `start`; the model and every step's loss.
fn train_ten_steps(start: &Path, data: &Dataset, device: &Device) -> (LanguageModel, Vec<f64>) {
    let device = device.clone().autodiff();
    let mut model = Checkpoint::open(start)
        .unwrap()
        .load_model(&device)
        .unwrap();
    let settings = TrainConfig {
        learning_rate: 0.01,
        ..TrainConfig::default()
    };
    let mut optim = optimizer(&settings);
    let (mut losses, mut state) = (Vec::new(), None);
    for batch in data.epoch(0, 1).take(10) {
        let out = train_step(
            model,
            &mut optim,
            &batch,
            settings.learning_rate,
            &device,
            state,
        );
        (model, state) = (out.model, out.state);
        losses.push(out.loss);
    }
    (model, losses)
}

/// 40 greedily generated characters after "First ".
fn greedy(model: &LanguageModel, vocab: &Vocab, device: &Device) -> String {
    let mut generator = Generator::new(model, vocab, Tokenizer::Char, device.clone(), 0);
    let prompt = generator.prompt("First ").unwrap();
    let sampling = Sampling::greedy();
    let ids = generator.generate(&prompt.ids, 40, &sampling, &[]).ids;
    generator.decode(&ids)
}

#[test]
fn ten_adam_steps_on_wgpu_match_the_cpu() {
    let gpu = open(wgpu_spec());
    let cpu = Device::flex();
    let PreparedData {
        vocab, training, ..
    } = shakespeare();
    let dir = scratch("wgpu-parity");

    // One initial model, saved on the CPU and loaded on both backends.
    let init = cpu.clone().autodiff();
    init.seed(3);
    let model = ModelConfig::sized(8, 16).init(vocab.size(), &init);
    let start = Checkpoint::save(
        &dir.join("init"),
        &model,
        None,
        None,
        &vocab,
        meta(&vocab, 0),
    )
    .unwrap()
    .dir;

    let (cpu_model, cpu_losses) = train_ten_steps(&start, &training, &cpu);
    let (gpu_model, gpu_losses) = train_ten_steps(&start, &training, &gpu);
    eprintln!("cpu losses {cpu_losses:?}\nwgpu losses {gpu_losses:?}");
    assert!(
        cpu_losses.last() < cpu_losses.first(),
        "the model learns: {cpu_losses:?}"
    );
    for (step, (c, g)) in cpu_losses.iter().zip(&gpu_losses).enumerate() {
        let relative = (c - g).abs() / c.abs();
        assert!(
            relative <= LOSS_TOLERANCE,
            "step {}: cpu {c} vs wgpu {g} (relative {relative:.2e})",
            step + 1
        );
    }

    // The same greedy text on both, and after moving each trained model to the other backend.
    let text = greedy(&cpu_model.valid(), &vocab, &cpu);
    assert_eq!(greedy(&gpu_model.valid(), &vocab, &gpu), text);
    let on_cpu = Checkpoint::save(
        &dir.join("gpu"),
        &gpu_model,
        None,
        None,
        &vocab,
        meta(&vocab, 10),
    )
    .unwrap()
    .load_model(&cpu)
    .unwrap();
    assert_eq!(greedy(&on_cpu, &vocab, &cpu), text);
    let on_gpu = Checkpoint::save(
        &dir.join("cpu"),
        &cpu_model,
        None,
        None,
        &vocab,
        meta(&vocab, 10),
    )
    .unwrap()
    .load_model(&gpu)
    .unwrap();
    assert_eq!(greedy(&on_gpu, &vocab, &gpu), text);
}

#[test]
fn a_run_moves_between_backends_with_resume() {
    let wgpu = wgpu_spec();
    let (mut config, _) =
        pipeline::Config::load(&root().join("configs/shakespeare-char.toml")).unwrap();
    config.corpus.path = root().join(&config.corpus.path);
    config.model = ModelConfig::sized(8, 16);
    config.data.batch_size = 8;
    config.data.seq_len = 16;
    config.data.validation = 0.0;
    config.train.max_batches_per_epoch = Some(5);
    config.generate.max_tokens = 20;
    let run = scratch("wgpu-resume").join("run");
    // Epoch 1 on wgpu, epoch 2 on the CPU from its checkpoint, epoch 3 on wgpu again. Every
    // epoch trains the same 5 windows (a stream is read in order), so each one's loss is below
    // the one before only if the weights and Adam's moments came through the move.
    let mut losses = Vec::new();
    for (epoch, spec) in [(1, wgpu.clone()), (2, DeviceSpec::default()), (3, wgpu)] {
        config.train.epochs = epoch;
        config.train.set_device_spec(spec);
        let summary = train::train(&config, &run, epoch > 1).unwrap();
        let m = &summary.epochs[0];
        assert_eq!((m.epoch, m.step), (epoch, 5 * epoch as u64));
        losses.push(m.loss);
    }
    assert!(losses[0] > losses[1] && losses[1] > losses[2], "{losses:?}");
    let samples = std::fs::read_to_string(run.join("samples.txt")).unwrap();
    assert!(samples.contains("epoch 3 |"), "{samples}");
}

#[test]
fn logits_over_the_adapter_buffer_limit_are_refused_before_anything_is_written() {
    let wgpu = wgpu_spec();
    let (mut config, _) = pipeline::Config::load(&root().join("configs/recipes.toml")).unwrap();
    config.corpus.path = root().join(&config.corpus.path);
    // 1,024 x 200 positions x 10,000 words of f32: 7.6 GiB, over any OpenGL storage buffer.
    config.data.batch_size = 1024;
    config.train.set_device_spec(wgpu);
    let run = scratch("wgpu-too-big").join("run");
    let err = train::train(&config, &run, false).unwrap_err().to_string();
    assert!(
        err.contains("one batch's logits (204800 positions x 10000 words) take 7812 MiB")
            && err.contains("lower data.batch_size or data.seq_len"),
        "{err}"
    );
    assert!(!run.join("vocab.txt").exists());
}
