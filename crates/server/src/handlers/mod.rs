//! One file per endpoint.

pub(crate) mod chat;
pub(crate) mod completions;
pub(crate) mod models;
pub(crate) mod next;
pub(crate) mod run_record;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use model::generation::{Completion, TokenLogprobs};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::engine::{Event, Job};
use crate::error::ApiError;
use crate::requests::{Generation, parse, read_body};
use crate::responses::{Envelope, Usage};
use crate::{AppState, Generated, LogLine, RequestLog, ServedModel, Shared, Streamed, now};

/// The sequences a request generates: for each prompt, `best_of` choices; choice k of all of
/// them (prompt index times `best_of` plus rank) draws from the request's seed plus k.
fn jobs(prompts: &[Vec<u32>], generation: &Generation) -> Vec<Job> {
    let per_prompt = generation.best_of;
    prompts
        .iter()
        .enumerate()
        .flat_map(|(p, prompt)| {
            (0..per_prompt).map(move |k| {
                let index = p * per_prompt + k;
                Job {
                    prompt: prompt.clone(),
                    settings: generation.settings.clone(),
                    seed: generation.seed.wrapping_add(index as u64),
                    index,
                }
            })
        })
        .collect()
}

/// A request body of type `T`, read and parsed within the server's limits.
pub(crate) async fn read_request<T: DeserializeOwned>(
    state: &AppState,
    body: Body,
) -> Result<T, ApiError> {
    let limits = &state.limits;
    parse(&read_body(body, limits.body_bytes, limits.request_timeout).await?)
}

/// The sequences of a request started: their events, how many there are and the prompts'
/// tokens.
pub(crate) struct Started {
    pub events: mpsc::UnboundedReceiver<Event>,
    pub count: usize,
    pub prompt_tokens: usize,
}

/// Starts the sequences of `prompts` as `generation` asks (see [`jobs`]).
pub(crate) fn start(
    state: &AppState,
    prompts: &[Vec<u32>],
    generation: &Generation,
) -> Result<Started, ApiError> {
    let jobs = jobs(prompts, generation);
    let count = jobs.len();
    Ok(Started {
        events: state.engine.submit(jobs)?,
        count,
        prompt_tokens: prompts.iter().map(Vec::len).sum(),
    })
}

/// What every chunk of one answer, and a whole answer, carries: the `id` (`prefix-` and a
/// number unique in this process), `created` and the model's name.
pub(crate) struct Heading {
    id: String,
    created: u64,
    served: Arc<ServedModel>,
}

impl Heading {
    /// A new answer's heading, its id starting with `prefix`.
    pub(crate) fn new(prefix: &str, served: Arc<ServedModel>) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let created = now();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Self {
            id: format!("{prefix}-{created}-{n}"),
            created,
            served,
        }
    }

    /// The served model.
    pub(crate) fn served(&self) -> &ServedModel {
        &self.served
    }

    /// `choices` (and `usage`) under this heading, as an `object`.
    pub(crate) fn envelope<C>(
        &self,
        object: &'static str,
        choices: Vec<C>,
        usage: Option<Usage>,
    ) -> Envelope<'_, C> {
        Envelope {
            id: &self.id,
            object,
            created: self.created,
            model: &self.served.name,
            choices,
            usage,
        }
    }

    /// [`Heading::envelope`] as one event's JSON text.
    pub(crate) fn chunk<C: Serialize>(
        &self,
        object: &'static str,
        choices: Vec<C>,
        usage: Option<Usage>,
    ) -> String {
        serde_json::to_string(&self.envelope(object, choices, usage)).expect("a chunk serialises")
    }
}

/// How one API writes a stream's chunks.
pub(crate) trait Chunks: Send + 'static {
    /// Chunks sent before any text (the chat API's role).
    fn opening(&mut self) -> Vec<String>;
    /// The chunk for a piece of choice `index`'s text.
    fn piece(&mut self, index: usize, text: &str, logprobs: &[TokenLogprobs]) -> String;
    /// The chunk that ends choice `index`.
    fn end(&mut self, index: usize, completion: &Completion) -> String;
    /// The last chunk, with the token counts.
    fn usage(&mut self, usage: Usage) -> String;
}

/// A whole answer, marked with the tokens it generated and the request's `user` for the log.
pub(crate) fn whole(answer: &impl Serialize, tokens: usize, user: Option<String>) -> Response {
    let mut response = Json(answer).into_response();
    response.extensions_mut().insert(Generated { tokens, user });
    response
}

/// What a stream sends besides the chunks, and logs.
pub(crate) struct StreamShape {
    /// The endpoint, for the log.
    pub path: &'static str,
    /// Whether the usage is sent before `[DONE]`.
    pub include_usage: bool,
    /// The request's `user`, for the log.
    pub user: Option<String>,
}

/// The server-sent events of a streamed answer: `chunks` for every event of the sequences as
/// it comes, the usage when asked for, then `data: [DONE]`. A client that goes away stops its
/// sequences.
pub(crate) fn stream(
    state: Shared,
    started: Started,
    shape: StreamShape,
    mut chunks: impl Chunks,
) -> Response {
    let Started {
        mut events,
        count,
        prompt_tokens,
    } = started;
    let (sender, receiver) = mpsc::channel::<Result<SseEvent, Infallible>>(64);
    let start = Instant::now();
    tokio::spawn(async move {
        let send = |data: String| sender.send(Ok(SseEvent::default().data(data)));
        for chunk in chunks.opening() {
            if send(chunk).await.is_err() {
                return;
            }
        }
        let (mut left, mut tokens) = (count, 0);
        while left > 0 {
            let data = match events.recv().await {
                Some(Event::Piece {
                    index,
                    text,
                    logprobs,
                }) => chunks.piece(index, &text, &logprobs),
                Some(Event::Done { index, completion }) => {
                    left -= 1;
                    tokens += completion.ids.len();
                    chunks.end(index, &completion)
                }
                None => return,
            };
            if send(data).await.is_err() {
                return;
            }
        }
        if shape.include_usage {
            let _ = send(chunks.usage(Usage::new(prompt_tokens, tokens))).await;
        }
        let _ = send("[DONE]".to_owned()).await;
        if state.log == RequestLog::Stderr {
            let line = LogLine {
                method: "POST",
                path: shape.path,
                status: 200,
                tokens,
                user: shape.user.as_deref(),
            };
            line.print(start);
        }
    });
    let mut response = Sse::new(ReceiverStream::new(receiver)).into_response();
    response.extensions_mut().insert(Streamed);
    response
}
