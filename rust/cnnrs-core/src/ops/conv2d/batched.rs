//! Small output maps under many channels (ResNet's last stages on CIFAR
//! sizes: 4x4, 2x2, 1x1 maps with 128-512 channels), forward and backward.
//!
//! Per-image GEMMs there have a handful of columns each and pack the whole
//! weight matrix per image: ResNet-18's last stage carries 9.4 MB of
//! weights per layer, packed 32 times for a batch of 32 in the forward,
//! again in the input gradient, and its weight gradient became 32 rank-1
//! updates of the 9.4 MB matrix. Here the images of a chunk share one
//! column matrix `cols [K, imgs * hw]` (column `i * hw + p`: output position
//! `p` of image `i`) and one threaded GEMM per pass:
//!
//! ```text
//! forward      y      [c_out, imgs*hw] = W [c_out, K] · cols
//! input grad   dcol   [K, imgs*hw]     = W^T · dy_b [c_out, imgs*hw]   then col2im
//! weight grad  dW     [c_out, K]      += dy_b · cols^T                 (chunk order)
//! ```
//!
//! im2col and col2im go through a table of source offsets per (tap,
//! output position), built once per call, instead of row copies (on 2x2
//! maps every copy was a `memcpy` call for two floats): they were a fifth
//! of ResNet-18's CIFAR inference, on one thread. Here they run over
//! channels (im2col) or images (col2im) on the pool. Every sum runs in a
//! fixed order: results do not depend on the thread count.

use super::params::Conv2dGeom;
use super::{forward::GemmFn, Tuning};
use crate::error::Result;
use crate::kernels::{GemmOpts, MatRef};
use crate::tensor::Tensor;

/// True when the shapes take this path: several images, one group, at
/// least twice as many output channels as output positions, small maps.
pub(super) fn applies(gm: &Conv2dGeom) -> bool {
    gm.n >= 2 && gm.groups == 1 && gm.c_out_g >= 2 * gm.hw_out() && gm.hw_out() <= 256
}

/// Elements of a pass below which it stays on the calling thread.
const PAR_MIN: usize = 1 << 15;

/// For every tap `(kh, kw)` and output position `p`, the offset of its
/// input pixel in a channel plane, or `-1` in the padding: `[k_h*k_w, hw]`.
struct Taps {
    off: Vec<isize>,
    taps: usize,
    hw: usize,
}

impl Taps {
    fn new(gm: &Conv2dGeom) -> Self {
        let (taps, hw) = (gm.k_h * gm.k_w, gm.hw_out());
        let mut off = Vec::with_capacity(taps * hw);
        for kh in 0..gm.k_h {
            for kw in 0..gm.k_w {
                for oh in 0..gm.h_out {
                    let ih = (oh * gm.stride_h + kh * gm.dil_h) as isize - gm.pad_top as isize;
                    for ow in 0..gm.w_out {
                        let iw = (ow * gm.stride_w + kw * gm.dil_w) as isize - gm.pad_left as isize;
                        let inside = (0..gm.h_in as isize).contains(&ih)
                            && (0..gm.w_in as isize).contains(&iw);
                        off.push(if inside {
                            ih * gm.w_in as isize + iw
                        } else {
                            -1
                        });
                    }
                }
            }
        }
        Self { off, taps, hw }
    }
}

/// Images per chunk: as many as keep `cols` within the tuning's panel
/// budget (at least one).
fn chunk_images(gm: &Conv2dGeom, tuning: &Tuning) -> usize {
    let per = (gm.col_rows() * gm.hw_out()).max(1);
    (tuning.panel_floats.max(per) / per).clamp(1, gm.n.max(1))
}

/// `cols [K, m*hw]` from the `m` images `x [m, c_in, h_in, w_in]`.
fn im2col(x: &[f32], gm: &Conv2dGeom, t: &Taps, m: usize, cols: &mut [f32]) {
    let (hw, hw_in, width) = (t.hw, gm.hw_in(), m * t.hw);
    let channel = |c: usize, rows: &mut [f32]| {
        for (tap, row) in rows.chunks_exact_mut(width).enumerate() {
            let off = &t.off[tap * hw..(tap + 1) * hw];
            for (i, dst) in row.chunks_exact_mut(hw).enumerate() {
                let xc = &x[(i * gm.c_in + c) * hw_in..(i * gm.c_in + c + 1) * hw_in];
                for (d, &o) in dst.iter_mut().zip(off) {
                    *d = if o >= 0 { xc[o as usize] } else { 0.0 };
                }
            }
        }
    };
    crate::parallel::for_each_block_mut(cols, t.taps * width, PAR_MIN, channel);
}

/// `dx [m, c_in, h_in, w_in]` (overwritten) from `dcol [K, m*hw]`: the
/// adjoint of [`im2col`], image by image in parallel; within an image the
/// taps add in `(c, kh, kw, p)` order.
fn col2im(dcol: &[f32], gm: &Conv2dGeom, t: &Taps, m: usize, dx: &mut [f32]) {
    let (hw, hw_in, width) = (t.hw, gm.hw_in(), m * t.hw);
    let image = |i: usize, dxi: &mut [f32]| {
        dxi.fill(0.0);
        for (c, dxc) in dxi.chunks_exact_mut(hw_in).enumerate() {
            for tap in 0..t.taps {
                let r = c * t.taps + tap;
                let src = &dcol[r * width + i * hw..r * width + (i + 1) * hw];
                for (&o, &s) in t.off[tap * hw..(tap + 1) * hw].iter().zip(src) {
                    if o >= 0 {
                        dxc[o as usize] += s;
                    }
                }
            }
        }
    };
    // Parallel when the gradient columns are large (the work is theirs).
    let par_min = if dcol.len() >= PAR_MIN { 0 } else { usize::MAX };
    crate::parallel::for_each_block_mut(dx, gm.c_in * hw_in, par_min, image);
}

/// Copies `src` rows to `dst` rows with a permutation of two block axes:
/// `dst[a][b][..len] = src[b][a][..len]` for `a < na`, `b < nb` (NCHW
/// <-> `[c, imgs, hw]`).
fn swap_blocks(src: &[f32], dst: &mut [f32], na: usize, nb: usize, len: usize) {
    let body = |a: usize, d: &mut [f32]| {
        for (b, dd) in d.chunks_exact_mut(len).enumerate() {
            dd.copy_from_slice(&src[(b * na + a) * len..(b * na + a + 1) * len]);
        }
    };
    debug_assert_eq!(dst.len(), na * nb * len);
    crate::parallel::for_each_block_mut(dst, nb * len, PAR_MIN, body);
}

/// The forward pass: writes all of `out [n, c_out, h_out, w_out]`.
pub(super) fn forward(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    gm: &Conv2dGeom,
    relu: bool,
    tuning: &Tuning,
    out: &mut [f32],
) -> Result<()> {
    let (k, hw, c_out) = (gm.col_rows(), gm.hw_out(), gm.c_out);
    let (x_img, y_img) = (gm.c_in * gm.hw_in(), c_out * hw);
    let imgs = chunk_images(gm, tuning);
    let taps = Taps::new(gm);
    let a = MatRef::row_major(w, c_out, k, k);
    let opts = GemmOpts {
        bias_row: b,
        relu,
        ..GemmOpts::default()
    };
    let mm: GemmFn = tuning.mm(true);
    // Scratch reused across calls (its contents are overwritten before
    // they are read: im2col and the GEMM write every element they use).
    super::with_scratch(k * imgs * hw + c_out * imgs * hw, |buf| {
        let (cols, res) = buf.split_at_mut(k * imgs * hw); // [K, imgs*hw], [c_out, imgs*hw]
        for i0 in (0..gm.n).step_by(imgs) {
            let m = imgs.min(gm.n - i0);
            let width = m * hw;
            let cols = &mut cols[..k * width];
            im2col(&x[i0 * x_img..(i0 + m) * x_img], gm, &taps, m, cols);
            let bm = MatRef::row_major(cols, k, width, width);
            mm.call(a, bm, &mut res[..c_out * width], width, &opts);
            // [c_out, m, hw] -> [m, c_out, hw]
            swap_blocks(res, &mut out[i0 * y_img..(i0 + m) * y_img], m, c_out, hw);
        }
        Ok(())
    })
}

/// The gradients this path computes: input, weight, bias (each when asked).
pub(super) type Grads = (Option<Tensor>, Option<Tensor>, Option<Tensor>);

/// The backward pass for [`applies`] shapes.
pub(super) fn backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    needs: super::Conv2dNeeds,
    gm: &Conv2dGeom,
    tuning: &Tuning,
) -> Result<Grads> {
    let (k, hw, c_out) = (gm.col_rows(), gm.hw_out(), gm.c_out);
    let (x_img, y_img) = (gm.c_in * gm.hw_in(), c_out * hw);
    let imgs = chunk_images(gm, tuning);
    let taps = Taps::new(gm);
    let mm: GemmFn = tuning.mm(true);
    let x_numel = crate::tensor::checked_numel(&[gm.n, gm.c_in, gm.h_in, gm.w_in])?;
    let mut dw = if needs.weight {
        Some(Tensor::zeros(&[c_out, gm.c_in_g, gm.k_h, gm.k_w])?)
    } else {
        None
    };
    // `col2im` overwrites every image of `dx` (zeroing it first), chunk by
    // chunk; on an error the buffer is dropped unread.
    let mut dx_buf = if needs.input {
        Some(super::uninit_buffer::<f32>(x_numel)?)
    } else {
        None
    };
    let wt = MatRef::transposed(w, k, c_out, k); // [K, c_out]
    let acc = GemmOpts {
        accumulate: true,
        ..GemmOpts::default()
    };
    super::with_scratch(c_out * imgs * hw + k * imgs * hw, |buf| {
        let (dyb, cols) = buf.split_at_mut(c_out * imgs * hw); // [c_out, imgs*hw], [K, imgs*hw]
        for i0 in (0..gm.n).step_by(imgs) {
            let m = imgs.min(gm.n - i0);
            let width = m * hw;
            let dyb = &mut dyb[..c_out * width];
            // [m, c_out, hw] -> [c_out, m, hw]
            swap_blocks(&dy[i0 * y_img..(i0 + m) * y_img], dyb, c_out, m, hw);
            let dyr = MatRef::row_major(dyb, c_out, width, width);
            let cols = &mut cols[..k * width];
            if let Some(dw) = dw.as_mut() {
                im2col(&x[i0 * x_img..(i0 + m) * x_img], gm, &taps, m, cols);
                let colt = MatRef::transposed(cols, width, k, width); // [width, K]
                mm.call(dyr, colt, dw.data_mut(), k, &acc);
            }
            if let Some(v) = dx_buf.as_mut() {
                let spare = &mut v.spare_capacity_mut()[i0 * x_img..(i0 + m) * x_img];
                // SAFETY: `col2im` fills every image it is given before
                // adding into it.
                let dx = unsafe { super::assume_written(spare) };
                mm.call(wt, dyr, cols, width, &GemmOpts::default());
                col2im(cols, gm, &taps, m, dx);
            }
        }
        Ok(())
    })?;
    let dx = dx_buf.map(|mut v| {
        // SAFETY: the loop above wrote every image (the chunks cover
        // `0..n`), and returned early on any error.
        unsafe { v.set_len(x_numel) };
        Tensor::from_parts(vec![gm.n, gm.c_in, gm.h_in, gm.w_in], v)
    });
    let db = needs
        .bias
        .then(|| super::backward::channel_sums(dy, c_out, hw));
    Ok((dx, dw, db))
}
