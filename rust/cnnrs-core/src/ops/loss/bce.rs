//! `binary_cross_entropy_with_logits`: sigmoid + binary cross-entropy in one
//! numerically stable op, with PyTorch's `weight` and `pos_weight`.
//!
//! Per element, with `p = pos_weight`, `w = weight` (both broadcast to the
//! input's shape, default 1) and `sp = softplus(-x) = -log sigmoid(x)`
//! computed as `log(1 + exp(-|x|)) + max(-x, 0)`:
//!
//! ```text
//! l     = w * ((1 - y) * x + (1 + (p - 1) * y) * sp)
//! dl/dx = w * ((1 - y) - (1 + (p - 1) * y) * sigmoid(-x))
//! dl/dy = w * (-x + (p - 1) * sp)
//! ```
//!
//! `mean` divides by the element count (the weights do not enter the
//! divisor, as in PyTorch).

use std::sync::Arc;

use super::Reduction;
use crate::autograd::{Backward, Var};
use crate::error::{fmt_shape, Result};
use crate::ops::elementwise::{binary_forward, broadcast_shape, BinaryOp};
use crate::shape_err;
use crate::tensor::Tensor;

const OP: &str = "binary_cross_entropy_with_logits";

/// `w` broadcast to `shape` (which must be the broadcast result).
fn expand(what: &str, w: &Tensor, shape: &[usize]) -> Result<Vec<f32>> {
    let fits = broadcast_shape(OP, w.shape(), shape)
        .map(|s| s == shape)
        .unwrap_or(false);
    if !fits {
        return Err(shape_err!(
            "{OP}: {what} of shape {} does not broadcast to the input shape {}",
            fmt_shape(w.shape()),
            fmt_shape(shape)
        ));
    }
    if w.shape() == shape {
        return Ok(w.data().to_vec());
    }
    Ok(binary_forward(BinaryOp::Add, &Tensor::zeros(shape)?, w)?.into_data())
}

/// The input, target, weight and pos_weight of one call, checked and
/// expanded to the input's shape.
struct Operands {
    shape: Vec<usize>,
    w: Option<Vec<f32>>,
    pw: Option<Vec<f32>>,
}

fn operands(
    x: &Tensor,
    y: &Tensor,
    weight: Option<&Tensor>,
    pos_weight: Option<&Tensor>,
) -> Result<Operands> {
    if x.shape() != y.shape() {
        return Err(shape_err!(
            "{OP}: target shape {} must be the same as the input shape {}",
            fmt_shape(y.shape()),
            fmt_shape(x.shape())
        ));
    }
    let shape = x.shape().to_vec();
    Ok(Operands {
        w: weight.map(|w| expand("weight", w, &shape)).transpose()?,
        pw: pos_weight
            .map(|p| expand("pos_weight", p, &shape))
            .transpose()?,
        shape,
    })
}

/// `softplus(-x) = log(1 + exp(-x))`, stable for any sign of `x`.
#[inline]
fn softplus_neg(x: f64) -> f64 {
    (-x.abs()).exp().ln_1p() + (-x).max(0.0)
}

/// Per-element losses in f64.
fn losses(x: &[f32], y: &[f32], ops: &Operands) -> Vec<f64> {
    (0..x.len())
        .map(|i| {
            let (xv, yv) = (x[i] as f64, y[i] as f64);
            let p = ops.pw.as_ref().map_or(1.0, |p| p[i] as f64);
            let w = ops.w.as_ref().map_or(1.0, |w| w[i] as f64);
            w * ((1.0 - yv) * xv + (1.0 + (p - 1.0) * yv) * softplus_neg(xv))
        })
        .collect()
}

fn reduce(l: Vec<f64>, shape: &[usize], reduction: Reduction) -> Tensor {
    match reduction {
        Reduction::None => {
            Tensor::from_parts(shape.to_vec(), l.iter().map(|&v| v as f32).collect())
        }
        Reduction::Sum => Tensor::scalar(l.iter().sum::<f64>() as f32),
        Reduction::Mean => Tensor::scalar((l.iter().sum::<f64>() / l.len() as f64) as f32),
    }
}

/// Binary cross-entropy of logits `x` against targets `y` (same shape,
/// usually in [0, 1]), with optional `weight` and `pos_weight` that
/// broadcast to the input's shape. `mean` of zero elements is NaN.
///
/// # Errors
/// `ShapeMismatch` when the target's shape differs from the input's, or a
/// weight does not broadcast to it.
pub fn bce_with_logits_forward(
    x: &Tensor,
    y: &Tensor,
    weight: Option<&Tensor>,
    pos_weight: Option<&Tensor>,
    reduction: Reduction,
) -> Result<Tensor> {
    let ops = operands(x, y, weight, pos_weight)?;
    Ok(reduce(
        losses(x.data(), y.data(), &ops),
        &ops.shape,
        reduction,
    ))
}

struct BceBackward {
    x: Arc<Tensor>,
    y: Arc<Tensor>,
    ops: Operands,
    reduction: Reduction,
}

impl Backward for BceBackward {
    fn name(&self) -> &'static str {
        "BinaryCrossEntropyWithLogitsBackward"
    }
    fn backward(&self, g: &Tensor, _inputs: &[Var], needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let (x, y) = (self.x.data(), self.y.data());
        let n = x.len();
        let scale = |i: usize| -> f64 {
            match self.reduction {
                Reduction::None => g.data()[i] as f64,
                Reduction::Sum => g.data()[0] as f64,
                Reduction::Mean => g.data()[0] as f64 / n as f64,
            }
        };
        let at = |v: &Option<Vec<f32>>, i: usize| v.as_ref().map_or(1.0, |v| v[i] as f64);
        let dx = needs[0].then(|| {
            let d = (0..n)
                .map(|i| {
                    let (xv, yv, p) = (x[i] as f64, y[i] as f64, at(&self.ops.pw, i));
                    // sigmoid(-x), stable both ways.
                    let s = if xv >= 0.0 {
                        let e = (-xv).exp();
                        e / (1.0 + e)
                    } else {
                        1.0 / (1.0 + xv.exp())
                    };
                    let d = (1.0 - yv) - (1.0 + (p - 1.0) * yv) * s;
                    (at(&self.ops.w, i) * d * scale(i)) as f32
                })
                .collect();
            Tensor::from_parts(self.ops.shape.clone(), d)
        });
        let dy = needs[1].then(|| {
            let d = (0..n)
                .map(|i| {
                    let (xv, p) = (x[i] as f64, at(&self.ops.pw, i));
                    let d = -xv + (p - 1.0) * softplus_neg(xv);
                    (at(&self.ops.w, i) * d * scale(i)) as f32
                })
                .collect();
            Tensor::from_parts(self.ops.shape.clone(), d)
        });
        Ok(vec![dx, dy])
    }
}

/// Autograd `binary_cross_entropy_with_logits`; the input and the target
/// may require grad, `weight` and `pos_weight` are constants.
///
/// # Errors
/// See [`bce_with_logits_forward`].
pub fn binary_cross_entropy_with_logits(
    x: &Var,
    y: &Var,
    weight: Option<&Tensor>,
    pos_weight: Option<&Tensor>,
    reduction: Reduction,
) -> Result<Var> {
    let (xv, yv) = (x.value(), y.value());
    let ops = operands(&xv, &yv, weight, pos_weight)?;
    let out = reduce(losses(xv.data(), yv.data(), &ops), &ops.shape, reduction);
    if !Var::any_requires_grad(&[x, y]) {
        return Ok(Var::leaf(out, false));
    }
    Ok(Var::from_op(
        out,
        BceBackward {
            x: xv,
            y: yv,
            ops,
            reduction,
        },
        vec![x.clone(), y.clone()],
    ))
}
