//! Joint augmentation of image/mask pairs for segmentation: one random crop,
//! flip and 90-degree rotation per sample, applied with the same parameters
//! to the image (all channels) and to its integer mask.
//!
//! Sample `i` reads source image `sources[i]` of an `(M, C, H, W)` stack and
//! its `(M, H, W)` mask. With `rot90` it draws `k` in 0..4 quarter turns,
//! then a window of `(out_h, out_w)` (or `(out_w, out_h)` for odd `k`, so
//! the rotated crop has the requested size) at a uniform offset, then, with
//! `flip`, a left-right and an up-down flip with probability 1/2 each. The
//! output is `rot90(flip(window), k)` in NumPy's `np.rot90` convention
//! (counter-clockwise): the 8 symmetries of the square are all reachable.
//!
//! Randomness: a generator seeded with `seed` when given (the same seed
//! gives the same batch), else the core generator (`cnnrs.manual_seed`).
//! Parameters are drawn sequentially for the batch, then samples are written
//! in parallel, so results do not depend on the thread count.

use rayon::prelude::*;

use crate::error::{fmt_shape, Result};
use crate::rng::{with_rng, Xoshiro256};
use crate::{arg_err, shape_err};

/// Options of [`random_crop_pairs`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairAugment {
    /// Output `(out_h, out_w)`.
    pub size: (usize, usize),
    /// Random left-right and up-down flips.
    pub flip: bool,
    /// Random quarter turns.
    pub rot90: bool,
}

/// Random parameters of one sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairParams {
    pub src: usize,
    /// Top-left corner of the window in the source.
    pub oy: usize,
    pub ox: usize,
    /// Window size before rotation.
    pub wh: usize,
    pub ww: usize,
    pub flip_lr: bool,
    pub flip_ud: bool,
    /// Counter-clockwise quarter turns, 0..4.
    pub k: u32,
}

impl PairParams {
    /// Source pixel `(y, x)` (in the image plane) of output pixel `(y, x)`.
    #[inline]
    pub fn source(&self, mut y: usize, mut x: usize) -> (usize, usize) {
        // Undo the quarter turns: B = rot90(A) has B[i, j] = A[j, W_A - 1 - i],
        // with W_A = B's height.
        let (mut bh, mut bw) = if self.k % 2 == 1 {
            (self.ww, self.wh)
        } else {
            (self.wh, self.ww)
        };
        for _ in 0..self.k {
            (y, x) = (x, bh - 1 - y);
            (bh, bw) = (bw, bh);
        }
        if self.flip_ud {
            y = self.wh - 1 - y;
        }
        if self.flip_lr {
            x = self.ww - 1 - x;
        }
        (self.oy + y, self.ox + x)
    }
}

fn draw(
    r: &mut Xoshiro256,
    sources: &[usize],
    h: usize,
    w: usize,
    a: &PairAugment,
) -> Vec<PairParams> {
    sources
        .iter()
        .map(|&src| {
            let k = if a.rot90 { r.below(4) as u32 } else { 0 };
            let (wh, ww) = if k % 2 == 1 {
                (a.size.1, a.size.0)
            } else {
                a.size
            };
            let oy = r.below((h - wh + 1) as u64) as usize;
            let ox = r.below((w - ww + 1) as u64) as usize;
            let flip_lr = a.flip && r.below(2) == 1;
            let flip_ud = a.flip && r.below(2) == 1;
            PairParams {
                src,
                oy,
                ox,
                wh,
                ww,
                flip_lr,
                flip_ud,
                k,
            }
        })
        .collect()
}

/// Draws the parameters of `sources.len()` samples and checks the inputs.
///
/// # Errors
/// `ShapeMismatch` when the buffers do not hold `shape` / `(M, H, W)`;
/// `InvalidArgument` for a source index out of range, a zero size, or a
/// crop (rotated with `rot90`) larger than the images.
pub fn draw_pair_params(
    shape: [usize; 4],
    sources: &[usize],
    a: &PairAugment,
    seed: Option<u64>,
) -> Result<Vec<PairParams>> {
    let [m, _, h, w] = shape;
    let (oh, ow) = a.size;
    if oh == 0 || ow == 0 {
        return Err(arg_err!(
            "random_crop_pairs: crop size must be positive, got {:?}",
            a.size
        ));
    }
    let (need_h, need_w) = if a.rot90 {
        (oh.max(ow), oh.max(ow))
    } else {
        (oh, ow)
    };
    if need_h > h || need_w > w {
        return Err(arg_err!(
            "random_crop_pairs: crop size {:?}{} does not fit the images {}",
            a.size,
            if a.rot90 {
                " (rotated by 90 degrees)"
            } else {
                ""
            },
            fmt_shape(&shape)
        ));
    }
    if let Some(&s) = sources.iter().find(|&&s| s >= m) {
        return Err(arg_err!(
            "random_crop_pairs: source index {s} is out of range for {m} images"
        ));
    }
    Ok(match seed {
        Some(s) => draw(&mut Xoshiro256::seed(s), sources, h, w, a),
        None => with_rng(|r| draw(r, sources, h, w, a)),
    })
}

/// Crops (and flips and rotates) image/mask pairs jointly; returns the
/// `[n, c, out_h, out_w]` images and `[n, out_h, out_w]` masks, `n =
/// sources.len()`.
///
/// # Errors
/// See [`draw_pair_params`].
pub fn random_crop_pairs(
    images: &[f32],
    shape: [usize; 4],
    masks: &[i64],
    sources: &[usize],
    a: &PairAugment,
    seed: Option<u64>,
) -> Result<(Vec<f32>, Vec<i64>)> {
    let [m, c, h, w] = shape;
    let numel = shape.iter().try_fold(1usize, |p, &d| p.checked_mul(d));
    if numel != Some(images.len()) || masks.len() != m * h * w {
        return Err(shape_err!(
            "random_crop_pairs: images hold {} values and masks {} but shape {} needs {} and {} \
             (masks are (M, H, W))",
            images.len(),
            masks.len(),
            fmt_shape(&shape),
            numel.unwrap_or(usize::MAX),
            m * h * w
        ));
    }
    let params = draw_pair_params(shape, sources, a, seed)?;
    let (oh, ow) = a.size;
    let n = sources.len();
    let mut xi = vec![0.0f32; n * c * oh * ow]; // [n, c, oh, ow]
    let mut xm = vec![0i64; n * oh * ow]; // [n, oh, ow]
    if n == 0 || c * oh * ow == 0 {
        return Ok((xi, xm));
    }
    crate::parallel::install(|| {
        xi.par_chunks_mut(c * oh * ow)
            .zip(xm.par_chunks_mut(oh * ow))
            .zip(params.par_iter())
            .for_each(|((img, mask), p)| {
                for y in 0..oh {
                    for x in 0..ow {
                        let (sy, sx) = p.source(y, x);
                        mask[y * ow + x] = masks[(p.src * h + sy) * w + sx];
                        for ch in 0..c {
                            img[(ch * oh + y) * ow + x] =
                                images[((p.src * c + ch) * h + sy) * w + sx];
                        }
                    }
                }
            });
    });
    Ok((xi, xm))
}
