use super::*;
use crate::autograd::Var;
use crate::tensor::Tensor;
use crate::testutil::{assert_close, numeric_grad, Rng};

fn to64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&a| a as f64).collect()
}
fn to32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&a| a as f32).collect()
}
fn random_shape(rng: &mut Rng, max_nd: usize) -> Vec<usize> {
    let nd = rng.below(max_nd + 1);
    (0..nd).map(|_| rng.below(5) + 1).collect()
}

#[test]
fn softmax_forward_matches_reference_any_dim() {
    let mut rng = Rng::new(1);
    for _ in 0..300 {
        let shape = random_shape(&mut rng, 4);
        let nd = shape.len().max(1) as i64;
        let dim = rng.below(2 * nd as usize) as i64 - nd; // -nd..nd
        let d = super::softmax::resolve_dim("t", dim, &shape).unwrap();
        let n: usize = shape.iter().product();
        let x: Vec<f32> = rng.normal_vec(n).iter().map(|v| v * 3.0).collect();
        for log in [false, true] {
            let want = to32(&reference::softmax(&to64(&x), &shape, d, log));
            let xv = Var::leaf(Tensor::new(shape.clone(), x.clone()).unwrap(), false);
            let y = if log {
                log_softmax(&xv, dim)
            } else {
                softmax(&xv, dim)
            }
            .unwrap();
            assert_eq!(y.shape(), shape);
            assert_close(y.value().data(), &want, 1e-5, 1e-6, "softmax");
            // Shift invariance: huge logits do not overflow.
            let big: Vec<f32> = x.iter().map(|v| v + 1000.0).collect();
            let yb = softmax_forward(&Tensor::new(shape.clone(), big).unwrap(), d, log).unwrap();
            // 1000 + x has ~6e-5 absolute rounding in f32.
            assert_close(yb.data(), &want, 1e-3, 1e-4, "shifted softmax");
        }
    }
}

#[test]
fn softmax_nan_and_minus_inf_lanes() {
    // Lanes along dim 1 of (2, 3): row 0 has a NaN, row 1 is all -inf.
    let ni = f32::NEG_INFINITY;
    let x = Tensor::new(vec![2, 3], vec![1.0, f32::NAN, 2.0, ni, ni, ni]).unwrap();
    for log in [false, true] {
        let y = softmax_forward(&x, 1, log).unwrap();
        assert!(y.data().iter().all(|v| v.is_nan()), "{:?}", y.data());
    }
    // Along dim 0 only the lane holding the NaN is NaN; -inf gets 0.
    let y = softmax_forward(&x, 0, false).unwrap();
    assert_eq!(&y.data()[..1], &[1.0]);
    assert!(y.data()[1].is_nan() && y.data()[4].is_nan());
    assert_eq!(y.data()[3], 0.0);
}

#[test]
fn softmax_backward_matches_finite_differences() {
    let mut rng = Rng::new(9);
    for _ in 0..60 {
        let shape = random_shape(&mut rng, 3);
        let nd = shape.len().max(1) as i64;
        let dim = rng.below(nd as usize) as i64 - if rng.below(2) == 0 { nd } else { 0 };
        let d = super::softmax::resolve_dim("t", dim, &shape).unwrap();
        let n: usize = shape.iter().product();
        let x = rng.normal_vec(n);
        let w = rng.normal_vec(n);
        for log in [false, true] {
            let xv = Var::leaf(Tensor::new(shape.clone(), x.clone()).unwrap(), true);
            let y = if log {
                log_softmax(&xv, dim)
            } else {
                softmax(&xv, dim)
            }
            .unwrap();
            let name = if log {
                "LogSoftmaxBackward"
            } else {
                "SoftmaxBackward"
            };
            assert_eq!(y.grad_fn_name(), Some(name));
            y.backward(Some(Tensor::new(shape.clone(), w.clone()).unwrap()))
                .unwrap();
            let num = numeric_grad(&to64(&x), 1e-5, |xs| {
                let y = reference::softmax(xs, &shape, d, log);
                y.iter().zip(&w).map(|(a, &b)| a * b as f64).sum()
            });
            assert_close(
                xv.grad().unwrap().data(),
                &to32(&num),
                1e-4,
                1e-5,
                "softmax grad",
            );
        }
    }
}

/// A random cross-entropy case: logits shape, target shape, labels (some
/// equal to `ignore`), geometry.
fn random_ce(rng: &mut Rng, ignore: i64) -> (Vec<usize>, Vec<usize>, Vec<i64>, CeGeometry) {
    let c = rng.below(6) + 1;
    let (shape, tshape) = if rng.below(6) == 0 {
        (vec![c], vec![])
    } else {
        let n = rng.below(5) + 1;
        let extra = random_shape(rng, 2);
        let mut s = vec![n, c];
        s.extend(&extra);
        let mut t = vec![n];
        t.extend(&extra);
        (s, t)
    };
    let g = ce_geometry(&shape, &tshape).unwrap();
    let labels = (0..g.n * g.inner)
        .map(|_| {
            if rng.below(5) == 0 {
                ignore
            } else {
                rng.below(c) as i64
            }
        })
        .collect();
    (shape, tshape, labels, g)
}

#[test]
fn cross_entropy_matches_reference_and_finite_differences() {
    let mut rng = Rng::new(12);
    for case in 0..200 {
        // PyTorch's default, and an ignore_index that is a valid class.
        let ignore = if case % 2 == 0 { -100 } else { 1 };
        let (shape, tshape, labels, g) = random_ce(&mut rng, ignore);
        let x: Vec<f32> = rng
            .normal_vec(shape.iter().product())
            .iter()
            .map(|v| v * 2.0)
            .collect();
        let per = reference::cross_entropy_none(&to64(&x), &labels, g.n, g.c, g.inner, ignore);
        let count = labels.iter().filter(|&&t| t != ignore).count();
        for red in [Reduction::None, Reduction::Sum, Reduction::Mean] {
            let xv = Var::leaf(Tensor::new(shape.clone(), x.clone()).unwrap(), true);
            let y = cross_entropy(&xv, &labels, &tshape, red, ignore).unwrap();
            let want: Vec<f64> = match red {
                Reduction::None => per.clone(),
                Reduction::Sum => vec![per.iter().sum()],
                Reduction::Mean => vec![per.iter().sum::<f64>() / count as f64],
            };
            let want_shape = if red == Reduction::None {
                tshape.clone()
            } else {
                vec![]
            };
            assert_eq!(y.shape(), want_shape);
            assert_close(y.value().data(), &to32(&want), 1e-5, 1e-5, "cross_entropy");
            if red == Reduction::Mean && count == 0 {
                assert!(y.value().data()[0].is_nan());
                continue;
            }
            let w = rng.normal_vec(want.len());
            y.backward(Some(Tensor::new(want_shape, w.clone()).unwrap()))
                .unwrap();
            let num = numeric_grad(&to64(&x), 1e-5, |xs| {
                let per = reference::cross_entropy_none(xs, &labels, g.n, g.c, g.inner, ignore);
                let l: Vec<f64> = match red {
                    Reduction::None => per,
                    Reduction::Sum => vec![per.iter().sum()],
                    Reduction::Mean => vec![per.iter().sum::<f64>() / count as f64],
                };
                l.iter().zip(&w).map(|(a, &b)| a * b as f64).sum()
            });
            assert_close(
                xv.grad().unwrap().data(),
                &to32(&num),
                1e-4,
                1e-5,
                "cross_entropy grad",
            );
        }
    }
}

#[test]
fn cross_entropy_errors_name_op_label_and_shapes() {
    let x = Var::leaf(Tensor::zeros(&[4, 5]).unwrap(), true);
    let ce = |x: &Var, t: &[i64], ts: &[usize]| match cross_entropy(x, t, ts, Reduction::Mean, -100)
    {
        Ok(_) => panic!("should fail"),
        Err(e) => e.to_string(),
    };
    let e = ce(&x, &[0, 1, 5, 2], &[4]);
    assert!(
        e.starts_with("cross_entropy: ") && e.contains("label 5") && e.contains("5 classes"),
        "{e}"
    );
    let e = ce(&x, &[0, -1, 4, 2], &[4]);
    assert!(e.contains("label -1") && e.contains("5 classes"), "{e}");
    let e = ce(&x, &[0, 1, 2], &[3]);
    assert!(
        e.starts_with("cross_entropy: ")
            && e.contains("(3,)")
            && e.contains("(4, 5)")
            && e.contains("(4,)"),
        "{e}"
    );
    let e = ce(&x, &[0, 1, 2, 3], &[4, 1]);
    assert!(
        e.contains("(4, 1)") && e.contains("expected target shape (4,)"),
        "{e}"
    );
    let e = ce(&x, &[0, 1, 2], &[4]);
    assert!(
        e.starts_with("cross_entropy: ") && e.contains("3 labels"),
        "{e}"
    );
    let x4 = Var::leaf(Tensor::zeros(&[2, 3, 4, 5]).unwrap(), true);
    let e = ce(&x4, &[0; 40], &[2, 5, 4]);
    assert!(
        e.contains("(2, 5, 4)") && e.contains("expected target shape (2, 4, 5)"),
        "{e}"
    );
    let x0 = Var::leaf(Tensor::scalar(1.0), true);
    let e = ce(&x0, &[0], &[]);
    assert!(e.starts_with("cross_entropy: ") && e.contains("0-d"), "{e}");
    let e = Reduction::parse("cross_entropy", "avg")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "cross_entropy: reduction must be 'mean', 'sum' or 'none', got 'avg'"
    );
}

#[test]
fn mse_matches_reference_and_finite_differences() {
    let mut rng = Rng::new(4);
    for _ in 0..60 {
        let shape = random_shape(&mut rng, 3);
        let n: usize = shape.iter().product();
        let (x, t) = (rng.normal_vec(n), rng.normal_vec(n));
        let loss = |x: &[f64], t: &[f64], red: Reduction| -> Vec<f64> {
            let sq: Vec<f64> = x.iter().zip(t).map(|(a, b)| (a - b) * (a - b)).collect();
            match red {
                Reduction::None => sq,
                Reduction::Sum => vec![sq.iter().sum()],
                Reduction::Mean => vec![sq.iter().sum::<f64>() / n as f64],
            }
        };
        for red in [Reduction::None, Reduction::Sum, Reduction::Mean] {
            let xv = Var::leaf(Tensor::new(shape.clone(), x.clone()).unwrap(), true);
            let tv = Var::leaf(Tensor::new(shape.clone(), t.clone()).unwrap(), true);
            let y = mse_loss(&xv, &tv, red).unwrap();
            let want = loss(&to64(&x), &to64(&t), red);
            assert_close(y.value().data(), &to32(&want), 1e-5, 1e-6, "mse");
            let w = rng.normal_vec(want.len());
            y.backward(Some(Tensor::new(y.shape(), w.clone()).unwrap()))
                .unwrap();
            let dot = |l: Vec<f64>| l.iter().zip(&w).map(|(a, &b)| a * b as f64).sum::<f64>();
            let (x64, t64) = (to64(&x), to64(&t));
            let nx = numeric_grad(&x64, 1e-5, |p| dot(loss(p, &t64, red)));
            let nt = numeric_grad(&t64, 1e-5, |p| dot(loss(&x64, p, red)));
            assert_close(
                xv.grad().unwrap().data(),
                &to32(&nx),
                1e-4,
                1e-5,
                "mse grad input",
            );
            assert_close(
                tv.grad().unwrap().data(),
                &to32(&nt),
                1e-4,
                1e-5,
                "mse grad target",
            );
        }
    }
}

#[test]
fn mse_shape_mismatch_is_an_error() {
    let a = Var::leaf(Tensor::zeros(&[3, 1]).unwrap(), true);
    let b = Var::leaf(Tensor::zeros(&[3]).unwrap(), false);
    let Err(e) = mse_loss(&a, &b, Reduction::Mean) else {
        panic!("should fail");
    };
    let e = e.to_string();
    assert!(
        e.starts_with("mse_loss: ") && e.contains("(3, 1)") && e.contains("(3,)"),
        "{e}"
    );
}

#[test]
fn softmax_dim_out_of_range_names_the_op() {
    let x = Var::leaf(Tensor::zeros(&[2, 3]).unwrap(), true);
    for (log, name) in [(false, "softmax"), (true, "log_softmax")] {
        for dim in [2, -3] {
            let r = if log {
                log_softmax(&x, dim)
            } else {
                softmax(&x, dim)
            };
            let Err(e) = r else {
                panic!("dim {dim} should fail")
            };
            let e = e.to_string();
            assert!(
                e.starts_with(&format!("{name}: dim {dim} is out of range"))
                    && e.contains("(2, 3)"),
                "{e}"
            );
        }
    }
    // A 0-d tensor takes dim 0 or -1 (softmax of one element is 1).
    let s = Var::leaf(Tensor::scalar(5.0), false);
    assert_eq!(softmax(&s, -1).unwrap().value().data(), &[1.0]);
    assert_eq!(log_softmax(&s, 0).unwrap().value().data(), &[0.0]);
}
