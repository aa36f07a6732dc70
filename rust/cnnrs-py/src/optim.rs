//! Bindings for the optimizers: state lives in Rust; Python passes the
//! group's hyper-parameters at every step (so LR schedules just edit them).

use std::sync::Mutex;

use cnnrs_core::optim::{Adam, AdamConfig, Sgd, SgdConfig};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::{compute, PyVar};

#[pyclass(name = "Sgd", module = "cnnrs._native", frozen)]
struct PySgd {
    inner: Mutex<Sgd>,
}

#[pymethods]
impl PySgd {
    #[new]
    fn new(params: Vec<PyRef<'_, PyVar>>) -> Self {
        let vars = params.iter().map(|p| p.v.clone()).collect();
        Self {
            inner: Mutex::new(Sgd::new(vars)),
        }
    }

    /// One update of every parameter that has a gradient, GIL released.
    fn step(
        &self,
        py: Python<'_>,
        lr: f32,
        momentum: f32,
        dampening: f32,
        weight_decay: f32,
        nesterov: bool,
    ) -> PyResult<()> {
        let cfg = SgdConfig {
            lr,
            momentum,
            dampening,
            weight_decay,
            nesterov,
        };
        let mut guard = self.inner.lock().map_err(|_| {
            PyRuntimeError::new_err("SGD: optimizer state poisoned by an earlier failure")
        })?;
        let opt: &mut Sgd = &mut guard;
        compute(py, move || opt.step(&cfg))
    }
}

#[pyclass(name = "Adam", module = "cnnrs._native", frozen)]
struct PyAdam {
    inner: Mutex<Adam>,
}

#[pymethods]
impl PyAdam {
    #[new]
    fn new(params: Vec<PyRef<'_, PyVar>>) -> Self {
        let vars = params.iter().map(|p| p.v.clone()).collect();
        Self {
            inner: Mutex::new(Adam::new(vars)),
        }
    }

    /// One Adam (or AdamW when `decoupled`) update, GIL released.
    fn step(
        &self,
        py: Python<'_>,
        lr: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
        weight_decay: f32,
        decoupled: bool,
        amsgrad: bool,
    ) -> PyResult<()> {
        let cfg = AdamConfig {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
            decoupled,
            amsgrad,
        };
        let mut guard = self.inner.lock().map_err(|_| {
            PyRuntimeError::new_err("Adam: optimizer state poisoned by an earlier failure")
        })?;
        let opt: &mut Adam = &mut guard;
        compute(py, move || opt.step(&cfg))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PySgd>()?;
    m.add_class::<PyAdam>()?;
    Ok(())
}
