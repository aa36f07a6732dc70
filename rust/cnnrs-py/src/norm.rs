//! Bindings for batch norm (translation only).

use cnnrs_core::ops::norm::{self, BatchNormParams};
use pyo3::prelude::*;

use crate::{compute, PyVar};

/// `batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)`;
/// running statistics are updated in place in training mode.
#[pyfunction]
#[pyo3(signature = (x, running_mean, running_var, weight, bias, training, momentum, eps))]
fn batch_norm(
    py: Python<'_>,
    x: PyRef<'_, PyVar>,
    running_mean: Option<PyRef<'_, PyVar>>,
    running_var: Option<PyRef<'_, PyVar>>,
    weight: Option<PyRef<'_, PyVar>>,
    bias: Option<PyRef<'_, PyVar>>,
    training: bool,
    momentum: f32,
    eps: f32,
) -> PyResult<PyVar> {
    let x = x.v.clone();
    let rm = running_mean.map(|v| v.v.clone());
    let rv = running_var.map(|v| v.v.clone());
    let w = weight.map(|v| v.v.clone());
    let b = bias.map(|v| v.v.clone());
    let p = BatchNormParams {
        training,
        momentum,
        eps,
    };
    compute(py, move || {
        norm::batch_norm(&x, rm.as_ref(), rv.as_ref(), w.as_ref(), b.as_ref(), &p)
    })
    .map(PyVar::new)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(batch_norm, m)?)?;
    Ok(())
}
