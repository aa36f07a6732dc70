//! Binding for `interpolate` (translation only).

use cnnrs_core::ops::upsample::{interpolate as interpolate_op, InterpMode, InterpolateParams};
use pyo3::prelude::*;

use crate::{compute, PyVar};

/// `interpolate(x, size, scale_factor, mode, align_corners,
/// recompute_scale_factor)`; every value check is the core's (ValueError).
#[pyfunction]
#[pyo3(signature = (x, size, scale_factor, mode, align_corners, recompute_scale_factor))]
fn interpolate(
    py: Python<'_>,
    x: PyRef<'_, PyVar>,
    size: Option<(i64, i64)>,
    scale_factor: Option<(f64, f64)>,
    mode: String,
    align_corners: Option<bool>,
    recompute_scale_factor: Option<bool>,
) -> PyResult<PyVar> {
    let x = x.v.clone();
    compute(py, move || {
        let p = InterpolateParams {
            mode: InterpMode::parse(&mode)?,
            size,
            scale_factor,
            align_corners,
            recompute_scale_factor,
        };
        interpolate_op(&x, &p)
    })
    .map(PyVar::new)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(interpolate, m)?)?;
    Ok(())
}
