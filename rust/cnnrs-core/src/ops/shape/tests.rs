use super::*;

#[test]
fn infer_minus_one_and_errors() {
    assert_eq!(
        infer_shape("reshape", &[2, 3, 4], &[-1, 4]).unwrap(),
        vec![6, 4]
    );
    assert!(infer_shape("reshape", &[2, 3], &[-1, -1]).is_err());
    let e = infer_shape("reshape", &[2, 3], &[4, -1])
        .unwrap_err()
        .to_string();
    assert!(e.contains("reshape") && e.contains("(2, 3)"), "{e}");
    assert!(infer_shape("reshape", &[0, 3], &[-1, 3]).is_ok());
}

#[test]
fn flatten_keeps_batch_and_gradient_flows_back() {
    let x = Var::leaf(
        Tensor::new(vec![2, 3, 2, 2], (0..24).map(|v| v as f32).collect()).unwrap(),
        true,
    );
    let y = flatten(&x, 1, -1).unwrap();
    assert_eq!(y.shape(), vec![2, 12]);
    y.backward(Some(Tensor::full(&[2, 12], 2.0).unwrap()))
        .unwrap();
    assert_eq!(x.grad().unwrap().shape(), &[2, 3, 2, 2]);
    assert!(x.grad().unwrap().data().iter().all(|&g| g == 2.0));
}
