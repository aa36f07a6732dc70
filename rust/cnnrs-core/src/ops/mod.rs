//! One folder per op family: forward, backward, params, a naive
//! `reference.rs` (the test oracle) and tests, side by side.

pub mod activation;
pub mod elementwise;
pub mod reduce;
pub mod shape;
