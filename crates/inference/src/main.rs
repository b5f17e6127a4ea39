use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match inference::run(&inference::Cli::parse()) {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
