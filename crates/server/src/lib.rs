//! An HTTP server for one trained model (axum on tokio): OpenAI's legacy completions API with
//! server-sent-event streaming, the chapter's next-word tables and the run's training record.
//! Generation runs on tokio's blocking threads, so a long request never stalls the others.
//!
//! ```text
//! GET  /                  the playground page
//! GET  /health            {"status":"ok"}
//! GET  /v1/models         OpenAI's list, with the model's sizes
//! POST /v1/completions    OpenAI's completions request and response; "stream": true for SSE
//! POST /v1/next           {"prompt", "temperatures", "top"} -> the most likely next tokens
//! GET  /v1/run            metrics.csv rows and samples.txt entries
//! ```

pub mod error;
pub mod requests;

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::sse::{Event, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use data::Vocab;
use model::burn::module::Module;
use model::burn::tensor::Device;
use model::generation::sampling::{probabilities, top};
use model::generation::{Finish, PreparedDecoder, TokenLogprobs};
use model::{CheckpointMeta, Generator, LanguageModel};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::error::ApiError;
use crate::requests::{CompletionRequest, NextRequest, parse, read_body};

/// What the server refuses beyond: sizes of a request and generations in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most generations (completions and tables) running at once; more get `429`.
    pub max_concurrent: usize,
    /// Most tokens one completion may ask for.
    pub max_tokens: usize,
    /// Longest prompt, in bytes.
    pub prompt_bytes: usize,
    /// Largest request body, in bytes.
    pub body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_concurrent: 4,
            max_tokens: 1024,
            prompt_bytes: 16 << 10,
            body_bytes: 64 << 10,
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
    served: ServedModel,
    limits: Limits,
    slots: Arc<Semaphore>,
    log: RequestLog,
}

type Shared = Arc<AppState>;

/// The server's routes over `served`, within `limits`, logging requests as `log` says.
pub fn router(served: ServedModel, limits: Limits, log: RequestLog) -> Router {
    let state = Arc::new(AppState {
        served,
        limits,
        slots: Arc::new(Semaphore::new(limits.max_concurrent)),
        log,
    });
    Router::new()
        .route("/", get(|| async { Html(PLAYGROUND) }))
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/v1/models", get(models))
        .route("/v1/completions", post(completions))
        .route("/v1/next", post(next_tokens))
        .route("/v1/run", get(run_record))
        .fallback(|| async { ApiError::status(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(middleware::from_fn_with_state(state.clone(), log_request))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting and lets the
/// requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// A streamed response, marked so the request log waits for its end (logged by the stream).
#[derive(Clone, Copy)]
struct Streamed;

/// Tokens a response generated, for the request log.
#[derive(Clone, Copy)]
struct Tokens(usize);

/// One line per request: method, path, status, tokens generated and milliseconds.
async fn log_request(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let start = Instant::now();
    let response = next.run(request).await;
    if state.log == RequestLog::Stderr && response.extensions().get::<Streamed>().is_none() {
        let tokens = response.extensions().get::<Tokens>().map_or(0, |t| t.0);
        log_line(
            method.as_str(),
            &path,
            response.status().as_u16(),
            tokens,
            start,
        );
    }
    response
}

fn log_line(method: &str, path: &str, status: u16, tokens: usize, start: Instant) {
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    eprintln!("{method} {path} {status} {tokens} tokens {ms:.0} ms");
}

async fn models(State(state): State<Shared>) -> Json<Value> {
    let served = &state.served;
    let meta = &served.meta;
    Json(json!({
        "object": "list",
        "data": [{
            "id": served.name,
            "object": "model",
            "created": 0,
            "owned_by": "lstm-textgen",
            "vocab_size": meta.vocab_size,
            "tokenizer": meta.tokenizer,
            "cell": meta.model.cell,
            "epoch": meta.epoch,
            "loss": meta.loss,
            "parameters": served.model.num_params(),
            "context_length": meta.context,
            "max_tokens_cap": state.limits.max_tokens,
        }]
    }))
}

/// A slot for one generation, or `429` when every slot is taken.
fn take_slot(state: &AppState) -> Result<OwnedSemaphorePermit, ApiError> {
    state.slots.clone().try_acquire_owned().map_err(|_| {
        ApiError::status(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{} generations are already running, this server's limit; retry shortly",
                state.limits.max_concurrent
            ),
        )
    })
}

/// Seconds since 1970, for OpenAI's `created`.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn completions(State(state): State<Shared>, body: Body) -> Result<Response, ApiError> {
    let body = read_body(body, state.limits.body_bytes).await?;
    let request: CompletionRequest = parse(&body)?;
    let (sampling, max_tokens, stops) = request.settings(&state.limits)?;
    let permit = take_slot(&state)?;
    let seed = request.seed.unwrap_or(data::defaults::SEED);
    let prompt = prompt_ids(&state.served, &request.prompt)?;
    let created = now();
    let top_logprobs = request.logprobs;
    let chunk = {
        let (id, model) = (format!("cmpl-{created}-{seed}"), state.served.name.clone());
        move |text: &str, logprobs: Value, finish: Option<Finish>| {
            json!({
                "id": id,
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": [{
                    "text": text,
                    "index": 0,
                    "logprobs": logprobs,
                    "finish_reason": finish.map(finish_reason),
                }],
            })
        }
    };
    let worker = state.clone();
    if !request.stream {
        let prompt_len = prompt.len();
        let body = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let served = &worker.served;
            let mut generator = generator(served, seed).with_logprobs(top_logprobs);
            let done = generator.generate(&prompt, max_tokens, &sampling, &stops);
            let separator = generator.separator();
            let logprobs = top_logprobs.map_or(Value::Null, |_| {
                logprobs_json(served, separator, &done.logprobs, &mut 0)
            });
            let mut body = chunk(
                &with_separator(separator, &done.text),
                logprobs,
                Some(done.finish),
            );
            body["usage"] = json!({
                "prompt_tokens": prompt_len,
                "completion_tokens": done.ids.len(),
                "total_tokens": prompt_len + done.ids.len(),
            });
            (body, done.ids.len())
        })
        .await
        .map_err(|e| ApiError::status(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let mut response = Json(body.0).into_response();
        response.extensions_mut().insert(Tokens(body.1));
        return Ok(response);
    }
    // Streaming: the prompt was checked before answering 200; each piece is sent as it comes.
    let (sender, receiver) = mpsc::channel::<Result<Event, Infallible>>(64);
    let start = Instant::now();
    tokio::task::spawn_blocking(move || {
        let served = &worker.served;
        let mut generator = generator(served, seed).with_logprobs(top_logprobs);
        let separator = generator.separator();
        let (mut first, mut offset) = (true, 0);
        let done = generator.generate_streaming(
            &prompt,
            max_tokens,
            &sampling,
            &stops,
            |piece, entries| {
                let text = match std::mem::take(&mut first) {
                    true => with_separator(separator, piece),
                    false => piece.to_owned(),
                };
                let logprobs = top_logprobs.map_or(Value::Null, |_| {
                    logprobs_json(served, separator, entries, &mut offset)
                });
                let event = Event::default().data(chunk(&text, logprobs, None).to_string());
                // A closed channel is a client that went away: stop generating.
                sender.blocking_send(Ok(event)).is_ok()
            },
        );
        // The slot is free before the client hears the end, so its next request finds it.
        drop(permit);
        let last = chunk("", Value::Null, Some(done.finish));
        let _ = sender.blocking_send(Ok(Event::default().data(last.to_string())));
        let _ = sender.blocking_send(Ok(Event::default().data("[DONE]")));
        if worker.log == RequestLog::Stderr {
            log_line("POST", "/v1/completions", 200, done.ids.len(), start);
        }
    });
    let mut response = Sse::new(ReceiverStream::new(receiver)).into_response();
    response.extensions_mut().insert(Streamed);
    Ok(response)
}

/// OpenAI's `logprobs` object for `entries`, each token with the separator that joins it to
/// the text before; `offset` is where the first begins in the completion's text, and moves on.
fn logprobs_json(
    served: &ServedModel,
    separator: &str,
    entries: &[TokenLogprobs],
    offset: &mut usize,
) -> Value {
    let text = |id: u32| format!("{separator}{}", token_name(&served.vocab, id));
    let mut offsets = Vec::with_capacity(entries.len());
    for entry in entries {
        offsets.push(*offset);
        *offset += text(entry.id).len();
    }
    json!({
        "tokens": entries.iter().map(|e| text(e.id)).collect::<Vec<_>>(),
        "token_logprobs": entries.iter().map(|e| e.logprob).collect::<Vec<_>>(),
        "top_logprobs": entries
            .iter()
            .map(|e| e.top.iter().map(|&(id, lp)| (text(id), json!(lp))).collect())
            .collect::<Vec<serde_json::Map<String, Value>>>(),
        "text_offset": offsets,
    })
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

/// OpenAI's `finish_reason`.
fn finish_reason(finish: Finish) -> &'static str {
    match finish {
        Finish::Stop => "stop",
        Finish::Length => "length",
    }
}

/// `text` after the separator that joins it to the prompt (a space for words), if non-empty.
fn with_separator(separator: &str, text: &str) -> String {
    match text.is_empty() {
        true => String::new(),
        false => format!("{separator}{text}"),
    }
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

async fn next_tokens(State(state): State<Shared>, body: Body) -> Result<Response, ApiError> {
    let body = read_body(body, state.limits.body_bytes).await?;
    let request: NextRequest = parse(&body)?;
    let (temperatures, count) = request.settings(&state.limits)?;
    let permit = take_slot(&state)?;
    let worker = state.clone();
    let tables = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let served = &worker.served;
        let generator = generator(served, 0);
        let prompt = generator
            .prompt(&request.prompt)
            .map_err(|e| ApiError::invalid("prompt", e.to_string()))?;
        let logits = generator.next_token_logits(&prompt.ids);
        let tables: Vec<Value> = temperatures
            .iter()
            .map(|&t| {
                let tokens: Vec<Value> = top(&probabilities(&logits, t as f32), count)
                    .into_iter()
                    .map(
                        |(id, p)| json!({"token": token_name(&served.vocab, id), "probability": p}),
                    )
                    .collect();
                json!({"temperature": t, "tokens": tokens})
            })
            .collect();
        Ok::<_, ApiError>(json!({
            "prompt": generator.decode(&prompt.ids),
            "unknown": prompt.unknown,
            "tables": tables,
        }))
    })
    .await
    .map_err(|e| ApiError::status(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(Json(tables).into_response())
}

async fn run_record(State(state): State<Shared>) -> Result<Json<Value>, ApiError> {
    let Some(run_dir) = &state.served.run_dir else {
        return Ok(Json(
            json!({"metrics": [], "samples": [], "prompts": state.served.prompts}),
        ));
    };
    let metrics = std::fs::read_to_string(run_dir.join("metrics.csv")).unwrap_or_default();
    let mut lines = metrics.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let rows: Vec<Value> = lines
        .map(|line| {
            let fields = header.iter().zip(line.split(',')).map(|(key, value)| {
                let value = value.parse::<f64>().map_or(Value::Null, |v| json!(v));
                ((*key).to_owned(), value)
            });
            Value::Object(fields.collect())
        })
        .collect();
    let samples = std::fs::read_to_string(run_dir.join("samples.txt")).unwrap_or_default();
    let samples: Vec<Value> = samples
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, " | ");
            let epoch = parts
                .next()?
                .strip_prefix("epoch ")?
                .parse::<usize>()
                .ok()?;
            let temperature = parts
                .next()?
                .strip_prefix("temperature ")?
                .parse::<f64>()
                .ok()?;
            let text = parts.next()?.replace("\\n", "\n");
            Some(json!({"epoch": epoch, "temperature": temperature, "text": text}))
        })
        .collect();
    Ok(Json(json!({
        "metrics": rows,
        "samples": samples,
        "prompts": state.served.prompts,
    })))
}
