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

/// Per-element `binary_cross_entropy_with_logits` straight from the
/// definition `-w [pw y log s(x) + (1 - y) log(1 - s(x))]`, `s` the sigmoid,
/// in f64 (weights already broadcast to the input's length).
pub fn bce_with_logits_none(x: &[f64], y: &[f64], w: &[f64], pw: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0f64; x.len()];
    for i in 0..x.len() {
        let s = 1.0 / (1.0 + (-x[i]).exp());
        out[i] = -w[i] * (pw[i] * y[i] * s.ln() + (1.0 - y[i]) * (1.0 - s).ln());
    }
    out
}

/// Soft Dice losses `1 - (2I + s)/(P + G + s)` per (sample, class) for
/// logits `[n, c, inner]`: softmax probabilities against one-hot `labels`
/// (`Some`, pixels equal to `ignore` skipped) or sigmoid probabilities
/// against `probs` (`None` labels). Classes from `c0` on.
#[allow(clippy::too_many_arguments)]
pub fn dice_none(
    x: &[f64],
    n: usize,
    c: usize,
    inner: usize,
    labels: Option<(&[i64], i64)>,
    probs: &[f64],
    smooth: f64,
    c0: usize,
) -> Vec<f64> {
    let p = match labels {
        Some(_) => softmax(x, &[n, c, inner], 1, false),
        None => x.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect(),
    };
    let mut out = Vec::new();
    for o in 0..n {
        for k in c0..c {
            let (mut i_, mut p_, mut g_) = (0.0, 0.0, 0.0);
            for i in 0..inner {
                let at = (o * c + k) * inner + i;
                let (g, m) = match labels {
                    Some((l, ignore)) => {
                        let t = l[o * inner + i];
                        if t == ignore {
                            (0.0, 0.0)
                        } else if t == k as i64 {
                            (1.0, 1.0)
                        } else {
                            (0.0, 1.0)
                        }
                    }
                    None => (probs[at], 1.0),
                };
                i_ += m * p[at] * g;
                p_ += m * p[at];
                g_ += m * g;
            }
            out.push(1.0 - (2.0 * i_ + smooth) / (p_ + g_ + smooth));
        }
    }
    out
}
