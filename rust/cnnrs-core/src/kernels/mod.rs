//! Compute kernels shared by the ops: the GEMM core (the one entry point every
//! convolution, linear layer and their backward passes call), the SIMD
//! family dispatch, and the FMA peak probe the benchmarks compare against.

mod fpenv;
pub mod gemm;
pub mod peak;
pub mod simd;
pub(crate) mod sum;
pub(crate) mod transpose;

pub use gemm::{
    gemm, gemm_par, gemm_par_with, gemm_src, gemm_src_par, gemm_src_with, gemm_with, GemmOpts,
    MatRef, PackB,
};
pub use simd::SimdFamily;
