use super::*;
use crate::testutil::{assert_close, Rng};

const MODES: [PadMode; 3] = [PadMode::Constant, PadMode::Reflect, PadMode::Replicate];

fn tensor(rng: &mut Rng, shape: &[usize]) -> Tensor {
    Tensor::new(shape.to_vec(), rng.normal_vec(shape.iter().product())).unwrap()
}

/// A random shape, pad and mode that [`PadGeom::new`] accepts.
fn random_case(rng: &mut Rng) -> (Vec<usize>, Vec<i64>, PadMode) {
    loop {
        let nd = 1 + rng.below(4);
        let shape: Vec<usize> = (0..nd).map(|_| rng.below(5)).collect();
        let k = 1 + rng.below(2);
        let mode = MODES[rng.below(3)];
        let pad: Vec<i64> = (0..2 * k)
            .map(|_| {
                if mode == PadMode::Constant {
                    rng.below(7) as i64 - 3
                } else {
                    rng.below(4) as i64
                }
            })
            .collect();
        if PadGeom::new("pad", &shape, &pad, mode).is_ok() {
            return (shape, pad, mode);
        }
    }
}

#[test]
fn forward_and_backward_match_reference_on_random_shapes() {
    let mut rng = Rng::new(41);
    for case in 0..500 {
        let (shape, pad, mode) = random_case(&mut rng);
        let x = tensor(&mut rng, &shape);
        let value = if rng.below(2) == 0 { 0.0 } else { 2.5 };
        let gm = PadGeom::new("pad", &shape, &pad, mode).unwrap();
        let want = reference::forward(&x, &pad, mode, value);
        let what = format!("case {case}: {shape:?} {pad:?} {mode:?}");
        for par in [0, usize::MAX] {
            assert_eq!(forward_tuned(&x, &gm, value, par).unwrap(), want, "{what}");
        }
        let dy = tensor(&mut rng, want.shape());
        let dx_want = reference::backward(&shape, &dy, &pad, mode);
        for par in [0, usize::MAX] {
            let dx = backward_tuned(&dy, &gm, par).unwrap();
            // Reflect/replicate add up to ~4 gradients per input.
            assert_close(dx.data(), dx_want.data(), 1e-6, 1e-6, &what);
        }
    }
}

#[test]
fn known_values() {
    let x = Tensor::new(vec![1, 3], vec![1., 2., 3.]).unwrap();
    let run = |pad: &[i64], mode, value| {
        let gm = PadGeom::new("pad", x.shape(), pad, mode).unwrap();
        forward(&x, &gm, value).unwrap().into_data()
    };
    assert_eq!(
        run(&[2, 1], PadMode::Constant, 9.0),
        [9., 9., 1., 2., 3., 9.]
    );
    assert_eq!(
        run(&[2, 2], PadMode::Reflect, 0.0),
        [3., 2., 1., 2., 3., 2., 1.]
    );
    assert_eq!(
        run(&[2, 1], PadMode::Replicate, 0.0),
        [1., 1., 1., 2., 3., 3.]
    );
    assert_eq!(run(&[-1, 1], PadMode::Constant, 0.0), [2., 3., 0.]);
    assert_eq!(run(&[-2, -1], PadMode::Constant, 0.0), Vec::<f32>::new());
    // Two dims: (left, right, top, bottom).
    let x = Tensor::new(vec![1, 1, 2, 2], vec![1., 2., 3., 4.]).unwrap();
    let gm = PadGeom::new("pad", x.shape(), &[1, 0, 0, 1], PadMode::Constant).unwrap();
    assert_eq!(gm.out_shape, [1, 1, 3, 3]);
    assert_eq!(
        forward(&x, &gm, 0.0).unwrap().data(),
        &[0., 1., 2., 0., 3., 4., 0., 0., 0.]
    );
}

#[test]
fn center_crop_takes_the_middle_and_pads_the_gradient_back() {
    let x = Tensor::new(vec![1, 1, 4, 5], (0..20).map(|v| v as f32).collect()).unwrap();
    let xv = Var::leaf(x, true);
    // Margins: rows 4-2 = 2 -> top 1; columns 5-2 = 3 -> left 1, right 2.
    let y = center_crop(&xv, (2, 2)).unwrap();
    assert_eq!(y.grad_fn_name(), Some("CenterCropBackward"));
    assert_eq!(y.value().data(), &[6., 7., 11., 12.]);
    y.backward(Some(Tensor::full(&[1, 1, 2, 2], 1.0).unwrap()))
        .unwrap();
    let g = xv.grad().unwrap();
    let ones: Vec<usize> = g
        .data()
        .iter()
        .enumerate()
        .filter(|(_, &v)| v == 1.0)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(ones, [6, 7, 11, 12]);
    assert_eq!(g.data().iter().sum::<f32>(), 4.0);
    // U-Net: 64x64 skip cropped to 56x56 keeps rows/cols 4..60.
    let gm = center_crop_geom(&[1, 2, 64, 64], (56, 56)).unwrap();
    assert_eq!(gm.map_h[0], Some(4));
    assert_eq!(gm.map_w[55], Some(59));
    // The whole image is a no-op crop.
    let gm = center_crop_geom(&[3, 4], (3, 4)).unwrap();
    assert_eq!(gm.out_shape, [3, 4]);
}

#[test]
fn pad_autograd_matches_backward() {
    let mut rng = Rng::new(2);
    let xt = tensor(&mut rng, &[2, 3, 4, 4]);
    let x = Var::leaf(xt.clone(), true);
    let y = pad(&x, &[1, 2, 2, 1], PadMode::Reflect, 0.0).unwrap();
    assert_eq!(y.grad_fn_name(), Some("PadBackward"));
    assert_eq!(y.shape(), vec![2, 3, 7, 7]);
    let dy = tensor(&mut rng, &[2, 3, 7, 7]);
    y.backward(Some(dy.clone())).unwrap();
    let want = reference::backward(&[2, 3, 4, 4], &dy, &[1, 2, 2, 1], PadMode::Reflect);
    assert_close(
        x.grad().unwrap().data(),
        want.data(),
        1e-6,
        1e-6,
        "reflect grad",
    );
}

#[test]
fn bad_arguments_are_refused() {
    let err = |shape: &[usize], p: &[i64], mode| {
        let e = PadGeom::new("pad", shape, p, mode).unwrap_err().to_string();
        assert!(e.starts_with("pad: "), "{e}");
        e
    };
    let e = err(&[2, 3], &[1, 1, 1], PadMode::Constant);
    assert!(
        e.contains("padding must have 2 or 4 values") && e.contains("got 3"),
        "{e}"
    );
    let e = err(&[2, 3], &[1; 6], PadMode::Constant);
    assert!(e.contains("got 6"), "{e}");
    let e = err(&[5], &[1, 1, 1, 1], PadMode::Constant);
    assert!(
        e.contains("needs an input with at least 2 dimensions, got shape (5,)"),
        "{e}"
    );
    let e = err(&[1, 4], &[-3, -2], PadMode::Constant);
    assert!(
        e.contains("the input size 4, plus padding -3 and -2, gives a negative output size"),
        "{e}"
    );
    let e = err(&[1, 1, 3, 3], &[3, 0, 0, 0], PadMode::Reflect);
    assert!(
        e.contains("padding (3, 0) in 'reflect' mode must be less than the size 3 of dimension 3"),
        "{e}"
    );
    let e = err(&[1, 3], &[-1, 0], PadMode::Replicate);
    assert!(
        e.contains("negative padding (-1, 0) is only supported in 'constant' mode"),
        "{e}"
    );
    let e = err(&[1, 0], &[1, 0], PadMode::Replicate);
    assert!(e.contains("cannot pad the empty dimension 1"), "{e}");
    let e = PadMode::parse("circular").unwrap_err().to_string();
    assert!(
        e.contains("'constant', 'reflect' or 'replicate', got 'circular'"),
        "{e}"
    );
    let e = |shape: &[usize], size| center_crop_geom(shape, size).unwrap_err().to_string();
    assert_eq!(
        e(&[1, 2, 8, 8], (10, 8)),
        "center_crop: crop size (10, 8) is larger than the input's spatial size (8, 8); \
         input (1, 2, 8, 8)"
    );
    assert!(e(&[1, 2, 8, 8], (0, 4)).contains("crop size must be positive, got (0, 4)"));
    assert!(e(&[8], (4, 4)).contains("at least 2 dimensions"));
    let gm = PadGeom::new("pad", &[1, 2], &[1, 1], PadMode::Constant).unwrap();
    let e = backward(&Tensor::zeros(&[1, 3]).unwrap(), &gm)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "pad backward: grad_output has shape (1, 3) but the output has shape (1, 4)"
    );
    assert!(PadGeom::new("pad", &[1, 2], &[i64::MAX, i64::MAX], PadMode::Constant).is_err());
}
