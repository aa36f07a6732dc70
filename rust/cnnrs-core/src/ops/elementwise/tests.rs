use super::*;
use crate::testutil::{assert_close, Rng};

fn random_broadcast_pair(rng: &mut Rng) -> (Vec<usize>, Vec<usize>) {
    let nd = rng.below(4) + 1;
    let full: Vec<usize> = (0..nd).map(|_| rng.below(4) + 1).collect();
    let mut a = full.clone();
    let mut b = full.clone();
    for d in 0..nd {
        match rng.below(4) {
            0 => a[d] = 1,
            1 => b[d] = 1,
            _ => {}
        }
    }
    let drop = rng.below(nd);
    if rng.below(2) == 0 {
        b.drain(..drop);
    } else {
        a.drain(..drop);
    }
    (a, b)
}

#[test]
fn forward_matches_reference() {
    let mut rng = Rng::new(11);
    for _ in 0..200 {
        let (sa, sb) = random_broadcast_pair(&mut rng);
        let a = Tensor::new(sa.clone(), rng.normal_vec(sa.iter().product())).unwrap();
        let b = Tensor::new(sb.clone(), rng.normal_vec(sb.iter().product())).unwrap();
        for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div] {
            let got = binary_forward(op, &a, &b).unwrap();
            let (shape, want) = reference::binary(op, a.data(), &sa, b.data(), &sb);
            assert_eq!(got.shape(), shape.as_slice());
            assert_close(got.data(), &want, 1e-6, 1e-6, op.name());
        }
    }
}

#[test]
fn backward_matches_finite_differences() {
    let mut rng = Rng::new(5);
    for _ in 0..30 {
        let (sa, sb) = random_broadcast_pair(&mut rng);
        let a0 = rng.normal_vec(sa.iter().product());
        // Keep divisors away from zero.
        let b0: Vec<f32> = rng
            .normal_vec(sb.iter().product())
            .iter()
            .map(|v| v.signum() * (v.abs() + 0.5))
            .collect();
        for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div] {
            let a = Var::leaf(Tensor::new(sa.clone(), a0.clone()).unwrap(), true);
            let b = Var::leaf(Tensor::new(sb.clone(), b0.clone()).unwrap(), true);
            let y = binary(op, &a, &b).unwrap();
            let n = y.value().numel();
            // loss = sum(y * w) with fixed random w
            let w: Vec<f32> = (0..n).map(|i| ((i * 7 % 5) as f32) - 2.0).collect();
            y.backward(Some(Tensor::new(y.shape(), w.clone()).unwrap()))
                .unwrap();
            let loss = |av: &[f32], bv: &[f32]| -> f64 {
                let (_, out) = reference::binary(op, av, &sa, bv, &sb);
                out.iter().zip(&w).map(|(o, w)| *o as f64 * *w as f64).sum()
            };
            let h = 1e-2f32;
            for (which, base) in [(0, &a0), (1, &b0)] {
                let g = if which == 0 {
                    a.grad().unwrap()
                } else {
                    b.grad().unwrap()
                };
                for i in 0..base.len() {
                    let mut p = base.clone();
                    let mut m = base.clone();
                    p[i] += h;
                    m[i] -= h;
                    let (fp, fm) = if which == 0 {
                        (loss(&p, &b0), loss(&m, &b0))
                    } else {
                        (loss(&a0, &p), loss(&a0, &m))
                    };
                    let num = ((fp - fm) / (2.0 * h as f64)) as f32;
                    assert!(
                        (g.data()[i] - num).abs() < 2e-2 * (1.0 + num.abs()),
                        "{} input {which} elem {i}: {} vs {num}",
                        op.name(),
                        g.data()[i]
                    );
                }
            }
        }
    }
}

#[test]
fn incompatible_shapes_name_op_and_shapes() {
    let a = Tensor::zeros(&[2, 3]).unwrap();
    let b = Tensor::zeros(&[4]).unwrap();
    let e = binary_forward(BinaryOp::Add, &a, &b)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("add") && e.contains("(2, 3)") && e.contains("(4,)"),
        "{e}"
    );
}
