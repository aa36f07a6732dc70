//! Naive `linear` and its gradients, the oracle: plain loops, f64 sums.

/// `y[i, o] = sum_j x[i, j] w[o, j] + b[o]` for `m` rows.
pub fn linear(x: &[f32], w: &[f32], b: Option<&[f32]>, m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut y = vec![0.0f32; m * n];
    for i in 0..m {
        for o in 0..n {
            let mut s = b.map_or(0.0, |b| b[o] as f64);
            for j in 0..k {
                s += x[i * k + j] as f64 * w[o * k + j] as f64;
            }
            y[i * n + o] = s as f32;
        }
    }
    y
}

/// `(dx, dw, db)` for the output gradient `g` `[m, n]`.
pub fn linear_backward(
    x: &[f32],
    w: &[f32],
    g: &[f32],
    m: usize,
    k: usize,
    n: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut dx = vec![0.0f32; m * k];
    for i in 0..m {
        for j in 0..k {
            let mut s = 0.0f64;
            for o in 0..n {
                s += g[i * n + o] as f64 * w[o * k + j] as f64;
            }
            dx[i * k + j] = s as f32;
        }
    }
    let mut dw = vec![0.0f32; n * k];
    for o in 0..n {
        for j in 0..k {
            let mut s = 0.0f64;
            for i in 0..m {
                s += g[i * n + o] as f64 * x[i * k + j] as f64;
            }
            dw[o * k + j] = s as f32;
        }
    }
    let mut db = vec![0.0f32; n];
    for o in 0..n {
        let mut s = 0.0f64;
        for i in 0..m {
            s += g[i * n + o] as f64;
        }
        db[o] = s as f32;
    }
    (dx, dw, db)
}
