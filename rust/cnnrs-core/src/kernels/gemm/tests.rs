use super::*;
use crate::testutil::{assert_close, Rng};

fn naive(a: MatRef, b: MatRef) -> Vec<f32> {
    let mut c = vec![0.0f32; a.rows * b.cols];
    for i in 0..a.rows {
        for j in 0..b.cols {
            let mut s = 0.0f64;
            for p in 0..a.cols {
                s += a.at(i, p) as f64 * b.at(p, j) as f64;
            }
            c[i * b.cols + j] = s as f32;
        }
    }
    c
}

#[test]
fn matches_naive_on_random_shapes_and_strides() {
    let mut rng = Rng::new(7);
    for case in 0..60 {
        let m = rng.below(70) + 1;
        let n = rng.below(600) + 1;
        let k = rng.below(300) + 1;
        let a_data = rng.normal_vec(m * k);
        let b_data = rng.normal_vec(k * n);
        let a = if case % 2 == 0 {
            MatRef::row_major(&a_data, m, k, k)
        } else {
            MatRef::transposed(&a_data, m, k, m)
        };
        let b = if case % 3 == 0 {
            MatRef::transposed(&b_data, k, n, k)
        } else {
            MatRef::row_major(&b_data, k, n, n)
        };
        let expect = naive(a, b);
        let mut c = vec![0.0; m * n];
        gemm(a, b, &mut c, n, &GemmOpts::default());
        assert_close(&c, &expect, 1e-4, 1e-4, "gemm");
        let mut c2 = vec![0.0; m * n];
        gemm_par(a, b, &mut c2, n, &GemmOpts::default());
        assert_close(&c2, &expect, 1e-4, 1e-4, "gemm_par");
    }
}

#[test]
fn epilogue_bias_relu_and_accumulate() {
    let mut rng = Rng::new(3);
    let (m, n, k) = (5, 9, 4);
    let a_data = rng.normal_vec(m * k);
    let b_data = rng.normal_vec(k * n);
    let br = rng.normal_vec(m);
    let bc = rng.normal_vec(n);
    let a = MatRef::row_major(&a_data, m, k, k);
    let b = MatRef::row_major(&b_data, k, n, n);
    let prod = naive(a, b);
    let init = rng.normal_vec(m * n);
    let mut c = init.clone();
    let opts = GemmOpts {
        accumulate: true,
        bias_row: Some(&br),
        bias_col: Some(&bc),
        relu: true,
    };
    gemm(a, b, &mut c, n, &opts);
    let expect: Vec<f32> = (0..m * n)
        .map(|idx| (init[idx] + prod[idx] + br[idx / n] + bc[idx % n]).max(0.0))
        .collect();
    assert_close(&c, &expect, 1e-5, 1e-5, "epilogue");
}
