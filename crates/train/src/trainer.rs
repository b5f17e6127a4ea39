//! The training loop, readable top to bottom: data, vocabulary, model, then epochs of
//! Adam steps, each epoch ending with metrics, a checkpoint and generated samples.
//!
//! We write our own loop rather than burn-train's `Learner` because the `Learner` has no
//! end-of-epoch hook that sees the model (the per-epoch generation callback).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use data::Vocab;
use model::checkpoint::EpochProgress;
use model::generation::Prompt;
use model::recurrent::{CellKind, State};
use model::{BackendKind, Checkpoint, CheckpointMeta, Kernels, LanguageModel, OpenDevice};

use crate::Args;
use crate::callback::generate_samples;
use crate::metrics::{EpochMetrics, MetricsLog};
use crate::progress::Progress;
use crate::step::{optimizer, train_step_on};
use pipeline::config::{Config, ExampleKind, StopLoss, config_name};
use pipeline::evaluation::evaluate;
use pipeline::prepare::{PreparedData, prepare};

/// What a finished or interrupted run reports.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Figures of every epoch run in this invocation.
    pub epochs: Vec<EpochMetrics>,
    /// Set when a signal stopped the run before its end.
    pub interrupted: Option<Interrupted>,
}

/// A run stopped by a signal after a step, and the checkpoint it saved there.
#[derive(Debug, Clone, PartialEq)]
pub struct Interrupted {
    /// The signal's number (2 for Ctrl-C's SIGINT, 15 for SIGTERM).
    pub signal: usize,
    /// The checkpoint that `--resume` continues from.
    pub checkpoint: PathBuf,
}

/// Loads the config named on the command line, applies the flags and trains until the end,
/// or until `stop` holds a signal's number (see [`train_until`]).
pub fn run(args: &Args, stop: &AtomicUsize) -> Result<RunSummary> {
    let name = args.config.as_deref().context("--config is required")?;
    let (mut config, config_path) = Config::load(name)?;
    let settings = &mut config.train;
    settings.epochs = args.epochs.unwrap_or(settings.epochs);
    settings.set_device_spec(args.device.apply(settings.device_spec()));
    settings.devices = args.devices.unwrap_or(settings.devices);
    settings.kernels = args.kernels.unwrap_or(settings.kernels);
    settings.matmul = args.matmul.unwrap_or(settings.matmul);
    settings.seed = args.seed.unwrap_or(settings.seed);
    settings.max_batches_per_epoch = args.max_batches.or(settings.max_batches_per_epoch);
    let stem = config_name(&config_path);
    let run_dir = args
        .out
        .clone()
        .or_else(|| settings.out.clone())
        .unwrap_or_else(|| Path::new("runs").join(stem));
    settings.out = Some(run_dir.clone());
    config
        .validate()
        .with_context(|| format!("{} with the flags given", config_path.display()))?;
    train_until(&config, &run_dir, args.resume, stop)
}

/// Trains `config` into `run_dir`, resuming from its latest checkpoint when `resume`.
pub fn train(config: &Config, run_dir: &Path, resume: bool) -> Result<RunSummary> {
    train_until(config, run_dir, resume, &AtomicUsize::new(0))
}

/// [`train`], stopping after the step during which `stop` became non-zero (a signal's
/// number): a checkpoint is saved at that point and the summary says so.
pub fn train_until(
    config: &Config,
    run_dir: &Path,
    resume: bool,
    stop: &AtomicUsize,
) -> Result<RunSummary> {
    let started = Instant::now();
    let previous = Checkpoint::latest(run_dir)?;
    if previous.is_some() && !resume {
        bail!(
            "{}: this run directory already holds checkpoints; pass --resume to continue it or --out DIR to start a new run",
            run_dir.display()
        );
    }
    if previous.is_some() {
        same_settings(config, run_dir)?;
    }
    let (opened, devices) = open_device(config)?;
    let data = prepare_data(config, &opened, previous.as_ref(), run_dir)?;
    let (mut model, mut run) =
        Run::start(config, run_dir, (opened, devices), data, previous.as_ref())?;
    let mut summary = RunSummary {
        run_dir: run_dir.to_owned(),
        epochs: Vec::new(),
        interrupted: None,
    };
    for epoch in run.first_epoch..=config.train.epochs {
        let (trained, outcome) = run.epoch(model, epoch, started, stop)?;
        model = trained;
        let (metrics, finished) = match outcome {
            EpochEnd::Done { metrics, finished } => (metrics, finished),
            EpochEnd::Interrupted(interrupted) => {
                summary.interrupted = Some(interrupted);
                return Ok(summary);
            }
        };
        let finished = finished
            || run.stop.after_epoch(metrics.loss, run.step, started)
            || epoch == config.train.epochs;
        let mut finished = finished;
        if epoch % config.train.eval_every == 0 || finished {
            let (metrics, no_progress) = run.end_epoch(&model, metrics)?;
            summary.epochs.push(metrics);
            finished |= no_progress;
        }
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

/// Opens the config's devices (the first one evaluates, generates and holds the optimizer's
/// state), selects its kernels and matrix products, and logs them.
fn open_device(config: &Config) -> Result<(OpenDevice, Vec<Device>)> {
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
fn prepare_data(
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
fn sample_prompts(config: &Config, data: &PreparedData) -> Vec<String> {
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

/// Everything a run carries from epoch to epoch besides the model.
struct Run<'a> {
    config: &'a Config,
    run_dir: &'a Path,
    opened: OpenDevice,
    /// Every training device (with autodiff); the first one is `opened.device`.
    devices: Vec<Device>,
    data: PreparedData,
    /// What the end-of-epoch samples continue (see [`sample_prompts`]).
    prompts: Vec<String>,
    optim: ModuleOptimizer,
    first_epoch: usize,
    step: u64,
    batches_per_epoch: usize,
    metrics: MetricsLog,
    progress: Progress,
    stop: StopRule,
    /// Where the first epoch resumes, from a checkpoint saved inside it.
    resume_at: Option<(EpochProgress, Option<State>)>,
    /// The lowest validation loss so far and its epoch.
    best: Option<(f64, usize)>,
    /// Evaluations since that one.
    since_best: usize,
}

/// How an epoch ended.
enum EpochEnd {
    /// Every batch ran (or a stopping rule ended the run: `finished`).
    Done {
        /// The epoch's figures, without the validation loss yet.
        metrics: EpochMetrics,
        /// Whether a stopping rule ended the run.
        finished: bool,
    },
    /// A signal stopped it after a step; a checkpoint holds that point.
    Interrupted(Interrupted),
}

impl<'a> Run<'a> {
    /// A fresh model and optimizer, or the ones of the checkpoint `previous`.
    fn start(
        config: &'a Config,
        run_dir: &'a Path,
        (opened, devices): (OpenDevice, Vec<Device>),
        data: PreparedData,
        previous: Option<&Checkpoint>,
    ) -> Result<(LanguageModel, Self)> {
        let settings = &config.train;
        let device = opened.device.clone().autodiff();
        let devices = devices.into_iter().map(Device::autodiff).collect();
        device.seed(settings.seed);
        let mut optim = optimizer(settings);
        let mut stop = StopRule::new(config, data.vocab.size());
        let mut resume_at = None;
        let (model, first_epoch, step) = match previous {
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
                let meta = &ckpt.meta;
                stop.smooth = meta.smoothed_loss.unwrap_or(stop.smooth);
                let within = match meta.within_epoch {
                    Some(progress) => {
                        resume_at = Some((progress, ckpt.carried(&device)?));
                        format!(
                            ", {} batches into epoch {}",
                            progress.batches,
                            meta.epoch + 1
                        )
                    }
                    None => String::new(),
                };
                println!(
                    "resuming from {} (epoch {}, step {}{within})",
                    ckpt.dir.display(),
                    meta.epoch,
                    meta.step
                );
                (model, meta.epoch + 1, meta.step)
            }
            None => (config.model.init(data.vocab.size(), &device), 1, 0),
        };
        let model = model.with_kernels(settings.kernels);
        println!(
            "model: embedding {} -> {:?} {} x {} layers -> linear {} ({} parameters), backend {}",
            config.model.embedding_dim,
            config.model.cell,
            config.model.hidden_size,
            config.model.num_layers,
            data.vocab.size(),
            model.num_params(),
            settings.backend
        );
        let batches_per_epoch = data
            .training
            .per_epoch()
            .min(settings.max_batches_per_epoch.unwrap_or(usize::MAX));
        let metrics = MetricsLog::open(run_dir, first_epoch - 1)?;
        let val_losses = metrics.val_losses();
        let best = val_losses
            .iter()
            .map(|&(epoch, loss)| (loss, epoch))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        let since_best = best.map_or(0, |(_, epoch)| {
            val_losses.iter().filter(|(e, _)| *e > epoch).count()
        });
        let run = Self {
            config,
            run_dir,
            metrics,
            best,
            since_best,
            progress: Progress::new(settings.epochs, batches_per_epoch),
            stop,
            resume_at,
            opened,
            devices,
            prompts: sample_prompts(config, &data),
            data,
            optim,
            first_epoch,
            step,
            batches_per_epoch,
        };
        Ok((model, run))
    }

    /// Trains one epoch (the rest of it, when resuming inside it); returns the model and
    /// how the epoch ended.
    fn epoch(
        &mut self,
        mut model: LanguageModel,
        epoch: usize,
        started: Instant,
        stop: &AtomicUsize,
    ) -> Result<(LanguageModel, EpochEnd)> {
        let settings = &self.config.train;
        self.progress.begin_epoch(epoch);
        let epoch_start = Instant::now();
        let (mut sums, mut state) = self.resume_at.take().unwrap_or_default();
        let seconds_before = sums.seconds;
        let mut finished = false;
        let batches = self.data.training.epoch(settings.seed, epoch);
        let batches = batches.take(self.batches_per_epoch).enumerate();
        for (i, batch) in batches.skip(sums.batches) {
            // Dropout's randomness depends on the step alone, so a resumed run draws the
            // same masks as an uninterrupted one.
            for device in &self.devices {
                device.seed(step_seed(settings.seed, self.step));
            }
            let lr = settings.learning_rate;
            let out = train_step_on(
                model,
                &mut self.optim,
                &batch,
                lr,
                &self.devices,
                state.take(),
            );
            model = out.model;
            state = out.state.filter(|_| self.data.training.carries_state());
            self.step += 1;
            if !out.loss.is_finite() {
                bail!(
                    "epoch {epoch}, step {}: the loss became {}; training stopped (the last good checkpoint, if any, is in {}). Try a lower train.learning_rate",
                    self.step,
                    out.loss,
                    self.run_dir.join("checkpoints").display()
                );
            }
            if self.step == 1 {
                let vocab = self.data.vocab.size();
                println!(
                    "first-step loss {:.4} (uniform guess: ln {vocab} = {:.4})",
                    out.loss,
                    (vocab as f64).ln()
                );
            }
            sums.batches = i + 1;
            sums.loss_sum += out.loss * out.weight;
            sums.weight_sum += out.weight;
            sums.positions += batch.batch_size * batch.seq_len;
            sums.seconds = seconds_before + epoch_start.elapsed().as_secs_f64();
            self.progress.update(
                i + 1,
                sums.loss_sum / sums.weight_sum,
                sums.positions as f64 / sums.seconds,
            );
            let window_loss = out.loss * batch.seq_len as f64;
            finished = self.stop.after_step(window_loss, self.step, started)
                || settings.max_steps.is_some_and(|m| self.step >= m);
            let signal = stop.load(Ordering::SeqCst);
            let every = settings.checkpoint_every_steps;
            let due = every.is_some_and(|n| self.step.is_multiple_of(n))
                && sums.batches < self.batches_per_epoch;
            if signal != 0 || (due && !finished) {
                self.progress.end_epoch();
                let saved = self.checkpoint(
                    &model,
                    epoch - 1,
                    sums.mean_loss(),
                    Some(sums),
                    state.as_ref(),
                )?;
                if signal != 0 {
                    println!(
                        "stopped by signal {signal} at epoch {epoch}, step {}, after its batch {}",
                        self.step, sums.batches
                    );
                    let interrupted = Interrupted {
                        signal,
                        checkpoint: saved.dir,
                    };
                    return Ok((model, EpochEnd::Interrupted(interrupted)));
                }
                self.progress.begin_epoch(epoch);
            }
            if finished {
                break;
            }
        }
        self.progress.end_epoch();
        let metrics = EpochMetrics {
            epoch,
            step: self.step,
            loss: sums.mean_loss(),
            val_loss: None,
            tokens_per_s: sums.positions as f64 / sums.seconds.max(1e-9),
            seconds: sums.seconds,
        };
        Ok((model, EpochEnd::Done { metrics, finished }))
    }

    /// Saves a checkpoint after `epochs_done` epochs (and `within` the next one, with the
    /// stream's `carried` state), then removes the oldest beyond `train.keep_checkpoints`.
    fn checkpoint(
        &self,
        model: &LanguageModel,
        epochs_done: usize,
        loss: f64,
        within: Option<EpochProgress>,
        carried: Option<&State>,
    ) -> Result<Checkpoint> {
        let config = self.config;
        let meta = CheckpointMeta {
            model: config.model,
            vocab_size: self.data.vocab.size(),
            tokenizer: config.data.tokenizer,
            context: config.data.examples.context(config.data.seq_len),
            epoch: epochs_done,
            step: self.step,
            loss,
            within_epoch: within,
            smoothed_loss: Some(self.stop.smooth),
        };
        let checkpoints = self.run_dir.join("checkpoints");
        let vocab = &self.data.vocab;
        let optim = Some(&self.optim);
        let saved = Checkpoint::save(&checkpoints, model, optim, carried, vocab, meta)?;
        println!("checkpoint {}", saved.dir.display());
        if let Some(keep) = config.train.keep_checkpoints {
            let all = Checkpoint::all(self.run_dir)?;
            let best = Checkpoint::best(self.run_dir)?.map(|b| b.dir);
            let old = &all[..all.len().saturating_sub(keep)];
            for old in old.iter().filter(|c| Some(&c.dir) != best.as_ref()) {
                std::fs::remove_dir_all(&old.dir)
                    .with_context(|| format!("{}: cannot remove", old.dir.display()))?;
            }
        }
        Ok(saved)
    }

    /// The end of an evaluated epoch: the validation loss, the log line and metrics row, a
    /// checkpoint and the generated samples; also whether early stopping ends the run.
    fn end_epoch(
        &mut self,
        model: &LanguageModel,
        mut m: EpochMetrics,
    ) -> Result<(EpochMetrics, bool)> {
        let config = self.config;
        m.val_loss = self
            .data
            .validation
            .as_ref()
            .map(|v| evaluate(&model.valid(), v, &self.opened.device));
        println!(
            "epoch {}/{}: loss {:.4}{}, {:.0} tokens/s, {:.1}s, step {}",
            m.epoch,
            config.train.epochs,
            m.loss,
            m.val_loss
                .map_or(String::new(), |v| format!(", validation loss {v:.4}")),
            m.tokens_per_s,
            m.seconds,
            m.step
        );
        self.metrics.push(m)?;
        curves::plot_run(self.run_dir)?;
        let saved = self.checkpoint(model, m.epoch, m.loss, None, None)?;
        let mut no_progress = false;
        if let Some(loss) = m.val_loss {
            if self.best.is_none_or(|(best, _)| loss < best) {
                self.best = Some((loss, m.epoch));
                self.since_best = 0;
                saved.mark_best()?;
            } else {
                self.since_best += 1;
            }
            if let (Some(patience), Some((best, epoch))) =
                (config.train.early_stopping_patience, self.best)
                && self.since_best >= patience
            {
                println!(
                    "early stopping: no lower validation loss in {} evaluations; the best, {best:.4} after epoch {epoch}, is in checkpoints/best",
                    self.since_best
                );
                no_progress = true;
            }
        }
        let device = &self.opened.device;
        generate_samples(
            model,
            &self.data.vocab,
            config,
            &self.prompts,
            device,
            m.epoch,
            self.run_dir,
        )?;
        Ok((m, no_progress))
    }
}

/// Watches the loss for `train.stop_at_loss`.
struct StopRule {
    target: Option<f64>,
    kind: StopLoss,
    smooth: f64,
}

impl StopRule {
    fn new(config: &Config, vocab_size: usize) -> Self {
        let settings = &config.train;
        // The NumPy passage exercise starts its smoothed loss at a uniform guess summed over
        // a window.
        let smooth = (vocab_size as f64).ln() * config.data.seq_len as f64;
        Self {
            target: settings.stop_at_loss,
            kind: settings.stop_loss,
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

/// The seed of the device's random numbers (dropout) for optimizer step `step`.
fn step_seed(seed: u64, step: u64) -> u64 {
    seed ^ (step + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// An error naming the first setting of `config` that changes the corpus, the data, the model
/// or the seed (the batch order) from those the run in `run_dir` was started with.
fn same_settings(config: &Config, run_dir: &Path) -> Result<()> {
    let path = run_dir.join("config.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read the run's config", path.display()))?;
    let saved: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}: not a config", path.display()))?;
    let now = toml::Table::try_from(config).context("serialising the config")?;
    let keys = ["corpus", "data", "model"]
        .into_iter()
        .flat_map(|section| {
            let keys = now.get(section).and_then(toml::Value::as_table);
            keys.into_iter()
                .flat_map(|t| t.keys())
                .map(move |key| (section, key.as_str()))
        })
        // Reading the corpus as text or prepared gives the same ids; the vocabulary check
        // catches a prepared form that disagrees.
        .filter(|&key| key != ("corpus", "prepared"))
        .chain([("train", "seed")]);
    for (section, key) in keys {
        let value = |table: &toml::Table| table.get(section).and_then(|s| s.get(key)).cloned();
        let (before, after) = (value(&saved), value(&now));
        if before != after {
            let show = |v: Option<toml::Value>| v.map_or("unset".into(), |v| v.to_string());
            bail!(
                "{}: `{section}.{key}` was {} when this run started and is {} now; resuming needs the same corpus, data, model and seed (start a new run with --out DIR)",
                path.display(),
                show(before),
                show(after)
            );
        }
    }
    Ok(())
}

/// An error unless the checkpoint's vocabulary is the one the corpus builds now.
fn same_vocab(saved: &Vocab, built: &Vocab, dir: &Path) -> Result<()> {
    if saved == built {
        return Ok(());
    }
    let first = saved
        .tokens()
        .iter()
        .zip(built.tokens())
        .position(|(a, b)| a != b)
        .unwrap_or(saved.size().min(built.size()));
    bail!(
        "{}: the checkpoint's vocabulary ({} entries, SHA-256 {}) differs from the one this corpus and config build ({} entries, SHA-256 {}), first at id {first}; resume with the same corpus and data settings, or start a new run with --out",
        dir.display(),
        saved.size(),
        saved.fingerprint(),
        built.size(),
        built.fingerprint()
    )
}
