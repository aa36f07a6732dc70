use super::*;
use crate::testutil::{assert_close, Rng};

#[test]
fn sum_and_mean_match_reference_and_backward_spreads() {
    let mut rng = Rng::new(9);
    for _ in 0..50 {
        let nd = rng.below(4) + 1;
        let shape: Vec<usize> = (0..nd).map(|_| rng.below(5) + 1).collect();
        let n: usize = shape.iter().product();
        let x = Tensor::new(shape.clone(), rng.normal_vec(n)).unwrap();
        let d = rng.below(nd);
        let got = forward(&x, Axis::Dim(d, false), false);
        assert_close(
            got.data(),
            &reference::sum(x.data(), &shape, Some(d)),
            1e-5,
            1e-5,
            "sum dim",
        );
        let mean = forward(&x, Axis::All, true);
        let want = reference::sum(x.data(), &shape, None)[0] / n as f32;
        assert_close(mean.data(), &[want], 1e-5, 1e-5, "mean");

        let v = Var::leaf(x.clone(), true);
        let y = reduce(&v, Axis::Dim(d, true), true).unwrap();
        let ones = Tensor::full(&y.shape(), 1.0).unwrap();
        y.backward(Some(ones)).unwrap();
        let g = v.grad().unwrap();
        assert!(g
            .data()
            .iter()
            .all(|&e| (e - 1.0 / shape[d] as f32).abs() < 1e-6));
    }
}

#[test]
fn bad_dim_is_an_error() {
    let e = normalize_dim("sum", 3, &[2, 3]).unwrap_err().to_string();
    assert!(e.contains("sum") && e.contains("(2, 3)"), "{e}");
    assert_eq!(normalize_dim("sum", -1, &[2, 3]).unwrap(), 1);
}

#[test]
fn long_contiguous_sums_match_reference_and_repeat_exactly() {
    // Runs past the blocked parallel threshold (2 * 65,536 elements), with
    // a tail that is not a multiple of any block or vector width.
    let mut rng = Rng::new(21);
    for shape in [vec![300_001], vec![3, 140_003], vec![2, 3, 70_001]] {
        let n: usize = shape.iter().product();
        let x = Tensor::new(shape.clone(), rng.normal_vec(n)).unwrap();
        let all = forward(&x, Axis::All, false);
        let want = reference::sum(x.data(), &shape, None);
        assert_close(all.data(), &want, 1e-5, 1e-3, "sum all");
        let last = shape.len() - 1;
        let rows = forward(&x, Axis::Dim(last, false), true);
        let want: Vec<f32> = reference::sum(x.data(), &shape, Some(last))
            .iter()
            .map(|s| s / shape[last] as f32)
            .collect();
        assert_close(rows.data(), &want, 1e-5, 1e-5, "mean last dim");
        let again = forward(&x, Axis::All, false);
        assert_eq!(all.data()[0].to_bits(), again.data()[0].to_bits());
    }
}
