//! Batched data augmentation on NCHW float32 images, in place or into a new
//! buffer, with randomness from the core generator (`cnnrs.manual_seed`).
//! Random parameters are drawn for the whole batch first (sequentially, so
//! results do not depend on threads), then images are processed in parallel.
//!
//! - `random_crop`: pad by `padding` (value `fill`), take an `out_h x out_w`
//!   window at a uniformly drawn offset.
//! - `hflip`: mirror each image left-right with probability `p`.
//! - `translate`: shift by integer offsets in `[-max_dy, max_dy] x [-max_dx, max_dx]`,
//!   filling with `fill`.
//! - `gaussian_noise`: add N(0, std^2) noise.
//! - `affine`: rotate by an angle in `[-degrees, degrees]` and scale by a
//!   factor in `[scale_min, scale_max]` about the image centre, bilinear
//!   sampling, `fill` outside.
//! - `cutout`: zero one `size x size` square per image (clipped at borders).
//! - `normalize`: `(x - mean[c]) / std[c]`.
//! - `pairs::random_crop_pairs`: joint crop / flip / quarter-turn of image
//!   and mask pairs for segmentation (same parameters for both).

use crate::error::{fmt_shape, Result};
use crate::rng::with_rng;
use crate::{arg_err, shape_err};

pub mod pairs;
#[cfg(test)]
mod pairs_tests;
#[cfg(test)]
mod tests;

/// Checks `len == n*c*h*w` and returns the image size `c*h*w`.
fn check(op: &str, len: usize, shape: [usize; 4]) -> Result<usize> {
    let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if numel != Some(len) {
        return Err(shape_err!(
            "{op}: buffer of {len} values does not match shape {}",
            fmt_shape(&shape)
        ));
    }
    Ok(shape[1] * shape[2] * shape[3])
}

fn par_images(x: &mut [f32], img: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    if img == 0 {
        return;
    }
    crate::parallel::chunks_mut(x, img, 1, f);
}

/// Random crop with padding; returns the `[n, c, out_h, out_w]` batch.
///
/// # Errors
/// `InvalidArgument` when the crop is larger than the padded image.
pub fn random_crop(
    x: &[f32],
    shape: [usize; 4],
    out: (usize, usize),
    padding: usize,
    fill: f32,
) -> Result<Vec<f32>> {
    let [n, c, h, w] = shape;
    check("random_crop", x.len(), shape)?;
    let (ph, pw) = (h + 2 * padding, w + 2 * padding);
    if out.0 == 0 || out.1 == 0 || out.0 > ph || out.1 > pw {
        return Err(arg_err!(
            "random_crop: crop size {:?} does not fit the padded image {ph}x{pw} (input {}, padding {padding})",
            out,
            fmt_shape(&shape)
        ));
    }
    let offs: Vec<(usize, usize)> = with_rng(|r| {
        (0..n)
            .map(|_| {
                (
                    r.below((ph - out.0 + 1) as u64) as usize,
                    r.below((pw - out.1 + 1) as u64) as usize,
                )
            })
            .collect()
    });
    let mut y = vec![fill; n * c * out.0 * out.1];
    par_images(&mut y, c * out.0 * out.1, |i, dst| {
        let (oy, ox) = offs[i];
        for ch in 0..c {
            for yy in 0..out.0 {
                let sy = (yy + oy) as isize - padding as isize;
                if sy < 0 || sy as usize >= h {
                    continue;
                }
                for xx in 0..out.1 {
                    let sx = (xx + ox) as isize - padding as isize;
                    if sx >= 0 && (sx as usize) < w {
                        dst[(ch * out.0 + yy) * out.1 + xx] =
                            x[((i * c + ch) * h + sy as usize) * w + sx as usize];
                    }
                }
            }
        }
    });
    Ok(y)
}

/// Mirrors each image left-right with probability `p`, in place.
///
/// # Errors
/// `InvalidArgument` for `p` outside [0, 1]; `ShapeMismatch` for a bad buffer.
pub fn hflip(x: &mut [f32], shape: [usize; 4], p: f32) -> Result<()> {
    let img = check("hflip", x.len(), shape)?;
    if !(0.0..=1.0).contains(&p) {
        return Err(arg_err!("hflip: p must be in [0, 1], got {p}"));
    }
    let flips: Vec<bool> = with_rng(|r| (0..shape[0]).map(|_| r.uniform() < p).collect());
    let w = shape[3];
    par_images(x, img, |i, im| {
        if flips[i] && w > 0 {
            im.chunks_mut(w).for_each(|row| row.reverse());
        }
    });
    Ok(())
}

/// Shifts each image by random integer offsets, filling with `fill`.
///
/// # Errors
/// `ShapeMismatch` for a bad buffer.
pub fn translate(
    x: &mut [f32],
    shape: [usize; 4],
    max_dy: usize,
    max_dx: usize,
    fill: f32,
) -> Result<()> {
    let img = check("translate", x.len(), shape)?;
    let [n, c, h, w] = shape;
    let offs: Vec<(isize, isize)> = with_rng(|r| {
        (0..n)
            .map(|_| {
                let dy = r.below(2 * max_dy as u64 + 1) as isize - max_dy as isize;
                let dx = r.below(2 * max_dx as u64 + 1) as isize - max_dx as isize;
                (dy, dx)
            })
            .collect()
    });
    par_images(x, img, |i, im| {
        let (dy, dx) = offs[i];
        let src = im.to_vec();
        for ch in 0..c {
            for yy in 0..h {
                for xx in 0..w {
                    let (sy, sx) = (yy as isize - dy, xx as isize - dx);
                    im[(ch * h + yy) * w + xx] =
                        if sy >= 0 && sx >= 0 && (sy as usize) < h && (sx as usize) < w {
                            src[(ch * h + sy as usize) * w + sx as usize]
                        } else {
                            fill
                        };
                }
            }
        }
    });
    Ok(())
}

/// Adds Gaussian noise of standard deviation `std`, in place.
///
/// # Errors
/// `InvalidArgument` for a negative or non-finite `std`.
pub fn gaussian_noise(x: &mut [f32], std: f32) -> Result<()> {
    if !(std.is_finite() && std >= 0.0) {
        return Err(arg_err!(
            "gaussian_noise: std must be a finite number >= 0, got {std}"
        ));
    }
    with_rng(|r| {
        for v in x.iter_mut() {
            // Box-Muller on two uniforms (one normal per pair; simple, sequential).
            let u1 = r.uniform().max(f32::MIN_POSITIVE);
            let u2 = r.uniform();
            *v += std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos();
        }
    });
    Ok(())
}

/// Rotation by a random angle in `[-degrees, degrees]` and scaling by a random
/// factor in `[scale.0, scale.1]` about the centre, bilinear, `fill` outside.
///
/// # Errors
/// `InvalidArgument` for non-finite or inverted ranges, or a non-positive scale.
pub fn affine(
    x: &mut [f32],
    shape: [usize; 4],
    degrees: f32,
    scale: (f32, f32),
    fill: f32,
) -> Result<()> {
    let img = check("affine", x.len(), shape)?;
    let valid = degrees.is_finite()
        && degrees >= 0.0
        && scale.0 > 0.0
        && scale.0 <= scale.1
        && scale.1.is_finite();
    if !valid {
        return Err(arg_err!("affine: need degrees >= 0 and 0 < scale_min <= scale_max, got degrees {degrees}, scale {scale:?}"));
    }
    let [n, c, h, w] = shape;
    let params: Vec<(f32, f32)> = with_rng(|r| {
        (0..n)
            .map(|_| {
                let a = (r.uniform() * 2.0 - 1.0) * degrees.to_radians();
                let s = scale.0 + r.uniform() * (scale.1 - scale.0);
                (a, s)
            })
            .collect()
    });
    let (cy, cx) = ((h as f32 - 1.0) / 2.0, (w as f32 - 1.0) / 2.0);
    par_images(x, img, |i, im| {
        let (a, s) = params[i];
        let (cos, sin) = (a.cos() / s, a.sin() / s);
        let src = im.to_vec();
        for yy in 0..h {
            for xx in 0..w {
                // Inverse map: output pixel -> input coordinates.
                let (dy, dx) = (yy as f32 - cy, xx as f32 - cx);
                let sy = cos * dy - sin * dx + cy;
                let sx = sin * dy + cos * dx + cx;
                let (y0, x0) = (sy.floor(), sx.floor());
                let (ty, tx) = (sy - y0, sx - x0);
                let (y0, x0) = (y0 as isize, x0 as isize);
                for ch in 0..c {
                    let at = |yy: isize, xx: isize| {
                        if yy >= 0 && xx >= 0 && (yy as usize) < h && (xx as usize) < w {
                            src[(ch * h + yy as usize) * w + xx as usize]
                        } else {
                            fill
                        }
                    };
                    let v = (1.0 - ty) * ((1.0 - tx) * at(y0, x0) + tx * at(y0, x0 + 1))
                        + ty * ((1.0 - tx) * at(y0 + 1, x0) + tx * at(y0 + 1, x0 + 1));
                    im[(ch * h + yy) * w + xx] = v;
                }
            }
        }
    });
    Ok(())
}

/// Zeroes one `size x size` square per image (all channels), centred at a
/// uniformly drawn pixel and clipped at the borders.
///
/// # Errors
/// `InvalidArgument` for `size == 0`.
pub fn cutout(x: &mut [f32], shape: [usize; 4], size: usize) -> Result<()> {
    let img = check("cutout", x.len(), shape)?;
    let [n, c, h, w] = shape;
    if size == 0 {
        return Err(arg_err!("cutout: size must be at least 1, got 0"));
    }
    if h == 0 || w == 0 {
        return Ok(());
    }
    let centres: Vec<(usize, usize)> = with_rng(|r| {
        (0..n)
            .map(|_| (r.below(h as u64) as usize, r.below(w as u64) as usize))
            .collect()
    });
    par_images(x, img, |i, im| {
        let (cy, cx) = centres[i];
        let (y0, y1) = (cy.saturating_sub(size / 2), (cy + size - size / 2).min(h));
        let (x0, x1) = (cx.saturating_sub(size / 2), (cx + size - size / 2).min(w));
        for ch in 0..c {
            for yy in y0..y1 {
                im[(ch * h + yy) * w + x0..(ch * h + yy) * w + x1].fill(0.0);
            }
        }
    });
    Ok(())
}

/// `(x - mean[c]) / std[c]`, in place.
///
/// # Errors
/// `ShapeMismatch` when `mean`/`std` do not have one value per channel (or
/// one value); `InvalidArgument` for a zero std.
pub fn normalize(x: &mut [f32], shape: [usize; 4], mean: &[f32], std: &[f32]) -> Result<()> {
    let img = check("normalize", x.len(), shape)?;
    let c = shape[1];
    let per = |v: &[f32], name: &str| -> Result<Vec<f32>> {
        match v.len() {
            1 => Ok(vec![v[0]; c]),
            l if l == c => Ok(v.to_vec()),
            l => Err(shape_err!(
                "normalize: {name} has {l} values but the images have {c} channels"
            )),
        }
    };
    let (mean, std) = (per(mean, "mean")?, per(std, "std")?);
    if std.iter().any(|&s| s == 0.0 || !s.is_finite()) {
        return Err(arg_err!(
            "normalize: std must be finite and non-zero, got {std:?}"
        ));
    }
    let hw = shape[2] * shape[3];
    par_images(x, img, |_, im| {
        if hw == 0 {
            return;
        }
        for (ch, plane) in im.chunks_mut(hw).enumerate() {
            let (m, s) = (mean[ch], 1.0 / std[ch]);
            plane.iter_mut().for_each(|v| *v = (*v - m) * s);
        }
    });
    Ok(())
}
