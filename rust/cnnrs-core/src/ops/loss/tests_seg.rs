//! Tests of the segmentation losses: weighted cross-entropy,
//! binary_cross_entropy_with_logits, dice_loss.

use std::sync::Arc;

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
fn reduce(per: &[f64], red: Reduction) -> Vec<f64> {
    match red {
        Reduction::None => per.to_vec(),
        Reduction::Sum => vec![per.iter().sum()],
        Reduction::Mean => vec![per.iter().sum::<f64>() / per.len() as f64],
    }
}
fn dot(l: &[f64], w: &[f32]) -> f64 {
    l.iter().zip(w).map(|(a, &b)| a * b as f64).sum()
}
const REDS: [Reduction; 3] = [Reduction::None, Reduction::Sum, Reduction::Mean];

/// A random `(N, C, H, W)` segmentation case: shape, labels (some ignored).
fn seg_case(rng: &mut Rng, min_c: usize, ignore: i64) -> (Vec<usize>, Vec<i64>) {
    let (n, c, h, w) = (
        rng.below(3) + 1,
        rng.below(4) + min_c,
        rng.below(4) + 1,
        rng.below(4) + 1,
    );
    let labels = (0..n * h * w)
        .map(|_| {
            if rng.below(6) == 0 {
                ignore
            } else {
                rng.below(c) as i64
            }
        })
        .collect();
    (vec![n, c, h, w], labels)
}

#[test]
fn weighted_cross_entropy_matches_reference_and_finite_differences() {
    let mut rng = Rng::new(31);
    for case in 0..120 {
        let ignore = if case % 2 == 0 { -100 } else { 0 };
        let (shape, labels) = seg_case(&mut rng, 1, ignore);
        let (n, c, inner) = (shape[0], shape[1], shape[2] * shape[3]);
        let tshape = vec![shape[0], shape[2], shape[3]];
        let x: Vec<f32> = rng
            .normal_vec(n * c * inner)
            .iter()
            .map(|v| v * 2.0)
            .collect();
        // Weights in [0, 10), some exactly zero.
        let w: Vec<f32> = (0..n * inner)
            .map(|_| {
                if rng.below(5) == 0 {
                    0.0
                } else {
                    rng.uniform() * 10.0
                }
            })
            .collect();
        let wsum: f64 = labels
            .iter()
            .zip(&w)
            .filter(|(&t, _)| t != ignore)
            .map(|(_, &w)| w as f64)
            .sum();
        let weighted = |xs: &[f64]| -> Vec<f64> {
            reference::cross_entropy_none(xs, &labels, n, c, inner, ignore)
                .iter()
                .zip(&w)
                .map(|(l, &w)| l * w as f64)
                .collect()
        };
        let wt = Arc::new(Tensor::new(tshape.clone(), w.clone()).unwrap());
        for red in REDS {
            let want_of = |xs: &[f64]| -> Vec<f64> {
                let per = weighted(xs);
                match red {
                    Reduction::Mean => vec![per.iter().sum::<f64>() / wsum],
                    _ => reduce(&per, red),
                }
            };
            let want = want_of(&to64(&x));
            let xv = Var::leaf(Tensor::new(shape.clone(), x.clone()).unwrap(), true);
            let y = cross_entropy_weighted(&xv, &labels, &tshape, Some(wt.clone()), red, ignore)
                .unwrap();
            assert_close(y.value().data(), &to32(&want), 1e-5, 1e-5, "weighted ce");
            if red == Reduction::Mean && wsum == 0.0 {
                assert!(y.value().data()[0].is_nan());
                continue;
            }
            let go = rng.normal_vec(want.len());
            y.backward(Some(Tensor::new(y.shape(), go.clone()).unwrap()))
                .unwrap();
            let num = numeric_grad(&to64(&x), 1e-5, |xs| dot(&want_of(xs), &go));
            assert_close(
                xv.grad().unwrap().data(),
                &to32(&num),
                1e-4,
                1e-5,
                "weighted ce grad",
            );
        }
        // All-ones weights give exactly the unweighted loss.
        let ones = Arc::new(Tensor::full(&tshape, 1.0).unwrap());
        let xv = Var::leaf(Tensor::new(shape.clone(), x.clone()).unwrap(), false);
        for red in REDS {
            let a = cross_entropy_weighted(&xv, &labels, &tshape, Some(ones.clone()), red, ignore)
                .unwrap();
            let b = cross_entropy(&xv, &labels, &tshape, red, ignore).unwrap();
            // Equal (NaN where every label is ignored and the mean is 0/0).
            assert_close(a.value().data(), b.value().data(), 0.0, 0.0, "ones weights");
        }
    }
}

#[test]
fn weighted_cross_entropy_errors() {
    let x = Var::leaf(Tensor::zeros(&[2, 3, 4, 5]).unwrap(), true);
    let labels = vec![0i64; 40];
    let run = |w: Tensor| {
        cross_entropy_weighted(
            &x,
            &labels,
            &[2, 4, 5],
            Some(Arc::new(w)),
            Reduction::Mean,
            -100,
        )
        .unwrap_err()
        .to_string()
    };
    let e = run(Tensor::zeros(&[2, 5, 4]).unwrap());
    assert!(
        e.starts_with("cross_entropy: pixel_weight shape (2, 5, 4)")
            && e.contains("(2, 4, 5)")
            && e.contains("(2, 3, 4, 5)"),
        "{e}"
    );
    let mut w = Tensor::zeros(&[2, 4, 5]).unwrap();
    w.data_mut()[3] = -1.0;
    assert!(run(w.clone()).contains("non-negative, got -1"));
    w.data_mut()[3] = f32::NAN;
    assert!(run(w).contains("finite"));
}

#[test]
fn bce_with_logits_matches_reference_and_finite_differences() {
    let mut rng = Rng::new(5);
    for case in 0..150 {
        let nd = rng.below(4) + 1;
        let shape: Vec<usize> = (0..nd).map(|_| rng.below(4) + 1).collect();
        let numel: usize = shape.iter().product();
        let x: Vec<f32> = rng.normal_vec(numel).iter().map(|v| v * 3.0).collect();
        // Soft targets in [0, 1], half of the cases binary.
        let y: Vec<f32> = (0..numel)
            .map(|_| {
                let u = rng.uniform();
                if case % 2 == 0 {
                    (u < 0.5) as u8 as f32
                } else {
                    u
                }
            })
            .collect();
        // A weight and a pos_weight that broadcast: a random suffix of the
        // shape with some dims set to 1, or none.
        let bshape = |rng: &mut Rng| -> Option<Vec<usize>> {
            if rng.below(3) == 0 {
                return None;
            }
            let k = rng.below(nd + 1);
            Some(
                shape[nd - k..]
                    .iter()
                    .map(|&d| if rng.below(2) == 0 { 1 } else { d })
                    .collect(),
            )
        };
        let (ws, ps) = (bshape(&mut rng), bshape(&mut rng));
        let mk = |s: &Option<Vec<usize>>, rng: &mut Rng| {
            s.as_ref().map(|s| {
                let k: usize = s.iter().product();
                Tensor::new(s.clone(), (0..k).map(|_| rng.uniform() * 3.0).collect()).unwrap()
            })
        };
        let (w, pw) = (mk(&ws, &mut rng), mk(&ps, &mut rng));
        let expand = |t: &Option<Tensor>| -> Vec<f64> {
            match t {
                None => vec![1.0; numel],
                Some(t) => to64(
                    crate::ops::elementwise::binary_forward(
                        crate::ops::elementwise::BinaryOp::Add,
                        &Tensor::zeros(&shape).unwrap(),
                        t,
                    )
                    .unwrap()
                    .data(),
                ),
            }
        };
        let (we, pe) = (expand(&w), expand(&pw));
        for red in REDS {
            let f = |xs: &[f64], ys: &[f64]| {
                reduce(&reference::bce_with_logits_none(xs, ys, &we, &pe), red)
            };
            let want = f(&to64(&x), &to64(&y));
            let xv = Var::leaf(Tensor::new(shape.clone(), x.clone()).unwrap(), true);
            let yv = Var::leaf(Tensor::new(shape.clone(), y.clone()).unwrap(), true);
            let out =
                binary_cross_entropy_with_logits(&xv, &yv, w.as_ref(), pw.as_ref(), red).unwrap();
            assert_close(out.value().data(), &to32(&want), 1e-5, 1e-5, "bce");
            let go = rng.normal_vec(want.len());
            out.backward(Some(Tensor::new(out.shape(), go.clone()).unwrap()))
                .unwrap();
            let (x64, y64) = (to64(&x), to64(&y));
            let nx = numeric_grad(&x64, 1e-5, |p| dot(&f(p, &y64), &go));
            let ny = numeric_grad(&y64, 1e-5, |p| dot(&f(&x64, p), &go));
            assert_close(xv.grad().unwrap().data(), &to32(&nx), 1e-4, 1e-5, "bce dx");
            assert_close(yv.grad().unwrap().data(), &to32(&ny), 1e-4, 1e-5, "bce dy");
        }
    }
}

#[test]
fn bce_with_logits_is_stable_for_huge_logits() {
    // log(1 + exp(100)) overflows naively; the stable form gives 100.
    let x = Var::leaf(
        Tensor::new(vec![4], vec![100.0, -100.0, 100.0, -100.0]).unwrap(),
        true,
    );
    let y = Var::leaf(
        Tensor::new(vec![4], vec![0.0, 1.0, 1.0, 0.0]).unwrap(),
        false,
    );
    let l = binary_cross_entropy_with_logits(&x, &y, None, None, Reduction::None).unwrap();
    assert_close(
        l.value().data(),
        &[100.0, 100.0, 0.0, 0.0],
        1e-6,
        1e-6,
        "bce big",
    );
    l.backward(Some(Tensor::full(&[4], 1.0).unwrap())).unwrap();
    assert_close(
        x.grad().unwrap().data(),
        &[1.0, -1.0, 0.0, 0.0],
        1e-6,
        1e-6,
        "bce big dx",
    );
}

#[test]
fn bce_with_logits_errors_name_op_and_shapes() {
    let x = Var::leaf(Tensor::zeros(&[2, 3]).unwrap(), true);
    let y = Var::leaf(Tensor::zeros(&[3, 2]).unwrap(), false);
    let e = binary_cross_entropy_with_logits(&x, &y, None, None, Reduction::Mean)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("binary_cross_entropy_with_logits: target shape (3, 2)")
            && e.contains("(2, 3)"),
        "{e}"
    );
    let y = Var::leaf(Tensor::zeros(&[2, 3]).unwrap(), false);
    let pw = Tensor::zeros(&[2]).unwrap();
    let e = binary_cross_entropy_with_logits(&x, &y, None, Some(&pw), Reduction::Mean)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("pos_weight of shape (2,) does not broadcast") && e.contains("(2, 3)"),
        "{e}"
    );
    // A weight that broadcasts to a larger shape than the input is refused.
    let w = Tensor::zeros(&[4, 2, 3]).unwrap();
    let e = binary_cross_entropy_with_logits(&x, &y, Some(&w), None, Reduction::Mean)
        .unwrap_err()
        .to_string();
    assert!(e.contains("weight of shape (4, 2, 3)"), "{e}");
}

#[test]
fn dice_loss_softmax_matches_reference_and_finite_differences() {
    let mut rng = Rng::new(77);
    for case in 0..120 {
        let ignore = if case % 3 == 0 { 1 } else { -100 };
        let (shape, labels) = seg_case(&mut rng, 2, ignore);
        let (n, c, inner) = (shape[0], shape[1], shape[2] * shape[3]);
        let tshape = vec![shape[0], shape[2], shape[3]];
        let x: Vec<f32> = rng
            .normal_vec(n * c * inner)
            .iter()
            .map(|v| v * 2.0)
            .collect();
        let smooth = [1.0, 0.5, 1e-3][case % 3];
        let include_background = case % 4 != 1;
        let c0 = usize::from(!include_background);
        for red in REDS {
            let f = |xs: &[f64]| {
                let per =
                    reference::dice_none(xs, n, c, inner, Some((&labels, ignore)), &[], smooth, c0);
                reduce(&per, red)
            };
            let want = f(&to64(&x));
            let xv = Var::leaf(Tensor::new(shape.clone(), x.clone()).unwrap(), true);
            let target = DiceTarget::Labels {
                labels: labels.clone(),
                shape: tshape.clone(),
                ignore_index: ignore,
            };
            let params = DiceParams {
                smooth,
                include_background,
                reduction: red,
            };
            let out = dice_loss(&xv, target, params).unwrap();
            if red == Reduction::None {
                assert_eq!(out.shape(), vec![n, c - c0]);
            }
            assert_close(out.value().data(), &to32(&want), 1e-5, 1e-6, "dice");
            let go = rng.normal_vec(want.len());
            out.backward(Some(Tensor::new(out.shape(), go.clone()).unwrap()))
                .unwrap();
            let num = numeric_grad(&to64(&x), 1e-5, |p| dot(&f(p), &go));
            // Small smooth terms make the loss steep; scale the tolerance.
            assert_close(
                xv.grad().unwrap().data(),
                &to32(&num),
                1e-3,
                1e-4,
                "dice grad",
            );
        }
    }
}

#[test]
fn dice_loss_sigmoid_matches_reference_and_finite_differences() {
    let mut rng = Rng::new(78);
    for case in 0..80 {
        let (shape, _) = seg_case(&mut rng, 1, -100);
        let (n, c, inner) = (shape[0], shape[1], shape[2] * shape[3]);
        let numel = n * c * inner;
        let x: Vec<f32> = rng.normal_vec(numel).iter().map(|v| v * 2.0).collect();
        let y: Vec<f32> = (0..numel)
            .map(|_| {
                let u = rng.uniform();
                if case % 2 == 0 {
                    (u < 0.4) as u8 as f32
                } else {
                    u
                }
            })
            .collect();
        let y64 = to64(&y);
        let yt = Arc::new(Tensor::new(shape.clone(), y.clone()).unwrap());
        for red in REDS {
            let f = |xs: &[f64]| {
                reduce(
                    &reference::dice_none(xs, n, c, inner, None, &y64, 1.0, 0),
                    red,
                )
            };
            let want = f(&to64(&x));
            let xv = Var::leaf(Tensor::new(shape.clone(), x.clone()).unwrap(), true);
            let params = DiceParams {
                smooth: 1.0,
                include_background: true,
                reduction: red,
            };
            let out = dice_loss(&xv, DiceTarget::Probs(yt.clone()), params).unwrap();
            assert_close(out.value().data(), &to32(&want), 1e-5, 1e-6, "dice sigmoid");
            let go = rng.normal_vec(want.len());
            out.backward(Some(Tensor::new(out.shape(), go.clone()).unwrap()))
                .unwrap();
            let num = numeric_grad(&to64(&x), 1e-5, |p| dot(&f(p), &go));
            assert_close(
                xv.grad().unwrap().data(),
                &to32(&num),
                1e-4,
                1e-5,
                "dice sigmoid grad",
            );
        }
    }
}

#[test]
fn dice_loss_perfect_prediction_is_near_zero() {
    // Logits of +-20 matching the labels: Dice ~ 1 for every present class.
    let labels = vec![0i64, 1, 1, 0, 1, 0];
    let mut x = vec![0.0f32; 12];
    for (i, &l) in labels.iter().enumerate() {
        x[l as usize * 6 + i] = 20.0;
        x[(1 - l as usize) * 6 + i] = -20.0;
    }
    let xv = Var::leaf(Tensor::new(vec![1, 2, 2, 3], x).unwrap(), false);
    let target = DiceTarget::Labels {
        labels,
        shape: vec![1, 2, 3],
        ignore_index: -100,
    };
    let params = DiceParams {
        smooth: 0.0,
        include_background: true,
        reduction: Reduction::Mean,
    };
    let l = dice_loss(&xv, target, params).unwrap();
    assert!(l.value().data()[0].abs() < 1e-6, "{:?}", l.value().data());
}

#[test]
fn dice_loss_errors() {
    let p = DiceParams {
        smooth: 1.0,
        include_background: true,
        reduction: Reduction::Mean,
    };
    let labels = |v: Vec<i64>, s: Vec<usize>| DiceTarget::Labels {
        labels: v,
        shape: s,
        ignore_index: -100,
    };
    let err = |x: &[usize], t: DiceTarget, p: DiceParams| {
        let xv = Var::leaf(Tensor::zeros(x).unwrap(), true);
        dice_loss(&xv, t, p).unwrap_err().to_string()
    };
    let e = err(&[2, 3, 4, 5], labels(vec![0; 40], vec![2, 5, 4]), p);
    assert!(
        e.starts_with("dice_loss: target shape (2, 5, 4)") && e.contains("(2, 3, 4, 5)"),
        "{e}"
    );
    let mut bad = vec![0; 40];
    bad[7] = 3;
    let e = err(&[2, 3, 4, 5], labels(bad, vec![2, 4, 5]), p);
    assert!(e.contains("label 3 is out of range for 3 classes"), "{e}");
    let e = err(&[2, 1, 4, 5], labels(vec![0; 40], vec![2, 4, 5]), p);
    assert!(e.starts_with("dice_loss: softmax over 1 class"), "{e}");
    let e = err(&[4], labels(vec![0], vec![]), p);
    assert!(e.starts_with("dice_loss: input must be (N, C, ...)"), "{e}");
    let y = Arc::new(Tensor::full(&[2, 1, 3], 2.0).unwrap());
    let e = err(&[2, 1, 3], DiceTarget::Probs(y), p);
    assert!(e.contains("targets must be in [0, 1], got 2"), "{e}");
    let y = Arc::new(Tensor::zeros(&[2, 1, 4]).unwrap());
    let e = err(&[2, 1, 3], DiceTarget::Probs(y.clone()), p);
    assert!(e.contains("(2, 1, 3)") && e.contains("(2, 1, 4)"), "{e}");
    let e = err(
        &[2, 1, 4],
        DiceTarget::Probs(y.clone()),
        DiceParams {
            include_background: false,
            ..p
        },
    );
    assert!(e.contains("include_background=False"), "{e}");
    let e = err(
        &[2, 1, 4],
        DiceTarget::Probs(y),
        DiceParams { smooth: -1.0, ..p },
    );
    assert!(e.contains("smooth must be"), "{e}");
}
