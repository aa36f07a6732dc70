//! conv_transpose2d parameters (stride, padding, output_padding, dilation,
//! groups), their validation against the input and weight shapes, and the
//! output-size formula — the only copy of it:
//!
//! ```text
//! h_out = (h_in - 1)*stride_h - 2*pad_h + dil_h*(k_h - 1) + output_padding_h + 1
//! w_out = (w_in - 1)*stride_w - 2*pad_w + dil_w*(k_w - 1) + output_padding_w + 1
//! ```
//!
//! A transposed convolution is the adjoint of a convolution: [`ConvTranspose2dGeom::dual`]
//! is the convolution (input = this op's output, output = this op's input,
//! the same weight) whose input gradient this op's forward is.

use crate::error::{fmt_shape, Result};
use crate::ops::conv2d::Conv2dGeom;
use crate::tensor::checked_numel;
use crate::{arg_err, shape_err};

/// How a transposed convolution spreads its input. Named fields, PyTorch's
/// words; `padding` is symmetric (`(pad_h, pad_w)` removed from both sides
/// of the full output).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTranspose2dParams {
    /// `(stride_h, stride_w)`, each at least 1.
    pub stride: (usize, usize),
    /// `(pad_h, pad_w)`.
    pub padding: (usize, usize),
    /// `(op_h, op_w)`: extra rows/columns on the bottom/right of the output;
    /// each must be smaller than the stride or the dilation of its axis.
    pub output_padding: (usize, usize),
    /// `(dil_h, dil_w)`, each at least 1.
    pub dilation: (usize, usize),
    /// Channel groups, at least 1; must divide the input channels.
    pub groups: usize,
}

impl Default for ConvTranspose2dParams {
    /// Stride 1, no padding, no output padding, no dilation, one group.
    fn default() -> Self {
        Self {
            stride: (1, 1),
            padding: (0, 0),
            output_padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
        }
    }
}

impl ConvTranspose2dParams {
    /// Parameters from signed integers (as they come from Python), so a
    /// negative value is reported as a bad argument rather than wrapping.
    ///
    /// # Errors
    /// `InvalidArgument` for a non-positive stride, dilation or groups, a
    /// negative padding or output padding, and whatever [`Self::validate`]
    /// refuses.
    pub fn from_i64(
        stride: (i64, i64),
        padding: (i64, i64),
        output_padding: (i64, i64),
        dilation: (i64, i64),
        groups: i64,
    ) -> Result<Self> {
        let pos = |what: &str, (a, b): (i64, i64)| -> Result<(usize, usize)> {
            if a < 1 || b < 1 {
                return Err(arg_err!(
                    "conv_transpose2d: {what} must be positive, got ({a}, {b})"
                ));
            }
            Ok((a as usize, b as usize))
        };
        let nonneg = |what: &str, (a, b): (i64, i64)| -> Result<(usize, usize)> {
            if a < 0 || b < 0 {
                return Err(arg_err!(
                    "conv_transpose2d: {what} must be non-negative, got ({a}, {b})"
                ));
            }
            Ok((a as usize, b as usize))
        };
        if groups < 1 {
            return Err(arg_err!(
                "conv_transpose2d: groups must be positive, got {groups}"
            ));
        }
        let p = Self {
            stride: pos("stride", stride)?,
            padding: nonneg("padding", padding)?,
            output_padding: nonneg("output_padding", output_padding)?,
            dilation: pos("dilation", dilation)?,
            groups: groups as usize,
        };
        p.validate()?;
        Ok(p)
    }

    /// Checks the parameters on their own (without shapes).
    ///
    /// # Errors
    /// `InvalidArgument` for a zero stride, dilation or groups, and for an
    /// output padding not smaller than either the stride or the dilation of
    /// its axis (PyTorch's rule: otherwise the extra rows would lie beyond
    /// every kernel tap's reach and the output size would be ambiguous).
    pub fn validate(&self) -> Result<()> {
        let (sh, sw) = self.stride;
        let (dh, dw) = self.dilation;
        let (oh, ow) = self.output_padding;
        crate::ops::conv2d::params::check_positive(
            "conv_transpose2d",
            self.stride,
            self.dilation,
            self.groups,
        )?;
        if (oh >= sh && oh >= dh) || (ow >= sw && ow >= dw) {
            return Err(arg_err!(
                "conv_transpose2d: output_padding must be smaller than either stride or \
                 dilation, got output_padding ({oh}, {ow}), stride ({sh}, {sw}), \
                 dilation ({dh}, {dw})"
            ));
        }
        Ok(())
    }
}

/// A transposed convolution fully resolved against its shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTranspose2dGeom {
    pub n: usize,
    pub c_in: usize,
    pub h_in: usize,
    pub w_in: usize,
    pub c_out: usize,
    pub k_h: usize,
    pub k_w: usize,
    pub h_out: usize,
    pub w_out: usize,
    pub p: ConvTranspose2dParams,
    /// Input channels per group (`c_in / groups`, the weight's dim 0 per group).
    pub c_in_g: usize,
    /// Output channels per group (the weight's dim 1).
    pub c_out_g: usize,
}

/// Output extent along one axis, or `None` when it is not positive (padding
/// larger than the full output) or overflows.
pub fn out_size(
    len: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    output_padding: usize,
    dilation: usize,
) -> Option<usize> {
    let full = (len as i128 - 1) * stride as i128
        + dilation as i128 * (kernel as i128 - 1)
        + output_padding as i128
        + 1;
    let out = full - 2 * pad as i128;
    if out < 1 {
        return None;
    }
    usize::try_from(out).ok()
}

impl ConvTranspose2dGeom {
    /// Validates `x` `(N, C_in, H, W)`, `w` `(C_in, C_out/groups, kH, kW)` and
    /// an optional bias `(C_out,)` against `p`.
    ///
    /// # Errors
    /// `ShapeMismatch` for wrong ranks, channel counts, bias length, an empty
    /// spatial input or an output size below 1; `InvalidArgument` for bad
    /// parameters or groups that do not divide the input channels.
    pub fn new(
        x: &[usize],
        w: &[usize],
        bias: Option<&[usize]>,
        p: &ConvTranspose2dParams,
    ) -> Result<Self> {
        p.validate()?;
        let shapes = || format!("input {}, weight {}", fmt_shape(x), fmt_shape(w));
        let [n, c_in, h_in, w_in] = x[..] else {
            return Err(shape_err!(
                "conv_transpose2d: expected a 4-D input (N, C_in, H, W) but got shape {}",
                fmt_shape(x)
            ));
        };
        let [w_c_in, c_out_g, k_h, k_w] = w[..] else {
            return Err(shape_err!(
                "conv_transpose2d: expected a 4-D weight (C_in, C_out/groups, kH, kW) but got \
                 shape {}",
                fmt_shape(w)
            ));
        };
        let groups = p.groups;
        if w_c_in != c_in {
            return Err(shape_err!(
                "conv_transpose2d: input has {c_in} channels but weight expects {w_c_in} \
                 (weight dim 0); {}",
                shapes()
            ));
        }
        if c_in % groups != 0 {
            return Err(arg_err!(
                "conv_transpose2d: input channels ({c_in}) must be divisible by groups \
                 ({groups}); {}",
                shapes()
            ));
        }
        if k_h == 0 || k_w == 0 {
            return Err(shape_err!(
                "conv_transpose2d: kernel size must be positive, got ({k_h}, {k_w}); {}",
                shapes()
            ));
        }
        if h_in == 0 || w_in == 0 {
            return Err(shape_err!(
                "conv_transpose2d: input height and width must be positive, got ({h_in}, \
                 {w_in}); {}",
                shapes()
            ));
        }
        let c_out = c_out_g
            .checked_mul(groups)
            .ok_or_else(|| arg_err!("conv_transpose2d: too many output channels; {}", shapes()))?;
        if let Some(b) = bias {
            if b != [c_out] {
                return Err(shape_err!(
                    "conv_transpose2d: bias must have shape ({c_out},) (one per output channel) \
                     but got shape {}; weight {}, groups={groups}",
                    fmt_shape(b),
                    fmt_shape(w)
                ));
            }
        }
        let (sh, sw) = p.stride;
        let (ph, pw) = p.padding;
        let (oh, ow) = p.output_padding;
        let (dh, dw) = p.dilation;
        let (Some(h_out), Some(w_out)) = (
            out_size(h_in, k_h, sh, ph, oh, dh),
            out_size(w_in, k_w, sw, pw, ow, dw),
        ) else {
            return Err(shape_err!(
                "conv_transpose2d: output size would be ({}, {}), not positive: input size \
                 ({h_in}, {w_in}), kernel ({k_h}, {k_w}), stride ({sh}, {sw}), padding \
                 ({ph}, {pw}), output_padding ({oh}, {ow}), dilation ({dh}, {dw}); {}",
                signed_out(h_in, k_h, sh, ph, oh, dh),
                signed_out(w_in, k_w, sw, pw, ow, dw),
                shapes()
            ));
        };
        // The dual convolution reads padding + output rows; they must be
        // addressable, as must every per-image extent.
        h_out
            .checked_add(ph)
            .and_then(|_| w_out.checked_add(pw))
            .ok_or_else(|| arg_err!("conv_transpose2d: padding too large; {}", shapes()))?;
        checked_numel(&[c_in.max(1), h_in, w_in])?;
        checked_numel(&[c_out.max(1), h_out, w_out])?;
        checked_numel(&[n, c_out, h_out, w_out])?;
        Ok(Self {
            n,
            c_in,
            h_in,
            w_in,
            c_out,
            k_h,
            k_w,
            h_out,
            w_out,
            p: *p,
            c_in_g: c_in / groups,
            c_out_g,
        })
    }

    /// `[n, c_out, h_out, w_out]`.
    pub fn out_shape(&self) -> [usize; 4] {
        [self.n, self.c_out, self.h_out, self.w_out]
    }

    /// The convolution this op is the transpose of: its input is this op's
    /// output (`c_out` channels, `h_out x w_out`), its output is this op's
    /// input, and its weight `[c_in, c_out_g, k_h, k_w]` is this op's weight
    /// read as a conv weight `[C_out, C_in/groups, kH, kW]`. So
    /// - this forward is the dual's input gradient (GEMM + col2im),
    /// - this input gradient is the dual's forward (im2col + GEMM),
    /// - this weight gradient is the dual's weight gradient with the roles of
    ///   input and output gradient swapped.
    ///
    /// Rows read by the dual: `ih = oh*stride + kh*dil - pad` for `oh` in
    /// `0..h_in`; the last of them is `h_out - 1 + pad - output_padding`, so
    /// its bottom padding is `pad - output_padding` (clamped at 0 here: when
    /// negative, the last rows of this op's output are reached by no tap and
    /// hold just the bias). Only [`Conv2dGeom::is_pointwise`] reads
    /// `pad_bottom`/`pad_right`, and it also compares the extents.
    pub fn dual(&self) -> Conv2dGeom {
        let (ph, pw) = self.p.padding;
        let (oh, ow) = self.p.output_padding;
        Conv2dGeom {
            n: self.n,
            c_in: self.c_out,
            h_in: self.h_out,
            w_in: self.w_out,
            c_out: self.c_in,
            k_h: self.k_h,
            k_w: self.k_w,
            h_out: self.h_in,
            w_out: self.w_in,
            stride_h: self.p.stride.0,
            stride_w: self.p.stride.1,
            dil_h: self.p.dilation.0,
            dil_w: self.p.dilation.1,
            pad_top: ph,
            pad_bottom: ph.saturating_sub(oh),
            pad_left: pw,
            pad_right: pw.saturating_sub(ow),
            groups: self.p.groups,
            c_in_g: self.c_out_g,
            c_out_g: self.c_in_g,
        }
    }
}

/// The output-size formula in signed arithmetic, for error messages.
fn signed_out(len: usize, k: usize, s: usize, p: usize, op: usize, d: usize) -> i128 {
    (len as i128 - 1) * s as i128 - 2 * p as i128 + d as i128 * (k as i128 - 1) + op as i128 + 1
}
