//! Softmax, log-softmax and the losses, with PyTorch's semantics.
//!
//! - [`softmax`] / [`log_softmax`] over any dim: `(outer, red, inner)` view of
//!   the input, max subtracted per lane before `exp` (numerically stable),
//!   sums of exponentials in f64.
//! - [`cross_entropy`]: logits `(N, C)` or `(N, C, d1, ...)` (or unbatched
//!   `(C,)`) with integer class labels `(N,)` / `(N, d1, ...)` (or `()`),
//!   fused log-softmax + negative log-likelihood; backward
//!   `(softmax - onehot) * scale`, where `scale` is `1/count` for `mean`
//!   (count = labels not equal to `ignore_index`), 1 for `sum`, the output
//!   gradient for `none`.
//!   [`cross_entropy_weighted`] adds a per-label weight map (the U-Net
//!   paper's); `mean` then divides by the sum of the weights.
//! - [`mse_loss`]: `(input - target)^2`, same shapes required (no
//!   broadcasting).
//! - [`binary_cross_entropy_with_logits`]: stable sigmoid + BCE with
//!   PyTorch's `weight` and `pos_weight` (see `bce.rs`).
//! - [`dice_loss`]: soft Dice on softmax or sigmoid probabilities, per
//!   sample and class (see `dice.rs`).

use crate::arg_err;
use crate::error::Result;

mod bce;
mod cross_entropy;
mod dice;
mod mse;
pub mod reference;
mod softmax;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_seg;

pub use bce::{bce_with_logits_forward, binary_cross_entropy_with_logits};
pub use cross_entropy::{
    ce_geometry, cross_entropy, cross_entropy_forward, cross_entropy_weighted, weighted_forward,
    CeGeometry,
};
pub use dice::{dice_loss, dice_loss_forward, DiceParams, DiceTarget};
pub use mse::{mse_loss, mse_loss_forward};
pub use softmax::{log_softmax, softmax, softmax_backward, softmax_forward};

/// How a loss reduces its per-element values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    Mean,
    Sum,
    None,
}

impl Reduction {
    /// Parses PyTorch's `reduction` strings.
    ///
    /// # Errors
    /// `InvalidArgument` naming `op` for anything but `mean`, `sum`, `none`.
    pub fn parse(op: &str, s: &str) -> Result<Self> {
        match s {
            "mean" => Ok(Self::Mean),
            "sum" => Ok(Self::Sum),
            "none" => Ok(Self::None),
            _ => Err(arg_err!(
                "{op}: reduction must be 'mean', 'sum' or 'none', got '{s}'"
            )),
        }
    }
}

/// (outer, reduced, inner) extents of `shape` around dim `d` (a 0-d tensor
/// is one element along a dim of size 1).
pub(crate) fn split(shape: &[usize], d: usize) -> (usize, usize, usize) {
    if shape.is_empty() {
        return (1, 1, 1);
    }
    (
        shape[..d].iter().product(),
        shape[d],
        shape[d + 1..].iter().product(),
    )
}

/// Per-lane max and sum of `exp(x - max)` of a `[red, inner]` block, lane =
/// one inner position. A NaN anywhere in a lane makes its max NaN (so the
/// lane's results are NaN, as in PyTorch).
pub(crate) fn lane_stats(x: &[f32], red: usize, inner: usize, max: &mut [f32], sum: &mut [f64]) {
    max.fill(f32::NEG_INFINITY);
    for r in 0..red {
        for (m, &v) in max.iter_mut().zip(&x[r * inner..(r + 1) * inner]) {
            if v > *m || v.is_nan() {
                *m = v;
            }
        }
    }
    sum.fill(0.0);
    for r in 0..red {
        for ((s, &m), &v) in sum
            .iter_mut()
            .zip(&*max)
            .zip(&x[r * inner..(r + 1) * inner])
        {
            *s += ((v - m).exp()) as f64;
        }
    }
}
