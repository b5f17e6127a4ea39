use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // SAFETY: the first thing the process does; no other thread runs yet.
    unsafe { model::device::default_to_cpu() };
    train::allocator::keep_freed_memory();
    match train::run(&train::Args::parse()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
