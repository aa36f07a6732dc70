use super::*;
use crate::error::CnnError;
use crate::testutil::{assert_close, Rng};

/// Splits the work as finely as possible: one output row per im2col panel
/// or GEMM call, every conv parallel, three weight-gradient chunks whatever
/// the machine; the wide grid and the flipped input gradient forced on, the
/// scalar GEMM kernels.
pub(crate) const STRESS: Tuning = Tuning {
    panel_floats: 1,
    par_min_flops: 0,
    task_min_flops: 0,
    threads: Some(3),
    wide_max_waste: f64::INFINITY,
    flip_min_channels: 0,
    simd: Some(crate::kernels::SimdFamily::Scalar),
    direct_max_cout: 8,
};

/// Panels of a few rows, parallel over tasks, two chunks; the im2col panel
/// path and col2im forced, the AVX2 GEMM kernels.
pub(crate) const MEDIUM: Tuning = Tuning {
    panel_floats: 200,
    par_min_flops: 0,
    task_min_flops: 0,
    threads: Some(2),
    wide_max_waste: -1.0,
    flip_min_channels: usize::MAX,
    simd: Some(crate::kernels::SimdFamily::Avx2),
    direct_max_cout: 0,
};

/// The wide grid and the flipped input gradient whatever the waste or the
/// channel count, the direct kernels on or off, on a given SIMD family (a family the CPU lacks falls back
/// to the widest one it has).
pub(crate) const fn wide(simd: crate::kernels::SimdFamily, direct: bool) -> Tuning {
    Tuning {
        panel_floats: 300,
        par_min_flops: 0,
        task_min_flops: 0,
        threads: Some(2),
        wide_max_waste: f64::INFINITY,
        flip_min_channels: 0,
        simd: Some(simd),
        direct_max_cout: if direct { 8 } else { 0 },
    }
}

/// Every work split and kernel path, shared with conv_transpose2d's tests.
pub(crate) const TUNINGS: [(&str, Tuning); 7] = [
    ("default", Tuning::DEFAULT),
    ("medium", MEDIUM),
    ("stress", STRESS),
    ("wide_avx2", wide(crate::kernels::SimdFamily::Avx2, false)),
    (
        "wide_avx512",
        wide(crate::kernels::SimdFamily::Avx512, false),
    ),
    ("direct_avx2", wide(crate::kernels::SimdFamily::Avx2, true)),
    (
        "direct_avx512",
        wide(crate::kernels::SimdFamily::Avx512, true),
    ),
];

#[derive(Debug)]
struct Case {
    x: Vec<usize>,
    w: Vec<usize>,
    bias: bool,
    p: Conv2dParams,
}

fn random_case(rng: &mut Rng) -> Case {
    const KERNELS: [(usize, usize); 6] = [(1, 1), (1, 3), (3, 1), (3, 3), (5, 5), (7, 7)];
    let groups = 1 + rng.below(3);
    let depthwise = rng.below(4) == 0;
    let c_in_g = if depthwise { 1 } else { 1 + rng.below(3) };
    let c_out = groups * (1 + rng.below(3));
    let n = rng.below(4);
    if rng.below(6) == 0 {
        // 1x1, stride 1, no padding: the im2col-free path.
        let (h, w) = (1 + rng.below(7), 1 + rng.below(7));
        return Case {
            x: vec![n, c_in_g * groups, h, w],
            w: vec![c_out, c_in_g, 1, 1],
            bias: rng.below(2) == 0,
            p: Conv2dParams {
                dilation: (1 + rng.below(2), 1 + rng.below(2)),
                groups,
                ..Conv2dParams::default()
            },
        };
    }
    let (k_h, k_w) = KERNELS[rng.below(KERNELS.len())];
    let mut stride = (1 + rng.below(3), 1 + rng.below(3));
    let dilation = (1 + rng.below(2), 1 + rng.below(2));
    let padding = match rng.below(5) {
        0 => Padding::symmetric(rng.below(3), rng.below(3)),
        1 => Padding::Explicit {
            top: rng.below(4),
            bottom: rng.below(4),
            left: rng.below(4),
            right: rng.below(4),
        },
        2 => Padding::Valid,
        3 => {
            stride = (1, 1);
            Padding::Same
        }
        _ => Padding::symmetric(0, 0),
    };
    let (pt, pb, pl, pr) = match padding {
        Padding::Explicit {
            top,
            bottom,
            left,
            right,
        } => (top, bottom, left, right),
        _ => (0, 0, 0, 0),
    };
    let span_h = dilation.0 * (k_h - 1) + 1;
    let span_w = dilation.1 * (k_w - 1) + 1;
    let h = span_h.saturating_sub(pt + pb).max(1) + rng.below(6);
    let w = span_w.saturating_sub(pl + pr).max(1) + rng.below(6);
    Case {
        x: vec![n, c_in_g * groups, h, w],
        w: vec![c_out, c_in_g, k_h, k_w],
        bias: rng.below(2) == 0,
        p: Conv2dParams {
            stride,
            padding,
            dilation,
            groups,
        },
    }
}

fn tensor(rng: &mut Rng, shape: &[usize]) -> Tensor {
    Tensor::new(shape.to_vec(), rng.normal_vec(shape.iter().product())).unwrap()
}

/// Random `x`, `w` and an output gradient `dy` of the matching shape.
fn backward_inputs(
    rng: &mut Rng,
    x_shape: &[usize],
    w_shape: &[usize],
    p: &Conv2dParams,
) -> (Tensor, Tensor, Tensor) {
    let x = tensor(rng, x_shape);
    let w = tensor(rng, w_shape);
    let out = Conv2dGeom::new(x_shape, w_shape, None, p)
        .unwrap()
        .out_shape();
    let dy = tensor(rng, &out);
    (x, w, dy)
}

#[test]
fn forward_matches_reference_on_random_shapes() {
    let mut rng = Rng::new(2024);
    for case_no in 0..300 {
        let c = random_case(&mut rng);
        let x = tensor(&mut rng, &c.x);
        let w = tensor(&mut rng, &c.w);
        let b = c.bias.then(|| tensor(&mut rng, &c.w[..1]));
        let want = reference::forward(&x, &w, b.as_ref(), &c.p).unwrap();
        let relu_want: Vec<f32> = want.data().iter().map(|v| v.max(0.0)).collect();
        for (name, t) in &TUNINGS {
            let what = format!("forward case {case_no} ({name}) {c:?}");
            let got = forward_tuned(&x, &w, b.as_ref(), &c.p, false, t).unwrap();
            assert_eq!(got.shape(), want.shape(), "{what}");
            assert_close(got.data(), want.data(), 1e-4, 1e-4, &what);
            let got = forward_tuned(&x, &w, b.as_ref(), &c.p, true, t).unwrap();
            assert_close(got.data(), &relu_want, 1e-4, 1e-4, &format!("relu {what}"));
        }
    }
}

/// Windows that tile the input exactly (kernel == stride, no padding: a
/// patchify stem, a 2x2/2 down-sampling): the input gradient writes each
/// tap's products straight to their places. Input, weight and bias
/// gradients against the reference on every work split and SIMD family,
/// one and two groups, channel counts on both sides of the direct kernels'
/// limit; the path is seen to run.
#[test]
fn backward_with_kernel_equal_to_stride_matches_reference() {
    use std::sync::atomic::Ordering;
    let mut rng = Rng::new(4444);
    let before = backward::DISJOINT_RUNS.load(Ordering::Relaxed);
    for (no, &((k_h, k_w), (c_in_g, c_out_g), groups)) in [
        ((2, 2), (3, 4), 1),
        ((4, 4), (3, 10), 1),
        ((2, 3), (2, 9), 2),
        ((3, 1), (5, 2), 1),
        ((2, 2), (16, 12), 1),
    ]
    .iter()
    .enumerate()
    {
        let n = 1 + no % 3;
        let (h_out, w_out) = (2 + no % 3, 3 + no % 2);
        let x_shape = [n, c_in_g * groups, h_out * k_h, w_out * k_w];
        let w_shape = [c_out_g * groups, c_in_g, k_h, k_w];
        let p = Conv2dParams {
            stride: (k_h, k_w),
            groups,
            ..Default::default()
        };
        let (x, w, dy) = backward_inputs(&mut rng, &x_shape, &w_shape, &p);
        let (dx, dw, db) = reference::backward(&x, &w, &dy, &p).unwrap();
        for (name, t) in &TUNINGS {
            let what = format!("k {k_h}x{k_w} x {x_shape:?} w {w_shape:?} ({name})");
            let g = backward_tuned(&x, &w, &dy, &p, Conv2dNeeds::ALL, t).unwrap();
            let (gx, gw, gb) = (g.input.unwrap(), g.weight.unwrap(), g.bias.unwrap());
            assert_close(gx.data(), dx.data(), 1e-4, 1e-4, &format!("dx {what}"));
            assert_close(gw.data(), dw.data(), 1e-4, 3e-4, &format!("dw {what}"));
            assert_close(gb.data(), db.data(), 1e-4, 3e-4, &format!("db {what}"));
            // The input gradient alone (not through the one-pass backward).
            let needs = Conv2dNeeds {
                input: true,
                weight: false,
                bias: false,
            };
            let g = backward_tuned(&x, &w, &dy, &p, needs, t).unwrap();
            assert_close(
                g.input.unwrap().data(),
                dx.data(),
                1e-4,
                1e-4,
                &format!("dx alone {what}"),
            );
        }
    }
    assert!(
        backward::DISJOINT_RUNS.load(Ordering::Relaxed) > before,
        "the disjoint-window path never ran"
    );
}

/// One image with many more output positions than taps: its weight
/// gradient is split over output rows into partial sums (`dw_split`), on the
/// pointwise, wide-grid and im2col-panel paths, with groups and stride,
/// through the one-pass backward and the weight gradient alone; equal to the
/// reference and bit-identical from run to run.
#[test]
fn one_image_weight_gradient_split_over_rows_matches_reference() {
    let mut rng = Rng::new(9090);
    let before = backward::DW_SPLITS.with(|c| c.get());
    for (no, &((k_h, k_w), (c_in, c_out), stride, pad, groups, hw)) in [
        ((1, 1), (6, 10), 1, 0, 1, (9, 7)),
        ((3, 3), (3, 12), 1, 1, 1, (13, 11)),
        ((3, 3), (4, 8), 2, 1, 2, (17, 15)),
        ((1, 3), (2, 9), 1, 0, 1, (8, 12)),
        ((5, 5), (1, 16), 1, 2, 1, (20, 18)),
    ]
    .iter()
    .enumerate()
    {
        let x_shape = [1, c_in, hw.0, hw.1];
        let w_shape = [c_out, c_in / groups, k_h, k_w];
        let p = Conv2dParams {
            stride: (stride, stride),
            padding: Padding::Explicit {
                top: pad,
                bottom: pad,
                left: pad,
                right: pad,
            },
            groups,
            ..Default::default()
        };
        let (x, w, dy) = backward_inputs(&mut rng, &x_shape, &w_shape, &p);
        let (_, dw, _) = reference::backward(&x, &w, &dy, &p).unwrap();
        let weight_only = Conv2dNeeds {
            input: false,
            weight: true,
            bias: false,
        };
        for (name, t) in &TUNINGS {
            for needs in [Conv2dNeeds::ALL, weight_only] {
                let what = format!("case {no} x {x_shape:?} w {w_shape:?} ({name}, {needs:?})");
                let g1 = backward_tuned(&x, &w, &dy, &p, needs, t).unwrap();
                let gw = g1.weight.unwrap();
                assert_close(gw.data(), dw.data(), 1e-4, 3e-4, &what);
                let g2 = backward_tuned(&x, &w, &dy, &p, needs, t).unwrap();
                assert_eq!(bits(&gw), bits(&g2.weight.unwrap()), "{what}");
            }
        }
    }
    assert!(
        backward::DW_SPLITS.with(|c| c.get()) > before,
        "the split weight gradient never ran"
    );
}

#[test]
fn backward_matches_reference_on_random_shapes() {
    let mut rng = Rng::new(77);
    for case_no in 0..300 {
        let c = random_case(&mut rng);
        let x = tensor(&mut rng, &c.x);
        let w = tensor(&mut rng, &c.w);
        let out = Conv2dGeom::new(&c.x, &c.w, None, &c.p).unwrap().out_shape();
        let dy = tensor(&mut rng, &out);
        let (dx, dw, db) = reference::backward(&x, &w, &dy, &c.p).unwrap();
        for (name, t) in &TUNINGS {
            let what = format!("case {case_no} ({name}) {c:?}");
            let g = backward_tuned(&x, &w, &dy, &c.p, Conv2dNeeds::ALL, t).unwrap();
            let (gx, gw, gb) = (g.input.unwrap(), g.weight.unwrap(), g.bias.unwrap());
            assert_eq!(gx.shape(), x.shape(), "{what}");
            assert_eq!(gw.shape(), w.shape(), "{what}");
            assert_eq!(gb.shape(), &c.w[..1], "{what}");
            assert_close(
                gx.data(),
                dx.data(),
                1e-4,
                1e-4,
                &format!("grad input {what}"),
            );
            // The weight and bias gradients sum up to n*h_out*w_out (~1000)
            // terms: a slightly larger absolute tolerance.
            assert_close(
                gw.data(),
                dw.data(),
                1e-4,
                3e-4,
                &format!("grad weight {what}"),
            );
            assert_close(
                gb.data(),
                db.data(),
                1e-4,
                3e-4,
                &format!("grad bias {what}"),
            );
        }
    }
}

#[test]
fn backward_computes_only_what_is_needed() {
    let mut rng = Rng::new(3);
    let x = tensor(&mut rng, &[2, 2, 5, 5]);
    let w = tensor(&mut rng, &[3, 2, 3, 3]);
    let p = Conv2dParams::new((1, 1), (1, 1), (1, 1), 1);
    let dy = tensor(&mut rng, &[2, 3, 5, 5]);
    let all = backward(&x, &w, &dy, &p, Conv2dNeeds::ALL).unwrap();
    for mask in 0..8 {
        let needs = Conv2dNeeds {
            input: mask & 1 != 0,
            weight: mask & 2 != 0,
            bias: mask & 4 != 0,
        };
        let g = backward(&x, &w, &dy, &p, needs).unwrap();
        assert_eq!(g.input.is_some(), needs.input);
        assert_eq!(g.weight.is_some(), needs.weight);
        assert_eq!(g.bias.is_some(), needs.bias);
        if let Some(gx) = g.input {
            assert_eq!(Some(gx), all.input);
        }
    }
}

/// Loss `sum(conv(x, w, b) * r)` in float64; its gradients by central
/// differences must match the backward pass.
#[test]
fn gradients_match_finite_differences() {
    let mut rng = Rng::new(99);
    let configs = [
        (
            [2, 2, 5, 6],
            [4, 1, 3, 2],
            Conv2dParams {
                stride: (2, 1),
                padding: Padding::Explicit {
                    top: 1,
                    bottom: 0,
                    left: 2,
                    right: 1,
                },
                dilation: (1, 2),
                groups: 2,
            },
        ),
        (
            [1, 3, 4, 4],
            [2, 3, 2, 2],
            Conv2dParams {
                padding: Padding::Same,
                ..Conv2dParams::default()
            },
        ),
        ([2, 2, 3, 3], [2, 2, 1, 1], Conv2dParams::default()),
    ];
    for (xs, ws, p) in configs {
        let x0 = rng.normal_vec(xs.iter().product());
        let w0 = rng.normal_vec(ws.iter().product());
        let b0 = rng.normal_vec(ws[0]);
        let out = Conv2dGeom::new(&xs, &ws, None, &p).unwrap().out_shape();
        let r = rng.normal_vec(out.iter().product());
        let loss = |xv: &[f64], wv: &[f64], bv: &[f64]| -> f64 {
            let t = |s: &[usize], v: &[f64]| {
                Tensor::new(s.to_vec(), v.iter().map(|&e| e as f32).collect()).unwrap()
            };
            let y = forward(&t(&xs, xv), &t(&ws, wv), Some(&t(&[ws[0]], bv)), &p, false).unwrap();
            y.data()
                .iter()
                .zip(&r)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum()
        };
        let f64s = |v: &[f32]| v.iter().map(|&e| e as f64).collect::<Vec<f64>>();
        let (x64, w64, b64) = (f64s(&x0), f64s(&w0), f64s(&b0));
        let h = 1e-2;
        let nx = crate::testutil::numeric_grad(&x64, h, |v| loss(v, &w64, &b64));
        let nw = crate::testutil::numeric_grad(&w64, h, |v| loss(&x64, v, &b64));
        let nb = crate::testutil::numeric_grad(&b64, h, |v| loss(&x64, &w64, v));
        let dy = Tensor::new(out.to_vec(), r.clone()).unwrap();
        let x = Tensor::new(xs.to_vec(), x0.clone()).unwrap();
        let w = Tensor::new(ws.to_vec(), w0.clone()).unwrap();
        let g = backward(&x, &w, &dy, &p, Conv2dNeeds::ALL).unwrap();
        for (name, got, num) in [
            ("x", g.input.unwrap(), nx),
            ("w", g.weight.unwrap(), nw),
            ("b", g.bias.unwrap(), nb),
        ] {
            let num: Vec<f32> = num.iter().map(|&v| v as f32).collect();
            // f32 forward, h = 1e-2: the difference quotient carries ~1e-4 of
            // rounding noise relative to the loss.
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
    let x = tensor(&mut rng, &[6, 8, 20, 20]);
    let w = tensor(&mut rng, &[16, 4, 3, 3]);
    let b = tensor(&mut rng, &[16]);
    let p = Conv2dParams::new((1, 1), (1, 1), (1, 1), 2);
    let dy = tensor(&mut rng, &[6, 16, 20, 20]);
    for (name, t) in &TUNINGS {
        let y1 = forward_tuned(&x, &w, Some(&b), &p, false, t).unwrap();
        let g1 = backward_tuned(&x, &w, &dy, &p, Conv2dNeeds::ALL, t).unwrap();
        // The middle run serially, as while other processes hold the cores:
        // the same splits, so the same bits.
        for serial in [false, true, false] {
            crate::parallel::force_serial(serial);
            let y2 = forward_tuned(&x, &w, Some(&b), &p, false, t).unwrap();
            let g2 = backward_tuned(&x, &w, &dy, &p, Conv2dNeeds::ALL, t).unwrap();
            crate::parallel::force_serial(false);
            assert_eq!(bits(&y1), bits(&y2), "forward {name} serial {serial}");
            for (a, b) in [
                (&g1.input, &g2.input),
                (&g1.weight, &g2.weight),
                (&g1.bias, &g2.bias),
            ] {
                assert_eq!(
                    bits(a.as_ref().unwrap()),
                    bits(b.as_ref().unwrap()),
                    "{name} serial {serial}"
                );
            }
        }
    }
}

type Pair = (usize, usize);

fn out_hw(hw: Pair, k: Pair, stride: Pair, padding: Padding, dilation: Pair) -> Pair {
    let p = Conv2dParams {
        stride,
        padding,
        dilation,
        groups: 1,
    };
    let gm = Conv2dGeom::new(&[1, 1, hw.0, hw.1], &[1, 1, k.0, k.1], None, &p).unwrap();
    (gm.h_out, gm.w_out)
}

#[test]
fn output_sizes_match_known_values() {
    // Output sizes as PyTorch reports them (LeNet, ResNet stem and stages).
    let sym = Padding::symmetric;
    assert_eq!(
        out_hw((32, 32), (5, 5), (1, 1), sym(0, 0), (1, 1)),
        (28, 28)
    );
    assert_eq!(
        out_hw((224, 224), (3, 3), (2, 2), sym(1, 1), (1, 1)),
        (112, 112)
    );
    assert_eq!(
        out_hw((224, 224), (7, 7), (2, 2), sym(3, 3), (1, 1)),
        (112, 112)
    );
    assert_eq!(
        out_hw((10, 9), (3, 3), (1, 1), Padding::Valid, (2, 2)),
        (6, 5)
    );
    assert_eq!(
        out_hw((7, 8), (4, 2), (1, 1), Padding::Same, (1, 3)),
        (7, 8)
    );
    let asym = Padding::Explicit {
        top: 2,
        bottom: 0,
        left: 0,
        right: 1,
    };
    assert_eq!(out_hw((5, 5), (3, 3), (3, 2), asym, (1, 1)), (2, 2));
}

#[test]
fn same_padding_puts_the_extra_pixel_bottom_right() {
    let p = Conv2dParams {
        padding: Padding::Same,
        dilation: (1, 2),
        ..Conv2dParams::default()
    };
    // k_h = 4: total 3 -> top 1, bottom 2; k_w = 2 with dilation 2: total 2 -> 1, 1.
    let gm = Conv2dGeom::new(&[1, 1, 6, 6], &[1, 1, 4, 2], None, &p).unwrap();
    assert_eq!(
        (gm.pad_top, gm.pad_bottom, gm.pad_left, gm.pad_right),
        (1, 2, 1, 1)
    );
    assert_eq!((gm.h_out, gm.w_out), (6, 6));
    let gm = Conv2dGeom::new(
        &[1, 1, 6, 6],
        &[1, 1, 1, 1],
        None,
        &Conv2dParams {
            padding: Padding::Valid,
            ..p
        },
    )
    .unwrap();
    assert_eq!(
        (gm.pad_top, gm.pad_bottom, gm.pad_left, gm.pad_right),
        (0, 0, 0, 0)
    );
}

#[test]
fn zero_size_dims_give_empty_results() {
    let mut rng = Rng::new(1);
    let p = Conv2dParams::new((1, 1), (1, 1), (1, 1), 1);
    // Zero batch: empty output, empty input gradient, zero weight gradient.
    let x = Tensor::zeros(&[0, 3, 8, 8]).unwrap();
    let w = tensor(&mut rng, &[4, 3, 3, 3]);
    let b = tensor(&mut rng, &[4]);
    let y = forward(&x, &w, Some(&b), &p, false).unwrap();
    assert_eq!(y.shape(), &[0, 4, 8, 8]);
    let g = backward(&x, &w, &y, &p, Conv2dNeeds::ALL).unwrap();
    assert_eq!(g.input.unwrap().shape(), &[0, 3, 8, 8]);
    assert!(g.weight.unwrap().data().iter().all(|&v| v == 0.0));
    assert!(g.bias.unwrap().data().iter().all(|&v| v == 0.0));
    // Zero input channels: the output is the bias.
    let x = Tensor::zeros(&[2, 0, 4, 4]).unwrap();
    let w = Tensor::zeros(&[3, 0, 3, 3]).unwrap();
    let y = forward(&x, &w, Some(&tensor(&mut rng, &[3])), &p, false).unwrap();
    assert_eq!(y.shape(), &[2, 3, 4, 4]);
    let dy = Tensor::full(&[2, 3, 4, 4], 1.0).unwrap();
    let g = backward(&x, &w, &dy, &p, Conv2dNeeds::ALL).unwrap();
    assert_eq!(g.bias.unwrap().data(), &[32.0, 32.0, 32.0]);
    // Zero output channels.
    let x = tensor(&mut rng, &[2, 3, 4, 4]);
    let w = Tensor::zeros(&[0, 3, 3, 3]).unwrap();
    let y = forward(&x, &w, None, &p, false).unwrap();
    assert_eq!(y.shape(), &[2, 0, 4, 4]);
    let g = backward(&x, &w, &y, &p, Conv2dNeeds::ALL).unwrap();
    assert!(g.input.unwrap().data().iter().all(|&v| v == 0.0));
}

#[test]
fn autograd_wrapper_matches_backward() {
    let mut rng = Rng::new(8);
    let p = Conv2dParams::new((2, 1), (1, 0), (1, 1), 1);
    let (xt, wt, bt) = (
        tensor(&mut rng, &[2, 3, 7, 6]),
        tensor(&mut rng, &[4, 3, 3, 3]),
        tensor(&mut rng, &[4]),
    );
    let x = Var::leaf(xt.clone(), true);
    let w = Var::leaf(wt.clone(), true);
    let b = Var::leaf(bt.clone(), true);
    let y = conv2d(&x, &w, Some(&b), &p).unwrap();
    assert_eq!(y.grad_fn_name(), Some("Conv2dBackward"));
    assert_eq!(*y.value(), forward(&xt, &wt, Some(&bt), &p, false).unwrap());
    let dy = tensor(&mut rng, &y.shape());
    y.backward(Some(dy.clone())).unwrap();
    let g = backward(&xt, &wt, &dy, &p, Conv2dNeeds::ALL).unwrap();
    assert_eq!(x.grad(), g.input);
    assert_eq!(w.grad(), g.weight);
    assert_eq!(b.grad(), g.bias);

    // Only the weight requires grad; no bias.
    let x = Var::leaf(xt.clone(), false);
    let w = Var::leaf(wt.clone(), true);
    let y = conv2d(&x, &w, None, &p).unwrap();
    y.backward(Some(dy.clone())).unwrap();
    assert_eq!(w.grad(), g.weight);
    assert!(x.grad().is_none());

    // Nothing requires grad: no graph.
    let y = conv2d(&Var::leaf(xt, false), &Var::leaf(wt, false), None, &p).unwrap();
    assert!(y.is_leaf() && !y.requires_grad());
}

fn err(r: Result<Tensor>) -> String {
    match r {
        Ok(t) => panic!("expected an error, got shape {:?}", t.shape()),
        Err(e) => e.to_string(),
    }
}

fn fwd_err(xs: &[usize], ws: &[usize], bs: Option<&[usize]>, p: &Conv2dParams) -> String {
    let x = Tensor::zeros(xs).unwrap();
    let w = Tensor::zeros(ws).unwrap();
    let b = bs.map(|s| Tensor::zeros(s).unwrap());
    let e = err(forward(&x, &w, b.as_ref(), p, false));
    assert!(e.starts_with("conv2d"), "{e}");
    e
}

#[test]
fn channel_mismatch_message_names_both_shapes() {
    let e = fwd_err(
        &[8, 3, 32, 32],
        &[16, 4, 3, 3],
        None,
        &Conv2dParams::default(),
    );
    assert_eq!(
        e,
        "conv2d: input has 3 channels but weight expects 4 (groups=1); \
         input (8, 3, 32, 32), weight (16, 4, 3, 3)"
    );
    let p = Conv2dParams {
        groups: 2,
        ..Conv2dParams::default()
    };
    let e = fwd_err(&[1, 4, 5, 5], &[4, 1, 3, 3], None, &p);
    assert!(
        e.contains("input has 4 channels but weight expects 2 (groups=2)"),
        "{e}"
    );
}

#[test]
fn wrong_ranks_are_refused() {
    let p = Conv2dParams::default();
    let e = fwd_err(&[3, 8, 8], &[4, 3, 3, 3], None, &p);
    assert!(e.contains("4-D input") && e.contains("(3, 8, 8)"), "{e}");
    let e = fwd_err(&[1, 3, 8, 8], &[4, 3, 3], None, &p);
    assert!(e.contains("4-D weight") && e.contains("(4, 3, 3)"), "{e}");
}

#[test]
fn groups_must_divide_channels_and_be_positive() {
    let p = |groups| Conv2dParams {
        groups,
        ..Conv2dParams::default()
    };
    let e = fwd_err(&[1, 3, 8, 8], &[4, 1, 3, 3], None, &p(2));
    assert!(
        e.contains("input channels (3) must be divisible by groups (2)"),
        "{e}"
    );
    let e = fwd_err(&[1, 4, 8, 8], &[5, 2, 3, 3], None, &p(2));
    assert!(
        e.contains("output channels (5, weight dim 0) must be divisible by groups (2)"),
        "{e}"
    );
    let e = fwd_err(&[1, 4, 8, 8], &[4, 4, 3, 3], None, &p(0));
    assert!(e.contains("groups must be positive"), "{e}");
}

#[test]
fn kernel_larger_than_padded_input_is_refused() {
    let e = fwd_err(&[1, 1, 4, 4], &[1, 1, 5, 5], None, &Conv2dParams::default());
    assert!(e.contains("larger than the padded input (4, 4)"), "{e}");
    // Dilation counts: a 3x3 kernel with dilation 3 spans 7.
    let p = Conv2dParams::new((1, 1), (1, 1), (3, 3), 1);
    let e = fwd_err(&[1, 1, 4, 4], &[1, 1, 3, 3], None, &p);
    assert!(
        e.contains("spans (7, 7)") && e.contains("padded input (6, 6)"),
        "{e}"
    );
    // Zero-size spatial input without padding.
    let e = fwd_err(&[1, 1, 0, 4], &[1, 1, 1, 1], None, &Conv2dParams::default());
    assert!(e.contains("padded input (0, 4)"), "{e}");
    // ... but padding may make room: output 2x6.
    let x = Tensor::zeros(&[1, 1, 0, 4]).unwrap();
    let w = Tensor::full(&[1, 1, 1, 1], 1.0).unwrap();
    let y = forward(
        &x,
        &w,
        None,
        &Conv2dParams::new((1, 1), (1, 1), (1, 1), 1),
        false,
    )
    .unwrap();
    assert_eq!(y.shape(), &[1, 1, 2, 6]);
}

#[test]
fn bad_parameters_are_refused() {
    let (xs, ws) = ([1, 1, 8, 8], [1, 1, 3, 3]);
    let with = |f: &dyn Fn(&mut Conv2dParams)| {
        let mut p = Conv2dParams::default();
        f(&mut p);
        fwd_err(&xs, &ws, None, &p)
    };
    assert!(with(&|p| p.stride = (0, 1)).contains("stride must be positive, got (0, 1)"));
    assert!(with(&|p| p.dilation = (1, 0)).contains("dilation must be positive, got (1, 0)"));
    let e = with(&|p| {
        p.padding = Padding::Same;
        p.stride = (1, 2);
    });
    assert!(
        e.contains("padding='same' is not supported for strided convolutions"),
        "{e}"
    );
    let e = fwd_err(&xs, &[1, 1, 0, 3], None, &Conv2dParams::default());
    assert!(
        e.contains("kernel size must be positive, got (0, 3)"),
        "{e}"
    );
}

#[test]
fn signed_arguments_are_validated() {
    let pad0 = Padding::symmetric(0, 0);
    let e = Conv2dParams::from_i64((-1, 1), pad0, (1, 1), 1).unwrap_err();
    assert!(
        matches!(&e, CnnError::InvalidArgument(m) if m.contains("stride must be positive, got (-1, 1)")),
        "{e}"
    );
    let e = Conv2dParams::from_i64((1, 1), pad0, (1, -2), 1).unwrap_err();
    assert!(
        e.to_string()
            .contains("dilation must be positive, got (1, -2)"),
        "{e}"
    );
    let e = Conv2dParams::from_i64((1, 1), pad0, (1, 1), -3).unwrap_err();
    assert!(
        e.to_string().contains("groups must be positive, got -3"),
        "{e}"
    );
    let e = Conv2dParams::from_i64((1, 1), pad0, (1, 1), 0).unwrap_err();
    assert!(
        e.to_string().contains("groups must be positive, got 0"),
        "{e}"
    );
    let e = Conv2dParams::from_i64((2, 2), Padding::Same, (1, 1), 1).unwrap_err();
    assert!(e.to_string().contains("'same'"), "{e}");
    let e = Padding::from_i64(0, -1, 0, 0).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("conv2d: padding must be non-negative"),
        "{e}"
    );
    let e = Padding::parse("full").unwrap_err();
    assert!(e.to_string().contains("got 'full'"), "{e}");
    assert_eq!(Padding::parse("same").unwrap(), Padding::Same);
    assert_eq!(Padding::parse("valid").unwrap(), Padding::Valid);
    let p =
        Conv2dParams::from_i64((2, 3), Padding::from_i64(1, 2, 3, 4).unwrap(), (1, 2), 1).unwrap();
    assert_eq!(p.stride, (2, 3));
    assert_eq!(
        p.padding,
        Padding::Explicit {
            top: 1,
            bottom: 2,
            left: 3,
            right: 4
        }
    );
}

#[test]
fn bias_of_wrong_shape_is_refused() {
    let p = Conv2dParams::default();
    let e = fwd_err(&[1, 3, 8, 8], &[4, 3, 3, 3], Some(&[3]), &p);
    assert!(
        e.contains("bias must have shape (4,)") && e.contains("got shape (3,)"),
        "{e}"
    );
    let e = fwd_err(&[1, 3, 8, 8], &[4, 3, 3, 3], Some(&[1, 4]), &p);
    assert!(e.contains("got shape (1, 4)"), "{e}");
}

#[test]
fn huge_padding_is_an_error_not_a_crash() {
    let p = Conv2dParams::new((1, 1), (1 << 40, 1 << 40), (1, 1), 1);
    let x = Tensor::zeros(&[1, 1, 2, 2]).unwrap();
    let w = Tensor::zeros(&[1, 1, 1, 1]).unwrap();
    assert!(matches!(
        forward(&x, &w, None, &p, false),
        Err(CnnError::OutOfMemory(_))
    ));
    let p = Conv2dParams::new((1, 1), (usize::MAX, 0), (1, 1), 1);
    let e = err(forward(&x, &w, None, &p, false));
    assert!(e.contains("too large"), "{e}");
}

#[test]
fn grad_output_of_wrong_shape_is_refused() {
    let x = Tensor::zeros(&[2, 3, 8, 8]).unwrap();
    let w = Tensor::zeros(&[4, 3, 3, 3]).unwrap();
    let dy = Tensor::zeros(&[2, 4, 8, 8]).unwrap();
    let e = backward(&x, &w, &dy, &Conv2dParams::default(), Conv2dNeeds::ALL).unwrap_err();
    assert_eq!(
        e.to_string(),
        "conv2d backward: grad_output has shape (2, 4, 8, 8) but the output has shape (2, 4, 6, 6)"
    );
}

/// Shapes big enough that the default thresholds choose the wide grid
/// (forward and weight gradient), the flipped input gradient or the direct
/// kernels (few output channels), on every SIMD family this CPU has.
#[test]
fn default_fast_paths_match_reference_on_every_family() {
    let mut rng = Rng::new(5150);
    let cases = [
        (
            [2, 9, 18, 18],
            [10, 9, 3, 3],
            Conv2dParams::new((1, 1), (1, 1), (1, 1), 1),
        ),
        (
            [2, 3, 62, 62],
            [8, 3, 7, 7],
            Conv2dParams::new((2, 2), (3, 3), (1, 1), 1),
        ),
        (
            [1, 8, 16, 20],
            [12, 8, 1, 3],
            Conv2dParams::new((1, 1), (0, 1), (1, 1), 1),
        ),
        (
            [1, 16, 33, 33],
            [16, 8, 3, 3],
            Conv2dParams::new((1, 1), (2, 2), (2, 2), 2),
        ),
    ];
    for (xs, ws, p) in cases {
        let gm = Conv2dGeom::new(&xs, &ws, None, &p).unwrap();
        assert!(wide::WideGeom::new(&gm, Tuning::DEFAULT.wide_max_waste).is_some());
        matches_reference_on_every_family(&mut rng, &xs, &ws, &p, &[Conv2dNeeds::ALL], |_| {});
    }
}

/// The forward pass (with bias) and each set of gradients in `needs`, with
/// the default tuning on every SIMD family, against the reference; `check`
/// first sees each family's tuning (to assert which path it takes).
fn matches_reference_on_every_family(
    rng: &mut Rng,
    xs: &[usize],
    ws: &[usize],
    p: &Conv2dParams,
    needs: &[Conv2dNeeds],
    check: impl Fn(&Tuning),
) {
    let x = tensor(rng, xs);
    let w = tensor(rng, ws);
    let b = tensor(rng, &ws[..1]);
    let want = reference::forward(&x, &w, Some(&b), p).unwrap();
    let dy = tensor(rng, want.shape());
    let (dx, dw, db) = reference::backward(&x, &w, &dy, p).unwrap();
    for family in crate::kernels::simd::available() {
        let t = Tuning {
            simd: Some(family),
            ..Tuning::DEFAULT
        };
        check(&t);
        let what = format!("{family} x {xs:?} w {ws:?} {p:?}");
        let got = forward_tuned(&x, &w, Some(&b), p, false, &t).unwrap();
        assert_close(
            got.data(),
            want.data(),
            1e-4,
            1e-4,
            &format!("forward {what}"),
        );
        for &nd in needs {
            let g = backward_tuned(&x, &w, &dy, p, nd, &t).unwrap();
            let pairs = [
                (g.input, &dx, 1e-4, "dx"),
                (g.weight, &dw, 1e-3, "dw"),
                (g.bias, &db, 1e-3, "db"),
            ];
            for (got, want, atol, name) in pairs {
                if let Some(got) = got {
                    // Weight and bias sums run over n*h_out*w_out terms.
                    assert_close(
                        got.data(),
                        want.data(),
                        1e-4,
                        atol,
                        &format!("{name} {what}"),
                    );
                }
            }
        }
    }
}

#[test]
fn direct_kernels_match_reference_on_image_sized_maps() {
    let mut rng = Rng::new(4242);
    let cases = [
        // LeNet's first layer: 32 grid columns (two blocks).
        (
            [3, 1, 32, 32],
            [6, 1, 5, 5],
            Conv2dParams::new((1, 1), (0, 0), (1, 1), 1),
        ),
        // Three input channels, 3x3 'same': 32 columns.
        (
            [2, 3, 28, 30],
            [8, 3, 3, 3],
            Conv2dParams::new((1, 1), (1, 1), (1, 1), 1),
        ),
        // 7x7 on a 48-column grid (one block per row on AVX-512).
        (
            [1, 2, 20, 42],
            [5, 2, 7, 7],
            Conv2dParams::new((1, 1), (3, 3), (1, 1), 1),
        ),
        // A 3x5 kernel, uneven padding.
        (
            [2, 2, 24, 27],
            [4, 2, 3, 5],
            Conv2dParams::new((1, 1), (1, 2), (1, 1), 1),
        ),
        // Stride 2 and dilation 2: the gather.
        (
            [1, 2, 30, 30],
            [4, 2, 5, 5],
            Conv2dParams::new((2, 2), (2, 2), (1, 1), 1),
        ),
        (
            [1, 3, 30, 30],
            [6, 3, 3, 3],
            Conv2dParams::new((1, 1), (2, 2), (2, 2), 1),
        ),
    ];
    for (xs, ws, p) in cases {
        let gm = Conv2dGeom::new(&xs, &ws, None, &p).unwrap();
        let wg = wide::WideGeom::new(&gm, Tuning::DEFAULT.wide_max_waste).unwrap();
        let stride1 = p.stride == (1, 1) && p.dilation == (1, 1);
        assert_eq!(wg.gather(&gm).rows.is_some(), stride1, "{xs:?} {ws:?}");
        assert_eq!(wg.dw_rows(&gm).is_some(), stride1, "{xs:?} {ws:?}");
        let input_only = Conv2dNeeds {
            input: true,
            weight: false,
            bias: false,
        };
        let needs = [Conv2dNeeds::ALL, input_only];
        matches_reference_on_every_family(&mut rng, &xs, &ws, &p, &needs, |t| {
            assert!(t.direct(&gm))
        });
    }
}

#[test]
fn batched_columns_path_matches_reference() {
    // Many output channels over tiny maps (ResNet's last stages at CIFAR
    // sizes) take the path that shares one column matrix across images,
    // forward and backward; a small panel splits the batch into chunks.
    let mut rng = Rng::new(77);
    let small_panel = Tuning {
        panel_floats: 64,
        ..Tuning::DEFAULT
    };
    for &(n, c_in, c_out, hw, k, s, pad) in &[
        (5, 8, 40, 4, 3, 1, 1),
        (3, 16, 64, 2, 3, 2, 1),
        (4, 12, 48, 1, 1, 1, 0),
        (6, 4, 33, 3, 2, 1, 0),
    ] {
        let p = Conv2dParams::new((s, s), (pad, pad), (1, 1), 1);
        let x = tensor(&mut rng, &[n, c_in, hw, hw]);
        let w = tensor(&mut rng, &[c_out, c_in, k, k]);
        let b = tensor(&mut rng, &[c_out]);
        let gm = Conv2dGeom::new(x.shape(), w.shape(), Some(b.shape()), &p).unwrap();
        assert!(batched::applies(&gm), "case takes the batched path");
        let want = reference::forward(&x, &w, Some(&b), &p).unwrap();
        let dy = tensor(&mut rng, want.shape());
        let (dx, dw, db) = reference::backward(&x, &w, &dy, &p).unwrap();
        for t in [&Tuning::DEFAULT, &small_panel] {
            let got = forward_tuned(&x, &w, Some(&b), &p, false, t).unwrap();
            assert_close(got.data(), want.data(), 1e-4, 1e-4, "batched columns");
            let relu = forward_tuned(&x, &w, Some(&b), &p, true, t).unwrap();
            let relu_want: Vec<f32> = want.data().iter().map(|v| v.max(0.0)).collect();
            assert_close(relu.data(), &relu_want, 1e-4, 1e-4, "batched columns relu");
            // Every subset of the gradients (each pass alone and together).
            for (input, weight, bias) in [
                (true, true, true),
                (true, false, false),
                (false, true, false),
                (false, false, true),
            ] {
                let needs = Conv2dNeeds {
                    input,
                    weight,
                    bias,
                };
                let g = backward_tuned(&x, &w, &dy, &p, needs, t).unwrap();
                assert_eq!(g.input.is_some(), input);
                assert_eq!(g.weight.is_some(), weight);
                assert_eq!(g.bias.is_some(), bias);
                if let Some(gx) = g.input {
                    assert_close(gx.data(), dx.data(), 1e-4, 1e-4, "batched dx");
                }
                if let Some(gw) = g.weight {
                    assert_close(gw.data(), dw.data(), 1e-4, 1e-3, "batched dw");
                }
                if let Some(gb) = g.bias {
                    assert_close(gb.data(), db.data(), 1e-4, 1e-3, "batched db");
                }
            }
        }
    }
}

#[test]
fn one_pass_backward_equals_the_separate_passes() {
    // `Conv2dNeeds::ALL` runs the fused pass (`backward::grad_all`) where it
    // applies (these shapes: weights small next to the images); asking for one gradient at a time runs `grad_input`,
    // `grad_weight` and `channel_sums`. Same chunks, same sums: same bits.
    let mut rng = Rng::new(11);
    let cases: [(&[usize], &[usize], Conv2dParams); 4] = [
        (
            &[5, 8, 24, 24],
            &[16, 8, 3, 3],
            Conv2dParams::new((1, 1), (1, 1), (1, 1), 1),
        ),
        (
            &[4, 3, 41, 41],
            &[4, 3, 7, 7],
            Conv2dParams::new((2, 2), (3, 3), (1, 1), 1),
        ),
        (
            &[6, 16, 9, 9],
            &[8, 16, 1, 1],
            Conv2dParams::new((1, 1), (0, 0), (1, 1), 1),
        ),
        (
            &[3, 4, 10, 10],
            &[6, 4, 1, 3],
            Conv2dParams::new((1, 1), (0, 1), (1, 1), 1),
        ),
    ];
    let one = |input, weight, bias| Conv2dNeeds {
        input,
        weight,
        bias,
    };
    for (xs, ws, p) in cases {
        let x = tensor(&mut rng, xs);
        let w = tensor(&mut rng, ws);
        let y = forward_tuned(&x, &w, None, &p, false, &Tuning::DEFAULT).unwrap();
        let dy = tensor(&mut rng, y.shape());
        for (name, t) in &TUNINGS {
            let all = backward_tuned(&x, &w, &dy, &p, Conv2dNeeds::ALL, t).unwrap();
            // Without a bias gradient (bias-free layers) the pass runs too.
            let no_b = backward_tuned(&x, &w, &dy, &p, one(true, true, false), t).unwrap();
            assert!(no_b.bias.is_none());
            assert_eq!(
                bits(no_b.input.as_ref().unwrap()),
                bits(all.input.as_ref().unwrap())
            );
            assert_eq!(
                bits(no_b.weight.as_ref().unwrap()),
                bits(all.weight.as_ref().unwrap())
            );
            let dx = backward_tuned(&x, &w, &dy, &p, one(true, false, false), t).unwrap();
            let dw = backward_tuned(&x, &w, &dy, &p, one(false, true, false), t).unwrap();
            let db = backward_tuned(&x, &w, &dy, &p, one(false, false, true), t).unwrap();
            for (what, a, b) in [
                ("input", &all.input, &dx.input),
                ("weight", &all.weight, &dw.weight),
                ("bias", &all.bias, &db.bias),
            ] {
                assert_eq!(
                    bits(a.as_ref().unwrap()),
                    bits(b.as_ref().unwrap()),
                    "{name} {what} {xs:?} {ws:?}"
                );
            }
        }
    }
}

#[test]
fn stride2_split_and_its_adjoint_match_strided_loops() {
    // The phase split of `WideGeom::build` for stride 2 and `add_back`'s adjoint (vector groups of
    // 32 floats plus a scalar tail), against a plain strided copy, for
    // lengths around the group size and either run first.
    let mut rng = Rng::new(13);
    for len in [0, 1, 2, 31, 32, 33, 63, 64, 65, 224, 225] {
        let src = rng.normal_vec(len);
        for (e, o) in [(3, 200), (190, 0)] {
            let mut xq = vec![f32::NAN; 400];
            wide::deinterleave2(&src, &mut xq, e, o);
            let mut want = vec![f32::NAN; 400];
            for (i, v) in src.iter().enumerate() {
                want[if i % 2 == 0 { e + i / 2 } else { o + i / 2 }] = *v;
            }
            assert_eq!(
                bits_of(&xq),
                bits_of(&want),
                "len {len}, runs at {e} and {o}"
            );
            // And back: the adjoint adds each phase into its columns.
            let base = rng.normal_vec(len);
            let mut got = base.clone();
            wide::interleave2_add(&xq, e, o, &mut got);
            let want: Vec<f32> = base.iter().zip(&src).map(|(b, s)| b + s).collect();
            assert_eq!(bits_of(&got), bits_of(&want), "add, len {len}");
        }
    }
}

fn bits_of(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}
