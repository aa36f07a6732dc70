//! Reductions shared by the ops: float64 sums of float32 runs, fast and in
//! a fixed order (reproducible, the same on every SIMD family).

/// The sum of `v` in float64, in 32 interleaved partial sums (a fixed
/// order, so the result is reproducible and the same on every SIMD path;
/// independent vector chains, so the adds do not wait on each other),
/// combined pairwise.
pub(crate) fn sum_f64(v: &[f32]) -> f64 {
    // The baseline build has only SSE2, whose 16 registers cannot hold the
    // 32 partial sums.
    crate::kernels::simd::wide(
        #[inline(always)]
        || sum_f64_body(v),
    )
}

#[inline(always)]
fn sum_f64_body(v: &[f32]) -> f64 {
    const L: usize = 32;
    let mut acc = [0.0f64; L];
    let mut chunks = v.chunks_exact(L);
    for ch in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(ch) {
            *a += x as f64;
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|&x| x as f64).sum();
    let mut w = L;
    while w > 1 {
        w /= 2;
        for i in 0..w {
            acc[i] += acc[i + w];
        }
    }
    acc[0] + tail
}

/// Elements per block of [`sum_f64_par`]: fixed, so the result does not
/// depend on the thread count.
const BLOCK: usize = 1 << 16;

/// [`sum_f64`] of a long run: fixed blocks summed on the pool, the block
/// sums added in order.
pub(crate) fn sum_f64_par(v: &[f32]) -> f64 {
    if v.len() <= 2 * BLOCK {
        return sum_f64(v);
    }
    let mut parts = vec![0.0f64; v.len().div_ceil(BLOCK)];
    crate::parallel::chunks_mut(&mut parts, 1, 1, |i, s| {
        s[0] = sum_f64(&v[i * BLOCK..((i + 1) * BLOCK).min(v.len())])
    });
    parts.iter().sum()
}
