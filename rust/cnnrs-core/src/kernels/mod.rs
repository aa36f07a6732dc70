//! Compute kernels shared by the ops: the GEMM core (the one entry point every
//! convolution, linear layer and their backward passes call).

pub mod gemm;

pub use gemm::{gemm, gemm_par, GemmOpts, MatRef};
