//! `max_pool2d` over NCHW input, with PyTorch's semantics (average pooling,
//! plain and adaptive, is in [`avg`]).
//!
//! Layout: input [n, c, h_in, w_in] -> output [n, c, h_out, w_out], each of
//! the n*c planes pooled on its own, where
//! `h_out = floor((h_in + 2*padding - dilation*(kernel-1) - 1) / stride) + 1`
//! (ceil instead of floor in ceil mode, dropping a last window that would
//! start in the right padding); see [`params::out_dim`]. Padding is implicit
//! -inf: padded taps are never read.
//!
//! The forward pass keeps, per output, the flat index `h*w_in + w` of the
//! chosen element inside its plane (PyTorch's `return_indices` form). Ties
//! pick the first maximal element in scan order, a NaN in the window wins
//! (the output is NaN), as in PyTorch. Backward adds each output gradient
//! into the chosen element.

use std::sync::Arc;

use crate::autograd::{Backward, Var};
use crate::error::{CnnError, Result};
use crate::ops::conv2d::uninit_buffer;
use crate::tensor::{checked_numel, Tensor};

pub mod avg;
#[cfg(test)]
mod avg_tests;
mod backward;
mod forward;
pub mod params;
pub mod reference;
#[cfg(test)]
mod tests;

pub use forward::NO_INDEX;
pub use params::{MaxPool2dParams, Pool2dGeometry};

/// Runs `fill` on the first `n` (uninitialised) slots of a new buffer,
/// which it must initialise entirely, and returns the buffer.
fn filled_buffer<T>(
    n: usize,
    what: &str,
    fill: impl FnOnce(&mut [std::mem::MaybeUninit<T>]),
) -> Result<Vec<T>> {
    let mut v: Vec<T> = uninit_buffer(n)
        .map_err(|_| CnnError::OutOfMemory(format!("max_pool2d: could not allocate {n} {what}")))?;
    fill(&mut v.spare_capacity_mut()[..n]);
    // SAFETY: `fill` (the kernels below) initialises all `n` slots: every
    // chunk goes through `zero_init` before the kernel writes it.
    unsafe { v.set_len(n) };
    Ok(v)
}

/// Max-pooled output of `x`.
///
/// # Errors
/// See [`MaxPool2dParams::geometry`] (non-4-D input, zero kernel, stride or
/// dilation, padding over half the kernel, output smaller than 1x1).
pub fn forward(x: &Tensor, p: &MaxPool2dParams) -> Result<Tensor> {
    let g = p.geometry(x.shape())?;
    let shape = g.out_shape();
    // [n, c, h_out, w_out]
    let out = filled_buffer(checked_numel(&shape)?, "outputs", |out| {
        forward::forward_kernel(x.data(), &g, out, None)
    })?;
    Ok(Tensor::from_parts(shape.to_vec(), out))
}

/// Max-pooled output of `x` and, per output element, the flat index inside
/// its input plane of the element chosen ([`NO_INDEX`] for a window that
/// covers only padding).
///
/// # Errors
/// As [`forward`].
pub fn forward_with_indices(x: &Tensor, p: &MaxPool2dParams) -> Result<(Tensor, Vec<u32>)> {
    let g = p.geometry(x.shape())?;
    let shape = g.out_shape();
    let numel = checked_numel(&shape)?;
    // Both [n, c, h_out, w_out].
    let mut idx: Vec<u32> = uninit_buffer(numel).map_err(|_| {
        CnnError::OutOfMemory(format!("max_pool2d: could not allocate {numel} indices"))
    })?;
    let out = filled_buffer(numel, "outputs", |out| {
        forward::forward_kernel(
            x.data(),
            &g,
            out,
            Some(&mut idx.spare_capacity_mut()[..numel]),
        )
    })?;
    // SAFETY: `forward_kernel` initialised all `numel` indices along with
    // the outputs (each chunk through `zero_init`, then written).
    unsafe { idx.set_len(numel) };
    Ok((Tensor::from_parts(shape.to_vec(), out), idx))
}

/// Gradient of `max_pool2d` with respect to its input of shape `in_shape`,
/// from the output gradient and the indices of [`forward_with_indices`].
///
/// # Errors
/// `ShapeMismatch` when `grad_out` and `indices` do not describe the same
/// number of whole planes of `in_shape`.
pub fn backward(grad_out: &Tensor, indices: &[u32], in_shape: &[usize]) -> Result<Tensor> {
    let go = grad_out.shape();
    let ok = in_shape.len() == 4
        && go.len() == 4
        && go[..2] == in_shape[..2]
        && indices.len() == grad_out.numel();
    if !ok {
        return Err(crate::shape_err!(
            "max_pool2d backward: grad_out {} with {} indices does not match input {}",
            crate::error::fmt_shape(go),
            indices.len(),
            crate::error::fmt_shape(in_shape)
        ));
    }
    // [n, c, h_in, w_in]
    let grad_in = filled_buffer(checked_numel(in_shape)?, "gradients", |gi| {
        backward::backward_kernel(
            grad_out.data(),
            indices,
            in_shape[2] * in_shape[3],
            go[2] * go[3],
            gi,
        )
    })?;
    Ok(Tensor::from_parts(in_shape.to_vec(), grad_in))
}

struct MaxPool2dBackward {
    indices: Arc<Vec<u32>>,
    in_shape: Vec<usize>,
}

impl Backward for MaxPool2dBackward {
    fn name(&self) -> &'static str {
        "MaxPool2DWithIndicesBackward"
    }
    fn backward(
        &self,
        g: &Tensor,
        _inputs: &[Var],
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(backward(g, &self.indices, &self.in_shape)?)])
    }
}

/// Autograd `max_pool2d`. Indices are computed and kept only when a graph is
/// recorded.
///
/// # Errors
/// As [`forward`].
pub fn max_pool2d(x: &Var, p: &MaxPool2dParams) -> Result<Var> {
    let xv = x.value();
    if !Var::any_requires_grad(&[x]) {
        return Ok(Var::leaf(forward(&xv, p)?, false));
    }
    let (out, idx) = forward_with_indices(&xv, p)?;
    Ok(record(out, Arc::new(idx), &xv, x))
}

fn record(out: Tensor, idx: Arc<Vec<u32>>, xv: &Tensor, x: &Var) -> Var {
    let back = MaxPool2dBackward {
        indices: idx,
        in_shape: xv.shape().to_vec(),
    };
    Var::from_op(out, back, vec![x.clone()])
}

/// Autograd `max_pool2d` that also returns the indices as PyTorch does with
/// `return_indices=True`: int64, flat `h*w_in + w` inside each plane, with
/// -1 for a window that covers only padding (PyTorch returns an arbitrary
/// out-of-plane index there).
///
/// # Errors
/// As [`forward`].
pub fn max_pool2d_with_indices(x: &Var, p: &MaxPool2dParams) -> Result<(Var, Vec<i64>)> {
    let xv = x.value();
    let (out, idx) = forward_with_indices(&xv, p)?;
    let idx64 = idx
        .iter()
        .map(|&i| if i == NO_INDEX { -1 } else { i as i64 })
        .collect();
    Ok((record(out, Arc::new(idx), &xv, x), idx64))
}
