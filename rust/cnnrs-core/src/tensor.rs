//! A dense, contiguous, row-major float32 tensor that owns its storage.
//! Layout of image batches is NCHW, as in PyTorch.

use crate::error::{fmt_shape, CnnError, Result};

/// Largest element count a single tensor may hold (2^34 floats = 64 GiB).
/// Anything bigger is refused with `OutOfMemory` before allocating, so absurd
/// shapes coming from Python never abort the process.
pub const MAX_NUMEL: usize = 1 << 34;

#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

/// Number of elements of `shape`, or an error when the product overflows or
/// exceeds [`MAX_NUMEL`].
pub fn checked_numel(shape: &[usize]) -> Result<usize> {
    let mut n: usize = 1;
    for &d in shape {
        n = n.checked_mul(d).ok_or_else(|| {
            CnnError::OutOfMemory(format!("tensor of shape {} is too large", fmt_shape(shape)))
        })?;
    }
    if n > MAX_NUMEL {
        return Err(CnnError::OutOfMemory(format!(
            "tensor of shape {} has {n} elements, more than the limit of {MAX_NUMEL}",
            fmt_shape(shape)
        )));
    }
    Ok(n)
}

/// Allocates a zeroed vector, reporting allocation failure as an error
/// instead of aborting.
pub fn try_zeros(n: usize) -> Result<Vec<f32>> {
    let mut v: Vec<f32> = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        CnnError::OutOfMemory(format!("could not allocate {n} floats ({} bytes)", n * 4))
    })?;
    v.resize(n, 0.0);
    Ok(v)
}

impl Tensor {
    /// Wraps `data` with `shape`.
    ///
    /// # Errors
    /// `ShapeMismatch` when `data.len()` differs from the product of `shape`.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let n = checked_numel(&shape)?;
        if n != data.len() {
            return Err(CnnError::ShapeMismatch(format!(
                "tensor: shape {} needs {n} elements but {} were given",
                fmt_shape(&shape),
                data.len()
            )));
        }
        Ok(Self { shape, data })
    }

    /// A zero tensor.
    ///
    /// # Errors
    /// `OutOfMemory` for shapes too large to allocate.
    pub fn zeros(shape: &[usize]) -> Result<Self> {
        let n = checked_numel(shape)?;
        Ok(Self {
            shape: shape.to_vec(),
            data: try_zeros(n)?,
        })
    }

    /// A tensor filled with `value`.
    ///
    /// # Errors
    /// `OutOfMemory` for shapes too large to allocate.
    pub fn full(shape: &[usize], value: f32) -> Result<Self> {
        let mut t = Self::zeros(shape)?;
        t.data.fill(value);
        Ok(t)
    }

    /// A 0-dimensional tensor holding one value.
    pub fn scalar(value: f32) -> Self {
        Self {
            shape: vec![],
            data: vec![value],
        }
    }

    /// Internal constructor for kernels that computed `data` for `shape`.
    /// Debug builds check the length.
    pub(crate) fn from_parts(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }
    pub fn numel(&self) -> usize {
        self.data.len()
    }
    pub fn data(&self) -> &[f32] {
        &self.data
    }
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// The same data under another shape with the same element count.
    ///
    /// # Errors
    /// `ShapeMismatch` when the element counts differ.
    pub fn reshaped(mut self, shape: Vec<usize>) -> Result<Self> {
        let n = checked_numel(&shape)?;
        if n != self.data.len() {
            return Err(CnnError::ShapeMismatch(format!(
                "reshape: cannot reshape tensor of shape {} ({} elements) into {}",
                fmt_shape(&self.shape),
                self.data.len(),
                fmt_shape(&shape)
            )));
        }
        self.shape = shape;
        Ok(self)
    }

    /// The four dimensions of an NCHW tensor.
    ///
    /// # Errors
    /// `ShapeMismatch` naming `op` when the tensor is not 4-D.
    pub fn dims4(&self, op: &str, what: &str) -> Result<[usize; 4]> {
        match self.shape[..] {
            [a, b, c, d] => Ok([a, b, c, d]),
            _ => Err(CnnError::ShapeMismatch(format!(
                "{op}: expected a 4-D {what} (N, C, H, W) but got shape {}",
                fmt_shape(&self.shape)
            ))),
        }
    }
}
