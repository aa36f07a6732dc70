use super::*;
use crate::testutil::{assert_close, Rng};

fn params(training: bool) -> BatchNormParams {
    BatchNormParams {
        training,
        momentum: 0.1,
        eps: 1e-5,
    }
}

#[test]
fn training_forward_backward_match_reference() {
    let mut rng = Rng::new(21);
    for case in 0..25 {
        let (n, c) = (rng.below(4) + 1, rng.below(5) + 1);
        let (h, w) = (rng.below(5) + 1, rng.below(5) + 1);
        let hw = h * w;
        if n * hw < 2 {
            continue;
        }
        let shape = if case % 3 == 0 {
            vec![n, c]
        } else {
            vec![n, c, h, w]
        };
        let hw = if case % 3 == 0 { 1 } else { hw };
        if n * hw < 2 {
            continue;
        }
        let numel = n * c * hw;
        let x = Tensor::new(
            shape.clone(),
            rng.normal_vec(numel)
                .iter()
                .map(|v| v * 3.0 + 1.0)
                .collect(),
        )
        .unwrap();
        let gamma = Tensor::new(vec![c], rng.normal_vec(c)).unwrap();
        let beta = Tensor::new(vec![c], rng.normal_vec(c)).unwrap();
        let mut rm = Tensor::zeros(&[c]).unwrap();
        let mut rv = Tensor::full(&[c], 1.0).unwrap();
        let (y, saved) = forward(
            &x,
            Some(&gamma),
            Some(&beta),
            Some((&mut rm, &mut rv)),
            &params(true),
        )
        .unwrap();
        let (yr, mr, vr) =
            reference::forward_train(x.data(), n, c, hw, gamma.data(), beta.data(), 1e-5);
        assert_close(y.data(), &yr, 1e-4, 1e-4, "bn forward");
        let m = (n * hw) as f32;
        let rm_want: Vec<f32> = mr.iter().map(|mu| 0.1 * mu).collect();
        let rv_want: Vec<f32> = vr.iter().map(|v| 0.9 + 0.1 * v * m / (m - 1.0)).collect();
        assert_close(rm.data(), &rm_want, 1e-5, 1e-5, "running mean");
        assert_close(rv.data(), &rv_want, 1e-4, 1e-5, "running var");
        let g = Tensor::new(shape.clone(), rng.normal_vec(numel)).unwrap();
        let (dx, dg, db) = backward(&x, Some(&gamma), &g, &saved).unwrap();
        let (dxr, dgr, dbr) =
            reference::backward_train(x.data(), g.data(), n, c, hw, gamma.data(), 1e-5);
        assert_close(dx.data(), &dxr, 1e-3, 1e-4, "bn dx");
        assert_close(dg.data(), &dgr, 1e-4, 1e-4, "bn dgamma");
        assert_close(db.data(), &dbr, 1e-4, 1e-4, "bn dbeta");
    }
}

#[test]
fn eval_uses_running_stats_and_gradient_is_affine() {
    let x = Tensor::new(vec![2, 2, 1, 1], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    let mut rm = Tensor::new(vec![2], vec![1.0, 2.0]).unwrap();
    let mut rv = Tensor::new(vec![2], vec![4.0, 1.0]).unwrap();
    let (y, saved) = forward(
        &x,
        None,
        None,
        Some((&mut rm, &mut rv)),
        &BatchNormParams {
            eps: 0.0,
            ..params(false)
        },
    )
    .unwrap();
    assert_eq!(y.data(), &[0.0, 0.0, 1.0, 2.0]);
    assert_eq!(rm.data(), &[1.0, 2.0]);
    let g = Tensor::full(&[2, 2, 1, 1], 1.0).unwrap();
    let (dx, _, _) = backward(&x, None, &g, &saved).unwrap();
    assert_eq!(dx.data(), &[0.5, 1.0, 0.5, 1.0]);
}

#[test]
fn errors_name_the_op_and_shapes() {
    let x = Tensor::zeros(&[1, 3, 1, 1]).unwrap();
    let e = forward(&x, None, None, None, &params(true))
        .unwrap_err()
        .to_string();
    assert!(e.contains("more than 1 value per channel"), "{e}");
    let x = Tensor::zeros(&[2, 3, 2, 2]).unwrap();
    let g = Tensor::zeros(&[4]).unwrap();
    let e = forward(&x, Some(&g), None, None, &params(true))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("batch_norm: weight has shape (4,)") && e.contains("(2, 3, 2, 2)"),
        "{e}"
    );
    let e = forward(
        &Tensor::zeros(&[3]).unwrap(),
        None,
        None,
        None,
        &params(true),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("batch_norm: expected a 2-D, 3-D or 4-D"), "{e}");
    let e = forward(&x, None, None, None, &params(false))
        .unwrap_err()
        .to_string();
    assert!(e.contains("eval mode needs running_mean"), "{e}");
}

#[test]
fn autograd_updates_running_stats_and_flows_to_all_inputs() {
    let mut rng = Rng::new(2);
    let x = Var::leaf(
        Tensor::new(vec![3, 2, 2, 2], rng.normal_vec(24)).unwrap(),
        true,
    );
    let gamma = Var::leaf(Tensor::full(&[2], 1.5).unwrap(), true);
    let beta = Var::leaf(Tensor::zeros(&[2]).unwrap(), true);
    let rm = Var::leaf(Tensor::zeros(&[2]).unwrap(), false);
    let rv = Var::leaf(Tensor::full(&[2], 1.0).unwrap(), false);
    let y = batch_norm(
        &x,
        Some(&rm),
        Some(&rv),
        Some(&gamma),
        Some(&beta),
        &params(true),
    )
    .unwrap();
    assert!(rm.value().data().iter().any(|&v| v != 0.0));
    let w = Tensor::new(vec![3, 2, 2, 2], rng.normal_vec(24)).unwrap();
    y.backward(Some(w)).unwrap();
    assert_eq!(x.grad().unwrap().shape(), &[3, 2, 2, 2]);
    assert_eq!(gamma.grad().unwrap().shape(), &[2]);
    assert_eq!(beta.grad().unwrap().shape(), &[2]);
    // Gradient of a batch-normalised output w.r.t. x sums to ~0 per channel.
    let y2 = batch_norm(&x, None, None, None, None, &params(true)).unwrap();
    let xg = Var::leaf((*x.value()).clone(), true);
    let y3 = batch_norm(&xg, None, None, None, None, &params(true)).unwrap();
    drop(y2);
    y3.backward(Some(Tensor::full(&[3, 2, 2, 2], 1.0).unwrap()))
        .unwrap();
    assert!(xg.grad().unwrap().data().iter().all(|v| v.abs() < 1e-4));
}
