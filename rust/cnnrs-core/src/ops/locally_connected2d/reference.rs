//! The defining sum, by loops: the oracle.

use super::{LocalDims, LocalParams};

fn at(x: &[f32], d: &LocalDims, n: usize, c: usize, y: isize, xx: isize) -> f32 {
    if y < 0 || xx < 0 || y as usize >= d.h_in || xx as usize >= d.w_in {
        return 0.0;
    }
    x[((n * d.c_in + c) * d.h_in + y as usize) * d.w_in + xx as usize]
}

pub fn forward(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    d: &LocalDims,
    p: &LocalParams,
) -> Vec<f32> {
    let mut y = vec![0.0; d.n * d.c_out * d.h_out * d.w_out];
    for n in 0..d.n {
        for o in 0..d.c_out {
            for i in 0..d.h_out {
                for j in 0..d.w_out {
                    let mut s = b.map_or(0.0, |b| b[(o * d.h_out + i) * d.w_out + j] as f64);
                    for c in 0..d.c_in {
                        for ky in 0..d.k_h {
                            for kx in 0..d.k_w {
                                let wi = ((((i * d.w_out + j) * d.c_out + o) * d.c_in + c) * d.k_h
                                    + ky)
                                    * d.k_w
                                    + kx;
                                let yy = (i * p.stride.0 + ky) as isize - p.padding.0 as isize;
                                let xx = (j * p.stride.1 + kx) as isize - p.padding.1 as isize;
                                s += w[wi] as f64 * at(x, d, n, c, yy, xx) as f64;
                            }
                        }
                    }
                    y[((n * d.c_out + o) * d.h_out + i) * d.w_out + j] = s as f32;
                }
            }
        }
    }
    y
}

/// `(dx, dw)` by the chain rule on the same loops.
pub fn backward(
    x: &[f32],
    w: &[f32],
    g: &[f32],
    d: &LocalDims,
    p: &LocalParams,
) -> (Vec<f32>, Vec<f32>) {
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; w.len()];
    for n in 0..d.n {
        for o in 0..d.c_out {
            for i in 0..d.h_out {
                for j in 0..d.w_out {
                    let gv = g[((n * d.c_out + o) * d.h_out + i) * d.w_out + j];
                    for c in 0..d.c_in {
                        for ky in 0..d.k_h {
                            for kx in 0..d.k_w {
                                let wi = ((((i * d.w_out + j) * d.c_out + o) * d.c_in + c) * d.k_h
                                    + ky)
                                    * d.k_w
                                    + kx;
                                let yy = (i * p.stride.0 + ky) as isize - p.padding.0 as isize;
                                let xx = (j * p.stride.1 + kx) as isize - p.padding.1 as isize;
                                dw[wi] += gv * at(x, d, n, c, yy, xx);
                                if yy >= 0
                                    && xx >= 0
                                    && (yy as usize) < d.h_in
                                    && (xx as usize) < d.w_in
                                {
                                    dx[((n * d.c_in + c) * d.h_in + yy as usize) * d.w_in
                                        + xx as usize] += gv * w[wi];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    (dx, dw)
}
