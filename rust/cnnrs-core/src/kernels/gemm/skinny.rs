//! Skinny products, `n <= MAX_N` columns of B (AVX-512): a convolution of
//! one image on a 1x1 or 2x2 map (ResNet's last stages at batch 1), where
//! the packed path repacks the whole A (the weight, 9.4 MB for a 512-channel
//! 3x3 layer) for a handful of columns and fills `NR = 32`-column tiles
//! with 1-4 useful ones: measured, a quarter of ResNet-18's batch-1
//! inference went to packing A and most of its tile work was padding.
//!
//! Here A is read in place, row by row: B is copied once as `B^T [n, k]`
//! (through the source's own panel packing, so im2col sources work too),
//! and each element of a `4 x 4` register tile is a dot product along `k`
//! kept as 16 partial sums (24 loads per 16 FMAs at most; A streams from
//! memory, which bounds these products anyway), summed once at the end.
//! The sum order is fixed: results do not depend on threads.

use std::cell::RefCell;

use super::{avx512, BSource, GemmOpts, MatRef, MicroKernel};

/// Most columns of B this path takes.
pub(super) const MAX_N: usize = 8;
/// Rows of B packed per call of the source's packing.
const KC: usize = 512;

thread_local! {
    /// `B^T` and one packed panel.
    static BUF: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `C (m x n, stride ldc) = [C +] A · B + bias_row + bias_col`, clamped at
/// zero with `relu`: the contract of the packed driver.
///
/// # Safety
/// AVX-512F; `a` and `b` address only their slices (`check_args`), `c`
/// holds the `m x n` block at stride `ldc` and nothing else accesses it;
/// `a.cs == 1`, `b.n() <= MAX_N`, `a.cols > 0`.
pub(super) unsafe fn run<B: BSource>(a: MatRef, b: B, c: *mut f32, ldc: usize, opts: &GemmOpts) {
    let (m, k, n) = (a.rows, a.cols, b.n());
    debug_assert!(n <= MAX_N && a.cs == 1 && k > 0);
    if m == 0 || n == 0 {
        return;
    }
    let _flush = super::FlushDenormals::new();
    BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        let (bt, panel) = &mut *buf;
        bt.clear();
        bt.resize(n * k, 0.0);
        let nr = avx512::Kernel::NR;
        panel.resize(nr * KC, 0.0);
        for p0 in (0..k).step_by(KC) {
            let kc = KC.min(k - p0);
            b.pack_block::<avx512::Kernel>(p0, kc, 0, n, &mut panel[..nr * kc]);
            for (p, row) in panel[..nr * kc].chunks_exact(nr).enumerate() {
                for (j, &v) in row[..n].iter().enumerate() {
                    bt[j * k + p0 + p] = v;
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: forwarded from the caller; `bt` holds `n` rows of `k`.
        unsafe {
            kernel::run(&a, bt, n, c, ldc, opts)
        };
    });
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use super::{GemmOpts, MatRef};
    use std::arch::x86_64::*;

    /// # Safety
    /// As [`super::run`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn run(
        a: &MatRef,
        bt: &[f32],
        n: usize,
        c: *mut f32,
        ldc: usize,
        opts: &GemmOpts,
    ) {
        let (m, k) = (a.rows, a.cols);
        for i0 in (0..m).step_by(4) {
            let mr = 4.min(m - i0);
            for j0 in (0..n).step_by(4) {
                let nc = 4.min(n - j0);
                let t = Tile {
                    a: a.data[i0 * a.rs..].as_ptr(),
                    lda: a.rs,
                    b: bt[j0 * k..].as_ptr(),
                    k,
                };
                // SAFETY: rows `i0..i0+mr` of A hold `k` floats from their
                // start (`check_args`), rows `j0..j0+nc` of `bt` too.
                let sums = unsafe {
                    match (mr, nc) {
                        (4, 4) => tile::<4, 4>(&t),
                        (4, 3) => tile::<4, 3>(&t),
                        (4, 2) => tile::<4, 2>(&t),
                        (4, _) => tile::<4, 1>(&t),
                        (3, 4) => tile::<3, 4>(&t),
                        (3, 3) => tile::<3, 3>(&t),
                        (3, 2) => tile::<3, 2>(&t),
                        (3, _) => tile::<3, 1>(&t),
                        (2, 4) => tile::<2, 4>(&t),
                        (2, 3) => tile::<2, 3>(&t),
                        (2, 2) => tile::<2, 2>(&t),
                        (2, _) => tile::<2, 1>(&t),
                        (_, 4) => tile::<1, 4>(&t),
                        (_, 3) => tile::<1, 3>(&t),
                        (_, 2) => tile::<1, 2>(&t),
                        (_, _) => tile::<1, 1>(&t),
                    }
                };
                for r in 0..mr {
                    let i = i0 + r;
                    for (jj, &s) in sums[r][..nc].iter().enumerate() {
                        let j = j0 + jj;
                        // SAFETY: element `(i, j)` of the `m x n` block.
                        let cij = unsafe { &mut *c.add(i * ldc + j) };
                        let mut v = if opts.accumulate { *cij + s } else { s };
                        if let Some(br) = opts.bias_row {
                            v += br[i];
                        }
                        if let Some(bc) = opts.bias_col {
                            v += bc[j];
                        }
                        if opts.relu {
                            v = v.max(0.0);
                        }
                        *cij = v;
                    }
                }
            }
        }
    }

    struct Tile {
        a: *const f32,
        lda: usize,
        b: *const f32,
        k: usize,
    }

    /// The `R x C` dot products of rows of A and rows of `B^T`.
    ///
    /// # Safety
    /// `R` rows at `t.a` (stride `t.lda`) and `C` rows at `t.b` (stride
    /// `t.k`) hold `t.k` floats each.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn tile<const R: usize, const C: usize>(t: &Tile) -> [[f32; 4]; 4] {
        let mut acc = [[_mm512_setzero_ps(); C]; R];
        let full = t.k / 16 * 16;
        let mut p = 0;
        while p < full {
            // SAFETY: `p + 16 <= k` floats of each row.
            unsafe {
                let av: [__m512; R] =
                    std::array::from_fn(|r| _mm512_loadu_ps(t.a.add(r * t.lda + p)));
                for j in 0..C {
                    let bv = _mm512_loadu_ps(t.b.add(j * t.k + p));
                    for r in 0..R {
                        acc[r][j] = _mm512_fmadd_ps(av[r], bv, acc[r][j]);
                    }
                }
            }
            p += 16;
        }
        if p < t.k {
            let mask: __mmask16 = (1u16 << (t.k - p)) - 1;
            // SAFETY: only the `k - p` lanes inside each row are read.
            unsafe {
                let av: [__m512; R] =
                    std::array::from_fn(|r| _mm512_maskz_loadu_ps(mask, t.a.add(r * t.lda + p)));
                for j in 0..C {
                    let bv = _mm512_maskz_loadu_ps(mask, t.b.add(j * t.k + p));
                    for r in 0..R {
                        acc[r][j] = _mm512_fmadd_ps(av[r], bv, acc[r][j]);
                    }
                }
            }
        }
        let mut out = [[0.0f32; 4]; 4];
        for (o, row) in out.iter_mut().zip(&acc) {
            for (x, v) in o.iter_mut().zip(row) {
                *x = _mm512_reduce_add_ps(*v);
            }
        }
        out
    }
}
