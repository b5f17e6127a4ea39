use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    train::allocator::keep_freed_memory();
    match train::run(&train::Args::parse()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
