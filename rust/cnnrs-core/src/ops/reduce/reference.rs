//! Naive sum over one axis of a row-major tensor, by multi-index.

/// Sum over axis `d` (None: all), float64 accumulation.
pub fn sum(x: &[f32], shape: &[usize], d: Option<usize>) -> Vec<f32> {
    match d {
        None => vec![x.iter().map(|&v| v as f64).sum::<f64>() as f32],
        Some(d) => {
            let outer: usize = shape[..d].iter().product();
            let inner: usize = shape[d + 1..].iter().product();
            let mut out = Vec::new();
            for o in 0..outer {
                for i in 0..inner {
                    let mut s = 0.0f64;
                    for r in 0..shape[d] {
                        s += x[(o * shape[d] + r) * inner + i] as f64;
                    }
                    out.push(s as f32);
                }
            }
            out
        }
    }
}
