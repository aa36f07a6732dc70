//! `interpolate` (`nn.Upsample`): resizing NCHW images with the nearest,
//! bilinear or bicubic kernel, as PyTorch's `F.interpolate`, with its
//! backward pass. The coordinate rules live in [`params`].
//!
//! Method (per `(n, c)` plane; the 2-D weights are separable):
//! - forward: `tmp [h_in, w_out] = x · Ww^T` (each needed input row resampled
//!   along W), then `y [h_out, w_out] = Wh · tmp` (rows combined with their
//!   H weights, a row-wise axpy the compiler vectorises);
//! - backward, the transpose: `tmp = Wh^T · dy` (each output row scattered
//!   into the rows it read), then `dx = tmp · Ww` (each column scattered
//!   into the columns it read). Taps are visited in a fixed order, so the
//!   result does not depend on the thread count.
//!
//! Parallelism: one rayon task per group of planes, each writing its own
//! disjoint output chunk; the `[h_in, w_out]` intermediate lives in the
//! calling thread's reusable scratch buffer.

use crate::autograd::{Backward, Var};
use crate::error::{fmt_shape, Result};
use crate::ops::conv2d::with_scratch;
use crate::shape_err;
use crate::tensor::Tensor;

pub mod params;
pub mod reference;
#[cfg(test)]
mod tests;

pub use params::{AxisTaps, InterpGeom, InterpMode, InterpolateParams};

/// Below this many multiply-adds a call runs on the calling thread (a
/// thread hand-off costs a few microseconds; this op does ~1 FLOP per byte).
const PAR_MIN_WORK: usize = 1 << 20;

/// Multiply-adds of one plane, forward or backward.
fn plane_work(gm: &InterpGeom, th: &AxisTaps, tw: &AxisTaps) -> usize {
    gm.h_in * gm.w_out * tw.width + gm.h_out * gm.w_out * th.width
}

/// Runs `f(plane_index, out_plane, scratch)` over the planes of `out`, in
/// parallel when the work is at least `par_min_work`.
fn for_planes(
    out: &mut [f32],
    plane: usize,
    scratch: usize,
    work: usize,
    par_min_work: usize,
    f: impl Fn(usize, &mut [f32], &mut [f32]) + Sync,
) -> Result<()> {
    if out.is_empty() || plane == 0 {
        return Ok(());
    }
    let planes = out.len() / plane;
    let threads = crate::parallel::get_num_threads();
    if planes < 2 || threads < 2 || work.saturating_mul(planes) < par_min_work {
        return with_scratch(scratch, |tmp| {
            for (i, o) in out.chunks_exact_mut(plane).enumerate() {
                f(i, o, tmp);
            }
            Ok(())
        });
    }
    // At least ~PAR_MIN_WORK/16 of work per rayon split.
    let min_len = ((par_min_work / 16) / work.max(1)).clamp(1, planes);
    crate::parallel::try_chunks_mut(out, plane, min_len, |i, o| {
        with_scratch(scratch, |tmp| {
            f(i, o, tmp);
            Ok(())
        })
    })
}

/// One plane forward: `x` `[h_in, w_in]` -> `y` `[h_out, w_out]` (every
/// element written). `tmp` holds `h_in * w_out` floats.
fn forward_plane(
    x: &[f32],
    y: &mut [f32],
    tmp: &mut [f32],
    gm: &InterpGeom,
    th: &AxisTaps,
    tw: &AxisTaps,
    used: &[bool],
) {
    let (w_in, w_out) = (gm.w_in, gm.w_out);
    for ih in 0..gm.h_in {
        if !used[ih] {
            continue;
        }
        let src = &x[ih * w_in..(ih + 1) * w_in];
        let dst = &mut tmp[ih * w_out..(ih + 1) * w_out];
        for (ow, d) in dst.iter_mut().enumerate() {
            let (idx, wt) = tw.of(ow);
            let mut s = 0.0f32;
            for (&i, &wv) in idx.iter().zip(wt) {
                s += wv * src[i];
            }
            *d = s;
        }
    }
    for (oh, row) in y.chunks_exact_mut(w_out).enumerate() {
        let (idx, wt) = th.of(oh);
        let first = &tmp[idx[0] * w_out..(idx[0] + 1) * w_out];
        for (r, &t) in row.iter_mut().zip(first) {
            *r = wt[0] * t;
        }
        for (&i, &wv) in idx.iter().zip(wt).skip(1) {
            let src = &tmp[i * w_out..(i + 1) * w_out];
            for (r, &t) in row.iter_mut().zip(src) {
                *r += wv * t;
            }
        }
    }
}

/// One plane backward: `dy` `[h_out, w_out]` -> `dx` `[h_in, w_in]` (every
/// element written). `tmp` holds `h_in * w_out` floats.
fn backward_plane(
    dy: &[f32],
    dx: &mut [f32],
    tmp: &mut [f32],
    gm: &InterpGeom,
    th: &AxisTaps,
    tw: &AxisTaps,
    used: &[bool],
) {
    let (w_in, w_out) = (gm.w_in, gm.w_out);
    tmp.fill(0.0);
    for (oh, g) in dy.chunks_exact(w_out).enumerate() {
        let (idx, wt) = th.of(oh);
        for (&i, &wv) in idx.iter().zip(wt) {
            let dst = &mut tmp[i * w_out..(i + 1) * w_out];
            for (d, &gv) in dst.iter_mut().zip(g) {
                *d += wv * gv;
            }
        }
    }
    dx.fill(0.0);
    for ih in 0..gm.h_in {
        if !used[ih] {
            continue;
        }
        let src = &tmp[ih * w_out..(ih + 1) * w_out];
        let dst = &mut dx[ih * w_in..(ih + 1) * w_in];
        for (ow, &t) in src.iter().enumerate() {
            let (idx, wt) = tw.of(ow);
            for (&i, &wv) in idx.iter().zip(wt) {
                dst[i] += wv * t;
            }
        }
    }
}

/// Input rows some output row reads.
fn used_rows(gm: &InterpGeom, th: &AxisTaps) -> Vec<bool> {
    let mut used = vec![false; gm.h_in];
    for &i in &th.idx {
        used[i] = true;
    }
    used
}

/// Interpolation forward.
///
/// # Errors
/// What [`InterpGeom::new`] refuses; `OutOfMemory` for huge outputs.
pub fn forward(x: &Tensor, p: &InterpolateParams) -> Result<Tensor> {
    forward_tuned(x, p, PAR_MIN_WORK)
}

pub(crate) fn forward_tuned(
    x: &Tensor,
    p: &InterpolateParams,
    par_min_work: usize,
) -> Result<Tensor> {
    let gm = InterpGeom::new(x.shape(), p)?;
    let (th, tw) = (gm.taps_h(), gm.taps_w());
    let used = used_rows(&gm, &th);
    let mut y = Tensor::zeros(&gm.out_shape())?;
    let (in_plane, out_plane) = (gm.h_in * gm.w_in, gm.h_out * gm.w_out);
    let xd = x.data();
    for_planes(
        y.data_mut(),
        out_plane,
        gm.h_in * gm.w_out,
        plane_work(&gm, &th, &tw),
        par_min_work,
        |i, yo, tmp| {
            forward_plane(
                &xd[i * in_plane..(i + 1) * in_plane],
                yo,
                tmp,
                &gm,
                &th,
                &tw,
                &used,
            )
        },
    )?;
    Ok(y)
}

/// Interpolation backward: the gradient of the input given the output's.
///
/// # Errors
/// What [`InterpGeom::new`] refuses, and `ShapeMismatch` when `grad_out`
/// does not have the output's shape.
pub fn backward(x_shape: &[usize], grad_out: &Tensor, p: &InterpolateParams) -> Result<Tensor> {
    backward_tuned(x_shape, grad_out, p, PAR_MIN_WORK)
}

pub(crate) fn backward_tuned(
    x_shape: &[usize],
    grad_out: &Tensor,
    p: &InterpolateParams,
    par_min_work: usize,
) -> Result<Tensor> {
    let gm = InterpGeom::new(x_shape, p)?;
    let want = gm.out_shape();
    if grad_out.shape() != want {
        return Err(shape_err!(
            "interpolate backward: grad_output has shape {} but the output has shape {}",
            fmt_shape(grad_out.shape()),
            fmt_shape(&want)
        ));
    }
    let (th, tw) = (gm.taps_h(), gm.taps_w());
    let used = used_rows(&gm, &th);
    let mut dx = Tensor::zeros(x_shape)?;
    let (in_plane, out_plane) = (gm.h_in * gm.w_in, gm.h_out * gm.w_out);
    let gd = grad_out.data();
    for_planes(
        dx.data_mut(),
        in_plane,
        gm.h_in * gm.w_out,
        plane_work(&gm, &th, &tw),
        par_min_work,
        |i, dxo, tmp| {
            backward_plane(
                &gd[i * out_plane..(i + 1) * out_plane],
                dxo,
                tmp,
                &gm,
                &th,
                &tw,
                &used,
            )
        },
    )?;
    Ok(dx)
}

struct InterpolateBackward {
    x_shape: Vec<usize>,
    p: InterpolateParams,
}

impl Backward for InterpolateBackward {
    fn name(&self) -> &'static str {
        match self.p.mode {
            InterpMode::Nearest => "UpsampleNearest2DBackward",
            InterpMode::Bilinear => "UpsampleBilinear2DBackward",
            InterpMode::Bicubic => "UpsampleBicubic2DBackward",
        }
    }
    fn backward(
        &self,
        g: &Tensor,
        _inputs: &[Var],
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(backward(&self.x_shape, g, &self.p)?)])
    }
}

/// Autograd interpolate of `x` `(N, C, H, W)`.
///
/// # Errors
/// As [`forward`].
pub fn interpolate(x: &Var, p: &InterpolateParams) -> Result<Var> {
    let xv = x.value();
    let y = forward(&xv, p)?;
    Ok(Var::from_op(
        y,
        InterpolateBackward {
            x_shape: xv.shape().to_vec(),
            p: *p,
        },
        vec![x.clone()],
    ))
}
