//! Bindings for softmax and the loss ops (translation only).

use cnnrs_core::ops::loss::{self, DiceParams, DiceTarget, Reduction};
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

fn labels_of(target: &PyReadonlyArrayDyn<'_, i64>) -> (Vec<i64>, Vec<usize>) {
    let shape = target.shape().to_vec();
    let labels: Vec<i64> = match target.as_slice() {
        Ok(s) => s.to_vec(),
        Err(_) => target.as_array().iter().copied().collect(),
    };
    (labels, shape)
}

/// Cross-entropy of logits against int64 class labels (any layout; copied),
/// with an optional per-label weight map (a constant: its value is used).
#[pyfunction]
#[pyo3(signature = (x, target, reduction, ignore_index, pixel_weight=None))]
fn cross_entropy(
    py: Python<'_>,
    x: PyRef<'_, PyVar>,
    target: PyReadonlyArrayDyn<'_, i64>,
    reduction: &str,
    ignore_index: i64,
    pixel_weight: Option<PyRef<'_, PyVar>>,
) -> PyResult<PyVar> {
    let red = Reduction::parse("cross_entropy", reduction).map_err(to_py)?;
    let (labels, shape) = labels_of(&target);
    let x = x.v.clone();
    let w = pixel_weight.map(|w| w.v.value());
    compute(py, move || {
        loss::cross_entropy_weighted(&x, &labels, &shape, w, red, ignore_index)
    })
    .map(PyVar::new)
}

#[pyfunction]
#[pyo3(signature = (x, target, reduction, weight=None, pos_weight=None))]
fn binary_cross_entropy_with_logits(
    py: Python<'_>,
    x: PyRef<'_, PyVar>,
    target: PyRef<'_, PyVar>,
    reduction: &str,
    weight: Option<PyRef<'_, PyVar>>,
    pos_weight: Option<PyRef<'_, PyVar>>,
) -> PyResult<PyVar> {
    let red = Reduction::parse("binary_cross_entropy_with_logits", reduction).map_err(to_py)?;
    let (x, t) = (x.v.clone(), target.v.clone());
    let (w, pw) = (weight.map(|w| w.v.value()), pos_weight.map(|w| w.v.value()));
    compute(py, move || {
        loss::binary_cross_entropy_with_logits(&x, &t, w.as_deref(), pw.as_deref(), red)
    })
    .map(PyVar::new)
}

/// Soft Dice loss, softmax over classes against int64 labels.
#[pyfunction]
fn dice_loss_labels(
    py: Python<'_>,
    x: PyRef<'_, PyVar>,
    target: PyReadonlyArrayDyn<'_, i64>,
    smooth: f64,
    include_background: bool,
    ignore_index: i64,
    reduction: &str,
) -> PyResult<PyVar> {
    let reduction = Reduction::parse("dice_loss", reduction).map_err(to_py)?;
    let (labels, shape) = labels_of(&target);
    let x = x.v.clone();
    let target = DiceTarget::Labels {
        labels,
        shape,
        ignore_index,
    };
    let params = DiceParams {
        smooth,
        include_background,
        reduction,
    };
    compute(py, move || loss::dice_loss(&x, target, params)).map(PyVar::new)
}

/// Soft Dice loss, elementwise sigmoid against targets in [0, 1].
#[pyfunction]
fn dice_loss_probs(
    py: Python<'_>,
    x: PyRef<'_, PyVar>,
    target: PyRef<'_, PyVar>,
    smooth: f64,
    reduction: &str,
) -> PyResult<PyVar> {
    let reduction = Reduction::parse("dice_loss", reduction).map_err(to_py)?;
    let x = x.v.clone();
    let target = DiceTarget::Probs(target.v.value());
    let params = DiceParams {
        smooth,
        include_background: true,
        reduction,
    };
    compute(py, move || loss::dice_loss(&x, target, params)).map(PyVar::new)
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
    m.add_function(wrap_pyfunction!(binary_cross_entropy_with_logits, m)?)?;
    m.add_function(wrap_pyfunction!(dice_loss_labels, m)?)?;
    m.add_function(wrap_pyfunction!(dice_loss_probs, m)?)?;
    Ok(())
}
