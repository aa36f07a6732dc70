use super::*;
use crate::ops::elementwise::{binary, BinaryOp};
use crate::ops::reduce::{reduce, Axis};

fn leaf(v: &[f32], rg: bool) -> Var {
    Var::leaf(Tensor::new(vec![v.len()], v.to_vec()).unwrap(), rg)
}

#[test]
fn shared_input_accumulates_and_diamond_graph_is_right() {
    // y = sum(x*x + x) => dy/dx = 2x + 1
    let x = leaf(&[1.0, -2.0, 3.0], true);
    let xx = binary(BinaryOp::Mul, &x, &x).unwrap();
    let s = binary(BinaryOp::Add, &xx, &x).unwrap();
    let y = reduce(&s, Axis::All, false).unwrap();
    y.backward(None).unwrap();
    assert_eq!(x.grad().unwrap().data(), &[3.0, -3.0, 7.0]);
    // A second backward accumulates, as in PyTorch.
    y.backward(None).unwrap();
    assert_eq!(x.grad().unwrap().data(), &[6.0, -6.0, 14.0]);
}

#[test]
fn no_grad_records_nothing_and_backward_refuses() {
    let x = leaf(&[1.0, 2.0], true);
    let y = {
        let _g = NoGradGuard::new();
        reduce(&x, Axis::All, false).unwrap()
    };
    assert!(is_grad_enabled());
    assert!(!y.requires_grad() && y.is_leaf());
    assert!(y.backward(None).is_err());
}

#[test]
fn non_scalar_backward_needs_gradient() {
    let x = leaf(&[1.0, 2.0], true);
    let y = binary(BinaryOp::Mul, &x, &x).unwrap();
    let e = y.backward(None).unwrap_err().to_string();
    assert!(e.contains("scalar"), "{e}");
}

#[test]
fn deep_chain_does_not_overflow_the_stack() {
    let x = leaf(&[1.0], true);
    let mut y = x.clone();
    for _ in 0..100_000 {
        y = crate::ops::elementwise::affine(&y, 1.0, 0.0);
    }
    y.backward(None).unwrap();
    assert_eq!(x.grad().unwrap().data(), &[1.0]);
}
