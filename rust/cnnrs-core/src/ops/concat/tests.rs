use super::*;
use crate::testutil::Rng;

fn tensor(rng: &mut Rng, shape: &[usize]) -> Tensor {
    Tensor::new(shape.to_vec(), rng.normal_vec(shape.iter().product())).unwrap()
}

#[test]
fn forward_and_backward_match_reference_on_random_shapes() {
    let mut rng = Rng::new(21);
    for case in 0..300 {
        let nd = 1 + rng.below(4);
        let base: Vec<usize> = (0..nd).map(|_| rng.below(4)).collect();
        let d = rng.below(nd);
        let k = 1 + rng.below(4);
        let xs: Vec<Tensor> = (0..k)
            .map(|_| {
                let mut s = base.clone();
                s[d] = rng.below(4);
                tensor(&mut rng, &s)
            })
            .collect();
        let refs: Vec<&Tensor> = xs.iter().collect();
        let dim = if rng.below(2) == 0 {
            d as i64
        } else {
            d as i64 - nd as i64
        };
        let want = reference::forward(&refs, dim).unwrap();
        for par in [0, usize::MAX] {
            let got = forward_tuned(&refs, dim, par).unwrap();
            assert_eq!(got, want, "case {case} dim {dim}");
        }
        // Backward: the adjoint of the copy is the split.
        let g = tensor(&mut rng, want.shape());
        let shapes: Vec<Vec<usize>> = xs.iter().map(|x| x.shape().to_vec()).collect();
        let needs: Vec<bool> = (0..k).map(|i| i % 2 == 0 || rng.below(2) == 0).collect();
        let grads = backward(&g, d, &shapes, &needs).unwrap();
        let all = backward(&g, d, &shapes, &vec![true; k]).unwrap();
        // <cat(xs), g> == sum_i <xs_i, grad_i>: the split is the adjoint.
        let dot = |a: &Tensor, b: &Tensor| -> f64 {
            a.data()
                .iter()
                .zip(b.data())
                .map(|(&u, &v)| u as f64 * v as f64)
                .sum()
        };
        let mut parts = 0.0;
        for ((x, gi), (full, need)) in xs.iter().zip(&grads).zip(all.iter().zip(&needs)) {
            assert_eq!(gi.is_some(), *need, "case {case}");
            let full = full.as_ref().unwrap();
            if let Some(gi) = gi {
                assert_eq!(gi, full);
            }
            assert_eq!(full.shape(), x.shape());
            parts += dot(x, full);
        }
        assert!((dot(&want, &g) - parts).abs() < 1e-9, "case {case}");
    }
}

#[test]
fn channel_concat_known_values_and_autograd() {
    // (1, 1, 2, 2) ++ (1, 2, 2, 2) along channels.
    let a = Var::leaf(
        Tensor::new(vec![1, 1, 2, 2], vec![1., 2., 3., 4.]).unwrap(),
        true,
    );
    let b = Var::leaf(
        Tensor::new(vec![1, 2, 2, 2], (5..13).map(|v| v as f32).collect()).unwrap(),
        true,
    );
    let c = Var::leaf(Tensor::zeros(&[1, 0, 2, 2]).unwrap(), false);
    let y = cat(&[a.clone(), c, b.clone()], 1).unwrap();
    assert_eq!(y.grad_fn_name(), Some("CatBackward"));
    assert_eq!(y.shape(), vec![1, 3, 2, 2]);
    assert_eq!(
        y.value().data(),
        &(1..13).map(|v| v as f32).collect::<Vec<_>>()[..]
    );
    let g = Tensor::new(vec![1, 3, 2, 2], (0..12).map(|v| v as f32 * 10.0).collect()).unwrap();
    y.backward(Some(g)).unwrap();
    assert_eq!(a.grad().unwrap().data(), &[0., 10., 20., 30.]);
    assert_eq!(
        b.grad().unwrap().data(),
        &[40., 50., 60., 70., 80., 90., 100., 110.]
    );
    // The same tensor twice: gradients add.
    let y = cat(&[a.clone(), a.clone()], -1).unwrap();
    assert_eq!(y.shape(), vec![1, 1, 2, 4]);
    a.set_grad(None).unwrap();
    y.backward(Some(Tensor::full(&[1, 1, 2, 4], 1.0).unwrap()))
        .unwrap();
    assert_eq!(a.grad().unwrap().data(), &[2., 2., 2., 2.]);
}

#[test]
fn mismatches_are_refused_with_shapes() {
    let t = |s: &[usize]| Tensor::zeros(s).unwrap();
    let err = |xs: &[Tensor], dim| {
        let refs: Vec<&Tensor> = xs.iter().collect();
        let e = forward(&refs, dim).unwrap_err().to_string();
        assert!(e.starts_with("cat: "), "{e}");
        e
    };
    assert_eq!(err(&[], 0), "cat: expected a non-empty list of tensors");
    let e = err(&[t(&[2, 3, 8, 8]), t(&[2, 5, 9, 8])], 1);
    assert_eq!(
        e,
        "cat: sizes of tensors must match except in dimension 1: tensor 0 has shape \
         (2, 3, 8, 8) but tensor 1 has shape (2, 5, 9, 8) (dimension 2: 8 vs 9)"
    );
    let e = err(&[t(&[2, 3]), t(&[2, 3]), t(&[2, 3, 1])], 0);
    assert!(
        e.contains("same number of dimensions") && e.contains("tensor 2 has shape (2, 3, 1)"),
        "{e}"
    );
    let e = err(&[t(&[2, 3]), t(&[2, 3])], 2);
    assert!(
        e.contains("dim 2 is out of range for a tensor of shape (2, 3)"),
        "{e}"
    );
    let e = err(&[t(&[2, 3]), t(&[2, 3])], -3);
    assert!(e.contains("out of range"), "{e}");
    let e = err(&[Tensor::scalar(1.0)], 0);
    assert!(e.contains("zero-dimensional tensor (at position 0)"), "{e}");
}
