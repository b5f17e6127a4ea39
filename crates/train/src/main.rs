use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};

use anyhow::Result;
use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::flag;

fn main() -> ExitCode {
    // Burn loads resumed optimizer state onto its default device before moving it to the
    // model's. With wgpu compiled in that default is a GPU, so resuming would start a second
    // wgpu runtime beside the training one (Mesa's OpenGL driver refuses), or fail on a
    // machine without an adapter even when training on the CPU: make it the CPU unless the
    // user chose one.
    if std::env::var_os("BURN_DEVICE").is_none() {
        // SAFETY: the first thing the process does; no other thread runs yet.
        unsafe { std::env::set_var("BURN_DEVICE", "flex") };
    }
    train::allocator::keep_freed_memory();
    let args = train::Args::parse();
    let other = match &args.command {
        Some(train::Command::Prepare(prepare)) => {
            Some(train::prepare_command::prepare(prepare).map(drop))
        }
        // The server handles Ctrl-C and SIGTERM itself.
        Some(train::Command::ServeDevice(serve)) => Some(train::serve_device::serve_device(serve)),
        None => None,
    };
    if let Some(result) = other {
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let stop = match stop_on_signals() {
        Ok(stop) => stop,
        Err(e) => {
            eprintln!("error: cannot handle Ctrl-C and SIGTERM: {e}");
            return ExitCode::FAILURE;
        }
    };
    match train::run(&args, &stop) {
        Ok(summary) => match summary.interrupted {
            None => ExitCode::SUCCESS,
            Some(interrupted) => {
                let mut args: Vec<String> = std::env::args().skip(1).collect();
                args.retain(|a| a != "--resume");
                println!(
                    "checkpoint {} holds this point; continue with:\n  cargo run -p train -- {} --resume",
                    interrupted.checkpoint.display(),
                    args.join(" ")
                );
                // The shell's convention: 128 + the signal's number (130 Ctrl-C, 143 SIGTERM).
                ExitCode::from(128 + interrupted.signal as u8)
            }
        },
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The first Ctrl-C or SIGTERM sets the returned number to the signal's, and the run stops
/// after its current step with a checkpoint; a second one exits at once (130 or 143), leaving
/// the last complete checkpoint in place.
fn stop_on_signals() -> Result<Arc<AtomicUsize>> {
    let stop = Arc::new(AtomicUsize::new(0));
    let asked = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so it sees `asked` before this signal sets it: only the second
        // signal exits.
        flag::register_conditional_shutdown(signal, 128 + signal, Arc::clone(&asked))?;
        flag::register(signal, Arc::clone(&asked))?;
        flag::register_usize(signal, Arc::clone(&stop), signal as usize)?;
    }
    Ok(stop)
}
