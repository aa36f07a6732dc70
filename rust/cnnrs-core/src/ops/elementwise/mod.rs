//! Elementwise arithmetic with NumPy/PyTorch broadcasting: `add`, `sub`,
//! `mul`, `div` of two tensors, and `affine` (`a*x + b` with scalars: covers
//! adding, scaling and negating by a number).
//!
//! Broadcasting: shapes are aligned from the right; each pair of dims must be
//! equal or one of them 1. Backward sums the gradient over the broadcast dims
//! ([`sum_to_shape`]).

use crate::autograd::{Backward, Var};
use crate::error::{fmt_shape, Result};
use crate::shape_err;
use crate::tensor::Tensor;

pub mod reference;
#[cfg(test)]
mod tests;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinaryOp {
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
        }
    }
    #[inline(always)]
    fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
        }
    }
}

/// `f(a[i], b[i])` for equal-length slices: chunked over the pool when
/// large (a residual add on a 56x56x256 map ran serially: 4% of ResNet-50's
/// two-thread inference on the calling thread), each chunk compiled for
/// the active SIMD family.
pub(crate) fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync + Send) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "zip_map: lengths differ");
    crate::parallel::map_new(a.len(), |off, out| {
        let (a, b) = (&a[off..off + out.len()], &b[off..off + out.len()]);
        crate::kernels::simd::wide(
            #[inline(always)]
            || {
                for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
                    *o = f(x, y);
                }
            },
        )
    })
}

/// `f(a[i])`, as [`zip_map`].
pub(crate) fn map(a: &[f32], f: impl Fn(f32) -> f32 + Sync + Send) -> Vec<f32> {
    crate::parallel::map_new(a.len(), |off, out| {
        let a = &a[off..off + out.len()];
        crate::kernels::simd::wide(
            #[inline(always)]
            || {
                for (o, &x) in out.iter_mut().zip(a) {
                    *o = f(x);
                }
            },
        )
    })
}

/// The broadcast shape of `a` and `b`.
///
/// # Errors
/// `ShapeMismatch` naming `op` when a pair of dims is neither equal nor 1.
pub fn broadcast_shape(op: &str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let nd = a.len().max(b.len());
    let mut out = vec![0; nd];
    for i in 0..nd {
        let da = if i + a.len() >= nd {
            a[i + a.len() - nd]
        } else {
            1
        };
        let db = if i + b.len() >= nd {
            b[i + b.len() - nd]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(shape_err!(
                    "{op}: shapes {} and {} cannot be broadcast together (dim {i}: {da} vs {db})",
                    fmt_shape(a),
                    fmt_shape(b)
                ))
            }
        };
    }
    Ok(out)
}

/// Strides of `shape` laid against `out` (right-aligned), 0 on broadcast dims.
fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let off = out.len() - shape.len();
    let mut strides = vec![0; out.len()];
    let mut s = 1;
    for i in (0..shape.len()).rev() {
        strides[i + off] = if shape[i] == 1 { 0 } else { s };
        s *= shape[i];
    }
    strides
}

/// Visits every index of `out` in row-major order, calling `f(out_idx,
/// a_off, b_off)` with the broadcast offsets into two inputs.
fn for_each_broadcast(
    out: &[usize],
    sa: &[usize],
    sb: &[usize],
    mut f: impl FnMut(usize, usize, usize),
) {
    let nd = out.len();
    let total: usize = out.iter().product();
    if total == 0 {
        return;
    }
    let mut idx = vec![0usize; nd];
    let (mut oa, mut ob) = (0usize, 0usize);
    for o in 0..total {
        f(o, oa, ob);
        // Increment the multi-index and offsets.
        let mut d = nd;
        while d > 0 {
            d -= 1;
            idx[d] += 1;
            oa += sa[d];
            ob += sb[d];
            if idx[d] < out[d] {
                break;
            }
            oa -= sa[d] * out[d];
            ob -= sb[d] * out[d];
            idx[d] = 0;
        }
    }
}

/// `a (op) b` with broadcasting.
///
/// # Errors
/// `ShapeMismatch` when the shapes do not broadcast.
pub fn binary_forward(op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.shape() == b.shape() {
        let data = match op {
            BinaryOp::Add => zip_map(a.data(), b.data(), |x, y| x + y),
            BinaryOp::Sub => zip_map(a.data(), b.data(), |x, y| x - y),
            BinaryOp::Mul => zip_map(a.data(), b.data(), |x, y| x * y),
            BinaryOp::Div => zip_map(a.data(), b.data(), |x, y| x / y),
        };
        return Ok(Tensor::from_parts(a.shape().to_vec(), data));
    }
    let out_shape = broadcast_shape(op.name(), a.shape(), b.shape())?;
    let mut out = Tensor::zeros(&out_shape)?;
    if b.numel() == 1 {
        let y = b.data()[0];
        for (o, &x) in out.data_mut().iter_mut().zip(a.data().iter().cycle()) {
            *o = op.apply(x, y);
        }
        if a.numel() == out.numel() {
            return Ok(out);
        }
    }
    let sa = broadcast_strides(a.shape(), &out_shape);
    let sb = broadcast_strides(b.shape(), &out_shape);
    let (ad, bd) = (a.data(), b.data());
    let od = out.data_mut();
    for_each_broadcast(&out_shape, &sa, &sb, |o, ia, ib| {
        od[o] = op.apply(ad[ia], bd[ib])
    });
    Ok(out)
}

/// Sums `g` down to `shape` (the inverse of broadcasting `shape` to
/// `g.shape()`).
///
/// # Errors
/// `ShapeMismatch` when `shape` does not broadcast to `g`'s shape.
pub fn sum_to_shape(g: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if g.shape() == shape {
        return Ok(g.clone());
    }
    let out_shape = broadcast_shape("sum_to_shape", shape, g.shape())?;
    if out_shape != g.shape() {
        return Err(shape_err!(
            "sum_to_shape: {} does not broadcast to {}",
            fmt_shape(shape),
            fmt_shape(g.shape())
        ));
    }
    let mut out = Tensor::zeros(shape)?;
    let s = broadcast_strides(shape, g.shape());
    let zero = vec![0; s.len()];
    let gd = g.data();
    let od = out.data_mut();
    for_each_broadcast(g.shape(), &s, &zero, |o, i, _| od[i] += gd[o]);
    Ok(out)
}

struct BinaryBackward {
    op: BinaryOp,
    a: std::sync::Arc<Tensor>,
    b: std::sync::Arc<Tensor>,
}

impl Backward for BinaryBackward {
    fn name(&self) -> &'static str {
        match self.op {
            BinaryOp::Add => "AddBackward",
            BinaryOp::Sub => "SubBackward",
            BinaryOp::Mul => "MulBackward",
            BinaryOp::Div => "DivBackward",
        }
    }
    fn backward(&self, g: &Tensor, _inputs: &[Var], needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let (a, b) = (&*self.a, &*self.b);
        let ga = if needs[0] {
            let full = match self.op {
                BinaryOp::Add | BinaryOp::Sub => g.clone(),
                BinaryOp::Mul => binary_forward(BinaryOp::Mul, g, b)?,
                BinaryOp::Div => binary_forward(BinaryOp::Div, g, b)?,
            };
            Some(sum_to_shape(&full, a.shape())?)
        } else {
            None
        };
        let gb = if needs[1] {
            let full = match self.op {
                BinaryOp::Add => g.clone(),
                BinaryOp::Sub => affine_forward(g, -1.0, 0.0),
                BinaryOp::Mul => binary_forward(BinaryOp::Mul, g, a)?,
                BinaryOp::Div => {
                    // d(a/b)/db = -a / b^2
                    let ab2 =
                        binary_forward(BinaryOp::Div, &binary_forward(BinaryOp::Div, a, b)?, b)?;
                    affine_forward(&binary_forward(BinaryOp::Mul, g, &ab2)?, -1.0, 0.0)
                }
            };
            Some(sum_to_shape(&full, b.shape())?)
        } else {
            None
        };
        Ok(vec![ga, gb])
    }
}

/// Autograd `a (op) b` with broadcasting.
///
/// # Errors
/// `ShapeMismatch` when the shapes do not broadcast.
pub fn binary(op: BinaryOp, a: &Var, b: &Var) -> Result<Var> {
    let (av, bv) = (a.value(), b.value());
    let out = binary_forward(op, &av, &bv)?;
    Ok(Var::from_op(
        out,
        BinaryBackward { op, a: av, b: bv },
        vec![a.clone(), b.clone()],
    ))
}

/// `scale*x + shift` elementwise.
pub fn affine_forward(x: &Tensor, scale: f32, shift: f32) -> Tensor {
    let xd = x.data();
    let data = map(xd, |v| scale * v + shift);
    Tensor::from_parts(x.shape().to_vec(), data)
}

struct AffineBackward {
    scale: f32,
}

impl Backward for AffineBackward {
    fn name(&self) -> &'static str {
        "AffineBackward"
    }
    fn backward(
        &self,
        g: &Tensor,
        _inputs: &[Var],
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(affine_forward(g, self.scale, 0.0))])
    }
}

/// Autograd `scale*x + shift` with scalar `scale` and `shift`.
pub fn affine(x: &Var, scale: f32, shift: f32) -> Var {
    let out = affine_forward(&x.value(), scale, shift);
    Var::from_op(out, AffineBackward { scale }, vec![x.clone()])
}
