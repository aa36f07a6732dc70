//! `pad` (PyTorch's `F.pad` on the last one or two dimensions) and
//! `center_crop` (the crop of the valid-padding U-Net's skip connections),
//! with their backward passes.
//!
//! Both are one index map per padded axis: output coordinate `o` reads input
//! coordinate `map(o)`, or nothing (the fill value):
//! - constant: `o - lo` when it lies inside the input (a negative `lo`/`hi`
//!   crops, as PyTorch allows in constant mode);
//! - reflect: `o - lo` mirrored at the borders without repeating the edge
//!   (`-1 -> 1`, `len -> len - 2`); each pad must be below the axis length;
//! - replicate: `o - lo` clamped to the edge.
//!
//! `center_crop` is constant padding by minus the margins, so its backward
//! pads the gradient back with zeros. Backward of every mode scatter-adds
//! the output gradient into the coordinates each output read.
//!
//! Layout: the tensor is seen as `[outer, h, w]` planes (for a 1-D pad,
//! `h = 1`), one plane per task when the tensor is large.

use crate::autograd::{Backward, Var};
use crate::error::{fmt_shape, Result};
use crate::tensor::{checked_numel, Tensor};
use crate::{arg_err, shape_err};

pub mod reference;
#[cfg(test)]
mod tests;

/// Below this many floats a call runs on the calling thread.
const PAR_MIN_FLOATS: usize = 1 << 20;

/// How padded positions are filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PadMode {
    Constant,
    Reflect,
    Replicate,
}

impl PadMode {
    /// `"constant"`, `"reflect"` or `"replicate"`, PyTorch's spellings.
    ///
    /// # Errors
    /// `InvalidArgument` for any other string.
    pub fn parse(mode: &str) -> Result<Self> {
        match mode {
            "constant" => Ok(Self::Constant),
            "reflect" => Ok(Self::Reflect),
            "replicate" => Ok(Self::Replicate),
            _ => Err(arg_err!(
                "pad: mode must be 'constant', 'reflect' or 'replicate', got '{mode}'"
            )),
        }
    }
}

/// A pad resolved against its input shape.
#[derive(Clone, Debug, PartialEq)]
pub struct PadGeom {
    pub in_shape: Vec<usize>,
    pub out_shape: Vec<usize>,
    /// Planes: the product of the dims that are not padded.
    pub outer: usize,
    pub h_in: usize,
    pub w_in: usize,
    pub h_out: usize,
    pub w_out: usize,
    pub mode: PadMode,
    /// Input row (column) read by each output row (column), `None` = fill.
    pub map_h: Vec<Option<usize>>,
    pub map_w: Vec<Option<usize>>,
}

/// The index map of one axis of length `len` padded by `lo`, `hi`.
fn axis_map(
    op: &str,
    mode: PadMode,
    len: usize,
    lo: i64,
    hi: i64,
    dim: usize,
    shape: &[usize],
) -> Result<Vec<Option<usize>>> {
    let out = len as i128 + lo as i128 + hi as i128;
    if out < 0 {
        return Err(shape_err!(
            "{op}: the input size {len}, plus padding {lo} and {hi}, gives a negative output \
             size in dimension {dim}; input {}",
            fmt_shape(shape)
        ));
    }
    if mode != PadMode::Constant {
        let name = if mode == PadMode::Reflect {
            "reflect"
        } else {
            "replicate"
        };
        if lo < 0 || hi < 0 {
            return Err(arg_err!(
                "{op}: negative padding ({lo}, {hi}) is only supported in 'constant' mode, not \
                 '{name}'"
            ));
        }
        if mode == PadMode::Reflect && (lo as i128 >= len as i128 || hi as i128 >= len as i128) {
            return Err(shape_err!(
                "{op}: padding ({lo}, {hi}) in 'reflect' mode must be less than the size {len} \
                 of dimension {dim}; input {}",
                fmt_shape(shape)
            ));
        }
        if mode == PadMode::Replicate && len == 0 && (lo > 0 || hi > 0) {
            return Err(shape_err!(
                "{op}: cannot pad the empty dimension {dim} in 'replicate' mode; input {}",
                fmt_shape(shape)
            ));
        }
    }
    let out = usize::try_from(out).map_err(|_| arg_err!("{op}: padding is too large"))?;
    checked_numel(&[out])?;
    let last = len as i128 - 1;
    Ok((0..out)
        .map(|o| {
            let i = o as i128 - lo as i128;
            match mode {
                PadMode::Constant => (0..len as i128).contains(&i).then_some(i as usize),
                PadMode::Replicate => Some(i.clamp(0, last) as usize),
                PadMode::Reflect => {
                    let r = if i < 0 {
                        -i
                    } else if i > last {
                        2 * last - i
                    } else {
                        i
                    };
                    Some(r as usize)
                }
            }
        })
        .collect())
}

impl PadGeom {
    /// Resolves `pad` — `(left, right)` or `(left, right, top, bottom)`, as
    /// PyTorch orders it: the last dimension first — against `shape`. `op`
    /// names the caller in messages.
    ///
    /// # Errors
    /// `InvalidArgument` for a pad of another length, an unsupported negative
    /// pad; `ShapeMismatch` for too few dimensions, a negative output size, a
    /// reflect pad not smaller than its dimension.
    pub fn new(op: &str, shape: &[usize], pad: &[i64], mode: PadMode) -> Result<Self> {
        let k = match pad.len() {
            2 => 1,
            4 => 2,
            n => {
                return Err(arg_err!(
                    "{op}: padding must have 2 or 4 values (the last one or two dimensions, \
                     last dimension first), got {n}"
                ))
            }
        };
        let nd = shape.len();
        if nd < k {
            return Err(shape_err!(
                "{op}: padding of length {} needs an input with at least {k} dimensions, got \
                 shape {}",
                pad.len(),
                fmt_shape(shape)
            ));
        }
        let w_in = shape[nd - 1];
        let map_w = axis_map(op, mode, w_in, pad[0], pad[1], nd - 1, shape)?;
        let (h_in, map_h) = if k == 2 {
            let h = shape[nd - 2];
            (h, axis_map(op, mode, h, pad[2], pad[3], nd - 2, shape)?)
        } else {
            (1, vec![Some(0)])
        };
        let outer: usize = shape[..nd - k].iter().product();
        let mut out_shape = shape.to_vec();
        out_shape[nd - 1] = map_w.len();
        if k == 2 {
            out_shape[nd - 2] = map_h.len();
        }
        checked_numel(&out_shape)?;
        Ok(Self {
            in_shape: shape.to_vec(),
            out_shape,
            outer,
            h_in,
            w_in,
            h_out: map_h.len(),
            w_out: map_w.len(),
            mode,
            map_h,
            map_w,
        })
    }

    /// For constant mode: the output columns `lo..hi` read input columns
    /// `i0..i0 + (hi - lo)` (the map is a shifted identity there).
    fn constant_cols(&self) -> (usize, usize, usize) {
        let lo = self.map_w.iter().position(|m| m.is_some());
        match lo {
            None => (0, 0, 0),
            Some(lo) => {
                let n = self.map_w[lo..].iter().take_while(|m| m.is_some()).count();
                (lo, lo + n, self.map_w[lo].unwrap_or(0))
            }
        }
    }
}

/// Pads (or crops) `x` as `gm` says, filling with `value`.
///
/// # Errors
/// `OutOfMemory` for outputs too large to allocate.
pub fn forward(x: &Tensor, gm: &PadGeom, value: f32) -> Result<Tensor> {
    forward_tuned(x, gm, value, PAR_MIN_FLOATS)
}

pub(crate) fn forward_tuned(
    x: &Tensor,
    gm: &PadGeom,
    value: f32,
    par_min: usize,
) -> Result<Tensor> {
    debug_assert_eq!(x.shape(), gm.in_shape);
    let mut y = Tensor::zeros(&gm.out_shape)?;
    let (in_plane, w_in) = (gm.h_in * gm.w_in, gm.w_in);
    let (c_lo, c_hi, c_src) = gm.constant_cols();
    let xd = x.data();
    crate::parallel::for_each_block_mut(y.data_mut(), gm.h_out * gm.w_out, par_min, |p, out| {
        let src = &xd[p * in_plane..(p + 1) * in_plane];
        for (row, ih) in out.chunks_exact_mut(gm.w_out).zip(&gm.map_h) {
            let Some(ih) = *ih else {
                row.fill(value);
                continue;
            };
            let srow = &src[ih * w_in..(ih + 1) * w_in];
            if gm.mode == PadMode::Constant {
                row[..c_lo].fill(value);
                row[c_hi..].fill(value);
                row[c_lo..c_hi].copy_from_slice(&srow[c_src..c_src + (c_hi - c_lo)]);
            } else {
                for (d, iw) in row.iter_mut().zip(&gm.map_w) {
                    *d = iw.map_or(value, |iw| srow[iw]);
                }
            }
        }
    });
    Ok(y)
}

/// The input gradient: each output's gradient added to the input it read.
///
/// # Errors
/// `ShapeMismatch` when `grad_out` does not have the output's shape.
pub fn backward(grad_out: &Tensor, gm: &PadGeom) -> Result<Tensor> {
    backward_tuned(grad_out, gm, PAR_MIN_FLOATS)
}

pub(crate) fn backward_tuned(grad_out: &Tensor, gm: &PadGeom, par_min: usize) -> Result<Tensor> {
    if grad_out.shape() != gm.out_shape {
        return Err(shape_err!(
            "pad backward: grad_output has shape {} but the output has shape {}",
            fmt_shape(grad_out.shape()),
            fmt_shape(&gm.out_shape)
        ));
    }
    let mut dx = Tensor::zeros(&gm.in_shape)?;
    let (out_plane, w_in, w_out) = (gm.h_out * gm.w_out, gm.w_in, gm.w_out);
    if out_plane == 0 {
        return Ok(dx); // cropped to nothing: no input was read
    }
    let (c_lo, c_hi, c_src) = gm.constant_cols();
    let gd = grad_out.data();
    crate::parallel::for_each_block_mut(dx.data_mut(), gm.h_in * gm.w_in, par_min, |p, dxp| {
        let g = &gd[p * out_plane..(p + 1) * out_plane];
        for (grow, ih) in g.chunks_exact(w_out).zip(&gm.map_h) {
            let Some(ih) = *ih else { continue };
            let drow = &mut dxp[ih * w_in..(ih + 1) * w_in];
            if gm.mode == PadMode::Constant {
                // Constant maps are one-to-one: no two outputs share an input.
                let dst = &mut drow[c_src..c_src + (c_hi - c_lo)];
                for (d, &v) in dst.iter_mut().zip(&grow[c_lo..c_hi]) {
                    *d += v;
                }
            } else {
                for (&v, iw) in grow.iter().zip(&gm.map_w) {
                    if let Some(iw) = *iw {
                        drow[iw] += v;
                    }
                }
            }
        }
    });
    Ok(dx)
}

struct PadBackward {
    gm: PadGeom,
    name: &'static str,
}

impl Backward for PadBackward {
    fn name(&self) -> &'static str {
        self.name
    }
    fn backward(
        &self,
        g: &Tensor,
        _inputs: &[Var],
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(backward(g, &self.gm)?)])
    }
}

/// Autograd pad of the last one (`pad.len() == 2`) or two (`4`) dimensions:
/// `(left, right[, top, bottom])`, negative values crop (constant mode).
///
/// # Errors
/// As [`PadGeom::new`].
pub fn pad(x: &Var, pad: &[i64], mode: PadMode, value: f32) -> Result<Var> {
    let xv = x.value();
    let gm = PadGeom::new("pad", xv.shape(), pad, mode)?;
    let y = forward(&xv, &gm, value)?;
    Ok(Var::from_op(
        y,
        PadBackward {
            gm,
            name: "PadBackward",
        },
        vec![x.clone()],
    ))
}

/// The crop of `(h, w)` around the centre of the last two dimensions: rows
/// `top..top + h` with `top = (H - h) / 2` (floor: an odd margin leaves the
/// extra row at the bottom), columns likewise.
///
/// # Errors
/// `InvalidArgument` for a non-positive crop size; `ShapeMismatch` for fewer
/// than two dimensions or a crop larger than the input.
pub fn center_crop_geom(shape: &[usize], size: (i64, i64)) -> Result<PadGeom> {
    let (h, w) = size;
    if h < 1 || w < 1 {
        return Err(arg_err!(
            "center_crop: crop size must be positive, got ({h}, {w})"
        ));
    }
    let nd = shape.len();
    if nd < 2 {
        return Err(shape_err!(
            "center_crop: expected an input with at least 2 dimensions (..., H, W), got shape {}",
            fmt_shape(shape)
        ));
    }
    let (hi, wi) = (shape[nd - 2] as i64, shape[nd - 1] as i64);
    if h > hi || w > wi {
        return Err(shape_err!(
            "center_crop: crop size ({h}, {w}) is larger than the input's spatial size ({hi}, \
             {wi}); input {}",
            fmt_shape(shape)
        ));
    }
    let (top, left) = ((hi - h) / 2, (wi - w) / 2);
    let pads = [-left, -(wi - w - left), -top, -(hi - h - top)];
    PadGeom::new("center_crop", shape, &pads, PadMode::Constant)
}

/// Autograd centre crop of the last two dimensions to `size` (see
/// [`center_crop_geom`]); the backward pads the gradient back with zeros.
///
/// # Errors
/// As [`center_crop_geom`].
pub fn center_crop(x: &Var, size: (i64, i64)) -> Result<Var> {
    let xv = x.value();
    let gm = center_crop_geom(xv.shape(), size)?;
    let y = forward(&xv, &gm, 0.0)?;
    Ok(Var::from_op(
        y,
        PadBackward {
            gm,
            name: "CenterCropBackward",
        },
        vec![x.clone()],
    ))
}
