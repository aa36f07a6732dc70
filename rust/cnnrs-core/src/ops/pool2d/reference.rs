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

/// Naive average pooling, PyTorch's divisor rules, by loops over the
/// padded window (f64 sums).
#[allow(clippy::too_many_arguments)]
pub fn avg_pool2d(
    x: &[f32],
    [n, c, h, w]: [usize; 4],
    k: [usize; 2],
    s: [usize; 2],
    p: [usize; 2],
    [h_out, w_out]: [usize; 2],
    count_include_pad: bool,
    divisor_override: Option<usize>,
) -> Vec<f32> {
    let mut out = Vec::new();
    for plane in 0..n * c {
        for oy in 0..h_out {
            for ox in 0..w_out {
                let (mut sum, mut inside, mut padded) = (0.0f64, 0usize, 0usize);
                for ky in 0..k[0] {
                    for kx in 0..k[1] {
                        let y = (oy * s[0] + ky) as isize - p[0] as isize;
                        let xx = (ox * s[1] + kx) as isize - p[1] as isize;
                        // Taps beyond the right/bottom padding do not count.
                        if y >= (h + p[0]) as isize || xx >= (w + p[1]) as isize {
                            continue;
                        }
                        padded += 1;
                        if y >= 0 && xx >= 0 && (y as usize) < h && (xx as usize) < w {
                            inside += 1;
                            sum += x[plane * h * w + y as usize * w + xx as usize] as f64;
                        }
                    }
                }
                let div =
                    divisor_override.unwrap_or(if count_include_pad { padded } else { inside });
                out.push((sum / div as f64) as f32);
            }
        }
    }
    out
}

/// Naive adaptive average pooling.
pub fn adaptive_avg_pool2d(x: &[f32], [n, c, h, w]: [usize; 4], [ho, wo]: [usize; 2]) -> Vec<f32> {
    let mut out = Vec::new();
    for plane in 0..n * c {
        for oy in 0..ho {
            let (y0, y1) = (
                (oy * h) as f64 / ho as f64,
                ((oy + 1) * h) as f64 / ho as f64,
            );
            for ox in 0..wo {
                let (x0, x1) = (
                    (ox * w) as f64 / wo as f64,
                    ((ox + 1) * w) as f64 / wo as f64,
                );
                let (mut sum, mut cnt) = (0.0f64, 0);
                for y in y0.floor() as usize..y1.ceil() as usize {
                    for xx in x0.floor() as usize..x1.ceil() as usize {
                        sum += x[plane * h * w + y * w + xx] as f64;
                        cnt += 1;
                    }
                }
                out.push((sum / cnt as f64) as f32);
            }
        }
    }
    out
}
