use super::avg::*;
use super::reference;
use crate::autograd::Var;
use crate::tensor::Tensor;
use crate::testutil::{assert_close, Rng};

#[test]
fn avg_pool2d_matches_reference_and_backward_is_adjoint() {
    let mut rng = Rng::new(31);
    for _ in 0..200 {
        let k = [rng.below(4) + 1, rng.below(4) + 1];
        let s = [rng.below(3) + 1, rng.below(3) + 1];
        let p = [rng.below(k[0] / 2 + 1), rng.below(k[1] / 2 + 1)];
        let (n, c) = (rng.below(2) + 1, rng.below(3) + 1);
        let (h, w) = (k[0] + rng.below(6), k[1] + rng.below(6));
        let params = AvgPool2dParams {
            kernel: k,
            stride: s,
            padding: p,
            ceil_mode: rng.below(2) == 1,
            count_include_pad: rng.below(2) == 1,
            divisor_override: if rng.below(5) == 0 {
                Some(rng.below(5) + 1)
            } else {
                None
            },
        };
        let x = Tensor::new(vec![n, c, h, w], rng.normal_vec(n * c * h * w)).unwrap();
        let y = avg_pool2d_forward(&x, &params).unwrap();
        let [_, _, ho, wo] = y.shape() else {
            unreachable!()
        };
        let want = reference::avg_pool2d(
            x.data(),
            [n, c, h, w],
            k,
            s,
            p,
            [*ho, *wo],
            params.count_include_pad,
            params.divisor_override,
        );
        assert_close(y.data(), &want, 1e-5, 1e-5, &format!("{params:?}"));
        // <avg(x), g> == <x, avg^T(g)>
        let g = Tensor::new(y.shape().to_vec(), rng.normal_vec(y.numel())).unwrap();
        let dx = avg_pool2d_backward(&g, x.shape(), &params).unwrap();
        let lhs: f64 = y
            .data()
            .iter()
            .zip(g.data())
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum();
        let rhs: f64 = x
            .data()
            .iter()
            .zip(dx.data())
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum();
        assert!(
            (lhs - rhs).abs() < 1e-3 * (1.0 + lhs.abs()),
            "{lhs} vs {rhs}"
        );
    }
}

#[test]
fn adaptive_matches_reference_incl_global_and_gradient() {
    let mut rng = Rng::new(32);
    for _ in 0..100 {
        let (h, w) = (rng.below(9) + 1, rng.below(9) + 1);
        let out = [rng.below(h + 3) + 1, rng.below(w + 3) + 1];
        let x = Tensor::new(vec![2, 3, h, w], rng.normal_vec(6 * h * w)).unwrap();
        let y = adaptive_avg_pool2d_forward(&x, out).unwrap();
        assert_close(
            y.data(),
            &reference::adaptive_avg_pool2d(x.data(), [2, 3, h, w], out),
            1e-5,
            1e-5,
            "adaptive",
        );
    }
    let x = Var::leaf(
        Tensor::new(vec![1, 2, 2, 2], (0..8).map(|v| v as f32).collect()).unwrap(),
        true,
    );
    let y = adaptive_avg_pool2d(&x, [1, 1]).unwrap();
    assert_eq!(y.value().data(), &[1.5, 5.5]);
    y.backward(Some(Tensor::new(vec![1, 2, 1, 1], vec![4.0, 8.0]).unwrap()))
        .unwrap();
    assert_eq!(
        x.grad().unwrap().data(),
        &[1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0]
    );
}

#[test]
fn errors() {
    let x = Tensor::zeros(&[1, 1, 4, 4]).unwrap();
    let base = AvgPool2dParams {
        kernel: [2, 2],
        stride: [2, 2],
        padding: [0, 0],
        ceil_mode: false,
        count_include_pad: true,
        divisor_override: None,
    };
    let e = avg_pool2d_forward(
        &x,
        &AvgPool2dParams {
            padding: [2, 0],
            ..base
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("avg_pool2d: pad should be at most half"), "{e}");
    let e = avg_pool2d_forward(
        &x,
        &AvgPool2dParams {
            kernel: [5, 5],
            ..base
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("avg_pool2d: output size is too small"), "{e}");
    let e = avg_pool2d_forward(&Tensor::zeros(&[4, 4]).unwrap(), &base)
        .unwrap_err()
        .to_string();
    assert!(e.contains("avg_pool2d: expected a 4-D input"), "{e}");
    let e = adaptive_avg_pool2d_forward(&x, [0, 1])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("adaptive_avg_pool2d: output_size must be positive"),
        "{e}"
    );
}
