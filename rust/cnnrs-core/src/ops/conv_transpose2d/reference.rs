//! Naive conv_transpose2d, the oracle: plain nested loops that scatter every
//! input pixel times every kernel tap into the output, float64 accumulation,
//! no unsafe, no threads, no GEMM, no col2im. Shapes are validated by
//! [`ConvTranspose2dGeom::new`] (the one output-size formula).

use super::params::{ConvTranspose2dGeom, ConvTranspose2dParams};
use crate::error::Result;
use crate::tensor::Tensor;

/// The output index `i*stride + k*dilation - pad` if it lies in `0..len`.
fn out_index(
    i: usize,
    k: usize,
    stride: usize,
    dilation: usize,
    pad: usize,
    len: usize,
) -> Option<usize> {
    let o = (i * stride + k * dilation).checked_sub(pad)?;
    (o < len).then_some(o)
}

/// Calls `f(n, ci, ih, iw, co, kh, kw, y_index)` for every (input pixel,
/// tap) pair that lands inside the output; `co` is the absolute output
/// channel and `(ci, co - g*c_out_g)` index the weight.
fn for_each_tap(gm: &ConvTranspose2dGeom, mut f: impl FnMut([usize; 7], usize)) {
    let (sh, sw) = gm.p.stride;
    let (dh, dw) = gm.p.dilation;
    let (ph, pw) = gm.p.padding;
    for n in 0..gm.n {
        for ci in 0..gm.c_in {
            let g = ci / gm.c_in_g;
            for ih in 0..gm.h_in {
                for iw in 0..gm.w_in {
                    for col in 0..gm.c_out_g {
                        let co = g * gm.c_out_g + col;
                        for kh in 0..gm.k_h {
                            let Some(oh) = out_index(ih, kh, sh, dh, ph, gm.h_out) else {
                                continue;
                            };
                            for kw in 0..gm.k_w {
                                let Some(ow) = out_index(iw, kw, sw, dw, pw, gm.w_out) else {
                                    continue;
                                };
                                let yi = ((n * gm.c_out + co) * gm.h_out + oh) * gm.w_out + ow;
                                f([n, ci, ih, iw, col, kh, kw], yi);
                            }
                        }
                    }
                }
            }
        }
    }
}

fn x_index(gm: &ConvTranspose2dGeom, [n, ci, ih, iw, ..]: [usize; 7]) -> usize {
    ((n * gm.c_in + ci) * gm.h_in + ih) * gm.w_in + iw
}

fn w_index(gm: &ConvTranspose2dGeom, [_, ci, _, _, col, kh, kw]: [usize; 7]) -> usize {
    ((ci * gm.c_out_g + col) * gm.k_h + kh) * gm.k_w + kw
}

/// `y = b + sum over taps of x * w`, scattered as in the module docs.
///
/// # Errors
/// Whatever [`ConvTranspose2dGeom::new`] refuses.
pub fn forward(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    p: &ConvTranspose2dParams,
) -> Result<Tensor> {
    let gm = ConvTranspose2dGeom::new(x.shape(), w.shape(), b.map(|b| b.shape()), p)?;
    let (xd, wd) = (x.data(), w.data());
    let hw = gm.h_out * gm.w_out;
    let mut y = vec![0.0f64; gm.out_shape().iter().product()];
    if let Some(b) = b {
        for (i, v) in y.iter_mut().enumerate() {
            *v = b.data()[(i / hw) % gm.c_out] as f64;
        }
    }
    for_each_tap(&gm, |idx, yi| {
        y[yi] += xd[x_index(&gm, idx)] as f64 * wd[w_index(&gm, idx)] as f64;
    });
    Ok(Tensor::from_parts(
        gm.out_shape().to_vec(),
        y.into_iter().map(|v| v as f32).collect(),
    ))
}

/// The three gradients `(dx, dw, db)` of `sum(y * dy)`, by the same loops as
/// [`forward`] with each product's contribution sent back to its operands.
///
/// # Errors
/// Whatever [`ConvTranspose2dGeom::new`] refuses.
pub fn backward(
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    p: &ConvTranspose2dParams,
) -> Result<(Tensor, Tensor, Tensor)> {
    let gm = ConvTranspose2dGeom::new(x.shape(), w.shape(), None, p)?;
    assert_eq!(dy.shape(), gm.out_shape(), "reference: grad_out shape");
    let (xd, wd, gd) = (x.data(), w.data(), dy.data());
    let mut dx = vec![0.0f64; xd.len()];
    let mut dw = vec![0.0f64; wd.len()];
    let mut db = vec![0.0f64; gm.c_out];
    let hw = gm.h_out * gm.w_out;
    for (i, &g) in gd.iter().enumerate() {
        db[(i / hw) % gm.c_out] += g as f64;
    }
    for_each_tap(&gm, |idx, yi| {
        let (xi, wi) = (x_index(&gm, idx), w_index(&gm, idx));
        dx[xi] += gd[yi] as f64 * wd[wi] as f64;
        dw[wi] += gd[yi] as f64 * xd[xi] as f64;
    });
    let f32s = |v: Vec<f64>| v.into_iter().map(|e| e as f32).collect::<Vec<f32>>();
    Ok((
        Tensor::from_parts(x.shape().to_vec(), f32s(dx)),
        Tensor::from_parts(w.shape().to_vec(), f32s(dw)),
        Tensor::from_parts(vec![gm.c_out], f32s(db)),
    ))
}
