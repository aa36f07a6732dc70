//! Naive pad, the oracle: for every output element of the last two
//! dimensions, compute the source coordinate from the mode's definition
//! (independently of [`PadGeom`](super::PadGeom)'s maps) and copy or fill.

use super::PadMode;
use crate::tensor::Tensor;

/// The source of output coordinate `o` along an axis of length `len` padded
/// by `lo` before it, or `None` for the fill value.
fn source(mode: PadMode, o: i64, lo: i64, len: i64) -> Option<usize> {
    let mut i = o - lo;
    match mode {
        PadMode::Constant => {
            if i < 0 || i >= len {
                return None;
            }
        }
        PadMode::Replicate => i = i.max(0).min(len - 1),
        PadMode::Reflect => {
            // Mirror about 0 and about len - 1 until inside.
            while i < 0 || i >= len {
                if i < 0 {
                    i = -i;
                }
                if i >= len {
                    i = 2 * (len - 1) - i;
                }
            }
        }
    }
    Some(i as usize)
}

/// Calls `f(output_index, input_index or None)` for every output element of
/// `shape` padded by `pad` (`(left, right[, top, bottom])`); returns the
/// output shape. The caller passes arguments [`super::PadGeom::new`] accepts.
fn walk(
    shape: &[usize],
    pad: &[i64],
    mode: PadMode,
    mut f: impl FnMut(usize, Option<usize>),
) -> Vec<usize> {
    let nd = shape.len();
    let k = pad.len() / 2;
    let (pl, pr) = (pad[0], pad[1]);
    let (pt, pb) = if k == 2 { (pad[2], pad[3]) } else { (0, 0) };
    let w = shape[nd - 1] as i64;
    let h = if k == 2 { shape[nd - 2] as i64 } else { 1 };
    let (ho, wo) = (h + pt + pb, w + pl + pr);
    let planes: usize = shape[..nd - k].iter().product();
    let mut o = 0;
    for p in 0..planes {
        for oh in 0..ho {
            for ow in 0..wo {
                let src = match (source(mode, oh, pt, h), source(mode, ow, pl, w)) {
                    (Some(ih), Some(iw)) => Some((p * h as usize + ih) * w as usize + iw),
                    _ => None,
                };
                f(o, src);
                o += 1;
            }
        }
    }
    let mut out = shape.to_vec();
    out[nd - 1] = wo as usize;
    if k == 2 {
        out[nd - 2] = ho as usize;
    }
    out
}

/// `x` padded by `pad`, filled with `value`.
pub fn forward(x: &Tensor, pad: &[i64], mode: PadMode, value: f32) -> Tensor {
    let mut out = Vec::new();
    let shape = walk(x.shape(), pad, mode, |_, src| {
        out.push(src.map_or(value, |i| x.data()[i]));
    });
    Tensor::from_parts(shape, out)
}

/// The input gradient of `sum(pad(x) * dy)`: each output gradient added to
/// the input element it copied, in float64.
pub fn backward(x_shape: &[usize], dy: &Tensor, pad: &[i64], mode: PadMode) -> Tensor {
    let mut dx = vec![0.0f64; x_shape.iter().product()];
    walk(x_shape, pad, mode, |o, src| {
        if let Some(i) = src {
            dx[i] += dy.data()[o] as f64;
        }
    });
    Tensor::from_parts(x_shape.to_vec(), dx.into_iter().map(|v| v as f32).collect())
}
