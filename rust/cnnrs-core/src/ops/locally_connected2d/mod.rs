//! `locally_connected2d`: a convolution without weight sharing — every output
//! position `(i, j)` has its own filter bank (Keras' `LocallyConnected2D`).
//!
//! Layout (NCHW, PyTorch-style names):
//! - input  `[n, c_in, h_in, w_in]`
//! - weight `[h_out, w_out, c_out, c_in, k_h, k_w]`
//! - bias   `[c_out, h_out, w_out]` (optional)
//! - output `[n, c_out, h_out, w_out]`, `h_out = (h_in + 2*pad_h - k_h) / stride_h + 1`
//!
//! `y[n, o, i, j] = b[o, i, j] + sum_{c, ky, kx} w[i, j, o, c, ky, kx] * x[n, c, i*s_h + ky - p_h, j*s_w + kx - p_w]`
//!
//! Per position this is one GEMM: the `[n, c_in*k_h*k_w]` patch matrix times
//! the position's `[c_out, c_in*k_h*k_w]` filters transposed. Positions are
//! independent, so they run in parallel; backward does the two GEMMs of a
//! linear layer per position and scatters the patch gradient back.

use std::sync::Arc;

use rayon::prelude::*;

use crate::autograd::{Backward, Var};
use crate::error::{fmt_shape, Result};
use crate::kernels::{gemm, GemmOpts, MatRef};
use crate::tensor::Tensor;
use crate::{arg_err, shape_err};

pub mod reference;
#[cfg(test)]
mod tests;

/// Geometry of a locally connected layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalParams {
    pub stride: (usize, usize),
    pub padding: (usize, usize),
}

/// Validated sizes of one call.
#[derive(Clone, Copy, Debug)]
pub struct LocalDims {
    pub n: usize,
    pub c_in: usize,
    pub h_in: usize,
    pub w_in: usize,
    pub c_out: usize,
    pub k_h: usize,
    pub k_w: usize,
    pub h_out: usize,
    pub w_out: usize,
}

impl LocalDims {
    fn k(&self) -> usize {
        self.c_in * self.k_h * self.k_w
    }
}

/// Output size along one axis, or None when the kernel does not fit.
pub fn out_size(len: usize, k: usize, stride: usize, pad: usize) -> Option<usize> {
    let padded = len + 2 * pad;
    (stride > 0 && k > 0 && padded >= k).then(|| (padded - k) / stride + 1)
}

/// Checks shapes and returns the sizes.
///
/// # Errors
/// `ShapeMismatch` naming `locally_connected2d` and the shapes.
pub fn check(x: &[usize], w: &[usize], b: Option<&[usize]>, p: &LocalParams) -> Result<LocalDims> {
    let op = "locally_connected2d";
    let [n, c_in, h_in, w_in] = x[..] else {
        return Err(shape_err!(
            "{op}: expected a 4-D input (N, C, H, W) but got shape {}",
            fmt_shape(x)
        ));
    };
    let [wh, ww, c_out, wc, k_h, k_w] = w[..] else {
        return Err(shape_err!(
            "{op}: expected a 6-D weight (H_out, W_out, C_out, C_in, kH, kW) but got shape {}",
            fmt_shape(w)
        ));
    };
    if p.stride.0 == 0 || p.stride.1 == 0 {
        return Err(arg_err!(
            "{op}: stride must be positive, got {:?}",
            p.stride
        ));
    }
    if wc != c_in {
        return Err(shape_err!(
            "{op}: input has {c_in} channels but weight expects {wc}; input {}, weight {}",
            fmt_shape(x),
            fmt_shape(w)
        ));
    }
    let (Some(h_out), Some(w_out)) = (
        out_size(h_in, k_h, p.stride.0, p.padding.0),
        out_size(w_in, k_w, p.stride.1, p.padding.1),
    ) else {
        return Err(shape_err!(
            "{op}: kernel {k_h}x{k_w} is larger than the padded input; input {}, weight {}",
            fmt_shape(x),
            fmt_shape(w)
        ));
    };
    if (wh, ww) != (h_out, w_out) {
        return Err(shape_err!(
            "{op}: weight is for a {wh}x{ww} output but this input gives {h_out}x{w_out}; input {}, weight {}",
            fmt_shape(x),
            fmt_shape(w)
        ));
    }
    if let Some(bs) = b {
        if bs != [c_out, h_out, w_out] {
            return Err(shape_err!(
                "{op}: bias has shape {} but expected ({c_out}, {h_out}, {w_out})",
                fmt_shape(bs)
            ));
        }
    }
    Ok(LocalDims {
        n,
        c_in,
        h_in,
        w_in,
        c_out,
        k_h,
        k_w,
        h_out,
        w_out,
    })
}

/// Gathers the `[n, c_in*k_h*k_w]` patch matrix of output position `(i, j)`.
fn gather(x: &[f32], d: &LocalDims, p: &LocalParams, i: usize, j: usize, out: &mut [f32]) {
    let k = d.k();
    for n in 0..d.n {
        for c in 0..d.c_in {
            for ky in 0..d.k_h {
                for kx in 0..d.k_w {
                    let y = (i * p.stride.0 + ky) as isize - p.padding.0 as isize;
                    let xx = (j * p.stride.1 + kx) as isize - p.padding.1 as isize;
                    let v = if y >= 0 && xx >= 0 && (y as usize) < d.h_in && (xx as usize) < d.w_in
                    {
                        x[((n * d.c_in + c) * d.h_in + y as usize) * d.w_in + xx as usize]
                    } else {
                        0.0
                    };
                    out[n * k + (c * d.k_h + ky) * d.k_w + kx] = v;
                }
            }
        }
    }
}

/// Forward pass.
///
/// # Errors
/// See [`check`].
pub fn forward(x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: &LocalParams) -> Result<Tensor> {
    let d = check(x.shape(), w.shape(), b.map(|t| t.shape()), p)?;
    let (k, positions) = (d.k(), d.h_out * d.w_out);
    // [h_out*w_out, n, c_out]: one contiguous block per position.
    let mut per_pos = vec![0.0f32; positions * d.n * d.c_out];
    if d.n * d.c_out > 0 {
        crate::parallel::install(|| {
            per_pos
                .par_chunks_mut(d.n * d.c_out)
                .enumerate()
                .for_each_init(
                    || vec![0.0f32; d.n * k],
                    |patch, (pos, out)| {
                        let (i, j) = (pos / d.w_out, pos % d.w_out);
                        gather(x.data(), &d, p, i, j, patch);
                        let wpos = &w.data()[pos * d.c_out * k..(pos + 1) * d.c_out * k];
                        // [n, k] x [k, c_out] (the position's filters transposed)
                        let a = MatRef::row_major(patch, d.n, k, k);
                        let bm = MatRef::transposed(wpos, k, d.c_out, k);
                        gemm(a, bm, out, d.c_out, &GemmOpts::default());
                    },
                );
        });
    }
    let mut y = Tensor::zeros(&[d.n, d.c_out, d.h_out, d.w_out])?;
    let yd = y.data_mut();
    for pos in 0..positions {
        for n in 0..d.n {
            for o in 0..d.c_out {
                let bias = b.map_or(0.0, |b| b.data()[o * positions + pos]);
                yd[(n * d.c_out + o) * positions + pos] =
                    per_pos[(pos * d.n + n) * d.c_out + o] + bias;
            }
        }
    }
    Ok(y)
}

/// Gradients `(dx, dw, db)`; `dx`/`dw` only when asked.
///
/// # Errors
/// See [`check`].
pub fn backward(
    x: &Tensor,
    w: &Tensor,
    g: &Tensor,
    p: &LocalParams,
    need_x: bool,
    need_w: bool,
) -> Result<(Option<Tensor>, Option<Tensor>, Tensor)> {
    let d = check(x.shape(), w.shape(), None, p)?;
    let (k, positions) = (d.k(), d.h_out * d.w_out);
    // The gradient regrouped per position: [pos, n, c_out].
    let mut gp = vec![0.0f32; positions * d.n * d.c_out];
    for n in 0..d.n {
        for o in 0..d.c_out {
            for pos in 0..positions {
                gp[(pos * d.n + n) * d.c_out + o] = g.data()[(n * d.c_out + o) * positions + pos];
            }
        }
    }
    let mut db = Tensor::zeros(&[d.c_out, d.h_out, d.w_out])?;
    for pos in 0..positions {
        for n in 0..d.n {
            for o in 0..d.c_out {
                db.data_mut()[o * positions + pos] += gp[(pos * d.n + n) * d.c_out + o];
            }
        }
    }
    let dw = if need_w {
        let mut dw = Tensor::zeros(w.shape())?;
        if d.c_out * k > 0 {
            crate::parallel::install(|| {
                dw.data_mut()
                    .par_chunks_mut(d.c_out * k)
                    .enumerate()
                    .for_each_init(
                        || vec![0.0f32; d.n * k],
                        |patch, (pos, out)| {
                            let (i, j) = (pos / d.w_out, pos % d.w_out);
                            gather(x.data(), &d, p, i, j, patch);
                            let gpos = &gp[pos * d.n * d.c_out..(pos + 1) * d.n * d.c_out];
                            // [c_out, n] x [n, k]
                            let a = MatRef::transposed(gpos, d.c_out, d.n, d.c_out);
                            let bm = MatRef::row_major(patch, d.n, k, k);
                            gemm(a, bm, out, k, &GemmOpts::default());
                        },
                    );
            });
        }
        Some(dw)
    } else {
        None
    };
    let dx = if need_x {
        // dpatch = g_pos [n, c_out] x w_pos [c_out, k], then scatter-add.
        let mut dpatches = vec![0.0f32; positions * d.n * k];
        if d.n * k > 0 {
            crate::parallel::install(|| {
                dpatches
                    .par_chunks_mut(d.n * k)
                    .enumerate()
                    .for_each(|(pos, out)| {
                        let gpos = &gp[pos * d.n * d.c_out..(pos + 1) * d.n * d.c_out];
                        let wpos = &w.data()[pos * d.c_out * k..(pos + 1) * d.c_out * k];
                        let a = MatRef::row_major(gpos, d.n, d.c_out, d.c_out);
                        let bm = MatRef::row_major(wpos, d.c_out, k, k);
                        gemm(a, bm, out, k, &GemmOpts::default());
                    });
            });
        }
        let mut dx = Tensor::zeros(x.shape())?;
        let dxd = dx.data_mut();
        for pos in 0..positions {
            let (i, j) = (pos / d.w_out, pos % d.w_out);
            for n in 0..d.n {
                for c in 0..d.c_in {
                    for ky in 0..d.k_h {
                        for kx in 0..d.k_w {
                            let y = (i * p.stride.0 + ky) as isize - p.padding.0 as isize;
                            let xx = (j * p.stride.1 + kx) as isize - p.padding.1 as isize;
                            if y >= 0 && xx >= 0 && (y as usize) < d.h_in && (xx as usize) < d.w_in
                            {
                                dxd[((n * d.c_in + c) * d.h_in + y as usize) * d.w_in
                                    + xx as usize] +=
                                    dpatches[(pos * d.n + n) * k + (c * d.k_h + ky) * d.k_w + kx];
                            }
                        }
                    }
                }
            }
        }
        Some(dx)
    } else {
        None
    };
    Ok((dx, dw, db))
}

struct LocalBackward {
    x: Arc<Tensor>,
    w: Arc<Tensor>,
    p: LocalParams,
    has_bias: bool,
}

impl Backward for LocalBackward {
    fn name(&self) -> &'static str {
        "LocallyConnected2dBackward"
    }
    fn backward(&self, g: &Tensor, _inputs: &[Var], needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let (dx, dw, db) = backward(&self.x, &self.w, g, &self.p, needs[0], needs[1])?;
        let mut out = vec![dx, dw];
        if self.has_bias {
            out.push(Some(db));
        }
        Ok(out)
    }
}

/// Autograd locally connected layer.
///
/// # Errors
/// See [`check`].
pub fn locally_connected2d(x: &Var, w: &Var, b: Option<&Var>, p: &LocalParams) -> Result<Var> {
    let (xv, wv) = (x.value(), w.value());
    let bv = b.map(|b| b.value());
    let y = forward(&xv, &wv, bv.as_deref(), p)?;
    let mut inputs = vec![x.clone(), w.clone()];
    inputs.extend(b.cloned());
    Ok(Var::from_op(
        y,
        LocalBackward {
            x: xv,
            w: wv,
            p: *p,
            has_bias: b.is_some(),
        },
        inputs,
    ))
}
