//! The HTTP server against a real port: a small model trained on recipes, served on an
//! ephemeral loopback port, asked the way an OpenAI client asks.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::OnceLock;

use clap::Parser;
use e2e::train_small;
use serde_json::{Value, json};

/// Starts a server for the checkpoint of `run` on 127.0.0.1 with an ephemeral port; returns
/// its address.
pub(crate) fn start(run: &Path, extra: &[&str]) -> SocketAddr {
    let args = ["inference", "serve", "--checkpoint", run.to_str().unwrap()];
    let args = args.iter().chain(&["--addr", "127.0.0.1:0"]).chain(extra);
    let cli = inference::Cli::try_parse_from(args).unwrap();
    let inference::Command::Serve(serve) = cli.command else {
        unreachable!()
    };
    inference::serve_in_background(&serve).unwrap()
}

/// One server over one small trained model, shared by the tests here.
fn server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let (run, _) = train_small("serving", |c| c.train.epochs = 1);
        start(&run, &["--max-concurrent", "16", "--max-tokens-cap", "64"])
    })
}

/// POSTs `body` (raw) to `path`; the status and the JSON answer.
fn post(addr: SocketAddr, path: &str, body: &str) -> (u16, Value) {
    let url = format!("http://{addr}{path}");
    let answer = ureq::post(&url)
        .set("Content-Type", "application/json")
        .send_string(body);
    match answer {
        Ok(response) => (response.status(), response.into_json().unwrap()),
        Err(ureq::Error::Status(status, response)) => (status, response.into_json().unwrap()),
        Err(e) => panic!("{url}: {e}"),
    }
}

fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let url = format!("http://{addr}{path}");
    match ureq::get(&url).call() {
        Ok(response) => (response.status(), response.into_json().unwrap()),
        Err(ureq::Error::Status(status, response)) => (status, response.into_json().unwrap()),
        Err(e) => panic!("{url}: {e}"),
    }
}

#[test]
fn health_models_and_the_runs_record() {
    let addr = server();
    assert_eq!(get(addr, "/health"), (200, json!({"status": "ok"})));
    let (status, models) = get(addr, "/v1/models");
    assert_eq!(status, 200);
    let model = &models["data"][0];
    assert_eq!(
        (model["object"].as_str(), model["id"].as_str()),
        (Some("model"), Some("run"))
    );
    assert_eq!(model["vocab_size"], 400);
    assert!(model["parameters"].as_u64().unwrap() > 10_000, "{model}");
    let (status, record) = get(addr, "/v1/run");
    assert_eq!(status, 200);
    assert_eq!(record["metrics"][0]["epoch"], 1.0);
    assert!(record["metrics"][0]["loss"].as_f64().unwrap() < 6.0);
    assert!(
        record["samples"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("recipe for")
    );
    assert_eq!(record["prompts"][0], "recipe for");
    let page = ureq::get(&format!("http://{addr}/")).call().unwrap();
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        page.into_string()
            .unwrap()
            .contains(r#"<button id="generate">"#)
    );
    let (status, missing) = get(addr, "/v2/nothing");
    assert_eq!(status, 404);
    assert_eq!(missing["error"]["type"], "not_found_error");
}

/// The same seed gives the same text and log-probabilities in one answer and as server-sent
/// events.
#[test]
fn completions_streamed_and_whole_agree_for_a_seed() {
    let addr = server();
    let request = json!({"prompt": "recipe for", "max_tokens": 30, "temperature": 0.8, "seed": 7,
        "logprobs": 3});
    let (status, whole) = post(addr, "/v1/completions", &request.to_string());
    assert_eq!(status, 200, "{whole}");
    let choice = &whole["choices"][0];
    let text = choice["text"].as_str().unwrap();
    assert!(matches!(
        choice["finish_reason"].as_str(),
        Some("stop" | "length")
    ));
    let usage = &whole["usage"];
    assert_eq!(usage["prompt_tokens"], 2);
    let completion_tokens = usage["completion_tokens"].as_u64().unwrap();
    assert_eq!(choice["finish_reason"] == "length", completion_tokens == 30);
    assert_eq!(text.split_whitespace().count() as u64, completion_tokens);
    let logprobs = &choice["logprobs"];
    let tokens: Vec<&str> = logprobs["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tokens.len() as u64, completion_tokens);
    assert!(text.starts_with(&tokens.concat()), "{tokens:?} {text}");
    assert_eq!(logprobs["text_offset"][1], tokens[0].len());
    for (chosen, top) in logprobs["token_logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .zip(logprobs["top_logprobs"].as_array().unwrap())
    {
        let top = top.as_object().unwrap();
        assert_eq!(top.len(), 3, "{top:?}");
        let best = top
            .values()
            .map(|l| l.as_f64().unwrap())
            .fold(f64::MIN, f64::max);
        assert!(
            chosen.as_f64().unwrap() <= best + 1e-6 && best < 0.0,
            "{top:?}"
        );
    }

    let mut stream_request = request.clone();
    stream_request["stream"] = json!(true);
    let response = ureq::post(&format!("http://{addr}/v1/completions"))
        .send_string(&stream_request.to_string())
        .unwrap();
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    let events: Vec<String> = BufReader::new(response.into_reader())
        .lines()
        .map(Result::unwrap)
        .filter_map(|line| line.strip_prefix("data: ").map(str::to_owned))
        .collect();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let streamed: String = chunks
        .iter()
        .map(|c| c["choices"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, text);
    assert!(chunks.len() > 2, "one event per piece: {events:?}");
    let last = &chunks[chunks.len() - 1]["choices"][0];
    assert_eq!(last["finish_reason"], choice["finish_reason"]);
    let streamed_logprobs: Vec<Value> = chunks
        .iter()
        .filter_map(|c| {
            c["choices"][0]["logprobs"]["token_logprobs"]
                .as_array()
                .cloned()
        })
        .flatten()
        .collect();
    assert_eq!(Value::from(streamed_logprobs), logprobs["token_logprobs"]);

    // Temperature 0 is greedy: the seed no longer matters.
    let greedy = |seed: u64| {
        let request =
            json!({"prompt": "recipe for", "max_tokens": 12, "temperature": 0, "seed": seed});
        post(addr, "/v1/completions", &request.to_string()).1["choices"][0]["text"].clone()
    };
    assert_eq!(greedy(1), greedy(2));
    // A stop string cuts the text where it begins.
    let request =
        json!({"prompt": "recipe for", "max_tokens": 12, "temperature": 0, "stop": ["|"]});
    let (_, cut) = post(addr, "/v1/completions", &request.to_string());
    let cut_text = cut["choices"][0]["text"].as_str().unwrap();
    assert!(!cut_text.contains('|'), "{cut_text}");
    let full = greedy(1);
    assert!(
        full.as_str().unwrap().starts_with(cut_text),
        "{cut_text} / {full}"
    );
}

#[test]
fn next_word_tables_per_temperature() {
    let addr = server();
    let request = json!({"prompt": "recipe for roast", "temperatures": [1.0, 0.2], "top": 4});
    let (status, tables) = post(addr, "/v1/next", &request.to_string());
    assert_eq!(status, 200, "{tables}");
    let tables = tables["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 2);
    assert_eq!(tables[1]["temperature"], 0.2);
    let probabilities = |t: &Value| -> Vec<f64> {
        t["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["probability"].as_f64().unwrap())
            .collect()
    };
    let (warm, cold) = (probabilities(&tables[0]), probabilities(&tables[1]));
    assert_eq!(warm.len(), 4);
    assert!(warm.windows(2).all(|w| w[0] >= w[1]), "{warm:?}");
    // A lower temperature sharpens: the favourite gets more of the mass.
    assert!(cold[0] > warm[0], "{warm:?} {cold:?}");
}

/// Every bad request is a 400 in OpenAI's error shape, naming the field at fault.
#[test]
fn bad_requests_are_400s_that_name_the_field() {
    let addr = server();
    let cases = [
        (r#"{"prompt": "recipe for""#, None),
        (r#"{"prompt": "recipe for", "tempo": 1}"#, Some("tempo")),
        (
            r#"{"prompt": "recipe for", "temperature": "hot"}"#,
            Some("temperature"),
        ),
        (
            r#"{"prompt": "recipe for", "temperature": -1}"#,
            Some("temperature"),
        ),
        (r#"{"prompt": "recipe for", "top_p": 0}"#, Some("top_p")),
        (r#"{"prompt": "recipe for", "top_p": 1.5}"#, Some("top_p")),
        (r#"{"prompt": "recipe for", "top_k": 0}"#, Some("top_k")),
        (
            r#"{"prompt": "recipe for", "max_tokens": 65}"#,
            Some("max_tokens"),
        ),
        (
            r#"{"prompt": "recipe for", "logprobs": 21}"#,
            Some("logprobs"),
        ),
        (r#"{"prompt": "   "}"#, Some("prompt")),
        (r#"{"max_tokens": 5}"#, Some("prompt")),
    ];
    for (body, param) in cases {
        let (status, answer) = post(addr, "/v1/completions", body);
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["type"], "invalid_request_error", "{body}");
        assert_eq!(answer["error"]["param"].as_str(), param, "{body}: {answer}");
    }
    // A prompt over 16 KiB; a body over 64 KiB, answered after it has been read.
    let long = json!({"prompt": "recipe ".repeat(3_000)}).to_string();
    let (status, answer) = post(addr, "/v1/completions", &long);
    assert_eq!(
        (status, answer["error"]["param"].as_str()),
        (400, Some("prompt"))
    );
    let huge = json!({"prompt": "recipe ".repeat(20_000)}).to_string();
    let (status, answer) = post(addr, "/v1/completions", &huge);
    assert_eq!(status, 400, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("limit of 65536 bytes"), "{message}");
    let (status, answer) = post(addr, "/v1/next", r#"{"prompt": "x", "temperatures": []}"#);
    assert_eq!(
        (status, answer["error"]["param"].as_str()),
        (400, Some("temperatures"))
    );
    // The server is still there.
    assert_eq!(get(addr, "/health").0, 200);
}

#[test]
fn sixteen_concurrent_requests_are_all_answered() {
    let addr = server();
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|seed| {
                scope.spawn(move || {
                    let request = json!({"prompt": "recipe for", "max_tokens": 20, "seed": seed});
                    post(addr, "/v1/completions", &request.to_string())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (status, answer) in &answers {
        assert_eq!(*status, 200, "{answer}");
    }
}

/// With one generation allowed at a time, requests that arrive while one runs get 429.
#[test]
fn generations_beyond_the_limit_get_429() {
    let (run, _) = train_small("serving-limit", |c| c.train.epochs = 1);
    let addr = start(&run, &["--max-concurrent", "1", "--max-tokens-cap", "2000"]);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|seed| {
                scope.spawn(move || {
                    let request = json!({"prompt": "recipe for", "max_tokens": 2000, "seed": seed});
                    post(addr, "/v1/completions", &request.to_string()).0
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        statuses.contains(&200) && statuses.contains(&429),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| matches!(s, 200 | 429)),
        "{statuses:?}"
    );
}
