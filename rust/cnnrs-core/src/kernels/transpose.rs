//! Register transposes shared by packing routines.

/// Transposes a 16 x 16 block held as 16 rows: `out[i]` lane `j` is `r[j]`
/// lane `i`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(crate) fn transpose16(r: [std::arch::x86_64::__m512; 16]) -> [std::arch::x86_64::__m512; 16] {
    use std::arch::x86_64::*;
    // Interleave pairs of rows (2x2 blocks of lanes), then pairs of those
    // (4x4), then swap 128-bit lanes twice (8x8, 16x16).
    let mut t = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    let mut u = [_mm512_setzero_ps(); 16];
    for i in 0..4 {
        let b = 4 * i;
        u[b] = _mm512_shuffle_ps::<0x44>(t[b], t[b + 2]);
        u[b + 1] = _mm512_shuffle_ps::<0xEE>(t[b], t[b + 2]);
        u[b + 2] = _mm512_shuffle_ps::<0x44>(t[b + 1], t[b + 3]);
        u[b + 3] = _mm512_shuffle_ps::<0xEE>(t[b + 1], t[b + 3]);
    }
    let mut v = [_mm512_setzero_ps(); 16];
    for i in 0..4 {
        v[i] = _mm512_shuffle_f32x4::<0x88>(u[i], u[i + 4]);
        v[i + 4] = _mm512_shuffle_f32x4::<0xDD>(u[i], u[i + 4]);
        v[i + 8] = _mm512_shuffle_f32x4::<0x88>(u[i + 8], u[i + 12]);
        v[i + 12] = _mm512_shuffle_f32x4::<0xDD>(u[i + 8], u[i + 12]);
    }
    let mut w = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        w[i] = _mm512_shuffle_f32x4::<0x88>(v[i], v[i + 8]);
        w[i + 8] = _mm512_shuffle_f32x4::<0xDD>(v[i], v[i + 8]);
    }
    w
}

/// `dst[p*nr + t0 + i] = src[off_i + p]` for `i < 16`, `p < kc`: 16
/// contiguous runs (`off_i = base + i*stride`) interleaved into 16 lanes of
/// a packed panel `nr` floats wide, through 16 x 16 register transposes;
/// the last `kc % 16` steps one by one.
///
/// # Safety
/// The CPU supports AVX-512F.
///
/// # Panics
/// When a run or the panel lies outside its slice.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn interleave16(
    src: &[f32],
    base: usize,
    stride: usize,
    kc: usize,
    dst: &mut [f32],
    nr: usize,
    t0: usize,
) {
    use std::arch::x86_64::*;
    assert!(base + 15 * stride + kc <= src.len() && t0 + 16 <= nr && kc * nr <= dst.len());
    let full = kc / 16 * 16;
    for p in (0..full).step_by(16) {
        let mut r = [_mm512_setzero_ps(); 16];
        for (i, v) in r.iter_mut().enumerate() {
            // SAFETY: run `i` covers `base + i*stride + p .. + 16 <= ... + kc`,
            // inside `src` (asserted above).
            *v = unsafe { _mm512_loadu_ps(src.as_ptr().add(base + i * stride + p)) };
        }
        for (i, v) in transpose16(r).iter().enumerate() {
            // SAFETY: row `p + i < kc` of the panel, lanes `t0..t0+16 <= nr`.
            unsafe { _mm512_storeu_ps(dst.as_mut_ptr().add((p + i) * nr + t0), *v) };
        }
    }
    for p in full..kc {
        for i in 0..16 {
            dst[p * nr + t0 + i] = src[base + i * stride + p];
        }
    }
}

/// `dst[p*8 + r] = src[r*rs + p]` for `r < 8`, `p < 16*(kc/16)`: eight rows
/// interleaved into the 8-wide packed-panel layout, 16 columns at a time
/// (8 loads, 32 in-register shuffles, 8 stores per 128 floats). Returns the
/// columns done; the caller finishes the last `kc % 16`.
///
/// # Safety
/// The CPU supports AVX-512F.
///
/// # Panics
/// When a row or the panel lies outside its slice.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn interleave8(src: &[f32], rs: usize, kc: usize, dst: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    assert!(src.len() >= 7 * rs + kc && dst.len() >= 8 * kc);
    let full = kc / 16 * 16;
    for p in (0..full).step_by(16) {
        let mut r = [_mm512_setzero_ps(); 8];
        for (i, v) in r.iter_mut().enumerate() {
            // SAFETY: row `i < 8`, columns `p..p+16 <= kc` (asserted above).
            *v = unsafe { _mm512_loadu_ps(src.as_ptr().add(i * rs + p)) };
        }
        // Per 128-bit lane L (columns 4L..4L+3): pairs of rows, then
        // column 4L+c of rows 0-3 in u[c] and of rows 4-7 in u[4+c].
        let t: [__m512; 8] = std::array::from_fn(|k| {
            let (a, b) = (r[k / 2 * 2], r[k / 2 * 2 + 1]);
            if k % 2 == 0 {
                _mm512_unpacklo_ps(a, b)
            } else {
                _mm512_unpackhi_ps(a, b)
            }
        });
        let u = [
            _mm512_shuffle_ps::<0x44>(t[0], t[2]),
            _mm512_shuffle_ps::<0xEE>(t[0], t[2]),
            _mm512_shuffle_ps::<0x44>(t[1], t[3]),
            _mm512_shuffle_ps::<0xEE>(t[1], t[3]),
            _mm512_shuffle_ps::<0x44>(t[4], t[6]),
            _mm512_shuffle_ps::<0xEE>(t[4], t[6]),
            _mm512_shuffle_ps::<0x44>(t[5], t[7]),
            _mm512_shuffle_ps::<0xEE>(t[5], t[7]),
        ];
        // Output vector j holds columns 2j and 2j+1 (rows 0-7 each): for
        // j = 2L it is lanes [u0.L, u4.L, u1.L, u5.L], for j = 2L+1
        // [u2.L, u6.L, u3.L, u7.L].
        for (half, (c0, c1)) in [(0usize, 1usize), (2, 3)].into_iter().enumerate() {
            let p0 = _mm512_shuffle_f32x4::<0x44>(u[c0], u[4 + c0]);
            let p1 = _mm512_shuffle_f32x4::<0xEE>(u[c0], u[4 + c0]);
            let q0 = _mm512_shuffle_f32x4::<0x44>(u[c1], u[4 + c1]);
            let q1 = _mm512_shuffle_f32x4::<0xEE>(u[c1], u[4 + c1]);
            let outs = [
                _mm512_shuffle_f32x4::<0x88>(p0, q0), // L = 0
                _mm512_shuffle_f32x4::<0xDD>(p0, q0), // L = 1
                _mm512_shuffle_f32x4::<0x88>(p1, q1), // L = 2
                _mm512_shuffle_f32x4::<0xDD>(p1, q1), // L = 3
            ];
            for (l, v) in outs.iter().enumerate() {
                let j = 2 * l + half;
                // SAFETY: columns `p + 2j, p + 2j + 1 < kc` of the panel:
                // 16 floats at `(p + 2j) * 8`, inside `dst` (asserted).
                unsafe { _mm512_storeu_ps(dst.as_mut_ptr().add((p + 2 * j) * 8), *v) };
            }
        }
    }
    full
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    #[test]
    fn transpose16_transposes() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        use std::arch::x86_64::*;
        let m: Vec<f32> = (0..256).map(|i| i as f32).collect();
        // SAFETY: AVX-512F is available (checked above); loads and stores
        // stay inside the 256-float buffers.
        unsafe {
            let mut r = [_mm512_setzero_ps(); 16];
            for (i, v) in r.iter_mut().enumerate() {
                *v = _mm512_loadu_ps(m.as_ptr().add(16 * i));
            }
            let t = super::transpose16(r);
            let mut out = vec![0.0f32; 256];
            for (i, v) in t.iter().enumerate() {
                _mm512_storeu_ps(out.as_mut_ptr().add(16 * i), *v);
            }
            for i in 0..16 {
                for j in 0..16 {
                    assert_eq!(out[16 * i + j], m[16 * j + i], "({i}, {j})");
                }
            }
        }
    }

    #[test]
    fn interleave8_matches_the_scalar_layout() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        for (rs, kc) in [(16, 16), (40, 37), (100, 64), (35, 5)] {
            let src: Vec<f32> = (0..7 * rs + kc).map(|i| i as f32).collect();
            let mut dst = vec![f32::NAN; 8 * kc];
            // SAFETY: AVX-512F is available (checked above).
            let done = unsafe { super::interleave8(&src, rs, kc, &mut dst) };
            assert_eq!(done, kc / 16 * 16);
            for p in 0..done {
                for r in 0..8 {
                    assert_eq!(
                        dst[p * 8 + r],
                        src[r * rs + p],
                        "rs {rs} kc {kc} ({r}, {p})"
                    );
                }
            }
        }
    }
}
