//! The four dropouts. All draw from the core generator ([`crate::rng`]) and
//! are the identity outside training.
//!
//! - `dropout`: each element kept with probability `1 - p` and scaled by
//!   `1 / (1 - p)` (inverted dropout).
//! - `dropout2d` (spatial dropout, Tompson et al. 2015): whole `(n, c)`
//!   feature maps kept or zeroed, same scaling.
//! - `cutout` (DeVries & Taylor 2017): per image, one square of side `size`
//!   centred at a uniformly drawn pixel (clipped at the borders) is zeroed in
//!   every channel. No rescaling.
//! - `max_pool_dropout` (Wu & Gu 2015): in training every unit is kept with
//!   probability `q = 1 - p` before the max of each pooling window is taken
//!   (dropped units count as 0, as for the non-negative ReLU activations the
//!   paper assumes; a window with nothing kept outputs 0). In eval, the
//!   paper's probabilistic weighted pooling: with the window sorted
//!   ascending `a_1 <= ... <= a_n`, the output is `sum_i q (1-q)^(n-i) a_i`
//!   (the expected training output); or plain max pooling when asked.
//!
//! Backward of the masked dropouts multiplies by the same mask; max-pool
//! dropout routes the gradient to the selected unit (training) or by the
//! weights `q (1-q)^(n-i)` (eval).

use std::sync::Arc;

use crate::autograd::{Backward, Var};
use crate::error::{fmt_shape, Result};
use crate::rng::with_rng;
use crate::tensor::Tensor;
use crate::{arg_err, shape_err};

pub mod reference;
#[cfg(test)]
mod tests;

fn check_p(op: &str, p: f32) -> Result<()> {
    if !(0.0..=1.0).contains(&p) {
        return Err(arg_err!(
            "{op}: dropout probability has to be between 0 and 1, but got {p}"
        ));
    }
    Ok(())
}

/// Multiplies by a saved mask in forward and backward.
struct MaskBackward {
    name: &'static str,
    mask: Arc<Vec<f32>>,
    /// Mask entries apply to blocks of this many consecutive elements.
    block: usize,
}

fn apply_mask(x: &Tensor, mask: &[f32], block: usize) -> Tensor {
    let mut out = x.clone();
    if block == 0 {
        return out;
    }
    for (chunk, &m) in out.data_mut().chunks_mut(block).zip(mask) {
        if m != 1.0 {
            chunk.iter_mut().for_each(|v| *v *= m);
        }
    }
    out
}

impl Backward for MaskBackward {
    fn name(&self) -> &'static str {
        self.name
    }
    fn backward(
        &self,
        g: &Tensor,
        _inputs: &[Var],
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(apply_mask(g, &self.mask, self.block))])
    }
}

fn masked(name: &'static str, x: &Var, mask: Vec<f32>, block: usize) -> Var {
    let y = apply_mask(&x.value(), &mask, block);
    Var::from_op(
        y,
        MaskBackward {
            name,
            mask: Arc::new(mask),
            block,
        },
        vec![x.clone()],
    )
}

/// A keep mask of `count` entries with value `scale` (kept) or 0.
fn bernoulli_mask(count: usize, p: f32) -> Vec<f32> {
    if p == 0.0 {
        return vec![1.0; count];
    }
    if p == 1.0 {
        return vec![0.0; count];
    }
    let scale = 1.0 / (1.0 - p);
    with_rng(|r| {
        (0..count)
            .map(|_| if r.uniform() >= p { scale } else { 0.0 })
            .collect()
    })
}

/// Standard (inverted) dropout.
///
/// # Errors
/// `InvalidArgument` for `p` outside [0, 1].
pub fn dropout(x: &Var, p: f32, training: bool) -> Result<Var> {
    check_p("dropout", p)?;
    if !training || p == 0.0 {
        return Ok(x.clone());
    }
    let mask = bernoulli_mask(x.value().numel(), p);
    Ok(masked("DropoutBackward", x, mask, 1))
}

/// Spatial dropout over whole feature maps of an `(N, C, H, W)` (or
/// `(N, C, L)`) input.
///
/// # Errors
/// `InvalidArgument` for `p` outside [0, 1]; `ShapeMismatch` for rank < 3.
pub fn dropout2d(x: &Var, p: f32, training: bool) -> Result<Var> {
    check_p("dropout2d", p)?;
    let shape = x.shape();
    if shape.len() < 3 {
        return Err(shape_err!(
            "dropout2d: expected a 3-D or 4-D input (N, C, H, W) but got shape {}",
            fmt_shape(&shape)
        ));
    }
    if !training || p == 0.0 {
        return Ok(x.clone());
    }
    let planes = shape[0] * shape[1];
    let block: usize = shape[2..].iter().product();
    let mask = bernoulli_mask(planes, p);
    Ok(masked("Dropout2dBackward", x, mask, block))
}

/// Cutout: one `size x size` square per image zeroed in all channels.
///
/// # Errors
/// `ShapeMismatch` for a non-4-D input; `InvalidArgument` for `size == 0`.
pub fn cutout(x: &Var, size: usize, training: bool) -> Result<Var> {
    let xv = x.value();
    let [n, c, h, w] = xv.dims4("cutout", "input")?;
    if size == 0 {
        return Err(arg_err!("cutout: size must be at least 1, got 0"));
    }
    if !training || h == 0 || w == 0 {
        return Ok(x.clone());
    }
    let mut mask = vec![1.0f32; n * h * w];
    let centres: Vec<(usize, usize)> = with_rng(|r| {
        (0..n)
            .map(|_| (r.below(h as u64) as usize, r.below(w as u64) as usize))
            .collect()
    });
    for (i, &(cy, cx)) in centres.iter().enumerate() {
        let (y0, y1) = (cy.saturating_sub(size / 2), (cy + size - size / 2).min(h));
        let (x0, x1) = (cx.saturating_sub(size / 2), (cx + size - size / 2).min(w));
        for yy in y0..y1 {
            mask[i * h * w + yy * w + x0..i * h * w + yy * w + x1].fill(0.0);
        }
    }
    // Expand the per-image mask over channels (blocks of one element).
    let mut full = Vec::with_capacity(n * c * h * w);
    for i in 0..n {
        for _ in 0..c {
            full.extend_from_slice(&mask[i * h * w..(i + 1) * h * w]);
        }
    }
    Ok(masked("CutoutBackward", x, full, 1))
}

/// Pooling geometry of max-pool dropout (no padding).
#[derive(Clone, Copy, Debug)]
pub struct PoolDropoutParams {
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub p: f32,
    pub training: bool,
    /// In eval: probabilistic weighted pooling (true) or plain max (false).
    pub weighted_eval: bool,
}

fn pool_out(
    op: &str,
    h: usize,
    w: usize,
    pp: &PoolDropoutParams,
    shape: &[usize],
) -> Result<(usize, usize)> {
    let (kh, kw) = pp.kernel;
    let (sh, sw) = pp.stride;
    if kh == 0 || kw == 0 || sh == 0 || sw == 0 {
        return Err(arg_err!(
            "{op}: kernel_size and stride must be positive, got kernel {:?} stride {:?}",
            pp.kernel,
            pp.stride
        ));
    }
    if kh > h || kw > w {
        return Err(shape_err!(
            "{op}: kernel {kh}x{kw} is larger than the input {h}x{w}; input {}",
            fmt_shape(shape)
        ));
    }
    Ok(((h - kh) / sh + 1, (w - kw) / sw + 1))
}

/// For each output, `per` (input index, weight) pairs its gradient flows to,
/// flat (`per` = 1 for max selection, the window size for weighted pooling;
/// an unused slot has weight 0).
struct PoolDropoutBackward {
    routes: Vec<(u32, f32)>,
    per: usize,
    in_shape: Vec<usize>,
}

impl Backward for PoolDropoutBackward {
    fn name(&self) -> &'static str {
        "MaxPoolDropoutBackward"
    }
    fn backward(
        &self,
        g: &Tensor,
        _inputs: &[Var],
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let mut dx = Tensor::zeros(&self.in_shape)?;
        let d = dx.data_mut();
        for (gv, route) in g.data().iter().zip(self.routes.chunks_exact(self.per)) {
            for &(i, wt) in route {
                d[i as usize] += gv * wt;
            }
        }
        Ok(vec![Some(dx)])
    }
}

/// Max-pooling dropout (see the module docs).
///
/// # Errors
/// `InvalidArgument` for bad `p`, kernel or stride; `ShapeMismatch` for a
/// non-4-D input or a kernel larger than the input; `OutOfMemory` for inputs
/// beyond 2^32 elements (gradient routes use 32-bit indices).
pub fn max_pool_dropout(x: &Var, pp: &PoolDropoutParams) -> Result<Var> {
    check_p("max_pool_dropout", pp.p)?;
    let xv = x.value();
    let [n, c, h, w] = xv.dims4("max_pool_dropout", "input")?;
    let (ho, wo) = pool_out("max_pool_dropout", h, w, pp, xv.shape())?;
    if xv.numel() > u32::MAX as usize {
        return Err(crate::error::CnnError::OutOfMemory(
            "max_pool_dropout: input too large".into(),
        ));
    }
    let (kh, kw) = pp.kernel;
    let (sh, sw) = pp.stride;
    let q = 1.0 - pp.p;
    let keep: Option<Vec<bool>> = pp
        .training
        .then(|| with_rng(|r| (0..xv.numel()).map(|_| r.uniform() < q).collect()));
    let xd = xv.data();
    let mut out = Vec::with_capacity(n * c * ho * wo);
    let per = if keep.is_none() && pp.weighted_eval {
        kh * kw
    } else {
        1
    };
    let mut routes: Vec<(u32, f32)> = Vec::with_capacity(n * c * ho * wo * per);
    let mut window: Vec<(f32, u32)> = Vec::with_capacity(kh * kw);
    for plane in 0..n * c {
        let base = plane * h * w;
        for oy in 0..ho {
            for ox in 0..wo {
                window.clear();
                for ky in 0..kh {
                    for kx in 0..kw {
                        let idx = base + (oy * sh + ky) * w + ox * sw + kx;
                        window.push((xd[idx], idx as u32));
                    }
                }
                match (&keep, pp.weighted_eval) {
                    (Some(keep), _) => {
                        // Max over kept units; dropped ones count as 0.
                        let mut best: Option<(f32, u32)> = None;
                        for &(v, i) in &window {
                            let v = if keep[i as usize] { v } else { 0.0 };
                            if best.is_none_or(|(b, _)| v > b || v.is_nan()) {
                                best = Some((v, i));
                            }
                        }
                        let (v, i) = best.unwrap_or((0.0, 0));
                        out.push(v);
                        routes.push((i, if keep[i as usize] { 1.0 } else { 0.0 }));
                    }
                    (None, false) => {
                        let mut best = window[0];
                        for &(v, i) in &window[1..] {
                            if v > best.0 || v.is_nan() {
                                best = (v, i);
                            }
                        }
                        out.push(best.0);
                        routes.push((best.1, 1.0));
                    }
                    (None, true) => {
                        // Ascending by value, ties by index: a_i weighs q (1-q)^(n-i).
                        window.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                        let len = window.len();
                        let mut acc = 0.0f32;
                        for (k, &(v, i)) in window.iter().enumerate() {
                            let wt = q * (1.0 - q).powi((len - 1 - k) as i32);
                            acc += wt * v;
                            routes.push((i, wt));
                        }
                        out.push(acc);
                    }
                }
            }
        }
    }
    let y = Tensor::from_parts(vec![n, c, ho, wo], out);
    Ok(Var::from_op(
        y,
        PoolDropoutBackward {
            routes,
            per,
            in_shape: xv.shape().to_vec(),
        },
        vec![x.clone()],
    ))
}
