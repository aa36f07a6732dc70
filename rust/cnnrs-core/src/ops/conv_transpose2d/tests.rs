use super::*;
use crate::error::CnnError;
use crate::ops::conv2d::{self, Conv2dParams, Padding};
use crate::testutil::{assert_close, numeric_grad, Rng};

use crate::ops::conv2d::tests::TUNINGS;

#[derive(Debug)]
struct Case {
    x: Vec<usize>,
    w: Vec<usize>,
    bias: bool,
    p: ConvTranspose2dParams,
}

fn random_case(rng: &mut Rng) -> Case {
    const KERNELS: [(usize, usize); 7] = [(1, 1), (2, 2), (1, 3), (3, 1), (3, 3), (4, 4), (5, 3)];
    loop {
        let groups = 1 + rng.below(3);
        let c_in_g = 1 + rng.below(3);
        let c_out_g = 1 + rng.below(3);
        let (k_h, k_w) = KERNELS[rng.below(KERNELS.len())];
        let stride = (1 + rng.below(3), 1 + rng.below(3));
        let dilation = (1 + rng.below(2), 1 + rng.below(2));
        let padding = if rng.below(3) == 0 {
            (0, 0)
        } else {
            (rng.below(3), rng.below(3))
        };
        // Any output padding PyTorch accepts: below the stride or the dilation.
        let output_padding = (
            rng.below(stride.0.max(dilation.0)),
            rng.below(stride.1.max(dilation.1)),
        );
        let p = ConvTranspose2dParams {
            stride,
            padding,
            output_padding,
            dilation,
            groups,
        };
        let x = vec![
            rng.below(4),
            c_in_g * groups,
            1 + rng.below(5),
            1 + rng.below(5),
        ];
        let w = vec![c_in_g * groups, c_out_g, k_h, k_w];
        if ConvTranspose2dGeom::new(&x, &w, None, &p).is_ok() {
            return Case {
                x,
                w,
                bias: rng.below(2) == 0,
                p,
            };
        }
    }
}

fn tensor(rng: &mut Rng, shape: &[usize]) -> Tensor {
    Tensor::new(shape.to_vec(), rng.normal_vec(shape.iter().product())).unwrap()
}

fn out_shape(c: &Case) -> [usize; 4] {
    ConvTranspose2dGeom::new(&c.x, &c.w, None, &c.p)
        .unwrap()
        .out_shape()
}

#[test]
fn forward_matches_reference_on_random_shapes() {
    let mut rng = Rng::new(4242);
    for case_no in 0..300 {
        let c = random_case(&mut rng);
        let x = tensor(&mut rng, &c.x);
        let w = tensor(&mut rng, &c.w);
        let b = c.bias.then(|| tensor(&mut rng, &[c.w[1] * c.p.groups]));
        let want = reference::forward(&x, &w, b.as_ref(), &c.p).unwrap();
        for (name, t) in &TUNINGS {
            let what = format!("forward case {case_no} ({name}) {c:?}");
            let got = forward_tuned(&x, &w, b.as_ref(), &c.p, t).unwrap();
            assert_eq!(got.shape(), want.shape(), "{what}");
            assert_close(got.data(), want.data(), 1e-4, 1e-4, &what);
        }
    }
}

#[test]
fn backward_matches_reference_on_random_shapes() {
    let mut rng = Rng::new(7);
    for case_no in 0..300 {
        let c = random_case(&mut rng);
        let x = tensor(&mut rng, &c.x);
        let w = tensor(&mut rng, &c.w);
        let dy = tensor(&mut rng, &out_shape(&c));
        let (dx, dw, db) = reference::backward(&x, &w, &dy, &c.p).unwrap();
        for (name, t) in &TUNINGS {
            let what = format!("case {case_no} ({name}) {c:?}");
            let g = backward_tuned(&x, &w, &dy, &c.p, ConvTranspose2dNeeds::ALL, t).unwrap();
            let (gx, gw, gb) = (g.input.unwrap(), g.weight.unwrap(), g.bias.unwrap());
            assert_eq!(gx.shape(), x.shape(), "{what}");
            assert_eq!(gw.shape(), w.shape(), "{what}");
            assert_eq!(gb.shape(), &[c.w[1] * c.p.groups], "{what}");
            assert_close(gx.data(), dx.data(), 1e-4, 1e-4, &format!("dx {what}"));
            // dW and db sum over up to n*h*w (~100-1000) products.
            assert_close(gw.data(), dw.data(), 1e-4, 3e-4, &format!("dw {what}"));
            assert_close(gb.data(), db.data(), 1e-4, 3e-4, &format!("db {what}"));
        }
    }
}

/// Input and weight gradients wanted together, weights small beside the
/// images: both come from one pass over `grad_out` (the dual convolution's
/// forward and weight gradient per chunk of images). Every work split and
/// SIMD family against the reference, with the gradients asked for alone
/// (the separate passes) giving the same values, and the pass seen to run.
#[test]
fn input_and_weight_gradients_in_one_pass_match_reference() {
    use std::sync::atomic::Ordering;
    let mut rng = Rng::new(3131);
    let before = conv2d::backward::FWD_DW_RUNS.load(Ordering::Relaxed);
    for (no, &(n, c_in, c_out, k, stride, pad, hw)) in [
        (1, 4, 3, (2, 2), (2, 2), (0, 0), (9, 7)),
        (3, 6, 2, (2, 2), (2, 2), (0, 0), (6, 8)),
        (2, 3, 5, (3, 3), (1, 1), (1, 1), (10, 9)),
        (5, 2, 4, (3, 1), (2, 1), (1, 0), (7, 12)),
    ]
    .iter()
    .enumerate()
    {
        let p = ConvTranspose2dParams {
            stride,
            padding: pad,
            ..Default::default()
        };
        let c = Case {
            x: vec![n, c_in, hw.0, hw.1],
            w: vec![c_in, c_out, k.0, k.1],
            bias: true,
            p,
        };
        let x = tensor(&mut rng, &c.x);
        let w = tensor(&mut rng, &c.w);
        let dy = tensor(&mut rng, &out_shape(&c));
        let (dx, dw, db) = reference::backward(&x, &w, &dy, &c.p).unwrap();
        for (name, t) in &TUNINGS {
            let what = format!("case {no} ({name}) {c:?}");
            let g = backward_tuned(&x, &w, &dy, &c.p, ConvTranspose2dNeeds::ALL, t).unwrap();
            let (gx, gw, gb) = (g.input.unwrap(), g.weight.unwrap(), g.bias.unwrap());
            assert_close(gx.data(), dx.data(), 1e-4, 1e-4, &format!("dx {what}"));
            assert_close(gw.data(), dw.data(), 1e-4, 3e-4, &format!("dw {what}"));
            assert_close(gb.data(), db.data(), 1e-4, 3e-4, &format!("db {what}"));
            let alone = |input: bool| ConvTranspose2dNeeds {
                input,
                weight: !input,
                bias: false,
            };
            let gi = backward_tuned(&x, &w, &dy, &c.p, alone(true), t).unwrap();
            assert_eq!(gi.input.unwrap().data(), gx.data(), "dx alone {what}");
            let gwa = backward_tuned(&x, &w, &dy, &c.p, alone(false), t).unwrap();
            assert_eq!(gwa.weight.unwrap().data(), gw.data(), "dw alone {what}");
        }
    }
    assert!(
        conv2d::backward::FWD_DW_RUNS.load(Ordering::Relaxed) > before,
        "the one-pass backward never ran"
    );
}

/// Kernel equal to the stride, no padding or dilation (U-Net's 2x2 stride-2
/// up-sampling): the forward writes each tap's products straight to their
/// places. Every work split and SIMD family against the reference, with
/// and without bias, one and two groups, channel counts on both sides of
/// the direct kernels' limit; with an output padding the windows no longer
/// tile the output (the uncovered row/column holds the bias).
#[test]
fn kernel_equal_to_stride_matches_reference() {
    use std::sync::atomic::Ordering;
    let mut rng = Rng::new(2222);
    let before = conv2d::backward::DISJOINT_RUNS.load(Ordering::Relaxed);
    let kernels = [(2, 2), (3, 3), (2, 3), (1, 2), (2, 1)];
    let mut case_no = 0;
    for &(k_h, k_w) in &kernels {
        for &(c_in_g, c_out_g) in &[(1, 3), (3, 2), (10, 9)] {
            for groups in [1, 2] {
                let paddings = [(0, 0), (k_h.min(2) - 1, k_w.min(2) - 1)];
                for (output_padding, bias) in
                    paddings.into_iter().flat_map(|p| [(p, false), (p, true)])
                {
                    let p = ConvTranspose2dParams {
                        stride: (k_h, k_w),
                        output_padding,
                        groups,
                        ..Default::default()
                    };
                    let x_shape = [
                        1 + case_no % 3,
                        c_in_g * groups,
                        2 + case_no % 4,
                        3 + case_no % 3,
                    ];
                    let w_shape = [c_in_g * groups, c_out_g, k_h, k_w];
                    case_no += 1;
                    let x = tensor(&mut rng, &x_shape);
                    let w = tensor(&mut rng, &w_shape);
                    let b = bias.then(|| tensor(&mut rng, &[c_out_g * groups]));
                    let want = reference::forward(&x, &w, b.as_ref(), &p).unwrap();
                    for (name, t) in &TUNINGS {
                        let what = format!(
                            "k {k_h}x{k_w} x {x_shape:?} w {w_shape:?} bias {bias} {p:?} ({name})"
                        );
                        let got = forward_tuned(&x, &w, b.as_ref(), &p, t).unwrap();
                        assert_eq!(got.shape(), want.shape(), "{what}");
                        assert_close(got.data(), want.data(), 1e-4, 1e-4, &what);
                    }
                }
            }
        }
    }
    assert!(
        conv2d::backward::DISJOINT_RUNS.load(Ordering::Relaxed) > before,
        "the disjoint-window path never ran"
    );
}

/// `<conv2d(x, w), y> == <x, conv_transpose2d(y, w)>` for the same stride,
/// padding, dilation and groups, with the output padding that gives back
/// `x`'s size. Sums in float64; both sides are f32 results of O(1) values.
#[test]
fn adjoint_identity_with_conv2d() {
    let mut rng = Rng::new(31);
    let mut checked = 0;
    while checked < 200 {
        let groups = 1 + rng.below(3);
        let (c_in_g, c_out_g) = (1 + rng.below(3), 1 + rng.below(3));
        let (k_h, k_w) = (1 + rng.below(4), 1 + rng.below(4));
        let stride = (1 + rng.below(3), 1 + rng.below(3));
        let dilation = (1 + rng.below(2), 1 + rng.below(2));
        let padding = (rng.below(3), rng.below(3));
        let (h, w) = (1 + rng.below(8), 1 + rng.below(8));
        let xs = [1 + rng.below(3), c_in_g * groups, h, w];
        let ws = [c_out_g * groups, c_in_g, k_h, k_w];
        let cp = Conv2dParams::new(stride, padding, dilation, groups);
        let Ok(cg) = conv2d::Conv2dGeom::new(&xs, &ws, None, &cp) else {
            continue;
        };
        // conv2d maps h to h_out; the transposed conv maps h_out back to
        // (h_out-1)*s - 2p + d(k-1) + 1 + op, which is h for this op.
        let op = |len: usize, o: usize, k, s, p, d| len + 2 * p - d * (k - 1) - 1 - (o - 1) * s;
        let tp = ConvTranspose2dParams {
            stride,
            padding,
            output_padding: (
                op(h, cg.h_out, k_h, stride.0, padding.0, dilation.0),
                op(w, cg.w_out, k_w, stride.1, padding.1, dilation.1),
            ),
            dilation,
            groups,
        };
        let x = tensor(&mut rng, &xs);
        let wt = tensor(&mut rng, &ws);
        let y = tensor(&mut rng, &cg.out_shape());
        let cx = conv2d::forward(&x, &wt, None, &cp, false).unwrap();
        let ty = forward(&y, &wt, None, &tp).unwrap();
        assert_eq!(ty.shape(), x.shape(), "{tp:?}");
        let dot = |a: &Tensor, b: &Tensor| -> f64 {
            a.data()
                .iter()
                .zip(b.data())
                .map(|(&u, &v)| u as f64 * v as f64)
                .sum()
        };
        let (lhs, rhs) = (dot(&cx, &y), dot(&x, &ty));
        let scale = (cx.numel() as f64).sqrt() * (ws[1] * k_h * k_w) as f64;
        assert!(
            (lhs - rhs).abs() <= 1e-5 * scale.max(1.0),
            "{lhs} vs {rhs}: {xs:?} {ws:?} {tp:?}"
        );
        checked += 1;
    }
}

/// Loss `sum(conv_transpose2d(x, w, b) * r)` in float64; its gradients by
/// central differences must match the backward pass.
#[test]
fn gradients_match_finite_differences() {
    let mut rng = Rng::new(99);
    let configs = [
        (
            [2, 2, 3, 4],
            [2, 2, 3, 2],
            ConvTranspose2dParams {
                stride: (2, 1),
                padding: (1, 0),
                output_padding: (1, 0),
                dilation: (1, 2),
                groups: 2,
            },
        ),
        (
            [1, 3, 3, 3],
            [3, 2, 2, 2],
            ConvTranspose2dParams {
                stride: (2, 2),
                ..ConvTranspose2dParams::default()
            },
        ),
        (
            // 1x1 kernel, dilation 2, output padding 1: the dual conv is 1x1
            // stride 1 yet not pointwise (the extra row is never read).
            [2, 2, 3, 2],
            [2, 3, 1, 1],
            ConvTranspose2dParams {
                output_padding: (1, 1),
                dilation: (2, 2),
                ..ConvTranspose2dParams::default()
            },
        ),
    ];
    for (xs, ws, p) in configs {
        let c_out = ws[1] * p.groups;
        let x0 = rng.normal_vec(xs.iter().product());
        let w0 = rng.normal_vec(ws.iter().product());
        let b0 = rng.normal_vec(c_out);
        let out = ConvTranspose2dGeom::new(&xs, &ws, None, &p)
            .unwrap()
            .out_shape();
        let r = rng.normal_vec(out.iter().product());
        let t = |s: &[usize], v: &[f64]| {
            Tensor::new(s.to_vec(), v.iter().map(|&e| e as f32).collect()).unwrap()
        };
        let loss = |xv: &[f64], wv: &[f64], bv: &[f64]| -> f64 {
            let y = forward(&t(&xs, xv), &t(&ws, wv), Some(&t(&[c_out], bv)), &p).unwrap();
            y.data()
                .iter()
                .zip(&r)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum()
        };
        let f64s = |v: &[f32]| v.iter().map(|&e| e as f64).collect::<Vec<f64>>();
        let (x64, w64, b64) = (f64s(&x0), f64s(&w0), f64s(&b0));
        let h = 1e-2;
        let nx = numeric_grad(&x64, h, |v| loss(v, &w64, &b64));
        let nw = numeric_grad(&w64, h, |v| loss(&x64, v, &b64));
        let nb = numeric_grad(&b64, h, |v| loss(&x64, &w64, v));
        let dy = Tensor::new(out.to_vec(), r.clone()).unwrap();
        let g = backward(
            &t(&xs, &x64),
            &t(&ws, &w64),
            &dy,
            &p,
            ConvTranspose2dNeeds::ALL,
        )
        .unwrap();
        for (name, got, num) in [
            ("x", g.input.unwrap(), nx),
            ("w", g.weight.unwrap(), nw),
            ("b", g.bias.unwrap(), nb),
        ] {
            let num: Vec<f32> = num.iter().map(|&v| v as f32).collect();
            // f32 forward, h = 1e-2: ~1e-4 rounding noise relative to the loss.
            assert_close(got.data(), &num, 2e-3, 2e-3, &format!("fd {name} {p:?}"));
        }
    }
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.data().iter().map(|v| v.to_bits()).collect()
}

#[test]
fn repeated_runs_are_bit_identical() {
    let mut rng = Rng::new(5);
    // Large enough for the default tuning to go parallel (> 4 MFLOP).
    let x = tensor(&mut rng, &[6, 16, 12, 12]);
    let w = tensor(&mut rng, &[16, 4, 2, 2]);
    let b = tensor(&mut rng, &[8]);
    let p = ConvTranspose2dParams {
        stride: (2, 2),
        groups: 2,
        ..ConvTranspose2dParams::default()
    };
    let dy = tensor(&mut rng, &[6, 8, 24, 24]);
    for (name, t) in &TUNINGS {
        let y1 = forward_tuned(&x, &w, Some(&b), &p, t).unwrap();
        let g1 = backward_tuned(&x, &w, &dy, &p, ConvTranspose2dNeeds::ALL, t).unwrap();
        for _ in 0..3 {
            let y2 = forward_tuned(&x, &w, Some(&b), &p, t).unwrap();
            let g2 = backward_tuned(&x, &w, &dy, &p, ConvTranspose2dNeeds::ALL, t).unwrap();
            assert_eq!(bits(&y1), bits(&y2), "forward {name}");
            for (a, b) in [
                (&g1.input, &g2.input),
                (&g1.weight, &g2.weight),
                (&g1.bias, &g2.bias),
            ] {
                assert_eq!(
                    bits(a.as_ref().unwrap()),
                    bits(b.as_ref().unwrap()),
                    "{name}"
                );
            }
        }
    }
}

#[test]
fn backward_computes_only_what_is_needed() {
    let mut rng = Rng::new(3);
    let x = tensor(&mut rng, &[2, 2, 4, 4]);
    let w = tensor(&mut rng, &[2, 3, 3, 3]);
    let p = ConvTranspose2dParams {
        stride: (2, 2),
        padding: (1, 1),
        ..ConvTranspose2dParams::default()
    };
    let dy = tensor(&mut rng, &[2, 3, 7, 7]);
    let all = backward(&x, &w, &dy, &p, ConvTranspose2dNeeds::ALL).unwrap();
    for mask in 0..8 {
        let needs = ConvTranspose2dNeeds {
            input: mask & 1 != 0,
            weight: mask & 2 != 0,
            bias: mask & 4 != 0,
        };
        let g = backward(&x, &w, &dy, &p, needs).unwrap();
        assert_eq!(g.input.is_some(), needs.input);
        assert_eq!(g.weight.is_some(), needs.weight);
        assert_eq!(g.bias.is_some(), needs.bias);
        if let Some(gw) = g.weight {
            assert_eq!(Some(gw), all.weight);
        }
    }
}

fn out_hw(hw: (usize, usize), k: (usize, usize), p: ConvTranspose2dParams) -> (usize, usize) {
    let gm = ConvTranspose2dGeom::new(&[1, 1, hw.0, hw.1], &[1, 1, k.0, k.1], None, &p).unwrap();
    (gm.h_out, gm.w_out)
}

#[test]
fn output_sizes_match_known_values() {
    let s2 = ConvTranspose2dParams {
        stride: (2, 2),
        ..ConvTranspose2dParams::default()
    };
    // U-Net up-convolution: 2x2, stride 2 doubles the size (28 -> 56).
    assert_eq!(out_hw((28, 28), (2, 2), s2), (56, 56));
    // PyTorch's docs: a 3x3 stride-2 padding-1 conv takes 12x12 to 6x6; the
    // transposed conv with output_padding 1 gives 12x12 back (11 without).
    let up = ConvTranspose2dParams {
        padding: (1, 1),
        ..s2
    };
    assert_eq!(out_hw((6, 6), (3, 3), up), (11, 11));
    let up = ConvTranspose2dParams {
        output_padding: (1, 1),
        ..up
    };
    assert_eq!(out_hw((6, 6), (3, 3), up), (12, 12));
    // (50, 100), kernel (3, 5), stride (2, 1), padding (4, 2), dilation (3, 1):
    // (50-1)*2 - 8 + 3*2 + 1 = 97; (100-1) - 4 + 4 + 1 = 100.
    let p = ConvTranspose2dParams {
        stride: (2, 1),
        padding: (4, 2),
        dilation: (3, 1),
        ..ConvTranspose2dParams::default()
    };
    assert_eq!(out_hw((50, 100), (3, 5), p), (97, 100));
}

#[test]
fn zero_size_dims_give_empty_or_bias_results() {
    let mut rng = Rng::new(1);
    let p = ConvTranspose2dParams {
        stride: (2, 2),
        ..ConvTranspose2dParams::default()
    };
    // Zero batch.
    let x = Tensor::zeros(&[0, 3, 4, 4]).unwrap();
    let w = tensor(&mut rng, &[3, 2, 2, 2]);
    let b = tensor(&mut rng, &[2]);
    let y = forward(&x, &w, Some(&b), &p).unwrap();
    assert_eq!(y.shape(), &[0, 2, 8, 8]);
    let g = backward(&x, &w, &y, &p, ConvTranspose2dNeeds::ALL).unwrap();
    assert_eq!(g.input.unwrap().shape(), &[0, 3, 4, 4]);
    assert!(g.weight.unwrap().data().iter().all(|&v| v == 0.0));
    // Zero input channels: the output is the bias.
    let x = Tensor::zeros(&[2, 0, 3, 3]).unwrap();
    let w = Tensor::zeros(&[0, 3, 2, 2]).unwrap();
    let b = tensor(&mut rng, &[3]);
    let y = forward(&x, &w, Some(&b), &p).unwrap();
    assert_eq!(y.shape(), &[2, 3, 6, 6]);
    assert_eq!(y.data()[36], b.data()[1]);
    // Zero output channels.
    let x = tensor(&mut rng, &[2, 3, 3, 3]);
    let w = Tensor::zeros(&[3, 0, 2, 2]).unwrap();
    let y = forward(&x, &w, None, &p).unwrap();
    assert_eq!(y.shape(), &[2, 0, 6, 6]);
    let g = backward(&x, &w, &y, &p, ConvTranspose2dNeeds::ALL).unwrap();
    assert!(g.input.unwrap().data().iter().all(|&v| v == 0.0));
}

#[test]
fn uncovered_output_rows_hold_the_bias() {
    // stride 3, 1x1 kernel: output rows/cols 1, 2 (mod 3) get no tap.
    let x = Tensor::full(&[1, 1, 2, 2], 2.0).unwrap();
    let w = Tensor::full(&[1, 1, 1, 1], 3.0).unwrap();
    let b = Tensor::full(&[1], 0.5).unwrap();
    let p = ConvTranspose2dParams {
        stride: (3, 3),
        output_padding: (2, 1),
        ..ConvTranspose2dParams::default()
    };
    let y = forward(&x, &w, Some(&b), &p).unwrap();
    assert_eq!(y.shape(), &[1, 1, 6, 5]);
    for oh in 0..6 {
        for ow in 0..5 {
            let want = if oh % 3 == 0 && ow % 3 == 0 { 6.5 } else { 0.5 };
            assert_eq!(y.data()[oh * 5 + ow], want, "({oh}, {ow})");
        }
    }
}

#[test]
fn autograd_wrapper_matches_backward() {
    let mut rng = Rng::new(8);
    let p = ConvTranspose2dParams {
        stride: (2, 1),
        padding: (1, 0),
        output_padding: (1, 0),
        ..ConvTranspose2dParams::default()
    };
    let (xt, wt, bt) = (
        tensor(&mut rng, &[2, 3, 4, 5]),
        tensor(&mut rng, &[3, 4, 3, 3]),
        tensor(&mut rng, &[4]),
    );
    let x = Var::leaf(xt.clone(), true);
    let w = Var::leaf(wt.clone(), true);
    let b = Var::leaf(bt.clone(), true);
    let y = conv_transpose2d(&x, &w, Some(&b), &p).unwrap();
    assert_eq!(y.grad_fn_name(), Some("ConvTranspose2dBackward"));
    assert_eq!(*y.value(), forward(&xt, &wt, Some(&bt), &p).unwrap());
    let dy = tensor(&mut rng, &y.shape());
    y.backward(Some(dy.clone())).unwrap();
    let g = backward(&xt, &wt, &dy, &p, ConvTranspose2dNeeds::ALL).unwrap();
    assert_eq!(x.grad(), g.input);
    assert_eq!(w.grad(), g.weight);
    assert_eq!(b.grad(), g.bias);
    let y = conv_transpose2d(&Var::leaf(xt, false), &Var::leaf(wt, false), None, &p).unwrap();
    assert!(y.is_leaf() && !y.requires_grad());
}

fn fwd_err(xs: &[usize], ws: &[usize], bs: Option<&[usize]>, p: &ConvTranspose2dParams) -> String {
    let x = Tensor::zeros(xs).unwrap();
    let w = Tensor::zeros(ws).unwrap();
    let b = bs.map(|s| Tensor::zeros(s).unwrap());
    match forward(&x, &w, b.as_ref(), p) {
        Ok(t) => panic!("expected an error, got shape {:?}", t.shape()),
        Err(e) => {
            let e = e.to_string();
            assert!(e.starts_with("conv_transpose2d: "), "{e}");
            e
        }
    }
}

#[test]
fn channel_mismatch_message_names_both_shapes() {
    let e = fwd_err(
        &[8, 3, 16, 16],
        &[4, 2, 3, 3],
        None,
        &ConvTranspose2dParams::default(),
    );
    assert_eq!(
        e,
        "conv_transpose2d: input has 3 channels but weight expects 4 (weight dim 0); \
         input (8, 3, 16, 16), weight (4, 2, 3, 3)"
    );
}

#[test]
fn wrong_ranks_and_bias_are_refused() {
    let p = ConvTranspose2dParams::default();
    let e = fwd_err(&[3, 8, 8], &[3, 3, 3, 3], None, &p);
    assert!(e.contains("4-D input") && e.contains("(3, 8, 8)"), "{e}");
    let e = fwd_err(&[1, 3, 8, 8], &[3, 3, 3], None, &p);
    assert!(e.contains("4-D weight") && e.contains("(3, 3, 3)"), "{e}");
    let p2 = ConvTranspose2dParams { groups: 2, ..p };
    let e = fwd_err(&[1, 4, 8, 8], &[4, 3, 3, 3], Some(&[3]), &p2);
    assert!(
        e.contains("bias must have shape (6,)") && e.contains("got shape (3,)"),
        "{e}"
    );
    let e = fwd_err(&[1, 3, 8, 8], &[3, 3, 0, 3], None, &p);
    assert!(e.contains("kernel size must be positive"), "{e}");
    let e = fwd_err(&[1, 3, 0, 8], &[3, 3, 3, 3], None, &p);
    assert!(e.contains("height and width must be positive"), "{e}");
}

#[test]
fn groups_must_divide_the_input_channels() {
    let p = ConvTranspose2dParams {
        groups: 2,
        ..ConvTranspose2dParams::default()
    };
    let e = fwd_err(&[1, 3, 8, 8], &[3, 1, 3, 3], None, &p);
    assert!(
        e.contains("input channels (3) must be divisible by groups (2)"),
        "{e}"
    );
}

#[test]
fn output_padding_must_be_below_stride_or_dilation() {
    let with = |stride, dilation, op| ConvTranspose2dParams {
        stride,
        dilation,
        output_padding: op,
        ..ConvTranspose2dParams::default()
    };
    let e = fwd_err(
        &[1, 1, 4, 4],
        &[1, 1, 3, 3],
        None,
        &with((2, 2), (1, 1), (2, 0)),
    );
    assert!(
        e.contains(
            "output_padding must be smaller than either stride or dilation, got \
                    output_padding (2, 0), stride (2, 2), dilation (1, 1)"
        ),
        "{e}"
    );
    fwd_err(
        &[1, 1, 4, 4],
        &[1, 1, 3, 3],
        None,
        &with((1, 1), (1, 1), (0, 1)),
    );
    // Below the dilation is enough (PyTorch's rule).
    let x = Tensor::zeros(&[1, 1, 4, 4]).unwrap();
    let w = Tensor::zeros(&[1, 1, 3, 3]).unwrap();
    let y = forward(&x, &w, None, &with((1, 1), (3, 3), (2, 2))).unwrap();
    assert_eq!(y.shape(), &[1, 1, 12, 12]);
}

#[test]
fn output_size_below_one_is_refused() {
    let p = ConvTranspose2dParams {
        padding: (2, 0),
        ..ConvTranspose2dParams::default()
    };
    // (2-1) - 4 + 2 + 1 = 0 rows.
    let e = fwd_err(&[1, 1, 2, 2], &[1, 1, 3, 3], None, &p);
    assert!(
        e.contains("output size would be (0, 4), not positive"),
        "{e}"
    );
}

#[test]
fn negative_and_zero_arguments_are_refused() {
    let ok = ConvTranspose2dParams::from_i64((2, 2), (1, 1), (1, 0), (1, 1), 1).unwrap();
    assert_eq!(ok.output_padding, (1, 0));
    type Pair = (i64, i64);
    let cases: [(Pair, Pair, Pair, Pair, i64, &str); 7] = [
        (
            (0, 1),
            (0, 0),
            (0, 0),
            (1, 1),
            1,
            "stride must be positive, got (0, 1)",
        ),
        (
            (1, -1),
            (0, 0),
            (0, 0),
            (1, 1),
            1,
            "stride must be positive, got (1, -1)",
        ),
        (
            (1, 1),
            (-1, 0),
            (0, 0),
            (1, 1),
            1,
            "padding must be non-negative, got (-1, 0)",
        ),
        (
            (1, 1),
            (0, 0),
            (0, -1),
            (1, 1),
            1,
            "output_padding must be non-negative",
        ),
        (
            (1, 1),
            (0, 0),
            (0, 0),
            (0, 1),
            1,
            "dilation must be positive, got (0, 1)",
        ),
        (
            (1, 1),
            (0, 0),
            (0, 0),
            (1, 1),
            0,
            "groups must be positive, got 0",
        ),
        (
            (1, 1),
            (0, 0),
            (0, 0),
            (1, 1),
            -2,
            "groups must be positive, got -2",
        ),
    ];
    for (s, p, op, d, g, msg) in cases {
        let e = ConvTranspose2dParams::from_i64(s, p, op, d, g).unwrap_err();
        assert!(matches!(&e, CnnError::InvalidArgument(_)), "{e}");
        let e = e.to_string();
        assert!(
            e.starts_with("conv_transpose2d: ") && e.contains(msg),
            "{e}"
        );
    }
}

#[test]
fn huge_padding_is_an_error_not_a_crash() {
    let x = Tensor::zeros(&[1, 1, 2, 2]).unwrap();
    let w = Tensor::zeros(&[1, 1, 1, 1]).unwrap();
    let p = ConvTranspose2dParams {
        padding: (usize::MAX / 2, 0),
        ..ConvTranspose2dParams::default()
    };
    assert!(forward(&x, &w, None, &p).is_err());
    let p = ConvTranspose2dParams {
        stride: (1 << 40, 1 << 40),
        ..ConvTranspose2dParams::default()
    };
    assert!(matches!(
        forward(&x, &w, None, &p),
        Err(CnnError::OutOfMemory(_))
    ));
}

#[test]
fn grad_output_of_wrong_shape_is_refused() {
    let x = Tensor::zeros(&[2, 3, 4, 4]).unwrap();
    let w = Tensor::zeros(&[3, 2, 2, 2]).unwrap();
    let dy = Tensor::zeros(&[2, 2, 4, 4]).unwrap();
    let e = backward(
        &x,
        &w,
        &dy,
        &ConvTranspose2dParams::default(),
        ConvTranspose2dNeeds::ALL,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "conv_transpose2d backward: grad_output has shape (2, 2, 4, 4) but the output has \
         shape (2, 2, 5, 5)"
    );
}

#[test]
fn conv2d_padding_same_still_uses_its_own_geometry() {
    // The is_pointwise extent check must not change conv2d: a 1x1 'same'
    // conv is pointwise.
    let gm = conv2d::Conv2dGeom::new(
        &[1, 2, 5, 5],
        &[3, 2, 1, 1],
        None,
        &Conv2dParams {
            padding: Padding::Same,
            ..Conv2dParams::default()
        },
    )
    .unwrap();
    assert!(gm.is_pointwise());
    let p = ConvTranspose2dParams {
        output_padding: (1, 0),
        dilation: (2, 1),
        ..ConvTranspose2dParams::default()
    };
    let tg = ConvTranspose2dGeom::new(&[1, 2, 5, 5], &[2, 3, 1, 1], None, &p).unwrap();
    assert!(!tg.dual().is_pointwise());
}

#[test]
fn one_by_one_kernel_with_output_padding_matches_reference() {
    // k = 1, stride 1, no padding, but output_padding 1 (allowed by dilation
    // 2): the dual conv is 1x1 stride 1 yet must not take the pointwise path.
    let mut rng = Rng::new(12);
    let p = ConvTranspose2dParams {
        output_padding: (1, 1),
        dilation: (2, 2),
        ..ConvTranspose2dParams::default()
    };
    let x = tensor(&mut rng, &[2, 3, 4, 5]);
    let w = tensor(&mut rng, &[3, 2, 1, 1]);
    let b = tensor(&mut rng, &[2]);
    for (name, t) in &TUNINGS {
        let y = forward_tuned(&x, &w, Some(&b), &p, t).unwrap();
        assert_eq!(y.shape(), &[2, 2, 5, 6]);
        let want = reference::forward(&x, &w, Some(&b), &p).unwrap();
        assert_close(y.data(), want.data(), 1e-5, 1e-5, name);
        let dy = tensor(&mut rng, &[2, 2, 5, 6]);
        let g = backward_tuned(&x, &w, &dy, &p, ConvTranspose2dNeeds::ALL, t).unwrap();
        let (dx, dw, _) = reference::backward(&x, &w, &dy, &p).unwrap();
        assert_close(g.input.unwrap().data(), dx.data(), 1e-5, 1e-5, name);
        assert_close(g.weight.unwrap().data(), dw.data(), 1e-5, 1e-4, name);
    }
}
