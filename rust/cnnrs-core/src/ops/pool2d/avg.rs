//! `avg_pool2d` and `adaptive_avg_pool2d` over NCHW input, PyTorch semantics.
//!
//! avg_pool2d: windows of `k` with stride `s` over the zero-padded input;
//! `h_out` as for max pooling (see [`super::params::out_dim`], no dilation).
//! The divisor is `divisor_override` if given, else the window's size
//! clipped to the padded input (`count_include_pad`) or to the real input.
//!
//! adaptive_avg_pool2d: output cell `o` of `out` along a dim of length `len`
//! averages `[floor(o*len/out), ceil((o+1)*len/out))`.
//!
//! Both are linear, so backward spreads `g / divisor` over each window.
//! Parallel over the `n*c` planes.

use super::params::out_dim;
use crate::autograd::{Backward, Var};
use crate::error::{fmt_shape, Result};
use crate::tensor::{checked_numel, try_zeros, Tensor};
use crate::{arg_err, shape_err};

/// avg_pool2d arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPool2dParams {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub ceil_mode: bool,
    pub count_include_pad: bool,
    pub divisor_override: Option<usize>,
}

/// One output cell's window: rows `[y0, y1)`, cols `[x0, x1)` of the input,
/// and the divisor.
#[derive(Clone, Copy, Debug)]
struct Cell {
    y0: usize,
    y1: usize,
    x0: usize,
    x1: usize,
    div: f32,
}

/// The windows of every output cell of one plane, row-major.
struct Plan {
    n: usize,
    c: usize,
    h_in: usize,
    w_in: usize,
    h_out: usize,
    w_out: usize,
    cells: Vec<Cell>,
}

fn dims4(op: &str, shape: &[usize]) -> Result<[usize; 4]> {
    match shape {
        &[a, b, c, d] => Ok([a, b, c, d]),
        _ => Err(shape_err!(
            "{op}: expected a 4-D input (N, C, H, W) but got shape {}",
            fmt_shape(shape)
        )),
    }
}

fn avg_plan(shape: &[usize], p: &AvgPool2dParams) -> Result<Plan> {
    let op = "avg_pool2d";
    let [n, c, h_in, w_in] = dims4(op, shape)?;
    if p.kernel.contains(&0) || p.stride.contains(&0) {
        return Err(arg_err!(
            "{op}: kernel_size and stride must be greater than zero, got kernel_size={} stride={}",
            fmt_shape(&p.kernel),
            fmt_shape(&p.stride)
        ));
    }
    if p.padding[0] > p.kernel[0] / 2 || p.padding[1] > p.kernel[1] / 2 {
        return Err(arg_err!(
            "{op}: pad should be at most half of effective kernel size, but got padding={}, kernel_size={}",
            fmt_shape(&p.padding),
            fmt_shape(&p.kernel)
        ));
    }
    if p.divisor_override == Some(0) {
        return Err(arg_err!("{op}: divisor_override must be non-zero"));
    }
    let h_out = out_dim(h_in, p.kernel[0], p.stride[0], p.padding[0], 1, p.ceil_mode);
    let w_out = out_dim(w_in, p.kernel[1], p.stride[1], p.padding[1], 1, p.ceil_mode);
    if h_out < 1 || w_out < 1 {
        return Err(shape_err!(
            "{op}: output size is too small: input {} with kernel_size={} stride={} padding={} gives \
             (H_out, W_out) = ({h_out}, {w_out})",
            fmt_shape(shape),
            fmt_shape(&p.kernel),
            fmt_shape(&p.stride),
            fmt_shape(&p.padding)
        ));
    }
    let (h_out, w_out) = (h_out as usize, w_out as usize);
    let span = |o: usize, k: usize, s: usize, pad: usize, len: usize| {
        let start = (o * s) as isize - pad as isize;
        let end_pad = (start + k as isize).min((len + pad) as isize);
        let padded = (end_pad - start) as usize;
        let (a, b) = (
            start.max(0) as usize,
            (end_pad.min(len as isize)).max(0) as usize,
        );
        (a, b.max(a), padded)
    };
    let mut cells = Vec::with_capacity(h_out * w_out);
    for oy in 0..h_out {
        let (y0, y1, ph) = span(oy, p.kernel[0], p.stride[0], p.padding[0], h_in);
        for ox in 0..w_out {
            let (x0, x1, pw) = span(ox, p.kernel[1], p.stride[1], p.padding[1], w_in);
            let div = match p.divisor_override {
                Some(d) => d,
                None if p.count_include_pad => ph * pw,
                None => (y1 - y0) * (x1 - x0),
            };
            cells.push(Cell {
                y0,
                y1,
                x0,
                x1,
                div: div as f32,
            });
        }
    }
    Ok(Plan {
        n,
        c,
        h_in,
        w_in,
        h_out,
        w_out,
        cells,
    })
}

fn adaptive_plan(shape: &[usize], out: [usize; 2]) -> Result<Plan> {
    let op = "adaptive_avg_pool2d";
    let [n, c, h_in, w_in] = dims4(op, shape)?;
    if out.contains(&0) {
        return Err(arg_err!(
            "{op}: output_size must be positive, got {}",
            fmt_shape(&out)
        ));
    }
    if h_in == 0 || w_in == 0 {
        return Err(shape_err!(
            "{op}: input {} has an empty spatial dim",
            fmt_shape(shape)
        ));
    }
    let bounds = |o: usize, len: usize, out: usize| (o * len / out, ((o + 1) * len).div_ceil(out));
    let mut cells = Vec::with_capacity(out[0] * out[1]);
    for oy in 0..out[0] {
        let (y0, y1) = bounds(oy, h_in, out[0]);
        for ox in 0..out[1] {
            let (x0, x1) = bounds(ox, w_in, out[1]);
            cells.push(Cell {
                y0,
                y1,
                x0,
                x1,
                div: ((y1 - y0) * (x1 - x0)) as f32,
            });
        }
    }
    Ok(Plan {
        n,
        c,
        h_in,
        w_in,
        h_out: out[0],
        w_out: out[1],
        cells,
    })
}

const PAR_MIN: usize = 1 << 15;

fn run_forward(x: &Tensor, plan: &Plan) -> Result<Tensor> {
    let shape = [plan.n, plan.c, plan.h_out, plan.w_out];
    let mut out = try_zeros(checked_numel(&shape)?)?;
    let plane_out = plan.h_out * plan.w_out;
    let plane_in = plan.h_in * plan.w_in;
    if plane_out > 0 {
        let body = |(idx, o): (usize, &mut [f32])| {
            let xin = &x.data()[idx * plane_in..(idx + 1) * plane_in];
            for (dst, cell) in o.iter_mut().zip(&plan.cells) {
                let mut s = 0.0f32;
                for yy in cell.y0..cell.y1 {
                    s += xin[yy * plan.w_in + cell.x0..yy * plan.w_in + cell.x1]
                        .iter()
                        .sum::<f32>();
                }
                *dst = s / cell.div;
            }
        };
        if x.numel() >= PAR_MIN {
            let group = (PAR_MIN / plane_out.max(1)).max(1);
            crate::parallel::chunks_mut(&mut out, plane_out, group, |i, o| body((i, o)));
        } else {
            out.chunks_mut(plane_out).enumerate().for_each(body);
        }
    }
    Ok(Tensor::from_parts(shape.to_vec(), out))
}

fn run_backward(g: &Tensor, plan: &Plan) -> Result<Tensor> {
    let shape = [plan.n, plan.c, plan.h_in, plan.w_in];
    let mut dx = try_zeros(checked_numel(&shape)?)?;
    let plane_out = plan.h_out * plan.w_out;
    let plane_in = plan.h_in * plan.w_in;
    if plane_in > 0 {
        let body = |(idx, d): (usize, &mut [f32])| {
            let gp = &g.data()[idx * plane_out..(idx + 1) * plane_out];
            for (&gv, cell) in gp.iter().zip(&plan.cells) {
                let v = gv / cell.div;
                for yy in cell.y0..cell.y1 {
                    d[yy * plan.w_in + cell.x0..yy * plan.w_in + cell.x1]
                        .iter_mut()
                        .for_each(|e| *e += v);
                }
            }
        };
        if dx.len() >= PAR_MIN {
            let group = (PAR_MIN / plane_in.max(1)).max(1);
            crate::parallel::chunks_mut(&mut dx, plane_in, group, |i, d| body((i, d)));
        } else {
            dx.chunks_mut(plane_in).enumerate().for_each(body);
        }
    }
    Ok(Tensor::from_parts(shape.to_vec(), dx))
}

/// Average pooling of `x`.
///
/// # Errors
/// `ShapeMismatch` for a non-4-D input or an empty output; `InvalidArgument`
/// for zero kernel/stride, padding over half the kernel, zero divisor.
pub fn avg_pool2d_forward(x: &Tensor, p: &AvgPool2dParams) -> Result<Tensor> {
    run_forward(x, &avg_plan(x.shape(), p)?)
}

/// Gradient of [`avg_pool2d_forward`] w.r.t. its input of shape `in_shape`.
///
/// # Errors
/// As [`avg_pool2d_forward`].
pub fn avg_pool2d_backward(g: &Tensor, in_shape: &[usize], p: &AvgPool2dParams) -> Result<Tensor> {
    run_backward(g, &avg_plan(in_shape, p)?)
}

/// Adaptive average pooling of `x` to `out` = (H_out, W_out).
///
/// # Errors
/// `ShapeMismatch` for a non-4-D or spatially empty input; `InvalidArgument`
/// for a zero output size.
pub fn adaptive_avg_pool2d_forward(x: &Tensor, out: [usize; 2]) -> Result<Tensor> {
    run_forward(x, &adaptive_plan(x.shape(), out)?)
}

enum Kind {
    Avg(AvgPool2dParams),
    Adaptive([usize; 2]),
}

struct AvgBackward {
    kind: Kind,
    in_shape: Vec<usize>,
}

impl Backward for AvgBackward {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Avg(_) => "AvgPool2dBackward",
            Kind::Adaptive(_) => "AdaptiveAvgPool2dBackward",
        }
    }
    fn backward(
        &self,
        g: &Tensor,
        _inputs: &[Var],
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let plan = match &self.kind {
            Kind::Avg(p) => avg_plan(&self.in_shape, p)?,
            Kind::Adaptive(o) => adaptive_plan(&self.in_shape, *o)?,
        };
        Ok(vec![Some(run_backward(g, &plan)?)])
    }
}

/// Autograd average pooling.
///
/// # Errors
/// As [`avg_pool2d_forward`].
pub fn avg_pool2d(x: &Var, p: &AvgPool2dParams) -> Result<Var> {
    let xv = x.value();
    let y = avg_pool2d_forward(&xv, p)?;
    Ok(Var::from_op(
        y,
        AvgBackward {
            kind: Kind::Avg(*p),
            in_shape: xv.shape().to_vec(),
        },
        vec![x.clone()],
    ))
}

/// Autograd adaptive average pooling (`out = [1, 1]`: global pooling).
///
/// # Errors
/// As [`adaptive_avg_pool2d_forward`].
pub fn adaptive_avg_pool2d(x: &Var, out: [usize; 2]) -> Result<Var> {
    let xv = x.value();
    let y = adaptive_avg_pool2d_forward(&xv, out)?;
    Ok(Var::from_op(
        y,
        AvgBackward {
            kind: Kind::Adaptive(out),
            in_shape: xv.shape().to_vec(),
        },
        vec![x.clone()],
    ))
}
