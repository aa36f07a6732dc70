use super::*;
use crate::testutil::{assert_close, numeric_grad, Rng};

fn random_lead(rng: &mut Rng) -> Vec<usize> {
    // 1-D input (no leading dims) up to three leading dims, sometimes empty.
    let nd = rng.below(4);
    (0..nd)
        .map(|_| rng.below(4) + usize::from(rng.below(8) != 0))
        .collect()
}

#[test]
fn forward_and_backward_match_reference() {
    let mut rng = Rng::new(17);
    for case in 0..150 {
        let lead = random_lead(&mut rng);
        let (k, n) = if case == 0 {
            (0, 3) // no input features: y = b
        } else if case == 1 {
            (256, 128) // large enough for the threaded GEMM (with m >= 64)
        } else {
            (rng.below(20) + 1, rng.below(20) + 1)
        };
        let lead = if case == 1 { vec![8, 8] } else { lead };
        let m: usize = lead.iter().product();
        let mut xs = lead.clone();
        xs.push(k);
        let x = rng.normal_vec(m * k);
        let w = rng.normal_vec(n * k);
        let bias = rng.below(2) == 0;
        let b = rng.normal_vec(n);
        let xv = Var::leaf(Tensor::new(xs.clone(), x.clone()).unwrap(), true);
        let wv = Var::leaf(Tensor::new(vec![n, k], w.clone()).unwrap(), true);
        let bv = Var::leaf(Tensor::new(vec![n], b.clone()).unwrap(), true);
        let y = linear(&xv, &wv, bias.then_some(&bv)).unwrap();
        let mut ys = lead.clone();
        ys.push(n);
        assert_eq!(y.shape(), ys);
        let want = reference::linear(&x, &w, bias.then_some(&b[..]), m, k, n);
        // Sums of up to 256 products: a little looser than 1e-5.
        assert_close(y.value().data(), &want, 1e-4, 1e-4, "linear forward");

        let g = rng.normal_vec(m * n);
        y.backward(Some(Tensor::new(ys, g.clone()).unwrap()))
            .unwrap();
        let (dx, dw, db) = reference::linear_backward(&x, &w, &g, m, k, n);
        assert_close(xv.grad().unwrap().data(), &dx, 1e-4, 1e-4, "grad input");
        assert_close(wv.grad().unwrap().data(), &dw, 1e-4, 1e-4, "grad weight");
        if bias {
            assert_close(bv.grad().unwrap().data(), &db, 1e-4, 1e-4, "grad bias");
        } else {
            assert!(bv.grad().is_none());
        }
    }
}

#[test]
fn backward_matches_finite_differences() {
    let mut rng = Rng::new(3);
    for _ in 0..20 {
        let (m, k, n) = (rng.below(3) + 1, rng.below(4) + 1, rng.below(4) + 1);
        let x = rng.normal_vec(m * k);
        let w = rng.normal_vec(n * k);
        let b = rng.normal_vec(n);
        let r = rng.normal_vec(m * n);
        let xv = Var::leaf(Tensor::new(vec![m, k], x.clone()).unwrap(), true);
        let wv = Var::leaf(Tensor::new(vec![n, k], w.clone()).unwrap(), true);
        let bv = Var::leaf(Tensor::new(vec![n], b.clone()).unwrap(), true);
        let y = linear(&xv, &wv, Some(&bv)).unwrap();
        assert_eq!(y.grad_fn_name(), Some("LinearBackward"));
        y.backward(Some(Tensor::new(vec![m, n], r.clone()).unwrap()))
            .unwrap();
        // loss = <y, r>, in f64 from f64 inputs.
        let loss = |x: &[f64], w: &[f64], b: &[f64]| -> f64 {
            let mut s = 0.0;
            for i in 0..m {
                for o in 0..n {
                    let mut y = b[o];
                    for j in 0..k {
                        y += x[i * k + j] * w[o * k + j];
                    }
                    s += y * r[i * n + o] as f64;
                }
            }
            s
        };
        let f64s = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
        let (x64, w64, b64) = (f64s(&x), f64s(&w), f64s(&b));
        let nx = numeric_grad(&x64, 1e-4, |p| loss(p, &w64, &b64));
        let nw = numeric_grad(&w64, 1e-4, |p| loss(&x64, p, &b64));
        let nb = numeric_grad(&b64, 1e-4, |p| loss(&x64, &w64, p));
        let f32s = |v: Vec<f64>| v.iter().map(|&a| a as f32).collect::<Vec<_>>();
        assert_close(xv.grad().unwrap().data(), &f32s(nx), 1e-4, 1e-4, "fd input");
        assert_close(
            wv.grad().unwrap().data(),
            &f32s(nw),
            1e-4,
            1e-4,
            "fd weight",
        );
        assert_close(bv.grad().unwrap().data(), &f32s(nb), 1e-4, 1e-4, "fd bias");
    }
}

#[test]
fn only_requested_gradients_are_computed() {
    let x = Tensor::new(vec![2, 3], vec![1.0; 6]).unwrap();
    let w = Tensor::new(vec![4, 3], vec![0.5; 12]).unwrap();
    let g = Tensor::new(vec![2, 4], vec![1.0; 8]).unwrap();
    let gr = backward(&x, &w, &g, [false, true, false]).unwrap();
    assert!(gr.input.is_none() && gr.bias.is_none());
    assert_eq!(gr.weight.unwrap().data(), &[2.0; 12]);
    // Frozen weight: only the input gets a gradient.
    let xv = Var::leaf(x, true);
    let wv = Var::leaf(w, false);
    linear(&xv, &wv, None).unwrap().backward(Some(g)).unwrap();
    assert_eq!(xv.grad().unwrap().data(), &[2.0; 6]);
    assert!(wv.grad().is_none());
}

fn err(x: &[usize], w: &[usize], b: Option<&[usize]>) -> String {
    let t = |s: &[usize]| Tensor::zeros(s).unwrap();
    let e = forward(&t(x), &t(w), b.map(t).as_ref())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("linear: "), "{e}");
    e
}

#[test]
fn errors_name_the_op_and_the_shapes() {
    let e = err(&[8, 5], &[3, 4], None);
    assert!(
        e.contains("input has 5 features")
            && e.contains("expects 4")
            && e.contains("(8, 5)")
            && e.contains("(3, 4)"),
        "{e}"
    );
    let e = err(&[8, 4], &[3, 4], Some(&[4]));
    assert!(
        e.contains("bias must have shape (3,)") && e.contains("(4,)"),
        "{e}"
    );
    let e = err(&[8, 4], &[3, 4], Some(&[1, 3]));
    assert!(e.contains("bias") && e.contains("(1, 3)"), "{e}");
    let e = err(&[], &[3, 4], None);
    assert!(
        e.contains("at least 1 dimension") && e.contains("0-d"),
        "{e}"
    );
    let e = err(&[2, 4], &[3, 4, 1], None);
    assert!(
        e.contains("weight must be 2-D") && e.contains("(3, 4, 1)"),
        "{e}"
    );
}
