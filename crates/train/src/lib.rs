//! The `train` binary's library: config, the training loop and its outputs. `main.rs` only
//! parses the command line and calls [`run`].

pub mod allocator;
pub mod callback;
pub mod cli;
pub mod config;
pub mod dataset;
pub mod metrics;
pub mod pipeline;
pub mod progress;
pub mod step;
pub mod trainer;

pub use cli::Args;
pub use config::Config;
pub use trainer::{Interrupted, RunSummary, run, train, train_until};
