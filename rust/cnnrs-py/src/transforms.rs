//! Bindings for batched augmentation: numpy (N, C, H, W) float32 in, a new
//! array out (the input is never modified).

use cnnrs_core::transforms as core;
use numpy::{PyArray1, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::compute;

fn batch(arr: &PyReadonlyArrayDyn<'_, f32>, op: &str) -> PyResult<(Vec<f32>, [usize; 4])> {
    let s = arr.shape();
    let [n, c, h, w] = s else {
        return Err(PyValueError::new_err(format!(
            "{op}: expected a 4-D batch (N, C, H, W) but got shape {}",
            cnnrs_core::error::fmt_shape(s)
        )));
    };
    let data = match arr.as_slice() {
        Ok(v) => v.to_vec(),
        Err(_) => arr.as_array().iter().copied().collect(),
    };
    Ok((data, [*n, *c, *h, *w]))
}

fn out<'py>(
    py: Python<'py>,
    data: Vec<f32>,
    shape: [usize; 4],
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    PyArray1::from_vec(py, data).reshape(shape.to_vec())
}

#[pyfunction]
fn t_random_crop<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, f32>,
    size: (usize, usize),
    padding: usize,
    fill: f32,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let (data, s) = batch(&x, "random_crop")?;
    let y = compute(py, move || core::random_crop(&data, s, size, padding, fill))?;
    out(py, y, [s[0], s[1], size.0, size.1])
}

/// One in-place transform applied to a copy.
fn inplace<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, f32>,
    op: &str,
    f: impl FnOnce(&mut [f32], [usize; 4]) -> cnnrs_core::Result<()> + Send,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let (mut data, s) = batch(&x, op)?;
    let data = compute(py, move || f(&mut data, s).map(|_| data))?;
    out(py, data, s)
}

#[pyfunction]
fn t_hflip<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, f32>,
    p: f32,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    inplace(py, x, "hflip", move |d, s| core::hflip(d, s, p))
}

#[pyfunction]
fn t_translate<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, f32>,
    max_dy: usize,
    max_dx: usize,
    fill: f32,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    inplace(py, x, "translate", move |d, s| {
        core::translate(d, s, max_dy, max_dx, fill)
    })
}

#[pyfunction]
fn t_gaussian_noise<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, f32>,
    std: f32,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    inplace(py, x, "gaussian_noise", move |d, _| {
        core::gaussian_noise(d, std)
    })
}

#[pyfunction]
fn t_affine<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, f32>,
    degrees: f32,
    scale: (f32, f32),
    fill: f32,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    inplace(py, x, "affine", move |d, s| {
        core::affine(d, s, degrees, scale, fill)
    })
}

#[pyfunction]
fn t_cutout<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, f32>,
    size: usize,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    inplace(py, x, "cutout", move |d, s| core::cutout(d, s, size))
}

#[pyfunction]
fn t_normalize<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, f32>,
    mean: Vec<f32>,
    std: Vec<f32>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    inplace(py, x, "normalize", move |d, s| {
        core::normalize(d, s, &mean, &std)
    })
}

/// Joint random crop / flip / quarter turn of (M, C, H, W) images and their
/// (M, H, W) int64 masks; sample i reads source `sources[i]`.
#[pyfunction]
#[pyo3(signature = (images, masks, sources, size, flip, rot90, seed=None))]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn t_random_crop_pairs<'py>(
    py: Python<'py>,
    images: PyReadonlyArrayDyn<'py, f32>,
    masks: PyReadonlyArrayDyn<'py, i64>,
    sources: Vec<usize>,
    size: (usize, usize),
    flip: bool,
    rot90: bool,
    seed: Option<u64>,
) -> PyResult<(Bound<'py, PyArrayDyn<f32>>, Bound<'py, PyArrayDyn<i64>>)> {
    let (data, s) = batch(&images, "random_crop_pairs")?;
    let ms = masks.shape();
    if ms != [s[0], s[2], s[3]] {
        return Err(PyValueError::new_err(format!(
            "random_crop_pairs: masks must be (M, H, W) = {} for images {}, got {}",
            cnnrs_core::error::fmt_shape(&[s[0], s[2], s[3]]),
            cnnrs_core::error::fmt_shape(&s),
            cnnrs_core::error::fmt_shape(ms)
        )));
    }
    let mdata: Vec<i64> = match masks.as_slice() {
        Ok(v) => v.to_vec(),
        Err(_) => masks.as_array().iter().copied().collect(),
    };
    let n = sources.len();
    let aug = core::pairs::PairAugment { size, flip, rot90 };
    let (xi, xm) = compute(py, move || {
        core::pairs::random_crop_pairs(&data, s, &mdata, &sources, &aug, seed)
    })?;
    let xi = out(py, xi, [n, s[1], size.0, size.1])?;
    let xm = PyArray1::from_vec(py, xm).reshape(vec![n, size.0, size.1])?;
    Ok((xi, xm))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(t_random_crop_pairs, m)?)?;
    m.add_function(wrap_pyfunction!(t_random_crop, m)?)?;
    m.add_function(wrap_pyfunction!(t_hflip, m)?)?;
    m.add_function(wrap_pyfunction!(t_translate, m)?)?;
    m.add_function(wrap_pyfunction!(t_gaussian_noise, m)?)?;
    m.add_function(wrap_pyfunction!(t_affine, m)?)?;
    m.add_function(wrap_pyfunction!(t_cutout, m)?)?;
    m.add_function(wrap_pyfunction!(t_normalize, m)?)?;
    Ok(())
}
