//! A run's setup: the devices and the log lines that name them, the data pipeline checked
//! against the device and a resumed checkpoint, and the prompts of the end-of-epoch samples.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use burn::tensor::Device;
use model::generation::Prompt;
use model::recurrent::CellKind;
use model::{BackendKind, Checkpoint, Kernels, OpenDevice};
use pipeline::config::{Config, ExampleKind};
use pipeline::prepare::{PreparedData, prepare};

use super::resume::same_vocab;

/// Opens the config's devices (the first one evaluates, generates and holds the optimizer's
/// state), selects its kernels and matrix products, and logs them.
pub(super) fn open_device(config: &Config) -> Result<(OpenDevice, Vec<Device>)> {
    let settings = &config.train;
    let all = settings
        .device_specs()
        .iter()
        .map(|spec| spec.open())
        .collect::<Result<Vec<_>, _>>()?;
    let matmul = kernels::matmul::select(settings.matmul)?;
    match all.as_slice() {
        [one] => println!("device: {one}"),
        several => {
            println!(
                "devices: {}, data parallel (each takes an equal share of every batch)",
                several.len()
            );
            for (n, device) in several.iter().enumerate() {
                println!("  device {}: {device}", n + 1);
            }
            if matches!(settings.backend, BackendKind::Flex | BackendKind::Ndarray) {
                println!(
                    "note: on a CPU backend the {} devices are replicas sharing the same cores, outside the fused kernels: several times slower than one device (for checking data parallelism, not for speed)",
                    several.len()
                );
            }
        }
    }
    let devices = all.iter().map(|o| o.device.clone()).collect();
    let opened = all.into_iter().next().expect("at least one device");
    let kernels = match (settings.kernels, settings.kernels.fused_on(&opened.device)) {
        (_, true) if config.model.cell != CellKind::Lstm => format!(
            "fused output layer and loss ({} layers on Burn's own operations), matrix products by {matmul}",
            config.model.cell.name()
        ),
        (_, true) => format!("fused kernels, matrix products by {matmul}"),
        (Kernels::Reference, _) => "Burn's reference operations".into(),
        (Kernels::Fused, false) => "Burn's own operations (the fused kernels run on flex)".into(),
    };
    println!(
        "compute: {kernels}, {} CPU threads",
        rayon::current_num_threads()
    );
    Ok((opened, devices))
}

/// Runs the data pipeline, checks the batches fit the device and agree with a resumed
/// checkpoint, then writes the vocabulary and the resolved config into `run_dir`.
pub(super) fn prepare_data(
    config: &Config,
    opened: &OpenDevice,
    previous: Option<&Checkpoint>,
    run_dir: &Path,
) -> Result<PreparedData> {
    let data = prepare(config)?;
    println!("{}", data.source);
    if let Some(ckpt) = previous {
        same_vocab(&ckpt.vocab()?, &data.vocab, &ckpt.dir)?;
    }
    // On a GPU each tensor is one buffer: the largest, a batch's logits, must fit in one.
    if let Some(first) = data.training.epoch(0, 0).next() {
        opened
            .check_logits_fit(first.targets.len(), data.vocab.size())
            .map_err(|e| anyhow!("{e}; lower data.batch_size or data.seq_len"))?;
    }
    std::fs::create_dir_all(run_dir)
        .with_context(|| format!("{}: cannot create the run directory", run_dir.display()))?;
    data.vocab.save(&run_dir.join("vocab.txt"))?;
    let config_text = toml::to_string_pretty(config).context("serialising the resolved config")?;
    data::files::write_atomic(&run_dir.join("config.toml"), config_text.as_bytes())?;
    let settings = &config.data;
    println!(
        "vocabulary {} entries; {:?}: {} training examples in {} batches of {} x {} per epoch{}",
        data.vocab.size(),
        settings.examples,
        data.training.examples(),
        data.training.per_epoch(),
        settings.batch_size,
        settings.seq_len,
        data.validation.as_ref().map_or(String::new(), |v| format!(
            ", {} held out for validation",
            v.examples()
        ))
    );
    if settings.examples != ExampleKind::Stream && data.training.examples() < settings.batch_size {
        println!(
            "note: {} training examples, fewer than data.batch_size = {}: every epoch is one batch of {} (as Keras trains on a partial batch)",
            data.training.examples(),
            settings.batch_size,
            data.training.examples()
        );
    }
    println!(
        "loss: {}",
        match settings.examples {
            ExampleKind::Stream => "every position, state carried between windows",
            ExampleKind::Windows | ExampleKind::Prefixes => "the last position of each example",
            ExampleKind::Records if settings.loss_on_padding => "every position",
            ExampleKind::Records => "real tokens + the first stop token (loss_on_padding = false)",
        }
    );
    Ok(data)
}

/// The prompts of the end-of-epoch samples: `generate.prompts`, each one the vocabulary cannot
/// read replaced, with a warning that says why, by the corpus's first token (the run matters
/// more than its samples).
pub(super) fn sample_prompts(config: &Config, data: &PreparedData) -> Vec<String> {
    let first = data
        .training
        .first_token()
        .map(|id| data.vocab.token(id).to_owned());
    let mut prompts = Vec::new();
    for prompt in &config.generate.prompts {
        match (
            Prompt::read(prompt, config.data.tokenizer, &data.vocab),
            &first,
        ) {
            (Ok(_), _) => prompts.push(prompt.clone()),
            (Err(e), Some(first)) => {
                eprintln!(
                    "warning: generate.prompts: {e}; the samples start from the corpus's first token `{first}` instead"
                );
                prompts.push(first.clone());
            }
            (Err(e), None) => eprintln!("warning: generate.prompts: {e}; no sample from it"),
        }
    }
    prompts
}
