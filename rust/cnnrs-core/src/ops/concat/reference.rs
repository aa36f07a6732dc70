//! Naive `cat`, the oracle: for every output element, unravel its index,
//! find the tensor that holds it by walking the sizes along `dim`, and read
//! that tensor at the shifted index.

use super::cat_shape;
use crate::error::Result;
use crate::tensor::Tensor;

/// Row-major multi-index of `flat` in `shape`.
fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for k in (0..shape.len()).rev() {
        idx[k] = flat % shape[k];
        flat /= shape[k];
    }
    idx
}

fn ravel(idx: &[usize], shape: &[usize]) -> usize {
    idx.iter().zip(shape).fold(0, |acc, (&i, &s)| acc * s + i)
}

/// Concatenation of `xs` along `dim`.
///
/// # Errors
/// Whatever [`cat_shape`] refuses.
pub fn forward(xs: &[&Tensor], dim: i64) -> Result<Tensor> {
    let shapes: Vec<&[usize]> = xs.iter().map(|x| x.shape()).collect();
    let (d, shape) = cat_shape(&shapes, dim)?;
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    for flat in 0..n {
        let mut idx = unravel(flat, &shape);
        let mut t = 0;
        while idx[d] >= xs[t].shape()[d] {
            idx[d] -= xs[t].shape()[d];
            t += 1;
        }
        out.push(xs[t].data()[ravel(&idx, xs[t].shape())]);
    }
    Ok(Tensor::from_parts(shape, out))
}
