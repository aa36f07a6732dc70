//! PyO3 bindings for cnnrs: numpy <-> core tensors, error mapping, and the GIL
//! released around every compute call. No math lives here.

use std::panic::{catch_unwind, AssertUnwindSafe};

use cnnrs_core::CnnError;
use pyo3::exceptions::{PyMemoryError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

mod alloc;
mod bench;
mod cat_pad;
mod conv;
mod conv_transpose;
mod dropout;
mod linear;
mod local;
mod loss;
mod norm;
mod ops;
mod optim;
mod pool;
mod transforms;
mod upsample;
mod var;

pub use var::PyVar;

/// Maps a core error to the Python exception users catch.
pub(crate) fn to_py(e: CnnError) -> PyErr {
    match e {
        CnnError::ShapeMismatch(m) | CnnError::InvalidArgument(m) | CnnError::Unsupported(m) => {
            PyValueError::new_err(m)
        }
        CnnError::OutOfMemory(m) => PyMemoryError::new_err(m),
    }
}

/// Runs `f` with the GIL released. A panic inside (a bug, never expected from
/// validated input) becomes a `RuntimeError` instead of unwinding into Python.
pub(crate) fn compute<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> cnnrs_core::Result<T> + Send,
) -> PyResult<T> {
    let out = py.detach(|| catch_unwind(AssertUnwindSafe(f)));
    match out {
        Ok(r) => r.map_err(to_py),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(PyRuntimeError::new_err(format!(
                "cnnrs internal error (please report): {msg}"
            )))
        }
    }
}

/// True when cnnrs's allocator policy (see `alloc.rs`: glibc `mallopt`
/// thresholds, opt out with `CNNRS_MALLOPT=0`) is in force.
#[pyfunction]
fn malloc_tuned() -> bool {
    alloc::apply()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    alloc::apply();
    m.add_function(wrap_pyfunction!(malloc_tuned, m)?)?;
    m.add_class::<PyVar>()?;
    ops::register(m)?;
    bench::register(m)?;
    conv::register(m)?;
    conv_transpose::register(m)?;
    pool::register(m)?;
    linear::register(m)?;
    loss::register(m)?;
    optim::register(m)?;
    norm::register(m)?;
    dropout::register(m)?;
    local::register(m)?;
    transforms::register(m)?;
    upsample::register(m)?;
    cat_pad::register(m)?;
    Ok(())
}
