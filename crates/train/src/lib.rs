//! The `train` binary's library: the training loop and its outputs (the config and the data
//! pipeline are the `pipeline` crate's). `main.rs` only parses the command line and calls
//! [`run`].

pub mod allocator;
pub mod callback;
pub mod cli;
pub mod metrics;
pub mod prepare_command;
pub mod progress;
pub mod serve_device;
pub mod step;
pub mod trainer;

pub use cli::{Args, Command, PrepareArgs, ServeDeviceArgs};
pub use trainer::{Interrupted, RunSummary, run, train, train_until};
