//! `interpolate` parameters, the output size, and the source coordinates of
//! every output row/column — PyTorch's rules, in one place:
//!
//! - Output size: `size`, or `floor(in * scale_factor)` per axis.
//! - Scale used in the coordinate mapping (`area_pixel_compute_scale`): with
//!   `align_corners`, `(in - 1) / (out - 1)` (0 when `out == 1`); otherwise
//!   `1 / scale_factor` when a scale factor was given (and not recomputed),
//!   else `in / out`.
//! - nearest: `src = min(floor(dst * scale), in - 1)`, the scale and product
//!   in float32 as PyTorch; `out == in` copies and `out == 2*in` takes
//!   `dst / 2` (PyTorch's special cases, which matter for non-integer scale
//!   factors that round to those sizes).
//! - bilinear: `src = scale*dst` (align_corners) or `scale*(dst + 0.5) - 0.5`
//!   clamped at 0 (half-pixel); `i0 = min(floor(src), in - 1)`,
//!   `l = clamp(src - i0, 0, 1)`, taps `(i0, 1 - l)` and `(min(i0 + 1,
//!   in - 1), l)`; `out == in` copies.
//! - bicubic: the same `src` without the clamp at 0; `i = min(floor(src),
//!   in - 1)`, `t = clamp(src - i, 0, 1)`, taps `i-1, i, i+1, i+2` (each
//!   clamped to `0..in`) with Keys' cubic convolution weights, `A = -0.75`.
//!
//! The 2-D interpolation is separable: the weight of input `(ih, iw)` for
//! output `(oh, ow)` is `wh(oh, ih) * ww(ow, iw)`.

use crate::error::{fmt_shape, Result};
use crate::tensor::checked_numel;
use crate::{arg_err, shape_err};

/// Interpolation kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterpMode {
    Nearest,
    Bilinear,
    Bicubic,
}

impl InterpMode {
    /// `"nearest"`, `"bilinear"` or `"bicubic"`, PyTorch's spellings.
    ///
    /// # Errors
    /// `InvalidArgument` for any other string.
    pub fn parse(mode: &str) -> Result<Self> {
        match mode {
            "nearest" => Ok(Self::Nearest),
            "bilinear" => Ok(Self::Bilinear),
            "bicubic" => Ok(Self::Bicubic),
            _ => Err(arg_err!(
                "interpolate: mode must be 'nearest', 'bilinear' or 'bicubic' for 4-D input, \
                 got '{mode}'"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Nearest => "nearest",
            Self::Bilinear => "bilinear",
            Self::Bicubic => "bicubic",
        }
    }

    /// Input taps per output coordinate along one axis.
    pub fn taps(self) -> usize {
        match self {
            Self::Nearest => 1,
            Self::Bilinear => 2,
            Self::Bicubic => 4,
        }
    }
}

/// What the caller asked for, as PyTorch's `F.interpolate` takes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InterpolateParams {
    pub mode: InterpMode,
    /// Output `(H, W)`; exactly one of `size` and `scale_factor` is given.
    pub size: Option<(i64, i64)>,
    /// `(sH, sW)` multipliers of the input size.
    pub scale_factor: Option<(f64, f64)>,
    /// `None` means PyTorch's default (`False` for bilinear/bicubic); must
    /// be `None` for nearest.
    pub align_corners: Option<bool>,
    /// `Some(true)`: compute the output size from the scale factor, then map
    /// coordinates with `in / out` instead of `1 / scale_factor`.
    pub recompute_scale_factor: Option<bool>,
}

impl InterpolateParams {
    /// Interpolation to an explicit output size.
    pub fn to_size(mode: InterpMode, h: usize, w: usize, align_corners: Option<bool>) -> Self {
        Self {
            mode,
            size: Some((h as i64, w as i64)),
            scale_factor: None,
            align_corners,
            recompute_scale_factor: None,
        }
    }

    /// Interpolation by scale factors.
    pub fn by_scale(mode: InterpMode, sh: f64, sw: f64, align_corners: Option<bool>) -> Self {
        Self {
            mode,
            size: None,
            scale_factor: Some((sh, sw)),
            align_corners,
            recompute_scale_factor: None,
        }
    }
}

/// An interpolation resolved against its input shape.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InterpGeom {
    pub n: usize,
    pub c: usize,
    pub h_in: usize,
    pub w_in: usize,
    pub h_out: usize,
    pub w_out: usize,
    pub mode: InterpMode,
    pub align_corners: bool,
    /// The scale factors that enter the coordinate mapping (`None`: sizes).
    pub scale_h: Option<f64>,
    pub scale_w: Option<f64>,
}

impl InterpGeom {
    /// Validates `p` against the input shape `x` `(N, C, H, W)` and resolves
    /// the output size.
    ///
    /// # Errors
    /// `InvalidArgument` for both or neither of size and scale factor,
    /// `align_corners` with nearest, `recompute_scale_factor` with a size,
    /// non-positive or non-finite scale factors, non-positive sizes;
    /// `ShapeMismatch` for a non-4-D or empty (zero height/width) input and
    /// for an output size below 1.
    pub fn new(x: &[usize], p: &InterpolateParams) -> Result<Self> {
        let [n, c, h_in, w_in] = x[..] else {
            return Err(shape_err!(
                "interpolate: expected a 4-D input (N, C, H, W) but got shape {}",
                fmt_shape(x)
            ));
        };
        let align_corners = match (p.mode, p.align_corners) {
            (InterpMode::Nearest, Some(_)) => {
                return Err(arg_err!(
                    "interpolate: align_corners option can only be set with the \
                     interpolating modes: bilinear | bicubic (mode is 'nearest')"
                ))
            }
            (_, ac) => ac.unwrap_or(false),
        };
        let recompute = p.recompute_scale_factor.unwrap_or(false);
        let (h_out, w_out, scale_h, scale_w) = match (p.size, p.scale_factor) {
            (Some(_), Some(_)) => {
                return Err(arg_err!(
                    "interpolate: only one of size or scale_factor should be defined"
                ))
            }
            (None, None) => {
                return Err(arg_err!(
                    "interpolate: either size or scale_factor should be defined"
                ))
            }
            (Some((h, w)), None) => {
                if recompute {
                    return Err(arg_err!(
                        "interpolate: recompute_scale_factor is not meaningful with an \
                         explicit size"
                    ));
                }
                if h < 1 || w < 1 {
                    return Err(arg_err!(
                        "interpolate: output size must be positive, got ({h}, {w})"
                    ));
                }
                let u = |v: i64| {
                    usize::try_from(v).map_err(|_| arg_err!("interpolate: size {v} is too large"))
                };
                (u(h)?, u(w)?, None, None)
            }
            (None, Some((sh, sw))) => {
                if !(sh.is_finite() && sw.is_finite() && sh > 0.0 && sw > 0.0) {
                    return Err(arg_err!(
                        "interpolate: scale_factor must be positive and finite, got ({sh:?}, \
                         {sw:?})"
                    ));
                }
                // `as` saturates: an absurd product becomes usize::MAX and is
                // refused by checked_numel below.
                let h = (h_in as f64 * sh).floor() as usize;
                let w = (w_in as f64 * sw).floor() as usize;
                if recompute {
                    (h, w, None, None)
                } else {
                    (h, w, Some(sh), Some(sw))
                }
            }
        };
        if h_in == 0 || w_in == 0 || h_out == 0 || w_out == 0 {
            return Err(shape_err!(
                "interpolate: input and output sizes should be greater than 0, but got input \
                 (H: {h_in}, W: {w_in}) output (H: {h_out}, W: {w_out}); input {}",
                fmt_shape(x)
            ));
        }
        checked_numel(&[n, c, h_out, w_out])?;
        // The separable kernels keep one [h_in, w_out] plane per thread.
        checked_numel(&[h_in, w_out])?;
        Ok(Self {
            n,
            c,
            h_in,
            w_in,
            h_out,
            w_out,
            mode: p.mode,
            align_corners,
            scale_h,
            scale_w,
        })
    }

    pub fn out_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.h_out, self.w_out]
    }

    /// Taps of the H axis (`[h_out, taps]`).
    pub fn taps_h(&self) -> AxisTaps {
        AxisTaps::new(
            self.mode,
            self.h_in,
            self.h_out,
            self.scale_h,
            self.align_corners,
        )
    }

    /// Taps of the W axis (`[w_out, taps]`).
    pub fn taps_w(&self) -> AxisTaps {
        AxisTaps::new(
            self.mode,
            self.w_in,
            self.w_out,
            self.scale_w,
            self.align_corners,
        )
    }
}

/// For each output coordinate along one axis, `width` input indices and their
/// weights, row-major `[out, width]`. Indices may repeat (clamped taps at the
/// border); their weights then add up.
#[derive(Clone, Debug, PartialEq)]
pub struct AxisTaps {
    pub width: usize,
    pub idx: Vec<usize>,
    pub wt: Vec<f32>,
}

/// Keys' cubic convolution kernel for `|x| <= 1`.
fn cubic1(x: f64, a: f64) -> f64 {
    ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
}

/// Keys' cubic convolution kernel for `1 < |x| < 2`.
fn cubic2(x: f64, a: f64) -> f64 {
    ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
}

/// The cubic coefficient PyTorch (and OpenCV) use without antialiasing.
pub const CUBIC_A: f64 = -0.75;

/// Weights of taps `i-1, i, i+1, i+2` at fractional offset `t` past `i`.
pub fn cubic_weights(t: f64) -> [f64; 4] {
    [
        cubic2(t + 1.0, CUBIC_A),
        cubic1(t, CUBIC_A),
        cubic1(1.0 - t, CUBIC_A),
        cubic2(2.0 - t, CUBIC_A),
    ]
}

/// PyTorch's `area_pixel_compute_scale` (float64 here).
fn linear_scale(len_in: usize, len_out: usize, scale: Option<f64>, align_corners: bool) -> f64 {
    if align_corners {
        if len_out > 1 {
            (len_in as f64 - 1.0) / (len_out as f64 - 1.0)
        } else {
            0.0
        }
    } else {
        match scale {
            Some(s) if s > 0.0 => 1.0 / s,
            _ => len_in as f64 / len_out as f64,
        }
    }
}

/// PyTorch's `area_pixel_compute_source_index`.
fn source_index(scale: f64, dst: usize, align_corners: bool, cubic: bool) -> f64 {
    if align_corners {
        scale * dst as f64
    } else {
        let src = scale * (dst as f64 + 0.5) - 0.5;
        if !cubic && src < 0.0 {
            0.0
        } else {
            src
        }
    }
}

/// PyTorch's nearest source index (the legacy `nearest`, not
/// `nearest-exact`), in float32 like PyTorch so the floors agree.
pub fn nearest_index(dst: usize, len_in: usize, len_out: usize, scale: Option<f64>) -> usize {
    if len_out == len_in {
        return dst;
    }
    if len_out == 2 * len_in {
        return dst >> 1;
    }
    let s: f32 = match scale {
        Some(s) if s > 0.0 => (1.0 / s) as f32,
        _ => len_in as f32 / len_out as f32,
    };
    ((dst as f32 * s).floor() as usize).min(len_in - 1)
}

impl AxisTaps {
    /// The taps of `mode` from `len_in` to `len_out` (both at least 1).
    pub fn new(
        mode: InterpMode,
        len_in: usize,
        len_out: usize,
        scale: Option<f64>,
        align_corners: bool,
    ) -> Self {
        let width = mode.taps();
        let mut idx = Vec::with_capacity(len_out * width);
        let mut wt = Vec::with_capacity(len_out * width);
        let last = len_in - 1;
        for dst in 0..len_out {
            match mode {
                InterpMode::Nearest => {
                    idx.push(nearest_index(dst, len_in, len_out, scale));
                    wt.push(1.0);
                }
                InterpMode::Bilinear => {
                    if len_out == len_in {
                        idx.extend([dst, dst]);
                        wt.extend([1.0, 0.0]);
                        continue;
                    }
                    let s = linear_scale(len_in, len_out, scale, align_corners);
                    let src = source_index(s, dst, align_corners, false);
                    let i0 = (src.floor() as usize).min(last);
                    let l = (src - i0 as f64).clamp(0.0, 1.0);
                    idx.extend([i0, (i0 + 1).min(last)]);
                    wt.extend([(1.0 - l) as f32, l as f32]);
                }
                InterpMode::Bicubic => {
                    let s = linear_scale(len_in, len_out, scale, align_corners);
                    let src = source_index(s, dst, align_corners, true);
                    let i = (src.floor() as i64).min(last as i64);
                    let t = (src - i as f64).clamp(0.0, 1.0);
                    let w = cubic_weights(t);
                    for (k, wk) in w.iter().enumerate() {
                        idx.push((i - 1 + k as i64).clamp(0, last as i64) as usize);
                        wt.push(*wk as f32);
                    }
                }
            }
        }
        Self { width, idx, wt }
    }

    /// Taps of output coordinate `o`: `(indices, weights)`.
    #[inline]
    pub fn of(&self, o: usize) -> (&[usize], &[f32]) {
        let r = o * self.width..(o + 1) * self.width;
        (&self.idx[r.clone()], &self.wt[r])
    }
}
