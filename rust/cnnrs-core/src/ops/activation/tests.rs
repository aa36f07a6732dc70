use super::*;
use crate::testutil::{assert_close, Rng};

#[test]
fn relu_matches_reference_and_gradient_masks() {
    let mut rng = Rng::new(1);
    let xs = rng.normal_vec(1000);
    let x = Var::leaf(Tensor::new(vec![10, 100], xs.clone()).unwrap(), true);
    let y = relu(&x);
    assert_close(y.value().data(), &reference::relu(&xs), 0.0, 0.0, "relu");
    y.backward(Some(Tensor::full(&[10, 100], 3.0).unwrap()))
        .unwrap();
    for (g, x) in x.grad().unwrap().data().iter().zip(&xs) {
        assert_eq!(*g, if *x > 0.0 { 3.0 } else { 0.0 });
    }
}
