//! `POST /v1/completions`: OpenAI's completions API. A string or a list of prompts, `n`
//! choices each (the `n` best of `best_of` by mean log-probability), `echo`, `logprobs`,
//! penalties and logit biases; whole or streamed as server-sent events.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use model::generation::{Completion, TokenLogprobs};

use super::{Chunks, Heading, StreamShape, read_request, start, stream, whole};
use crate::engine::collect;
use crate::error::ApiError;
use crate::requests::CompletionRequest;
use crate::responses::{TextChoice, TextLogprobs, Usage};
use crate::{ServedModel, Shared, check_model, finish_reason, generator, prompt_ids};

/// `POST /v1/completions`.
pub(crate) async fn completions(
    State(state): State<Shared>,
    body: Body,
) -> Result<Response, ApiError> {
    let limits = &state.limits;
    let request: CompletionRequest = read_request(&state, body).await?;
    check_model(&state, request.model.as_deref())?;
    let prompts = request.prompts(limits)?;
    let generation = request.generation(limits, prompts.len())?;
    let ids = prompts
        .iter()
        .map(|p| prompt_ids(&state.served, p))
        .collect::<Result<Vec<_>, _>>()?;
    let started = start(&state, &ids, &generation)?;
    let heading = Heading::new("cmpl", state.served.clone());
    if generation.stream {
        let chunks = TextChunks {
            started: vec![false; started.count],
            offsets: vec![0; started.count],
            heading,
            logprobs: request.logprobs.is_some(),
        };
        let shape = StreamShape {
            path: "/v1/completions",
            include_usage: generation.include_usage,
            user: request.user.clone(),
        };
        return Ok(stream(state.clone(), started, shape, chunks));
    }
    let prompt_tokens = started.prompt_tokens;
    let done = collect(started.events, started.count).await?;
    let tokens = done.iter().map(|c| c.ids.len()).sum();
    // The prompts' own log-probabilities, for `echo` with `logprobs`.
    let echoed = match (request.echo.unwrap_or(false), request.logprobs) {
        (true, Some(top)) => {
            let (served, ids) = (state.served.clone(), ids.clone());
            tokio::task::spawn_blocking(move || {
                let generator = generator(&served, 0);
                ids.iter()
                    .map(|p| generator.prompt_logprobs(p, top))
                    .collect()
            })
            .await
            .map_err(|e| ApiError::status(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        }
        _ => vec![Vec::new(); ids.len()],
    };
    let mut choices = Vec::with_capacity(prompts.len() * generation.n);
    for (p, candidates) in done.chunks(generation.best_of).enumerate() {
        for (rank, completion) in best(candidates, generation.n).into_iter().enumerate() {
            let echo = request.echo.unwrap_or(false).then(|| Echo {
                text: &prompts[p],
                ids: &ids[p],
                logprobs: &echoed[p],
            });
            let logprobs = request.logprobs.is_some();
            choices.push(choice(
                &state.served,
                completion,
                echo,
                logprobs,
                p * generation.n + rank,
            ));
        }
    }
    let usage = Some(Usage::new(prompt_tokens, tokens));
    let answer = heading.envelope("text_completion", choices, usage);
    Ok(whole(&answer, tokens, request.user))
}

/// The `n` of `candidates` with the highest mean log-probability per token, in their order
/// when there is no ranking to do.
fn best(candidates: &[Completion], n: usize) -> Vec<&Completion> {
    let mut ranked: Vec<&Completion> = candidates.iter().collect();
    if candidates.len() > n {
        let mean = |c: &Completion| match c.logprobs.len() {
            0 => f32::NEG_INFINITY,
            k => c.logprobs.iter().map(|e| e.logprob).sum::<f32>() / k as f32,
        };
        ranked.sort_by(|a, b| mean(b).total_cmp(&mean(a)));
        ranked.truncate(n);
    }
    ranked
}

/// A prompt shown in front of its completion.
struct Echo<'a> {
    text: &'a str,
    ids: &'a [u32],
    /// Its tokens' log-probabilities after the first (empty unless `logprobs` is asked for).
    logprobs: &'a [TokenLogprobs],
}

/// One whole choice.
fn choice(
    served: &ServedModel,
    completion: &Completion,
    echo: Option<Echo<'_>>,
    logprobs: bool,
    index: usize,
) -> TextChoice {
    let separator = served.meta.tokenizer.separator();
    let generated = with_separator(separator, &completion.text);
    let mut offset = 0;
    let mut table = TextLogprobs::default();
    let text = match echo {
        Some(echo) => {
            if logprobs && let Some(&first) = echo.ids.first() {
                let name = crate::token_name(&served.vocab, first).to_owned();
                table.first_token(name, &mut offset);
                table.extend(served, (separator, separator), echo.logprobs, &mut offset);
            }
            format!("{}{generated}", echo.text)
        }
        None => generated,
    };
    table.extend(
        served,
        (separator, separator),
        &completion.logprobs,
        &mut offset,
    );
    TextChoice {
        text,
        index,
        logprobs: logprobs.then_some(table),
        finish_reason: Some(finish_reason(completion.finish)),
    }
}

/// `text` after the separator that joins it to the prompt (a space for words), if non-empty.
fn with_separator(separator: &str, text: &str) -> String {
    match text.is_empty() {
        true => String::new(),
        false => format!("{separator}{text}"),
    }
}

/// A streamed completion's chunks.
struct TextChunks {
    heading: Heading,
    logprobs: bool,
    /// Whether each choice has sent text yet (its first piece carries the separator).
    started: Vec<bool>,
    /// Where each choice's next token begins in its text.
    offsets: Vec<usize>,
}

impl TextChunks {
    fn chunk(&self, choice: TextChoice) -> String {
        self.heading.chunk("text_completion", vec![choice], None)
    }
}

impl Chunks for TextChunks {
    fn opening(&mut self) -> Vec<String> {
        Vec::new()
    }

    fn piece(&mut self, index: usize, text: &str, logprobs: &[TokenLogprobs]) -> String {
        let separator = self.heading.served().meta.tokenizer.separator();
        let text = match std::mem::replace(&mut self.started[index], true) {
            false => with_separator(separator, text),
            true => text.to_owned(),
        };
        let table = self.logprobs.then(|| {
            let mut table = TextLogprobs::default();
            let pair = (separator, separator);
            table.extend(
                self.heading.served(),
                pair,
                logprobs,
                &mut self.offsets[index],
            );
            table
        });
        self.chunk(TextChoice {
            text,
            index,
            logprobs: table,
            finish_reason: None,
        })
    }

    fn end(&mut self, index: usize, completion: &Completion) -> String {
        self.chunk(TextChoice {
            text: String::new(),
            index,
            logprobs: None,
            finish_reason: Some(finish_reason(completion.finish)),
        })
    }

    fn usage(&mut self, usage: Usage) -> String {
        self.heading
            .chunk::<TextChoice>("text_completion", Vec::new(), Some(usage))
    }
}
