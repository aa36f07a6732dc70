//! Max-pool backward: each output gradient goes to the input element its
//! window picked (saved argmax), added up where windows overlap. Planes are
//! independent, so the split over threads needs no reduction, and each plane
//! is scanned in a fixed order (same result for any thread count).

use std::mem::MaybeUninit;

use super::forward::planes_per_task;
use crate::ops::conv2d::zero_init;

/// Scatters `grad_out` ([planes, plane_out]) into `grad_in` ([planes,
/// plane_in], uninitialised: each task zeroes its planes first, in
/// parallel) through the per-plane indices `idx`.
/// Indices outside the plane ([`NO_INDEX`](super::forward::NO_INDEX)) are
/// skipped.
pub(crate) fn backward_kernel(
    grad_out: &[f32],
    idx: &[u32],
    plane_in: usize,
    plane_out: usize,
    grad_in: &mut [MaybeUninit<f32>],
) {
    if grad_in.is_empty() {
        return;
    }
    let planes = grad_in.len() / plane_in;
    let scatter = |p0: usize, gi: &mut [MaybeUninit<f32>]| {
        let gi = zero_init(gi);
        if plane_out == 0 {
            return;
        }
        for (k, gplane) in gi.chunks_mut(plane_in).enumerate() {
            let r = (p0 + k) * plane_out..(p0 + k + 1) * plane_out;
            for (&g, &i) in grad_out[r.clone()].iter().zip(&idx[r]) {
                if let Some(slot) = gplane.get_mut(i as usize) {
                    *slot += g;
                }
            }
        }
    };
    match planes_per_task(planes, planes.saturating_mul(plane_out)) {
        None => {
            // A block of planes at a time: zeroed right before the scatter.
            for (t, gi) in grad_in.chunks_mut(8 * plane_in).enumerate() {
                scatter(t * 8, gi);
            }
        }
        Some(ppt) => {
            crate::parallel::chunks_mut(grad_in, ppt * plane_in, 1, |t, gi| scatter(t * ppt, gi))
        }
    }
}
