use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match inference::run(&inference::Cli::parse()) {
        Ok(output) => {
            // Character models' text has no final newline of its own.
            if output.ends_with('\n') {
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
