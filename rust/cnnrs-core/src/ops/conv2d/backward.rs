//! Backward kernels.
//! - Input gradient: for stride 1, the convolution of `dy` with the flipped,
//!   transposed weight (padding `(k-1)*d - pad`), i.e. the forward kernels
//!   with no column matrix and no scatter; otherwise `dcol = W^T · dy` per
//!   panel, then `col2im` scatter-adds it into `dx`. Parallel over images
//!   and groups.
//! - Weight gradient: `dW += dy · col(x)^T` per image, on the wide grid
//!   (see [`super::wide`]) where the GEMM packs `col(x)^T` from a padded
//!   copy of the image, else per panel of output rows; the batch is split
//!   into a fixed number of chunks whose partial sums are reduced in chunk
//!   order, and one image on several threads into parts of its output rows
//!   the same way ([`dw_split`]).
//! - Bias gradient: a sum over N, H, W in float64.

use std::ops::Range;
use std::sync::Mutex;

use super::direct::{self, Direct};
use super::forward::{im2col, valid_range, GemmFn};
use super::params::Conv2dGeom;
use super::wide::{ValidColsT, WideGeom, SLACK};
use super::{assume_written, panel_len, uninit_buffer, with_scratch, zero_init, Tuning};
use crate::arg_err;
use crate::error::Result;
use crate::kernels::sum::sum_f64;
use crate::kernels::{GemmOpts, MatRef};
use crate::tensor::{try_zeros, Tensor};

/// The adjoint of [`im2col`]: adds `col` `[K, (oh1-oh0)*w_out]` back into the
/// input positions it was read from. `dx` is one image of one group,
/// `[c_in_g, h_in, w_in]`.
pub(super) fn col2im(col: &[f32], gm: &Conv2dGeom, oh0: usize, oh1: usize, dx: &mut [f32]) {
    let (w_in, w_out, hw_in) = (gm.w_in, gm.w_out, gm.hw_in());
    let cols = (oh1 - oh0) * w_out;
    debug_assert_eq!(col.len(), gm.col_rows() * cols);
    let mut rows = col.chunks_exact(cols);
    for c in 0..gm.c_in_g {
        let dxc = &mut dx[c * hw_in..(c + 1) * hw_in];
        for kh in 0..gm.k_h {
            let (oh_lo, oh_hi) =
                valid_range(gm.h_out, gm.h_in, gm.stride_h, kh * gm.dil_h, gm.pad_top);
            for kw in 0..gm.k_w {
                let (ow_lo, ow_hi) =
                    valid_range(w_out, w_in, gm.stride_w, kw * gm.dil_w, gm.pad_left);
                let Some(row) = rows.next() else { return };
                if ow_lo >= ow_hi {
                    continue;
                }
                let iw0 = ow_lo * gm.stride_w + kw * gm.dil_w - gm.pad_left;
                for oh in oh0.max(oh_lo)..oh1.min(oh_hi) {
                    let ih = oh * gm.stride_h + kh * gm.dil_h - gm.pad_top;
                    let src = &row[(oh - oh0) * w_out + ow_lo..(oh - oh0) * w_out + ow_hi];
                    let dst = &mut dxc[ih * w_in + iw0..(ih + 1) * w_in];
                    if gm.stride_w == 1 {
                        for (d, s) in dst.iter_mut().zip(src) {
                            *d += *s;
                        }
                    } else {
                        for (d, s) in dst.iter_mut().step_by(gm.stride_w).zip(src) {
                            *d += *s;
                        }
                    }
                }
            }
        }
    }
}

/// One image of one group: `dx [c_in_g, hw_in] = init + col2im(w^T [K, c_out_g] ·
/// dy [c_out_g, hw_out])`, where `init` is `bias[c]` on channel `c` (zero
/// without a bias). `dx` arrives zeroed.
fn dx_one(
    w: &[f32],
    dy: &[f32],
    bias: Option<&[f32]>,
    dx: &mut [f32],
    gm: &Conv2dGeom,
    wide: Option<&WideGeom>,
    tuning: &Tuning,
    mm: GemmFn,
) -> Result<()> {
    let (k, hw, w_out) = (gm.col_rows(), gm.hw_out(), gm.w_out);
    let wt = MatRef::transposed(w, k, gm.c_out_g, k);
    if gm.is_pointwise() {
        // col2im of a 1x1 stride-1 unpadded conv is the identity; the bias
        // (one per row of dx) goes into the epilogue.
        let opts = GemmOpts {
            bias_row: bias,
            ..GemmOpts::default()
        };
        mm.call(wt, MatRef::row_major(dy, gm.c_out_g, hw, hw), dx, hw, &opts);
        return Ok(());
    }
    if takes_disjoint(gm, wide.is_some(), tuning) {
        return dx_one_disjoint(wt, dy, bias, dx, gm, mm);
    }
    let direct = wide.is_some() && tuning.direct(gm);
    if let Some(b) = bias {
        for (plane, &bv) in dx.chunks_exact_mut(gm.hw_in()).zip(b) {
            plane.fill(bv);
        }
    }
    let opts = GemmOpts::default();
    if let Some(wg) = wide {
        if direct {
            let g = wg.gather(gm);
            let out_len = WideGeom::gather_out_len(gm, &g);
            return with_scratch(out_len + gm.c_out_g * g.row, |buf| {
                let (dxq, dyp) = buf.split_at_mut(out_len);
                WideGeom::widen_dy(gm, dy, (g.row, g.front, wg.wq), dyp);
                let d = Direct {
                    w,
                    c_out: gm.c_out_g,
                    offsets: &wg.offsets,
                    n: 0,
                };
                // Overwrites all of `dxq` that `add_back` reads.
                direct::grad_input(mm.family, &d, &g, dyp, dxq);
                wg.add_back(gm, dxq, dx);
                Ok(())
            });
        }
        return dx_one_wide(wt, dy, dx, gm, wg, tuning, mm);
    }
    let rows = tuning.panel_rows(gm);
    with_scratch(panel_len(gm, rows)?, |buf| {
        for oh0 in (0..gm.h_out).step_by(rows) {
            let oh1 = (oh0 + rows).min(gm.h_out);
            let cols = (oh1 - oh0) * w_out;
            let dcol = &mut buf[..k * cols]; // [K, cols]
            let dy_panel = MatRef::row_major(&dy[oh0 * w_out..], gm.c_out_g, cols, hw);
            mm.call(wt, dy_panel, dcol, cols, &opts);
            col2im(dcol, gm, oh0, oh1, dx);
        }
        Ok(())
    })
}

/// True when the windows tile the input exactly, without overlap: kernel
/// equal to the stride on both axes, no padding, no dilation, and the
/// input exactly `out * kernel` long (a 2x2 stride-2 transposed
/// convolution's forward, U-Net's up-sampling). Every input position then
/// takes exactly one tap of one output position.
fn disjoint_windows(gm: &Conv2dGeom) -> bool {
    gm.k_h == gm.stride_h
        && gm.k_w == gm.stride_w
        && gm.k_h * gm.k_w > 1
        && gm.dil_h == 1
        && gm.dil_w == 1
        && gm.pad_top + gm.pad_bottom + gm.pad_left + gm.pad_right == 0
        && gm.h_in == gm.h_out * gm.k_h
        && gm.w_in == gm.w_out * gm.k_w
}

/// Calls of [`dx_one_disjoint`], for tests that must see it run.
#[cfg(test)]
pub(crate) static DISJOINT_RUNS: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// Whether [`dx_one`] takes [`dx_one_disjoint`] (which overwrites all of
/// `dx`): disjoint windows, unless the direct kernels take the shape.
fn takes_disjoint(gm: &Conv2dGeom, wide: bool, tuning: &Tuning) -> bool {
    disjoint_windows(gm) && !(wide && tuning.direct(gm))
}

/// [`dx_one`] when [`disjoint_windows`] holds: `dcol = W^T · dy` (rows
/// `(c, kh, kw)`), then each row is written, with the bias, to its own
/// strided positions of `dx`: one store per element, where the general
/// path zeroes `dx` and a padded buffer, adds `dcol` into the buffer and
/// adds the buffer into `dx`.
fn dx_one_disjoint(
    wt: MatRef,
    dy: &[f32],
    bias: Option<&[f32]>,
    dx: &mut [f32],
    gm: &Conv2dGeom,
    mm: GemmFn,
) -> Result<()> {
    let (k, hw, w_out, w_in) = (gm.col_rows(), gm.hw_out(), gm.w_out, gm.w_in);
    let (kh_n, kw_n) = (gm.k_h, gm.k_w);
    #[cfg(test)]
    DISJOINT_RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    with_scratch(k * hw, |dcol| {
        let b = MatRef::row_major(dy, gm.c_out_g, hw, hw);
        mm.call(wt, b, dcol, hw, &GemmOpts::default());
        let dcol = &*dcol;
        crate::kernels::simd::wide(
            #[inline(always)]
            || {
                let planes = dx.chunks_exact_mut(gm.hw_in());
                for (c, (plane, taps)) in
                    planes.zip(dcol.chunks_exact(kh_n * kw_n * hw)).enumerate()
                {
                    let bv = bias.map_or(0.0, |b| b[c]);
                    for (kh, rows) in taps.chunks_exact(kw_n * hw).enumerate() {
                        for oh in 0..gm.h_out {
                            let ih = oh * kh_n + kh;
                            let out = &mut plane[ih * w_in..(ih + 1) * w_in];
                            let src = |kw: usize| &rows[kw * hw + oh * w_out..][..w_out];
                            if kw_n == 2 {
                                let (s0, s1) = (src(0), src(1));
                                for ((o, &a), &b) in out.chunks_exact_mut(2).zip(s0).zip(s1) {
                                    o[0] = a + bv;
                                    o[1] = b + bv;
                                }
                            } else {
                                for kw in 0..kw_n {
                                    let s = src(kw);
                                    for (o, &v) in out[kw..].iter_mut().step_by(kw_n).zip(s) {
                                        *o = v + bv;
                                    }
                                }
                            }
                        }
                    }
                }
            },
        );
        Ok(())
    })
}

/// [`dx_one`] on the wide grid: per chunk of output rows, `dcol = W^T ·
/// dy` (B read straight from `dy`, which the GEMM packs as it computes),
/// then every row of `dcol` is added, one output row at a time, to a
/// contiguous run of the padded, phase-split gradient buffer (the adjoint
/// of the forward's packing: no index arithmetic per element, and the adds
/// vectorise); finally the buffer's real positions are added into `dx`.
fn dx_one_wide(
    wt: MatRef,
    dy: &[f32],
    dx: &mut [f32],
    gm: &Conv2dGeom,
    wg: &WideGeom,
    tuning: &Tuning,
    mm: GemmFn,
) -> Result<()> {
    let (k, hw, w_out, wq) = (gm.col_rows(), gm.hw_out(), gm.w_out, wg.wq);
    let rows = super::forward::wide_rows_k(gm, wg, tuning);
    let dcol_len = k * rows * w_out;
    with_scratch(wg.xq_len + dcol_len, |buf| {
        let (dxq, dcol) = buf.split_at_mut(wg.xq_len);
        dxq.fill(0.0);
        for oh0 in (0..gm.h_out).step_by(rows) {
            let oh1 = (oh0 + rows).min(gm.h_out);
            let cols = (oh1 - oh0) * w_out;
            let dcol = &mut dcol[..k * cols]; // [K, cols]
            let b = MatRef::row_major(&dy[oh0 * w_out..], gm.c_out_g, cols, hw);
            mm.call(wt, b, dcol, cols, &GemmOpts::default());
            let dcol = &*dcol;
            crate::kernels::simd::wide(
                #[inline(always)]
                || {
                    for (row, &off) in dcol.chunks_exact(cols).zip(&wg.offsets) {
                        for (oh, src) in (oh0..oh1).zip(row.chunks_exact(w_out)) {
                            let o = off + oh * wq;
                            for (d, s) in dxq[o..o + w_out].iter_mut().zip(src) {
                                *d += *s;
                            }
                        }
                    }
                },
            );
        }
        crate::kernels::simd::wide(
            #[inline(always)]
            || wg.add_back(gm, dxq, dx),
        );
        Ok(())
    })
}

/// `dx` `[n, c_in, h_in, w_in]` from `w` `[c_out, c_in_g, k_h, k_w]` and
/// `dy` `[n, c_out, h_out, w_out]`. `bias` `[c_in]`, when given, is the
/// starting value of each input channel: `conv_transpose2d` (whose forward
/// this is) adds its bias that way instead of in a second pass.
pub(crate) fn grad_input(
    w: &[f32],
    dy: &[f32],
    bias: Option<&[f32]>,
    gm: &Conv2dGeom,
    tuning: &Tuning,
) -> Result<Tensor> {
    if gm.c_in_g >= tuning.flip_min_channels {
        if let Some(dual) = flipped_geom(gm) {
            let wf = flip_weight(w, gm);
            return super::forward::run(dy, &wf, bias, &dual, false, tuning);
        }
    }
    let shape = [gm.n, gm.c_in, gm.h_in, gm.w_in];
    let numel = crate::tensor::checked_numel(&shape)?;
    let dx_chunk = gm.c_in_g * gm.hw_in(); // one image of one group
    if numel == 0 || dx_chunk == 0 {
        return Tensor::zeros(&shape);
    }
    let mut dx = uninit_buffer(numel)?; // [n, c_in, h_in, w_in]
    let dy_chunk = gm.c_out_g * gm.hw_out();
    let w_chunk = gm.c_out_g * gm.col_rows();
    let wide = dx_grid(gm, tuning);
    let task = |t: usize, dx_t: &mut [f32], mm: GemmFn| -> Result<()> {
        let (img, g) = (t / gm.groups, t % gm.groups);
        let dy0 = (img * gm.c_out + g * gm.c_out_g) * gm.hw_out();
        dx_one(
            &w[g * w_chunk..(g + 1) * w_chunk],
            &dy[dy0..dy0 + dy_chunk],
            bias.map(|b| &b[g * gm.c_in_g..(g + 1) * gm.c_in_g]),
            dx_t,
            gm,
            wide.as_ref(),
            tuning,
            mm,
        )
    };
    // A pointwise convolution's input gradient is one GEMM that overwrites
    // its chunk, and so do disjoint windows; every other path adds into a
    // zeroed chunk.
    let zero = !gm.is_pointwise() && !takes_disjoint(gm, wide.is_some(), tuning);
    let spare = &mut dx.spare_capacity_mut()[..numel];
    let init = |d: &mut [std::mem::MaybeUninit<f32>]| -> *mut [f32] {
        if zero {
            zero_init(d)
        } else {
            // SAFETY (of the later use): written in full by `dx_one`.
            unsafe { assume_written(d) }
        }
    };
    match tuning.par_tasks(gm.n * gm.groups, gm.flops()) {
        Some(min_len) => crate::parallel::try_chunks_mut(spare, dx_chunk, min_len, |t, d| {
            // SAFETY: `init` returns the chunk itself, exclusively borrowed
            // for this task, zeroed or about to be overwritten.
            task(t, unsafe { &mut *init(d) }, tuning.mm(false))
        })?,
        None => {
            for (t, d) in spare.chunks_mut(dx_chunk).enumerate() {
                // SAFETY: as above.
                task(t, unsafe { &mut *init(d) }, tuning.mm(true))?;
            }
        }
    }
    // SAFETY: every chunk was zeroed or overwritten by its GEMM (the loops
    // return early on any error), and the chunks cover the first `numel`
    // floats.
    unsafe { dx.set_len(numel) };
    Ok(Tensor::from_parts(shape.to_vec(), dx))
}

/// For a stride-1 convolution, the convolution whose forward pass is this
/// one's input gradient: input `dy`, output `dx`, weight [`flip_weight`],
/// padding `(k-1)*d - pad` before and the rest after (`None` when either is
/// negative: padding wider than the kernel's reach).
pub(super) fn flipped_geom(gm: &Conv2dGeom) -> Option<Conv2dGeom> {
    if gm.stride_h != 1 || gm.stride_w != 1 || gm.is_pointwise() {
        return None;
    }
    let span_h = (gm.k_h - 1) * gm.dil_h;
    let span_w = (gm.k_w - 1) * gm.dil_w;
    let pad_top = span_h.checked_sub(gm.pad_top)?;
    let pad_left = span_w.checked_sub(gm.pad_left)?;
    // dx rows: h_out + pad_top + pad_bottom - span_h = h_in.
    let pad_bottom = (gm.h_in + span_h).checked_sub(gm.h_out + pad_top)?;
    let pad_right = (gm.w_in + span_w).checked_sub(gm.w_out + pad_left)?;
    Some(Conv2dGeom {
        n: gm.n,
        c_in: gm.c_out,
        h_in: gm.h_out,
        w_in: gm.w_out,
        c_out: gm.c_in,
        k_h: gm.k_h,
        k_w: gm.k_w,
        h_out: gm.h_in,
        w_out: gm.w_in,
        stride_h: 1,
        stride_w: 1,
        dil_h: gm.dil_h,
        dil_w: gm.dil_w,
        pad_top,
        pad_bottom,
        pad_left,
        pad_right,
        groups: gm.groups,
        c_in_g: gm.c_out_g,
        c_out_g: gm.c_in_g,
    })
}

/// The weight of [`flipped_geom`]: `[c_in, c_out_g, k_h, k_w]` with
/// `wf[g*c_in_g + ci, co, kh, kw] = w[g*c_out_g + co, ci, k_h-1-kh, k_w-1-kw]`.
pub(super) fn flip_weight(w: &[f32], gm: &Conv2dGeom) -> Vec<f32> {
    let taps = gm.k_h * gm.k_w;
    let mut wf = vec![0.0f32; w.len()];
    for g in 0..gm.groups {
        for co in 0..gm.c_out_g {
            for ci in 0..gm.c_in_g {
                let src = ((g * gm.c_out_g + co) * gm.c_in_g + ci) * taps;
                let dst = ((g * gm.c_in_g + ci) * gm.c_out_g + co) * taps;
                for t in 0..taps {
                    wf[dst + t] = w[src + taps - 1 - t];
                }
            }
        }
    }
    wf
}

/// One image of one group: `dw [c_out_g, K] += dy [c_out_g, hw_out] · col(x)^T`.
fn dw_one(
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    gm: &Conv2dGeom,
    wide: Option<&WideGeom>,
    tuning: &Tuning,
    mm: GemmFn,
) -> Result<()> {
    let (k, hw, w_out) = (gm.col_rows(), gm.hw_out(), gm.w_out);
    let acc = GemmOpts {
        accumulate: true,
        ..GemmOpts::default()
    };
    if gm.is_pointwise() {
        return dw_split(gm, tuning, mm, dw, |rows, dw, mm| {
            // Positions `p0..p0 + cols` (whole output rows).
            let (p0, cols) = (rows.start * w_out, rows.len() * w_out);
            let xt = MatRef::transposed(&x[p0..], cols, k, hw); // [cols, c_in_g]
            let a = MatRef::row_major(&dy[p0..], gm.c_out_g, cols, hw);
            mm.call(a, xt, dw, k, &acc);
            Ok(())
        });
    }
    let direct = |wg: &WideGeom| tuning.direct(gm) && wg.waste(gm) <= tuning.wide_max_waste;
    if let Some(wg) = wide.filter(|wg| direct(wg)) {
        if let Some(rg) = wg.dw_rows(gm) {
            let xq_len = wg.xq_len.max(rg.xq_reach(gm.c_in_g));
            return with_scratch(xq_len + gm.c_out_g * rg.dy_len(), |buf| {
                let (xq, dyr) = buf.split_at_mut(xq_len);
                wg.build(gm, x, &mut xq[..wg.xq_len]);
                xq[wg.xq_len..].fill(0.0);
                WideGeom::widen_dy(gm, dy, (rg.dy_len(), 0, rg.wq2), dyr);
                let d = Direct {
                    w: &[],
                    c_out: gm.c_out_g,
                    offsets: &wg.offsets,
                    n: 0,
                };
                direct::grad_weight_rows(mm.family, &d, &rg, dyr, xq, dw);
                Ok(())
            });
        }
        let (n, xq_len) = wg.direct_sizes();
        return with_scratch(xq_len + gm.c_out_g * n, |buf| {
            let (xq, dyw) = buf.split_at_mut(xq_len);
            wg.build(gm, x, &mut xq[..wg.xq_len]);
            xq[wg.xq_len..].fill(0.0);
            WideGeom::widen_dy(gm, dy, (n, 0, wg.wq), dyw);
            // `w` is not read by the weight-gradient kernel.
            let d = Direct {
                w: &[],
                c_out: gm.c_out_g,
                offsets: &wg.offsets,
                n,
            };
            direct::grad_weight(mm.family, &d, dyw, xq, dw);
            Ok(())
        });
    }
    if let Some(wg) = wide {
        // dW = dy [c_out_g, hw_out] · col^T, `col^T` packed over the valid
        // outputs straight from the padded copy of the image.
        let max_off = wg.offsets.iter().copied().max().unwrap_or(0);
        let len = wg.xq_len.max(max_off + wg.n_wide) + SLACK;
        return with_scratch(len, |xq| {
            wg.build(gm, x, &mut xq[..wg.xq_len]);
            xq[wg.xq_len..].fill(0.0);
            let xq = &*xq;
            dw_split(gm, tuning, mm, dw, |rows, dw, mm| {
                let (p0, cols) = (rows.start * w_out, rows.len() * w_out);
                let src = ValidColsT {
                    xq,
                    offsets: &wg.offsets,
                    col0: p0,
                    cols,
                    w_out,
                    wq: wg.wq,
                };
                let a = MatRef::row_major(&dy[p0..], gm.c_out_g, cols, hw);
                mm.src(a, &src, dw, k, &acc);
                Ok(())
            })
        });
    }
    let panel = tuning.panel_rows(gm);
    let len = panel_len(gm, panel)?;
    dw_split(gm, tuning, mm, dw, |rows, dw, mm| {
        with_scratch(len, |buf| {
            for oh0 in rows.clone().step_by(panel) {
                let oh1 = (oh0 + panel).min(rows.end);
                let cols = (oh1 - oh0) * w_out;
                let col = &mut buf[..k * cols]; // [K, cols]
                im2col(x, gm, oh0, oh1, col);
                let dy_panel = MatRef::row_major(&dy[oh0 * w_out..], gm.c_out_g, cols, hw);
                mm.call(
                    dy_panel,
                    MatRef::transposed(col, cols, k, cols),
                    dw,
                    k,
                    &acc,
                );
            }
            Ok(())
        })
    })
}

/// Parts of one image's output rows that [`dw_split`] runs in parallel.
///
/// One image's weight gradient is the product `[c_out_g, hw] · [hw, K]`;
/// the GEMM's own split cuts `C` (`c_out_g x K`) into tiles, and every tile
/// packs all of `dy` it multiplies. With many more positions than taps
/// (high-resolution layers at batch 1: U-Net's 16 channels at 256x256 have
/// 65536 positions for 144 taps) that repacks megabytes per task and the
/// few tiles do not balance: measured on 2 threads, 1.47x (16 channels,
/// 256x256) and 1.11x (32 channels, 128x128) the one-thread speed. Cutting
/// the positions instead (whole output rows, the `K` of the product)
/// leaves each part one serial product of its own rows plus a partial sum.
/// `1`: no split (`mm` does not split, one thread, or too little work).
fn dw_parts(gm: &Conv2dGeom, tuning: &Tuning, mm: GemmFn) -> usize {
    let threads = tuning.threads();
    let (k, hw) = (gm.col_rows(), gm.hw_out());
    let flops = 2usize
        .saturating_mul(gm.c_out_g)
        .saturating_mul(k)
        .saturating_mul(hw);
    if !mm.split || threads < 2 || hw < 4 * k || flops < tuning.par_min_flops {
        return 1;
    }
    // Two parts per thread, so a thread slowed by another process leaves a
    // part for the others; never below a row or the task minimum.
    (2 * threads)
        .min(gm.h_out)
        .min(flops / tuning.task_min_flops.max(1))
        .max(1)
}

/// Runs `part(rows, dw, mm)`, which adds the weight gradient of output rows
/// `rows` into `dw`, over all rows of one image: at once with `mm` when
/// [`dw_parts`] says 1; else the parts in parallel with serial GEMMs, part
/// 0 into `dw`, part `p > 0` into a zeroed partial sum, then the partials
/// added to `dw` in part order. The parts depend only on the shape and the
/// thread count, so the result is bit-identical from run to run.
fn dw_split(
    gm: &Conv2dGeom,
    tuning: &Tuning,
    mm: GemmFn,
    dw: &mut [f32],
    part: impl Fn(Range<usize>, &mut [f32], GemmFn) -> Result<()> + Sync,
) -> Result<()> {
    let parts = dw_parts(gm, tuning, mm);
    if parts <= 1 {
        return part(0..gm.h_out, dw, mm);
    }
    #[cfg(test)]
    DW_SPLITS.with(|c| c.set(c.get() + 1));
    let wn = dw.len();
    let mut partial = partial_sums(wn, parts - 1)?; // [parts - 1, c_out_g, K]
    let rows = |p: usize| p * gm.h_out / parts..(p + 1) * gm.h_out / parts;
    let serial = tuning.mm(false);
    {
        // Part `p` adds into `sums[p]`; a lock per part (never contended)
        // hands the disjoint buffers to whichever thread runs the part.
        let sums: Vec<Mutex<&mut [f32]>> = std::iter::once(&mut *dw)
            .chain(partial.chunks_exact_mut(wn))
            .map(Mutex::new)
            .collect();
        let error = Mutex::new(None);
        crate::parallel::for_each_index(parts, true, |p| {
            let r = match sums[p].lock() {
                Ok(mut buf) => part(rows(p), &mut buf, serial),
                Err(_) => Err(arg_err!("conv2d backward: a weight gradient part failed")),
            };
            if let Err(e) = r {
                if let Ok(mut slot) = error.lock() {
                    slot.get_or_insert(e);
                }
            }
        });
        if let Some(e) = error.into_inner().ok().flatten() {
            return Err(e);
        }
    }
    add_partials(dw, &partial);
    Ok(())
}

#[cfg(test)]
thread_local! {
    /// Weight gradients [`dw_split`] split on this thread (tests check the
    /// path ran).
    pub(super) static DW_SPLITS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Adds the weight gradient of images `imgs` into `dw` `[c_out, K]`, in image
/// order.
fn dw_images(
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    imgs: Range<usize>,
    gm: &Conv2dGeom,
    wide: Option<&WideGeom>,
    tuning: &Tuning,
    mm: GemmFn,
) -> Result<()> {
    let x_chunk = gm.c_in_g * gm.hw_in();
    let dy_chunk = gm.c_out_g * gm.hw_out();
    let w_chunk = gm.c_out_g * gm.col_rows();
    for img in imgs {
        for (g, dw_g) in dw.chunks_exact_mut(w_chunk).enumerate() {
            let x0 = (img * gm.c_in + g * gm.c_in_g) * gm.hw_in();
            let dy0 = (img * gm.c_out + g * gm.c_out_g) * gm.hw_out();
            dw_one(
                &x[x0..x0 + x_chunk],
                &dy[dy0..dy0 + dy_chunk],
                dw_g,
                gm,
                wide,
                tuning,
                mm,
            )?;
        }
    }
    Ok(())
}

/// Weight-gradient chunks per thread (see [`grad_weight`]).
const CHUNKS_PER_THREAD: usize = 4;
/// Most floats of weight-gradient partial sums (64 MiB).
const PARTIAL_FLOATS: usize = 1 << 24;

/// Elements per task of the partial-sum reduction (64 KiB of output).
const REDUCE_BLOCK: usize = 1 << 14;

/// `dw` `[c_out, c_in_g, k_h, k_w]` from `x` and `dy`.
///
/// The batch is cut into `chunks = min(n, 4*threads)` contiguous ranges
/// (fewer if their partial sums would pass 64 MiB; a function of the shapes
/// and thread count only, never of scheduling), run as rayon tasks. Chunk
/// 0 accumulates straight into `dw`, chunk `c > 0` into its own partial
/// buffer; then `dw += partial[1]; dw += partial[2]; ...` in that order. So the
/// result is bit-identical from run to run for the same thread count.
pub(crate) fn grad_weight(
    x: &[f32],
    dy: &[f32],
    gm: &Conv2dGeom,
    tuning: &Tuning,
) -> Result<Tensor> {
    let mut dw = Tensor::zeros(&[gm.c_out, gm.c_in_g, gm.k_h, gm.k_w])?;
    let wn = dw.numel();
    if wn == 0 || gm.n == 0 {
        return Ok(dw);
    }
    let chunks = match tuning.par_tasks(gm.n, gm.flops()) {
        Some(_) => dw_chunks(gm, tuning, wn),
        None => 1,
    };
    let range = |c: usize| c * gm.n / chunks..(c + 1) * gm.n / chunks;
    // Like the forward pass, the GEMM path computes no junk columns, so the
    // grid's width only matters to the direct kernels (checked there).
    let wide = super::forward::gemm_grid(gm, tuning);
    let wide = wide.as_ref();
    if chunks == 1 {
        dw_images(
            x,
            dy,
            dw.data_mut(),
            0..gm.n,
            gm,
            wide,
            tuning,
            tuning.mm(true),
        )?;
        return Ok(dw);
    }
    let mut partial = partial_sums(wn, chunks - 1)?; // [chunks - 1, c_out, K]
    let dw_data = dw.data_mut();
    // Chunk 0 sums into `dw` itself, chunk c > 0 into `partial[c - 1]`.
    let mut parts: Vec<&mut [f32]> = std::iter::once(dw_data)
        .chain(partial.chunks_mut(wn))
        .collect();
    crate::parallel::try_chunks_mut(&mut parts, 1, 1, |c, buf| {
        dw_images(x, dy, buf[0], range(c), gm, wide, tuning, tuning.mm(false))
    })?;
    let dw_data = dw.data_mut();
    add_partials(dw_data, &partial);
    Ok(dw)
}

/// Weight-gradient chunks for a parallel backward: a few per thread, so a
/// thread slowed by another process leaves chunks for the others to steal;
/// the `chunks - 1` partial buffers of `wn` floats stay below
/// [`PARTIAL_FLOATS`] (the weight is small next to the images for real
/// layers, so this rarely binds). A function of the shapes and the thread
/// count only, never of scheduling.
fn dw_chunks(gm: &Conv2dGeom, tuning: &Tuning, wn: usize) -> usize {
    let threads = tuning.threads();
    let by_mem = (PARTIAL_FLOATS / wn.max(1)).max(threads);
    gm.n.min(threads * CHUNKS_PER_THREAD).min(by_mem)
}

/// `dw += partial[0]; dw += partial[1]; ...` (`partial` holds whole copies
/// of `dw`): a fixed order, parallel over disjoint element blocks.
fn add_partials(dw: &mut [f32], partial: &[f32]) {
    let wn = dw.len();
    if partial.is_empty() || wn == 0 {
        return;
    }
    if wn <= REDUCE_BLOCK {
        // One block: not worth waking the pool (tens of microseconds here).
        for p in partial.chunks_exact(wn) {
            for (d, s) in dw.iter_mut().zip(p) {
                *d += *s;
            }
        }
        return;
    }
    crate::parallel::chunks_mut(dw, REDUCE_BLOCK, 1, |blk, dst| {
        let (off, len) = (blk * REDUCE_BLOCK, dst.len());
        for p in partial.chunks_exact(wn) {
            for (d, s) in dst.iter_mut().zip(&p[off..off + len]) {
                *d += *s;
            }
        }
    });
}

/// The wide grid of the input gradient's GEMM + col2im path, which does
/// compute junk columns: only within the tuning's waste bound.
fn dx_grid(gm: &Conv2dGeom, tuning: &Tuning) -> Option<WideGeom> {
    if gm.is_pointwise() {
        None
    } else {
        WideGeom::new(gm, tuning.wide_max_waste)
    }
}

/// The input, weight and (`bias`) bias gradients in one parallel pass over
/// the batch: chunk `c` of the images (the chunks of [`grad_weight`])
/// computes, image by image, the input gradient, the weight gradient into
/// its partial sum and the image's bias sums, while that image's `dy` is
/// still in cache; one barrier instead of three. Same chunks and the same order of every sum
/// as [`grad_input`], [`grad_weight`] and [`channel_sums`], so the results
/// are bit-identical to theirs. `None` when the shapes do not suit it (one
/// group only; a weight small next to an image's input and output).
pub(crate) fn grad_all(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    bias: bool,
    gm: &Conv2dGeom,
    tuning: &Tuning,
) -> Result<Option<(Tensor, Tensor, Option<Tensor>)>> {
    if gm.groups != 1 {
        return Ok(None);
    }
    // The split `grad_weight` would make: chunks on the pool, or one chunk
    // on this thread whose GEMMs may use the pool themselves.
    let par = tuning.par_tasks(gm.n, gm.flops()).is_some();
    let wn = gm.c_out * gm.col_rows();
    let chunks = if par { dw_chunks(gm, tuning, wn) } else { 1 };
    let (x_img, dy_img, hw) = (gm.c_in * gm.hw_in(), gm.c_out * gm.hw_out(), gm.hw_out());
    // Per image, the pass holds the weight (read by dx), the weight
    // gradient and the flipped weight next to the image's data: worth it
    // while the weight is small beside the image (1x1 and 7x7/2 stems,
    // LeNet: 5-12% faster backward). Where it is not, the separate passes'
    // smaller working sets win: ResNet-18's 64-channel 3x3 layers at 32x32
    // (a 147 KB weight, 256 KB images) made a training step ~4% slower, and
    // deep layers on small maps carry megabytes of weight per image.
    if !one_pass_pays(gm, wn, x_img + dy_img) {
        return Ok(None);
    }
    // The input gradient as `grad_input` would compute it: the flipped
    // forward convolution, or `dx_one`.
    let dual = (gm.c_in_g >= tuning.flip_min_channels)
        .then(|| flipped_geom(gm))
        .flatten();
    if dual.as_ref().is_some_and(super::batched::applies) {
        return Ok(None);
    }
    let wf = dual.as_ref().map(|_| flip_weight(w, gm));
    let wide_dual = dual
        .as_ref()
        .and_then(|d| super::forward::gemm_grid(d, tuning));
    let wide_dx = dx_grid(gm, tuning);
    let wide_dw = super::forward::gemm_grid(gm, tuning);
    let numel = crate::tensor::checked_numel(&[gm.n, gm.c_in, gm.h_in, gm.w_in])?;
    let mut dx = uninit_buffer(numel)?;
    let mut dw = Tensor::zeros(&[gm.c_out, gm.c_in_g, gm.k_h, gm.k_w])?;
    let mut partial = partial_sums(wn, chunks - 1)?; // [chunks - 1, c_out, K]
    let cb = if bias { gm.c_out } else { 0 }; // bias sums per image
    let mut sums = vec![0.0f64; gm.n * cb]; // [n, cb]
    let mm = tuning.mm(!par);
    // The images of a chunk, in order; `dx_c`, `sums_c`: theirs.
    let chunk = |imgs: Range<usize>,
                 dx_c: &mut [std::mem::MaybeUninit<f32>],
                 dw_c: &mut [f32],
                 sums_c: &mut [f64]|
     -> Result<()> {
        let i0 = imgs.start;
        for img in imgs {
            let dx_i = &mut dx_c[(img - i0) * x_img..(img - i0 + 1) * x_img];
            let dy_i = &dy[img * dy_img..(img + 1) * dy_img];
            match (&dual, &wf) {
                (Some(d), Some(wf)) => {
                    // SAFETY: the forward kernels write all of their output.
                    let dx_i = unsafe { assume_written(dx_i) };
                    super::forward::conv_one(
                        dy_i,
                        wf,
                        None,
                        dx_i,
                        d,
                        wide_dual.as_ref(),
                        false,
                        tuning,
                        mm,
                    )?;
                }
                _ => {
                    let dx_i = if gm.is_pointwise() {
                        // SAFETY: the pointwise GEMM overwrites all of it.
                        unsafe { assume_written(dx_i) }
                    } else {
                        zero_init(dx_i)
                    };
                    dx_one(w, dy_i, None, dx_i, gm, wide_dx.as_ref(), tuning, mm)?;
                }
            }
            dw_images(x, dy, dw_c, img..img + 1, gm, wide_dw.as_ref(), tuning, mm)?;
            let s_i = &mut sums_c[(img - i0) * cb..(img - i0 + 1) * cb];
            for (s, plane) in s_i.iter_mut().zip(dy_i.chunks_exact(hw.max(1))) {
                *s = sum_f64(plane);
            }
        }
        Ok(())
    };
    {
        let dx_all = &mut dx.spare_capacity_mut()[..numel];
        let tasks = chunk_tasks(chunks, gm.n, x_img, dx_all, dw.data_mut(), &mut partial);
        // Each chunk's bias sums too.
        let mut sums_rest = &mut sums[..];
        let tasks: Vec<_> = tasks
            .into_iter()
            .map(|(r, dx_c, dw_c)| {
                let (s_c, rest) = std::mem::take(&mut sums_rest).split_at_mut(r.len() * cb);
                sums_rest = rest;
                (r, dx_c, dw_c, s_c)
            })
            .collect();
        run_chunks(par, tasks, |(r, dx_c, dw_c, s_c)| chunk(r, dx_c, dw_c, s_c))?;
    }
    // SAFETY: every image's input gradient was written in full (zeroed and
    // accumulated, or overwritten); an error returned above.
    unsafe { dx.set_len(numel) };
    add_partials(dw.data_mut(), &partial);
    let db = bias.then(|| {
        let db = (0..cb)
            .map(|co| (0..gm.n).fold(0.0f64, |a, i| a + sums[i * cb + co]) as f32)
            .collect();
        Tensor::from_parts(vec![cb], db)
    });
    let dx = Tensor::from_parts(vec![gm.n, gm.c_in, gm.h_in, gm.w_in], dx);
    Ok(Some((dx, dw, db)))
}

/// The forward convolution `y = conv(x, w)` (no bias) and the weight
/// gradient `dw = sum_n dy_n · col(x_n)^T` of the same geometry, in one pass
/// over the images: each chunk of images computes both while an image is in
/// cache, and the pool joins once instead of twice. A transposed
/// convolution's backward is exactly this pair (its input gradient is the
/// dual convolution's forward of `grad_out`; its weight gradient the dual's
/// weight gradient with `grad_out` as the input). `None` where the separate
/// passes are the better plan, under the rules of [`grad_all`]: groups,
/// small maps that batch images into one column matrix, weights large
/// beside an image.
pub(crate) fn forward_and_grad_weight(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    gm: &Conv2dGeom,
    tuning: &Tuning,
) -> Result<Option<(Tensor, Tensor)>> {
    let wn = gm.c_out * gm.col_rows();
    let (x_img, y_img) = (gm.c_in * gm.hw_in(), gm.c_out * gm.hw_out());
    if gm.groups != 1 || !one_pass_pays(gm, wn, x_img + y_img) || super::batched::applies(gm) {
        return Ok(None);
    }
    let par = tuning.par_tasks(gm.n, gm.flops()).is_some();
    let chunks = if par { dw_chunks(gm, tuning, wn) } else { 1 };
    let wide = super::forward::gemm_grid(gm, tuning);
    let shape = gm.out_shape();
    let numel = crate::tensor::checked_numel(&shape)?;
    let mut y = uninit_buffer(numel)?;
    let mut dw = Tensor::zeros(&[gm.c_out, gm.c_in_g, gm.k_h, gm.k_w])?;
    let mut partial = partial_sums(wn, chunks - 1)?; // [chunks - 1, c_out, K]
    let mm = tuning.mm(!par);
    // The images of a chunk, in order; `y_c`: theirs.
    let chunk = |imgs: Range<usize>,
                 y_c: &mut [std::mem::MaybeUninit<f32>],
                 dw_c: &mut [f32]|
     -> Result<()> {
        let i0 = imgs.start;
        for img in imgs {
            // SAFETY: the forward kernels write all of their output.
            let y_i =
                unsafe { assume_written(&mut y_c[(img - i0) * y_img..(img - i0 + 1) * y_img]) };
            let x_i = &x[img * x_img..(img + 1) * x_img];
            super::forward::conv_one(x_i, w, None, y_i, gm, wide.as_ref(), false, tuning, mm)?;
            dw_images(x, dy, dw_c, img..img + 1, gm, wide.as_ref(), tuning, mm)?;
        }
        Ok(())
    };
    {
        let y_all = &mut y.spare_capacity_mut()[..numel];
        let tasks = chunk_tasks(chunks, gm.n, y_img, y_all, dw.data_mut(), &mut partial);
        run_chunks(par, tasks, |(r, y_c, dw_c)| chunk(r, y_c, dw_c))?;
    }
    // SAFETY: every image's output was written in full; an error returned
    // above.
    unsafe { y.set_len(numel) };
    #[cfg(test)]
    FWD_DW_RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    add_partials(dw.data_mut(), &partial);
    Ok(Some((Tensor::from_parts(shape.to_vec(), y), dw)))
}

/// Whether one pass per chunk of images (see [`grad_all`]) pays for a
/// weight of `wn` floats beside images of `img` floats (the two tensors
/// the pass reads per image): the weight must be small beside them, and
/// nothing empty.
fn one_pass_pays(gm: &Conv2dGeom, wn: usize, img: usize) -> bool {
    gm.n > 0 && wn > 0 && gm.hw_in() > 0 && gm.hw_out() > 0 && 8 * wn <= img
}

/// `count` zeroed partial sums of `wn` floats each, one after the other.
fn partial_sums(wn: usize, count: usize) -> Result<Vec<f32>> {
    let len = wn
        .checked_mul(count)
        .ok_or_else(|| arg_err!("conv2d backward: weight gradient buffers too large"))?;
    try_zeros(len)
}

/// The chunks of a one-pass backward: chunk `c` covers images
/// `c*n/chunks..(c+1)*n/chunks`, writes their part of `out` (`per_img`
/// values each) and adds its weight gradient into `dw` (chunk 0) or its own
/// `dw.len()`-float part of `partial` (chunk `c > 0`, `partial[c - 1]`).
#[allow(clippy::type_complexity)]
fn chunk_tasks<'a, T>(
    chunks: usize,
    n: usize,
    per_img: usize,
    out: &'a mut [T],
    dw: &'a mut [f32],
    partial: &'a mut [f32],
) -> Vec<(Range<usize>, &'a mut [T], &'a mut [f32])> {
    let wn = dw.len().max(1);
    assert_eq!(
        partial.len(),
        (chunks - 1) * dw.len(),
        "one partial sum per chunk after the first"
    );
    let mut dws = std::iter::once(dw).chain(partial.chunks_exact_mut(wn));
    let mut out_rest = out;
    (0..chunks)
        .zip(&mut dws)
        .map(|(c, dw_c)| {
            let r = c * n / chunks..(c + 1) * n / chunks;
            let (o, rest) = std::mem::take(&mut out_rest).split_at_mut(r.len() * per_img);
            out_rest = rest;
            (r, o, dw_c)
        })
        .collect()
}

/// Runs the chunks on the pool (`par`, one chunk per rayon task) or in
/// order on this thread; the first error wins.
fn run_chunks<T: Send>(par: bool, tasks: Vec<T>, f: impl Fn(T) -> Result<()> + Sync) -> Result<()> {
    if par {
        let mut slots: Vec<Option<T>> = tasks.into_iter().map(Some).collect();
        crate::parallel::try_chunks_mut(&mut slots, 1, 1, |_, slot| {
            slot[0].take().map_or(Ok(()), &f)
        })
    } else {
        tasks.into_iter().try_for_each(f)
    }
}

/// Calls of [`forward_and_grad_weight`] that ran (tests check the path ran).
#[cfg(test)]
pub(crate) static FWD_DW_RUNS: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// The bias gradient: `db[c] = sum over n, h, w of dy[n, c, h, w]` for `dy`
/// `[n, c, hw]`, accumulated in float64.
/// Channels run in parallel when `dy` is large; each channel adds its
/// planes in image order either way, so the result does not depend on the
/// thread count.
pub(crate) fn channel_sums(dy: &[f32], c: usize, hw: usize) -> Tensor {
    if hw == 0 || c == 0 {
        return Tensor::from_parts(vec![c], vec![0.0; c]);
    }
    let n = dy.len() / (c * hw);
    let channel = |ch: usize| -> f32 {
        let planes = (0..n).map(|i| &dy[(i * c + ch) * hw..(i * c + ch + 1) * hw]);
        planes.fold(0.0f64, |a, plane| a + sum_f64(plane)) as f32
    };
    let sums = if dy.len() >= CHANNEL_SUMS_PAR_MIN && c > 1 {
        let mut sums = vec![0.0f32; c];
        crate::parallel::chunks_mut(&mut sums, 1, 1, |ch, s| s[0] = channel(ch));
        sums
    } else {
        (0..c).map(channel).collect()
    };
    Tensor::from_parts(vec![c], sums)
}

/// Elements of `dy` from which [`channel_sums`] uses the pool (~0.1 ms of
/// work on one core).
const CHANNEL_SUMS_PAR_MIN: usize = 1 << 18;
