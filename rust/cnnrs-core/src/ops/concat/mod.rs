//! `cat`: concatenation of tensors along one dimension (PyTorch's
//! `torch.cat`), with its backward (the gradient split back into pieces).
//!
//! Layout: with `d` the dimension, `outer = prod(shape[..d])` and `inner =
//! prod(shape[d+1..])`, every tensor is `outer` contiguous blocks of
//! `size_d * inner` floats, and the output interleaves them block by block:
//! block `o` of the output is block `o` of tensor 0, then of tensor 1, ...

use crate::arg_err;
use crate::autograd::{Backward, Var};
use crate::error::{fmt_shape, Result};
use crate::ops::reduce::normalize_dim;
use crate::shape_err;
use crate::tensor::Tensor;

pub mod reference;
#[cfg(test)]
mod tests;

/// Below this many floats a copy runs on the calling thread.
const PAR_MIN_FLOATS: usize = 1 << 20;

/// The concatenation of tensors with these shapes along `dim`: the resolved
/// dimension and the output shape.
///
/// # Errors
/// `InvalidArgument` for an empty list, a 0-d tensor or a dim out of range;
/// `ShapeMismatch` when ranks differ or sizes differ outside `dim`.
pub fn cat_shape(shapes: &[&[usize]], dim: i64) -> Result<(usize, Vec<usize>)> {
    let Some(first) = shapes.first() else {
        return Err(arg_err!("cat: expected a non-empty list of tensors"));
    };
    if let Some(i) = shapes.iter().position(|s| s.is_empty()) {
        return Err(arg_err!(
            "cat: zero-dimensional tensor (at position {i}) cannot be concatenated"
        ));
    }
    let d = normalize_dim("cat", dim, first)?;
    let mut out = first.to_vec();
    out[d] = 0;
    for (i, s) in shapes.iter().enumerate() {
        if s.len() != first.len() {
            return Err(shape_err!(
                "cat: tensors must have the same number of dimensions: tensor 0 has shape {} \
                 but tensor {i} has shape {}",
                fmt_shape(first),
                fmt_shape(s)
            ));
        }
        if let Some(k) = (0..s.len()).find(|&k| k != d && s[k] != first[k]) {
            return Err(shape_err!(
                "cat: sizes of tensors must match except in dimension {d}: tensor 0 has shape \
                 {} but tensor {i} has shape {} (dimension {k}: {} vs {})",
                fmt_shape(first),
                fmt_shape(s),
                first[k],
                s[k]
            ));
        }
        out[d] = out[d]
            .checked_add(s[d])
            .ok_or_else(|| arg_err!("cat: concatenated size is too large"))?;
    }
    crate::tensor::checked_numel(&out)?;
    Ok((d, out))
}

/// `prod(shape[..d])` and `prod(shape[d+1..])`.
fn outer_inner(shape: &[usize], d: usize) -> (usize, usize) {
    (shape[..d].iter().product(), shape[d + 1..].iter().product())
}

/// Concatenation of `xs` along `dim`.
///
/// # Errors
/// As [`cat_shape`]; `OutOfMemory` for outputs too large to allocate.
pub fn forward(xs: &[&Tensor], dim: i64) -> Result<Tensor> {
    forward_tuned(xs, dim, PAR_MIN_FLOATS)
}

pub(crate) fn forward_tuned(xs: &[&Tensor], dim: i64, par_min: usize) -> Result<Tensor> {
    let shapes: Vec<&[usize]> = xs.iter().map(|x| x.shape()).collect();
    let (d, shape) = cat_shape(&shapes, dim)?;
    let (outer, inner) = outer_inner(&shape, d);
    let mut out = Tensor::zeros(&shape)?;
    let block = shape[d] * inner; // one output block [size_d, inner]
    if out.numel() == 0 {
        return Ok(out);
    }
    let fill = |o: usize, dst: &mut [f32]| {
        let mut off = 0;
        for x in xs {
            let len = x.shape()[d] * inner;
            dst[off..off + len].copy_from_slice(&x.data()[o * len..(o + 1) * len]);
            off += len;
        }
    };
    if outer >= 2 && out.numel() >= par_min && crate::parallel::get_num_threads() > 1 {
        crate::parallel::chunks_mut(out.data_mut(), block, 1, fill);
    } else {
        for (o, dst) in out.data_mut().chunks_exact_mut(block).enumerate() {
            fill(o, dst);
        }
    }
    debug_assert_eq!(outer * block, out.numel());
    Ok(out)
}

/// The gradient of each input, or `None` where `needs` says no: the pieces of
/// `grad_out` along `d` with sizes `sizes`.
///
/// # Errors
/// `OutOfMemory` when a piece cannot be allocated.
pub fn backward(
    grad_out: &Tensor,
    d: usize,
    shapes: &[Vec<usize>],
    needs: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    let (outer, inner) = outer_inner(grad_out.shape(), d);
    let block = grad_out.shape()[d] * inner;
    let g = grad_out.data();
    let mut off = 0;
    let mut grads = Vec::with_capacity(shapes.len());
    for (s, &need) in shapes.iter().zip(needs) {
        let len = s[d] * inner;
        if need {
            let mut t = Tensor::zeros(s)?;
            if len > 0 {
                for (o, dst) in t.data_mut().chunks_exact_mut(len).enumerate() {
                    dst.copy_from_slice(&g[o * block + off..o * block + off + len]);
                }
            }
            debug_assert!(len == 0 || t.numel() == outer * len);
            grads.push(Some(t));
        } else {
            grads.push(None);
        }
        off += len;
    }
    Ok(grads)
}

struct CatBackward {
    d: usize,
    shapes: Vec<Vec<usize>>,
}

impl Backward for CatBackward {
    fn name(&self) -> &'static str {
        "CatBackward"
    }
    fn backward(&self, g: &Tensor, _inputs: &[Var], needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        backward(g, self.d, &self.shapes, needs)
    }
}

/// Autograd concatenation of `xs` along `dim` (negative counts from the end).
///
/// # Errors
/// As [`forward`].
pub fn cat(xs: &[Var], dim: i64) -> Result<Var> {
    let values: Vec<_> = xs.iter().map(|x| x.value()).collect();
    let refs: Vec<&Tensor> = values.iter().map(|v| v.as_ref()).collect();
    let out = forward(&refs, dim)?;
    let (d, _) = cat_shape(&refs.iter().map(|t| t.shape()).collect::<Vec<_>>(), dim)?;
    Ok(Var::from_op(
        out,
        CatBackward {
            d,
            shapes: refs.iter().map(|t| t.shape().to_vec()).collect(),
        },
        xs.to_vec(),
    ))
}
