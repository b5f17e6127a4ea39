//! `inference serve`: the model behind the HTTP server, and the server's limits.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use clap::Args;
use model::generation::PreparedDecoder;

use crate::loaded::{Loaded, ModelSource, run_dir_of, run_prompts};

/// `inference serve` flags.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelSource,
    /// Address and port to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Most generations decoded at once, as one batch; more wait in the queue.
    #[arg(long, default_value_t = server::Limits::default().max_concurrent)]
    pub max_concurrent: usize,
    /// Most generations waiting for a place in the batch; more requests get 429.
    #[arg(long, default_value_t = server::Limits::default().max_queue)]
    pub max_queue: usize,
    /// Most open connections; more wait to be accepted.
    #[arg(long, default_value_t = server::Limits::default().max_connections)]
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers, and then its body.
    #[arg(long, default_value_t = server::Limits::default().request_timeout.as_secs_f64())]
    pub request_timeout: f64,
    /// Most tokens one completion may ask for.
    #[arg(long, default_value_t = server::Limits::default().max_tokens)]
    pub max_tokens_cap: usize,
    /// No log line per request.
    #[arg(long)]
    pub quiet: bool,
}

impl ServeArgs {
    /// The request log these flags ask for.
    pub fn request_log(&self) -> server::RequestLog {
        match self.quiet {
            true => server::RequestLog::Off,
            false => server::RequestLog::Stderr,
        }
    }
}

/// The model `args` names, loaded for the server, and the server's limits.
pub fn served_model(args: &ServeArgs) -> Result<(server::ServedModel, server::Limits)> {
    let loaded = Loaded::open(&args.model)?;
    let dir = &loaded.ckpt.dir;
    let run_dir = run_dir_of(dir);
    let name = run_dir
        .as_deref()
        .unwrap_or(dir)
        .file_name()
        .map_or("model".into(), |n| n.to_string_lossy().into_owned());
    if !(args.request_timeout.is_finite() && args.request_timeout > 0.0) {
        anyhow::bail!(
            "--request-timeout must be a number of seconds above 0, got {}",
            args.request_timeout
        );
    }
    let limits = server::Limits {
        max_concurrent: args.max_concurrent.max(1),
        max_queue: args.max_queue,
        max_tokens: args.max_tokens_cap,
        max_connections: args.max_connections.max(1),
        request_timeout: std::time::Duration::from_secs_f64(args.request_timeout),
        ..server::Limits::default()
    };
    let prompts = run_dir.as_deref().map(run_prompts).unwrap_or_default();
    let decoder = PreparedDecoder::new(&loaded.model, &loaded.device);
    let served = server::ServedModel {
        name,
        prompts,
        decoder,
        model: loaded.model,
        vocab: loaded.vocab,
        meta: loaded.ckpt.meta.clone(),
        device: loaded.device,
        run_dir,
    };
    Ok((served, limits))
}

/// Loads the model `args` names and serves it on `args.addr` from a thread of its own for as
/// long as the process runs; returns the address it listens on (port 0 picks a free one).
pub fn serve_in_background(args: &ServeArgs) -> Result<SocketAddr> {
    let (served, limits) = served_model(args)?;
    let log = args.request_log();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(&args.addr))
        .with_context(|| format!("--addr {}: cannot listen", args.addr))?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        let router = server::router(served, limits, log);
        runtime.block_on(server::serve(
            listener,
            router,
            limits,
            std::future::pending(),
        ))
    });
    Ok(addr)
}
