//! An HTTP server for one trained model (axum on tokio): OpenAI's completions and chat
//! completions APIs with server-sent-event streaming, the chapter's next-word tables and the
//! run's training record. Concurrent generations are decoded together (see [`engine`]).
//!
//! ```text
//! GET  /                     the playground page
//! GET  /health               {"status":"ok"}
//! GET  /v1/models            OpenAI's list, with the model's sizes
//! POST /v1/completions       OpenAI's completions; "stream": true for SSE
//! POST /v1/chat/completions  OpenAI's chat completions; "stream": true for SSE
//! POST /v1/next              {"prompt", "temperatures", "top"} -> the most likely next tokens
//! GET  /v1/run               metrics.csv rows and samples.txt entries
//! ```

pub mod connections;
pub mod engine;
pub mod error;
mod handlers;
pub mod requests;
mod responses;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{Html, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use data::Vocab;
use model::burn::tensor::Device;
use model::generation::{Finish, PreparedDecoder};
use model::{CheckpointMeta, Generator, LanguageModel};
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use connections::serve;

use crate::engine::Engine;
use crate::error::ApiError;

/// What the server refuses beyond: sizes of a request, generations running and waiting,
/// connections and slow clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most sequences decoded at once (one batch); more wait in the queue.
    pub max_concurrent: usize,
    /// Most sequences waiting for a place in the batch; more get `429`.
    pub max_queue: usize,
    /// Most tokens one completion may ask for.
    pub max_tokens: usize,
    /// Longest prompt, in bytes.
    pub prompt_bytes: usize,
    /// Largest request body, in bytes.
    pub body_bytes: usize,
    /// Most open connections; more wait to be accepted.
    pub max_connections: usize,
    /// Time a client has to send a request's headers, and then its body.
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_concurrent: 64,
            max_queue: 256,
            max_tokens: 1024,
            prompt_bytes: 16 << 10,
            body_bytes: 64 << 10,
            max_connections: 512,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// A loaded model and what the server says about it.
pub struct ServedModel {
    /// The run's name: the `model` of every response.
    pub name: String,
    /// The network, without autodiff.
    pub model: LanguageModel,
    /// Its vocabulary.
    pub vocab: Vocab,
    /// The checkpoint's description (sizes, tokenizer, epoch, loss, context).
    pub meta: CheckpointMeta,
    /// Where the model runs.
    pub device: Device,
    /// The run directory, for `/v1/run` (none for a lone checkpoint directory).
    pub run_dir: Option<PathBuf>,
    /// The prompts the run generated from after each epoch; the playground starts with the
    /// first.
    pub prompts: Vec<String>,
    /// The model prepared once for CPU generation (`PreparedDecoder::new(&model, &device)`).
    pub decoder: PreparedDecoder,
}

/// The playground: one page, its styles and script inline, so it works offline.
const PLAYGROUND: &str = include_str!("playground.html");

/// Whether the server logs a line per request on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestLog {
    /// `POST /v1/completions 200 38 tokens 5 ms`, one line per request.
    Stderr,
    /// Nothing.
    Off,
}

/// What every handler shares.
struct AppState {
    served: Arc<ServedModel>,
    limits: Limits,
    engine: Engine,
    /// Slots for the next-word tables, which run outside the engine.
    tables: Arc<Semaphore>,
    log: RequestLog,
}

type Shared = Arc<AppState>;

/// The server's routes over `served`, within `limits`, logging requests as `log` says.
pub fn router(served: ServedModel, limits: Limits, log: RequestLog) -> Router {
    let served = Arc::new(served);
    let state = Arc::new(AppState {
        engine: Engine::start(served.clone(), limits),
        served,
        limits,
        tables: Arc::new(Semaphore::new(limits.max_concurrent)),
        log,
    });
    Router::new()
        .route("/", get(|| async { Html(PLAYGROUND) }))
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/v1/models", get(handlers::models::models))
        .route("/v1/completions", post(handlers::completions::completions))
        .route(
            "/v1/chat/completions",
            post(handlers::chat::chat_completions),
        )
        .route("/v1/next", post(handlers::next::next_tokens))
        .route("/v1/run", get(handlers::run_record::run_record))
        .fallback(|| async { ApiError::status(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(middleware::from_fn_with_state(state.clone(), log_request))
        .with_state(state)
}

/// A streamed response, marked so the request log waits for its end (logged by the stream).
#[derive(Clone, Copy)]
struct Streamed;

/// What a response generated, for the request log: tokens, and the `user` the request named.
#[derive(Clone)]
struct Generated {
    tokens: usize,
    user: Option<String>,
}

/// One line per request: method, path, status, tokens generated and milliseconds.
async fn log_request(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let start = Instant::now();
    let response = next.run(request).await;
    if state.log == RequestLog::Stderr && response.extensions().get::<Streamed>().is_none() {
        let generated = response.extensions().get::<Generated>();
        let line = LogLine {
            method: method.as_str(),
            path: &path,
            status: response.status().as_u16(),
            tokens: generated.map_or(0, |g| g.tokens),
            user: generated.and_then(|g| g.user.as_deref()),
        };
        line.print(start);
    }
    response
}

/// One request's line in the log.
struct LogLine<'a> {
    method: &'a str,
    path: &'a str,
    status: u16,
    tokens: usize,
    user: Option<&'a str>,
}

impl LogLine<'_> {
    fn print(&self, start: Instant) {
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        let user = self.user.map_or(String::new(), |u| format!(" user {u:?}"));
        eprintln!(
            "{} {} {} {} tokens {ms:.0} ms{user}",
            self.method, self.path, self.status, self.tokens
        );
    }
}

/// A slot for one next-word table, or `429` when every slot is taken.
fn take_slot(state: &AppState) -> Result<OwnedSemaphorePermit, ApiError> {
    state.tables.clone().try_acquire_owned().map_err(|_| {
        ApiError::status(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{} tables are already being computed, this server's limit; retry shortly",
                state.limits.max_concurrent
            ),
        )
    })
}

/// A `404` unless `model` is absent or names the served model.
fn check_model(state: &AppState, model: Option<&str>) -> Result<(), ApiError> {
    match model {
        Some(name) if name != state.served.name => Err(ApiError::model_not_found(name)),
        _ => Ok(()),
    }
}

/// Seconds since 1970, for OpenAI's `created`.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// OpenAI's `finish_reason`.
fn finish_reason(finish: Finish) -> &'static str {
    match finish {
        Finish::Stop => "stop",
        Finish::Length => "length",
    }
}

/// A token's text, with the stop id shown as `<stop>`.
fn token_name(vocab: &Vocab, id: u32) -> &str {
    match id {
        0 => "<stop>",
        _ => vocab.token(id),
    }
}

/// The ids of `text`, tokenised as the model's training data was; `400` when it has none.
fn prompt_ids(served: &ServedModel, text: &str) -> Result<Vec<u32>, ApiError> {
    let prompt = generator(served, 0)
        .prompt(text)
        .map_err(|e| ApiError::invalid("prompt", e.to_string()))?;
    Ok(prompt.ids)
}

/// A generator over the served model, seeded.
fn generator(served: &ServedModel, seed: u64) -> Generator<'_> {
    Generator::new(
        &served.model,
        &served.vocab,
        served.meta.tokenizer,
        served.device.clone(),
        seed,
    )
    .with_context(served.meta.context)
    .with_decoder(&served.decoder)
}
