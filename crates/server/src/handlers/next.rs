//! `POST /v1/next`: the chapter's next-word tables for a prompt, at several temperatures.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use model::generation::sampling::{probabilities, top};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::requests::{NextRequest, parse, read_body};
use crate::{Shared, generator, take_slot, token_name};

/// `POST /v1/next`: the chapter's tables of the most likely next tokens.
pub(crate) async fn next_tokens(
    State(state): State<Shared>,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, state.limits.body_bytes, state.limits.request_timeout).await?;
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
