//! `conv_transpose2d`: the transposed 2-D convolution over NCHW batches
//! (sometimes called "deconvolution"), as PyTorch's `F.conv_transpose2d`,
//! with its backward pass.
//!
//! Shapes: input `x` `[n, c_in, h_in, w_in]`, weight `w`
//! `[c_in, c_out/groups, k_h, k_w]` (PyTorch's layout), optional bias
//! `[c_out]`, output `[n, c_out, h_out, w_out]` with the sizes from
//! [`params`] (the one copy of the formula):
//!
//! ```text
//! y[n, g*c_out_g + co, ih*s_h + kh*d_h - p_h, iw*s_w + kw*d_w - p_w]
//!     += x[n, g*c_in_g + ci, ih, iw] * w[g*c_in_g + ci, co, kh, kw]
//! ```
//! (positions outside the output dropped), plus the bias.
//!
//! Method: this op is the adjoint of the convolution
//! [`ConvTranspose2dGeom::dual`], so it runs conv2d's kernels on that
//! geometry, on the same GEMM core, with no zero-stuffing:
//! - forward: conv2d's input-gradient kernel (`K = c_out_g*k_h*k_w`), the
//!   output starting at the bias: for stride 1 the forward convolution of
//!   `x` with the flipped weight; otherwise per image and group
//!   `dcol [K, hw_in] = W[g]^T · x[i,g]`, each row of `dcol` added to one
//!   contiguous run of a padded, phase-split output buffer (`col2im` per
//!   panel for small maps);
//! - grad input: `dx[i,g] = W[g] · col(dy[i,g])` (conv2d's forward kernel:
//!   the GEMM packs `col(dy)` straight from a padded copy of `dy`);
//! - grad weight: `dW[g] = sum_i x[i,g] · col(dy[i,g])^T` (conv2d's weight
//!   gradient kernel: the batch split into a fixed number of chunks whose
//!   partial sums are reduced in chunk order, so results are bit-identical
//!   for the same thread count);
//! - grad bias: `db[c] = sum over n, h, w of dy`, in float64.
//!
//! Parallelism, panel sizes and scratch buffers are conv2d's (see
//! `conv2d::Tuning`).

use std::sync::Arc;

use crate::autograd::{Backward, Var};
use crate::error::{fmt_shape, Result};
use crate::ops::conv2d::{backward as conv_bwd, forward as conv_fwd, Tuning};
use crate::shape_err;
use crate::tensor::Tensor;

pub mod params;
pub mod reference;
#[cfg(test)]
mod tests;

pub use crate::ops::conv2d::{
    Conv2dGrads as ConvTranspose2dGrads, Conv2dNeeds as ConvTranspose2dNeeds,
};
pub use params::{ConvTranspose2dGeom, ConvTranspose2dParams};

/// Transposed convolution forward.
///
/// # Errors
/// `ShapeMismatch`/`InvalidArgument` from [`ConvTranspose2dGeom::new`] (wrong
/// ranks, channel counts, bias length, groups, parameters, an output size
/// below 1); `OutOfMemory` for outputs too large to allocate.
pub fn forward(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    p: &ConvTranspose2dParams,
) -> Result<Tensor> {
    forward_tuned(x, w, b, p, &Tuning::DEFAULT)
}

pub(crate) fn forward_tuned(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    p: &ConvTranspose2dParams,
    tuning: &Tuning,
) -> Result<Tensor> {
    let gm = ConvTranspose2dGeom::new(x.shape(), w.shape(), b.map(|b| b.shape()), p)?;
    // The dual's input gradient has the dual's input shape: our output shape.
    conv_bwd::grad_input(w.data(), x.data(), b.map(|b| b.data()), &gm.dual(), tuning)
}

/// Transposed convolution backward: the gradients `needs` asks for, given
/// the gradient of the output.
///
/// # Errors
/// Everything [`forward`] checks, plus `ShapeMismatch` when `grad_out` does
/// not have the output's shape.
pub fn backward(
    x: &Tensor,
    w: &Tensor,
    grad_out: &Tensor,
    p: &ConvTranspose2dParams,
    needs: ConvTranspose2dNeeds,
) -> Result<ConvTranspose2dGrads> {
    backward_tuned(x, w, grad_out, p, needs, &Tuning::DEFAULT)
}

pub(crate) fn backward_tuned(
    x: &Tensor,
    w: &Tensor,
    grad_out: &Tensor,
    p: &ConvTranspose2dParams,
    needs: ConvTranspose2dNeeds,
    tuning: &Tuning,
) -> Result<ConvTranspose2dGrads> {
    let gm = ConvTranspose2dGeom::new(x.shape(), w.shape(), None, p)?;
    let want = gm.out_shape();
    if grad_out.shape() != want {
        return Err(shape_err!(
            "conv_transpose2d backward: grad_output has shape {} but the output has shape {}",
            fmt_shape(grad_out.shape()),
            fmt_shape(&want)
        ));
    }
    let dual = gm.dual();
    let (xd, wd, gd) = (x.data(), w.data(), grad_out.data());
    let bias = |on: bool| on.then(|| conv_bwd::channel_sums(gd, gm.c_out, gm.h_out * gm.w_out));
    if needs.input && needs.weight {
        // Both gradients read `grad_out` as the dual's input: one pass.
        if let Some((dx, dw)) = conv_bwd::forward_and_grad_weight(gd, wd, xd, &dual, tuning)? {
            return Ok(ConvTranspose2dGrads {
                input: Some(dx),
                weight: Some(dw),
                bias: bias(needs.bias),
            });
        }
    }
    Ok(ConvTranspose2dGrads {
        input: if needs.input {
            // The dual's output has our input's shape.
            Some(conv_fwd::run(gd, wd, None, &dual, false, tuning)?)
        } else {
            None
        },
        weight: if needs.weight {
            // The dual's weight gradient: its input is our grad_out, its
            // output gradient is our input.
            Some(conv_bwd::grad_weight(gd, xd, &dual, tuning)?)
        } else {
            None
        },
        bias: bias(needs.bias),
    })
}

struct ConvTranspose2dBackward {
    x: Arc<Tensor>,
    w: Arc<Tensor>,
    p: ConvTranspose2dParams,
}

impl Backward for ConvTranspose2dBackward {
    fn name(&self) -> &'static str {
        "ConvTranspose2dBackward"
    }
    fn backward(&self, g: &Tensor, _inputs: &[Var], needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let want = ConvTranspose2dNeeds {
            input: needs.first().copied().unwrap_or(false),
            weight: needs.get(1).copied().unwrap_or(false),
            bias: needs.get(2).copied().unwrap_or(false),
        };
        let grads = backward(&self.x, &self.w, g, &self.p, want)?;
        let mut out = vec![grads.input, grads.weight];
        if needs.len() > 2 {
            out.push(grads.bias);
        }
        Ok(out)
    }
}

/// Autograd conv_transpose2d: `x` `(N, C_in, H, W)`, `w`
/// `(C_in, C_out/groups, kH, kW)`, optional bias `(C_out,)`.
///
/// # Errors
/// As [`forward`].
pub fn conv_transpose2d(
    x: &Var,
    w: &Var,
    b: Option<&Var>,
    p: &ConvTranspose2dParams,
) -> Result<Var> {
    let (xv, wv) = (x.value(), w.value());
    let bv = b.map(|b| b.value());
    let y = forward(&xv, &wv, bv.as_deref(), p)?;
    let mut inputs = vec![x.clone(), w.clone()];
    inputs.extend(b.cloned());
    let refs: Vec<&Var> = inputs.iter().collect();
    if !Var::any_requires_grad(&refs) {
        return Ok(Var::leaf(y, false));
    }
    Ok(Var::from_op(
        y,
        ConvTranspose2dBackward {
            x: xv,
            w: wv,
            p: *p,
        },
        inputs,
    ))
}
