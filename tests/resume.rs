//! Interrupting a run after any step and resuming it ends with the same weights, bit for bit,
//! and the same metrics as the run that was never interrupted: records with dropout, and a
//! character stream whose state carries from window to window. A test binary of its own:
//! dropout draws from the backend's one random generator, which tests training beside it in
//! the same process would advance.

use std::path::Path;
use std::sync::atomic::AtomicUsize;

use e2e::{root, scratch, small_config};
use model::burn::tensor::Device;
use model::{Checkpoint, ids_tensor};

/// The small recipe config with two layers and dropout, 4 batches an epoch, 2 epochs, or the
/// tiny Shakespeare stream when `stream`.
fn config(dir: &Path, stream: bool) -> pipeline::Config {
    let (mut config, _) = pipeline::Config::load(&small_config(dir, "")).unwrap();
    config.model.num_layers = 2;
    config.model.dropout = 0.3;
    config.train.max_batches_per_epoch = Some(4);
    config.data.validation = 0.1;
    if stream {
        config.corpus.path = root().join("datasets/tinyshakespeare/input.txt.gz");
        config.corpus.max_records = None;
        config.data.tokenizer = data::Tokenizer::Char;
        config.data.examples = pipeline::config::ExampleKind::Stream;
        config.data.vocab_size = 80;
        config.generate.prompts = vec!["ROMEO".into()];
    }
    config
}

/// The metrics rows without their timing columns (tokens/s and seconds).
fn metrics_without_timing(run: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    text.lines()
        .map(|line| line.rsplitn(3, ',').nth(2).unwrap().to_owned())
        .collect()
}

/// What the checkpoint `dir`'s model outputs for a fixed input: equal outputs, bit for bit,
/// from every weight.
fn outputs(dir: &Path) -> Vec<f32> {
    let device = Device::flex();
    let (model, _) = Checkpoint::open(dir).unwrap().load(&device).unwrap();
    let ids = ids_tensor(&[2, 3, 4, 5, 6, 7, 1, 9], [2, 4], &device);
    let (logits, _) = model.forward(ids, None);
    logits.into_data().try_to_vec::<f32>().unwrap()
}

/// The outputs of the run's last checkpoint, which ends an epoch.
fn final_outputs(run: &Path) -> Vec<f32> {
    let last = Checkpoint::latest(run).unwrap().unwrap();
    assert!(last.meta.within_epoch.is_none(), "{}", last.dir.display());
    outputs(&last.dir)
}

#[test]
fn a_run_stopped_after_every_step_resumes_to_the_same_weights() {
    for stream in [false, true] {
        let dir = scratch(if stream {
            "resume-stream"
        } else {
            "resume-records"
        });
        let config = config(&dir, stream);
        let whole = dir.join("whole");
        let summary = train::train(&config, &whole, false).unwrap();
        assert_eq!(summary.epochs.len(), 2);

        // A signal already set: every invocation stops after one step and saves there.
        let pieces = dir.join("pieces");
        let signal = AtomicUsize::new(2);
        let mut invocations = 0;
        loop {
            let summary = train::train_until(&config, &pieces, invocations > 0, &signal).unwrap();
            invocations += 1;
            let Some(stopped) = summary.interrupted else {
                break;
            };
            assert_eq!(stopped.signal, 2);
            let saved = Checkpoint::open(&stopped.checkpoint).unwrap();
            assert!(saved.meta.within_epoch.is_some(), "{saved:?}");
            assert_eq!(
                saved.dir.join("carried.json").is_file(),
                stream,
                "{}",
                saved.dir.display()
            );
            assert!(invocations < 20, "the run does not end");
        }
        // 8 steps, one per invocation, and one more to finish the last epoch.
        assert_eq!(invocations, 9, "stream: {stream}");
        assert!(
            final_outputs(&whole) == final_outputs(&pieces),
            "stream: {stream}"
        );
        assert_eq!(
            metrics_without_timing(&whole),
            metrics_without_timing(&pieces)
        );
    }
}
