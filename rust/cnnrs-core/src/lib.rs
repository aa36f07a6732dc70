//! cnnrs-core: tensors, a Rust-side autograd tape, and the convolutional
//! network ops with their kernels. Pure Rust; Python lives in `cnnrs-py`.

pub mod autograd;
pub mod error;
pub mod kernels;
pub mod ops;
pub mod optim;
pub mod parallel;
pub mod rng;
pub mod tensor;
pub mod transforms;

#[cfg(test)]
pub(crate) mod testutil;

pub use autograd::{NoGradGuard, Var};
pub use error::{CnnError, Result};
pub use tensor::Tensor;
