//! The request bodies the server accepts, parsed strictly (fields OpenAI does not define and
//! wrong types are refused, naming the field; a `null` is a field not set) and checked
//! against the server's limits.

use std::collections::BTreeMap;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use model::Sampling;
use model::generation::{Adjustments, Settings};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_stream::StreamExt;

use crate::Limits;
use crate::error::ApiError;

/// A request struct with the sampling fields both APIs share (see [`SamplingFields`]) after
/// its own, and `sampling()` to read them. Written once here because serde's `flatten` loses
/// the field names in errors and cannot refuse unknown fields.
macro_rules! with_sampling_fields {
    ($(#[$meta:meta])* pub struct $name:ident { $($fields:tt)* }) => {
        $(#[$meta])*
        pub struct $name {
            $($fields)*
            /// Softmax temperature; 0 means greedy, as OpenAI documents.
            pub temperature: Option<f32>,
            /// Nucleus sampling, in (0, 1].
            pub top_p: Option<f32>,
            /// Only the K most likely tokens.
            pub top_k: Option<usize>,
            /// CTRL's repetition penalty (1 is off).
            pub repetition_penalty: Option<f32>,
            /// OpenAI's frequency penalty, in [-2, 2].
            pub frequency_penalty: Option<f32>,
            /// OpenAI's presence penalty, in [-2, 2].
            pub presence_penalty: Option<f32>,
            /// Token ids of the vocabulary (as strings) to biases in [-100, 100].
            pub logit_bias: Option<BTreeMap<String, f32>>,
            /// Seeds sampling: the same seed gives the same text, streamed or not, alone or
            /// batched.
            pub seed: Option<u64>,
            /// Text that ends the completion where it begins: a string or a list.
            pub stop: Option<Stop>,
        }

        impl $name {
            /// The sampling fields, apart.
            pub fn sampling(&self) -> SamplingFields {
                SamplingFields {
                    temperature: self.temperature,
                    top_p: self.top_p,
                    top_k: self.top_k,
                    repetition_penalty: self.repetition_penalty,
                    frequency_penalty: self.frequency_penalty,
                    presence_penalty: self.presence_penalty,
                    logit_bias: self.logit_bias.clone(),
                    seed: self.seed,
                    stop: self.stop.clone(),
                }
            }
        }
    };
}

with_sampling_fields! {
/// OpenAI's completions request, plus `top_k` and `repetition_penalty`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompletionRequest {
    /// The served model's name; absent means the served model.
    pub model: Option<String>,
    /// The text to continue: a string or a list of strings.
    pub prompt: Value,
    /// Refused: a continuation model has no insertion.
    pub suffix: Option<Value>,
    /// The prompt in front of the completion's text (and its tokens in `logprobs`).
    pub echo: Option<bool>,
    /// Choices per prompt.
    pub n: Option<usize>,
    /// Completions generated per prompt, of which the `n` with the highest mean
    /// log-probability are returned.
    pub best_of: Option<usize>,
    /// Each generated token's log-probability and this many most likely alternatives.
    pub logprobs: Option<usize>,
    /// Answer with server-sent events, one per piece of text.
    pub stream: Option<bool>,
    /// `{"include_usage": true}`: a last event with the token counts.
    pub stream_options: Option<StreamOptions>,
    /// Accepted and logged.
    pub user: Option<String>,
    /// Most new tokens (default 100, or the server's cap when that is lower).
    pub max_tokens: Option<usize>,
}
}

with_sampling_fields! {
/// OpenAI's chat completions request, plus `top_k` and `repetition_penalty`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    /// The served model's name; absent means the served model.
    pub model: Option<String>,
    /// The conversation; its contents, joined by newlines, are the prompt.
    pub messages: Vec<Message>,
    /// Choices.
    pub n: Option<usize>,
    /// Whether to return each token's log-probability.
    pub logprobs: Option<bool>,
    /// Most likely alternatives per token (with `logprobs`).
    pub top_logprobs: Option<usize>,
    /// Answer with `chat.completion.chunk` events.
    pub stream: Option<bool>,
    /// `{"include_usage": true}`: a last event with the token counts.
    pub stream_options: Option<StreamOptions>,
    /// Accepted and logged.
    pub user: Option<String>,
    /// Most new tokens (the older name).
    pub max_tokens: Option<usize>,
    /// Most new tokens.
    pub max_completion_tokens: Option<usize>,
}
}

with_sampling_fields! {
/// The sampling fields of both APIs.
#[derive(Debug, Clone, Default)]
pub struct SamplingFields {}
}

/// `stream_options`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    /// Send a last event with `usage` (and no choices) before `[DONE]`.
    pub include_usage: Option<bool>,
}

/// One chat message.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant`, ...: not shown to the model.
    pub role: String,
    /// The text: a string or a list of parts (`{"type": "text", "text": ...}`).
    pub content: Option<Content>,
}

/// A message's content.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Parts, of which the text parts are read.
    Parts(Vec<Part>),
}

/// One part of a message's content.
#[derive(Debug, Clone, Deserialize)]
pub struct Part {
    /// `text` (other kinds are refused).
    #[serde(rename = "type")]
    pub kind: String,
    /// The part's text.
    pub text: Option<String>,
}

/// Most alternatives `logprobs` may ask for per token.
pub const MAX_LOGPROBS: usize = 20;

/// Most choices one request may ask for (`n`, `best_of`, prompts times choices).
pub const MAX_CHOICES: usize = 64;

/// `stop`: one string or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One stop string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// The chapter's next-word tables as a request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NextRequest {
    /// The text whose next word is asked for.
    pub prompt: String,
    /// Temperatures, each above 0 (default 1.0 and 0.2).
    pub temperatures: Option<Vec<f64>>,
    /// Words per table (default 5).
    pub top: Option<usize>,
}

/// What a completion or chat request asks of every choice it generates.
#[derive(Debug, Clone)]
pub struct Generation {
    /// The settings of each sequence.
    pub settings: Settings,
    /// The seed of the first choice; choice k of all those generated draws from `seed + k`.
    pub seed: u64,
    /// Choices returned per prompt.
    pub n: usize,
    /// Choices generated per prompt (at least `n`).
    pub best_of: usize,
    /// Whether the answer streams.
    pub stream: bool,
    /// Whether a streamed answer ends with the token counts.
    pub include_usage: bool,
}

/// Reads a request body of at most `limit` bytes; a `400` when it is longer. A longer body is
/// still read to its end (up to 16 times the limit), so the client hears the `400` instead of
/// a connection reset while it is still sending. A body that stops arriving for
/// `timeout` gets a `408`.
pub async fn read_body(
    body: Body,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, ApiError> {
    let read = async {
        let mut chunks = body.into_data_stream();
        let (mut kept, mut seen) = (Vec::new(), 0usize);
        while let Some(chunk) = chunks.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::bad_request(format!("cannot read the body: {e}")))?;
            seen += chunk.len();
            if seen <= limit {
                kept.extend_from_slice(&chunk);
            } else if seen > 16 * limit {
                break;
            }
        }
        if seen > limit {
            return Err(ApiError::bad_request(format!(
                "the request body is over this server's limit of {limit} bytes"
            )));
        }
        Ok(kept.into())
    };
    tokio::time::timeout(timeout, read).await.map_err(|_| {
        ApiError::status(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} s",
                timeout.as_secs_f64()
            ),
        )
    })?
}

/// `body` as JSON of type `T`, or a `400` naming the field at fault.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut json = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.inner().to_string();
        // Unknown and missing fields are reported at the top level; the name is in the
        // message.
        let named = ["unknown field `", "missing field `"]
            .iter()
            .find_map(|prefix| inner.strip_prefix(prefix))
            .and_then(|rest| rest.split('`').next());
        let message = match inner.starts_with("unknown field") {
            true => format!(
                "invalid request: {}: this server takes the fields OpenAI documents",
                inner.split(", expected").next().unwrap_or(&inner)
            ),
            false => format!("invalid request: {inner}"),
        };
        match (path.as_str(), named) {
            (_, Some(field)) => ApiError::invalid(field, message),
            ("." | "?" | "", None) => ApiError::bad_request(message),
            (field, None) => ApiError::invalid(field, message),
        }
    })
}

impl CompletionRequest {
    /// The prompts, each checked: a string or a list of strings.
    pub fn prompts(&self, limits: &Limits) -> Result<Vec<String>, ApiError> {
        if self.suffix.as_ref().is_some_and(|s| !s.is_null()) {
            return Err(ApiError::invalid(
                "suffix",
                "suffix is not supported: this model continues text, it does not insert it",
            ));
        }
        let prompts = match &self.prompt {
            Value::String(text) => vec![text.clone()],
            Value::Array(items) if items.is_empty() => {
                return Err(ApiError::invalid("prompt", "prompt is an empty list"));
            }
            Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    Value::String(text) => Ok(text.clone()),
                    Value::Number(_) | Value::Array(_) => Err(ApiError::invalid(
                        "prompt",
                        "token-id prompts are not supported: send the prompt as text",
                    )),
                    _ => Err(ApiError::invalid(
                        "prompt",
                        "prompt must be a string or a list of strings",
                    )),
                })
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(ApiError::invalid(
                    "prompt",
                    "prompt must be a string or a list of strings",
                ));
            }
        };
        for prompt in &prompts {
            check_prompt(prompt, limits)?;
        }
        Ok(prompts)
    }

    /// What every choice asks for, checked.
    pub fn generation(&self, limits: &Limits, prompts: usize) -> Result<Generation, ApiError> {
        let logprobs = self.logprobs;
        if logprobs.is_some_and(|n| n > MAX_LOGPROBS) {
            return Err(ApiError::invalid(
                "logprobs",
                format!("logprobs is at most {MAX_LOGPROBS}"),
            ));
        }
        let n = count("n", self.n)?;
        let best_of = count("best_of", self.best_of.or(self.n))?;
        if best_of < n {
            return Err(ApiError::invalid(
                "best_of",
                format!("best_of ({best_of}) must be at least n ({n})"),
            ));
        }
        let stream = self.stream.unwrap_or(false);
        if stream && best_of > n {
            return Err(ApiError::invalid(
                "best_of",
                "best_of above n cannot be streamed: the best are known only at the end",
            ));
        }
        check_choices(prompts * best_of)?;
        let max_tokens = max_tokens("max_tokens", self.max_tokens, limits)?;
        // The best of several are ranked by their tokens' log-probabilities.
        let ranked = logprobs.or((best_of > n).then_some(0));
        let settings = self.sampling().settings(max_tokens, ranked)?;
        Ok(Generation {
            seed: self.seed.unwrap_or(data::defaults::SEED),
            settings,
            n,
            best_of,
            stream,
            include_usage: include_usage(&self.stream_options),
        })
    }
}

impl ChatRequest {
    /// The prompt the model sees: every message's text, in order, joined by newlines.
    pub fn prompt(&self, limits: &Limits) -> Result<String, ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::invalid("messages", "messages is empty"));
        }
        let mut texts = Vec::with_capacity(self.messages.len());
        for message in &self.messages {
            match &message.content {
                None => {}
                Some(Content::Text(text)) => texts.push(text.clone()),
                Some(Content::Parts(parts)) => {
                    for part in parts {
                        match (part.kind.as_str(), &part.text) {
                            ("text", Some(text)) => texts.push(text.clone()),
                            (kind, _) => {
                                return Err(ApiError::invalid(
                                    "messages",
                                    format!(
                                        "a content part of type `{kind}` is not supported: \
                                         this model reads text"
                                    ),
                                ));
                            }
                        }
                    }
                }
            }
        }
        let prompt = texts.join("\n");
        check_prompt(&prompt, limits)?;
        Ok(prompt)
    }

    /// What every choice asks for, checked.
    pub fn generation(&self, limits: &Limits) -> Result<Generation, ApiError> {
        let top = self.top_logprobs.unwrap_or(0);
        if top > MAX_LOGPROBS {
            return Err(ApiError::invalid(
                "top_logprobs",
                format!("top_logprobs is at most {MAX_LOGPROBS}"),
            ));
        }
        let n = count("n", self.n)?;
        check_choices(n)?;
        let max_tokens = match self.max_completion_tokens {
            Some(_) => max_tokens("max_completion_tokens", self.max_completion_tokens, limits)?,
            None => max_tokens("max_tokens", self.max_tokens, limits)?,
        };
        let logprobs = self.logprobs.unwrap_or(false).then_some(top);
        Ok(Generation {
            seed: self.seed.unwrap_or(data::defaults::SEED),
            settings: self.sampling().settings(max_tokens, logprobs)?,
            n,
            best_of: n,
            stream: self.stream.unwrap_or(false),
            include_usage: include_usage(&self.stream_options),
        })
    }
}

impl SamplingFields {
    /// The settings of one sequence, each field checked.
    fn settings(&self, max_tokens: usize, logprobs: Option<usize>) -> Result<Settings, ApiError> {
        let temperature = self.temperature.unwrap_or(1.0);
        if !(temperature.is_finite() && temperature >= 0.0) {
            return Err(ApiError::invalid(
                "temperature",
                format!("temperature must be 0 (greedy) or above, got {temperature}"),
            ));
        }
        let sampling = Sampling {
            temperature: if temperature == 0.0 { 1.0 } else { temperature },
            top_k: self.top_k,
            top_p: self.top_p,
            repetition_penalty: self.repetition_penalty.unwrap_or(1.0),
            greedy: temperature == 0.0,
        };
        sampling
            .check()
            .map_err(|e| ApiError::invalid(e.setting(), e.to_string()))?;
        let penalty = |name: &str, value: Option<f32>| match value.unwrap_or(0.0) {
            p if (-2.0..=2.0).contains(&p) => Ok(p),
            p => Err(ApiError::invalid(
                name,
                format!("{name} must be in [-2, 2], got {p}"),
            )),
        };
        let mut logit_bias = Vec::new();
        for (key, &bias) in self.logit_bias.iter().flatten() {
            let id = key.parse::<u32>().map_err(|_| {
                ApiError::invalid(
                    "logit_bias",
                    format!("logit_bias key `{key}` is not a token id"),
                )
            })?;
            if !(-100.0..=100.0).contains(&bias) {
                return Err(ApiError::invalid(
                    "logit_bias",
                    format!("logit_bias for {id} must be in [-100, 100], got {bias}"),
                ));
            }
            logit_bias.push((id, bias));
        }
        let stops = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(list)) => list.clone(),
        };
        Ok(Settings {
            max_tokens,
            sampling,
            stops,
            adjustments: Adjustments {
                frequency_penalty: penalty("frequency_penalty", self.frequency_penalty)?,
                presence_penalty: penalty("presence_penalty", self.presence_penalty)?,
                logit_bias,
            },
            logprobs,
        })
    }
}

impl NextRequest {
    /// The temperatures and the table length, each checked.
    pub fn settings(&self, limits: &Limits) -> Result<(Vec<f64>, usize), ApiError> {
        check_prompt(&self.prompt, limits)?;
        let temperatures = self.temperatures.clone().unwrap_or_else(|| vec![1.0, 0.2]);
        if temperatures.is_empty() {
            return Err(ApiError::invalid(
                "temperatures",
                "temperatures needs at least one value",
            ));
        }
        for &t in &temperatures {
            model::generation::sampling::check_temperature(t as f32)
                .map_err(|e| ApiError::invalid("temperatures", e.to_string()))?;
        }
        let top = self.top.unwrap_or(5);
        if top == 0 {
            return Err(ApiError::invalid("top", "top must be at least 1"));
        }
        Ok((temperatures, top))
    }
}

/// `n` or `best_of`: 1 when absent, else at least 1.
fn count(name: &str, value: Option<usize>) -> Result<usize, ApiError> {
    match value.unwrap_or(1) {
        0 => Err(ApiError::invalid(
            name,
            format!("{name} must be at least 1"),
        )),
        n => Ok(n),
    }
}

/// A `400` when a request asks for more choices than [`MAX_CHOICES`].
fn check_choices(total: usize) -> Result<(), ApiError> {
    if total > MAX_CHOICES {
        return Err(ApiError::invalid(
            "n",
            format!("the request asks for {total} choices; this server's limit is {MAX_CHOICES}"),
        ));
    }
    Ok(())
}

/// The token limit the field `name` asks for, within the server's cap.
fn max_tokens(name: &str, value: Option<usize>, limits: &Limits) -> Result<usize, ApiError> {
    let default = data::defaults::MAX_TOKENS.min(limits.max_tokens);
    let max_tokens = value.unwrap_or(default);
    if max_tokens > limits.max_tokens {
        return Err(ApiError::invalid(
            name,
            format!(
                "{name} is {max_tokens}, above this server's cap of {}",
                limits.max_tokens
            ),
        ));
    }
    Ok(max_tokens)
}

fn include_usage(options: &Option<StreamOptions>) -> bool {
    options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false)
}

/// A `400` for an empty prompt or one above the server's length limit.
fn check_prompt(prompt: &str, limits: &Limits) -> Result<(), ApiError> {
    if prompt.trim().is_empty() {
        return Err(ApiError::invalid("prompt", "prompt is empty"));
    }
    if prompt.len() > limits.prompt_bytes {
        return Err(ApiError::invalid(
            "prompt",
            format!(
                "prompt is {} bytes, above this server's limit of {}",
                prompt.len(),
                limits.prompt_bytes
            ),
        ));
    }
    Ok(())
}
