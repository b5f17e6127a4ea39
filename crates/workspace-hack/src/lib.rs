//! No code: this crate only aligns the features of the workspace's dependencies (see its
//! Cargo.toml).
