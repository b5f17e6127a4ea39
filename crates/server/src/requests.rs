//! The request bodies the server accepts, parsed strictly (unknown fields and wrong types are
//! refused, naming the field) and checked against the server's limits.

use axum::body::{Body, Bytes};
use model::Sampling;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio_stream::StreamExt;

use crate::Limits;
use crate::error::ApiError;

/// OpenAI's legacy completions request, plus `top_k` and `repetition_penalty`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompletionRequest {
    /// Accepted for compatibility; the server serves one model.
    pub model: Option<String>,
    /// The text to continue.
    pub prompt: String,
    /// Most new tokens (default 100, or the server's cap when that is lower).
    pub max_tokens: Option<usize>,
    /// Softmax temperature; 0 means greedy, as OpenAI documents.
    pub temperature: Option<f32>,
    /// Nucleus sampling, in (0, 1].
    pub top_p: Option<f32>,
    /// Only the K most likely tokens.
    pub top_k: Option<usize>,
    /// CTRL's repetition penalty (1 is off).
    pub repetition_penalty: Option<f32>,
    /// Seeds sampling: the same seed gives the same text, streamed or not.
    pub seed: Option<u64>,
    /// Text that ends the completion where it begins: a string or a list.
    pub stop: Option<Stop>,
    /// Answer with server-sent events, one per piece of text.
    #[serde(default)]
    pub stream: bool,
    /// Each generated token's log-probability and this many most likely alternatives.
    pub logprobs: Option<usize>,
}

/// Most alternatives `logprobs` may ask for per token.
pub const MAX_LOGPROBS: usize = 20;

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

/// Reads a request body of at most `limit` bytes; a `400` when it is longer. A longer body is
/// still read to its end (up to 16 times the limit), so the client hears the `400` instead of
/// a connection reset while it is still sending.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
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
}

/// `body` as JSON of type `T`, or a `400` naming the field at fault.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut json = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.inner().to_string();
        let message = format!("invalid request: {inner}");
        // A missing field is reported at the top level; its name is in the message.
        let missing = inner
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        match (path.as_str(), missing) {
            (_, Some(field)) => ApiError::invalid(field, message),
            ("." | "?" | "", None) => ApiError::bad_request(message),
            (field, None) => ApiError::invalid(field, message),
        }
    })
}

impl CompletionRequest {
    /// The sampling settings, the token limit and the stop strings, each checked.
    pub fn settings(&self, limits: &Limits) -> Result<(Sampling, usize, Vec<String>), ApiError> {
        check_prompt(&self.prompt, limits)?;
        let default = data::defaults::MAX_TOKENS.min(limits.max_tokens);
        let max_tokens = self.max_tokens.unwrap_or(default);
        if max_tokens > limits.max_tokens {
            return Err(ApiError::invalid(
                "max_tokens",
                format!(
                    "max_tokens is {max_tokens}, above this server's cap of {}",
                    limits.max_tokens
                ),
            ));
        }
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
        if self.logprobs.is_some_and(|n| n > MAX_LOGPROBS) {
            return Err(ApiError::invalid(
                "logprobs",
                format!("logprobs is at most {MAX_LOGPROBS}"),
            ));
        }
        let stops = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(list)) => list.clone(),
        };
        Ok((sampling, max_tokens, stops))
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
