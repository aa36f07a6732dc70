//! AVX-512F micro-kernel (x86-64), 8 x 32.
//!
//! Register block: 8 rows x 32 columns = 16 accumulators of 16 lanes, plus 2
//! registers for the B row and 1 for the broadcast A value. Each step of k
//! issues 16 FMAs against 2 loads + 8 broadcasts; 16 independent chains cover
//! the 4-cycle FMA latency at 2 FMAs per cycle.
//!
//! Why 8 x 32 and not the larger 12 x 32 or 8 x 48 (which fit 32 registers
//! too): measured on Zen 5, one thread, GFLOP/s (median of the better of two
//! runs; peak ~270):
//!
//! ```text
//! m x n x k          12x32   8x32   8x48
//! 1024^3               222    235    230
//! 256^3                235    247    217
//! 64 x 3136 x 576      170    184    200   conv3x3 56x56 (one image)
//! 64 x 3136 x 256      170    179    195   conv1x1
//! 64 x 12544 x 147     176    187    208   conv7x7 s2, 3 input channels
//! 128 x 784 x 1152     216    220    213
//! 512 x 49 x 4608      136    141     96   7x7 maps: 48 columns waste half
//! ```
//!
//! MR = 8 divides the usual channel counts (M = output channels in a conv
//! forward), where 12 pads 64 rows to 72; NR = 32 wastes less than 48 on
//! small spatial sizes.

use super::{MicroKernel, PanelSrc, TileEpilogue};

pub(crate) struct Kernel;

const MR: usize = 8;
/// Vectors of 16 floats per tile row.
const NV: usize = 2;
const NR: usize = NV * 16;

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
    /// B micro-panel `KC*NR*4` = 32 KiB, reused from L1 by every A
    /// micro-panel of the block: two thirds of Zen 5's 48 KiB L1d (Intel
    /// since Ice Lake: 48 KiB too). Measured on Zen 5: KC = 256 and 384 tie,
    /// 192 is 0-7% slower (more C-tile loads and stores per FMA). On a
    /// 32 KiB-L1 part (Zen 4, Skylake-X) 192 would keep the panel to 24 KiB.
    const KC: usize = 256;
    /// A block `MC*KC*4` = 192 KiB: under half of a 512 KiB L2 (Zen 4/5 have
    /// 1 MiB), so it stays while B micro-panels stream past it. MC = 48..288
    /// measured within noise of each other here.
    const MC: usize = 192;
    /// B block `KC*NC*4` = 4 MiB: a slice of the shared L3 (32 MiB here).
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
        // tile and AVX-512F support (the family is only dispatched when
        // `is_x86_feature_detected!("avx512f")` reports it).
        unsafe {
            tile_avx512::<PLAIN>(kc, a, b, None, std::ptr::null_mut(), c, ldc, ep)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (kc, a, b, c, ldc, ep);
            unreachable!("the avx512 family is never dispatched off x86-64")
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
                tile_avx512::<STRIDED>(kc, a, src.lo, Some(src), b_dst, c, ldc, ep)
            } else if src.keep == u32::MAX {
                tile_avx512::<TABLE1>(kc, a, src.lo, Some(src), b_dst, c, ldc, ep)
            } else {
                tile_avx512::<TABLE>(kc, a, src.lo, Some(src), b_dst, c, ldc, ep)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (kc, a, src, b_dst, c, ldc, ep);
            unreachable!("the avx512 family is never dispatched off x86-64")
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_avx512<const MODE: u8>(
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
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
    // `STRIDED` / `TABLE`: B comes from `kc` source rows (see `PanelSrc`)
    // and is also written to `b_dst` as the packed panel the next tiles of
    // this column read. `TABLE` rows may join two runs: one masked blend
    // per vector.
    let ld = src.map_or(0, |s| s.ld);
    let (b_step, mut b_out) = if MODE == STRIDED {
        (ld, b_dst)
    } else {
        (NR, b_dst)
    };
    let (hi, table) = src.map_or((b, std::ptr::null()), |s| (s.hi, s.table));
    let keep = src.map_or(u32::MAX, |s| s.keep);
    let keep = [keep as u16, (keep >> 16) as u16];
    let (mut a, mut b) = (a, b);
    let pf_every = ep.prefetch_every(kc);
    for k in 0..kc {
        let mut bv = [_mm512_setzero_ps(); NV];
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
            // floats each from `off` (the caller's contract); `v*16 + 16 <=
            // NR`.
            *x = unsafe {
                if MODE == TABLE1 {
                    _mm512_loadu_ps(b.add(off + v * 16))
                } else if MODE == TABLE {
                    let lo = _mm512_loadu_ps(b.add(off + v * 16));
                    let hi = _mm512_loadu_ps(hi.add(off + v * 16));
                    _mm512_mask_blend_ps(keep[v], hi, lo)
                } else {
                    _mm512_loadu_ps(b.add(v * 16))
                }
            };
            if MODE != PLAIN {
                // SAFETY: `b_out` walks the `kc*NR` floats of the panel
                // being packed, `NR` per step.
                unsafe { _mm512_storeu_ps(b_out.add(v * 16), *x) };
            }
        }
        // One source row of a panel still to be packed, towards L2 (see
        // `macro_kernel`).
        ep.prefetch_row(k, pf_every);
        for (r, row) in acc.iter_mut().enumerate() {
            // SAFETY: `a` walks the `MR*kc` floats of the packed A panel,
            // `MR` per step; `r < MR`.
            let av = _mm512_set1_ps(unsafe { *a.add(r) });
            for v in 0..NV {
                row[v] = _mm512_fmadd_ps(av, bv[v], row[v]);
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
                *x = _mm512_add_ps(*x, unsafe { _mm512_loadu_ps(c.add(r * ldc + v * 16)) });
            }
        }
    }
    if !ep.bias_row.is_null() {
        for (r, row) in acc.iter_mut().enumerate() {
            // SAFETY: a non-null `bias_row` points at `MR` floats.
            let bv = _mm512_set1_ps(unsafe { *ep.bias_row.add(r) });
            row.iter_mut().for_each(|x| *x = _mm512_add_ps(*x, bv));
        }
    }
    if !ep.bias_col.is_null() {
        let mut bc = [_mm512_setzero_ps(); NV];
        for (v, x) in bc.iter_mut().enumerate() {
            // SAFETY: a non-null `bias_col` points at `NR` floats.
            *x = unsafe { _mm512_loadu_ps(ep.bias_col.add(v * 16)) };
        }
        for row in acc.iter_mut() {
            for (x, &b) in row.iter_mut().zip(&bc) {
                *x = _mm512_add_ps(*x, b);
            }
        }
    }
    if ep.relu {
        let zero = _mm512_setzero_ps();
        acc.iter_mut()
            .flatten()
            .for_each(|x| *x = _mm512_max_ps(*x, zero));
    }
    for (r, row) in acc.iter().enumerate() {
        for (v, x) in row.iter().enumerate() {
            // SAFETY: inside the tile, as for the load above.
            unsafe { _mm512_storeu_ps(c.add(r * ldc + v * 16), *x) };
        }
    }
}
