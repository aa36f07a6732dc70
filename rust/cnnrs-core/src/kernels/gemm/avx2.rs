//! AVX2 + FMA micro-kernel (x86-64), 6 x 16.
//!
//! Register block: 6 rows x 16 columns = 12 accumulators of 8 lanes, plus 2
//! registers for the B row and 1 for the broadcast A value: 15 of the 16 ymm
//! registers. Each step of k issues 12 FMAs against 2 loads + 6 broadcasts,
//! which keeps both FMA pipes of a Zen core busy (12 independent chains cover
//! the 4-cycle FMA latency at 2 FMAs per cycle) with load bandwidth to spare.

use super::{MicroKernel, PanelSrc, TileEpilogue};

pub(crate) struct Kernel;

const MR: usize = 6;
/// Vectors of 8 floats per tile row.
const NV: usize = 2;
const NR: usize = NV * 8;

/// Where the kernel's B comes from: the packed panel, or source rows it
/// packs as it goes (`PanelSrc`, strided or through a table; `TABLE1`: a
/// table whose panel lies in one run, so only `lo` is read).
const PLAIN: u8 = 0;
const STRIDED: u8 = 1;
const TABLE: u8 = 2;
const TABLE1: u8 = 3;

impl MicroKernel for Kernel {
    const MR: usize = MR;
    const NR: usize = NR;
    /// B micro-panel `KC*NR*4` = 16 KiB: half of a 32 KiB L1d (Zen 3; Zen 4/5
    /// have 32/48 KiB), leaving room for the streaming 6 KiB A micro-panel
    /// and the C tile. Larger KC amortises the C load/store over more FMAs.
    const KC: usize = 256;
    /// A block `MC*KC*4` = 144 KiB: under a third of a 512 KiB L2, so it
    /// survives while B micro-panels stream through L2 on their way to L1.
    const MC: usize = 144;
    /// B block `KC*NC*4` = 4 MiB: a slice of the shared L3 (32 MiB here),
    /// re-read from L3 once per A block.
    const NC: usize = 4096;

    unsafe fn tile(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        ep: &TileEpilogue,
    ) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: forwarded from the caller, who guarantees the panels, the
        // tile and AVX2+FMA support (the family is only dispatched when
        // `is_x86_feature_detected!` reports both).
        unsafe {
            tile_avx2::<PLAIN>(kc, a, b, None, std::ptr::null_mut(), c, ldc, ep)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (kc, a, b, c, ldc, ep);
            unreachable!("the avx2 family is never dispatched off x86-64")
        }
    }

    unsafe fn tile_pack(
        kc: usize,
        a: *const f32,
        src: &PanelSrc,
        b_dst: *mut f32,
        c: *mut f32,
        ldc: usize,
        ep: &TileEpilogue,
    ) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as for `tile`; the caller also guarantees the source rows
        // and the destination panel (see the trait).
        unsafe {
            if src.table.is_null() {
                tile_avx2::<STRIDED>(kc, a, src.lo, Some(src), b_dst, c, ldc, ep)
            } else if src.keep == u32::MAX {
                tile_avx2::<TABLE1>(kc, a, src.lo, Some(src), b_dst, c, ldc, ep)
            } else {
                tile_avx2::<TABLE>(kc, a, src.lo, Some(src), b_dst, c, ldc, ep)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (kc, a, src, b_dst, c, ldc, ep);
            unreachable!("the avx2 family is never dispatched off x86-64")
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_avx2<const MODE: u8>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    src: Option<&PanelSrc>,
    b_dst: *mut f32,
    c: *mut f32,
    ldc: usize,
    ep: &TileEpilogue,
) {
    use std::arch::x86_64::*;
    // Start fetching the C tile now; the k loop hides the latency.
    for r in 0..MR {
        for v in (0..NR).step_by(16) {
            // `wrapping_add`: computing the address is all a prefetch needs
            // (it never faults); the tile row is in bounds anyway.
            _mm_prefetch::<_MM_HINT_T0>(c.wrapping_add(r * ldc + v) as *const i8);
        }
    }
    let mut acc = [[_mm256_setzero_ps(); NV]; MR];
    // `STRIDED` / `TABLE`: B comes from `kc` source rows (see `PanelSrc`)
    // and is also written to `b_dst` as the packed panel the next tiles of
    // this column read. `TABLE` rows may join two runs: one blend per
    // vector, lanes whose mask sign bit is set from the first run.
    let ld = src.map_or(0, |s| s.ld);
    let (b_step, mut b_out) = if MODE == STRIDED {
        (ld, b_dst)
    } else {
        (NR, b_dst)
    };
    let (hi, table) = src.map_or((b, std::ptr::null()), |s| (s.hi, s.table));
    let keep = src.map_or(u32::MAX, |s| s.keep);
    let mut mask = [_mm256_setzero_ps(); NV];
    for (v, m) in mask.iter_mut().enumerate() {
        let bits: [i32; 8] = std::array::from_fn(|l| -(((keep >> (v * 8 + l)) & 1) as i32));
        // SAFETY: 8 readable i32s.
        *m = _mm256_castsi256_ps(unsafe { _mm256_loadu_si256(bits.as_ptr().cast()) });
    }
    let (mut a, mut b) = (a, b);
    let pf_every = ep.prefetch_every(kc);
    for k in 0..kc {
        let mut bv = [_mm256_setzero_ps(); NV];
        // SAFETY (`TABLE`): the table holds `kc` entries.
        let off = if MODE == TABLE || MODE == TABLE1 {
            unsafe { *table.add(k) }
        } else {
            0
        };
        for (v, x) in bv.iter_mut().enumerate() {
            // SAFETY: `b` walks the `kc*NR` floats of the packed B panel,
            // `NR` per step, or (`STRIDED`) `kc` source rows of `NR`
            // floats, `ld` apart; `TABLE`: row `k` of both runs, `NR`
            // floats each from `off` (the caller's contract); `v*8 + 8 <=
            // NR`.
            *x = unsafe {
                if MODE == TABLE1 {
                    _mm256_loadu_ps(b.add(off + v * 8))
                } else if MODE == TABLE {
                    let lo = _mm256_loadu_ps(b.add(off + v * 8));
                    let hi = _mm256_loadu_ps(hi.add(off + v * 8));
                    _mm256_blendv_ps(hi, lo, mask[v])
                } else {
                    _mm256_loadu_ps(b.add(v * 8))
                }
            };
            if MODE != PLAIN {
                // SAFETY: `b_out` walks the `kc*NR` floats of the panel
                // being packed, `NR` per step.
                unsafe { _mm256_storeu_ps(b_out.add(v * 8), *x) };
            }
        }
        // One source row of a panel still to be packed, towards L2 (see
        // `macro_kernel`).
        ep.prefetch_row(k, pf_every);
        for (r, row) in acc.iter_mut().enumerate() {
            // SAFETY: `a` walks the `MR*kc` floats of the packed A panel,
            // `MR` per step; `r < MR`.
            let av = _mm256_set1_ps(unsafe { *a.add(r) });
            for v in 0..NV {
                row[v] = _mm256_fmadd_ps(av, bv[v], row[v]);
            }
        }
        // SAFETY: one step along each panel; after the last step the
        // pointers are one past the end (`b`, wrapping: a source row past
        // the last) and never dereferenced. `TABLE` keeps `b` at the
        // source base.
        unsafe {
            a = a.add(MR);
            if MODE != TABLE && MODE != TABLE1 {
                b = b.wrapping_add(b_step);
            }
            if MODE != PLAIN {
                b_out = b_out.add(NR);
            }
        }
    }
    // Epilogue, one flag at a time so each loop unrolls and the tile
    // stays in registers.
    if ep.load_c {
        for (r, row) in acc.iter_mut().enumerate() {
            for (v, x) in row.iter_mut().enumerate() {
                // SAFETY: row `r < MR`, vector `v < NV` of the tile: inside
                // the `MR x NR` block at `c` with stride `ldc`.
                *x = _mm256_add_ps(*x, unsafe { _mm256_loadu_ps(c.add(r * ldc + v * 8)) });
            }
        }
    }
    if !ep.bias_row.is_null() {
        for (r, row) in acc.iter_mut().enumerate() {
            // SAFETY: a non-null `bias_row` points at `MR` floats.
            let bv = _mm256_set1_ps(unsafe { *ep.bias_row.add(r) });
            row.iter_mut().for_each(|x| *x = _mm256_add_ps(*x, bv));
        }
    }
    if !ep.bias_col.is_null() {
        let mut bc = [_mm256_setzero_ps(); NV];
        for (v, x) in bc.iter_mut().enumerate() {
            // SAFETY: a non-null `bias_col` points at `NR` floats.
            *x = unsafe { _mm256_loadu_ps(ep.bias_col.add(v * 8)) };
        }
        for row in acc.iter_mut() {
            for (x, &b) in row.iter_mut().zip(&bc) {
                *x = _mm256_add_ps(*x, b);
            }
        }
    }
    if ep.relu {
        let zero = _mm256_setzero_ps();
        acc.iter_mut()
            .flatten()
            .for_each(|x| *x = _mm256_max_ps(*x, zero));
    }
    for (r, row) in acc.iter().enumerate() {
        for (v, x) in row.iter().enumerate() {
            // SAFETY: inside the tile, as for the load above.
            unsafe { _mm256_storeu_ps(c.add(r * ldc + v * 8), *x) };
        }
    }
}
