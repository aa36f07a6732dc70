//! Parameter updates, done in Rust in one call for all parameters of a group.

pub mod sgd;

pub use sgd::{Sgd, SgdConfig};
