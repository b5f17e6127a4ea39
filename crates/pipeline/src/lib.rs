//! A run's config and its one data pipeline (corpus -> tokens -> vocabulary -> examples ->
//! batches), and the loss of a model on the batches: shared by the trainer, `inference score`,
//! the bench and the tests.

pub mod config;
pub mod dataset;
pub mod error;
pub mod evaluation;
pub mod prepare;

pub use config::Config;
pub use error::{ConfigError, PipelineError};
