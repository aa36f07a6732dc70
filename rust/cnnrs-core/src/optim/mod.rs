//! Parameter updates, done in Rust in one call for all parameters of a group.

pub mod adam;
pub mod sgd;

pub use adam::{Adam, AdamConfig};
pub use sgd::{Sgd, SgdConfig};
