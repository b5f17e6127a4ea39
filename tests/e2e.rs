//! End-to-end tests on the shipped recipe corpus; one module per topic.

mod char_stream;
#[cfg(feature = "clients")]
mod clients;
mod config_errors;
mod data_parallel;
mod fuzzing;
mod golden;
mod many_to_one;
#[cfg(feature = "browser")]
mod playground;
mod prepared;

mod serving;
mod training;
