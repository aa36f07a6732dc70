//! `sum` and `mean`: over all elements (0-d result) or over one dimension
//! (with `keepdim` as in PyTorch). Sums accumulate in f64 so large reductions
//! keep float32 precision.

use crate::arg_err;
use crate::autograd::{Backward, Var};
use crate::error::{fmt_shape, Result};
use crate::tensor::Tensor;

pub mod reference;
#[cfg(test)]
mod tests;

/// Which elements to reduce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    All,
    /// One dimension (already normalised to `0..ndim`), and keepdim.
    Dim(usize, bool),
}

/// Resolves a possibly negative `dim` against `ndim`.
///
/// # Errors
/// `InvalidArgument` naming `op` when `dim` is out of range.
pub fn normalize_dim(op: &str, dim: i64, shape: &[usize]) -> Result<usize> {
    let nd = shape.len() as i64;
    let d = if dim < 0 { dim + nd } else { dim };
    if d < 0 || d >= nd.max(1) || (nd == 0 && d != 0) {
        return Err(arg_err!(
            "{op}: dim {dim} is out of range for a tensor of shape {} (expected -{}..{})",
            fmt_shape(shape),
            nd.max(1),
            nd.max(1) - 1
        ));
    }
    Ok(d as usize)
}

fn out_shape(shape: &[usize], axis: Axis) -> Vec<usize> {
    match axis {
        Axis::All => vec![],
        Axis::Dim(d, keep) => {
            let mut s = shape.to_vec();
            if s.is_empty() {
                return s;
            }
            if keep {
                s[d] = 1;
            } else {
                s.remove(d);
            }
            s
        }
    }
}

/// (outer, reduced, inner) extents of a reduction over `axis`.
fn split(shape: &[usize], axis: Axis) -> (usize, usize, usize) {
    match axis {
        Axis::All => (1, shape.iter().product(), 1),
        Axis::Dim(_, _) if shape.is_empty() => (1, 1, 1),
        Axis::Dim(d, _) => (
            shape[..d].iter().product(),
            shape[d],
            shape[d + 1..].iter().product(),
        ),
    }
}

/// Sum (or mean when `mean`) of `x` over `axis`.
pub fn forward(x: &Tensor, axis: Axis, mean: bool) -> Tensor {
    let (outer, red, inner) = split(x.shape(), axis);
    let xd = x.data();
    if inner == 1 {
        // Each output sums one contiguous run (all elements, or the last
        // dimension): blocked f64 sums, on the pool for long runs.
        let scale = if mean { 1.0 / red as f64 } else { 1.0 };
        let out: Vec<f32> = (0..outer)
            .map(|o| (crate::kernels::sum::sum_f64_par(&xd[o * red..(o + 1) * red]) * scale) as f32)
            .collect();
        return Tensor::from_parts(out_shape(x.shape(), axis), out);
    }
    let mut out = vec![0.0f32; outer * inner];
    let mut acc = vec![0.0f64; inner];
    for o in 0..outer {
        acc.fill(0.0);
        for r in 0..red {
            let row = &xd[(o * red + r) * inner..(o * red + r + 1) * inner];
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += v as f64;
            }
        }
        let scale = if mean { 1.0 / red as f64 } else { 1.0 };
        for (dst, a) in out[o * inner..(o + 1) * inner].iter_mut().zip(&acc) {
            *dst = (a * scale) as f32;
        }
    }
    Tensor::from_parts(out_shape(x.shape(), axis), out)
}

/// Gradient of the reduction: `g` spread back over the reduced elements.
pub fn backward(g: &Tensor, in_shape: &[usize], axis: Axis, mean: bool) -> Result<Tensor> {
    let (outer, red, inner) = split(in_shape, axis);
    let scale = if mean && red > 0 {
        1.0 / red as f32
    } else {
        1.0
    };
    let mut out = Tensor::zeros(in_shape)?;
    let gd = g.data();
    let od = out.data_mut();
    for o in 0..outer {
        for r in 0..red {
            let base = (o * red + r) * inner;
            for i in 0..inner {
                od[base + i] = gd[o * inner + i] * scale;
            }
        }
    }
    Ok(out)
}

struct ReduceBackward {
    in_shape: Vec<usize>,
    axis: Axis,
    mean: bool,
}

impl Backward for ReduceBackward {
    fn name(&self) -> &'static str {
        if self.mean {
            "MeanBackward"
        } else {
            "SumBackward"
        }
    }
    fn backward(
        &self,
        g: &Tensor,
        _inputs: &[Var],
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(backward(
            g,
            &self.in_shape,
            self.axis,
            self.mean,
        )?)])
    }
}

/// Autograd sum/mean.
///
/// # Errors
/// `InvalidArgument` when `mean` is asked of an empty tensor.
pub fn reduce(x: &Var, axis: Axis, mean: bool) -> Result<Var> {
    let xv = x.value();
    let out = forward(&xv, axis, mean);
    let back = ReduceBackward {
        in_shape: xv.shape().to_vec(),
        axis,
        mean,
    };
    Ok(Var::from_op(out, back, vec![x.clone()]))
}
