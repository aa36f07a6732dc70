//! Naive softmax and losses, the oracle: per-lane loops in f64, indices
//! computed from the full shape; f64 input so finite differences are exact.

/// Softmax (or log-softmax) of `x` with `shape` along `dim`, in f64.
pub fn softmax(x: &[f64], shape: &[usize], dim: usize, log: bool) -> Vec<f64> {
    let (outer, red, inner) = if shape.is_empty() {
        (1, 1, 1)
    } else {
        (
            shape[..dim].iter().product::<usize>(),
            shape[dim],
            shape[dim + 1..].iter().product::<usize>(),
        )
    };
    let mut out = vec![0.0f64; x.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |r: usize| o * red * inner + r * inner + i;
            let m = (0..red).map(|r| x[at(r)]).fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = (0..red).map(|r| (x[at(r)] - m).exp()).sum();
            for r in 0..red {
                let z = x[at(r)] - m;
                out[at(r)] = if log { z - s.ln() } else { z.exp() / s };
            }
        }
    }
    out
}

/// Per-label cross-entropy of logits `[n, c, inner]` (0 where ignored), in
/// f64. Labels must be valid.
pub fn cross_entropy_none(
    x: &[f64],
    target: &[i64],
    n: usize,
    c: usize,
    inner: usize,
    ignore: i64,
) -> Vec<f64> {
    let mut out = vec![0.0f64; n * inner];
    for o in 0..n {
        for i in 0..inner {
            let t = target[o * inner + i];
            if t == ignore {
                continue;
            }
            let at = |k: usize| o * c * inner + k * inner + i;
            let m = (0..c).map(|k| x[at(k)]).fold(f64::NEG_INFINITY, f64::max);
            let lse = m + (0..c).map(|k| (x[at(k)] - m).exp()).sum::<f64>().ln();
            out[o * inner + i] = lse - x[at(t as usize)];
        }
    }
    out
}
