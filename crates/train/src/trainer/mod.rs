//! The training loop, readable top to bottom: data, vocabulary, model, then epochs of
//! Adam steps, each epoch ending with metrics, a checkpoint and generated samples.
//!
//! We write our own loop rather than burn-train's `Learner` because the `Learner` has no
//! end-of-epoch hook that sees the model (the per-epoch generation callback). The setup (devices,
//! data, sample prompts) is in `setup.rs`, what `--resume` checks in `resume.rs`, and the stop
//! rules in `stop_rule.rs`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use model::checkpoint::EpochProgress;
use model::recurrent::State;
use model::{Checkpoint, CheckpointMeta, LanguageModel, OpenDevice};

mod resume;
mod setup;
mod stop_rule;

use crate::Args;
use crate::callback::generate_samples;
use crate::metrics::{EpochMetrics, MetricsLog};
use crate::progress::Progress;
use crate::step::{optimizer, train_step_on};
use pipeline::config::{Config, config_name};
use pipeline::evaluation::evaluate;
use pipeline::prepare::PreparedData;

use resume::same_settings;
use setup::{open_device, prepare_data, sample_prompts};
use stop_rule::StopRule;

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

/// The seed of the device's random numbers (dropout) for optimizer step `step`.
fn step_seed(seed: u64, step: u64) -> u64 {
    seed ^ (step + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}
