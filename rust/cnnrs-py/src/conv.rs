//! Bindings for the conv ops (translation only).

use cnnrs_core::ops::conv2d::{
    conv2d as conv2d_op, conv2d_relu as conv2d_relu_op, Conv2dParams, Padding,
};
use pyo3::prelude::*;

use crate::{compute, PyVar};

/// Padding as Python passes it: `"same"` / `"valid"`, or explicit
/// `(top, bottom, left, right)`.
#[derive(FromPyObject)]
enum PaddingArg {
    Mode(String),
    Explicit((i64, i64, i64, i64)),
}

impl PaddingArg {
    fn resolve(&self) -> cnnrs_core::Result<Padding> {
        match self {
            PaddingArg::Mode(s) => Padding::parse(s),
            PaddingArg::Explicit((t, b, l, r)) => Padding::from_i64(*t, *b, *l, *r),
        }
    }
}

/// `conv2d(x, w, b, stride, padding, dilation, groups, relu=False)`;
/// integers are signed so negative values reach the core's validation
/// (ValueError). `relu` fuses `max(y, 0)` into the kernel.
#[pyfunction]
#[pyo3(signature = (x, w, b, stride, padding, dilation, groups, relu=false))]
fn conv2d(
    py: Python<'_>,
    x: PyRef<'_, PyVar>,
    w: PyRef<'_, PyVar>,
    b: Option<PyRef<'_, PyVar>>,
    stride: (i64, i64),
    padding: PaddingArg,
    dilation: (i64, i64),
    groups: i64,
    relu: bool,
) -> PyResult<PyVar> {
    let (x, w) = (x.v.clone(), w.v.clone());
    let b = b.map(|b| b.v.clone());
    compute(py, move || {
        let p = Conv2dParams::from_i64(stride, padding.resolve()?, dilation, groups)?;
        if relu {
            conv2d_relu_op(&x, &w, b.as_ref(), &p)
        } else {
            conv2d_op(&x, &w, b.as_ref(), &p)
        }
    })
    .map(PyVar::new)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(conv2d, m)?)?;
    Ok(())
}
