//! Max-pool forward kernels: one generic window loop over precomputed valid
//! window ranges (padding never enters the loop), an unrolled 2x2 stride-2
//! kernel, and the split of the N*C planes over the thread pool.

use rayon::prelude::*;

use super::params::Pool2dGeometry;

/// Index stored for a window that covers only padding (its output is -inf
/// and it receives no gradient). Never a valid index: planes hold at most
/// 2^32 - 2 elements.
pub const NO_INDEX: u32 = u32::MAX;

/// Below this many window taps in total, one thread does the whole call (a
/// rayon hand-off costs a few microseconds, about this much work).
pub(crate) const PAR_MIN_WORK: usize = 1 << 16;

/// Planes per rayon task: about four tasks per thread so uneven planes
/// balance out.
pub(crate) fn planes_per_task(planes: usize, work: usize) -> Option<usize> {
    let threads = crate::parallel::get_num_threads();
    if threads <= 1 || planes < 2 || work < PAR_MIN_WORK || rayon::current_thread_index().is_some()
    {
        return None;
    }
    Some(planes.div_ceil(threads * 4).max(1))
}

/// PyTorch's update rule: a strictly greater value wins (ties keep the first
/// in scan order), and any NaN wins (so the last NaN of a window is kept).
#[inline(always)]
fn better(v: f32, best: f32) -> bool {
    v > best || v.is_nan()
}

/// One plane, any geometry. `x`: [h_in, w_in]; `out`, `idx`: [h_out, w_out]
/// (`idx` empty when `IDX` is false).
fn plane_generic<const IDX: bool>(x: &[f32], g: &Pool2dGeometry, out: &mut [f32], idx: &mut [u32]) {
    let (w_in, w_out) = (g.w_in, g.w_out);
    let [dh, dw] = g.dilation;
    for (oh, rw) in g.rows.iter().enumerate() {
        for (ow, cw) in g.cols.iter().enumerate() {
            let o = oh * w_out + ow;
            if rw.count == 0 || cw.count == 0 {
                out[o] = f32::NEG_INFINITY;
                if IDX {
                    idx[o] = NO_INDEX;
                }
                continue;
            }
            let mut best = f32::NEG_INFINITY;
            let mut best_i = rw.first * w_in + cw.first;
            for a in 0..rw.count {
                // a*dh stays below h_in: a > 0 only when the window holds two
                // rows, so dh < h_in.
                let base = (rw.first + a * dh) * w_in;
                let row = &x[base..base + w_in];
                for b in 0..cw.count {
                    let j = cw.first + b * dw;
                    let v = row[j];
                    // Selects rather than branches: which tap wins is data
                    // dependent and mispredicts often on real images.
                    let take = better(v, best);
                    best = if take { v } else { best };
                    best_i = if take { base + j } else { best_i };
                }
            }
            out[o] = best;
            if IDX {
                idx[o] = best_i as u32;
            }
        }
    }
}

/// One plane, 2x2 windows with stride 2, all inside the input. Same scan
/// order and update rule as [`plane_generic`], so results are identical.
fn plane_2x2<const IDX: bool>(x: &[f32], g: &Pool2dGeometry, out: &mut [f32], idx: &mut [u32]) {
    let (w_in, w_out) = (g.w_in, g.w_out);
    for oh in 0..g.h_out {
        let base = 2 * oh * w_in;
        let r0 = &x[base..base + w_in];
        let r1 = &x[base + w_in..base + 2 * w_in];
        let orow = &mut out[oh * w_out..(oh + 1) * w_out];
        for (ow, o) in orow.iter_mut().enumerate() {
            let j = 2 * ow;
            // Starting from the first tap equals starting from -inf with the
            // first tap's index: -inf and NaN give the same outcome both ways.
            let (mut best, mut bi) = (r0[j], base + j);
            if better(r0[j + 1], best) {
                best = r0[j + 1];
                bi = base + j + 1;
            }
            if better(r1[j], best) {
                best = r1[j];
                bi = base + w_in + j;
            }
            if better(r1[j + 1], best) {
                best = r1[j + 1];
                bi = base + w_in + j + 1;
            }
            *o = best;
            if IDX {
                idx[oh * w_out + ow] = bi as u32;
            }
        }
    }
}

/// Pools the planes `p0..` that `out` (a whole number of output planes)
/// holds.
fn pool_chunk<const IDX: bool>(
    x: &[f32],
    g: &Pool2dGeometry,
    p0: usize,
    out: &mut [f32],
    idx: &mut [u32],
) {
    let (pi, po) = (g.plane_in(), g.plane_out());
    for k in 0..out.len() / po {
        let xs = &x[(p0 + k) * pi..(p0 + k + 1) * pi];
        let o = &mut out[k * po..(k + 1) * po];
        let ix: &mut [u32] = if IDX {
            &mut idx[k * po..(k + 1) * po]
        } else {
            &mut []
        };
        if g.fast_2x2 {
            plane_2x2::<IDX>(xs, g, o, ix);
        } else {
            plane_generic::<IDX>(xs, g, o, ix);
        }
    }
}

/// Max-pools `x` ([n, c, h_in, w_in]) into `out` ([n, c, h_out, w_out]),
/// writing flat per-plane argmax indices into `idx` when given (same length
/// as `out`).
pub(crate) fn forward_kernel(
    x: &[f32],
    g: &Pool2dGeometry,
    out: &mut [f32],
    idx: Option<&mut [u32]>,
) {
    if out.is_empty() {
        return;
    }
    let taps: usize = g.rows.iter().map(|w| w.count).sum::<usize>()
        * g.cols.iter().map(|w| w.count).sum::<usize>();
    let chunk = planes_per_task(g.planes(), g.planes().saturating_mul(taps));
    match (idx, chunk) {
        (Some(idx), None) => pool_chunk::<true>(x, g, 0, out, idx),
        (None, None) => pool_chunk::<false>(x, g, 0, out, &mut []),
        (Some(idx), Some(ppt)) => {
            let len = ppt * g.plane_out();
            crate::parallel::install(|| {
                out.par_chunks_mut(len)
                    .zip(idx.par_chunks_mut(len))
                    .enumerate()
                    .for_each(|(t, (o, i))| pool_chunk::<true>(x, g, t * ppt, o, i));
            });
        }
        (None, Some(ppt)) => {
            let len = ppt * g.plane_out();
            crate::parallel::install(|| {
                out.par_chunks_mut(len)
                    .enumerate()
                    .for_each(|(t, o)| pool_chunk::<false>(x, g, t * ppt, o, &mut []));
            });
        }
    }
}
