//! Benchmark and diagnostics bindings: the FMA peak probe, a raw `sgemm` on
//! numpy arrays (for the benchmark harness and tests), and the SIMD family
//! in use. Translation only; the GIL is released around every computation.

use cnnrs_core::kernels::{gemm_par, peak, simd, GemmOpts, MatRef, SimdFamily};
use numpy::{PyArray2, PyArrayMethods, PyReadonlyArray2, PyReadwriteArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::compute;

fn parse_family(name: &str) -> PyResult<SimdFamily> {
    SimdFamily::parse(name).ok_or_else(|| {
        PyValueError::new_err(format!(
            "peak_gflops: family must be one of 'scalar', 'avx2', 'avx512', got {name:?}"
        ))
    })
}

/// Peak float32 GFLOP/s of `threads` threads running independent FMA chains
/// (~70 ms). `family=None` probes the widest SIMD family the CPU has; a
/// family the CPU lacks falls back like `CNNRS_SIMD` does.
#[pyfunction]
#[pyo3(signature = (threads=1, family=None))]
fn peak_gflops(py: Python<'_>, threads: i64, family: Option<&str>) -> PyResult<f64> {
    if threads < 1 {
        return Err(PyValueError::new_err(format!(
            "peak_gflops: threads must be at least 1, got {threads}"
        )));
    }
    let fam = match family {
        Some(f) => parse_family(f)?,
        None => simd::best(),
    };
    let threads = threads as usize;
    compute(py, move || Ok(peak::peak_gflops_with(fam, threads)))
}

/// The SIMD family the kernels use in this process (`CNNRS_SIMD` or the
/// widest available).
#[pyfunction]
fn simd_family() -> &'static str {
    simd::active().name()
}

/// Every SIMD family this CPU can run, narrowest first.
#[pyfunction]
fn simd_available() -> Vec<&'static str> {
    simd::available().into_iter().map(|f| f.name()).collect()
}

fn describe(x: &Bound<'_, PyAny>) -> String {
    let ty = x
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".into());
    match (x.getattr("dtype"), x.getattr("shape")) {
        (Ok(d), Ok(s)) => format!("{ty} of dtype {d} and shape {s}"),
        _ => ty,
    }
}

fn matrix<'py>(name: &str, x: &Bound<'py, PyAny>) -> PyResult<PyReadonlyArray2<'py, f32>> {
    x.extract::<PyReadonlyArray2<'py, f32>>().map_err(|_| {
        PyTypeError::new_err(format!(
            "sgemm: {name} must be a 2-D float32 numpy array, got {}",
            describe(x)
        ))
    })
}

/// A zero-copy view of a C- or Fortran-contiguous array, or `None`.
fn view<'a>(arr: &'a PyReadonlyArray2<'_, f32>) -> Option<MatRef<'a>> {
    let (rows, cols) = (arr.shape()[0], arr.shape()[1]);
    let data = arr.as_slice().ok()?;
    if arr.is_c_contiguous() {
        Some(MatRef::row_major(data, rows, cols, cols.max(1)))
    } else if arr.is_fortran_contiguous() {
        Some(MatRef::transposed(data, rows, cols, rows.max(1)))
    } else {
        None
    }
}

/// `a @ b` for float32 matrices on the cnnrs GEMM core (threaded with the
/// cnnrs pool, GIL released). C- and Fortran-ordered inputs are read in
/// place (a transposed array costs nothing); other layouts are copied first.
/// `out`, if given, must be a writeable C-contiguous float32 array of shape
/// `(m, n)` and is returned; otherwise a new array is.
#[pyfunction]
#[pyo3(signature = (a, b, out=None))]
fn sgemm<'py>(
    py: Python<'py>,
    a: &Bound<'py, PyAny>,
    b: &Bound<'py, PyAny>,
    out: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let ra = matrix("a", a)?;
    let rb = matrix("b", b)?;
    let (m, k) = (ra.shape()[0], ra.shape()[1]);
    let (k2, n) = (rb.shape()[0], rb.shape()[1]);
    if k != k2 {
        return Err(PyValueError::new_err(format!(
            "sgemm: inner dimensions differ: a ({m}, {k}), b ({k2}, {n})"
        )));
    }
    let out_arr: Bound<'py, PyArray2<f32>> = match out {
        None => PyArray2::zeros(py, [m, n], false),
        Some(o) => {
            let arr = o.cast::<PyArray2<f32>>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "sgemm: out must be a 2-D float32 numpy array, got {}",
                    describe(o)
                ))
            })?;
            if arr.shape() != [m, n] || !arr.is_c_contiguous() {
                return Err(PyValueError::new_err(format!(
                    "sgemm: out must be C-contiguous with shape ({m}, {n}), got shape ({}, {})",
                    arr.shape()[0],
                    arr.shape()[1]
                )));
            }
            arr.clone()
        }
    };
    let mut rw: PyReadwriteArray2<'py, f32> = out_arr.try_readwrite().map_err(|e| {
        PyValueError::new_err(format!("sgemm: out is not writeable or is in use: {e}"))
    })?;
    // Other layouts: an owned C-ordered copy.
    let own_a: Vec<f32>;
    let va = match view(&ra) {
        Some(v) => v,
        None => {
            own_a = ra.as_array().iter().copied().collect();
            MatRef::row_major(&own_a, m, k, k.max(1))
        }
    };
    let own_b: Vec<f32>;
    let vb = match view(&rb) {
        Some(v) => v,
        None => {
            own_b = rb.as_array().iter().copied().collect();
            MatRef::row_major(&own_b, k, n, n.max(1))
        }
    };
    let c = rw
        .as_slice_mut()
        .map_err(|e| PyValueError::new_err(format!("sgemm: out: {e}")))?;
    compute(py, move || {
        gemm_par(va, vb, c, n.max(1), &GemmOpts::default());
        Ok(())
    })?;
    drop(rw);
    Ok(out_arr)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(peak_gflops, m)?)?;
    m.add_function(wrap_pyfunction!(simd_family, m)?)?;
    m.add_function(wrap_pyfunction!(simd_available, m)?)?;
    m.add_function(wrap_pyfunction!(sgemm, m)?)?;
    Ok(())
}
