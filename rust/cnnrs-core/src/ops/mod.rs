//! One folder per op family: forward, backward, params, a naive
//! `reference.rs` (the test oracle) and tests, side by side.

pub mod activation;
pub mod concat;
pub mod conv2d;
pub mod conv_transpose2d;
pub mod dropout;
pub mod elementwise;
pub mod linear;
pub mod locally_connected2d;
pub mod loss;
pub mod norm;
pub mod pad;
pub mod pool2d;
pub mod reduce;
pub mod shape;
pub mod upsample;
