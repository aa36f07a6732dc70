//! `cross_entropy`: fused log-softmax over the class dim + negative
//! log-likelihood of integer labels, with `ignore_index`.

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

fn check_labels(target: &[i64], c: usize, ignore_index: i64) -> Result<usize> {
    let mut count = 0;
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
        count += 1;
    }
    Ok(count)
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

/// Per-label losses (`-log softmax(x)[label]`, 0 where ignored) as f64, and
/// the number of labels not ignored.
fn per_label(
    x: &Tensor,
    target: &[i64],
    g: CeGeometry,
    ignore_index: i64,
) -> Result<(Vec<f64>, usize)> {
    let count = check_labels(target, g.c, ignore_index)?;
    let mut losses = vec![0.0f64; g.n * g.inner];
    for_each_lane(x.data(), g, |o, i, xb, max, sum| {
        let t = target[o * g.inner + i];
        if t != ignore_index {
            let xt = xb[t as usize * g.inner + i];
            losses[o * g.inner + i] = sum[i].ln() - (xt - max[i]) as f64;
        }
    });
    Ok((losses, count))
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
    let g = ce_geometry(x.shape(), target_shape)?;
    if target.len() != g.n * g.inner {
        return Err(shape_err!(
            "cross_entropy: target holds {} labels but its shape {} needs {}",
            target.len(),
            fmt_shape(target_shape),
            g.n * g.inner
        ));
    }
    let (losses, count) = per_label(x, target, g, ignore_index)?;
    Ok(match reduction {
        Reduction::None => Tensor::from_parts(
            target_shape.to_vec(),
            losses.iter().map(|&l| l as f32).collect(),
        ),
        Reduction::Sum => Tensor::scalar(losses.iter().sum::<f64>() as f32),
        Reduction::Mean => Tensor::scalar((losses.iter().sum::<f64>() / count as f64) as f32),
    })
}

/// Gradient with respect to the logits: `(softmax - onehot) * scale`.
fn ce_backward(
    x: &Tensor,
    target: &[i64],
    g: CeGeometry,
    reduction: Reduction,
    ignore_index: i64,
    count: usize,
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
        let scale = match reduction {
            Reduction::None => go[l] as f64,
            Reduction::Sum => go[0] as f64,
            Reduction::Mean => go[0] as f64 / count as f64,
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
    geom: CeGeometry,
    reduction: Reduction,
    ignore_index: i64,
    count: usize,
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
    let xv = x.value();
    let out = cross_entropy_forward(&xv, target, target_shape, reduction, ignore_index)?;
    if !Var::any_requires_grad(&[x]) {
        return Ok(Var::leaf(out, false));
    }
    let geom = ce_geometry(xv.shape(), target_shape)?;
    let count = check_labels(target, geom.c, ignore_index)?;
    let back = CrossEntropyBackward {
        x: xv,
        target: target.to_vec(),
        geom,
        reduction,
        ignore_index,
        count,
    };
    Ok(Var::from_op(out, back, vec![x.clone()]))
}
