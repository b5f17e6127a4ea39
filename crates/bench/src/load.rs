//! `bench serve`: N concurrent clients streaming completions from a served model for T seconds,
//! for each N of a list in one run against one server; requests and generated tokens per
//! second, latency to the first token and to the last, and errors.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use inference::{ModelSource, ServeArgs};
use model::DeviceArgs;
use serde::Serialize;
use serde_json::{Value, json};

use crate::record;

/// `bench serve` flags.
#[derive(clap::Args)]
pub struct LoadArgs {
    /// A run or checkpoint directory to serve in this process (on 127.0.0.1, a free port).
    #[arg(long, required_unless_present = "url")]
    checkpoint: Option<PathBuf>,
    /// Backend and wgpu adapter for the served model (default: flex).
    #[command(flatten)]
    device: DeviceArgs,
    /// Load a server that is already running instead, e.g. `http://127.0.0.1:8080`.
    #[arg(long, conflicts_with = "checkpoint")]
    url: Option<String>,
    /// Clients sending requests at the same time, each one after the other: one load per
    /// number, in turn.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 8, 32, 64])]
    clients: Vec<usize>,
    /// How long the clients of each load keep sending.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// `max_tokens` of every request.
    #[arg(long, default_value_t = 60)]
    max_tokens: usize,
    /// The prompts, taken in turn.
    #[arg(long, default_values_t = ["recipe for".to_string(), "recipe for chocolate".to_string()])]
    prompt: Vec<String>,
}

/// What one streamed request took.
struct Answer {
    tokens: usize,
    first: Duration,
    last: Duration,
}

/// Runs the clients and prints the figures.
pub fn run(args: &LoadArgs) -> Result<()> {
    let (base, what) = match (&args.url, &args.checkpoint) {
        (Some(url), _) => (url.trim_end_matches('/').to_owned(), url.clone()),
        (None, Some(checkpoint)) => {
            let addr = serve_here(args, checkpoint)?;
            let what = format!("{} served here on {addr}", checkpoint.display());
            (format!("http://{addr}"), what)
        }
        (None, None) => bail!("give --checkpoint or --url"),
    };
    if args.clients.contains(&0) || args.seconds <= 0.0 {
        bail!("--clients and --seconds must be above 0");
    }
    let url = format!("{base}/v1/completions");
    // One short request first: the server is up and the model answers.
    let warm_up = json!({"prompt": args.prompt[0], "max_tokens": 1});
    ureq::post(&url)
        .send_json(warm_up)
        .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    let mut loads = Vec::new();
    for &clients in &args.clients {
        eprintln!(
            "{clients} clients for {} s against {what}, {} tokens per request",
            args.seconds, args.max_tokens
        );
        loads.push(load(args, &url, clients));
    }
    let mut text = format!(
        "{what}\n{} s per load, {} tokens per request, temperature 0.8\n{}",
        args.seconds,
        args.max_tokens,
        Figures::header()
    );
    for (figures, _) in &loads {
        text.push_str(&figures.row());
    }
    let figures: Vec<&Figures> = loads.iter().map(|(f, _)| f).collect();
    record::publish("serve", &text, &figures)?;
    let errors: Vec<&String> = loads.iter().flat_map(|(_, e)| e).collect();
    if let Some(first) = errors.first() {
        bail!("{} requests failed; the first: {first}", errors.len());
    }
    Ok(())
}

/// `clients` clients sending for the run's seconds: the figures and the errors.
fn load(args: &LoadArgs, url: &str, clients: usize) -> (Figures, Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let start = Instant::now();
    let results: Vec<(Vec<Answer>, Vec<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|client| scope.spawn(move || client_loop(args, url, client, deadline)))
            .collect();
        handles.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let (answers, errors): (Vec<_>, Vec<_>) = results.into_iter().unzip();
    let answers: Vec<Answer> = answers.into_iter().flatten().collect();
    let errors: Vec<String> = errors.into_iter().flatten().collect();
    (
        Figures::of(&answers, errors.len(), elapsed, clients),
        errors,
    )
}

/// Serves `checkpoint` from this process with a place in the batch for every client of the
/// largest load; its address.
fn serve_here(args: &LoadArgs, checkpoint: &std::path::Path) -> Result<SocketAddr> {
    let clients = args.clients.iter().copied().max().unwrap_or(1);
    inference::serve_in_background(&ServeArgs {
        model: ModelSource {
            checkpoint: checkpoint.to_owned(),
            best: false,
            device: args.device.clone(),
        },
        addr: "127.0.0.1:0".into(),
        max_concurrent: clients,
        max_queue: 0,
        max_connections: clients + 8,
        request_timeout: 10.0,
        max_tokens_cap: args.max_tokens.max(1),
        quiet: true,
    })
}

/// One client: streamed requests one after the other until `deadline`.
fn client_loop(
    args: &LoadArgs,
    url: &str,
    client: usize,
    deadline: Instant,
) -> (Vec<Answer>, Vec<String>) {
    let agent = ureq::agent();
    let (mut answers, mut errors) = (Vec::new(), Vec::new());
    for request in 0.. {
        if Instant::now() >= deadline {
            break;
        }
        let prompt = &args.prompt[(client + request) % args.prompt.len()];
        let body = json!({
            "prompt": prompt, "max_tokens": args.max_tokens, "stream": true,
            "temperature": 0.8, "seed": client * 1_000_000 + request,
        });
        match streamed(&agent, url, &body) {
            Ok(answer) => answers.push(answer),
            Err(e) => errors.push(e),
        }
    }
    (answers, errors)
}

/// Sends one streamed completion and reads its events to `[DONE]`.
fn streamed(agent: &ureq::Agent, url: &str, body: &Value) -> Result<Answer, String> {
    let sent = Instant::now();
    let response = agent.post(url).send_json(body).map_err(|e| e.to_string())?;
    let (mut tokens, mut first) = (0, None);
    for line in BufReader::new(response.into_reader()).lines() {
        let line = line.map_err(|e| e.to_string())?;
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            let first = first.unwrap_or_else(|| sent.elapsed());
            let last = sent.elapsed();
            return Ok(Answer {
                tokens,
                first,
                last,
            });
        }
        let chunk: Value = serde_json::from_str(data).map_err(|e| e.to_string())?;
        if chunk["choices"][0]["text"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
        {
            tokens += 1;
            first.get_or_insert_with(|| sent.elapsed());
        }
    }
    Err("the stream ended without [DONE]".into())
}

/// What a load run measured.
#[derive(Serialize)]
struct Figures {
    clients: usize,
    seconds: f64,
    requests: usize,
    tokens: usize,
    first_token_ms: [f64; 2],
    whole_answer_ms: [f64; 2],
    errors: usize,
}

impl Figures {
    fn of(answers: &[Answer], errors: usize, seconds: f64, clients: usize) -> Self {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mut first: Vec<f64> = answers.iter().map(|a| ms(a.first)).collect();
        let mut last: Vec<f64> = answers.iter().map(|a| ms(a.last)).collect();
        let p50_p99 = |values: &mut Vec<f64>| [0.5, 0.99].map(|q| percentile(values, q));
        Self {
            clients,
            seconds,
            requests: answers.len(),
            tokens: answers.iter().map(|a| a.tokens).sum(),
            first_token_ms: p50_p99(&mut first),
            whole_answer_ms: p50_p99(&mut last),
            errors,
        }
    }

    /// The table's header.
    fn header() -> String {
        format!(
            "{:>7} {:>10} {:>10} {:>22} {:>22} {:>7}\n",
            "clients",
            "requests/s",
            "tokens/s",
            "first token p50/p99",
            "whole answer p50/p99",
            "errors"
        )
    }

    /// The figures as a row of the table.
    fn row(&self) -> String {
        let pair = |[p50, p99]: [f64; 2]| format!("{p50:.1} / {p99:.1} ms");
        format!(
            "{:>7} {:>10.1} {:>10.0} {:>22} {:>22} {:>7}\n",
            self.clients,
            self.requests as f64 / self.seconds,
            self.tokens as f64 / self.seconds,
            pair(self.first_token_ms),
            pair(self.whole_answer_ms),
            self.errors,
        )
    }
}

/// The `q` quantile of `values` (nearest rank), or NaN when there are none.
fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}
