//! `cross_entropy`: fused log-softmax over the class dim + negative
//! log-likelihood of integer labels, with `ignore_index` and an optional
//! per-label weight (the U-Net paper's per-pixel weight map).
//!
//! With weights `w` (shaped like the labels), the per-label loss is
//! `w * (-log softmax(x)[label])`; `mean` divides the sum by the sum of the
//! weights of the labels not equal to `ignore_index` (PyTorch's convention
//! for its per-class `weight`), so all-ones weights give the unweighted loss.

use std::sync::Arc;

use super::{lane_stats, Reduction};
use crate::autograd::{Backward, Var};
use crate::error::{fmt_shape, Result};
use crate::tensor::{try_zeros, Tensor};
use crate::{arg_err, shape_err};

/// Logits seen as `[n, c, inner]` (inner = product of the extra dims).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CeGeometry {
    pub n: usize,
    pub c: usize,
    pub inner: usize,
}

/// Checks logits and target shapes: `(C,)` with `()`, or `(N, C, d1, ...)`
/// with `(N, d1, ...)`.
///
/// # Errors
/// `ShapeMismatch` naming `cross_entropy` for a 0-d input or a target of the
/// wrong shape.
pub fn ce_geometry(input: &[usize], target: &[usize]) -> Result<CeGeometry> {
    let (geom, expected): (CeGeometry, Vec<usize>) = match input {
        [] => {
            return Err(shape_err!(
                "cross_entropy: input must be (C,) or (N, C, ...) logits but got a 0-d tensor, \
                 shape ()"
            ))
        }
        [c] => (
            CeGeometry {
                n: 1,
                c: *c,
                inner: 1,
            },
            vec![],
        ),
        [n, c, rest @ ..] => {
            let mut e = vec![*n];
            e.extend_from_slice(rest);
            (
                CeGeometry {
                    n: *n,
                    c: *c,
                    inner: rest.iter().product(),
                },
                e,
            )
        }
    };
    if target != expected.as_slice() {
        return Err(shape_err!(
            "cross_entropy: target shape {} does not match input {}: expected target shape {}",
            fmt_shape(target),
            fmt_shape(input),
            fmt_shape(&expected)
        ));
    }
    Ok(geom)
}

fn check_labels(target: &[i64], c: usize, ignore_index: i64) -> Result<()> {
    for &t in target {
        if t == ignore_index {
            continue;
        }
        if t < 0 || t >= c as i64 {
            return Err(arg_err!(
                "cross_entropy: target label {t} is out of range for {c} classes (expected 0 <= \
                 label < {c}, or ignore_index={ignore_index})"
            ));
        }
    }
    Ok(())
}

/// Visits every `(n, inner)` lane with its max and exp-sum over classes.
fn for_each_lane(
    x: &[f32],
    g: CeGeometry,
    mut f: impl FnMut(usize, usize, &[f32], &[f32], &[f64]),
) {
    let block = g.c * g.inner;
    let mut max = vec![0.0f32; g.inner];
    let mut sum = vec![0.0f64; g.inner];
    for o in 0..g.n {
        let xb = &x[o * block..(o + 1) * block];
        lane_stats(xb, g.c, g.inner, &mut max, &mut sum);
        for i in 0..g.inner {
            f(o, i, xb, &max, &sum);
        }
    }
}

/// The divisor of `mean`: the number of labels not ignored, or the sum of
/// their weights.
fn mean_divisor(target: &[i64], weight: Option<&[f32]>, ignore_index: i64) -> f64 {
    match weight {
        None => target.iter().filter(|&&t| t != ignore_index).count() as f64,
        Some(w) => target
            .iter()
            .zip(w)
            .filter(|(&t, _)| t != ignore_index)
            .map(|(_, &w)| w as f64)
            .sum(),
    }
}

/// Per-label losses (`w * -log softmax(x)[label]`, 0 where ignored) as f64.
fn per_label(
    x: &Tensor,
    target: &[i64],
    weight: Option<&[f32]>,
    g: CeGeometry,
    ignore_index: i64,
) -> Result<Vec<f64>> {
    check_labels(target, g.c, ignore_index)?;
    let mut losses = vec![0.0f64; g.n * g.inner];
    for_each_lane(x.data(), g, |o, i, xb, max, sum| {
        let l = o * g.inner + i;
        let t = target[l];
        if t != ignore_index {
            let xt = xb[t as usize * g.inner + i];
            let w = weight.map_or(1.0, |w| w[l] as f64);
            losses[l] = w * (sum[i].ln() - (xt - max[i]) as f64);
        }
    });
    Ok(losses)
}

/// Checks a per-label weight map: one finite, non-negative value per label.
fn check_weight(weight: &Tensor, target_shape: &[usize], input: &[usize]) -> Result<()> {
    if weight.shape() != target_shape {
        return Err(shape_err!(
            "cross_entropy: pixel_weight shape {} does not match the target shape {} (input {})",
            fmt_shape(weight.shape()),
            fmt_shape(target_shape),
            fmt_shape(input)
        ));
    }
    if let Some(v) = weight
        .data()
        .iter()
        .find(|v| !(v.is_finite() && **v >= 0.0))
    {
        return Err(arg_err!(
            "cross_entropy: pixel_weight must be finite and non-negative, got {v}"
        ));
    }
    Ok(())
}

/// Cross-entropy loss of logits `x` against `target` labels (shape
/// `target_shape`). `mean` divides by the number of labels not equal to
/// `ignore_index` (NaN when there are none, as in PyTorch).
///
/// # Errors
/// `ShapeMismatch` from [`ce_geometry`] or when `target` does not hold
/// `target_shape`'s element count; `InvalidArgument` for a label outside
/// `[0, C)` that is not `ignore_index`.
pub fn cross_entropy_forward(
    x: &Tensor,
    target: &[i64],
    target_shape: &[usize],
    reduction: Reduction,
    ignore_index: i64,
) -> Result<Tensor> {
    weighted_forward(x, target, target_shape, None, reduction, ignore_index)
}

/// Cross-entropy with a per-label weight map `weight` (shaped like the
/// labels; finite, non-negative): `w * loss` per label, `mean` = sum over
/// the labels not ignored of `w * loss`, divided by the sum of their `w`
/// (NaN when that is 0). `weight = None` is [`cross_entropy_forward`].
///
/// # Errors
/// As [`cross_entropy_forward`], plus `ShapeMismatch` for a weight map whose
/// shape is not the target's and `InvalidArgument` for a negative or
/// non-finite weight.
pub fn weighted_forward(
    x: &Tensor,
    target: &[i64],
    target_shape: &[usize],
    weight: Option<&Tensor>,
    reduction: Reduction,
    ignore_index: i64,
) -> Result<Tensor> {
    let g = ce_geometry(x.shape(), target_shape)?;
    if target.len() != g.n * g.inner {
        return Err(shape_err!(
            "cross_entropy: target holds {} labels but its shape {} needs {}",
            target.len(),
            fmt_shape(target_shape),
            g.n * g.inner
        ));
    }
    if let Some(w) = weight {
        check_weight(w, target_shape, x.shape())?;
    }
    let wd = weight.map(|w| w.data());
    let losses = per_label(x, target, wd, g, ignore_index)?;
    let count = mean_divisor(target, wd, ignore_index);
    Ok(match reduction {
        Reduction::None => Tensor::from_parts(
            target_shape.to_vec(),
            losses.iter().map(|&l| l as f32).collect(),
        ),
        Reduction::Sum => Tensor::scalar(losses.iter().sum::<f64>() as f32),
        Reduction::Mean => Tensor::scalar((losses.iter().sum::<f64>() / count) as f32),
    })
}

/// Gradient with respect to the logits: `(softmax - onehot) * w * scale`.
#[allow(clippy::too_many_arguments)]
fn ce_backward(
    x: &Tensor,
    target: &[i64],
    weight: Option<&[f32]>,
    g: CeGeometry,
    reduction: Reduction,
    ignore_index: i64,
    count: f64,
    grad_out: &Tensor,
) -> Result<Tensor> {
    let mut dx = try_zeros(x.numel())?; // x's shape
    let go = grad_out.data();
    for_each_lane(x.data(), g, |o, i, xb, max, sum| {
        let l = o * g.inner + i;
        let t = target[l];
        if t == ignore_index {
            return;
        }
        let w = weight.map_or(1.0, |w| w[l] as f64);
        let scale = w * match reduction {
            Reduction::None => go[l] as f64,
            Reduction::Sum => go[0] as f64,
            Reduction::Mean => go[0] as f64 / count,
        };
        let inv = 1.0 / sum[i];
        let base = o * g.c * g.inner + i;
        for c in 0..g.c {
            let p = ((xb[c * g.inner + i] - max[i]).exp() as f64) * inv;
            let onehot = if c as i64 == t { 1.0 } else { 0.0 };
            dx[base + c * g.inner] = ((p - onehot) * scale) as f32;
        }
    });
    Ok(Tensor::from_parts(x.shape().to_vec(), dx))
}

struct CrossEntropyBackward {
    x: Arc<Tensor>,
    target: Vec<i64>,
    weight: Option<Arc<Tensor>>,
    geom: CeGeometry,
    reduction: Reduction,
    ignore_index: i64,
    count: f64,
}

impl Backward for CrossEntropyBackward {
    fn name(&self) -> &'static str {
        "CrossEntropyLossBackward"
    }
    fn backward(
        &self,
        g: &Tensor,
        _inputs: &[Var],
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let dx = ce_backward(
            &self.x,
            &self.target,
            self.weight.as_ref().map(|w| w.data()),
            self.geom,
            self.reduction,
            self.ignore_index,
            self.count,
            g,
        )?;
        Ok(vec![Some(dx)])
    }
}

/// Autograd cross-entropy (gradient to the logits only; labels have none).
///
/// # Errors
/// See [`cross_entropy_forward`].
pub fn cross_entropy(
    x: &Var,
    target: &[i64],
    target_shape: &[usize],
    reduction: Reduction,
    ignore_index: i64,
) -> Result<Var> {
    cross_entropy_weighted(x, target, target_shape, None, reduction, ignore_index)
}

/// Autograd cross-entropy with an optional per-label weight map (no
/// gradient to the weights; they are constants, as in PyTorch).
///
/// # Errors
/// See [`weighted_forward`].
pub fn cross_entropy_weighted(
    x: &Var,
    target: &[i64],
    target_shape: &[usize],
    weight: Option<Arc<Tensor>>,
    reduction: Reduction,
    ignore_index: i64,
) -> Result<Var> {
    let xv = x.value();
    let out = weighted_forward(
        &xv,
        target,
        target_shape,
        weight.as_deref(),
        reduction,
        ignore_index,
    )?;
    if !Var::any_requires_grad(&[x]) {
        return Ok(Var::leaf(out, false));
    }
    let geom = ce_geometry(xv.shape(), target_shape)?;
    let count = mean_divisor(target, weight.as_ref().map(|w| w.data()), ignore_index);
    let back = CrossEntropyBackward {
        x: xv,
        target: target.to_vec(),
        weight,
        geom,
        reduction,
        ignore_index,
        count,
    };
    Ok(Var::from_op(out, back, vec![x.clone()]))
}
