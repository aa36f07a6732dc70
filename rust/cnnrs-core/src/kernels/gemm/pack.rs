//! Packing of the GEMM's operands into the panels the micro-kernels read,
//! and prefetching of the blocks about to be packed.

use super::{MatRef, MicroKernel};

/// Contiguous runs of floats, `count` of them, `len` long, `stride` apart,
/// starting at `base`: the memory of a block of a strided matrix. Only
/// ever prefetched (the pointers are never dereferenced).
#[derive(Clone, Copy)]
pub(super) struct Segments {
    pub base: *const f32,
    pub count: usize,
    pub stride: usize,
    pub len: usize,
}

impl Segments {
    /// Part `i` of `parts` (whole segments).
    pub(super) fn part(self, i: usize, parts: usize) -> Segments {
        let per = self.count.div_ceil(parts.max(1));
        let first = (i * per).min(self.count);
        Segments {
            base: self.base.wrapping_add(first * self.stride),
            count: per.min(self.count - first),
            ..self
        }
    }
    /// Prefetches towards L2 the lines of segments `from..to` (by index).
    pub(super) fn prefetch(&self, from: usize, to: usize) {
        for s in from..to.min(self.count) {
            let row = self.base.wrapping_add(s * self.stride);
            for off in (0..self.len).step_by(16) {
                prefetch_l2(row.wrapping_add(off));
            }
            prefetch_l2(row.wrapping_add(self.len.saturating_sub(1)));
        }
    }
}

/// Hints the CPU to bring the cache line holding `p` towards L2. Never
/// faults, for any address; a no-op off x86-64.
#[inline(always)]
pub(super) fn prefetch_l2(p: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch has no architectural effect and does not fault on
    // any address; SSE is baseline on x86-64.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        _mm_prefetch::<_MM_HINT_T1>(p.cast::<i8>())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Packs `A[i0..i0+mc, p0..p0+kc]` into `ceil(mc/MR)` panels of `MR` rows:
/// panel `q` holds, for each `p`, the `MR` values `A[i0+q*MR+r, p0+p]`;
/// rows past `mc` are zero. Generic over the kernel so `MR` is a constant
/// and the inner loops unroll.
pub(super) fn pack_a<K: MicroKernel>(
    a: &MatRef,
    i0: usize,
    mc: usize,
    p0: usize,
    kc: usize,
    dst: &mut [f32],
) {
    let mr = K::MR;
    let panels = mc.div_ceil(mr);
    for q in 0..panels {
        let rows = mr.min(mc - q * mr);
        let panel = &mut dst[q * mr * kc..(q + 1) * mr * kc];
        let base = (i0 + q * mr) * a.rs + p0 * a.cs;
        if a.rs == 1 && rows == mr {
            // Column-major A (e.g. a transposed row-major matrix): each
            // step of k is `MR` consecutive floats.
            for (p, out) in panel.chunks_exact_mut(mr).enumerate() {
                let s = base + p * a.cs;
                out.copy_from_slice(&a.data[s..s + mr]);
            }
        } else if a.cs == 1 && rows == mr {
            // Row-major A: read the `MR` rows side by side, write each step
            // of k as one contiguous group of `MR`.
            let src = &a.data[base..base + (mr - 1) * a.rs + kc];
            pack_rows_interleaved(src, a.rs, mr, kc, panel);
        } else {
            if rows < mr {
                panel.fill(0.0);
            }
            for r in 0..rows {
                let s = base + r * a.rs;
                for p in 0..kc {
                    panel[p * mr + r] = a.data[s + p * a.cs];
                }
            }
        }
    }
}

/// Interleaves `rows` rows of `src` (row `r` at `src[r*rs..r*rs+kc]`) into
/// `dst[p*rows + r]`: the packed-panel layout, i.e. a transpose of a
/// `rows x kc` block. On x86-64 it moves 4 x 4 blocks through SSE registers
/// (SSE2 is baseline there); leftover rows and columns go one by one.
pub(super) fn pack_rows_interleaved(
    src: &[f32],
    rs: usize,
    rows: usize,
    kc: usize,
    dst: &mut [f32],
) {
    assert!(rows >= 1 && src.len() >= (rows - 1) * rs + kc && dst.len() >= rows * kc);
    #[cfg(target_arch = "x86_64")]
    if rows == 8 && kc >= 16 && std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F is available (checked just above).
        let done = unsafe { crate::kernels::transpose::interleave8(src, rs, kc, dst) };
        for p in done..kc {
            for r in 0..8 {
                dst[p * 8 + r] = src[r * rs + p];
            }
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    let p_done = {
        use std::arch::x86_64::*;
        let (r4, p4) = (rows / 4 * 4, kc / 4 * 4);
        for p in (0..p4).step_by(4) {
            for g in (0..r4).step_by(4) {
                // SAFETY: rows `g..g+4 <= rows` and columns `p..p+4 <= kc`
                // of the block lie inside `src` (asserted above); the four
                // destination groups `(p+j)*rows + g .. +4` lie inside `dst`
                // (`(p+3)*rows + g + 4 <= kc*rows`). Unaligned SSE loads and
                // stores need no alignment; SSE2 is part of x86-64.
                unsafe {
                    let s = src.as_ptr().add(g * rs + p);
                    let x0 = _mm_loadu_ps(s);
                    let x1 = _mm_loadu_ps(s.add(rs));
                    let x2 = _mm_loadu_ps(s.add(2 * rs));
                    let x3 = _mm_loadu_ps(s.add(3 * rs));
                    // 4 x 4 transpose: t = row pairs interleaved, then halves.
                    let t0 = _mm_unpacklo_ps(x0, x1);
                    let t1 = _mm_unpacklo_ps(x2, x3);
                    let t2 = _mm_unpackhi_ps(x0, x1);
                    let t3 = _mm_unpackhi_ps(x2, x3);
                    let d = dst.as_mut_ptr().add(p * rows + g);
                    _mm_storeu_ps(d, _mm_movelh_ps(t0, t1));
                    _mm_storeu_ps(d.add(rows), _mm_movehl_ps(t1, t0));
                    _mm_storeu_ps(d.add(2 * rows), _mm_movelh_ps(t2, t3));
                    _mm_storeu_ps(d.add(3 * rows), _mm_movehl_ps(t3, t2));
                }
            }
        }
        // Leftover rows, for the columns done above.
        for p in 0..p4 {
            for r in r4..rows {
                dst[p * rows + r] = src[r * rs + p];
            }
        }
        p4
    };
    #[cfg(not(target_arch = "x86_64"))]
    let p_done = 0;
    for p in p_done..kc {
        for r in 0..rows {
            dst[p * rows + r] = src[r * rs + p];
        }
    }
}

/// Packs `B[p0..p0+kc, j0..j0+nc]` into `ceil(nc/NR)` panels of `NR`
/// columns: panel `q` holds, for each `p`, the `NR` values
/// `B[p0+p, j0+q*NR+j]`; columns past `nc` are zero.
pub(super) fn pack_b<K: MicroKernel>(
    b: &MatRef,
    p0: usize,
    kc: usize,
    j0: usize,
    nc: usize,
    dst: &mut [f32],
) {
    let nr = K::NR;
    let panels = nc.div_ceil(nr);
    let dst = &mut dst[..panels * nr * kc];
    if b.cs == 1 {
        // Row-major B: walk each row of the block once, left to right (the
        // order the hardware prefetcher follows best), dealing `NR`-float
        // pieces out to the panels.
        let full = nc / nr;
        let tail = nc - full * nr;
        for p in 0..kc {
            let s = (p0 + p) * b.rs + j0;
            let row = &b.data[s..s + nc];
            for (q, piece) in row.chunks_exact(nr).enumerate() {
                dst[q * nr * kc + p * nr..][..nr].copy_from_slice(piece);
            }
            if tail > 0 {
                let out = &mut dst[full * nr * kc + p * nr..][..nr];
                out[..tail].copy_from_slice(&row[full * nr..]);
                out[tail..].fill(0.0);
            }
        }
        return;
    }
    for q in 0..panels {
        let cols = nr.min(nc - q * nr);
        let panel = &mut dst[q * nr * kc..(q + 1) * nr * kc];
        let base = p0 * b.rs + (j0 + q * nr) * b.cs;
        if b.rs == 1 && cols == nr {
            // Column-major B (e.g. a transposed row-major matrix): the
            // panel is a transpose of `NR` contiguous columns, done in
            // 16 x 16 (AVX-512) or 4 x 4 (SSE) register blocks.
            let last = base + (nr - 1) * b.cs + kc;
            #[cfg(target_arch = "x86_64")]
            if nr == 32 && std::arch::is_x86_feature_detected!("avx512f") {
                for t0 in (0..nr).step_by(16) {
                    // SAFETY: AVX-512F is available (checked just above).
                    unsafe {
                        crate::kernels::transpose::interleave16(
                            &b.data[..last],
                            base + t0 * b.cs,
                            b.cs,
                            kc,
                            panel,
                            nr,
                            t0,
                        )
                    };
                }
                continue;
            }
            pack_rows_interleaved(&b.data[base..last], b.cs, nr, kc, panel);
        } else {
            for (p, out) in panel.chunks_exact_mut(nr).enumerate() {
                let s = base + p * b.rs;
                for (j, o) in out.iter_mut().enumerate() {
                    *o = if j < cols { b.data[s + j * b.cs] } else { 0.0 };
                }
            }
        }
    }
}

/// [`pack_b`] with a run-time panel width (the [`PackB`] impl of
/// [`MatRef`], for callers outside the driver).
pub(super) fn pack_b_any(
    b: &MatRef,
    p0: usize,
    kc: usize,
    j0: usize,
    nc: usize,
    nr: usize,
    dst: &mut [f32],
) {
    let panels = nc.div_ceil(nr);
    for q in 0..panels {
        let cols = nr.min(nc - q * nr);
        let panel = &mut dst[q * nr * kc..(q + 1) * nr * kc];
        for (p, out) in panel.chunks_exact_mut(nr).enumerate() {
            for (j, o) in out.iter_mut().enumerate() {
                *o = if j < cols {
                    b.data[(p0 + p) * b.rs + (j0 + q * nr + j) * b.cs]
                } else {
                    0.0
                };
            }
        }
    }
}
