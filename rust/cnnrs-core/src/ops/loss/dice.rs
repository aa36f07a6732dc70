//! `dice_loss`: soft Dice loss on probabilities, per sample and class.
//!
//! Logits `x` `(N, C, *)` become probabilities `p` by a softmax over the
//! class dim (targets: integer labels `(N, *)`, one-hot encoded, pixels equal
//! to `ignore_index` left out of every sum) or by an elementwise sigmoid
//! (targets: `(N, C, *)` values in [0, 1], e.g. binary masks). For each
//! sample `n` and class `c`, over the pixels `i` that count (`m_i = 1`):
//!
//! ```text
//! I = sum_i m_i p_i g_i,  P = sum_i m_i p_i,  G = sum_i m_i g_i
//! D = (2 I + s) / (P + G + s),   loss_nc = 1 - D
//! dloss_nc/dp_i = -m_i (2 g_i - D) / (P + G + s)
//! ```
//!
//! then back through the softmax (`dx_c = p_c (dp_c - sum_k p_k dp_k)`) or
//! the sigmoid (`dx = dp p (1 - p)`). `s` is the smoothing term; with `s = 0`
//! a class absent from both prediction and target gives 0/0 = NaN.
//! `include_background = false` (softmax only) drops class 0. Reductions:
//! `none` -> `(N, C')`, `mean` over the `N * C'` values, `sum`.

use std::sync::Arc;

use super::{ce_geometry, lane_stats, Reduction};
use crate::autograd::{Backward, Var};
use crate::error::{fmt_shape, Result};
use crate::tensor::Tensor;
use crate::{arg_err, shape_err};

const OP: &str = "dice_loss";

/// What the logits are compared with.
#[derive(Clone, Debug)]
pub enum DiceTarget {
    /// Integer labels `(N, *)` for a softmax over `C >= 2` classes.
    Labels {
        labels: Vec<i64>,
        shape: Vec<usize>,
        ignore_index: i64,
    },
    /// Values in [0, 1] shaped like the logits, for an elementwise sigmoid.
    Probs(Arc<Tensor>),
}

/// Options of [`dice_loss`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DiceParams {
    /// Added to numerator and denominator (default 1 in Python).
    pub smooth: f64,
    /// Keep class 0 (softmax with labels only).
    pub include_background: bool,
    pub reduction: Reduction,
}

#[derive(Clone, Copy, Debug)]
struct Geom {
    n: usize,
    c: usize,
    inner: usize,
    /// First class that enters the loss (1 when the background is dropped).
    c0: usize,
}

fn check(x: &Tensor, t: &DiceTarget, p: &DiceParams) -> Result<Geom> {
    let s = x.shape();
    if s.len() < 2 {
        return Err(shape_err!(
            "{OP}: input must be (N, C, ...) logits, got shape {}",
            fmt_shape(s)
        ));
    }
    if !(p.smooth.is_finite() && p.smooth >= 0.0) {
        return Err(arg_err!(
            "{OP}: smooth must be a finite number >= 0, got {}",
            p.smooth
        ));
    }
    let (n, c, inner) = (s[0], s[1], s[2..].iter().product());
    match t {
        DiceTarget::Labels {
            labels,
            shape,
            ignore_index,
        } => {
            if c < 2 {
                return Err(arg_err!(
                    "{OP}: softmax over {c} class needs at least 2 classes; for a binary mask \
                     use sigmoid with a target shaped like the input {}",
                    fmt_shape(s)
                ));
            }
            let g = ce_geometry(s, shape).map_err(|e| {
                shape_err!(
                    "{OP}: {}",
                    e.to_string().trim_start_matches("cross_entropy: ")
                )
            })?;
            if labels.len() != g.n * g.inner {
                return Err(shape_err!(
                    "{OP}: target holds {} labels but its shape {} needs {}",
                    labels.len(),
                    fmt_shape(shape),
                    g.n * g.inner
                ));
            }
            if let Some(&bad) = labels
                .iter()
                .find(|&&l| l != *ignore_index && (l < 0 || l >= c as i64))
            {
                return Err(arg_err!(
                    "{OP}: target label {bad} is out of range for {c} classes (expected 0 <= \
                     label < {c}, or ignore_index={ignore_index})"
                ));
            }
        }
        DiceTarget::Probs(y) => {
            if y.shape() != s {
                return Err(shape_err!(
                    "{OP}: with sigmoid the target must have the input's shape {}, got {}",
                    fmt_shape(s),
                    fmt_shape(y.shape())
                ));
            }
            if let Some(v) = y.data().iter().find(|v| !(0.0..=1.0).contains(*v)) {
                return Err(arg_err!("{OP}: sigmoid targets must be in [0, 1], got {v}"));
            }
            if !p.include_background {
                return Err(arg_err!(
                    "{OP}: include_background=False applies to softmax with class labels only"
                ));
            }
        }
    }
    let c0 = usize::from(!p.include_background);
    Ok(Geom { n, c, inner, c0 })
}

/// Probabilities `[n, c, inner]` in f64 (softmax over c, or sigmoid).
fn probabilities(x: &Tensor, t: &DiceTarget, g: Geom) -> Vec<f64> {
    let xd = x.data();
    match t {
        DiceTarget::Probs(_) => xd
            .iter()
            .map(|&v| 1.0 / (1.0 + (-(v as f64)).exp()))
            .collect(),
        DiceTarget::Labels { .. } => {
            let mut p = vec![0.0f64; xd.len()];
            let (mut max, mut sum) = (vec![0.0f32; g.inner], vec![0.0f64; g.inner]);
            let block = g.c * g.inner;
            for o in 0..g.n {
                let xb = &xd[o * block..(o + 1) * block];
                lane_stats(xb, g.c, g.inner, &mut max, &mut sum);
                for k in 0..g.c {
                    for i in 0..g.inner {
                        let at = k * g.inner + i;
                        p[o * block + at] = ((xb[at] - max[i]).exp() as f64) / sum[i];
                    }
                }
            }
            p
        }
    }
}

/// Target value `g` and mask `m` of class `k` at `(o, i)`.
#[inline]
fn target_at(t: &DiceTarget, g: Geom, o: usize, k: usize, i: usize) -> (f64, f64) {
    match t {
        DiceTarget::Probs(y) => (y.data()[(o * g.c + k) * g.inner + i] as f64, 1.0),
        DiceTarget::Labels {
            labels,
            ignore_index,
            ..
        } => {
            let l = labels[o * g.inner + i];
            if l == *ignore_index {
                (0.0, 0.0)
            } else {
                (f64::from(u8::from(l == k as i64)), 1.0)
            }
        }
    }
}

/// Per (sample, class) sums `(I, P, G)` for classes `c0..c`.
fn sums(p: &[f64], t: &DiceTarget, g: Geom) -> Vec<(f64, f64, f64)> {
    let mut out = Vec::with_capacity(g.n * (g.c - g.c0));
    for o in 0..g.n {
        for k in g.c0..g.c {
            let (mut i_, mut p_, mut g_) = (0.0, 0.0, 0.0);
            for i in 0..g.inner {
                let (gv, m) = target_at(t, g, o, k, i);
                let pv = p[(o * g.c + k) * g.inner + i] * m;
                i_ += pv * gv;
                p_ += pv;
                g_ += gv;
            }
            out.push((i_, p_, g_));
        }
    }
    out
}

fn dice_of((i, p, gs): (f64, f64, f64), s: f64) -> f64 {
    (2.0 * i + s) / (p + gs + s)
}

/// Soft Dice loss of logits `x` against `target`.
///
/// # Errors
/// `ShapeMismatch` for an input of rank < 2 or a target that does not fit
/// it; `InvalidArgument` for labels out of range, fewer than 2 classes with
/// labels, sigmoid targets outside [0, 1], a negative or non-finite
/// `smooth`, or `include_background = false` with sigmoid targets.
pub fn dice_loss_forward(x: &Tensor, target: &DiceTarget, params: &DiceParams) -> Result<Tensor> {
    let g = check(x, target, params)?;
    let p = probabilities(x, target, g);
    let l: Vec<f64> = sums(&p, target, g)
        .into_iter()
        .map(|s| 1.0 - dice_of(s, params.smooth))
        .collect();
    Ok(match params.reduction {
        Reduction::None => {
            Tensor::from_parts(vec![g.n, g.c - g.c0], l.iter().map(|&v| v as f32).collect())
        }
        Reduction::Sum => Tensor::scalar(l.iter().sum::<f64>() as f32),
        Reduction::Mean => Tensor::scalar((l.iter().sum::<f64>() / l.len() as f64) as f32),
    })
}

fn dice_backward(x: &Tensor, t: &DiceTarget, params: &DiceParams, go: &Tensor) -> Result<Tensor> {
    let g = check(x, t, params)?;
    let p = probabilities(x, t, g);
    let s = sums(&p, t, g);
    let cc = g.c - g.c0;
    let count = s.len() as f64;
    // dL/dp, [n, c, inner] (zero for a dropped background class).
    let mut dp = vec![0.0f64; p.len()];
    for o in 0..g.n {
        for k in g.c0..g.c {
            let j = o * cc + (k - g.c0);
            let a = match params.reduction {
                Reduction::None => go.data()[j] as f64,
                Reduction::Sum => go.data()[0] as f64,
                Reduction::Mean => go.data()[0] as f64 / count,
            };
            let den = s[j].1 + s[j].2 + params.smooth;
            let d = dice_of(s[j], params.smooth);
            for i in 0..g.inner {
                let (gv, m) = target_at(t, g, o, k, i);
                dp[(o * g.c + k) * g.inner + i] = -a * m * (2.0 * gv - d) / den;
            }
        }
    }
    let mut dx = vec![0.0f32; p.len()]; // x's shape
    match t {
        DiceTarget::Probs(_) => {
            for ((d, &pv), &gv) in dx.iter_mut().zip(&p).zip(&dp) {
                *d = (gv * pv * (1.0 - pv)) as f32;
            }
        }
        DiceTarget::Labels { .. } => {
            for o in 0..g.n {
                for i in 0..g.inner {
                    let at = |k: usize| (o * g.c + k) * g.inner + i;
                    let dot: f64 = (0..g.c).map(|k| p[at(k)] * dp[at(k)]).sum();
                    for k in 0..g.c {
                        dx[at(k)] = (p[at(k)] * (dp[at(k)] - dot)) as f32;
                    }
                }
            }
        }
    }
    Ok(Tensor::from_parts(x.shape().to_vec(), dx))
}

struct DiceBackward {
    x: Arc<Tensor>,
    target: DiceTarget,
    params: DiceParams,
}

impl Backward for DiceBackward {
    fn name(&self) -> &'static str {
        "DiceLossBackward"
    }
    fn backward(
        &self,
        g: &Tensor,
        _inputs: &[Var],
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(dice_backward(
            &self.x,
            &self.target,
            &self.params,
            g,
        )?)])
    }
}

/// Autograd soft Dice loss (gradient to the logits only).
///
/// # Errors
/// See [`dice_loss_forward`].
pub fn dice_loss(x: &Var, target: DiceTarget, params: DiceParams) -> Result<Var> {
    let xv = x.value();
    let out = dice_loss_forward(&xv, &target, &params)?;
    if !Var::any_requires_grad(&[x]) {
        return Ok(Var::leaf(out, false));
    }
    Ok(Var::from_op(
        out,
        DiceBackward {
            x: xv,
            target,
            params,
        },
        vec![x.clone()],
    ))
}
