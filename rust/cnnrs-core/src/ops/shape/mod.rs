//! `reshape` (and `flatten`, a reshape). Data is copied once into the new
//! tensor; the gradient is reshaped back.

use crate::autograd::{Backward, Var};
use crate::error::{fmt_shape, Result};
use crate::tensor::Tensor;
use crate::{arg_err, shape_err};

#[cfg(test)]
mod tests;

/// Resolves a PyTorch-style target shape with at most one `-1` against
/// `numel` elements.
///
/// # Errors
/// `InvalidArgument` for more than one `-1` or a negative size;
/// `ShapeMismatch` when the sizes do not multiply to `numel`.
pub fn infer_shape(op: &str, from: &[usize], target: &[i64]) -> Result<Vec<usize>> {
    let numel: usize = from.iter().product();
    let mut infer = None;
    let mut known: usize = 1;
    for (i, &d) in target.iter().enumerate() {
        if d == -1 {
            if infer.is_some() {
                return Err(arg_err!(
                    "{op}: only one dimension can be -1, got {target:?}"
                ));
            }
            infer = Some(i);
        } else if d < 0 {
            return Err(arg_err!("{op}: invalid size {d} in shape {target:?}"));
        } else {
            known = known
                .checked_mul(d as usize)
                .ok_or_else(|| arg_err!("{op}: shape {target:?} is too large"))?;
        }
    }
    let mut out: Vec<usize> = target.iter().map(|&d| d.max(0) as usize).collect();
    if let Some(i) = infer {
        if known == 0 || numel % known != 0 {
            return Err(shape_err!(
                "{op}: shape {target:?} is invalid for input of shape {} ({numel} elements)",
                fmt_shape(from)
            ));
        }
        out[i] = numel / known;
    } else if known != numel {
        return Err(shape_err!(
            "{op}: shape {target:?} is invalid for input of shape {} ({numel} elements)",
            fmt_shape(from)
        ));
    }
    Ok(out)
}

struct ReshapeBackward {
    in_shape: Vec<usize>,
}

impl Backward for ReshapeBackward {
    fn name(&self) -> &'static str {
        "ReshapeBackward"
    }
    fn backward(
        &self,
        g: &Tensor,
        _inputs: &[Var],
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(g.clone().reshaped(self.in_shape.clone())?)])
    }
}

/// Autograd reshape to `target` (may hold one `-1`).
///
/// # Errors
/// See [`infer_shape`].
pub fn reshape(x: &Var, target: &[i64]) -> Result<Var> {
    let xv = x.value();
    let shape = infer_shape("reshape", xv.shape(), target)?;
    let out = (*xv).clone().reshaped(shape)?;
    Ok(Var::from_op(
        out,
        ReshapeBackward {
            in_shape: xv.shape().to_vec(),
        },
        vec![x.clone()],
    ))
}

/// Flattens dims `start..=end` into one (PyTorch `flatten`; the `nn.Flatten`
/// layer uses `start = 1, end = -1`).
///
/// # Errors
/// `InvalidArgument` for dims out of range or `start > end`.
pub fn flatten(x: &Var, start: i64, end: i64) -> Result<Var> {
    let shape = x.shape();
    if shape.is_empty() {
        return reshape(x, &[1]);
    }
    let s = crate::ops::reduce::normalize_dim("flatten", start, &shape)?;
    let e = crate::ops::reduce::normalize_dim("flatten", end, &shape)?;
    if s > e {
        return Err(arg_err!(
            "flatten: start_dim {start} comes after end_dim {end} for shape {}",
            fmt_shape(&shape)
        ));
    }
    let mut target: Vec<i64> = shape[..s].iter().map(|&d| d as i64).collect();
    target.push(shape[s..=e].iter().product::<usize>() as i64);
    target.extend(shape[e + 1..].iter().map(|&d| d as i64));
    reshape(x, &target)
}
