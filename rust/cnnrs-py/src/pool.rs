//! Bindings for the pool ops (translation only).

use cnnrs_core::ops::pool2d::avg::{self, AvgPool2dParams};
use cnnrs_core::ops::pool2d::{self, MaxPool2dParams};
use numpy::{PyArray1, PyArrayDyn, PyArrayMethods};
use pyo3::prelude::*;

use crate::{compute, PyVar};

/// `max_pool2d`; returns `(output, indices)` where `indices` is an int64
/// array of the output's shape when `return_indices`, else None.
#[pyfunction]
#[allow(clippy::type_complexity)]
fn max_pool2d<'py>(
    py: Python<'py>,
    x: PyRef<'_, PyVar>,
    kernel_size: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    dilation: (usize, usize),
    ceil_mode: bool,
    return_indices: bool,
) -> PyResult<(PyVar, Option<Bound<'py, PyArrayDyn<i64>>>)> {
    let x = x.v.clone();
    let p = MaxPool2dParams {
        kernel: [kernel_size.0, kernel_size.1],
        stride: [stride.0, stride.1],
        padding: [padding.0, padding.1],
        dilation: [dilation.0, dilation.1],
        ceil_mode,
    };
    if !return_indices {
        let y = compute(py, move || pool2d::max_pool2d(&x, &p))?;
        return Ok((PyVar::new(y), None));
    }
    let (y, idx) = compute(py, move || pool2d::max_pool2d_with_indices(&x, &p))?;
    let arr = PyArray1::from_vec(py, idx).reshape(y.shape())?;
    Ok((PyVar::new(y), Some(arr)))
}

/// `avg_pool2d` with PyTorch's divisor rules.
#[pyfunction]
fn avg_pool2d(
    py: Python<'_>,
    x: PyRef<'_, PyVar>,
    kernel_size: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: Option<usize>,
) -> PyResult<PyVar> {
    let x = x.v.clone();
    let p = AvgPool2dParams {
        kernel: [kernel_size.0, kernel_size.1],
        stride: [stride.0, stride.1],
        padding: [padding.0, padding.1],
        ceil_mode,
        count_include_pad,
        divisor_override,
    };
    compute(py, move || avg::avg_pool2d(&x, &p)).map(PyVar::new)
}

/// `adaptive_avg_pool2d` to `(H_out, W_out)`.
#[pyfunction]
fn adaptive_avg_pool2d(
    py: Python<'_>,
    x: PyRef<'_, PyVar>,
    output_size: (usize, usize),
) -> PyResult<PyVar> {
    let x = x.v.clone();
    compute(py, move || {
        avg::adaptive_avg_pool2d(&x, [output_size.0, output_size.1])
    })
    .map(PyVar::new)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(max_pool2d, m)?)?;
    m.add_function(wrap_pyfunction!(avg_pool2d, m)?)?;
    m.add_function(wrap_pyfunction!(adaptive_avg_pool2d, m)?)?;
    Ok(())
}
