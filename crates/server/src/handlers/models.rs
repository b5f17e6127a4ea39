//! `GET /v1/models`: the served model, as OpenAI lists models.

use axum::Json;
use axum::extract::State;
use model::burn::module::Module;
use serde_json::{Value, json};

use crate::Shared;

/// `GET /v1/models`: OpenAI's list of one model, with its sizes.
pub(crate) async fn models(State(state): State<Shared>) -> Json<Value> {
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
