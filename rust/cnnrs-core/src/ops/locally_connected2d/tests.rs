use super::*;
use crate::testutil::{assert_close, Rng};

#[test]
fn forward_and_backward_match_reference() {
    let mut rng = Rng::new(17);
    for _ in 0..30 {
        let (n, c_in, c_out) = (rng.below(3) + 1, rng.below(3) + 1, rng.below(4) + 1);
        let (k_h, k_w) = (rng.below(3) + 1, rng.below(3) + 1);
        let p = LocalParams {
            stride: (rng.below(2) + 1, rng.below(2) + 1),
            padding: (rng.below(2), rng.below(2)),
        };
        let (h_in, w_in) = (k_h + rng.below(5), k_w + rng.below(5));
        let h_out = out_size(h_in, k_h, p.stride.0, p.padding.0).unwrap();
        let w_out = out_size(w_in, k_w, p.stride.1, p.padding.1).unwrap();
        let xs = vec![n, c_in, h_in, w_in];
        let ws = vec![h_out, w_out, c_out, c_in, k_h, k_w];
        let x = Tensor::new(xs.clone(), rng.normal_vec(xs.iter().product())).unwrap();
        let w = Tensor::new(ws.clone(), rng.normal_vec(ws.iter().product())).unwrap();
        let b = Tensor::new(
            vec![c_out, h_out, w_out],
            rng.normal_vec(c_out * h_out * w_out),
        )
        .unwrap();
        let d = check(&xs, &ws, Some(b.shape()), &p).unwrap();
        let y = forward(&x, &w, Some(&b), &p).unwrap();
        assert_close(
            y.data(),
            &reference::forward(x.data(), w.data(), Some(b.data()), &d, &p),
            1e-4,
            1e-4,
            "fwd",
        );
        let g = Tensor::new(y.shape().to_vec(), rng.normal_vec(y.numel())).unwrap();
        let (dx, dw, db) = backward(&x, &w, &g, &p, true, true).unwrap();
        let (rdx, rdw) = reference::backward(x.data(), w.data(), g.data(), &d, &p);
        assert_close(dx.unwrap().data(), &rdx, 1e-4, 1e-4, "dx");
        assert_close(dw.unwrap().data(), &rdw, 1e-4, 1e-4, "dw");
        let mut rdb = vec![0.0f32; b.numel()];
        for nn in 0..n {
            for (i, v) in rdb.iter_mut().enumerate() {
                *v += g.data()[nn * b.numel() + i];
            }
        }
        assert_close(db.data(), &rdb, 1e-5, 1e-5, "db");
    }
}

#[test]
fn shape_errors() {
    let p = LocalParams {
        stride: (1, 1),
        padding: (0, 0),
    };
    let e = check(&[1, 3, 5, 5], &[3, 3, 2, 4, 3, 3], None, &p)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("locally_connected2d: input has 3 channels but weight expects 4"),
        "{e}"
    );
    let e = check(&[1, 3, 5, 5], &[2, 2, 2, 3, 3, 3], None, &p)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("weight is for a 2x2 output but this input gives 3x3"),
        "{e}"
    );
    let e = check(&[1, 3, 2, 2], &[1, 1, 2, 3, 3, 3], None, &p)
        .unwrap_err()
        .to_string();
    assert!(e.contains("larger than the padded input"), "{e}");
    let e = check(&[1, 3, 5, 5], &[3, 3, 2, 3, 3, 3], Some(&[2, 3]), &p)
        .unwrap_err()
        .to_string();
    assert!(e.contains("bias has shape (2, 3)"), "{e}");
    assert!(check(&[3, 5, 5], &[3, 3, 2, 3, 3, 3], None, &p).is_err());
}
