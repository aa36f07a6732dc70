//! Elementwise, reduction, shape and activation ops; grad mode; threads.

use cnnrs_core::autograd;
use cnnrs_core::ops::elementwise::{self, BinaryOp};
use cnnrs_core::ops::reduce::{self, Axis};
use cnnrs_core::ops::{activation, shape};
use pyo3::prelude::*;

use crate::{compute, PyVar};

fn binary(py: Python<'_>, op: BinaryOp, a: &PyVar, b: &PyVar) -> PyResult<PyVar> {
    let (a, b) = (a.v.clone(), b.v.clone());
    compute(py, move || elementwise::binary(op, &a, &b)).map(PyVar::new)
}

#[pyfunction]
fn add(py: Python<'_>, a: PyRef<'_, PyVar>, b: PyRef<'_, PyVar>) -> PyResult<PyVar> {
    binary(py, BinaryOp::Add, &a, &b)
}

#[pyfunction]
fn sub(py: Python<'_>, a: PyRef<'_, PyVar>, b: PyRef<'_, PyVar>) -> PyResult<PyVar> {
    binary(py, BinaryOp::Sub, &a, &b)
}

#[pyfunction]
fn mul(py: Python<'_>, a: PyRef<'_, PyVar>, b: PyRef<'_, PyVar>) -> PyResult<PyVar> {
    binary(py, BinaryOp::Mul, &a, &b)
}

#[pyfunction]
fn div(py: Python<'_>, a: PyRef<'_, PyVar>, b: PyRef<'_, PyVar>) -> PyResult<PyVar> {
    binary(py, BinaryOp::Div, &a, &b)
}

/// `scale * x + shift` with Python numbers.
#[pyfunction]
fn affine(py: Python<'_>, x: PyRef<'_, PyVar>, scale: f32, shift: f32) -> PyResult<PyVar> {
    let x = x.v.clone();
    compute(py, move || Ok(elementwise::affine(&x, scale, shift))).map(PyVar::new)
}

fn reduce_op(
    py: Python<'_>,
    x: &PyVar,
    dim: Option<i64>,
    keepdim: bool,
    mean: bool,
) -> PyResult<PyVar> {
    let x = x.v.clone();
    let name = if mean { "mean" } else { "sum" };
    compute(py, move || {
        let axis = match dim {
            None => Axis::All,
            Some(d) => Axis::Dim(reduce::normalize_dim(name, d, &x.shape())?, keepdim),
        };
        reduce::reduce(&x, axis, mean)
    })
    .map(PyVar::new)
}

#[pyfunction]
#[pyo3(signature = (x, dim=None, keepdim=false))]
fn sum(py: Python<'_>, x: PyRef<'_, PyVar>, dim: Option<i64>, keepdim: bool) -> PyResult<PyVar> {
    reduce_op(py, &x, dim, keepdim, false)
}

#[pyfunction]
#[pyo3(signature = (x, dim=None, keepdim=false))]
fn mean(py: Python<'_>, x: PyRef<'_, PyVar>, dim: Option<i64>, keepdim: bool) -> PyResult<PyVar> {
    reduce_op(py, &x, dim, keepdim, true)
}

#[pyfunction]
fn reshape(py: Python<'_>, x: PyRef<'_, PyVar>, shape: Vec<i64>) -> PyResult<PyVar> {
    let x = x.v.clone();
    compute(py, move || shape::reshape(&x, &shape)).map(PyVar::new)
}

#[pyfunction]
#[pyo3(signature = (x, start_dim=0, end_dim=-1))]
fn flatten(py: Python<'_>, x: PyRef<'_, PyVar>, start_dim: i64, end_dim: i64) -> PyResult<PyVar> {
    let x = x.v.clone();
    compute(py, move || shape::flatten(&x, start_dim, end_dim)).map(PyVar::new)
}

#[pyfunction]
fn relu(py: Python<'_>, x: PyRef<'_, PyVar>) -> PyResult<PyVar> {
    let x = x.v.clone();
    compute(py, move || Ok(activation::relu(&x))).map(PyVar::new)
}

/// Sets grad mode for the calling thread; returns the previous mode.
#[pyfunction]
fn set_grad_enabled(enabled: bool) -> bool {
    autograd::set_grad_enabled(enabled)
}

#[pyfunction]
fn is_grad_enabled() -> bool {
    autograd::is_grad_enabled()
}

/// Per-op timing of backward passes (see `backward_profile`).
#[pyfunction]
fn set_backward_profiling(on: bool) {
    autograd::set_backward_profiling(on)
}

/// `[(op name, calls, seconds)]` recorded while profiling, slowest first.
#[pyfunction]
fn backward_profile() -> Vec<(&'static str, u64, f64)> {
    autograd::backward_profile()
}

#[pyfunction]
fn set_num_threads(n: usize) {
    cnnrs_core::parallel::set_num_threads(n)
}

#[pyfunction]
fn get_num_threads() -> usize {
    cnnrs_core::parallel::get_num_threads()
}

/// The time slice a pool thread runs with, in nanoseconds, as Linux reports
/// it (0 where unknown): shows whether `CNNRS_WORKER_SLICE_MS` took effect.
#[pyfunction]
fn worker_slice_ns(py: Python<'_>) -> u64 {
    py.detach(cnnrs_core::parallel::worker_slice_ns)
}

/// How many times the pool switched to serial execution because other
/// processes held the cores, and whether it runs serially now.
#[pyfunction]
fn serial_fallback() -> (u64, bool) {
    (
        cnnrs_core::parallel::serial_fallbacks(),
        cnnrs_core::parallel::serial_fallback_active(),
    )
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(add, m)?)?;
    m.add_function(wrap_pyfunction!(sub, m)?)?;
    m.add_function(wrap_pyfunction!(mul, m)?)?;
    m.add_function(wrap_pyfunction!(div, m)?)?;
    m.add_function(wrap_pyfunction!(affine, m)?)?;
    m.add_function(wrap_pyfunction!(sum, m)?)?;
    m.add_function(wrap_pyfunction!(mean, m)?)?;
    m.add_function(wrap_pyfunction!(reshape, m)?)?;
    m.add_function(wrap_pyfunction!(flatten, m)?)?;
    m.add_function(wrap_pyfunction!(relu, m)?)?;
    m.add_function(wrap_pyfunction!(set_grad_enabled, m)?)?;
    m.add_function(wrap_pyfunction!(is_grad_enabled, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(set_backward_profiling, m)?)?;
    m.add_function(wrap_pyfunction!(backward_profile, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(worker_slice_ns, m)?)?;
    m.add_function(wrap_pyfunction!(serial_fallback, m)?)?;
    Ok(())
}
