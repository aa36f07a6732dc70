//! `max_pool2d` parameters, their validation, and the output-size formula
//! (the only place it is written; kernels, allocation, backward and the
//! reference all take the sizes from here).

use crate::error::{fmt_shape, CnnError, Result};
use crate::{arg_err, shape_err};

/// The arguments of `max_pool2d`, per spatial dim `[h, w]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool2dParams {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub ceil_mode: bool,
}

impl MaxPool2dParams {
    /// `kernel` with PyTorch's defaults: stride = kernel, no padding, no
    /// dilation, floor mode.
    pub fn new(kernel: [usize; 2]) -> Self {
        Self {
            kernel,
            stride: kernel,
            padding: [0, 0],
            dilation: [1, 1],
            ceil_mode: false,
        }
    }

    fn describe(&self) -> String {
        format!(
            "kernel_size={}, stride={}, padding={}, dilation={}, ceil_mode={}",
            fmt_shape(&self.kernel),
            fmt_shape(&self.stride),
            fmt_shape(&self.padding),
            fmt_shape(&self.dilation),
            if self.ceil_mode { "True" } else { "False" }
        )
    }

    /// Checks the arguments alone (PyTorch's rules).
    ///
    /// # Errors
    /// `InvalidArgument` when a kernel size, stride or dilation is 0, or the
    /// padding exceeds half the kernel size.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("kernel_size", self.kernel),
            ("stride", self.stride),
            ("dilation", self.dilation),
        ] {
            if v.contains(&0) {
                return Err(arg_err!(
                    "max_pool2d: {name} must be greater than zero, but got {name}={}",
                    fmt_shape(&v)
                ));
            }
        }
        if self.padding[0] > self.kernel[0] / 2 || self.padding[1] > self.kernel[1] / 2 {
            return Err(arg_err!(
                "max_pool2d: padding should be at most half of kernel_size, but got padding={}, \
                 kernel_size={}",
                fmt_shape(&self.padding),
                fmt_shape(&self.kernel)
            ));
        }
        Ok(())
    }

    /// The geometry of pooling an input of shape `shape` (validated).
    ///
    /// # Errors
    /// `ShapeMismatch` for a non-4-D input or an output size below 1;
    /// `InvalidArgument` from [`validate`](Self::validate); `Unsupported`
    /// for input planes of 2^32 elements or more (indices are 32-bit).
    pub fn geometry(&self, shape: &[usize]) -> Result<Pool2dGeometry> {
        let [n, c, h_in, w_in] = match shape {
            &[a, b, c, d] => [a, b, c, d],
            _ => {
                return Err(shape_err!(
                    "max_pool2d: expected a 4-D input (N, C, H, W) but got shape {}",
                    fmt_shape(shape)
                ))
            }
        };
        self.validate()?;
        let h_out = out_dim(
            h_in,
            self.kernel[0],
            self.stride[0],
            self.padding[0],
            self.dilation[0],
            self.ceil_mode,
        );
        let w_out = out_dim(
            w_in,
            self.kernel[1],
            self.stride[1],
            self.padding[1],
            self.dilation[1],
            self.ceil_mode,
        );
        if h_out < 1 || w_out < 1 {
            return Err(shape_err!(
                "max_pool2d: output size is too small: input {} with {} gives (H_out, W_out) = \
                 ({h_out}, {w_out})",
                fmt_shape(shape),
                self.describe()
            ));
        }
        if (h_in as u128) * (w_in as u128) >= u32::MAX as u128 {
            return Err(CnnError::Unsupported(format!(
                "max_pool2d: input {} has planes of {h_in}x{w_in} elements; at most 2^32 - 2 \
                 elements per plane are supported",
                fmt_shape(shape)
            )));
        }
        let rows = windows(
            h_in,
            h_out as usize,
            self.kernel[0],
            self.stride[0],
            self.padding[0],
            self.dilation[0],
        );
        let cols = windows(
            w_in,
            w_out as usize,
            self.kernel[1],
            self.stride[1],
            self.padding[1],
            self.dilation[1],
        );
        Ok(Pool2dGeometry {
            n,
            c,
            h_in,
            w_in,
            h_out: h_out as usize,
            w_out: w_out as usize,
            dilation: self.dilation,
            fast_2x2: self.kernel == [2, 2]
                && self.stride == [2, 2]
                && self.padding == [0, 0]
                && self.dilation == [1, 1]
                && 2 * h_out as usize <= h_in
                && 2 * w_out as usize <= w_in,
            fast_3x3: self.kernel == [3, 3] && self.dilation == [1, 1],
            stride_w: self.stride[1],
            rows,
            cols,
        })
    }
}

/// PyTorch's `pooling_output_shape`, in i128 so no argument can overflow:
/// `floor_or_ceil((in + 2p - d(k-1) - 1) / s) + 1`, and in ceil mode the last
/// window must start inside the input or the left padding (else it is
/// dropped).
pub fn out_dim(input: usize, k: usize, s: usize, p: usize, d: usize, ceil: bool) -> i128 {
    let (input, k, s, p, d) = (input as i128, k as i128, s as i128, p as i128, d as i128);
    // d*(k-1) of two u64s can exceed i128; saturating makes `out` negative.
    let num = input + 2 * p - d.saturating_mul(k - 1) - 1 + if ceil { s - 1 } else { 0 };
    let mut out = num.div_euclid(s) + 1;
    if ceil && (out - 1) * s >= input + p {
        out -= 1;
    }
    out
}

/// The input positions one output row (or column) reads: `count` positions
/// `first, first + dilation, ...`, all inside the input (padding dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub first: usize,
    pub count: usize,
}

/// The valid part of each of the `out` windows along one dim.
fn windows(input: usize, out: usize, k: usize, s: usize, p: usize, d: usize) -> Vec<Window> {
    let (input_i, k, s, p, d) = (input as i128, k as i128, s as i128, p as i128, d as i128);
    (0..out)
        .map(|o| {
            let start = o as i128 * s - p;
            // Kernel taps i in [lo, hi) land inside [0, input).
            let lo = if start < 0 { (-start + d - 1) / d } else { 0 };
            let hi = if input_i > start {
                k.min((input_i - start + d - 1) / d)
            } else {
                0
            };
            if lo >= hi {
                Window { first: 0, count: 0 }
            } else {
                Window {
                    first: (start + lo * d) as usize,
                    count: (hi - lo) as usize,
                }
            }
        })
        .collect()
}

/// Everything the kernels need, computed once per call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool2dGeometry {
    pub n: usize,
    pub c: usize,
    pub h_in: usize,
    pub w_in: usize,
    pub h_out: usize,
    pub w_out: usize,
    pub dilation: [usize; 2],
    /// 2x2 windows, stride 2, no padding or dilation, every window inside
    /// the input: the unrolled kernel applies.
    pub fast_2x2: bool,
    /// 3x3 windows without dilation (any stride, padding): whole windows
    /// take an unrolled kernel, clipped ones the generic loop.
    pub fast_3x3: bool,
    /// Column stride (the 3x3 kernel has a vector path for stride 2).
    pub stride_w: usize,
    /// One per output row.
    pub rows: Vec<Window>,
    /// One per output column.
    pub cols: Vec<Window>,
}

impl Pool2dGeometry {
    pub fn out_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.h_out, self.w_out]
    }
    pub fn planes(&self) -> usize {
        self.n * self.c
    }
    pub fn plane_in(&self) -> usize {
        self.h_in * self.w_in
    }
    pub fn plane_out(&self) -> usize {
        self.h_out * self.w_out
    }
}
