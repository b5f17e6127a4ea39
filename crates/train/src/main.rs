use std::process::ExitCode;

use clap::Parser;

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
    match train::run(&train::Args::parse()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
