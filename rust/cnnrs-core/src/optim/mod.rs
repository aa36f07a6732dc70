//! Parameter updates, done in Rust in one call for all parameters of a group.

pub mod adam;
pub mod sgd;

pub use adam::{Adam, AdamConfig};
pub use sgd::{Sgd, SgdConfig};

/// Elements per task of a parallel update (64 KiB of each array).
pub(crate) const BLOCK: usize = 1 << 14;
/// Parameters from this many elements update on the pool.
pub(crate) const PAR_MIN: usize = 1 << 16;
