//! Binding for the transposed convolution (translation only).

use cnnrs_core::ops::conv_transpose2d::{
    conv_transpose2d as conv_transpose2d_op, ConvTranspose2dParams,
};
use pyo3::prelude::*;

use crate::{compute, PyVar};

/// `conv_transpose2d(x, w, b, stride, padding, output_padding, dilation,
/// groups)`; integers are signed so negative values reach the core's
/// validation (ValueError).
#[pyfunction]
#[pyo3(signature = (x, w, b, stride, padding, output_padding, dilation, groups))]
fn conv_transpose2d(
    py: Python<'_>,
    x: PyRef<'_, PyVar>,
    w: PyRef<'_, PyVar>,
    b: Option<PyRef<'_, PyVar>>,
    stride: (i64, i64),
    padding: (i64, i64),
    output_padding: (i64, i64),
    dilation: (i64, i64),
    groups: i64,
) -> PyResult<PyVar> {
    let (x, w) = (x.v.clone(), w.v.clone());
    let b = b.map(|b| b.v.clone());
    compute(py, move || {
        let p = ConvTranspose2dParams::from_i64(stride, padding, output_padding, dilation, groups)?;
        conv_transpose2d_op(&x, &w, b.as_ref(), &p)
    })
    .map(PyVar::new)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(conv_transpose2d, m)?)?;
    Ok(())
}
