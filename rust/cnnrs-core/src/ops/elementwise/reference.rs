//! Naive broadcasting by explicit multi-index arithmetic: the oracle.

use super::BinaryOp;

/// `a (op) b`, NumPy broadcasting, computed index by index.
pub fn binary(
    op: BinaryOp,
    a: &[f32],
    sa: &[usize],
    b: &[f32],
    sb: &[usize],
) -> (Vec<usize>, Vec<f32>) {
    let nd = sa.len().max(sb.len());
    let pad = |s: &[usize]| {
        let mut v = vec![1; nd - s.len()];
        v.extend_from_slice(s);
        v
    };
    let (pa, pb) = (pad(sa), pad(sb));
    let out: Vec<usize> = (0..nd).map(|i| pa[i].max(pb[i])).collect();
    let total: usize = out.iter().product();
    let mut res = Vec::with_capacity(total);
    for flat in 0..total {
        let mut rem = flat;
        let mut idx = vec![0; nd];
        for d in (0..nd).rev() {
            idx[d] = rem % out[d];
            rem /= out[d];
        }
        let off = |p: &[usize]| {
            let mut o = 0;
            for d in 0..nd {
                let i = if p[d] == 1 { 0 } else { idx[d] };
                o = o * p[d] + i;
            }
            o
        };
        let (x, y) = (a[off(&pa)], b[off(&pb)]);
        res.push(match op {
            BinaryOp::Add => x + y,
            BinaryOp::Sub => x - y,
            BinaryOp::Mul => x * y,
            BinaryOp::Div => x / y,
        });
    }
    (out, res)
}
