//! Bindings for the locally connected layer (translation only).

use cnnrs_core::ops::locally_connected2d::{self as core, LocalParams};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::{compute, PyVar};

#[pyfunction]
fn locally_connected2d(
    py: Python<'_>,
    x: PyRef<'_, PyVar>,
    w: PyRef<'_, PyVar>,
    b: Option<PyRef<'_, PyVar>>,
    stride: (i64, i64),
    padding: (i64, i64),
) -> PyResult<PyVar> {
    if stride.0 < 1 || stride.1 < 1 || padding.0 < 0 || padding.1 < 0 {
        return Err(PyValueError::new_err(format!(
            "locally_connected2d: stride must be positive and padding non-negative, got stride {stride:?} padding {padding:?}"
        )));
    }
    let p = LocalParams {
        stride: (stride.0 as usize, stride.1 as usize),
        padding: (padding.0 as usize, padding.1 as usize),
    };
    let (x, w) = (x.v.clone(), w.v.clone());
    let b = b.map(|b| b.v.clone());
    compute(py, move || {
        core::locally_connected2d(&x, &w, b.as_ref(), &p)
    })
    .map(PyVar::new)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(locally_connected2d, m)?)?;
    Ok(())
}
