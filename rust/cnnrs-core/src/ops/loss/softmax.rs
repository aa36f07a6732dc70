//! `softmax` and `log_softmax` along one dim, forward and backward.

use std::sync::Arc;

use super::{lane_stats, split};
use crate::autograd::{Backward, Var};
use crate::error::Result;
use crate::ops::reduce::normalize_dim;
use crate::tensor::{try_zeros, Tensor};

/// `softmax` (or `log_softmax` when `log`) of `x` along dim `d` (already
/// normalised to `0..ndim`).
///
/// # Errors
/// `OutOfMemory` for tensors too large to allocate.
pub fn softmax_forward(x: &Tensor, d: usize, log: bool) -> Result<Tensor> {
    let (outer, red, inner) = split(x.shape(), d);
    let xd = x.data();
    let mut out = try_zeros(x.numel())?; // x's shape
    let mut max = vec![0.0f32; inner];
    let mut sum = vec![0.0f64; inner];
    let block = red * inner;
    for o in 0..outer {
        let xb = &xd[o * block..(o + 1) * block];
        let ob = &mut out[o * block..(o + 1) * block];
        lane_stats(xb, red, inner, &mut max, &mut sum);
        if log {
            let ln: Vec<f32> = sum.iter().map(|&s| s.ln() as f32).collect();
            for r in 0..red {
                let (xr, or) = (
                    &xb[r * inner..(r + 1) * inner],
                    &mut ob[r * inner..(r + 1) * inner],
                );
                for (((y, &v), &m), &l) in or.iter_mut().zip(xr).zip(&max).zip(&ln) {
                    *y = (v - m) - l;
                }
            }
        } else {
            let inv: Vec<f32> = sum.iter().map(|&s| (1.0 / s) as f32).collect();
            for r in 0..red {
                let (xr, or) = (
                    &xb[r * inner..(r + 1) * inner],
                    &mut ob[r * inner..(r + 1) * inner],
                );
                for (((y, &v), &m), &i) in or.iter_mut().zip(xr).zip(&max).zip(&inv) {
                    *y = (v - m).exp() * i;
                }
            }
        }
    }
    Ok(Tensor::from_parts(x.shape().to_vec(), out))
}

/// Input gradient of `softmax` (`log`: of `log_softmax`) along dim `d`, from
/// the forward output `y` and the output gradient `g`:
/// softmax `y * (g - sum(g*y))`, log-softmax `g - exp(y) * sum(g)`.
///
/// # Errors
/// `OutOfMemory` for tensors too large to allocate.
pub fn softmax_backward(y: &Tensor, g: &Tensor, d: usize, log: bool) -> Result<Tensor> {
    let (outer, red, inner) = split(y.shape(), d);
    let (yd, gd) = (y.data(), g.data());
    let mut out = try_zeros(y.numel())?; // y's shape
    let mut acc = vec![0.0f64; inner];
    let block = red * inner;
    for o in 0..outer {
        let (yb, gb) = (
            &yd[o * block..(o + 1) * block],
            &gd[o * block..(o + 1) * block],
        );
        let ob = &mut out[o * block..(o + 1) * block];
        acc.fill(0.0);
        for r in 0..red {
            let rows = yb[r * inner..(r + 1) * inner]
                .iter()
                .zip(&gb[r * inner..(r + 1) * inner]);
            for (a, (&yv, &gv)) in acc.iter_mut().zip(rows) {
                *a += if log {
                    gv as f64
                } else {
                    gv as f64 * yv as f64
                };
            }
        }
        let acc32: Vec<f32> = acc.iter().map(|&a| a as f32).collect();
        for r in 0..red {
            let s = r * inner..(r + 1) * inner;
            let lanes = ob[s.clone()]
                .iter_mut()
                .zip(&yb[s.clone()])
                .zip(&gb[s])
                .zip(&acc32);
            for (((dx, &yv), &gv), &a) in lanes {
                *dx = if log {
                    gv - yv.exp() * a
                } else {
                    yv * (gv - a)
                };
            }
        }
    }
    Ok(Tensor::from_parts(y.shape().to_vec(), out))
}

struct SoftmaxBackward {
    y: Arc<Tensor>,
    dim: usize,
    log: bool,
}

impl Backward for SoftmaxBackward {
    fn name(&self) -> &'static str {
        if self.log {
            "LogSoftmaxBackward"
        } else {
            "SoftmaxBackward"
        }
    }
    fn backward(
        &self,
        g: &Tensor,
        _inputs: &[Var],
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(softmax_backward(
            &self.y, g, self.dim, self.log,
        )?)])
    }
}

/// `dim` resolved against `shape`. A 0-d tensor accepts -1 and 0 as in
/// PyTorch (`reduce::normalize_dim` refuses -1 there).
pub(crate) fn resolve_dim(op: &str, dim: i64, shape: &[usize]) -> Result<usize> {
    if shape.is_empty() && dim == -1 {
        return Ok(0);
    }
    normalize_dim(op, dim, shape)
}

fn softmax_var(x: &Var, dim: i64, log: bool) -> Result<Var> {
    let op = if log { "log_softmax" } else { "softmax" };
    let xv = x.value();
    let d = resolve_dim(op, dim, xv.shape())?;
    let y = softmax_forward(&xv, d, log)?;
    if !Var::any_requires_grad(&[x]) {
        return Ok(Var::leaf(y, false));
    }
    let y = Arc::new(y);
    Ok(Var::from_op_arc(
        y.clone(),
        SoftmaxBackward { y, dim: d, log },
        vec![x.clone()],
    ))
}

/// Autograd `softmax` along `dim` (negative counts from the end).
///
/// # Errors
/// `InvalidArgument` naming `softmax` when `dim` is out of range.
pub fn softmax(x: &Var, dim: i64) -> Result<Var> {
    softmax_var(x, dim, false)
}

/// Autograd `log_softmax` along `dim` (negative counts from the end).
///
/// # Errors
/// `InvalidArgument` naming `log_softmax` when `dim` is out of range.
pub fn log_softmax(x: &Var, dim: i64) -> Result<Var> {
    softmax_var(x, dim, true)
}
