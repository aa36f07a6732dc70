//! Bindings for `cat`, `pad` and `center_crop` (translation only).

use cnnrs_core::ops::{concat, pad as pad_ops};
use cnnrs_core::Var;
use pyo3::prelude::*;

use crate::{compute, PyVar};

/// `cat(xs, dim)`: concatenation along `dim` (negative counts from the end).
#[pyfunction]
#[pyo3(signature = (xs, dim))]
fn cat(py: Python<'_>, xs: Vec<PyRef<'_, PyVar>>, dim: i64) -> PyResult<PyVar> {
    let xs: Vec<Var> = xs.iter().map(|x| x.v.clone()).collect();
    compute(py, move || concat::cat(&xs, dim)).map(PyVar::new)
}

/// `pad(x, pad, mode, value)`: `pad` is `(left, right[, top, bottom])`.
#[pyfunction]
#[pyo3(signature = (x, pad, mode, value))]
fn pad(
    py: Python<'_>,
    x: PyRef<'_, PyVar>,
    pad: Vec<i64>,
    mode: String,
    value: f32,
) -> PyResult<PyVar> {
    let x = x.v.clone();
    compute(py, move || {
        pad_ops::pad(&x, &pad, pad_ops::PadMode::parse(&mode)?, value)
    })
    .map(PyVar::new)
}

/// `center_crop(x, (h, w))` of the last two dimensions.
#[pyfunction]
#[pyo3(signature = (x, size))]
fn center_crop(py: Python<'_>, x: PyRef<'_, PyVar>, size: (i64, i64)) -> PyResult<PyVar> {
    let x = x.v.clone();
    compute(py, move || pad_ops::center_crop(&x, size)).map(PyVar::new)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(cat, m)?)?;
    m.add_function(wrap_pyfunction!(pad, m)?)?;
    m.add_function(wrap_pyfunction!(center_crop, m)?)?;
    Ok(())
}
