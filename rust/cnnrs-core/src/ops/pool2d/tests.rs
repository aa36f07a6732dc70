use super::*;
use crate::testutil::{assert_close, numeric_grad, Rng};

fn params(
    k: [usize; 2],
    s: [usize; 2],
    p: [usize; 2],
    d: [usize; 2],
    ceil: bool,
) -> MaxPool2dParams {
    MaxPool2dParams {
        kernel: k,
        stride: s,
        padding: p,
        dilation: d,
        ceil_mode: ceil,
    }
}

/// Random valid parameters and a 4-D shape they accept.
fn random_case(rng: &mut Rng) -> ([usize; 4], MaxPool2dParams) {
    loop {
        let k = [rng.below(4) + 1, rng.below(4) + 1];
        let p = MaxPool2dParams {
            kernel: k,
            stride: [rng.below(3) + 1, rng.below(3) + 1],
            padding: [rng.below(k[0] / 2 + 1), rng.below(k[1] / 2 + 1)],
            dilation: [rng.below(3) + 1, rng.below(3) + 1],
            ceil_mode: rng.below(2) == 0,
        };
        let shape = [
            rng.below(3) + 1,
            rng.below(3) + 1,
            rng.below(9) + 1,
            rng.below(9) + 1,
        ];
        if p.geometry(&shape).is_ok() {
            return (shape, p);
        }
    }
}

/// Exact equality, NaN equal to NaN (`assert_close` rejects equal
/// infinities, which pooling produces).
fn assert_same(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            x == y || (x.is_nan() && y.is_nan()),
            "{what}: element {i}: {x} vs {y}"
        );
    }
}

fn check_against_reference(x: &[f32], shape: [usize; 4], p: &MaxPool2dParams) {
    let t = Tensor::new(shape.to_vec(), x.to_vec()).unwrap();
    let g = p.geometry(&shape).unwrap();
    let (out, idx) = forward_with_indices(&t, p).unwrap();
    let (want, want_idx) = reference::max_pool2d(x, shape, p, g.h_out, g.w_out);
    assert_eq!(out.shape(), &g.out_shape());
    // A max selects an element: results are exact.
    assert_same(out.data(), &want, &format!("{shape:?} {p:?}"));
    let idx: Vec<i64> = idx
        .iter()
        .map(|&i| if i == NO_INDEX { -1 } else { i as i64 })
        .collect();
    assert_eq!(idx, want_idx, "{shape:?} {p:?}");
    // The index-free kernel gives the same values.
    assert_same(forward(&t, p).unwrap().data(), &want, "no-index forward");
}

#[test]
fn output_size_matches_pytorch() {
    // (input, kernel, stride, padding, dilation, ceil_mode) -> PyTorch's size.
    let cases = [
        (32, 2, 2, 0, 1, false, 16),
        (5, 2, 2, 0, 1, false, 2),
        (5, 2, 2, 0, 1, true, 3),
        (4, 2, 2, 0, 1, true, 2),
        (6, 3, 2, 0, 1, false, 2),
        (6, 3, 2, 0, 1, true, 3),
        // ceil mode would give 3, but the last window would start in the
        // right padding, so it is dropped.
        (5, 2, 3, 1, 1, true, 2),
        (5, 2, 3, 1, 1, false, 2),
        (7, 3, 2, 1, 2, false, 3),
        (112, 3, 2, 1, 1, false, 56),
        (55, 3, 2, 0, 1, false, 27),
        (13, 3, 2, 0, 1, true, 6),
        (1, 3, 1, 1, 1, false, 1),
        (2, 3, 1, 0, 1, false, 0),
        (4, 2, 1, 1, 5, false, 1),
    ];
    for (i, k, s, p, d, ceil, want) in cases {
        assert_eq!(
            params::out_dim(i, k, s, p, d, ceil),
            want,
            "in={i} k={k} s={s} p={p} d={d} ceil={ceil}"
        );
    }
    // Absurd arguments do not overflow.
    assert!(params::out_dim(5, usize::MAX, 1, 0, usize::MAX, false) < 1);
    assert!(params::out_dim(5, 3, usize::MAX, 1, 1, true) >= 1);
}

#[test]
fn forward_matches_reference_on_random_cases() {
    let mut rng = Rng::new(21);
    for _ in 0..400 {
        let (shape, p) = random_case(&mut rng);
        let n: usize = shape.iter().product();
        // Few distinct values so ties are common.
        let x: Vec<f32> = (0..n).map(|_| (rng.below(5) as f32) - 2.0).collect();
        check_against_reference(&x, shape, &p);
        let x = rng.normal_vec(n);
        check_against_reference(&x, shape, &p);
    }
}

#[test]
fn fast_2x2_path_matches_reference() {
    let mut rng = Rng::new(4);
    for ceil in [false, true] {
        for (h, w) in [(2, 2), (4, 6), (5, 7), (3, 2), (8, 9), (33, 31)] {
            let shape = [2, 3, h, w];
            let p = params([2, 2], [2, 2], [0, 0], [1, 1], ceil);
            let n: usize = shape.iter().product();
            let mut x: Vec<f32> = (0..n).map(|_| (rng.below(3) as f32) - 1.0).collect();
            // Sprinkle -inf and NaN.
            for _ in 0..n / 7 {
                let i = rng.below(n);
                x[i] = if rng.below(2) == 0 {
                    f32::NEG_INFINITY
                } else {
                    f32::NAN
                };
            }
            check_against_reference(&x, shape, &p);
        }
    }
    assert!(
        params([2, 2], [2, 2], [0, 0], [1, 1], false)
            .geometry(&[1, 1, 5, 5])
            .unwrap()
            .fast_2x2
    );
    assert!(
        !params([2, 2], [2, 2], [0, 0], [1, 1], true)
            .geometry(&[1, 1, 5, 5])
            .unwrap()
            .fast_2x2
    );
}

#[test]
fn fast_3x3_path_matches_reference() {
    let mut rng = Rng::new(33);
    for ceil in [false, true] {
        for (s, p) in [(2, 1), (2, 0), (1, 1), (3, 1), (1, 0)] {
            for (h, w) in [(3, 3), (4, 6), (7, 5), (9, 12), (17, 16), (5, 41), (6, 58)] {
                let shape = [2, 2, h, w];
                let prm = params([3, 3], [s, s], [p, p], [1, 1], ceil);
                let Ok(g) = prm.geometry(&shape) else {
                    continue;
                };
                assert!(g.fast_3x3);
                let n: usize = shape.iter().product();
                let mut x: Vec<f32> = (0..n).map(|_| (rng.below(4) as f32) - 2.0).collect();
                for _ in 0..n / 9 {
                    let i = rng.below(n);
                    x[i] = if rng.below(2) == 0 {
                        f32::NEG_INFINITY
                    } else {
                        f32::NAN
                    };
                }
                check_against_reference(&x, shape, &prm);
                let x = rng.normal_vec(n);
                check_against_reference(&x, shape, &prm);
            }
        }
    }
}

#[test]
fn parallel_split_matches_reference() {
    // Big enough for several rayon tasks (over PAR_MIN_WORK taps).
    let mut rng = Rng::new(8);
    for p in [
        params([2, 2], [2, 2], [0, 0], [1, 1], false),
        params([3, 3], [2, 2], [1, 1], [1, 1], true),
        params([3, 2], [1, 2], [1, 0], [2, 1], false),
    ] {
        let shape = [4, 16, 40, 36];
        let x = rng.normal_vec(shape.iter().product());
        check_against_reference(&x, shape, &p);
        // Backward through the split too.
        let g = p.geometry(&shape).unwrap();
        let (_, idx) =
            forward_with_indices(&Tensor::new(shape.to_vec(), x.clone()).unwrap(), &p).unwrap();
        let go = rng.normal_vec(idx.len());
        let got = backward(
            &Tensor::new(g.out_shape().to_vec(), go.clone()).unwrap(),
            &idx,
            &shape,
        )
        .unwrap();
        let idx64: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
        let want = reference::max_pool2d_backward(&go, &idx64, shape, g.h_out, g.w_out);
        assert_close(got.data(), &want, 1e-6, 1e-6, "parallel backward");
    }
}

#[test]
fn ties_pick_first_and_nan_wins_as_in_pytorch() {
    let p = params([2, 2], [2, 2], [0, 0], [1, 1], false);
    let pg = params([2, 2], [2, 2], [0, 0], [1, 1], true); // generic path (odd size)
                                                           // One 2x2 window of equal values: index of the first.
    let x = Tensor::new(vec![1, 1, 2, 2], vec![3.0; 4]).unwrap();
    let (out, idx) = forward_with_indices(&x, &p).unwrap();
    assert_eq!((out.data(), idx.as_slice()), (&[3.0][..], &[0u32][..]));
    // NaN wins; with two NaNs the last one is kept (PyTorch's `val > max ||
    // isnan(val)` update).
    let x = Tensor::new(vec![1, 1, 2, 2], vec![1.0, f32::NAN, 5.0, f32::NAN]).unwrap();
    let (out, idx) = forward_with_indices(&x, &p).unwrap();
    assert!(out.data()[0].is_nan());
    assert_eq!(idx, vec![3]);
    let x = Tensor::new(
        vec![1, 1, 3, 3],
        vec![1.0, f32::NAN, 0.0, 5.0, f32::NAN, 0.0, 0.0, 0.0, 0.0],
    )
    .unwrap();
    let (out, idx) = forward_with_indices(&x, &pg).unwrap();
    assert!(out.data()[0].is_nan());
    assert_eq!(idx[0], 4);
    // All -inf: output -inf at the first element.
    let x = Tensor::new(vec![1, 1, 2, 2], vec![f32::NEG_INFINITY; 4]).unwrap();
    let (out, idx) = forward_with_indices(&x, &pg).unwrap();
    assert_eq!(
        (out.data(), idx.as_slice()),
        (&[f32::NEG_INFINITY][..], &[0u32][..])
    );
}

#[test]
fn window_of_only_padding_gives_minus_inf_and_no_gradient() {
    // Width: taps at -1 and 4 of a width-4 input, both outside.
    let p = params([1, 2], [1, 1], [0, 1], [1, 5], false);
    let x = Var::leaf(
        Tensor::new(vec![1, 1, 1, 4], vec![1.0, 2.0, 3.0, 4.0]).unwrap(),
        true,
    );
    let (y, idx) = max_pool2d_with_indices(&x, &p).unwrap();
    assert_eq!(y.shape(), vec![1, 1, 1, 1]);
    assert_eq!(y.value().data(), &[f32::NEG_INFINITY]);
    assert_eq!(idx, vec![-1]);
    y.backward(Some(Tensor::full(&[1, 1, 1, 1], 1.0).unwrap()))
        .unwrap();
    assert_eq!(x.grad().unwrap().data(), &[0.0; 4]);
}

#[test]
fn backward_matches_reference_and_finite_differences() {
    let mut rng = Rng::new(33);
    for case in 0..120 {
        let (shape, p) = random_case(&mut rng);
        let n: usize = shape.iter().product();
        // Distinct values 0.05 apart, so a step of 1e-3 never changes an argmax.
        let mut vals: Vec<f32> = (0..n).map(|i| i as f32 * 0.05 - 1.0).collect();
        for i in (1..n).rev() {
            vals.swap(i, rng.below(i + 1));
        }
        let g = p.geometry(&shape).unwrap();
        let m = g.plane_out() * g.planes();
        let w = rng.normal_vec(m);
        let x = Var::leaf(Tensor::new(shape.to_vec(), vals.clone()).unwrap(), true);
        let y = max_pool2d(&x, &p).unwrap();
        assert_eq!(y.grad_fn_name(), Some("MaxPool2DWithIndicesBackward"));
        y.backward(Some(
            Tensor::new(g.out_shape().to_vec(), w.clone()).unwrap(),
        ))
        .unwrap();
        let got = x.grad().unwrap();

        let (_, ridx) = reference::max_pool2d(&vals, shape, &p, g.h_out, g.w_out);
        let want = reference::max_pool2d_backward(&w, &ridx, shape, g.h_out, g.w_out);
        assert_close(got.data(), &want, 1e-6, 1e-6, "backward vs reference");

        if case % 3 == 0 {
            let x64: Vec<f64> = vals.iter().map(|&v| v as f64).collect();
            let num = numeric_grad(&x64, 1e-3, |xs| {
                let xf: Vec<f32> = xs.iter().map(|&v| v as f32).collect();
                let (out, _) = reference::max_pool2d(&xf, shape, &p, g.h_out, g.w_out);
                // Windows of only padding are a constant -inf: no gradient.
                out.iter()
                    .zip(&w)
                    .filter(|(o, _)| o.is_finite())
                    .map(|(&o, &w)| o as f64 * w as f64)
                    .sum()
            });
            let num: Vec<f32> = num.iter().map(|&v| v as f32).collect();
            assert_close(
                got.data(),
                &num,
                1e-3,
                1e-3,
                "backward vs finite differences",
            );
        }
    }
}

#[test]
fn no_grad_path_gives_same_values() {
    let mut rng = Rng::new(2);
    let p = params([3, 3], [2, 2], [1, 1], [1, 1], false);
    let t = Tensor::new(vec![2, 3, 9, 8], rng.normal_vec(2 * 3 * 72)).unwrap();
    let a = max_pool2d(&Var::leaf(t.clone(), false), &p).unwrap();
    let b = max_pool2d(&Var::leaf(t, true), &p).unwrap();
    assert!(a.is_leaf() && !a.requires_grad());
    assert_eq!(a.value().data(), b.value().data());
}

fn err(shape: &[usize], p: MaxPool2dParams) -> String {
    let x = Var::leaf(Tensor::zeros(shape).unwrap(), true);
    let Err(e) = max_pool2d(&x, &p) else {
        panic!("{shape:?} {p:?} should fail");
    };
    let e = e.to_string();
    assert!(e.starts_with("max_pool2d: "), "{e}");
    e
}

#[test]
fn errors_name_the_op_and_the_problem() {
    let ok = params([2, 2], [2, 2], [0, 0], [1, 1], false);
    let e = err(&[2, 3, 4], ok);
    assert!(e.contains("4-D") && e.contains("(2, 3, 4)"), "{e}");
    let e = err(&[1, 1, 4, 4], params([0, 2], [1, 1], [0, 0], [1, 1], false));
    assert!(
        e.contains("kernel_size must be greater than zero") && e.contains("(0, 2)"),
        "{e}"
    );
    let e = err(&[1, 1, 4, 4], params([2, 2], [2, 0], [0, 0], [1, 1], false));
    assert!(e.contains("stride must be greater than zero"), "{e}");
    let e = err(&[1, 1, 4, 4], params([2, 2], [2, 2], [0, 0], [0, 1], false));
    assert!(e.contains("dilation must be greater than zero"), "{e}");
    let e = err(&[1, 1, 4, 4], params([3, 3], [1, 1], [1, 2], [1, 1], false));
    assert!(
        e.contains("padding should be at most half of kernel_size") && e.contains("(1, 2)"),
        "{e}"
    );
    let e = err(&[1, 1, 2, 5], params([3, 3], [1, 1], [0, 0], [1, 1], false));
    assert!(
        e.contains("output size is too small")
            && e.contains("(1, 1, 2, 5)")
            && e.contains("(0, 3)"),
        "{e}"
    );
    // Zero-size spatial dims are an output-size error, not a crash.
    let e = err(&[1, 1, 0, 5], ok);
    assert!(e.contains("output size is too small"), "{e}");
    // Absurd values do not overflow.
    let e = err(
        &[1, 1, 4, 4],
        params([usize::MAX, 2], [1, 1], [0, 0], [usize::MAX, 1], false),
    );
    assert!(e.contains("output size is too small"), "{e}");
    // Planes too large for 32-bit indices (checked before allocating).
    let e = ok.geometry(&[1, 1, 70_000, 70_000]).unwrap_err();
    assert!(
        matches!(e, CnnError::Unsupported(_)) && e.to_string().contains("max_pool2d"),
        "{e}"
    );
    // Empty batch is fine.
    let y = max_pool2d(&Var::leaf(Tensor::zeros(&[0, 3, 4, 4]).unwrap(), true), &ok).unwrap();
    assert_eq!(y.shape(), vec![0, 3, 2, 2]);
}
