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
}
