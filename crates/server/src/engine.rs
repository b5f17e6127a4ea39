//! Where generations run. For an LSTM model on the CPU, one thread decodes every running
//! sequence together (a [`Batch`]: one output-layer product per step for all of them), each
//! sequence joining at the next step and leaving when it ends; sequences beyond the batch
//! wait in a queue. Other models (GRU, plain RNN, a GPU device) generate each sequence on a
//! blocking thread of its own, as many at once as the batch would hold.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;

use axum::http::StatusCode;
use model::generation::{Batch, Completion, Sequence, Settings, TokenLogprobs};
use tokio::sync::{Semaphore, mpsc};

use crate::error::ApiError;
use crate::{Limits, ServedModel, generator};

/// One sequence to generate.
#[derive(Debug, Clone)]
pub struct Job {
    /// The prompt's ids.
    pub prompt: Vec<u32>,
    /// What it asks for.
    pub settings: Settings,
    /// Seeds its draws.
    pub seed: u64,
    /// Its place among the request's sequences.
    pub index: usize,
}

/// What a request hears of its sequences, each event naming the sequence's index.
#[derive(Debug)]
pub enum Event {
    /// Text now clear, with the log-probabilities of the tokens it completes.
    Piece {
        /// The sequence.
        index: usize,
        /// The text.
        text: String,
        /// The tokens' log-probabilities (empty unless asked for).
        logprobs: Vec<TokenLogprobs>,
    },
    /// The sequence ended.
    Done {
        /// The sequence.
        index: usize,
        /// Its whole completion.
        completion: Completion,
    },
}

/// Runs sequences for the handlers, within the limits on running and waiting ones.
pub struct Engine {
    served: Arc<ServedModel>,
    /// The batch thread's queue, for a model it can decode; `None` for one sequence per thread.
    queue: Option<std_mpsc::Sender<Queued>>,
    /// Threads for one sequence each, when there is no batch thread.
    alone: Arc<Semaphore>,
    admitted: Arc<AtomicUsize>,
    limits: Limits,
}

/// A job on its way to the batch thread.
struct Queued {
    job: Job,
    member: Member,
}

/// Where a sequence's events go, and its place in the count of admitted sequences.
struct Member {
    index: usize,
    events: mpsc::UnboundedSender<Event>,
    _admitted: Admitted,
}

impl Member {
    /// Sends a piece; false when the request is gone.
    fn piece(&self, text: &str, logprobs: &[TokenLogprobs]) -> bool {
        let piece = Event::Piece {
            index: self.index,
            text: text.to_owned(),
            logprobs: logprobs.to_vec(),
        };
        self.events.send(piece).is_ok()
    }

    /// Sends the completion, after leaving the count of admitted sequences: a client that
    /// hears the end and sends its next request at once finds the place free.
    fn done(self, completion: Completion) {
        let Member {
            index,
            events,
            _admitted,
        } = self;
        drop(_admitted);
        let _ = events.send(Event::Done { index, completion });
    }
}

/// One admitted sequence, counted until dropped.
struct Admitted(Arc<AtomicUsize>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Engine {
    /// An engine for `served` within `limits`: a batch thread where the model has a CPU
    /// decoder.
    pub fn start(served: Arc<ServedModel>, limits: Limits) -> Self {
        let queue = Batch::<()>::new(&served.decoder, served.meta.context).map(|_| {
            let (sender, receiver) = std_mpsc::channel();
            let model = served.clone();
            std::thread::Builder::new()
                .name("batch".into())
                .spawn(move || decode_in_batches(&model, &receiver, limits.max_concurrent))
                .expect("starting the batch thread");
            sender
        });
        Self {
            served,
            queue,
            alone: Arc::new(Semaphore::new(limits.max_concurrent)),
            admitted: Arc::new(AtomicUsize::new(0)),
            limits,
        }
    }

    /// Starts `jobs`, all or none: a `429` when the running and waiting sequences would pass
    /// the server's limits. Their events come through the receiver.
    pub fn submit(&self, jobs: Vec<Job>) -> Result<mpsc::UnboundedReceiver<Event>, ApiError> {
        let capacity = self.limits.max_concurrent + self.limits.max_queue;
        let wanted = jobs.len();
        self.admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n + wanted <= capacity).then_some(n + wanted)
            })
            .map_err(|running| {
                ApiError::status(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "{running} generations are running or waiting and this request adds \
                         {wanted}, past this server's limit of {capacity} \
                         (--max-concurrent {} + --max-queue {}); retry shortly",
                        self.limits.max_concurrent, self.limits.max_queue
                    ),
                )
            })?;
        let (events, receiver) = mpsc::unbounded_channel();
        for job in jobs {
            let member = Member {
                index: job.index,
                events: events.clone(),
                _admitted: Admitted(self.admitted.clone()),
            };
            match &self.queue {
                Some(queue) => queue.send(Queued { job, member }).map_err(|_| {
                    ApiError::status(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the batch thread has stopped",
                    )
                })?,
                None => self.run_alone(job, member),
            }
        }
        Ok(receiver)
    }

    /// Generates `job` on a blocking thread of its own once one of the slots is free.
    fn run_alone(&self, job: Job, member: Member) {
        let (served, slots) = (self.served.clone(), self.alone.clone());
        tokio::spawn(async move {
            let Ok(slot) = slots.acquire_owned().await else {
                return;
            };
            tokio::task::spawn_blocking(move || {
                let _slot = slot;
                let mut generator = generator(&served, job.seed);
                let completion =
                    generator.generate_with(&job.prompt, job.settings, |text, logprobs| {
                        member.piece(text, logprobs)
                    });
                member.done(completion);
            });
        });
    }
}

/// The batch thread: waits for work when idle, takes queued sequences into the batch up to
/// `max_batch`, and steps the batch until the queue's sender is gone and the batch is empty.
fn decode_in_batches(served: &ServedModel, queue: &std_mpsc::Receiver<Queued>, max_batch: usize) {
    let mut batch: Batch<'_, Member> =
        Batch::new(&served.decoder, served.meta.context).expect("checked by Engine::start");
    loop {
        if batch.is_empty() {
            match queue.recv() {
                Ok(queued) => join(served, &mut batch, queued),
                Err(_) => return,
            }
        }
        while batch.len() < max_batch {
            match queue.try_recv() {
                Ok(queued) => join(served, &mut batch, queued),
                Err(_) => break,
            }
        }
        for (completion, member) in
            batch.step(|member, text, logprobs| member.piece(text, logprobs))
        {
            member.done(completion);
        }
    }
}

/// Adds a queued job to `batch` (answering at once one that asks for no token).
fn join<'v>(served: &'v ServedModel, batch: &mut Batch<'v, Member>, queued: Queued) {
    let Queued { job, member } = queued;
    let sequence = Sequence::new(
        &served.vocab,
        served.meta.tokenizer,
        &job.prompt,
        job.settings,
        job.seed,
    );
    if let Some((completion, member)) = batch.join(sequence, member) {
        member.done(completion);
    }
}

/// Every sequence's completion, by index, once all `count` have ended; a `500` if the engine
/// dropped one.
pub async fn collect(
    mut events: mpsc::UnboundedReceiver<Event>,
    count: usize,
) -> Result<Vec<Completion>, ApiError> {
    let mut done: Vec<Option<Completion>> = vec![None; count];
    let mut left = count;
    while left > 0 {
        match events.recv().await {
            Some(Event::Done { index, completion }) => {
                done[index] = Some(completion);
                left -= 1;
            }
            Some(Event::Piece { .. }) => {}
            None => {
                return Err(ApiError::status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "a generation ended without its completion",
                ));
            }
        }
    }
    Ok(done.into_iter().flatten().collect())
}
