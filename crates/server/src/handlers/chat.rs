//! `POST /v1/chat/completions`: OpenAI's chat completions API for a model that continues
//! text. The model sees the messages' contents joined by newlines (the roles are not shown:
//! it was trained on plain text) and the answer is its continuation; whole or streamed as
//! `chat.completion.chunk` events.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use model::generation::{Completion, TokenLogprobs};

use super::{Chunks, Heading, StreamShape, read_request, start, stream, whole};
use crate::engine::collect;
use crate::error::ApiError;
use crate::requests::ChatRequest;
use crate::responses::{ChatChoice, ChatLogprobs, ChatMessage, Delta, Usage};
use crate::{ServedModel, Shared, check_model, finish_reason, prompt_ids};

/// `POST /v1/chat/completions`.
pub(crate) async fn chat_completions(
    State(state): State<Shared>,
    body: Body,
) -> Result<Response, ApiError> {
    let limits = &state.limits;
    let request: ChatRequest = read_request(&state, body).await?;
    check_model(&state, request.model.as_deref())?;
    let prompt = request.prompt(limits)?;
    let generation = request.generation(limits)?;
    let ids =
        prompt_ids(&state.served, &prompt).map_err(|e| ApiError::invalid("messages", e.message))?;
    let started = start(&state, &[ids], &generation)?;
    let heading = Heading::new("chatcmpl", state.served.clone());
    let logprobs = request.logprobs.unwrap_or(false);
    if generation.stream {
        let chunks = ChatChunks {
            started: vec![false; started.count],
            heading,
            logprobs,
        };
        let shape = StreamShape {
            path: "/v1/chat/completions",
            include_usage: generation.include_usage,
            user: request.user.clone(),
        };
        return Ok(stream(state.clone(), started, shape, chunks));
    }
    let prompt_tokens = started.prompt_tokens;
    let done = collect(started.events, started.count).await?;
    let tokens = done.iter().map(|c| c.ids.len()).sum();
    let choices = done
        .iter()
        .enumerate()
        .map(|(index, completion)| ChatChoice {
            index,
            message: Some(ChatMessage {
                role: "assistant",
                content: completion.text.clone(),
            }),
            delta: None,
            logprobs: logprobs.then(|| chat_logprobs(&state.served, &completion.logprobs, true)),
            finish_reason: Some(finish_reason(completion.finish)),
        })
        .collect();
    let usage = Some(Usage::new(prompt_tokens, tokens));
    let answer = heading.envelope("chat.completion", choices, usage);
    Ok(whole(&answer, tokens, request.user))
}

/// `entries` in the chat shape; `first` when they begin the answer (no separator before).
fn chat_logprobs(served: &ServedModel, entries: &[TokenLogprobs], first: bool) -> ChatLogprobs {
    let separator = served.meta.tokenizer.separator();
    let lead = if first { "" } else { separator };
    ChatLogprobs::of(served, (lead, separator), entries)
}

/// A streamed chat answer's chunks.
struct ChatChunks {
    heading: Heading,
    logprobs: bool,
    /// Whether each choice has sent text yet.
    started: Vec<bool>,
}

impl ChatChunks {
    fn chunk(&self, choices: Vec<ChatChoice>, usage: Option<Usage>) -> String {
        self.heading.chunk("chat.completion.chunk", choices, usage)
    }

    fn delta(index: usize, delta: Delta, logprobs: Option<ChatLogprobs>) -> ChatChoice {
        ChatChoice {
            index,
            message: None,
            delta: Some(delta),
            logprobs,
            finish_reason: None,
        }
    }
}

impl Chunks for ChatChunks {
    fn opening(&mut self) -> Vec<String> {
        (0..self.started.len())
            .map(|index| {
                let delta = Delta {
                    role: Some("assistant"),
                    content: Some(String::new()),
                };
                self.chunk(vec![Self::delta(index, delta, None)], None)
            })
            .collect()
    }

    fn piece(&mut self, index: usize, text: &str, logprobs: &[TokenLogprobs]) -> String {
        let first = !std::mem::replace(&mut self.started[index], true);
        let logprobs = self
            .logprobs
            .then(|| chat_logprobs(self.heading.served(), logprobs, first));
        let delta = Delta {
            role: None,
            content: Some(text.to_owned()),
        };
        self.chunk(vec![Self::delta(index, delta, logprobs)], None)
    }

    fn end(&mut self, index: usize, completion: &Completion) -> String {
        let mut choice = Self::delta(index, Delta::default(), None);
        choice.finish_reason = Some(finish_reason(completion.finish));
        self.chunk(vec![choice], None)
    }

    fn usage(&mut self, usage: Usage) -> String {
        self.chunk(Vec::new(), Some(usage))
    }
}
