//! Naive batch norm by explicit loops over (n, c, i): the oracle.

/// Training-mode forward; returns `(y, batch_mean, batch_biased_var)`.
pub fn forward_train(
    x: &[f32],
    n: usize,
    c: usize,
    hw: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut y = vec![0.0; x.len()];
    let mut means = vec![0.0; c];
    let mut vars = vec![0.0; c];
    for ch in 0..c {
        let mut vals = Vec::new();
        for i in 0..n {
            for k in 0..hw {
                vals.push(x[(i * c + ch) * hw + k] as f64);
            }
        }
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        let var = vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / vals.len() as f64;
        means[ch] = mean as f32;
        vars[ch] = var as f32;
        for i in 0..n {
            for k in 0..hw {
                let idx = (i * c + ch) * hw + k;
                y[idx] = (gamma[ch] as f64 * (x[idx] as f64 - mean) / (var + eps as f64).sqrt()
                    + beta[ch] as f64) as f32;
            }
        }
    }
    (y, means, vars)
}

/// Training-mode gradients `(dx, dgamma, dbeta)` from the textbook chain
/// rule (through mean and variance, not the simplified formula).
pub fn backward_train(
    x: &[f32],
    g: &[f32],
    n: usize,
    c: usize,
    hw: usize,
    gamma: &[f32],
    eps: f32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let m = (n * hw) as f64;
    let mut dx = vec![0.0; x.len()];
    let mut dgamma = vec![0.0; c];
    let mut dbeta = vec![0.0; c];
    for ch in 0..c {
        let idx: Vec<usize> = (0..n)
            .flat_map(|i| (0..hw).map(move |k| (i * c + ch) * hw + k))
            .collect();
        let mean = idx.iter().map(|&i| x[i] as f64).sum::<f64>() / m;
        let var = idx
            .iter()
            .map(|&i| (x[i] as f64 - mean).powi(2))
            .sum::<f64>()
            / m;
        let is = 1.0 / (var + eps as f64).sqrt();
        let ga = gamma[ch] as f64;
        // dL/dxhat, dL/dvar, dL/dmean
        let dxhat: Vec<f64> = idx.iter().map(|&i| g[i] as f64 * ga).collect();
        let dvar: f64 = idx
            .iter()
            .zip(&dxhat)
            .map(|(&i, d)| d * (x[i] as f64 - mean) * -0.5 * is.powi(3))
            .sum();
        let dmean: f64 = dxhat.iter().map(|d| -d * is).sum::<f64>()
            + dvar
                * idx
                    .iter()
                    .map(|&i| -2.0 * (x[i] as f64 - mean))
                    .sum::<f64>()
                / m;
        for (k, &i) in idx.iter().enumerate() {
            dx[i] = (dxhat[k] * is + dvar * 2.0 * (x[i] as f64 - mean) / m + dmean / m) as f32;
            dgamma[ch] += (g[i] as f64 * (x[i] as f64 - mean) * is) as f32;
            dbeta[ch] += g[i];
        }
    }
    (dx, dgamma, dbeta)
}
