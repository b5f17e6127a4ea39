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
    let chunks = stream_events(addr, "/v1/completions", &stream_request);
    let streamed: String = chunks
        .iter()
        .map(|c| c["choices"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, text);
    assert!(chunks.len() > 2, "one event per piece: {chunks:?}");
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

/// With one generation decoded at a time and two waiting, requests beyond those get 429 and
/// the ones admitted are all answered.
#[test]
fn generations_beyond_the_batch_and_the_queue_get_429() {
    let (run, _) = train_small("serving-limit", |c| c.train.epochs = 1);
    let limits = [
        "--max-concurrent",
        "1",
        "--max-queue",
        "2",
        "--max-tokens-cap",
        "2000",
    ];
    let addr = start(&run, &limits);
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
    let answered = statuses.iter().filter(|&&s| s == 200).count();
    assert!(
        (1..=3).contains(&answered) && statuses.contains(&429),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| matches!(s, 200 | 429)),
        "{statuses:?}"
    );
}

/// The events of a streamed answer to `body` at `path`, parsed, up to `[DONE]`.
fn stream_events(addr: SocketAddr, path: &str, body: &Value) -> Vec<Value> {
    let response = ureq::post(&format!("http://{addr}{path}"))
        .send_string(&body.to_string())
        .unwrap();
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    let events: Vec<String> = BufReader::new(response.into_reader())
        .lines()
        .map(Result::unwrap)
        .filter_map(|line| line.strip_prefix("data: ").map(str::to_owned))
        .collect();
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect()
}

/// The request bodies OpenAI's Python and Node packages and LangChain's two wrappers send
/// (recorded by `tests/clients/capture.py`), replayed as they are: each answered in the shape
/// its client reads, one choice per prompt per `n`.
#[test]
fn the_official_clients_request_bodies_are_answered() {
    let addr = server();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/captured");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let file = entry.unwrap().path();
        let captured: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let (path, body) = (captured["path"].as_str().unwrap(), &captured["body"]);
        let chat = path == "/v1/chat/completions";
        let prompts = body["prompt"].as_array().map_or(1, Vec::len);
        let choices = prompts * body["n"].as_u64().unwrap_or(1) as usize;
        if body["stream"] == true {
            let chunks = stream_events(addr, path, body);
            assert!(
                chunks
                    .iter()
                    .all(|c| c["object"] == "chat.completion.chunk"),
                "{file:?}"
            );
            let text: String = chunks
                .iter()
                .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
                .collect();
            assert!(!text.is_empty(), "{file:?}: {chunks:?}");
            assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        } else {
            let (status, answer) = post(addr, path, &body.to_string());
            assert_eq!(status, 200, "{file:?}: {answer}");
            let object = if chat {
                "chat.completion"
            } else {
                "text_completion"
            };
            assert_eq!(answer["object"], object, "{file:?}");
            let got = answer["choices"].as_array().unwrap();
            assert_eq!(got.len(), choices, "{file:?}: {answer}");
            for (index, choice) in got.iter().enumerate() {
                assert_eq!(choice["index"], index, "{file:?}");
                let text = match chat {
                    true => &choice["message"]["content"],
                    false => &choice["text"],
                };
                assert!(
                    text.as_str().is_some_and(|t| !t.is_empty()),
                    "{file:?}: {choice}"
                );
            }
        }
        replayed += 1;
    }
    assert!(
        replayed >= 10,
        "{replayed} captured requests in {}",
        dir.display()
    );
}

/// `n` over a list of prompts, `echo`, `best_of`, penalties and biases, a model that is not
/// served, `suffix` and token-id prompts.
#[test]
fn completions_take_openais_documented_fields() {
    let addr = server();
    let request = json!({"prompt": ["recipe for", "recipe for roast"], "n": 2, "max_tokens": 6,
        "seed": 3, "echo": true, "user": "tester", "frequency_penalty": 0.5,
        "presence_penalty": 0.5, "logit_bias": {"5": -100}, "stop": null, "logprobs": null});
    let (status, answer) = post(addr, "/v1/completions", &request.to_string());
    assert_eq!(status, 200, "{answer}");
    let texts: Vec<&str> = answer["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts.len(), 4);
    assert!(texts[0].starts_with("recipe for ") && texts[2].starts_with("recipe for roast "));
    assert_ne!(texts[0], texts[1], "two choices of one prompt draw apart");
    assert_eq!(answer["usage"]["prompt_tokens"], 5);

    let best = json!({"prompt": "recipe for", "n": 1, "best_of": 3, "max_tokens": 6});
    let (status, answer) = post(addr, "/v1/completions", &best.to_string());
    assert_eq!(
        (status, answer["choices"].as_array().unwrap().len()),
        (200, 1)
    );

    let (status, answer) = post(
        addr,
        "/v1/completions",
        r#"{"prompt": "x", "model": "gpt-4"}"#,
    );
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"]["code"], "model_not_found");
    let cases = [
        (r#"{"prompt": "recipe for", "suffix": "end"}"#, "suffix"),
        (r#"{"prompt": [1, 2, 3]}"#, "prompt"),
        (r#"{"prompt": []}"#, "prompt"),
        (r#"{"prompt": "recipe for", "n": 0}"#, "n"),
        (
            r#"{"prompt": "recipe for", "n": 2, "best_of": 1}"#,
            "best_of",
        ),
        (
            r#"{"prompt": "recipe for", "best_of": 2, "stream": true}"#,
            "best_of",
        ),
        (
            r#"{"prompt": "recipe for", "presence_penalty": 3}"#,
            "presence_penalty",
        ),
        (
            r#"{"prompt": "recipe for", "logit_bias": {"a": 1}}"#,
            "logit_bias",
        ),
        (
            r#"{"prompt": "recipe for", "logit_bias": {"5": 101}}"#,
            "logit_bias",
        ),
        (r#"{"prompt": "recipe for", "functions": []}"#, "functions"),
    ];
    for (body, param) in cases {
        let (status, answer) = post(addr, "/v1/completions", body);
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(
            answer["error"]["param"].as_str(),
            Some(param),
            "{body}: {answer}"
        );
    }
}

/// Chat completions, whole and streamed, agree for a seed; the streamed answer ends with its
/// usage when asked for.
#[test]
fn chat_completions_whole_and_streamed_agree() {
    let addr = server();
    let request = json!({"messages": [{"role": "system", "content": "recipes"},
        {"role": "user", "content": [{"type": "text", "text": "recipe for"}]}],
        "max_completion_tokens": 15, "seed": 9, "logprobs": true, "top_logprobs": 2});
    let (status, whole) = post(addr, "/v1/chat/completions", &request.to_string());
    assert_eq!(status, 200, "{whole}");
    let content = whole["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(whole["choices"][0]["message"]["role"], "assistant");
    let entries = whole["choices"][0]["logprobs"]["content"]
        .as_array()
        .unwrap();
    assert_eq!(
        entries.len() as u64,
        whole["usage"]["completion_tokens"].as_u64().unwrap()
    );
    assert_eq!(entries[0]["top_logprobs"].as_array().unwrap().len(), 2);

    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let chunks = stream_events(addr, "/v1/chat/completions", &streamed);
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, content);
    let last = chunks.last().unwrap();
    assert_eq!(
        (last["choices"].as_array().unwrap().len(), &last["usage"]),
        (0, &whole["usage"])
    );
    let (status, _) = post(addr, "/v1/chat/completions", r#"{"messages": []}"#);
    assert_eq!(status, 400);
}

/// A request's text for a seed is the same alone and decoded in a batch with fifteen others.
#[test]
fn the_same_seed_gives_the_same_text_alone_or_batched() {
    let addr = server();
    let request = |seed: u64| json!({"prompt": "recipe for", "max_tokens": 40, "temperature": 0.9, "seed": seed});
    let text = |seed| {
        post(addr, "/v1/completions", &request(seed).to_string()).1["choices"][0]["text"].clone()
    };
    let alone = text(11);
    let together: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16u64)
            .map(|k| scope.spawn(move || text(if k == 7 { 11 } else { 100 + k })))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(together[7], alone);
}

/// Connections that send half a request are closed once the request timeout passes, and while
/// they are held `/health` and a completion still answer.
#[test]
fn half_sent_requests_time_out_while_others_are_answered() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};
    let (run, _) = train_small("serving-slow", |c| c.train.epochs = 1);
    let addr = start(
        &run,
        &["--request-timeout", "1", "--max-connections", "100"],
    );
    let held: Vec<TcpStream> =
        (0..60)
            .map(|k| {
                let mut stream = TcpStream::connect(addr).unwrap();
                let half = match k % 2 {
                // Headers that never end.
                0 => "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Len".to_owned(),
                // A body that never ends.
                _ => "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"pro"
                    .to_owned(),
            };
                stream.write_all(half.as_bytes()).unwrap();
                stream
            })
            .collect();
    let start = Instant::now();
    assert_eq!(get(addr, "/health").0, 200);
    let request = json!({"prompt": "recipe for", "max_tokens": 5});
    assert_eq!(post(addr, "/v1/completions", &request.to_string()).0, 200);
    for mut stream in held {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut answer = Vec::new();
        // The server closes the connection (after a 408 for a body that stopped coming).
        let _ = stream.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer}"
        );
    }
    let waited = start.elapsed();
    assert!(waited < Duration::from_secs(5), "closed after {waited:?}");
}
