//! Naive max pooling, the oracle: every kernel tap of every window, padding
//! tested tap by tap. Takes the output size as given (the formula lives in
//! `params.rs` and is tested against PyTorch's values separately).

use super::params::MaxPool2dParams;

/// Returns the output ([n, c, h_out, w_out]) and the flat per-plane argmax
/// (-1 where the window covers only padding; the output is then -inf).
pub fn max_pool2d(
    x: &[f32],
    [n, c, h_in, w_in]: [usize; 4],
    p: &MaxPool2dParams,
    h_out: usize,
    w_out: usize,
) -> (Vec<f32>, Vec<i64>) {
    let mut out = Vec::with_capacity(n * c * h_out * w_out);
    let mut idx = Vec::with_capacity(n * c * h_out * w_out);
    for plane in 0..n * c {
        let xs = &x[plane * h_in * w_in..(plane + 1) * h_in * w_in];
        for oh in 0..h_out {
            for ow in 0..w_out {
                let mut best = f32::NEG_INFINITY;
                let mut best_i: i64 = -1;
                for kh in 0..p.kernel[0] {
                    for kw in 0..p.kernel[1] {
                        let ih =
                            (oh * p.stride[0] + kh * p.dilation[0]) as i64 - p.padding[0] as i64;
                        let iw =
                            (ow * p.stride[1] + kw * p.dilation[1]) as i64 - p.padding[1] as i64;
                        if ih < 0 || iw < 0 || ih >= h_in as i64 || iw >= w_in as i64 {
                            continue;
                        }
                        let i = ih * w_in as i64 + iw;
                        let v = xs[i as usize];
                        // PyTorch starts from the first valid tap's index.
                        if best_i < 0 {
                            best_i = i;
                        }
                        if v > best || v.is_nan() {
                            best = v;
                            best_i = i;
                        }
                    }
                }
                out.push(best);
                idx.push(best_i);
            }
        }
    }
    (out, idx)
}

/// Gradient of the input: for each input element, the sum of the output
/// gradients of the windows that chose it.
pub fn max_pool2d_backward(
    grad_out: &[f32],
    idx: &[i64],
    [n, c, h_in, w_in]: [usize; 4],
    h_out: usize,
    w_out: usize,
) -> Vec<f32> {
    let mut gin = vec![0.0f32; n * c * h_in * w_in];
    for plane in 0..n * c {
        for i in 0..h_in * w_in {
            let mut s = 0.0f32;
            for o in 0..h_out * w_out {
                if idx[plane * h_out * w_out + o] == i as i64 {
                    s += grad_out[plane * h_out * w_out + o];
                }
            }
            gin[plane * h_in * w_in + i] = s;
        }
    }
    gin
}
