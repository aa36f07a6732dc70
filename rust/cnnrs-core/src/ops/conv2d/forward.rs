//! Forward kernels: GEMM of the weight with the column matrix, the bias (and
//! optional ReLU) fused in its epilogue. The column matrix is either packed
//! by the GEMM straight from a padded copy of the image (the wide grid, see
//! [`super::wide`]) or, for small maps where the wide grid wastes too much,
//! built one panel of output rows at a time. The kernels see one image of
//! one group; the driver [`run`] splits the batch and the groups.

use super::direct::{self, Direct};
use super::params::Conv2dGeom;
use super::wide::{ValidCols, WideGeom, SLACK};
use super::{panel_len, uninit_buffer, with_scratch, Tuning};
use crate::error::Result;
use crate::kernels::{
    gemm_par_with, gemm_src_with, gemm_with, GemmOpts, MatRef, PackB, SimdFamily,
};
use crate::tensor::Tensor;

/// The GEMM to call: serial inside a parallel region, self-splitting outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct GemmFn {
    pub split: bool,
    pub family: SimdFamily,
}

impl GemmFn {
    pub(super) fn call(self, a: MatRef, b: MatRef, c: &mut [f32], ldc: usize, opts: &GemmOpts) {
        if self.split {
            gemm_par_with(self.family, a, b, c, ldc, opts)
        } else {
            gemm_with(self.family, a, b, c, ldc, opts)
        }
    }
    pub(super) fn src(self, a: MatRef, b: &dyn PackB, c: &mut [f32], ldc: usize, opts: &GemmOpts) {
        gemm_src_with(self.family, self.split, a, b, c, ldc, opts)
    }
}

/// Output positions `o` in `0..out` whose input index `o*stride + k_off - pad`
/// lies in `0..len`, as a range `lo..hi` (empty when none does). The caller
/// guarantees `pad + len` does not overflow (checked in [`Conv2dGeom::new`]).
#[inline]
pub(super) fn valid_range(
    out: usize,
    len: usize,
    stride: usize,
    k_off: usize,
    pad: usize,
) -> (usize, usize) {
    let lo = if k_off >= pad {
        0
    } else {
        (pad - k_off).div_ceil(stride)
    };
    let lim = pad + len;
    let hi = if k_off >= lim {
        0
    } else {
        (lim - k_off - 1) / stride + 1
    };
    let hi = hi.min(out);
    (lo.min(hi), hi)
}

/// Fills `col` `[K, (oh1-oh0)*w_out]` (row-major) with the column matrix of
/// output rows `oh0..oh1`: row `(c*k_h + kh)*k_w + kw` (the weight's order),
/// column `(oh-oh0)*w_out + ow`, value `x[c, oh*s_h + kh*d_h - pad_top,
/// ow*s_w + kw*d_w - pad_left]`, or 0 in the padding. Every element of `col`
/// is written.
///
/// `x` is one image of one group: `[c_in_g, h_in, w_in]`.
pub(super) fn im2col(x: &[f32], gm: &Conv2dGeom, oh0: usize, oh1: usize, col: &mut [f32]) {
    let (w_in, w_out, hw_in) = (gm.w_in, gm.w_out, gm.hw_in());
    let cols = (oh1 - oh0) * w_out;
    debug_assert_eq!(col.len(), gm.col_rows() * cols);
    let mut rows = col.chunks_exact_mut(cols);
    for c in 0..gm.c_in_g {
        let xc = &x[c * hw_in..(c + 1) * hw_in];
        for kh in 0..gm.k_h {
            let (oh_lo, oh_hi) =
                valid_range(gm.h_out, gm.h_in, gm.stride_h, kh * gm.dil_h, gm.pad_top);
            for kw in 0..gm.k_w {
                let (ow_lo, ow_hi) =
                    valid_range(w_out, w_in, gm.stride_w, kw * gm.dil_w, gm.pad_left);
                let Some(row) = rows.next() else { return };
                for (oh, dst) in (oh0..oh1).zip(row.chunks_exact_mut(w_out)) {
                    if oh < oh_lo || oh >= oh_hi || ow_lo >= ow_hi {
                        dst.fill(0.0);
                        continue;
                    }
                    let ih = oh * gm.stride_h + kh * gm.dil_h - gm.pad_top;
                    let src = &xc[ih * w_in..(ih + 1) * w_in];
                    dst[..ow_lo].fill(0.0);
                    dst[ow_hi..].fill(0.0);
                    let iw0 = ow_lo * gm.stride_w + kw * gm.dil_w - gm.pad_left;
                    let dst = &mut dst[ow_lo..ow_hi];
                    if gm.stride_w == 1 {
                        dst.copy_from_slice(&src[iw0..iw0 + dst.len()]);
                    } else {
                        for (d, s) in dst.iter_mut().zip(src[iw0..].iter().step_by(gm.stride_w)) {
                            *d = *s;
                        }
                    }
                }
            }
        }
    }
}

/// One image of one group: `out [c_out_g, hw_out] = w [c_out_g, K] · col(x)`
/// plus the epilogue. `x` is `[c_in_g, h_in, w_in]`.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv_one(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    gm: &Conv2dGeom,
    wide: Option<&WideGeom>,
    relu: bool,
    tuning: &Tuning,
    mm: GemmFn,
) -> Result<()> {
    let (k, hw, w_out) = (gm.col_rows(), gm.hw_out(), gm.w_out);
    let a = MatRef::row_major(w, gm.c_out_g, k, k);
    let opts = GemmOpts {
        bias_row: bias,
        relu,
        ..GemmOpts::default()
    };
    if gm.is_pointwise() {
        // The input of the group already is the [K = c_in_g, hw] column matrix.
        mm.call(a, MatRef::row_major(x, k, hw, hw), out, hw, &opts);
        return Ok(());
    }
    if let Some(wg) = wide {
        if tuning.direct(gm) && wg.waste(gm) <= tuning.wide_max_waste {
            return conv_one_direct(x, w, out, gm, wg, &opts, mm);
        }
        return conv_one_wide(x, a, out, gm, wg, &opts, mm);
    }
    let rows = tuning.panel_rows(gm);
    with_scratch(panel_len(gm, rows)?, |buf| {
        for oh0 in (0..gm.h_out).step_by(rows) {
            let oh1 = (oh0 + rows).min(gm.h_out);
            let cols = (oh1 - oh0) * w_out;
            let col = &mut buf[..k * cols];
            im2col(x, gm, oh0, oh1, col);
            // [K, cols] panel -> columns oh0*w_out.. of every output row.
            mm.call(
                a,
                MatRef::row_major(col, k, cols, cols),
                &mut out[oh0 * w_out..],
                hw,
                &opts,
            );
        }
        Ok(())
    })
}

/// [`conv_one`] with the direct kernel (few output channels): the whole
/// image on the grid, then its valid columns, plus bias and ReLU, to `out`.
fn conv_one_direct(
    x: &[f32],
    w: &[f32],
    out: &mut [f32],
    gm: &Conv2dGeom,
    wg: &WideGeom,
    opts: &GemmOpts,
    mm: GemmFn,
) -> Result<()> {
    let (n, xq_len) = wg.direct_sizes();
    let (wq, w_out, hw) = (wg.wq, gm.w_out, gm.hw_out());
    with_scratch(xq_len + gm.c_out_g * n, |buf| {
        let (xq, y) = buf.split_at_mut(xq_len);
        wg.build(gm, x, &mut xq[..wg.xq_len]);
        xq[wg.xq_len..].fill(0.0);
        let d = Direct {
            w,
            c_out: gm.c_out_g,
            offsets: &wg.offsets,
            n,
        };
        direct::forward(mm.family, &d, xq, y);
        let y = &*y;
        // Vectorised for the active family (the baseline build would copy
        // at SSE2 width: a quarter of LeNet's forward).
        crate::kernels::simd::wide(
            #[inline(always)]
            || {
                for (co, (orow, yrow)) in
                    out.chunks_exact_mut(hw).zip(y.chunks_exact(n)).enumerate()
                {
                    let b = opts.bias_row.map_or(0.0, |b| b[co]);
                    let rows = orow.chunks_exact_mut(w_out).zip(yrow.chunks_exact(wq));
                    if opts.relu {
                        for (o, s) in rows {
                            for (o, &v) in o.iter_mut().zip(&s[..w_out]) {
                                *o = (v + b).max(0.0);
                            }
                        }
                    } else {
                        for (o, s) in rows {
                            for (o, &v) in o.iter_mut().zip(&s[..w_out]) {
                                *o = v + b;
                            }
                        }
                    }
                }
            },
        );
        Ok(())
    })
}

/// Output rows per chunk of the wide input gradient, whose `[K, rows*wq]`
/// column-gradient buffer holds about `panel_floats` floats.
pub(super) fn wide_rows_k(gm: &Conv2dGeom, wg: &WideGeom, tuning: &Tuning) -> usize {
    let row = gm.col_rows().saturating_mul(wg.wq).max(1);
    (tuning.panel_floats / row).clamp(1, gm.h_out.max(1))
}

/// [`conv_one`] on the wide grid: pad/phase-split the image once, then one
/// GEMM whose B panels are packed straight from that copy and whose result
/// goes straight to `out`.
fn conv_one_wide(
    x: &[f32],
    a: MatRef,
    out: &mut [f32],
    gm: &Conv2dGeom,
    wg: &WideGeom,
    opts: &GemmOpts,
    mm: GemmFn,
) -> Result<()> {
    let hw = gm.hw_out();
    let max_off = wg.offsets.iter().copied().max().unwrap_or(0);
    let len = wg.xq_len.max(max_off + wg.n_wide) + SLACK;
    with_scratch(len, |xq| {
        wg.build(gm, x, &mut xq[..wg.xq_len]);
        xq[wg.xq_len..].fill(0.0);
        let src = ValidCols {
            xq,
            offsets: &wg.offsets,
            col0: 0,
            cols: hw,
            w_out: gm.w_out,
            wq: wg.wq,
        };
        mm.src(a, &src, out, hw, opts);
        Ok(())
    })
}

/// The wide grid for the GEMM paths (forward, weight gradient), which
/// compute no junk columns and so take the grid whatever its waste; `None`
/// for pointwise convolutions and when the tuning turns the grid off.
pub(super) fn gemm_grid(gm: &Conv2dGeom, tuning: &Tuning) -> Option<WideGeom> {
    if gm.is_pointwise() || tuning.wide_max_waste < 0.0 {
        None
    } else {
        WideGeom::new(gm, f64::INFINITY)
    }
}

/// The whole forward pass: `x` `[n, c_in, h_in, w_in]`, `w`
/// `[c_out, c_in_g, k_h, k_w]`, `b` `[c_out]`; returns `[n, c_out, h_out, w_out]`.
pub(crate) fn run(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    gm: &Conv2dGeom,
    relu: bool,
    tuning: &Tuning,
) -> Result<Tensor> {
    let shape = gm.out_shape();
    let numel = crate::tensor::checked_numel(&shape)?;
    let out_chunk = gm.c_out_g * gm.hw_out(); // one image of one group
    if numel == 0 || out_chunk == 0 {
        return Tensor::zeros(&shape);
    }
    let mut out = uninit_buffer(numel)?; // [n, c_out, h_out, w_out]
    let x_chunk = gm.c_in_g * gm.hw_in();
    let w_chunk = gm.c_out_g * gm.col_rows();
    // Task t = image t / groups, group t % groups: its output channels are
    // contiguous, so the output splits into disjoint chunks in task order.
    // The forward pass computes no junk columns ([`ValidCols`]), so the
    // grid's width costs nothing here: any waste is fine (a negative
    // `wide_max_waste` still turns the wide path off, for tests).
    let wide = gemm_grid(gm, tuning);
    let task = |t: usize, out_t: &mut [f32], mm: GemmFn| -> Result<()> {
        let (img, g) = (t / gm.groups, t % gm.groups);
        let x0 = (img * gm.c_in + g * gm.c_in_g) * gm.hw_in();
        conv_one(
            &x[x0..x0 + x_chunk],
            &w[g * w_chunk..(g + 1) * w_chunk],
            b.map(|b| &b[g * gm.c_out_g..(g + 1) * gm.c_out_g]),
            out_t,
            gm,
            wide.as_ref(),
            relu,
            tuning,
            mm,
        )
    };
    if super::batched::applies(gm) {
        // SAFETY: `batched::forward` writes every one of the `numel` floats.
        super::batched::forward(x, w, b, gm, relu, tuning, unsafe {
            spare_slice(&mut out, numel)
        })?;
        // SAFETY: all `numel` floats were written just above.
        unsafe { out.set_len(numel) };
        return Ok(Tensor::from_parts(shape.to_vec(), out));
    }
    let tasks = gm.n * gm.groups;
    // SAFETY: every path of `conv_one` writes all of its chunk (the GEMMs
    // overwrite, the direct kernel stores every output); on an error the
    // buffer is dropped unread.
    let all = unsafe { spare_slice(&mut out, numel) };
    match tuning.par_tasks(tasks, gm.flops()) {
        Some(min_len) => crate::parallel::try_chunks_mut(all, out_chunk, min_len, |t, o| {
            task(t, o, tuning.mm(false))
        })?,
        None => {
            for (t, o) in all.chunks_mut(out_chunk).enumerate() {
                task(t, o, tuning.mm(true))?;
            }
        }
    }
    // SAFETY: the loops above returned early on any error, so every chunk
    // (together they cover the first `numel` floats) was written.
    unsafe { out.set_len(numel) };
    Ok(Tensor::from_parts(shape.to_vec(), out))
}

/// The spare capacity of `v` as a plain slice of `len` floats.
///
/// # Safety
/// The caller must write every element before reading any, and `len` must
/// not exceed the capacity.
unsafe fn spare_slice(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    // SAFETY: forwarded from the caller.
    unsafe { super::assume_written(&mut v.spare_capacity_mut()[..len]) }
}
