//! conv2d parameters (stride, padding, dilation, groups), their validation
//! against the input and weight shapes, and the output-size formula — the
//! only copy of it; kernels, allocation, backward and the reference all read
//! the resolved [`Conv2dGeom`].
//!
//! ```text
//! h_out = (h_in + pad_top  + pad_bottom - dil_h*(k_h-1) - 1) / stride_h + 1
//! w_out = (w_in + pad_left + pad_right  - dil_w*(k_w-1) - 1) / stride_w + 1
//! ```

use crate::error::{fmt_shape, Result};
use crate::tensor::checked_numel;
use crate::{arg_err, shape_err};

/// Zero padding of the input, before it is resolved against the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// Explicit zeros per side (may be asymmetric).
    Explicit {
        top: usize,
        bottom: usize,
        left: usize,
        right: usize,
    },
    /// Output as large as the input (stride 1 only). The total padding is
    /// `dilation*(k-1)`; when it is odd the extra row/column goes to the
    /// bottom/right, as in PyTorch.
    Same,
    /// No padding.
    Valid,
}

impl Padding {
    /// The same padding on top and bottom (`ph`), left and right (`pw`).
    pub fn symmetric(ph: usize, pw: usize) -> Self {
        Padding::Explicit {
            top: ph,
            bottom: ph,
            left: pw,
            right: pw,
        }
    }

    /// `"same"` or `"valid"`, as PyTorch spells them.
    ///
    /// # Errors
    /// `InvalidArgument` for any other string.
    pub fn parse(mode: &str) -> Result<Self> {
        match mode {
            "same" => Ok(Padding::Same),
            "valid" => Ok(Padding::Valid),
            _ => Err(arg_err!(
                "conv2d: padding must be 'same', 'valid', an int or a pair of ints; got '{mode}'"
            )),
        }
    }

    /// Explicit padding from signed integers (as they come from Python).
    ///
    /// # Errors
    /// `InvalidArgument` when a value is negative.
    pub fn from_i64(top: i64, bottom: i64, left: i64, right: i64) -> Result<Self> {
        let all = [top, bottom, left, right];
        if all.iter().any(|&v| v < 0) {
            return Err(arg_err!(
                "conv2d: padding must be non-negative, got top={top}, bottom={bottom}, \
                 left={left}, right={right}"
            ));
        }
        let u =
            |v: i64| usize::try_from(v).map_err(|_| arg_err!("conv2d: padding {v} is too large"));
        Ok(Padding::Explicit {
            top: u(top)?,
            bottom: u(bottom)?,
            left: u(left)?,
            right: u(right)?,
        })
    }

    /// `(top, bottom, left, right)` for a kernel spanning `span_h x span_w`
    /// input pixels (`dilation*(k-1) + 1`).
    fn resolve(self, span_h: usize, span_w: usize) -> (usize, usize, usize, usize) {
        match self {
            Padding::Explicit {
                top,
                bottom,
                left,
                right,
            } => (top, bottom, left, right),
            Padding::Valid => (0, 0, 0, 0),
            Padding::Same => {
                let (th, tw) = (span_h - 1, span_w - 1);
                (th / 2, th - th / 2, tw / 2, tw - tw / 2)
            }
        }
    }
}

/// How a convolution slides its kernel. Named fields, PyTorch's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    /// `(stride_h, stride_w)`, each at least 1.
    pub stride: (usize, usize),
    pub padding: Padding,
    /// `(dil_h, dil_w)`, each at least 1.
    pub dilation: (usize, usize),
    /// Channel groups, at least 1; must divide both channel counts.
    pub groups: usize,
}

impl Default for Conv2dParams {
    /// Stride 1, no padding, no dilation, one group (PyTorch's defaults).
    fn default() -> Self {
        Self {
            stride: (1, 1),
            padding: Padding::symmetric(0, 0),
            dilation: (1, 1),
            groups: 1,
        }
    }
}

/// The parameter checks shared by conv2d and conv_transpose2d: stride,
/// dilation and groups must be positive.
///
/// # Errors
/// `InvalidArgument` naming `op` and the offending value.
pub(crate) fn check_positive(
    op: &str,
    stride: (usize, usize),
    dilation: (usize, usize),
    groups: usize,
) -> Result<()> {
    let (sh, sw) = stride;
    let (dh, dw) = dilation;
    if sh == 0 || sw == 0 {
        return Err(arg_err!("{op}: stride must be positive, got ({sh}, {sw})"));
    }
    if dh == 0 || dw == 0 {
        return Err(arg_err!(
            "{op}: dilation must be positive, got ({dh}, {dw})"
        ));
    }
    if groups == 0 {
        return Err(arg_err!("{op}: groups must be positive, got 0"));
    }
    Ok(())
}

impl Conv2dParams {
    /// Parameters with symmetric explicit padding `(ph, pw)`.
    pub fn new(
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
    ) -> Self {
        Self {
            stride,
            padding: Padding::symmetric(padding.0, padding.1),
            dilation,
            groups,
        }
    }

    /// Parameters from signed integers (as they come from Python), so a
    /// negative value is reported as a bad argument rather than wrapping.
    ///
    /// # Errors
    /// `InvalidArgument` for a negative or zero stride, dilation or groups
    /// (and anything [`Conv2dParams::validate`] refuses).
    pub fn from_i64(
        stride: (i64, i64),
        padding: Padding,
        dilation: (i64, i64),
        groups: i64,
    ) -> Result<Self> {
        let pos_pair = |what: &str, (a, b): (i64, i64)| -> Result<(usize, usize)> {
            if a < 1 || b < 1 {
                return Err(arg_err!("conv2d: {what} must be positive, got ({a}, {b})"));
            }
            Ok((a as usize, b as usize))
        };
        let stride = pos_pair("stride", stride)?;
        let dilation = pos_pair("dilation", dilation)?;
        if groups < 1 {
            return Err(arg_err!("conv2d: groups must be positive, got {groups}"));
        }
        let p = Self {
            stride,
            padding,
            dilation,
            groups: groups as usize,
        };
        p.validate()?;
        Ok(p)
    }

    /// Checks the parameters on their own (without shapes).
    ///
    /// # Errors
    /// `InvalidArgument` for a zero stride, dilation or groups, and for
    /// `padding='same'` with a stride above 1 (PyTorch refuses it too).
    pub fn validate(&self) -> Result<()> {
        let (sh, sw) = self.stride;
        check_positive("conv2d", self.stride, self.dilation, self.groups)?;
        if self.padding == Padding::Same && (sh > 1 || sw > 1) {
            return Err(arg_err!(
                "conv2d: padding='same' is not supported for strided convolutions \
                 (stride=({sh}, {sw}))"
            ));
        }
        Ok(())
    }
}

/// A convolution fully resolved against its shapes: every extent a kernel
/// needs, checked once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dGeom {
    pub n: usize,
    pub c_in: usize,
    pub h_in: usize,
    pub w_in: usize,
    pub c_out: usize,
    pub k_h: usize,
    pub k_w: usize,
    pub h_out: usize,
    pub w_out: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub dil_h: usize,
    pub dil_w: usize,
    pub pad_top: usize,
    pub pad_bottom: usize,
    pub pad_left: usize,
    pub pad_right: usize,
    pub groups: usize,
    /// Input channels per group (`c_in / groups`).
    pub c_in_g: usize,
    /// Output channels per group (`c_out / groups`).
    pub c_out_g: usize,
}

/// Output extent along one axis, or `None` when the dilated kernel does not
/// fit the padded input (or the padded size overflows).
pub fn out_size(
    len: usize,
    pad_lo: usize,
    pad_hi: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
) -> Option<usize> {
    let padded = len.checked_add(pad_lo)?.checked_add(pad_hi)?;
    let span = dilation
        .checked_mul(kernel.checked_sub(1)?)?
        .checked_add(1)?;
    if span > padded || stride == 0 {
        return None;
    }
    Some((padded - span) / stride + 1)
}

impl Conv2dGeom {
    /// Validates `x` `(N, C_in, H, W)`, `w` `(C_out, C_in/groups, kH, kW)`
    /// and an optional bias `(C_out,)` against `p`, and resolves padding.
    ///
    /// # Errors
    /// `ShapeMismatch` for wrong ranks, channel counts, bias length or a
    /// kernel larger than the padded input; `InvalidArgument` for bad
    /// parameters or groups that do not divide the channels.
    pub fn new(x: &[usize], w: &[usize], bias: Option<&[usize]>, p: &Conv2dParams) -> Result<Self> {
        p.validate()?;
        let shapes = || format!("input {}, weight {}", fmt_shape(x), fmt_shape(w));
        let [n, c_in, h_in, w_in] = x[..] else {
            return Err(shape_err!(
                "conv2d: expected a 4-D input (N, C_in, H, W) but got shape {}",
                fmt_shape(x)
            ));
        };
        let [c_out, c_in_g, k_h, k_w] = w[..] else {
            return Err(shape_err!(
                "conv2d: expected a 4-D weight (C_out, C_in/groups, kH, kW) but got shape {}",
                fmt_shape(w)
            ));
        };
        let groups = p.groups;
        if c_in % groups != 0 {
            return Err(arg_err!(
                "conv2d: input channels ({c_in}) must be divisible by groups ({groups}); {}",
                shapes()
            ));
        }
        if c_out % groups != 0 {
            return Err(arg_err!(
                "conv2d: output channels ({c_out}, weight dim 0) must be divisible by groups \
                 ({groups}); {}",
                shapes()
            ));
        }
        if c_in_g.checked_mul(groups) != Some(c_in) {
            return Err(shape_err!(
                "conv2d: input has {c_in} channels but weight expects {} (groups={groups}); {}",
                c_in_g.saturating_mul(groups),
                shapes()
            ));
        }
        if k_h == 0 || k_w == 0 {
            return Err(shape_err!(
                "conv2d: kernel size must be positive, got ({k_h}, {k_w}); {}",
                shapes()
            ));
        }
        if let Some(b) = bias {
            if b != [c_out] {
                return Err(shape_err!(
                    "conv2d: bias must have shape ({c_out},) (one per output channel) but got \
                     shape {}; weight {}",
                    fmt_shape(b),
                    fmt_shape(w)
                ));
            }
        }
        let (sh, sw) = p.stride;
        let (dh, dw) = p.dilation;
        let too_large = || arg_err!("conv2d: dilated kernel or padding too large; {}", shapes());
        let span_h = dh.checked_mul(k_h - 1).and_then(|v| v.checked_add(1));
        let span_w = dw.checked_mul(k_w - 1).and_then(|v| v.checked_add(1));
        let (span_h, span_w) = (span_h.ok_or_else(too_large)?, span_w.ok_or_else(too_large)?);
        let (pt, pb, pl, pr) = p.padding.resolve(span_h, span_w);
        let padded_h = h_in.checked_add(pt).and_then(|v| v.checked_add(pb));
        let padded_w = w_in.checked_add(pl).and_then(|v| v.checked_add(pr));
        let (padded_h, padded_w) = (
            padded_h.ok_or_else(too_large)?,
            padded_w.ok_or_else(too_large)?,
        );
        let (Some(h_out), Some(w_out)) = (
            out_size(h_in, pt, pb, k_h, sh, dh),
            out_size(w_in, pl, pr, k_w, sw, dw),
        ) else {
            return Err(shape_err!(
                "conv2d: kernel size ({k_h}, {k_w}) with dilation ({dh}, {dw}) spans \
                 ({span_h}, {span_w}), larger than the padded input ({padded_h}, {padded_w}); {}",
                shapes()
            ));
        };
        // Per-image extents must be addressable even when the batch (or a
        // channel count) is 0 and the tensors themselves are empty.
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
            stride_h: sh,
            stride_w: sw,
            dil_h: dh,
            dil_w: dw,
            pad_top: pt,
            pad_bottom: pb,
            pad_left: pl,
            pad_right: pr,
            groups,
            c_in_g,
            c_out_g: c_out / groups,
        })
    }

    /// `[n, c_out, h_out, w_out]`.
    pub fn out_shape(&self) -> [usize; 4] {
        [self.n, self.c_out, self.h_out, self.w_out]
    }

    /// Rows of the column matrix, the GEMM's inner dimension:
    /// `c_in_g * k_h * k_w` (one weight row of a group).
    pub fn col_rows(&self) -> usize {
        self.c_in_g * self.k_h * self.k_w
    }

    pub fn hw_in(&self) -> usize {
        self.h_in * self.w_in
    }

    pub fn hw_out(&self) -> usize {
        self.h_out * self.w_out
    }

    /// A 1x1 kernel with stride 1 and no padding: the input of each group
    /// already is the column matrix (dilation is irrelevant for 1x1).
    ///
    /// The extent check is implied for a geometry from [`Conv2dGeom::new`];
    /// it matters for the dual geometry of a transposed convolution with
    /// `output_padding`, whose last rows/columns the 1x1 kernel never reads.
    pub fn is_pointwise(&self) -> bool {
        self.h_in == self.h_out
            && self.w_in == self.w_out
            && self.k_h == 1
            && self.k_w == 1
            && self.stride_h == 1
            && self.stride_w == 1
            && self.pad_top == 0
            && self.pad_bottom == 0
            && self.pad_left == 0
            && self.pad_right == 0
    }

    /// Multiply-adds of the whole forward pass, doubled (FLOPs).
    pub fn flops(&self) -> usize {
        2usize
            .saturating_mul(self.n)
            .saturating_mul(self.c_out)
            .saturating_mul(self.hw_out())
            .saturating_mul(self.col_rows())
    }
}
