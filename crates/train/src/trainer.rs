//! The training loop, readable top to bottom: data, vocabulary, model, then epochs of
//! Adam steps, each epoch ending with metrics, a checkpoint and generated samples.
//!
//! We write our own loop rather than burn-train's `Learner` because the `Learner` has no
//! end-of-epoch hook that sees the model (the per-epoch generation callback).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use burn::module::Module;
use data::Vocab;
use model::{Checkpoint, CheckpointMeta};

use crate::Args;
use crate::batches::Batches;
use crate::callback::generate_samples;
use crate::config::{Config, Examples, StopLoss};
use crate::metrics::{EpochMetrics, MetricsLog};
use crate::progress::Progress;
use crate::step::{evaluate, optimizer, train_step};

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Figures of every epoch run in this invocation.
    pub epochs: Vec<EpochMetrics>,
}

/// Loads the config named on the command line, applies the flags and trains.
pub fn run(args: &Args) -> Result<RunSummary> {
    let (mut config, config_path) = Config::load(&args.config)?;
    let t = &mut config.train;
    t.epochs = args.epochs.unwrap_or(t.epochs);
    t.set_device_spec(args.device.apply(t.device_spec()));
    t.seed = args.seed.unwrap_or(t.seed);
    t.max_batches_per_epoch = args.max_batches.or(t.max_batches_per_epoch);
    let stem = config_path
        .file_stem()
        .map_or("run".into(), |s| s.to_string_lossy().into_owned());
    let run_dir = args
        .out
        .clone()
        .or_else(|| t.out.clone())
        .unwrap_or_else(|| Path::new("runs").join(stem));
    t.out = Some(run_dir.clone());
    train(&config, &run_dir, args.resume)
}

/// Trains `config` into `run_dir`, resuming from its latest checkpoint when `resume`.
pub fn train(config: &Config, run_dir: &Path, resume: bool) -> Result<RunSummary> {
    let started = Instant::now();
    let previous = Checkpoint::latest(run_dir)?;
    if previous.is_some() && !resume {
        bail!(
            "{}: this run directory already holds checkpoints; pass --resume to continue it or --out DIR to start a new run",
            run_dir.display()
        );
    }
    let opened = config
        .train
        .device_spec()
        .open()
        .map_err(anyhow::Error::msg)?;
    println!("device: {opened}");
    std::fs::create_dir_all(run_dir)
        .with_context(|| format!("{}: cannot create the run directory", run_dir.display()))?;

    // Data: text -> tokens -> vocabulary -> ids in batches, the held-out part aside.
    let tokenized = tokenize(config)?;
    let built = Vocab::build(tokenized.iter().flatten(), config.data.vocab_size);
    let vocab = match &previous {
        Some(ckpt) => same_vocab(ckpt.vocab()?, built, &ckpt.dir)?,
        None => built,
    };
    let d = &config.data;
    let (training, held_out) = split_validation(tokenized, d.validation, d.examples);
    let batches = Batches::new(&training, &vocab, d, d.batch_size)?;
    let validation = match held_out.iter().map(Vec::len).sum::<usize>() {
        0 => None,
        _ => Some(Batches::new(&held_out, &vocab, d, d.batch_size)?),
    };
    // On a GPU each tensor is one buffer: the largest, a batch's logits, must fit in one.
    if let Some(first) = batches.epoch(0, 0).next() {
        opened
            .check_logits_fit(first.targets.len(), vocab.len())
            .map_err(|e| anyhow!("{e}; lower data.batch_size or data.seq_len"))?;
    }
    vocab.save(&run_dir.join("vocab.txt"))?;
    let config_text = toml::to_string_pretty(config).context("serialising the resolved config")?;
    data::files::write_atomic(&run_dir.join("config.toml"), config_text.as_bytes())?;
    println!(
        "vocabulary {} entries; {:?}: {} training examples in {} batches of {} x {} per epoch{}",
        vocab.len(),
        d.examples,
        batches.examples(),
        batches.per_epoch(),
        d.batch_size,
        d.seq_len,
        validation.as_ref().map_or(String::new(), |v| format!(
            ", {} held out for validation",
            v.examples()
        ))
    );
    println!(
        "loss: {}",
        match d.examples {
            Examples::Stream => "every position, state carried between windows",
            Examples::Windows | Examples::Prefixes => "the last position of each example",
            Examples::Records if d.loss_on_padding => "every position",
            Examples::Records => "real tokens + the first stop token (loss_on_padding = false)",
        }
    );
    drop((training, held_out));

    // Model and optimizer, fresh or from the checkpoint.
    let t = &config.train;
    let device = opened.device.clone().autodiff();
    device.seed(t.seed);
    let mut optim = optimizer(t);
    let (mut model, first_epoch, mut step) = match &previous {
        Some(ckpt) => {
            if ckpt.meta.model != config.model {
                bail!(
                    "{}: checkpoint has model {:?} but the config asks for {:?}",
                    ckpt.dir.display(),
                    ckpt.meta.model,
                    config.model
                );
            }
            let model = ckpt.load_model(&device)?;
            optim = ckpt.load_optimizer(optim)?;
            println!(
                "resuming from {} (epoch {}, step {})",
                ckpt.dir.display(),
                ckpt.meta.epoch,
                ckpt.meta.step
            );
            (model, ckpt.meta.epoch + 1, ckpt.meta.step)
        }
        None => (config.model.init(vocab.len(), &device), 1, 0),
    };
    println!(
        "model: embedding {} -> {:?} {} x {} layers -> linear {} ({} parameters), backend {}",
        config.model.embedding_dim,
        config.model.cell,
        config.model.hidden_size,
        config.model.num_layers,
        vocab.len(),
        model.num_params(),
        t.backend
    );
    let mut metrics = MetricsLog::open(run_dir, first_epoch - 1)?;
    let checkpoints = run_dir.join("checkpoints");
    let per_epoch = batches
        .per_epoch()
        .min(t.max_batches_per_epoch.unwrap_or(usize::MAX));
    let mut progress = Progress::new(t.epochs, per_epoch);
    let mut stop = StopRule::new(config, vocab.len());
    let mut summary = RunSummary {
        run_dir: run_dir.to_owned(),
        epochs: Vec::new(),
    };

    for epoch in first_epoch..=t.epochs {
        progress.begin_epoch(epoch);
        let epoch_start = Instant::now();
        let (mut loss_sum, mut weight_sum, mut positions) = (0.0f64, 0.0f64, 0usize);
        let mut state = None;
        let mut finished = false;
        for (i, batch) in batches.epoch(t.seed, epoch).take(per_epoch).enumerate() {
            let out = train_step(
                model,
                &mut optim,
                &batch,
                t.learning_rate,
                &device,
                state.take(),
            );
            model = out.model;
            state = batches.carries_state().then_some(out.state);
            step += 1;
            if !out.loss.is_finite() {
                bail!(
                    "epoch {epoch}, step {step}: the loss became {}; training stopped (the last good checkpoint, if any, is in {}). Try a lower train.learning_rate",
                    out.loss,
                    checkpoints.display()
                );
            }
            if step == 1 {
                println!(
                    "first-step loss {:.4} (uniform guess: ln {} = {:.4})",
                    out.loss,
                    vocab.len(),
                    (vocab.len() as f64).ln()
                );
            }
            loss_sum += out.loss * out.weight;
            weight_sum += out.weight;
            positions += batch.batch_size * batch.seq_len;
            progress.update(
                i + 1,
                loss_sum / weight_sum,
                positions as f64 / epoch_start.elapsed().as_secs_f64(),
            );
            finished = stop.after_step(out.loss * batch.seq_len as f64, step, started)
                || t.max_steps.is_some_and(|m| step >= m);
            if finished {
                break;
            }
        }
        progress.end_epoch();
        let seconds = epoch_start.elapsed().as_secs_f64();
        let mut m = EpochMetrics {
            epoch,
            step,
            loss: loss_sum / weight_sum.max(1.0),
            val_loss: None,
            tokens_per_s: positions as f64 / seconds,
            seconds,
        };
        finished = finished || stop.after_epoch(m.loss, step, started) || epoch == t.epochs;
        if epoch % t.eval_every != 0 && !finished {
            continue;
        }
        m.val_loss = validation
            .as_ref()
            .map(|v| evaluate(&model.valid(), v, &opened.device));
        println!(
            "epoch {epoch}/{}: loss {:.4}{}, {:.0} tokens/s, {seconds:.1}s, step {step}",
            t.epochs,
            m.loss,
            m.val_loss
                .map_or(String::new(), |v| format!(", validation loss {v:.4}")),
            m.tokens_per_s
        );
        metrics.push(m)?;
        let meta = CheckpointMeta {
            model: config.model,
            vocab_size: vocab.len(),
            tokenizer: config.data.tokenizer,
            context: config.data.examples.context(config.data.seq_len),
            epoch,
            step,
            loss: m.loss,
        };
        let saved = Checkpoint::save(&checkpoints, &model, Some(&optim), &vocab, meta)?;
        println!("checkpoint {}", saved.dir.display());
        generate_samples(&model, &vocab, config, &opened.device, epoch, run_dir)?;
        summary.epochs.push(m);
        if finished {
            break;
        }
    }
    println!(
        "done in {:.1}s; run directory {}",
        started.elapsed().as_secs_f64(),
        run_dir.display()
    );
    Ok(summary)
}

/// The corpus as token lists: one per record, or a single one for a stream.
fn tokenize(config: &Config) -> Result<Vec<Vec<String>>> {
    let tokenizer = config.data.tokenizer;
    let path = config.corpus.path.display();
    if config.data.examples == Examples::Stream {
        let text = config.corpus.load_stream()?;
        println!(
            "corpus {path}: {} characters, read as one stream",
            text.chars().count()
        );
        return Ok(vec![tokenizer.tokens(&text)]);
    }
    let corpus = config.corpus.load()?;
    println!(
        "corpus {path}: {} records ({} skipped for a missing {})",
        corpus.texts.len(),
        corpus.skipped,
        corpus.fields.join(" or ")
    );
    Ok(corpus.texts.iter().map(|t| tokenizer.tokens(t)).collect())
}

/// Splits off the last `fraction` of the records, or of the one stream's tokens, for
/// validation (nanoGPT's and Keras's `validation_split` take the end, too).
fn split_validation(
    mut tokenized: Vec<Vec<String>>,
    fraction: f64,
    examples: Examples,
) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let keep = |n: usize| n - (n as f64 * fraction).round() as usize;
    if examples == Examples::Stream {
        let stream = tokenized.pop().unwrap_or_default();
        let (train, held_out) = stream.split_at(keep(stream.len()));
        return (vec![train.to_vec()], vec![held_out.to_vec()]);
    }
    let held_out = tokenized.split_off(keep(tokenized.len()));
    (tokenized, held_out)
}

/// Watches the loss for `train.stop_at_loss`.
struct StopRule {
    target: Option<f64>,
    kind: StopLoss,
    smooth: f64,
}

impl StopRule {
    fn new(config: &Config, vocab_size: usize) -> Self {
        let t = &config.train;
        // Seed 000 starts its smoothed loss at a uniform guess summed over a window.
        let smooth = (vocab_size as f64).ln() * config.data.seq_len as f64;
        Self {
            target: t.stop_at_loss,
            kind: t.stop_loss,
            smooth,
        }
    }

    /// Folds in one step's loss summed over its window; true once the target is reached.
    fn after_step(&mut self, window_loss: f64, step: u64, started: Instant) -> bool {
        self.smooth = 0.999 * self.smooth + 0.001 * window_loss;
        self.kind == StopLoss::SmoothedWindowSum && self.reached(self.smooth, step, started)
    }

    /// Checks an epoch's mean loss; true once the target is reached.
    fn after_epoch(&self, mean_loss: f64, step: u64, started: Instant) -> bool {
        self.kind == StopLoss::EpochMean && self.reached(mean_loss, step, started)
    }

    fn reached(&self, loss: f64, step: u64, started: Instant) -> bool {
        let hit = self.target.is_some_and(|target| loss <= target);
        if hit {
            println!(
                "reached the target loss: {:?} loss {loss:.4} at step {step} after {:.1}s",
                self.kind,
                started.elapsed().as_secs_f64()
            );
        }
        hit
    }
}

/// The checkpoint's vocabulary, unless the corpus now builds a different one.
fn same_vocab(saved: Vocab, built: Vocab, dir: &Path) -> Result<Vocab> {
    if saved == built {
        return Ok(saved);
    }
    let first = saved
        .tokens()
        .iter()
        .zip(built.tokens())
        .position(|(a, b)| a != b)
        .unwrap_or(saved.len().min(built.len()));
    bail!(
        "{}: the checkpoint's vocabulary ({} entries) differs from the one this corpus and config build ({} entries), first at id {first}; resume with the same corpus and data settings, or start a new run with --out",
        dir.display(),
        saved.len(),
        built.len()
    )
}
