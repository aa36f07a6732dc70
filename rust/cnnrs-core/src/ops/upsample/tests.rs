use super::*;
use crate::testutil::{assert_close, numeric_grad, Rng};

const MODES: [InterpMode; 3] = [
    InterpMode::Nearest,
    InterpMode::Bilinear,
    InterpMode::Bicubic,
];

fn tensor(rng: &mut Rng, shape: &[usize]) -> Tensor {
    Tensor::new(shape.to_vec(), rng.normal_vec(shape.iter().product())).unwrap()
}

/// A random shape and request: sizes up or down, integer and non-integer
/// scale factors, recomputed or not, align_corners both ways.
fn random_case(rng: &mut Rng) -> (Vec<usize>, InterpolateParams) {
    let mode = MODES[rng.below(3)];
    let x = vec![
        rng.below(3),
        1 + rng.below(3),
        1 + rng.below(8),
        1 + rng.below(8),
    ];
    let align_corners = match mode {
        InterpMode::Nearest => None,
        _ => [None, Some(false), Some(true)][rng.below(3)],
    };
    const FACTORS: [f64; 8] = [0.5, 0.75, 1.0, 1.2, 1.5, 2.0, 2.5, 3.0];
    let mut p = if rng.below(2) == 0 {
        InterpolateParams::to_size(mode, 1 + rng.below(12), 1 + rng.below(12), align_corners)
    } else {
        let (sh, sw) = (FACTORS[rng.below(8)], FACTORS[rng.below(8)]);
        let mut p = InterpolateParams::by_scale(mode, sh, sw, align_corners);
        if rng.below(3) == 0 {
            p.recompute_scale_factor = Some(true);
        }
        p
    };
    // Scale factors below 1 can round an axis to 0: take the size then.
    if InterpGeom::new(&x, &p).is_err() {
        p = InterpolateParams::to_size(mode, 1 + rng.below(5), 1 + rng.below(5), align_corners);
    }
    (x, p)
}

#[test]
fn forward_matches_reference_on_random_shapes() {
    let mut rng = Rng::new(11);
    for case in 0..400 {
        let (xs, p) = random_case(&mut rng);
        let x = tensor(&mut rng, &xs);
        let want = reference::forward(&x, &p).unwrap();
        for par in [0, usize::MAX] {
            let got = forward_tuned(&x, &p, par).unwrap();
            assert_eq!(got.shape(), want.shape(), "case {case} {xs:?} {p:?}");
            assert_close(
                got.data(),
                want.data(),
                1e-5,
                1e-5,
                &format!("case {case} {xs:?} {p:?}"),
            );
        }
    }
}

#[test]
fn backward_matches_reference_on_random_shapes() {
    let mut rng = Rng::new(12);
    for case in 0..400 {
        let (xs, p) = random_case(&mut rng);
        let out = InterpGeom::new(&xs, &p).unwrap().out_shape();
        let dy = tensor(&mut rng, &out);
        let want = reference::backward(&xs, &dy, &p).unwrap();
        let serial = backward_tuned(&xs, &dy, &p, usize::MAX).unwrap();
        let parallel = backward_tuned(&xs, &dy, &p, 0).unwrap();
        // Each input gathers up to (out/in)^2 * 16 weighted terms.
        assert_close(
            serial.data(),
            want.data(),
            1e-5,
            1e-4,
            &format!("case {case} {xs:?} {p:?}"),
        );
        assert_eq!(
            serial, parallel,
            "case {case}: thread split changed the bits"
        );
    }
}

/// Loss `sum(interpolate(x) * r)`; its gradient by central differences.
#[test]
fn gradients_match_finite_differences() {
    let mut rng = Rng::new(13);
    let configs = [
        InterpolateParams::to_size(InterpMode::Nearest, 5, 3, None),
        InterpolateParams::by_scale(InterpMode::Nearest, 1.7, 0.6, None),
        InterpolateParams::to_size(InterpMode::Bilinear, 6, 2, Some(false)),
        InterpolateParams::to_size(InterpMode::Bilinear, 7, 5, Some(true)),
        InterpolateParams::by_scale(InterpMode::Bilinear, 1.5, 2.5, None),
        InterpolateParams::to_size(InterpMode::Bicubic, 7, 2, Some(false)),
        InterpolateParams::to_size(InterpMode::Bicubic, 6, 8, Some(true)),
        InterpolateParams::by_scale(InterpMode::Bicubic, 0.75, 2.0, None),
    ];
    let xs = [2, 1, 4, 3];
    for p in configs {
        let x0 = rng.normal_vec(xs.iter().product());
        let out = InterpGeom::new(&xs, &p).unwrap().out_shape();
        let r = rng.normal_vec(out.iter().product());
        let loss = |v: &[f64]| -> f64 {
            let x = Tensor::new(xs.to_vec(), v.iter().map(|&e| e as f32).collect()).unwrap();
            let y = forward(&x, &p).unwrap();
            y.data()
                .iter()
                .zip(&r)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum()
        };
        let x64: Vec<f64> = x0.iter().map(|&v| v as f64).collect();
        let num: Vec<f32> = numeric_grad(&x64, 1e-2, loss)
            .iter()
            .map(|&v| v as f32)
            .collect();
        let dy = Tensor::new(out.to_vec(), r.clone()).unwrap();
        let got = backward(&xs, &dy, &p).unwrap();
        assert_close(got.data(), &num, 1e-3, 1e-3, &format!("{p:?}"));
    }
}

fn row(mode: InterpMode, vals: &[f32], out: usize, ac: Option<bool>) -> Vec<f32> {
    let x = Tensor::new(vec![1, 1, 1, vals.len()], vals.to_vec()).unwrap();
    forward(&x, &InterpolateParams::to_size(mode, 1, out, ac))
        .unwrap()
        .into_data()
}

#[test]
fn known_values_derived_by_hand() {
    let (a, b) = (2.0f32, 10.0f32);
    // Bilinear, half-pixel: sources -0.25 (clamped to 0), 0.25, 0.75, 1.25.
    let got = row(InterpMode::Bilinear, &[a, b], 4, Some(false));
    assert_close(
        &got,
        &[a, 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b, b],
        1e-6,
        1e-6,
        "bilinear",
    );
    // Bilinear, align_corners: sources 0, 1/3, 2/3, 1.
    let got = row(InterpMode::Bilinear, &[a, b], 4, Some(true));
    let want = [a, (2.0 * a + b) / 3.0, (a + 2.0 * b) / 3.0, b];
    assert_close(&got, &want, 1e-6, 1e-6, "bilinear ac");
    // Nearest 2 -> 4 and 3 -> 5 (floor(o * 0.6)).
    assert_eq!(row(InterpMode::Nearest, &[a, b], 4, None), [a, a, b, b]);
    assert_eq!(
        row(InterpMode::Nearest, &[1.0, 2.0, 3.0], 5, None),
        [1.0, 1.0, 2.0, 2.0, 3.0]
    );
    // Bicubic, align_corners, 4 -> 7: sources o/2. At t = 0.5 the weights
    // are (-0.09375, 0.59375, 0.59375, -0.09375); at the border the tap at
    // -1 is clamped to 0.
    let (p, q, r, s) = (1.0f32, -2.0f32, 4.0f32, 3.0f32);
    let got = row(InterpMode::Bicubic, &[p, q, r, s], 7, Some(true));
    let (c1, c2) = (0.59375f32, -0.09375f32);
    assert_close(
        &got[1..2],
        &[(c2 + c1) * p + c1 * q + c2 * r],
        1e-6,
        1e-6,
        "border",
    );
    assert_close(
        &got[3..4],
        &[c2 * p + c1 * q + c1 * r + c2 * s],
        1e-6,
        1e-6,
        "inner",
    );
    assert_close(&[got[0], got[2], got[6]], &[p, q, s], 1e-6, 1e-6, "on grid");
    // Constant images stay constant (weights sum to 1) for every mode.
    for mode in MODES {
        for ac in [None, Some(true)] {
            let ac = if mode == InterpMode::Nearest {
                None
            } else {
                ac
            };
            let x = Tensor::full(&[1, 2, 3, 5], 1.5).unwrap();
            let y = forward(&x, &InterpolateParams::to_size(mode, 7, 4, ac)).unwrap();
            assert_close(y.data(), &[1.5; 56], 1e-6, 1e-6, mode.name());
        }
    }
}

#[test]
fn given_scale_factor_enters_the_coordinate_mapping() {
    let x = Tensor::new(vec![1, 1, 1, 4], vec![0.0, 1.0, 2.0, 3.0]).unwrap();
    // 4 * 1.7 -> 6 columns; sources floor(o / 1.7) vs floor(o * 4/6).
    let by_scale = InterpolateParams::by_scale(InterpMode::Nearest, 1.0, 1.7, None);
    assert_eq!(
        forward(&x, &by_scale).unwrap().data(),
        [0.0, 0.0, 1.0, 1.0, 2.0, 2.0]
    );
    let recomputed = InterpolateParams {
        recompute_scale_factor: Some(true),
        ..by_scale
    };
    assert_eq!(
        forward(&x, &recomputed).unwrap().data(),
        [0.0, 0.0, 1.0, 2.0, 2.0, 3.0]
    );
    // Sizes that come out equal to the input copy (PyTorch's special case),
    // for nearest and bilinear; bicubic still resamples with 1/1.2.
    let x = Tensor::new(vec![1, 1, 1, 3], vec![0.0, 1.0, 5.0]).unwrap();
    for mode in [InterpMode::Nearest, InterpMode::Bilinear] {
        let y = forward(&x, &InterpolateParams::by_scale(mode, 1.0, 1.2, None)).unwrap();
        assert_eq!(y.data(), x.data(), "{mode:?}");
    }
    let y = forward(
        &x,
        &InterpolateParams::by_scale(InterpMode::Bicubic, 1.0, 1.2, None),
    )
    .unwrap();
    assert_eq!(y.shape(), &[1, 1, 1, 3]);
    assert!((y.data()[1] - 1.0).abs() > 1e-3, "{:?}", y.data());
}

#[test]
fn autograd_wrapper_matches_backward() {
    let mut rng = Rng::new(3);
    let xt = tensor(&mut rng, &[2, 3, 4, 5]);
    let p = InterpolateParams::by_scale(InterpMode::Bilinear, 2.0, 2.0, Some(false));
    let x = Var::leaf(xt.clone(), true);
    let y = interpolate(&x, &p).unwrap();
    assert_eq!(y.grad_fn_name(), Some("UpsampleBilinear2DBackward"));
    assert_eq!(y.shape(), vec![2, 3, 8, 10]);
    let dy = tensor(&mut rng, &[2, 3, 8, 10]);
    y.backward(Some(dy.clone())).unwrap();
    assert_eq!(x.grad().unwrap(), backward(&[2, 3, 4, 5], &dy, &p).unwrap());
    let y = interpolate(&Var::leaf(xt, false), &p).unwrap();
    assert!(y.is_leaf());
}

fn err(x: &[usize], p: InterpolateParams) -> String {
    let e = InterpGeom::new(x, &p).unwrap_err().to_string();
    assert!(e.starts_with("interpolate: "), "{e}");
    e
}

#[test]
fn bad_requests_are_refused() {
    let x = [1, 1, 4, 4];
    let nearest = InterpolateParams::to_size(InterpMode::Nearest, 8, 8, None);
    let both = InterpolateParams {
        scale_factor: Some((2.0, 2.0)),
        ..nearest
    };
    assert!(err(&x, both).contains("only one of size or scale_factor should be defined"));
    let neither = InterpolateParams {
        size: None,
        ..nearest
    };
    assert!(err(&x, neither).contains("either size or scale_factor should be defined"));
    let ac = InterpolateParams {
        align_corners: Some(false),
        ..nearest
    };
    assert!(err(&x, ac).contains("align_corners option can only be set with the interpolating"));
    let e = err(&[4, 4], nearest);
    assert!(
        e.contains("expected a 4-D input (N, C, H, W) but got shape (4, 4)"),
        "{e}"
    );
    let e = err(&[1, 1, 4, 4, 4], nearest);
    assert!(e.contains("4-D input"), "{e}");
    let e = err(
        &x,
        InterpolateParams::to_size(InterpMode::Bilinear, 0, 3, None),
    );
    assert!(
        e.contains("output size must be positive, got (0, 3)"),
        "{e}"
    );
    let mut neg = nearest;
    neg.size = Some((4, -1));
    assert!(err(&x, neg).contains("output size must be positive, got (4, -1)"));
    for s in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let e = err(
            &x,
            InterpolateParams::by_scale(InterpMode::Nearest, 2.0, s, None),
        );
        assert!(
            e.contains("scale_factor must be positive and finite"),
            "{e}"
        );
    }
    let e = err(
        &x,
        InterpolateParams::by_scale(InterpMode::Nearest, 0.2, 1.0, None),
    );
    assert!(e.contains("output (H: 0, W: 4)"), "{e}");
    let e = err(&[1, 1, 0, 4], nearest);
    assert!(e.contains("input (H: 0, W: 4)"), "{e}");
    let rec = InterpolateParams {
        recompute_scale_factor: Some(true),
        ..nearest
    };
    assert!(err(&x, rec).contains("recompute_scale_factor is not meaningful"));
    let e = InterpMode::parse("linear").unwrap_err().to_string();
    assert!(
        e.contains("mode must be 'nearest', 'bilinear' or 'bicubic'") && e.contains("'linear'")
    );
    let huge = InterpolateParams::by_scale(InterpMode::Nearest, 1e300, 1e300, None);
    assert!(InterpGeom::new(&x, &huge).is_err());
    let dy = Tensor::zeros(&[1, 1, 7, 8]).unwrap();
    let e = backward(&x, &dy, &nearest).unwrap_err().to_string();
    assert_eq!(
        e,
        "interpolate backward: grad_output has shape (1, 1, 7, 8) but the output has shape \
         (1, 1, 8, 8)"
    );
}

#[test]
fn zero_batch_or_channels_give_empty_results() {
    for xs in [[0, 2, 3, 3], [2, 0, 3, 3]] {
        let x = Tensor::zeros(&xs).unwrap();
        let p = InterpolateParams::by_scale(InterpMode::Bicubic, 2.0, 2.0, None);
        let y = forward(&x, &p).unwrap();
        assert_eq!(y.shape(), &[xs[0], xs[1], 6, 6]);
        assert_eq!(backward(&xs, &y, &p).unwrap().shape(), &xs);
    }
}
