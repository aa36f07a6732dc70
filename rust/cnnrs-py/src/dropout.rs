//! Bindings for the dropouts and the core generator's seed.

use cnnrs_core::ops::dropout::{self as core, PoolDropoutParams};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::{compute, PyVar};

#[pyfunction]
fn dropout(py: Python<'_>, x: PyRef<'_, PyVar>, p: f32, training: bool) -> PyResult<PyVar> {
    let x = x.v.clone();
    compute(py, move || core::dropout(&x, p, training)).map(PyVar::new)
}

#[pyfunction]
fn dropout2d(py: Python<'_>, x: PyRef<'_, PyVar>, p: f32, training: bool) -> PyResult<PyVar> {
    let x = x.v.clone();
    compute(py, move || core::dropout2d(&x, p, training)).map(PyVar::new)
}

#[pyfunction]
fn cutout(py: Python<'_>, x: PyRef<'_, PyVar>, size: i64, training: bool) -> PyResult<PyVar> {
    if size < 1 {
        return Err(PyValueError::new_err(format!(
            "cutout: size must be at least 1, got {size}"
        )));
    }
    let x = x.v.clone();
    compute(py, move || core::cutout(&x, size as usize, training)).map(PyVar::new)
}

#[pyfunction]
fn max_pool_dropout(
    py: Python<'_>,
    x: PyRef<'_, PyVar>,
    kernel: (i64, i64),
    stride: (i64, i64),
    p: f32,
    training: bool,
    weighted_eval: bool,
) -> PyResult<PyVar> {
    if kernel.0 < 1 || kernel.1 < 1 || stride.0 < 1 || stride.1 < 1 {
        return Err(PyValueError::new_err(format!(
            "max_pool_dropout: kernel_size and stride must be positive, got kernel {kernel:?} stride {stride:?}"
        )));
    }
    let pp = PoolDropoutParams {
        kernel: (kernel.0 as usize, kernel.1 as usize),
        stride: (stride.0 as usize, stride.1 as usize),
        p,
        training,
        weighted_eval,
    };
    let x = x.v.clone();
    compute(py, move || core::max_pool_dropout(&x, &pp)).map(PyVar::new)
}

/// Seeds the core generator (dropout masks, cutout squares).
#[pyfunction]
fn manual_seed(seed: u64) {
    cnnrs_core::rng::manual_seed(seed)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(dropout, m)?)?;
    m.add_function(wrap_pyfunction!(dropout2d, m)?)?;
    m.add_function(wrap_pyfunction!(cutout, m)?)?;
    m.add_function(wrap_pyfunction!(max_pool_dropout, m)?)?;
    m.add_function(wrap_pyfunction!(manual_seed, m)?)?;
    Ok(())
}
