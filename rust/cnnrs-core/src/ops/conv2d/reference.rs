//! Naive conv2d, the oracle: plain nested loops over every index, float64
//! accumulation, no unsafe, no threads, no im2col. Shapes are validated by
//! [`Conv2dGeom::new`] (the one output-size formula).

use super::params::{Conv2dGeom, Conv2dParams};
use crate::error::Result;
use crate::tensor::Tensor;

/// The input index `o*stride + k*dilation - pad` if it lies in `0..len`.
fn in_index(
    o: usize,
    k: usize,
    stride: usize,
    dilation: usize,
    pad: usize,
    len: usize,
) -> Option<usize> {
    let i = (o * stride + k * dilation).checked_sub(pad)?;
    (i < len).then_some(i)
}

/// `y[n, co, oh, ow] = b[co] + sum_{ci, kh, kw} x[n, g*c_in_g + ci, ih, iw] * w[co, ci, kh, kw]`
/// with `g = co / c_out_g`, `ih = oh*s_h + kh*d_h - pad_top`, `iw = ow*s_w + kw*d_w - pad_left`.
///
/// # Errors
/// Whatever [`Conv2dGeom::new`] refuses.
pub fn forward(x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: &Conv2dParams) -> Result<Tensor> {
    let gm = Conv2dGeom::new(x.shape(), w.shape(), b.map(|b| b.shape()), p)?;
    let (xd, wd) = (x.data(), w.data());
    let mut y = vec![0.0f32; gm.out_shape().iter().product()];
    let xi =
        |n: usize, c: usize, h: usize, ww: usize| ((n * gm.c_in + c) * gm.h_in + h) * gm.w_in + ww;
    let wi = |co: usize, ci: usize, kh: usize, kw: usize| {
        ((co * gm.c_in_g + ci) * gm.k_h + kh) * gm.k_w + kw
    };
    for n in 0..gm.n {
        for co in 0..gm.c_out {
            let g = co / gm.c_out_g;
            for oh in 0..gm.h_out {
                for ow in 0..gm.w_out {
                    let mut s = b.map_or(0.0, |b| b.data()[co] as f64);
                    for ci in 0..gm.c_in_g {
                        for kh in 0..gm.k_h {
                            let Some(ih) =
                                in_index(oh, kh, gm.stride_h, gm.dil_h, gm.pad_top, gm.h_in)
                            else {
                                continue;
                            };
                            for kw in 0..gm.k_w {
                                let Some(iw) =
                                    in_index(ow, kw, gm.stride_w, gm.dil_w, gm.pad_left, gm.w_in)
                                else {
                                    continue;
                                };
                                s += xd[xi(n, g * gm.c_in_g + ci, ih, iw)] as f64
                                    * wd[wi(co, ci, kh, kw)] as f64;
                            }
                        }
                    }
                    y[((n * gm.c_out + co) * gm.h_out + oh) * gm.w_out + ow] = s as f32;
                }
            }
        }
    }
    Ok(Tensor::from_parts(gm.out_shape().to_vec(), y))
}

/// The three gradients `(dx, dw, db)` of `sum(y * dy)`, by the same loops as
/// [`forward`] with each product's contribution sent back to its operands.
///
/// # Errors
/// Whatever [`Conv2dGeom::new`] refuses.
pub fn backward(
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    p: &Conv2dParams,
) -> Result<(Tensor, Tensor, Tensor)> {
    let gm = Conv2dGeom::new(x.shape(), w.shape(), None, p)?;
    assert_eq!(dy.shape(), gm.out_shape(), "reference: grad_out shape");
    let (xd, wd, gd) = (x.data(), w.data(), dy.data());
    let mut dx = vec![0.0f64; xd.len()];
    let mut dw = vec![0.0f64; wd.len()];
    let mut db = vec![0.0f64; gm.c_out];
    let xi =
        |n: usize, c: usize, h: usize, ww: usize| ((n * gm.c_in + c) * gm.h_in + h) * gm.w_in + ww;
    let wi = |co: usize, ci: usize, kh: usize, kw: usize| {
        ((co * gm.c_in_g + ci) * gm.k_h + kh) * gm.k_w + kw
    };
    for n in 0..gm.n {
        for co in 0..gm.c_out {
            let g = co / gm.c_out_g;
            for oh in 0..gm.h_out {
                for ow in 0..gm.w_out {
                    let gy = gd[((n * gm.c_out + co) * gm.h_out + oh) * gm.w_out + ow] as f64;
                    db[co] += gy;
                    for ci in 0..gm.c_in_g {
                        for kh in 0..gm.k_h {
                            let Some(ih) =
                                in_index(oh, kh, gm.stride_h, gm.dil_h, gm.pad_top, gm.h_in)
                            else {
                                continue;
                            };
                            for kw in 0..gm.k_w {
                                let Some(iw) =
                                    in_index(ow, kw, gm.stride_w, gm.dil_w, gm.pad_left, gm.w_in)
                                else {
                                    continue;
                                };
                                let (xk, wk) =
                                    (xi(n, g * gm.c_in_g + ci, ih, iw), wi(co, ci, kh, kw));
                                dx[xk] += gy * wd[wk] as f64;
                                dw[wk] += gy * xd[xk] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    let f32s = |v: Vec<f64>| v.into_iter().map(|e| e as f32).collect::<Vec<f32>>();
    Ok((
        Tensor::from_parts(x.shape().to_vec(), f32s(dx)),
        Tensor::from_parts(w.shape().to_vec(), f32s(dw)),
        Tensor::from_parts(vec![gm.c_out], f32s(db)),
    ))
}
