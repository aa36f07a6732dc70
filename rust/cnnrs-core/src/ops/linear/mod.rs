//! `linear`: `y = x W^T + b`, as `torch.nn.functional.linear`.
//!
//! Layout: `x` is `(*, in_features)` (any leading dims, flattened to `m` rows;
//! a 1-D `x` is one row), `W` is `(out_features, in_features)` row-major,
//! `b` is `(out_features,)`; `y` is `(*, out_features)`.
//!
//! Forward is one GEMM, `Y[m x out] = X[m x in] · W^T` with the bias added in
//! the GEMM epilogue (`bias_col`). Backward: `dX = dY · W` and
//! `dW = dY^T · X` (two GEMMs over strided views, no transposes copied),
//! `db` = column sums of `dY` (accumulated in f64).

use std::sync::Arc;

use crate::autograd::{Backward, Var};
use crate::error::{fmt_shape, Result};
use crate::kernels::gemm::{gemm_par, GemmOpts, MatRef};
use crate::shape_err;
use crate::tensor::{checked_numel, try_zeros, Tensor};

pub mod reference;
#[cfg(test)]
mod tests;

/// Gradients of `linear` (each `None` when not asked for).
#[derive(Debug)]
pub struct LinearGrads {
    pub input: Option<Tensor>,
    pub weight: Option<Tensor>,
    pub bias: Option<Tensor>,
}

/// `(m, in_features, out_features)` after checking the shapes.
///
/// # Errors
/// `ShapeMismatch` for a 0-d input, a weight that is not 2-D, an input whose
/// last dim is not `in_features`, or a bias that is not `(out_features,)`.
pub fn check_shapes(
    x: &[usize],
    w: &[usize],
    b: Option<&[usize]>,
) -> Result<(usize, usize, usize)> {
    let &[out_f, in_f] = w else {
        return Err(shape_err!(
            "linear: weight must be 2-D (out_features, in_features) but got shape {}",
            fmt_shape(w)
        ));
    };
    let Some((&last, lead)) = x.split_last() else {
        return Err(shape_err!(
            "linear: input must have at least 1 dimension (*, in_features) but got a 0-d tensor, \
             shape ()"
        ));
    };
    if last != in_f {
        return Err(shape_err!(
            "linear: input has {last} features (last dim) but weight expects {in_f}; input {}, \
             weight {}",
            fmt_shape(x),
            fmt_shape(w)
        ));
    }
    if let Some(b) = b {
        if b != [out_f] {
            return Err(shape_err!(
                "linear: bias must have shape ({out_f},) to match weight {} but got {}",
                fmt_shape(w),
                fmt_shape(b)
            ));
        }
    }
    Ok((lead.iter().product(), in_f, out_f))
}

/// `x W^T + b`.
///
/// # Errors
/// See [`check_shapes`]; `OutOfMemory` for outputs too large to allocate.
pub fn forward(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let (m, k, n) = check_shapes(x.shape(), w.shape(), b.map(|b| b.shape()))?;
    let mut shape = x.shape().to_vec();
    if let Some(last) = shape.last_mut() {
        *last = n;
    }
    let mut y = try_zeros(checked_numel(&shape)?)?; // [m, out_features]
    gemm_par(
        MatRef::row_major(x.data(), m, k, k),
        // W^T: [in, out] view of the row-major [out, in] weight.
        MatRef::transposed(w.data(), k, n, k),
        &mut y,
        n,
        &GemmOpts {
            bias_col: b.map(|b| b.data()),
            ..GemmOpts::default()
        },
    );
    Ok(Tensor::from_parts(shape, y))
}

/// Gradients of `linear` given the output gradient `g` (shape of `y`).
/// `needs = [input, weight, bias]`.
///
/// # Errors
/// See [`check_shapes`]; `ShapeMismatch` when `g` is not `x`'s shape with
/// the last dim `out_features`.
pub fn backward(x: &Tensor, w: &Tensor, g: &Tensor, needs: [bool; 3]) -> Result<LinearGrads> {
    let (m, k, n) = check_shapes(x.shape(), w.shape(), None)?;
    let gs = g.shape();
    if gs.len() != x.ndim()
        || gs[..gs.len() - 1] != x.shape()[..x.ndim() - 1]
        || gs[gs.len() - 1] != n
    {
        return Err(shape_err!(
            "linear backward: grad_output {} does not match input {} and weight {}",
            fmt_shape(gs),
            fmt_shape(x.shape()),
            fmt_shape(w.shape())
        ));
    }
    let gm = MatRef::row_major(g.data(), m, n, n); // dY [m, out]
    let input = if needs[0] {
        let mut gx = try_zeros(x.numel())?; // [m, in]
        gemm_par(
            gm,
            MatRef::row_major(w.data(), n, k, k),
            &mut gx,
            k,
            &GemmOpts::default(),
        );
        Some(Tensor::from_parts(x.shape().to_vec(), gx))
    } else {
        None
    };
    let weight = if needs[1] {
        let mut gw = try_zeros(w.numel())?; // [out, in]
        gemm_par(
            MatRef::transposed(g.data(), n, m, n), // dY^T [out, m]
            MatRef::row_major(x.data(), m, k, k),
            &mut gw,
            k,
            &GemmOpts::default(),
        );
        Some(Tensor::from_parts(w.shape().to_vec(), gw))
    } else {
        None
    };
    let bias = if needs[2] {
        let mut acc = vec![0.0f64; n];
        for row in g.data().chunks_exact(n.max(1)).take(m) {
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += v as f64;
            }
        }
        Some(Tensor::from_parts(
            vec![n],
            acc.iter().map(|&a| a as f32).collect(),
        ))
    } else {
        None
    };
    Ok(LinearGrads {
        input,
        weight,
        bias,
    })
}

struct LinearBackward {
    x: Arc<Tensor>,
    w: Arc<Tensor>,
}

impl Backward for LinearBackward {
    fn name(&self) -> &'static str {
        "LinearBackward"
    }
    fn backward(&self, g: &Tensor, _inputs: &[Var], needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let want = [needs[0], needs[1], needs.get(2).copied().unwrap_or(false)];
        let gr = backward(&self.x, &self.w, g, want)?;
        let mut out = vec![gr.input, gr.weight];
        if needs.len() > 2 {
            out.push(gr.bias);
        }
        Ok(out)
    }
}

/// Autograd `linear`.
///
/// # Errors
/// See [`forward`].
pub fn linear(x: &Var, w: &Var, b: Option<&Var>) -> Result<Var> {
    let (xv, wv) = (x.value(), w.value());
    let bv = b.map(|b| b.value());
    let y = forward(&xv, &wv, bv.as_deref())?;
    let mut inputs = vec![x.clone(), w.clone()];
    if let Some(b) = b {
        inputs.push(b.clone());
    }
    Ok(Var::from_op(y, LinearBackward { x: xv, w: wv }, inputs))
}
