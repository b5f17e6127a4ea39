use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use inference::{Cli, Command, ServeArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Serve(args) => serve(args).map(|()| String::new()),
        _ => inference::run(&cli),
    };
    match result {
        Ok(output) => {
            // Character models' text has no final newline of its own.
            if output.is_empty() || output.ends_with('\n') {
                print!("{output}");
            } else {
                println!("{output}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the model and serves it until Ctrl-C or SIGTERM; requests in flight finish first.
fn serve(args: &ServeArgs) -> Result<()> {
    let (served, limits) = inference::served_model(args)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.addr)
            .await
            .with_context(|| format!("--addr {}: cannot listen", args.addr))?;
        let addr = listener.local_addr()?;
        eprintln!(
            "serving {} on http://{addr} (batches of up to {} generations, {} more waiting; \
             Ctrl-C stops)",
            served.name, limits.max_concurrent, limits.max_queue
        );
        let router = server::router(served, limits, args.request_log());
        server::serve(listener, router, limits, shutdown_signal()).await?;
        eprintln!("stopped");
        Ok(())
    })
}

/// Completes at the first Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
