//! The portable micro-kernel: plain Rust on fixed-size arrays, no intrinsics.
//! Always compiled, always tested (`CNNRS_SIMD=scalar` forces it); the
//! compiler vectorises it for the baseline target (SSE2 on x86-64), which is
//! all a machine without AVX2 or NEON offers anyway.

use super::{MicroKernel, TileEpilogue};

/// 4 x 16 register tile: 64 accumulators = 16 SSE registers, the whole
/// x86-64 baseline register file.
pub(crate) struct Kernel;

const MR: usize = 4;
const NR: usize = 16;

impl MicroKernel for Kernel {
    const MR: usize = MR;
    const NR: usize = NR;
    /// B micro-panel `KC*NR*4` = 16 KiB: half of a 32 KiB L1d.
    const KC: usize = 256;
    /// A block `MC*KC*4` = 128 KiB: a quarter of a 512 KiB L2.
    const MC: usize = 128;
    /// B block `KC*NC*4` = 4 MiB, in L3.
    const NC: usize = 4096;

    unsafe fn tile(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        ep: &TileEpilogue,
    ) {
        // SAFETY: the caller guarantees `a` holds `MR*kc` and `b` `kc*NR`
        // readable floats (packed panels).
        let (a, b) = unsafe {
            (
                std::slice::from_raw_parts(a, MR * kc),
                std::slice::from_raw_parts(b, kc * NR),
            )
        };
        let mut acc = [[0.0f32; NR]; MR];
        for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
            for r in 0..MR {
                let av = ap[r];
                for j in 0..NR {
                    acc[r][j] += av * bp[j];
                }
            }
        }
        for (r, row) in acc.iter_mut().enumerate() {
            // SAFETY: row `r < MR` of the tile has `NR` writable floats at
            // `c + r*ldc`, not aliased by the panels or biases.
            let out = unsafe { std::slice::from_raw_parts_mut(c.add(r * ldc), NR) };
            if ep.load_c {
                row.iter_mut().zip(out.iter()).for_each(|(x, &v)| *x += v);
            }
            if !ep.bias_row.is_null() {
                // SAFETY: a non-null `bias_row` points at `MR` floats.
                let bv = unsafe { *ep.bias_row.add(r) };
                row.iter_mut().for_each(|x| *x += bv);
            }
            if !ep.bias_col.is_null() {
                // SAFETY: a non-null `bias_col` points at `NR` floats.
                let bc = unsafe { std::slice::from_raw_parts(ep.bias_col, NR) };
                row.iter_mut().zip(bc).for_each(|(x, &v)| *x += v);
            }
            if ep.relu {
                row.iter_mut().for_each(|x| *x = x.max(0.0));
            }
            out.copy_from_slice(row);
        }
    }
}
