//! `mse_loss`: mean (or sum, or none) of `(input - target)^2`.

use std::sync::Arc;

use super::Reduction;
use crate::autograd::{Backward, Var};
use crate::error::{fmt_shape, Result};
use crate::shape_err;
use crate::tensor::Tensor;

/// Squared-error loss. `mean` over zero elements is NaN (as in PyTorch).
///
/// # Errors
/// `ShapeMismatch` naming `mse_loss` when the shapes differ (no
/// broadcasting; PyTorch broadcasts with a warning).
pub fn mse_loss_forward(x: &Tensor, t: &Tensor, reduction: Reduction) -> Result<Tensor> {
    if x.shape() != t.shape() {
        return Err(shape_err!(
            "mse_loss: input {} and target {} must have the same shape (cnnrs does not broadcast \
             here)",
            fmt_shape(x.shape()),
            fmt_shape(t.shape())
        ));
    }
    let sq = x
        .data()
        .iter()
        .zip(t.data())
        .map(|(&a, &b)| (a - b) * (a - b));
    Ok(match reduction {
        Reduction::None => Tensor::from_parts(x.shape().to_vec(), sq.collect()),
        Reduction::Sum => Tensor::scalar(sq.map(f64::from).sum::<f64>() as f32),
        Reduction::Mean => {
            Tensor::scalar((sq.map(f64::from).sum::<f64>() / x.numel() as f64) as f32)
        }
    })
}

struct MseBackward {
    x: Arc<Tensor>,
    t: Arc<Tensor>,
    reduction: Reduction,
}

impl Backward for MseBackward {
    fn name(&self) -> &'static str {
        "MseLossBackward"
    }
    fn backward(&self, g: &Tensor, _inputs: &[Var], needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let (x, t) = (self.x.data(), self.t.data());
        let n = x.len();
        // d/dx = 2 (x - t) * scale; d/dt is its negative.
        let dx: Vec<f32> = match self.reduction {
            Reduction::None => x
                .iter()
                .zip(t)
                .zip(g.data())
                .map(|((&a, &b), &g)| 2.0 * (a - b) * g)
                .collect(),
            Reduction::Sum | Reduction::Mean => {
                let s = if self.reduction == Reduction::Mean {
                    g.data()[0] / n as f32
                } else {
                    g.data()[0]
                };
                x.iter().zip(t).map(|(&a, &b)| 2.0 * (a - b) * s).collect()
            }
        };
        let shape = self.x.shape().to_vec();
        let dt =
            needs[1].then(|| Tensor::from_parts(shape.clone(), dx.iter().map(|v| -v).collect()));
        let dx = needs[0].then(|| Tensor::from_parts(shape, dx));
        Ok(vec![dx, dt])
    }
}

/// Autograd `mse_loss`; both input and target may require grad.
///
/// # Errors
/// See [`mse_loss_forward`].
pub fn mse_loss(x: &Var, t: &Var, reduction: Reduction) -> Result<Var> {
    let (xv, tv) = (x.value(), t.value());
    let out = mse_loss_forward(&xv, &tv, reduction)?;
    Ok(Var::from_op(
        out,
        MseBackward {
            x: xv,
            t: tv,
            reduction,
        },
        vec![x.clone(), t.clone()],
    ))
}
