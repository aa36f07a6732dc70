use super::*;
use crate::rng::manual_seed;
use crate::testutil::{assert_close, Rng};

// Tests that seed the global generator and compare draws must not interleave.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn var(shape: &[usize], data: Vec<f32>) -> Var {
    Var::leaf(Tensor::new(shape.to_vec(), data).unwrap(), true)
}

#[test]
fn dropout_keeps_fraction_scales_and_masks_gradient() {
    let _serial = serial();
    manual_seed(1);
    let x = var(&[100, 100], vec![1.0; 10_000]);
    let y = dropout(&x, 0.3, true).unwrap();
    let yv = y.value();
    let kept = yv.data().iter().filter(|&&v| v != 0.0).count() as f32 / 10_000.0;
    assert!((kept - 0.7).abs() < 0.02, "kept {kept}");
    assert!(yv
        .data()
        .iter()
        .all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-6));
    y.backward(Some(Tensor::full(&[100, 100], 2.0).unwrap()))
        .unwrap();
    for (g, v) in x.grad().unwrap().data().iter().zip(yv.data()) {
        assert!((g - 2.0 * v).abs() < 1e-5);
    }
    // Seeded: same mask again.
    manual_seed(1);
    let y2 = dropout(&x, 0.3, true).unwrap();
    assert_eq!(y2.value().data(), yv.data());
    // Eval and p = 0 are the identity; p = 1 zeroes.
    assert!(dropout(&x, 0.3, false).unwrap().ptr_eq(&x));
    assert!(dropout(&x, 1.0, true)
        .unwrap()
        .value()
        .data()
        .iter()
        .all(|&v| v == 0.0));
    assert!(dropout(&x, 1.5, true)
        .unwrap_err()
        .to_string()
        .contains("dropout: dropout probability"));
}

#[test]
fn dropout2d_drops_whole_planes() {
    let _serial = serial();
    manual_seed(3);
    let x = var(&[4, 8, 3, 3], vec![1.0; 288]);
    let y = dropout2d(&x, 0.5, true).unwrap().value();
    for plane in y.data().chunks(9) {
        assert!(plane.iter().all(|&v| v == plane[0]) && (plane[0] == 0.0 || plane[0] == 2.0));
    }
    assert!(dropout2d(&var(&[2, 3], vec![0.0; 6]), 0.5, true).is_err());
}

#[test]
fn cutout_zeroes_one_clipped_square_per_image_in_all_channels() {
    let _serial = serial();
    manual_seed(5);
    let (n, c, h, w, size) = (6, 3, 10, 12, 4);
    let x = var(&[n, c, h, w], vec![1.0; n * c * h * w]);
    let y = cutout(&x, size, true).unwrap().value();
    for img in y.data().chunks(c * h * w) {
        let planes: Vec<&[f32]> = img.chunks(h * w).collect();
        assert!(planes.iter().all(|p| p == &planes[0]));
        let zeros: Vec<usize> = (0..h * w).filter(|&i| planes[0][i] == 0.0).collect();
        assert!(!zeros.is_empty() && zeros.len() <= size * size);
        // The zeros form a rectangle.
        let (ys, xs): (Vec<usize>, Vec<usize>) = zeros.iter().map(|&i| (i / w, i % w)).unzip();
        let (y0, y1) = (*ys.iter().min().unwrap(), *ys.iter().max().unwrap());
        let (x0, x1) = (*xs.iter().min().unwrap(), *xs.iter().max().unwrap());
        assert_eq!((y1 - y0 + 1) * (x1 - x0 + 1), zeros.len());
    }
    assert!(cutout(&x, 4, false).unwrap().ptr_eq(&x));
    assert!(cutout(&x, 0, true).is_err());
}

#[test]
fn max_pool_dropout_eval_is_the_expected_training_output() {
    let _serial = serial();
    let mut rng = Rng::new(8);
    let data: Vec<f32> = rng
        .normal_vec(2 * 3 * 6 * 6)
        .iter()
        .map(|v| v.abs())
        .collect();
    let x = var(&[2, 3, 6, 6], data.clone());
    for &(p, k, s) in &[(0.3f32, 2usize, 2usize), (0.5, 3, 2), (0.7, 2, 1)] {
        let pp = PoolDropoutParams {
            kernel: (k, k),
            stride: (s, s),
            p,
            training: false,
            weighted_eval: true,
        };
        let y = max_pool_dropout(&x, &pp).unwrap().value();
        let ho = (6 - k) / s + 1;
        let mut want = Vec::new();
        for plane in 0..6 {
            for oy in 0..ho {
                for ox in 0..ho {
                    let win: Vec<f32> = (0..k * k)
                        .map(|i| data[plane * 36 + (oy * s + i / k) * 6 + ox * s + i % k])
                        .collect();
                    want.push(reference::expected_max_pool_dropout(&win, 1.0 - p as f64) as f32);
                }
            }
        }
        assert_close(y.data(), &want, 1e-5, 1e-6, "weighted pooling");
        // Plain max in eval when asked; and p = 0 in training is max pooling.
        let plain = PoolDropoutParams {
            weighted_eval: false,
            ..pp
        };
        let want_max = reference::max_pool(&data, 6, 6, 6, (k, k), (s, s));
        assert_eq!(
            max_pool_dropout(&x, &plain).unwrap().value().data(),
            want_max.as_slice()
        );
        let train0 = PoolDropoutParams {
            p: 0.0,
            training: true,
            ..pp
        };
        assert_eq!(
            max_pool_dropout(&x, &train0).unwrap().value().data(),
            want_max.as_slice()
        );
    }
}

#[test]
fn max_pool_dropout_gradients() {
    let _serial = serial();
    let mut rng = Rng::new(4);
    let data: Vec<f32> = rng.normal_vec(16).iter().map(|v| v.abs()).collect();
    let pp = PoolDropoutParams {
        kernel: (2, 2),
        stride: (2, 2),
        p: 0.4,
        training: false,
        weighted_eval: true,
    };
    let x = var(&[1, 1, 4, 4], data.clone());
    let y = max_pool_dropout(&x, &pp).unwrap();
    y.backward(Some(Tensor::full(&[1, 1, 2, 2], 1.0).unwrap()))
        .unwrap();
    let g = x.grad().unwrap();
    let f = |d: &[f32]| -> f64 {
        let v = var(&[1, 1, 4, 4], d.to_vec());
        max_pool_dropout(&v, &pp)
            .unwrap()
            .value()
            .data()
            .iter()
            .map(|&a| a as f64)
            .sum()
    };
    for i in 0..16 {
        let (mut a, mut b) = (data.clone(), data.clone());
        a[i] += 1e-3;
        b[i] -= 1e-3;
        let num = (f(&a) - f(&b)) / 2e-3;
        assert!(
            (g.data()[i] as f64 - num).abs() < 1e-2,
            "elem {i}: {} vs {num}",
            g.data()[i]
        );
    }
    // Training: gradient goes only to the selected kept unit.
    manual_seed(9);
    let pt = PoolDropoutParams {
        training: true,
        ..pp
    };
    let x = var(&[1, 1, 4, 4], data);
    let y = max_pool_dropout(&x, &pt).unwrap();
    y.backward(Some(Tensor::full(&[1, 1, 2, 2], 1.0).unwrap()))
        .unwrap();
    let g = x.grad().unwrap();
    let yv = y.value();
    for (o, &v) in yv.data().iter().enumerate() {
        let (oy, ox) = (o / 2, o % 2);
        let hits: Vec<usize> = (0..4)
            .map(|i| (oy * 2 + i / 2) * 4 + ox * 2 + i % 2)
            .filter(|&i| g.data()[i] != 0.0)
            .collect();
        assert!(hits.len() <= 1 && (hits.is_empty() == (v == 0.0)));
    }
    let e = max_pool_dropout(
        &var(&[1, 1, 2, 2], vec![0.0; 4]),
        &PoolDropoutParams {
            kernel: (3, 3),
            ..pp
        },
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("max_pool_dropout: kernel 3x3 is larger than the input 2x2"),
        "{e}"
    );
}
