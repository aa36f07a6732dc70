//! Bindings for softmax and the loss ops (translation only).

use cnnrs_core::ops::loss::{self, Reduction};
use numpy::{PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::{compute, to_py, PyVar};

#[pyfunction]
fn softmax(py: Python<'_>, x: PyRef<'_, PyVar>, dim: i64) -> PyResult<PyVar> {
    let x = x.v.clone();
    compute(py, move || loss::softmax(&x, dim)).map(PyVar::new)
}

#[pyfunction]
fn log_softmax(py: Python<'_>, x: PyRef<'_, PyVar>, dim: i64) -> PyResult<PyVar> {
    let x = x.v.clone();
    compute(py, move || loss::log_softmax(&x, dim)).map(PyVar::new)
}

/// Cross-entropy of logits against int64 class labels (any layout; copied).
#[pyfunction]
fn cross_entropy(
    py: Python<'_>,
    x: PyRef<'_, PyVar>,
    target: PyReadonlyArrayDyn<'_, i64>,
    reduction: &str,
    ignore_index: i64,
) -> PyResult<PyVar> {
    let red = Reduction::parse("cross_entropy", reduction).map_err(to_py)?;
    let shape = target.shape().to_vec();
    let labels: Vec<i64> = match target.as_slice() {
        Ok(s) => s.to_vec(),
        Err(_) => target.as_array().iter().copied().collect(),
    };
    let x = x.v.clone();
    compute(py, move || {
        loss::cross_entropy(&x, &labels, &shape, red, ignore_index)
    })
    .map(PyVar::new)
}

#[pyfunction]
fn mse_loss(
    py: Python<'_>,
    x: PyRef<'_, PyVar>,
    target: PyRef<'_, PyVar>,
    reduction: &str,
) -> PyResult<PyVar> {
    let red = Reduction::parse("mse_loss", reduction).map_err(to_py)?;
    let (x, t) = (x.v.clone(), target.v.clone());
    compute(py, move || loss::mse_loss(&x, &t, red)).map(PyVar::new)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(softmax, m)?)?;
    m.add_function(wrap_pyfunction!(log_softmax, m)?)?;
    m.add_function(wrap_pyfunction!(cross_entropy, m)?)?;
    m.add_function(wrap_pyfunction!(mse_loss, m)?)?;
    Ok(())
}
