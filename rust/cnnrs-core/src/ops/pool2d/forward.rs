//! Max-pool forward kernels: one generic window loop over precomputed valid
//! window ranges (padding never enters the loop), unrolled branch-free
//! kernels for 2x2 stride 2 and for whole 3x3 windows (blocks of 8 outputs
//! as vector selects for stride 2: ResNet's stem pool), and the split of the
//! N*C planes over the thread pool. Every path scans taps in the same order
//! with the same update rule, so results are identical whichever runs.

use std::mem::MaybeUninit;

use super::params::Pool2dGeometry;
use crate::ops::conv2d::zero_init;

/// Index stored for a window that covers only padding (its output is -inf
/// and it receives no gradient). Never a valid index: planes hold at most
/// 2^32 - 2 elements.
pub const NO_INDEX: u32 = u32::MAX;

/// Below this many window taps in total, one thread does the whole call (a
/// rayon hand-off costs a few microseconds, about this much work).
pub(crate) const PAR_MIN_WORK: usize = 1 << 16;

/// Planes per block on the calling thread (zeroed, then pooled).
const SERIAL_PLANES: usize = 8;

/// Planes per rayon task: about four tasks per thread so uneven planes
/// balance out.
pub(crate) fn planes_per_task(planes: usize, work: usize) -> Option<usize> {
    let threads = crate::parallel::get_num_threads();
    if threads <= 1 || planes < 2 || work < PAR_MIN_WORK || crate::parallel::in_parallel_region() {
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
#[inline(always)]
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

/// One step of the scan: `(best, index)` after looking at `(v, vi)`, as
/// selects (no branch: which tap wins is data dependent, and branches
/// mispredict on real images).
#[inline(always)]
fn step(best: f32, bi: u32, v: f32, vi: u32) -> (f32, u32) {
    let take = better(v, best);
    (if take { v } else { best }, if take { vi } else { bi })
}

/// Outputs per block of the unrolled kernels: the loops over a block are
/// fixed-length, so the compiler turns them into vector selects.
const BLOCK: usize = 8;

/// One plane, 2x2 windows with stride 2, all inside the input. Same scan
/// order and update rule as [`plane_generic`], so results are identical.
#[inline(always)]
fn plane_2x2<const IDX: bool>(x: &[f32], g: &Pool2dGeometry, out: &mut [f32], idx: &mut [u32]) {
    let (w_in, w_out) = (g.w_in, g.w_out);
    for oh in 0..g.h_out {
        let base = 2 * oh * w_in;
        let r0 = &x[base..base + 2 * w_out];
        let r1 = &x[base + w_in..base + w_in + 2 * w_out];
        let orow = &mut out[oh * w_out..(oh + 1) * w_out];
        let irow: &mut [u32] = if IDX {
            &mut idx[oh * w_out..(oh + 1) * w_out]
        } else {
            &mut []
        };
        let full = w_out / BLOCK * BLOCK;
        for ob in (0..full).step_by(BLOCK) {
            let a = &r0[2 * ob..2 * ob + 2 * BLOCK];
            let c = &r1[2 * ob..2 * ob + 2 * BLOCK];
            let mut best = [0.0f32; BLOCK];
            let mut bi = [0u32; BLOCK];
            for t in 0..BLOCK {
                // Starting from the first tap equals starting from -inf with
                // the first tap's index: -inf and NaN give the same outcome.
                let j = (base + 2 * (ob + t)) as u32;
                let (m, i) = (a[2 * t], j);
                let (m, i) = step(m, i, a[2 * t + 1], j + 1);
                let (m, i) = step(m, i, c[2 * t], j + w_in as u32);
                let (m, i) = step(m, i, c[2 * t + 1], j + w_in as u32 + 1);
                best[t] = m;
                bi[t] = i;
            }
            orow[ob..ob + BLOCK].copy_from_slice(&best);
            if IDX {
                irow[ob..ob + BLOCK].copy_from_slice(&bi);
            }
        }
        for ow in full..w_out {
            let j = 2 * ow;
            let ji = (base + j) as u32;
            let (m, i) = (r0[j], ji);
            let (m, i) = step(m, i, r0[j + 1], ji + 1);
            let (m, i) = step(m, i, r1[j], ji + w_in as u32);
            let (m, i) = step(m, i, r1[j + 1], ji + w_in as u32 + 1);
            orow[ow] = m;
            if IDX {
                irow[ow] = i;
            }
        }
    }
}

/// One output of a 3x3 window with every tap inside the input, starting at
/// flat position `s` of a plane of width `w_in`; scan order as
/// [`plane_generic`].
#[inline(always)]
fn window_3x3(x: &[f32], s: usize, w_in: usize) -> (f32, u32) {
    let r = [
        &x[s..s + 3],
        &x[s + w_in..s + w_in + 3],
        &x[s + 2 * w_in..s + 2 * w_in + 3],
    ];
    let si = s as u32;
    let mut m = r[0][0];
    let mut i = si;
    for (a, row) in r.iter().enumerate() {
        for (b, &v) in row.iter().enumerate() {
            if a + b > 0 {
                (m, i) = step(m, i, v, si + (a * w_in + b) as u32);
            }
        }
    }
    (m, i)
}

/// One plane, 3x3 windows without dilation (any stride and padding): full
/// windows take the unrolled, branch-free [`window_3x3`]; windows clipped by
/// the padding go through the generic loop. Results equal
/// [`plane_generic`]'s.
#[inline(always)]
fn plane_3x3<const IDX: bool>(x: &[f32], g: &Pool2dGeometry, out: &mut [f32], idx: &mut [u32]) {
    let (w_in, w_out) = (g.w_in, g.w_out);
    // Output columns whose windows are whole form one run `c0..c1`.
    let c0 = g.cols.iter().position(|w| w.count == 3).unwrap_or(w_out);
    let c1 = c0 + g.cols[c0..].iter().take_while(|w| w.count == 3).count();
    for (oh, rw) in g.rows.iter().enumerate() {
        let o = oh * w_out;
        if rw.count != 3 {
            plane_generic_row::<IDX>(x, g, oh, out, idx);
            continue;
        }
        plane_generic_cols::<IDX>(x, g, oh, 0..c0, out, idx);
        let base = rw.first * w_in;
        let mut ow = c0;
        if g.stride_w == 2 && c1 - c0 >= BLOCK {
            // Blocks of outputs whose windows start 2 apart: fixed-length
            // loops over arrays, which the compiler turns into vector
            // selects and shuffles. A ragged end is one more block ending
            // at `c1`, overlapping the previous one (its outputs are
            // written twice with the same values).
            while ow < c1 {
                let ow_b = ow.min(c1 - BLOCK);
                let s0 = base + g.cols[ow_b].first;
                let mut best = [0.0f32; BLOCK];
                let mut bi = [0u32; BLOCK];
                for t in 0..BLOCK {
                    best[t] = x[s0 + 2 * t];
                    bi[t] = (s0 + 2 * t) as u32;
                }
                for a in 0..3 {
                    let r = &x[s0 + a * w_in..s0 + a * w_in + 2 * BLOCK + 1];
                    for b in 0..3 {
                        if a + b == 0 {
                            continue;
                        }
                        let off = (s0 + a * w_in + b) as u32;
                        for t in 0..BLOCK {
                            (best[t], bi[t]) =
                                step(best[t], bi[t], r[2 * t + b], off + 2 * t as u32);
                        }
                    }
                }
                out[o + ow_b..o + ow_b + BLOCK].copy_from_slice(&best);
                if IDX {
                    idx[o + ow_b..o + ow_b + BLOCK].copy_from_slice(&bi);
                }
                ow = ow_b + BLOCK;
            }
        }
        for ow in ow..c1 {
            let (m, i) = window_3x3(x, base + g.cols[ow].first, w_in);
            out[o + ow] = m;
            if IDX {
                idx[o + ow] = i;
            }
        }
        plane_generic_cols::<IDX>(x, g, oh, c1..w_out, out, idx);
    }
}

/// [`plane_generic`] for output row `oh` only.
#[inline(always)]
fn plane_generic_row<const IDX: bool>(
    x: &[f32],
    g: &Pool2dGeometry,
    oh: usize,
    out: &mut [f32],
    idx: &mut [u32],
) {
    plane_generic_cols::<IDX>(x, g, oh, 0..g.w_out, out, idx)
}

/// [`plane_generic`] for output row `oh`, columns `cols`.
#[inline(always)]
fn plane_generic_cols<const IDX: bool>(
    x: &[f32],
    g: &Pool2dGeometry,
    oh: usize,
    cols: std::ops::Range<usize>,
    out: &mut [f32],
    idx: &mut [u32],
) {
    let w_in = g.w_in;
    let [dh, dw] = g.dilation;
    let rw = g.rows[oh];
    for ow in cols {
        let cw = g.cols[ow];
        let o = oh * g.w_out + ow;
        if rw.count == 0 || cw.count == 0 {
            out[o] = f32::NEG_INFINITY;
            if IDX {
                idx[o] = NO_INDEX;
            }
            continue;
        }
        let mut best = f32::NEG_INFINITY;
        let mut best_i = (rw.first * w_in + cw.first) as u32;
        for a in 0..rw.count {
            let base = (rw.first + a * dh) * w_in;
            for b in 0..cw.count {
                let j = base + cw.first + b * dw;
                (best, best_i) = step(best, best_i, x[j], j as u32);
            }
        }
        out[o] = best;
        if IDX {
            idx[o] = best_i;
        }
    }
}

/// The planes of [`pool_chunk`], each through its kernel.
#[inline(always)]
fn pool_planes<const IDX: bool>(
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
        } else if g.fast_3x3 {
            plane_3x3::<IDX>(xs, g, o, ix);
        } else {
            plane_generic::<IDX>(xs, g, o, ix);
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
    if g.fast_2x2 && !IDX {
        // The baseline build's 2x2 kernel without indices streams at memory
        // speed; compiled for AVX-512 it took twice as long on 112x112
        // planes (1.0 -> 2.2 ms for 8x64 of them, one thread).
        pool_planes::<IDX>(x, g, p0, out, idx)
    } else {
        // Compiled for the active SIMD family: the selects of the unrolled
        // kernels become vector blends (the baseline SSE2 has none, and ran
        // the 3x3 stride-2 kernel with indices as scalar code).
        crate::kernels::simd::wide(
            #[inline(always)]
            || pool_planes::<IDX>(x, g, p0, out, idx),
        )
    }
}

/// Max-pools `x` ([n, c, h_in, w_in]) into `out` ([n, c, h_out, w_out]),
/// writing flat per-plane argmax indices into `idx` when given (same length
/// as `out`).
///
/// `out` and `idx` arrive uninitialised; each task zeroes its chunk before
/// filling it (see [`zero_init`]), so on return both are fully written.
pub(crate) fn forward_kernel(
    x: &[f32],
    g: &Pool2dGeometry,
    out: &mut [MaybeUninit<f32>],
    idx: Option<&mut [MaybeUninit<u32>]>,
) {
    if out.is_empty() {
        return;
    }
    let taps: usize = g.rows.iter().map(|w| w.count).sum::<usize>()
        * g.cols.iter().map(|w| w.count).sum::<usize>();
    let chunk = planes_per_task(g.planes(), g.planes().saturating_mul(taps));
    match (idx, chunk) {
        // One block of planes at a time, so each is zeroed right before the
        // kernel writes it (still in cache) rather than all up front.
        (Some(idx), None) => {
            let len = SERIAL_PLANES * g.plane_out();
            for (t, (o, i)) in out.chunks_mut(len).zip(idx.chunks_mut(len)).enumerate() {
                pool_chunk::<true>(x, g, t * SERIAL_PLANES, zero_init(o), zero_init(i));
            }
        }
        (None, None) => {
            let len = SERIAL_PLANES * g.plane_out();
            for (t, o) in out.chunks_mut(len).enumerate() {
                pool_chunk::<false>(x, g, t * SERIAL_PLANES, zero_init(o), &mut []);
            }
        }
        (Some(idx), Some(ppt)) => {
            let len = ppt * g.plane_out();
            let mut pairs: Vec<_> = out.chunks_mut(len).zip(idx.chunks_mut(len)).collect();
            crate::parallel::chunks_mut(&mut pairs, 1, 1, |t, p| {
                let (o, i) = &mut p[0];
                pool_chunk::<true>(x, g, t * ppt, zero_init(o), zero_init(i))
            });
        }
        (None, Some(ppt)) => {
            let len = ppt * g.plane_out();
            crate::parallel::chunks_mut(out, len, 1, |t, o| {
                pool_chunk::<false>(x, g, t * ppt, zero_init(o), &mut [])
            });
        }
    }
}
