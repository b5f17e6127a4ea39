//! End-to-end tests on the shipped recipe corpus; one module per topic.

mod char_stream;
mod config_errors;
mod golden;
mod many_to_one;
mod serving;
mod training;
