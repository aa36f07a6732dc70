//! Naive interpolation, the oracle: for every output pixel, compute its
//! source coordinates from PyTorch's formulas and sum the 1, 4 or 16 taps of
//! the 2-D kernel directly (no separable passes, no tap tables), in float64.
//! The output size comes from [`InterpGeom::new`].

use super::params::{InterpGeom, InterpMode, InterpolateParams, CUBIC_A};
use crate::error::Result;
use crate::tensor::Tensor;

/// `(index, weight)` pairs along one axis for output coordinate `dst`.
fn axis(
    gm: &InterpGeom,
    dst: usize,
    len_in: usize,
    len_out: usize,
    scale: Option<f64>,
) -> Vec<(usize, f64)> {
    let last = len_in as i64 - 1;
    match gm.mode {
        InterpMode::Nearest => {
            let i = if len_out == len_in {
                dst
            } else if len_out == 2 * len_in {
                dst / 2
            } else {
                let s = match scale {
                    Some(s) => (1.0 / s) as f32,
                    None => len_in as f32 / len_out as f32,
                };
                ((dst as f32 * s).floor() as usize).min(len_in - 1)
            };
            vec![(i, 1.0)]
        }
        InterpMode::Bilinear | InterpMode::Bicubic => {
            let cubic = gm.mode == InterpMode::Bicubic;
            if !cubic && len_out == len_in {
                return vec![(dst, 1.0)];
            }
            let ratio = if gm.align_corners {
                if len_out > 1 {
                    (len_in as f64 - 1.0) / (len_out as f64 - 1.0)
                } else {
                    0.0
                }
            } else {
                scale.map_or(len_in as f64 / len_out as f64, |s| 1.0 / s)
            };
            let mut src = if gm.align_corners {
                ratio * dst as f64
            } else {
                ratio * (dst as f64 + 0.5) - 0.5
            };
            if !cubic && src < 0.0 {
                src = 0.0;
            }
            let i = (src.floor() as i64).min(last);
            let t = (src - i as f64).clamp(0.0, 1.0);
            if !cubic {
                let i1 = (i + 1).min(last);
                return vec![(i as usize, 1.0 - t), (i1 as usize, t)];
            }
            // Keys' kernel at distances 1+t, t, 1-t, 2-t.
            let a = CUBIC_A;
            let near = |x: f64| ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
            let far = |x: f64| ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
            let w = [far(1.0 + t), near(t), near(1.0 - t), far(2.0 - t)];
            (0..4)
                .map(|k| ((i - 1 + k as i64).clamp(0, last) as usize, w[k]))
                .collect()
        }
    }
}

/// `y[n, c, oh, ow] = sum over (ih, wh) x (iw, ww) of wh * ww * x[n, c, ih, iw]`.
///
/// # Errors
/// Whatever [`InterpGeom::new`] refuses.
pub fn forward(x: &Tensor, p: &InterpolateParams) -> Result<Tensor> {
    let gm = InterpGeom::new(x.shape(), p)?;
    let xd = x.data();
    let mut y = Vec::with_capacity(gm.out_shape().iter().product());
    for plane in 0..gm.n * gm.c {
        for oh in 0..gm.h_out {
            let rows = axis(&gm, oh, gm.h_in, gm.h_out, gm.scale_h);
            for ow in 0..gm.w_out {
                let cols = axis(&gm, ow, gm.w_in, gm.w_out, gm.scale_w);
                let mut s = 0.0f64;
                for &(ih, wh) in &rows {
                    for &(iw, ww) in &cols {
                        s += wh * ww * xd[(plane * gm.h_in + ih) * gm.w_in + iw] as f64;
                    }
                }
                y.push(s as f32);
            }
        }
    }
    Ok(Tensor::from_parts(gm.out_shape().to_vec(), y))
}

/// The gradient of `sum(y * dy)` with respect to `x`: every output pixel's
/// gradient sent back to its taps with the same weights.
///
/// # Errors
/// Whatever [`InterpGeom::new`] refuses.
pub fn backward(x_shape: &[usize], dy: &Tensor, p: &InterpolateParams) -> Result<Tensor> {
    let gm = InterpGeom::new(x_shape, p)?;
    assert_eq!(dy.shape(), gm.out_shape(), "reference: grad_out shape");
    let gd = dy.data();
    let mut dx = vec![0.0f64; x_shape.iter().product()];
    for plane in 0..gm.n * gm.c {
        for oh in 0..gm.h_out {
            let rows = axis(&gm, oh, gm.h_in, gm.h_out, gm.scale_h);
            for ow in 0..gm.w_out {
                let cols = axis(&gm, ow, gm.w_in, gm.w_out, gm.scale_w);
                let g = gd[(plane * gm.h_out + oh) * gm.w_out + ow] as f64;
                for &(ih, wh) in &rows {
                    for &(iw, ww) in &cols {
                        dx[(plane * gm.h_in + ih) * gm.w_in + iw] += wh * ww * g;
                    }
                }
            }
        }
    }
    Ok(Tensor::from_parts(
        x_shape.to_vec(),
        dx.into_iter().map(|v| v as f32).collect(),
    ))
}
