//! `_native.Var`: a handle on a core autograd value. The Python `cnnrs.Tensor`
//! wraps one.

use cnnrs_core::{Tensor, Var};
use numpy::{PyArray1, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::{compute, to_py};

#[pyclass(name = "Var", module = "cnnrs._native", frozen)]
pub struct PyVar {
    pub v: Var,
}

impl PyVar {
    pub fn new(v: Var) -> Self {
        Self { v }
    }
}

/// Copies a float32 numpy array (any strides) into a core tensor.
pub(crate) fn tensor_from_array(arr: &PyReadonlyArrayDyn<'_, f32>) -> PyResult<Tensor> {
    let shape = arr.shape().to_vec();
    let data: Vec<f32> = match arr.as_slice() {
        Ok(s) => s.to_vec(),
        Err(_) => arr.as_array().iter().copied().collect(),
    };
    Tensor::new(shape, data).map_err(to_py)
}

/// Copies a core tensor into a new numpy array.
pub(crate) fn array_from_tensor<'py>(
    py: Python<'py>,
    t: &Tensor,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let flat = PyArray1::from_slice(py, t.data());
    flat.reshape(t.shape().to_vec())
}

#[pymethods]
impl PyVar {
    /// A leaf from a float32 array (copied).
    #[staticmethod]
    #[pyo3(signature = (array, requires_grad=false))]
    fn from_numpy(array: PyReadonlyArrayDyn<'_, f32>, requires_grad: bool) -> PyResult<Self> {
        Ok(Self::new(Var::leaf(
            tensor_from_array(&array)?,
            requires_grad,
        )))
    }

    /// The value as a new float32 numpy array.
    fn numpy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        array_from_tensor(py, &self.v.value())
    }

    #[getter]
    fn shape(&self) -> Vec<usize> {
        self.v.shape()
    }

    #[getter]
    fn requires_grad(&self) -> bool {
        self.v.requires_grad()
    }

    fn set_requires_grad(&self, flag: bool) -> PyResult<()> {
        self.v.set_requires_grad(flag).map_err(to_py)
    }

    #[getter]
    fn is_leaf(&self) -> bool {
        self.v.is_leaf()
    }

    #[getter]
    fn grad_fn(&self) -> Option<&'static str> {
        self.v.grad_fn_name()
    }

    /// The accumulated gradient as a new leaf, or None.
    fn grad(&self) -> Option<PyVar> {
        self.v.grad().map(|g| PyVar::new(Var::leaf(g, false)))
    }

    fn set_grad(&self, grad: Option<PyRef<'_, PyVar>>) -> PyResult<()> {
        let g = grad.map(|g| (*g.v.value()).clone());
        self.v.set_grad(g).map_err(to_py)
    }

    /// Replaces the value in place (same shape), keeping identity.
    fn set_value(&self, array: PyReadonlyArrayDyn<'_, f32>) -> PyResult<()> {
        let t = tensor_from_array(&array)?;
        self.v.set_value(t).map_err(to_py)
    }

    #[pyo3(signature = (grad=None))]
    fn backward(&self, py: Python<'_>, grad: Option<PyRef<'_, PyVar>>) -> PyResult<()> {
        let g = grad.map(|g| g.v.value());
        let v = self.v.clone();
        compute(py, move || v.backward_shared(g))
    }

    fn detach(&self) -> PyVar {
        PyVar::new(self.v.detach())
    }

    fn item(&self) -> PyResult<f32> {
        let t = self.v.value();
        if t.numel() != 1 {
            return Err(PyValueError::new_err(format!(
                "item: only one-element tensors can be converted to a number, got shape {}",
                cnnrs_core::error::fmt_shape(t.shape())
            )));
        }
        Ok(t.data()[0])
    }

    /// True when both handles refer to the same value object.
    fn same(&self, other: PyRef<'_, PyVar>) -> bool {
        self.v.ptr_eq(&other.v)
    }
}
