//! Oracles for the dropouts.

/// Expected value of "max over the kept units, dropped units counting as 0"
/// when each of `window`'s units is kept independently with probability `q`,
/// by enumerating all 2^n keep patterns (small windows only). This is what
/// max-pool dropout's probabilistic weighted pooling must equal for
/// non-negative inputs.
pub fn expected_max_pool_dropout(window: &[f32], q: f64) -> f64 {
    let n = window.len();
    let mut total = 0.0;
    for pattern in 0u32..(1 << n) {
        let mut prob = 1.0;
        let mut best = 0.0f64;
        for (i, &v) in window.iter().enumerate() {
            if pattern & (1 << i) != 0 {
                prob *= q;
                best = best.max(v as f64);
            } else {
                prob *= 1.0 - q;
            }
        }
        total += prob * best;
    }
    total
}

/// Plain max pooling without padding, by loops.
pub fn max_pool(
    x: &[f32],
    planes: usize,
    h: usize,
    w: usize,
    k: (usize, usize),
    s: (usize, usize),
) -> Vec<f32> {
    let ho = (h - k.0) / s.0 + 1;
    let wo = (w - k.1) / s.1 + 1;
    let mut out = Vec::new();
    for p in 0..planes {
        for oy in 0..ho {
            for ox in 0..wo {
                let mut m = f32::NEG_INFINITY;
                for ky in 0..k.0 {
                    for kx in 0..k.1 {
                        m = m.max(x[p * h * w + (oy * s.0 + ky) * w + ox * s.1 + kx]);
                    }
                }
                out.push(m);
            }
        }
    }
    out
}
