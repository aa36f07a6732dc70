//! The "wide grid": im2col without a column buffer and without per-element
//! index arithmetic, for the GEMM's B-panel packing.
//!
//! One image of one group is copied once into a zero-padded, stride-phase
//! split buffer `xq [c_in_g][s_h][s_w][hq][wq]`, where phase `(a, b)` holds
//! the padded input positions `(i*s_h + a, j*s_w + b)`. The convolution's
//! output is then computed on a grid `h_out x wq` (a little wider than
//! `w_out`): on that grid, row `(c, kh, kw)` of the column matrix is the
//! *contiguous* slice of `xq` that starts at [`WideGeom::tap_offset`] —
//!
//! ```text
//! col[(c,kh,kw), oh*wq + ow] = xq[c][kh*d_h % s_h][kw*d_w % s_w]
//!                                [oh + kh*d_h / s_h][ow + kw*d_w / s_w]
//! ```
//!
//! so packing a B panel is a series of plain fixed-width copies. Columns
//! `ow >= w_out` of the grid are junk (they read across the row end). The
//! forward pass and the weight gradient never compute them: [`ValidCols`]
//! and [`ValidColsT`] pack only valid columns (a fixed-width run patched
//! where a panel crosses a row end), so the GEMM reads `dy` and writes the
//! output directly. The input gradient (col2im on the grid) and the direct
//! kernels do work on the whole grid: junk columns meet zeros in the
//! widened `dy`, costing `wq / w_out - 1` extra flops (3.6% for a 3x3 conv
//! on 56x56, 2.7% for a 7x7 stride-2 on 224x224); for those, the tuning's
//! `wide_max_waste` (default [`MAX_WASTE`]) bounds that fraction, and small
//! maps keep the panel path.

use super::params::Conv2dGeom;
use crate::kernels::gemm::{FusedSrc, RowOffsets};
use crate::kernels::PackB;

/// Largest tolerated fraction of junk columns (`wq / w_out - 1`).
pub(crate) const MAX_WASTE: f64 = 0.15;

/// Sizes of the phase-split padded image and of the wide output grid.
pub(crate) struct WideGeom {
    pub hq: usize,
    pub wq: usize,
    /// Floats of `xq` including the slack that junk columns may read.
    pub xq_len: usize,
    /// Output rows of the grid (`h_out`) times `wq`.
    pub n_wide: usize,
    /// `tap_offset` of every column-matrix row, in weight order.
    pub offsets: Vec<usize>,
}

impl WideGeom {
    /// `None` when the grid would waste more than `max_waste` of the flops.
    pub(crate) fn new(gm: &Conv2dGeom, max_waste: f64) -> Option<Self> {
        let (sh, sw) = (gm.stride_h, gm.stride_w);
        let hp = gm.h_in + gm.pad_top + gm.pad_bottom;
        let wp = gm.w_in + gm.pad_left + gm.pad_right;
        let (hq, wq) = (hp.div_ceil(sh), wp.div_ceil(sw));
        // Every valid output's taps must land inside a phase plane.
        let reach_h = gm.h_out + (gm.k_h.saturating_sub(1) * gm.dil_h) / sh;
        let reach_w = gm.w_out + (gm.k_w.saturating_sub(1) * gm.dil_w) / sw;
        if gm.w_out == 0 || gm.h_out == 0 || reach_w > wq || reach_h > hq {
            return None;
        }
        if (wq as f64 / gm.w_out as f64) - 1.0 > max_waste {
            return None;
        }
        let plane = hq.checked_mul(wq)?;
        let n_wide = gm.h_out.checked_mul(wq)?;
        let mut offsets = Vec::with_capacity(gm.col_rows());
        for c in 0..gm.c_in_g {
            for kh in 0..gm.k_h {
                for kw in 0..gm.k_w {
                    let (a, b) = ((kh * gm.dil_h) % sh, (kw * gm.dil_w) % sw);
                    let phase = (c * sh + a) * sw + b;
                    offsets.push(phase * plane + (kh * gm.dil_h / sh) * wq + kw * gm.dil_w / sw);
                }
            }
        }
        let max_off = offsets.iter().copied().max().unwrap_or(0);
        let xq_len = (gm.c_in_g * sh * sw)
            .checked_mul(plane)?
            .max(max_off.checked_add(n_wide)?);
        Some(Self {
            hq,
            wq,
            xq_len,
            n_wide,
            offsets,
        })
    }

    /// Fills `xq` (`xq_len` floats) from one image of one group
    /// `x [c_in_g, h_in, w_in]`: padding and slack are zero.
    pub(crate) fn build(&self, gm: &Conv2dGeom, x: &[f32], xq: &mut [f32]) {
        // Compiled for the active SIMD family: the stride-phase split is a
        // strided copy the baseline build leaves at SSE2 width.
        crate::kernels::simd::wide(
            #[inline(always)]
            || self.build_body(gm, x, xq),
        )
    }

    #[inline(always)]
    fn build_body(&self, gm: &Conv2dGeom, x: &[f32], xq: &mut [f32]) {
        let (sh, sw) = (gm.stride_h, gm.stride_w);
        let (hq, wq, w_in) = (self.hq, self.wq, gm.w_in);
        let plane = hq * wq;
        xq.fill(0.0);
        for c in 0..gm.c_in_g {
            let xc = &x[c * gm.hw_in()..(c + 1) * gm.hw_in()];
            for (ih, src) in xc.chunks_exact(w_in).enumerate() {
                let ip = ih + gm.pad_top;
                let (a, i) = (ip % sh, ip / sh);
                if sw == 1 {
                    let base = (c * sh + a) * plane + i * wq + gm.pad_left;
                    xq[base..base + w_in].copy_from_slice(src);
                    continue;
                }
                if sw == 2 {
                    // Even input columns to the phase whose first column is
                    // 0, odd ones to the other (as the loop below would).
                    let d = |first: usize| {
                        let b = (first + gm.pad_left) % 2;
                        ((c * sh + a) * 2 + b) * plane + i * wq + (first + gm.pad_left) / 2
                    };
                    deinterleave2(src, xq, d(0), d(1));
                    continue;
                }
                for b in 0..sw {
                    // Input columns `iw` with `(iw + pad_left) % sw == b`,
                    // to consecutive slots from `(first + pad_left) / sw`.
                    let first = (b + sw - gm.pad_left % sw) % sw;
                    let base = ((c * sh + a) * sw + b) * plane + i * wq;
                    let d0 = base + (first + gm.pad_left) / sw;
                    let src = src.get(first..).unwrap_or(&[]);
                    for (d, s) in xq[d0..].iter_mut().zip(src.iter().step_by(sw)) {
                        *d = *s;
                    }
                }
            }
        }
    }
}

impl WideGeom {
    /// The adjoint of [`WideGeom::build`]: adds the real (unpadded)
    /// positions of `xq` into `x [c_in_g, h_in, w_in]`.
    #[inline(always)]
    pub(crate) fn add_back(&self, gm: &Conv2dGeom, xq: &[f32], x: &mut [f32]) {
        let (sh, sw) = (gm.stride_h, gm.stride_w);
        let (hq, wq, w_in) = (self.hq, self.wq, gm.w_in);
        let plane = hq * wq;
        let hw_in = gm.hw_in();
        for c in 0..gm.c_in_g {
            let xc = &mut x[c * hw_in..(c + 1) * hw_in];
            for (ih, dst) in xc.chunks_exact_mut(w_in).enumerate() {
                let ip = ih + gm.pad_top;
                let (a, i) = (ip % sh, ip / sh);
                if sw == 1 {
                    let base = (c * sh + a) * plane + i * wq + gm.pad_left;
                    for (d, s) in dst.iter_mut().zip(&xq[base..base + w_in]) {
                        *d += *s;
                    }
                    continue;
                }
                if sw == 2 {
                    // The adjoint of `build`'s split (see there).
                    let s = |first: usize| {
                        let b = (first + gm.pad_left) % 2;
                        ((c * sh + a) * 2 + b) * plane + i * wq + (first + gm.pad_left) / 2
                    };
                    interleave2_add(xq, s(0), s(1), dst);
                    continue;
                }
                for b in 0..sw {
                    let first = (b + sw - gm.pad_left % sw) % sw;
                    let base = ((c * sh + a) * sw + b) * plane + i * wq;
                    let s0 = base + (first + gm.pad_left) / sw;
                    let dst = dst.get_mut(first..).unwrap_or(&mut []);
                    for (d, s) in dst.iter_mut().step_by(sw).zip(&xq[s0..]) {
                        *d += *s;
                    }
                }
            }
        }
    }
}

/// `xq[e + i] = src[2*i]` and `xq[o + i] = src[2*i + 1]`: a row split into
/// its two stride-2 phases (the runs must not overlap).
///
/// # Panics
/// When a run does not fit in `xq`.
pub(super) fn deinterleave2(src: &[f32], xq: &mut [f32], e: usize, o: usize) {
    let (ne, no) = (src.len().div_ceil(2), src.len() / 2);
    assert!(e + ne <= xq.len() && o + no <= xq.len());
    assert!(e + ne <= o || o + no <= e, "deinterleave2: runs overlap");
    #[allow(unused_mut)]
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::simd::active() == crate::kernels::SimdFamily::Avx512 {
        // SAFETY: AVX-512F is available (the active family); bounds were
        // asserted above and the runs are disjoint.
        done = unsafe { deinterleave2_avx512(src, xq.as_mut_ptr(), e, o) };
    }
    for j in done..ne {
        xq[e + j] = src[2 * j];
    }
    for j in done..no {
        xq[o + j] = src[2 * j + 1];
    }
}

/// The AVX-512 part of [`deinterleave2`]: whole groups of 32 source floats
/// (two permutes each); returns how many of each phase it wrote.
///
/// # Safety
/// AVX-512F; `xq + e` and `xq + o` writable for `src.len() / 2` floats each,
/// disjoint.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn deinterleave2_avx512(src: &[f32], xq: *mut f32, e: usize, o: usize) -> usize {
    use std::arch::x86_64::*;
    let groups = src.len() / 32;
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for g in 0..groups {
        // SAFETY: floats `32g .. 32g + 32` of `src` exist; 16 floats at
        // `e + 16g` and `o + 16g` are within the runs the caller vouched for.
        unsafe {
            let lo = _mm512_loadu_ps(src.as_ptr().add(32 * g));
            let hi = _mm512_loadu_ps(src.as_ptr().add(32 * g + 16));
            _mm512_storeu_ps(xq.add(e + 16 * g), _mm512_permutex2var_ps(lo, even, hi));
            _mm512_storeu_ps(xq.add(o + 16 * g), _mm512_permutex2var_ps(lo, odd, hi));
        }
    }
    // The last `r < 32` floats the same way, through masks (a 56-wide row
    // is one group and 24 floats, which a scalar tail took longer to copy
    // than the group).
    let r = src.len() - 32 * groups;
    if r > 0 {
        let (ne, no) = (r.div_ceil(2), r / 2);
        // SAFETY: the masked loads read only floats `32*groups .. len` of
        // `src` (masked-off lanes are not accessed); the masked stores write
        // `ne` / `no` floats at `e + 16*groups` / `o + 16*groups`, the ends
        // of the runs the caller vouched for.
        unsafe {
            let base = src.as_ptr().add(32 * groups);
            let lo = _mm512_maskz_loadu_ps(mask16(r.min(16)), base);
            let hi = _mm512_maskz_loadu_ps(mask16(r.saturating_sub(16)), base.add(16));
            let (pe, po) = (
                _mm512_permutex2var_ps(lo, even, hi),
                _mm512_permutex2var_ps(lo, odd, hi),
            );
            _mm512_mask_storeu_ps(xq.add(e + 16 * groups), mask16(ne), pe);
            _mm512_mask_storeu_ps(xq.add(o + 16 * groups), mask16(no), po);
        }
    }
    src.len().div_ceil(2)
}

/// The first `n <= 16` lanes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn mask16(n: usize) -> u16 {
    ((1u32 << n) - 1) as u16
}

/// `dst[2*i] += xq[e + i]` and `dst[2*i + 1] += xq[o + i]`: the adjoint of
/// [`deinterleave2`].
///
/// # Panics
/// When a run does not fit in `xq`.
pub(super) fn interleave2_add(xq: &[f32], e: usize, o: usize, dst: &mut [f32]) {
    let (ne, no) = (dst.len().div_ceil(2), dst.len() / 2);
    assert!(e + ne <= xq.len() && o + no <= xq.len());
    #[allow(unused_mut)]
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::simd::active() == crate::kernels::SimdFamily::Avx512 {
        // SAFETY: AVX-512F is available (the active family); bounds were
        // asserted above.
        done = unsafe { interleave2_add_avx512(xq, e, o, dst) };
    }
    for j in done..ne {
        dst[2 * j] += xq[e + j];
    }
    for j in done..no {
        dst[2 * j + 1] += xq[o + j];
    }
}

/// The AVX-512 part of [`interleave2_add`]: whole groups of 32 `dst` floats;
/// returns how many of each phase it consumed.
///
/// # Safety
/// AVX-512F; `xq` holds `dst.len() / 2` floats from `e` and from `o`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn interleave2_add_avx512(xq: &[f32], e: usize, o: usize, dst: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    let groups = dst.len() / 32;
    // Lanes of (evens, odds) in output order: e0 o0 e1 o1 ...
    let lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    for g in 0..groups {
        // SAFETY: 16 floats at `e + 16g` and `o + 16g` lie inside `xq`
        // (caller); floats `32g .. 32g + 32` of `dst` exist.
        unsafe {
            let ev = _mm512_loadu_ps(xq.as_ptr().add(e + 16 * g));
            let od = _mm512_loadu_ps(xq.as_ptr().add(o + 16 * g));
            let d = dst.as_mut_ptr().add(32 * g);
            let a = _mm512_add_ps(_mm512_loadu_ps(d), _mm512_permutex2var_ps(ev, lo, od));
            let b = _mm512_add_ps(
                _mm512_loadu_ps(d.add(16)),
                _mm512_permutex2var_ps(ev, hi, od),
            );
            _mm512_storeu_ps(d, a);
            _mm512_storeu_ps(d.add(16), b);
        }
    }
    // The last `r < 32` floats of `dst` through masks.
    let r = dst.len() - 32 * groups;
    if r > 0 {
        let (ne, no) = (r.div_ceil(2), r / 2);
        // SAFETY: the masked loads read `ne` / `no` floats at the ends of
        // the runs in `xq` (caller) and floats `32*groups .. len` of `dst`;
        // the masked stores write only the latter.
        unsafe {
            let ev = _mm512_maskz_loadu_ps(mask16(ne), xq.as_ptr().add(e + 16 * groups));
            let od = _mm512_maskz_loadu_ps(mask16(no), xq.as_ptr().add(o + 16 * groups));
            let d = dst.as_mut_ptr().add(32 * groups);
            let (m0, m1) = (mask16(r.min(16)), mask16(r.saturating_sub(16)));
            let a = _mm512_add_ps(
                _mm512_maskz_loadu_ps(m0, d),
                _mm512_permutex2var_ps(ev, lo, od),
            );
            let b = _mm512_add_ps(
                _mm512_maskz_loadu_ps(m1, d.add(16)),
                _mm512_permutex2var_ps(ev, hi, od),
            );
            _mm512_mask_storeu_ps(d, m0, a);
            _mm512_mask_storeu_ps(d.add(16), m1, b);
        }
    }
    dst.len().div_ceil(2)
}

impl WideGeom {
    /// Fraction of junk columns on the grid: `wq / w_out - 1`.
    pub(crate) fn waste(&self, gm: &Conv2dGeom) -> f64 {
        self.wq as f64 / gm.w_out.max(1) as f64 - 1.0
    }

    /// Grid columns rounded up to the direct kernels' block, and the
    /// length `xq` needs for them.
    pub(crate) fn direct_sizes(&self) -> (usize, usize) {
        let n = self.n_wide.next_multiple_of(super::direct::JB);
        let max_off = self.offsets.iter().copied().max().unwrap_or(0);
        (n, self.xq_len.max(max_off + n))
    }

    /// The layout of `dy` and of the gradient buffer for the direct input
    /// gradient (see [`super::direct::Gather`]).
    pub(crate) fn gather(&self, gm: &Conv2dGeom) -> super::direct::Gather {
        use super::direct::{rows_kernel_takes, Gather, RowsGeom, JB};
        let taps = gm.k_h * gm.k_w;
        let cs = gm.stride_h * gm.stride_w * self.hq * self.wq;
        let front = self.offsets[..taps].iter().copied().max().unwrap_or(0);
        let rows = (gm.stride_h == 1
            && gm.stride_w == 1
            && gm.dil_h == 1
            && gm.dil_w == 1
            && rows_kernel_takes(gm.k_h, gm.k_w)
            && (self.wq.next_multiple_of(16) as f64) <= self.wq as f64 * (1.0 + MAX_WASTE))
            .then_some(RowsGeom {
                k_h: gm.k_h,
                k_w: gm.k_w,
                wq: self.wq,
                hq: self.hq,
            });
        let nq = rows
            .as_ref()
            .map_or(0, RowsGeom::reach)
            .max(cs.next_multiple_of(JB));
        Gather {
            front,
            // Reads reach `front + nq` (the row kernel: its farthest tap is
            // `front` past its position), and the data must fit.
            row: front + nq.max(self.n_wide),
            cs,
            taps,
            nq,
            rows,
        }
    }

    /// The grid of the direct weight gradient's row kernel (see
    /// [`super::direct::DwRows`]): stride 1, no dilation, a kernel height
    /// it takes, and rows whose rounding to 16 lanes wastes little.
    pub(crate) fn dw_rows(&self, gm: &Conv2dGeom) -> Option<super::direct::DwRows> {
        let wq2 = self.wq.next_multiple_of(16);
        let fits = gm.stride_h == 1
            && gm.stride_w == 1
            && gm.dil_h == 1
            && gm.dil_w == 1
            && super::direct::rows_kernel_takes(gm.k_h, gm.k_w)
            && wq2 as f64 <= gm.w_out as f64 * (1.0 + MAX_WASTE) + 16.0 * MAX_WASTE;
        fits.then(|| super::direct::DwRows {
            k_h: gm.k_h,
            k_w: gm.k_w,
            wq: self.wq,
            wq2,
            cs: self.hq * self.wq,
            t_rows: gm.h_out + gm.k_h - 1,
        })
    }

    /// `dst [c_out_g, row]`: `dy [c_out_g, h_out, w_out]` with each
    /// channel's output rows `stride` floats apart after `front` zeros;
    /// the columns past `w_out` and the rest of the row zero. The direct
    /// kernels' copies of `dy`: the forward-shaped grid (`front` 0, `stride`
    /// `wq`), the input gradient's gather layout (`front` its largest tap
    /// offset) and the weight gradient's rows rounded to 16 (`stride` `wq2`).
    pub(crate) fn widen_dy(
        gm: &Conv2dGeom,
        dy: &[f32],
        (row, front, stride): (usize, usize, usize),
        dst: &mut [f32],
    ) {
        let w_out = gm.w_out;
        // Compiled for the active family: row copies of a few dozen floats
        // would each be a `memcpy` call otherwise.
        crate::kernels::simd::wide(
            #[inline(always)]
            || {
                for (drow, srow) in dst.chunks_exact_mut(row).zip(dy.chunks_exact(gm.hw_out())) {
                    let (head, data) = drow.split_at_mut(front);
                    head.fill(0.0);
                    let (grid, tail) = data.split_at_mut(gm.h_out * stride);
                    for (d, s) in grid.chunks_exact_mut(stride).zip(srow.chunks_exact(w_out)) {
                        let (d, junk) = d.split_at_mut(w_out);
                        for (d, s) in d.iter_mut().zip(s) {
                            *d = *s;
                        }
                        junk.fill(0.0);
                    }
                    tail.fill(0.0);
                }
            },
        );
    }

    /// Floats of the direct input gradient's buffer.
    pub(crate) fn gather_out_len(gm: &Conv2dGeom, g: &super::direct::Gather) -> usize {
        (gm.c_in_g - 1) * g.cs + g.nq
    }
}

/// Copies `N` floats (a compile-time width, so it becomes a few vector
/// moves).
#[inline(always)]
fn copy_n<const N: usize>(src: &[f32], dst: &mut [f32]) {
    let s: &[f32; N] = src[..N].try_into().expect("N floats");
    let d: &mut [f32; N] = (&mut dst[..N]).try_into().expect("N floats");
    *d = *s;
}

/// The column matrix `[K, cols]` over the *valid* outputs (columns
/// `col0..col0+cols` of `h_out x w_out`, no junk columns), packed from the
/// same buffer: a panel row is the run of the grid from its first column,
/// patched where the panel crosses the end of an output row. So the GEMM
/// writes the output directly, with no wide result buffer to copy out.
/// `xq` must extend [`SLACK`] floats past the grid.
pub(crate) struct ValidCols<'a> {
    pub xq: &'a [f32],
    pub offsets: &'a [usize],
    pub col0: usize,
    pub cols: usize,
    pub w_out: usize,
    pub wq: usize,
}

/// Floats past `max_off + n_wide` that [`ValidCols`] may read (junk that is
/// overwritten or dropped).
pub(crate) const SLACK: usize = 64;

/// Most pieces one panel row of [`ValidCols`] may need (a panel of 32
/// columns over outputs rows of width 1).
const MAX_PIECES: usize = 64;

impl ValidCols<'_> {
    /// Grid position of valid column `j`.
    #[inline]
    fn grid(&self, j: usize) -> usize {
        (j / self.w_out) * self.wq + j % self.w_out
    }

    fn pack_n<const N: usize>(&self, p0: usize, kc: usize, j0: usize, nc: usize, dst: &mut [f32]) {
        let offs = &self.offsets[p0..p0 + kc];
        // (destination offset, grid position, length) of each piece after
        // the first, which starts at 0.
        let mut pieces = [(0usize, 0usize, 0usize); MAX_PIECES];
        for (q, panel) in dst.chunks_exact_mut(N * kc).enumerate() {
            let j = self.col0 + j0 + q * N;
            let cols = N.min(nc - q * N);
            let g0 = self.grid(j);
            // The first piece runs to the end of its output row.
            let first = (self.w_out - j % self.w_out).min(cols);
            let mut np = 0;
            let mut d = first;
            while d < cols {
                let len = self.w_out.min(cols - d);
                pieces[np] = (d, self.grid(j + d), len);
                np += 1;
                d += len;
            }
            let pieces = &pieces[..np];
            for (out, &o) in panel.chunks_exact_mut(N).zip(offs) {
                let out: &mut [f32; N] = out.try_into().expect("N floats");
                // One fixed-width copy from the first column (what lies past
                // the row end is junk from the grid), then the patches.
                copy_n::<N>(&self.xq[o + g0..], out);
                for &(d, g, len) in pieces {
                    out[d..d + len].copy_from_slice(&self.xq[o + g..o + g + len]);
                }
                if cols < N {
                    out[cols..].fill(0.0);
                }
            }
        }
    }
}

impl ValidCols<'_> {
    /// [`ValidCols::pack_n`] for 32-column panels with AVX-512 when output
    /// rows are at least 32 wide, so a panel touches at most two rows: per
    /// packed row, two loads from the first row's run, two from the next
    /// row's run shifted to line up, one masked blend per half.
    ///
    /// # Safety
    /// The CPU supports AVX-512F.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn pack32_avx512(&self, p0: usize, kc: usize, j0: usize, nc: usize, dst: &mut [f32]) {
        use std::arch::x86_64::*;
        const N: usize = 32;
        debug_assert!(self.w_out >= N);
        let offs = &self.offsets[p0..p0 + kc];
        let max_off = offs.iter().copied().max().unwrap_or(0);
        for (q, panel) in dst.chunks_exact_mut(N * kc).enumerate() {
            let j = self.col0 + j0 + q * N;
            let cols = N.min(nc - q * N);
            let g0 = self.grid(j);
            let first = (self.w_out - j % self.w_out).min(cols);
            // Lanes `first..cols` come from the next output row, whose run
            // starts `first` floats before its grid position `g1 - first`;
            // lanes from `cols` on are zero.
            let g1 = if first < cols {
                self.grid(j + first)
            } else {
                g0 + first
            };
            let shift = g1 - first;
            let keep = if first >= 32 {
                u32::MAX
            } else {
                (1u32 << first) - 1
            };
            let valid = if cols >= 32 {
                u32::MAX
            } else {
                (1u32 << cols) - 1
            };
            let (k_lo, k_hi) = ((keep & 0xffff) as u16, (keep >> 16) as u16);
            let (v_lo, v_hi) = ((valid & 0xffff) as u16, (valid >> 16) as u16);
            // Every load below reads `[o + g0, o + g0 + 32)` or
            // `[o + shift, o + shift + 32)` with `o <= max_off`.
            assert!(max_off + g0.max(shift) + N <= self.xq.len());
            let base = self.xq.as_ptr();
            for (out, &o) in panel.chunks_exact_mut(N).zip(offs) {
                // SAFETY: the loads lie inside `xq` (asserted above); the
                // stores write the 32 floats of `out`.
                unsafe {
                    let a = base.add(o + g0);
                    let b = base.add(o + shift);
                    let lo = _mm512_mask_blend_ps(k_lo, _mm512_loadu_ps(b), _mm512_loadu_ps(a));
                    let hi = _mm512_mask_blend_ps(
                        k_hi,
                        _mm512_loadu_ps(b.add(16)),
                        _mm512_loadu_ps(a.add(16)),
                    );
                    let d = out.as_mut_ptr();
                    _mm512_storeu_ps(d, _mm512_maskz_mov_ps(v_lo, lo));
                    _mm512_storeu_ps(d.add(16), _mm512_maskz_mov_ps(v_hi, hi));
                }
            }
        }
    }
}

impl PackB for ValidCols<'_> {
    fn rows(&self) -> usize {
        self.offsets.len()
    }
    fn cols(&self) -> usize {
        self.cols
    }
    fn pack(&self, p0: usize, kc: usize, j0: usize, nc: usize, nr: usize, dst: &mut [f32]) {
        match nr {
            #[cfg(target_arch = "x86_64")]
            32 if self.w_out >= 32 && std::arch::is_x86_feature_detected!("avx512f") => {
                // SAFETY: AVX-512F is available (checked just above).
                unsafe { self.pack32_avx512(p0, kc, j0, nc, dst) }
            }
            32 => self.pack_n::<32>(p0, kc, j0, nc, dst),
            16 => self.pack_n::<16>(p0, kc, j0, nc, dst),
            _ => {
                let offs = &self.offsets[p0..p0 + kc];
                for (q, panel) in dst.chunks_exact_mut(nr * kc).enumerate() {
                    let j = self.col0 + j0 + q * nr;
                    let cols = nr.min(nc - q * nr);
                    for (out, &o) in panel.chunks_exact_mut(nr).zip(offs) {
                        for (t, v) in out.iter_mut().enumerate() {
                            *v = if t < cols {
                                self.xq[o + self.grid(j + t)]
                            } else {
                                0.0
                            };
                        }
                    }
                }
            }
        }
    }
    fn fused(&self) -> Option<FusedSrc<'_>> {
        // Column `j` sits at grid position `(j / w_out) * wq + j % w_out`.
        Some(FusedSrc {
            data: self.xq,
            rows: RowOffsets::Table(self.offsets),
            col0: self.col0,
            run: self.w_out,
            pitch: self.wq,
        })
    }
}

/// The transpose of [`ValidCols`]: `[cols, K]` over the valid outputs
/// `col0..col0+cols` (no junk rows), for the weight gradient
/// `dW = dy · col^T` straight from `dy` (no widened copy, no junk flops).
/// `xq` must extend [`SLACK`] floats past the grid.
pub(crate) struct ValidColsT<'a> {
    pub xq: &'a [f32],
    pub offsets: &'a [usize],
    pub col0: usize,
    pub cols: usize,
    pub w_out: usize,
    pub wq: usize,
}

impl ValidColsT<'_> {
    /// Grid position of valid column `j`.
    #[inline]
    fn grid(&self, j: usize) -> usize {
        (j / self.w_out) * self.wq + j % self.w_out
    }

    /// Portable packing: `dst[p*nr + t] = xq[off[j0+t] + grid(col0+p0+p)]`.
    fn pack_any(&self, p0: usize, kc: usize, j0: usize, nc: usize, nr: usize, dst: &mut [f32]) {
        let start = self.col0 + p0;
        for (q, panel) in dst.chunks_exact_mut(nr * kc).enumerate() {
            let taps = nr.min(nc - q * nr);
            let offs = &self.offsets[j0 + q * nr..j0 + q * nr + taps];
            let (mut row, mut ow) = (start / self.w_out, start % self.w_out);
            for out in panel.chunks_exact_mut(nr) {
                let g = row * self.wq + ow;
                for (o, &off) in out.iter_mut().zip(offs) {
                    *o = self.xq[off + g];
                }
                out[taps..].fill(0.0);
                ow += 1;
                if ow == self.w_out {
                    ow = 0;
                    row += 1;
                }
            }
        }
    }

    /// 32-tap panels with AVX-512 when output rows are at least 16 wide:
    /// per block of 16 valid positions and 16 taps, 16 loads (each a run of
    /// the image, blended with the next row's run where the block crosses a
    /// row end) and one 16 x 16 register transpose.
    ///
    /// # Safety
    /// The CPU supports AVX-512F.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn pack32_avx512(&self, p0: usize, kc: usize, j0: usize, nc: usize, dst: &mut [f32]) {
        use std::arch::x86_64::*;
        const N: usize = 32;
        debug_assert!(self.w_out >= 16);
        let start = self.col0 + p0;
        let max_off = self.offsets.iter().copied().max().unwrap_or(0);
        let xq = self.xq.as_ptr();
        for (q, panel) in dst.chunks_exact_mut(N * kc).enumerate() {
            let taps = N.min(nc - q * N);
            let offs = &self.offsets[j0 + q * N..j0 + q * N + taps];
            let full = kc / 16 * 16;
            for pb in (0..full).step_by(16) {
                let j = start + pb;
                let g0 = self.grid(j);
                let first = (self.w_out - j % self.w_out).min(16);
                let shift = if first < 16 {
                    self.grid(j + first) - first
                } else {
                    g0
                };
                let keep = mask16(first);
                assert!(max_off + g0.max(shift) + 16 <= self.xq.len());
                for half in 0..2 {
                    let t0 = half * 16;
                    let mut r = [_mm512_setzero_ps(); 16];
                    for (i, v) in r.iter_mut().enumerate() {
                        if let Some(&off) = offs.get(t0 + i) {
                            // SAFETY: `off + g0 + 16` and `off + shift + 16`
                            // are within `xq` (asserted above).
                            unsafe {
                                let a = _mm512_loadu_ps(xq.add(off + g0));
                                let b = _mm512_loadu_ps(xq.add(off + shift));
                                *v = _mm512_mask_blend_ps(keep, b, a);
                            }
                        }
                    }
                    let t = crate::kernels::transpose::transpose16(r);
                    for (p, v) in t.iter().enumerate() {
                        // SAFETY: row `pb + p < kc` of the panel, lanes
                        // `t0..t0+16 <= N`.
                        unsafe { _mm512_storeu_ps(panel.as_mut_ptr().add((pb + p) * N + t0), *v) };
                    }
                }
            }
            // Leftover positions (fewer than 16), one by one.
            let (mut row, mut ow) = ((start + full) / self.w_out, (start + full) % self.w_out);
            for out in panel.chunks_exact_mut(N).skip(full) {
                let g = row * self.wq + ow;
                for (o, &off) in out.iter_mut().zip(offs) {
                    *o = self.xq[off + g];
                }
                out[taps..].fill(0.0);
                ow += 1;
                if ow == self.w_out {
                    ow = 0;
                    row += 1;
                }
            }
        }
    }
}

impl PackB for ValidColsT<'_> {
    fn rows(&self) -> usize {
        self.cols
    }
    fn cols(&self) -> usize {
        self.offsets.len()
    }
    fn pack(&self, p0: usize, kc: usize, j0: usize, nc: usize, nr: usize, dst: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if nr == 32 && self.w_out >= 16 && std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F is available (checked just above).
            return unsafe { self.pack32_avx512(p0, kc, j0, nc, dst) };
        }
        self.pack_any(p0, kc, j0, nc, nr, dst)
    }
}
