//! `GET /v1/run`: the training record of the served run, for the playground's curves.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::Shared;
use crate::error::ApiError;

/// `GET /v1/run`: the run's metrics, samples and prompts.
pub(crate) async fn run_record(State(state): State<Shared>) -> Result<Json<Value>, ApiError> {
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
