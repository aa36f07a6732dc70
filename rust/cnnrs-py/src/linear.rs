//! Bindings for the linear ops (translation only).

use cnnrs_core::ops::linear;
use pyo3::prelude::*;

use crate::{compute, PyVar};

/// `x W^T + b`.
#[pyfunction(name = "linear")]
#[pyo3(signature = (x, weight, bias=None))]
fn linear_fn(
    py: Python<'_>,
    x: PyRef<'_, PyVar>,
    weight: PyRef<'_, PyVar>,
    bias: Option<PyRef<'_, PyVar>>,
) -> PyResult<PyVar> {
    let (x, w) = (x.v.clone(), weight.v.clone());
    let b = bias.map(|b| b.v.clone());
    compute(py, move || linear::linear(&x, &w, b.as_ref())).map(PyVar::new)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(linear_fn, m)?)?;
    Ok(())
}
