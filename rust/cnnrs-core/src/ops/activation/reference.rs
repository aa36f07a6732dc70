//! Naive relu, the oracle.

pub fn relu(x: &[f32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for &v in x {
        // NaN propagates (NaN > 0 is false, so test it explicitly).
        let keep = v > 0.0 || v.is_nan();
        out.push(if keep { v } else { 0.0 });
    }
    out
}
