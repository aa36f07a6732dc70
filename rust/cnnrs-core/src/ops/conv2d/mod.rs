//! `conv2d`: 2-D cross-correlation over NCHW batches, as PyTorch's
//! `F.conv2d`, with its backward pass.
//!
//! Shapes: input `x` `[n, c_in, h_in, w_in]`, weight `w`
//! `[c_out, c_in/groups, k_h, k_w]`, optional bias `[c_out]`, output
//! `[n, c_out, h_out, w_out]` with `h_out`, `w_out` from [`params`] (the one
//! copy of the formula).
//!
//! Method (per image `i` and group `g`; `K = c_in_g*k_h*k_w`):
//! - forward: `y[i,g] [c_out_g, hw_out] = W[g] [c_out_g, K] · col(x[i,g]) [K, hw_out]`
//!   with the bias (and optionally ReLU) fused into the GEMM epilogue. A 1x1
//!   stride-1 unpadded conv uses the input itself as the column matrix.
//!   Otherwise the GEMM packs its B panels straight from a zero-padded,
//!   stride-phase-split copy of the image, on which every column-matrix row
//!   is one contiguous run (`wide.rs`), and writes the output directly; no
//!   column matrix exists. Layers with at most 8 output channels per group
//!   (LeNet) use the direct kernels of `direct.rs` instead of the GEMM.
//! - grad input: stride 1 (and at least 8 input channels per group): the
//!   forward kernels run on `dy` with the flipped, transposed weight;
//!   otherwise `dcol = W[g]^T · dy[i,g]`, then each row of `dcol` is added
//!   to one contiguous run of a padded, phase-split gradient buffer (the
//!   wide grid's adjoint; `col2im` per panel for small maps).
//! - grad weight: `dW[g] = sum_i dy[i,g] · col(x[i,g])^T`, the GEMM packing
//!   `col^T` from the same padded copy of the image as the forward pass
//!   (the direct kernels for few output channels), the batch split into a fixed number of chunks (one
//!   per thread), partial sums reduced in chunk order: bit-identical results
//!   for the same thread count.
//! - grad bias: `db[c] = sum over n, h, w of dy`.
//!
//! Parallelism: one rayon task per (image, group) writing a disjoint chunk of
//! the output (`par_chunks_mut`); when there are too few tasks the loop runs on
//! the calling thread and the GEMM splits itself instead. Groups are split here
//! so the kernels in `forward.rs`/`backward.rs` see one group at a time.

use std::cell::RefCell;
use std::sync::Arc;

use crate::autograd::{Backward, Var};
use crate::error::Result;
use crate::tensor::{try_zeros, Tensor};
use crate::{arg_err, shape_err};

// The kernels are crate-visible: `conv_transpose2d` runs them on the dual
// geometry (its forward is this op's input gradient, and so on).
pub(crate) mod backward;
pub(crate) mod batched;
pub(crate) mod direct;
pub(crate) mod forward;
pub mod params;
pub mod reference;
#[cfg(test)]
pub(crate) mod tests;
pub(crate) mod wide;

pub use params::{Conv2dGeom, Conv2dParams, Padding};

/// Which gradients [`backward`] should compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dNeeds {
    pub input: bool,
    pub weight: bool,
    pub bias: bool,
}

impl Conv2dNeeds {
    pub const ALL: Self = Self {
        input: true,
        weight: true,
        bias: true,
    };
}

/// Gradients with respect to the input, weight and bias (`None` where not
/// asked for).
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2dGrads {
    pub input: Option<Tensor>,
    pub weight: Option<Tensor>,
    pub bias: Option<Tensor>,
}

/// Knobs of the kernels' work split. Results do not depend on them except for
/// the rounding of the weight gradient, which depends on the chunk count.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tuning {
    /// Floats of one im2col panel: ~1 MiB, so the panel the GEMM streams over
    /// stays in L2/L3, yet wide enough (hundreds of columns for K up to ~1000)
    /// that the GEMM is not starved.
    pub panel_floats: usize,
    /// Below this many FLOPs a whole conv runs on the calling thread: a
    /// thread hand-off costs a few microseconds, ~4 MFLOP of work.
    pub par_min_flops: usize,
    /// Minimum FLOPs per rayon task, so tiny (image, group) tasks are batched.
    pub task_min_flops: usize,
    /// Threads to plan for (`None`: the pool's size). Tests force it.
    pub threads: Option<usize>,
    /// Largest fraction of junk columns the wide grid may add to the input
    /// gradient and the direct kernels (see [`wide`]); beyond it they build
    /// the column matrix in panels (or use the GEMM). 15%: a 3x3 conv on a 14x14 map
    /// (16 columns for 14, 14%) still gains from the cheaper packing; on
    /// 7x7 (9 for 7, 29%) it would not. The forward and weight-gradient
    /// GEMMs compute no junk and take the grid whatever the waste. A negative value turns the
    /// grid off everywhere (tests force either path with it / `INFINITY`).
    pub wide_max_waste: f64,
    /// Fewest input channels per group for which the input gradient of a
    /// stride-1 convolution runs as the forward convolution with the flipped
    /// weight (no column matrix, no scatter) instead of GEMM + col2im. That
    /// GEMM has `c_in_g` rows: below a register block (8 for AVX-512) most
    /// of each tile is padding (LeNet's first layer, 1 channel: 4x slower
    /// than col2im). Tests force either path with 0 / `usize::MAX`.
    pub flip_min_channels: usize,
    /// GEMM kernel family (`None`: the process-wide one). Tests run every
    /// family through the convolution kernels with it.
    pub simd: Option<crate::kernels::SimdFamily>,
    /// Most output channels per group for the direct kernels (see
    /// [`direct`]; at most [`direct::MAX_C`]); wider layers use the GEMM.
    /// Tests force either path with 8 / 0.
    pub direct_max_cout: usize,
}

impl Tuning {
    pub const DEFAULT: Self = Self {
        panel_floats: 1 << 18,
        par_min_flops: 1 << 22,
        task_min_flops: 1 << 20,
        threads: None,
        wide_max_waste: wide::MAX_WASTE,
        flip_min_channels: 8,
        simd: None,
        direct_max_cout: direct::MAX_C,
    };

    /// The GEMM the kernels call: `split` lets it use the pool (outside a
    /// parallel region).
    fn mm(&self, split: bool) -> forward::GemmFn {
        forward::GemmFn {
            split,
            family: self.simd.unwrap_or_else(crate::kernels::simd::active),
        }
    }

    /// True when the direct kernels take this geometry (on the wide grid).
    fn direct(&self, gm: &Conv2dGeom) -> bool {
        gm.c_out_g <= self.direct_max_cout.min(direct::MAX_C) && !gm.is_pointwise()
    }

    fn threads(&self) -> usize {
        self.threads
            .unwrap_or_else(crate::parallel::get_num_threads)
            .max(1)
    }

    /// `Some(min_len)` when `tasks` tasks totalling `flops` should run in
    /// parallel (each rayon split taking at least `min_len` tasks), `None`
    /// when they should run in order on the calling thread.
    fn par_tasks(&self, tasks: usize, flops: usize) -> Option<usize> {
        if tasks < 2 || self.threads() < 2 || flops < self.par_min_flops {
            return None;
        }
        let per_task = (flops / tasks).max(1);
        Some((self.task_min_flops / per_task).clamp(1, tasks))
    }

    /// Output rows per im2col panel: as many as fit `panel_floats`, at least 1.
    fn panel_rows(&self, gm: &Conv2dGeom) -> usize {
        let row_floats = gm.col_rows().saturating_mul(gm.w_out).max(1);
        (self.panel_floats / row_floats).clamp(1, gm.h_out.max(1))
    }
}

thread_local! {
    /// Per-thread im2col / col2im buffer, reused across calls so the hot path
    /// does not allocate.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Largest scratch buffer a thread keeps between calls (16 MiB); a bigger one
/// (a huge image with a huge kernel) is freed after use.
const SCRATCH_KEEP: usize = 1 << 22;

/// Runs `f` with a scratch slice of `len` floats (contents unspecified) taken
/// from this thread's reusable buffer.
///
/// # Errors
/// `OutOfMemory` when the buffer cannot grow; whatever `f` returns.
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> Result<R>) -> Result<R> {
    // Take the buffer out, so a nested call (none today) would get its own.
    let mut buf = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    if buf.len() < len {
        // Free the old buffer before allocating the bigger one (lower peak).
        buf.clear();
        buf.shrink_to_fit();
        buf = try_zeros(len)?;
    }
    let r = f(&mut buf[..len]);
    if buf.capacity() <= SCRATCH_KEEP {
        SCRATCH.with(|s| *s.borrow_mut() = buf);
    }
    r
}

/// An empty buffer with room for `len` values, for an output that parallel
/// tasks zero and fill chunk by chunk ([`zero_init`]): the zeroing then runs
/// on every thread, right before the kernel writes the same cache lines,
/// instead of as a serial pass over the whole output up front. (Used by the
/// pooling kernels too.)
///
/// # Errors
/// `OutOfMemory` when the allocation fails.
pub(crate) fn uninit_buffer<T>(len: usize) -> Result<Vec<T>> {
    let mut v: Vec<T> = Vec::new();
    v.try_reserve_exact(len).map_err(|_| {
        crate::error::CnnError::OutOfMemory(format!(
            "could not allocate {len} values ({} bytes)",
            len.saturating_mul(std::mem::size_of::<T>())
        ))
    })?;
    Ok(v)
}

/// Sets `u` to `T::default()` (zero for numbers) and returns it as
/// initialised values.
pub(crate) fn zero_init<T: Copy + Default>(u: &mut [std::mem::MaybeUninit<T>]) -> &mut [T] {
    u.fill(std::mem::MaybeUninit::new(T::default()));
    // SAFETY: every element was just written, and `MaybeUninit<T>` has the
    // layout of `T`.
    unsafe { &mut *(u as *mut [std::mem::MaybeUninit<T>] as *mut [T]) }
}

/// `u` as initialised floats, for a buffer the caller is about to write in
/// full (a GEMM that overwrites its output).
///
/// # Safety
/// Every element must be written before any is read.
pub(crate) unsafe fn assume_written(u: &mut [std::mem::MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and f32 has no
    // invalid bit patterns; the caller writes before reading.
    unsafe { &mut *(u as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) }
}

/// Floats of one panel buffer: `k * rows * w_out`, checked.
fn panel_len(gm: &Conv2dGeom, rows: usize) -> Result<usize> {
    gm.col_rows()
        .checked_mul(rows)
        .and_then(|v| v.checked_mul(gm.w_out))
        .ok_or_else(|| arg_err!("conv2d: column buffer for this shape is too large"))
}

/// Convolution forward. `relu` fuses `max(y, 0)` into the GEMM epilogue.
///
/// # Errors
/// `ShapeMismatch`/`InvalidArgument` from [`Conv2dGeom::new`] (wrong ranks,
/// channel counts, bias length, groups, parameters, a kernel larger than the
/// padded input); `OutOfMemory` for outputs too large to allocate.
pub fn forward(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    p: &Conv2dParams,
    relu: bool,
) -> Result<Tensor> {
    forward_tuned(x, w, b, p, relu, &Tuning::DEFAULT)
}

pub(crate) fn forward_tuned(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    p: &Conv2dParams,
    relu: bool,
    tuning: &Tuning,
) -> Result<Tensor> {
    let gm = Conv2dGeom::new(x.shape(), w.shape(), b.map(|b| b.shape()), p)?;
    forward::run(x.data(), w.data(), b.map(|b| b.data()), &gm, relu, tuning)
}

/// Convolution backward: the gradients `needs` asks for, given the gradient
/// of the output.
///
/// # Errors
/// Everything [`forward`] checks, plus `ShapeMismatch` when `grad_out` does
/// not have the output's shape.
pub fn backward(
    x: &Tensor,
    w: &Tensor,
    grad_out: &Tensor,
    p: &Conv2dParams,
    needs: Conv2dNeeds,
) -> Result<Conv2dGrads> {
    backward_tuned(x, w, grad_out, p, needs, &Tuning::DEFAULT)
}

pub(crate) fn backward_tuned(
    x: &Tensor,
    w: &Tensor,
    grad_out: &Tensor,
    p: &Conv2dParams,
    needs: Conv2dNeeds,
    tuning: &Tuning,
) -> Result<Conv2dGrads> {
    let gm = Conv2dGeom::new(x.shape(), w.shape(), None, p)?;
    check_grad_out(&gm, grad_out)?;
    let (xd, wd, gd) = (x.data(), w.data(), grad_out.data());
    if batched::applies(&gm) {
        let (input, weight, bias) = batched::backward(xd, wd, gd, needs, &gm, tuning)?;
        return Ok(Conv2dGrads {
            input,
            weight,
            bias,
        });
    }
    if needs.input && needs.weight {
        if let Some((dx, dw, db)) = backward::grad_all(xd, wd, gd, needs.bias, &gm, tuning)? {
            return Ok(Conv2dGrads {
                input: Some(dx),
                weight: Some(dw),
                bias: db,
            });
        }
    }
    Ok(Conv2dGrads {
        input: if needs.input {
            Some(backward::grad_input(wd, gd, None, &gm, tuning)?)
        } else {
            None
        },
        weight: if needs.weight {
            Some(backward::grad_weight(xd, gd, &gm, tuning)?)
        } else {
            None
        },
        bias: if needs.bias {
            Some(backward::channel_sums(gd, gm.c_out, gm.hw_out()))
        } else {
            None
        },
    })
}

fn check_grad_out(gm: &Conv2dGeom, grad_out: &Tensor) -> Result<()> {
    let want = gm.out_shape();
    if grad_out.shape() != want {
        return Err(shape_err!(
            "conv2d backward: grad_output has shape {} but the output has shape {}",
            crate::error::fmt_shape(grad_out.shape()),
            crate::error::fmt_shape(&want)
        ));
    }
    Ok(())
}

struct Conv2dBackward {
    x: Arc<Tensor>,
    w: Arc<Tensor>,
    p: Conv2dParams,
    /// The output of a fused conv + ReLU: the gradient is masked by `y > 0`
    /// before the convolution's own backward.
    relu_out: Option<Arc<Tensor>>,
}

impl Backward for Conv2dBackward {
    fn name(&self) -> &'static str {
        "Conv2dBackward"
    }
    fn backward(&self, g: &Tensor, _inputs: &[Var], needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let want = Conv2dNeeds {
            input: needs.first().copied().unwrap_or(false),
            weight: needs.get(1).copied().unwrap_or(false),
            bias: needs.get(2).copied().unwrap_or(false),
        };
        let masked;
        let g = match &self.relu_out {
            Some(y) => {
                masked = crate::ops::activation::relu_backward(g, y);
                &masked
            }
            None => g,
        };
        let grads = backward(&self.x, &self.w, g, &self.p, want)?;
        let mut out = vec![grads.input, grads.weight];
        if needs.len() > 2 {
            out.push(grads.bias);
        }
        Ok(out)
    }
}

/// Autograd conv2d: `x` `(N, C_in, H, W)`, `w` `(C_out, C_in/groups, kH, kW)`,
/// optional bias `(C_out,)`.
///
/// # Errors
/// As [`forward`].
pub fn conv2d(x: &Var, w: &Var, b: Option<&Var>, p: &Conv2dParams) -> Result<Var> {
    conv2d_impl(x, w, b, p, false)
}

/// Autograd `relu(conv2d(x, w, b))` with the ReLU fused into the GEMM
/// epilogue (one pass over the output instead of two); backward masks the
/// gradient by the saved output.
///
/// # Errors
/// As [`forward`].
pub fn conv2d_relu(x: &Var, w: &Var, b: Option<&Var>, p: &Conv2dParams) -> Result<Var> {
    conv2d_impl(x, w, b, p, true)
}

fn conv2d_impl(x: &Var, w: &Var, b: Option<&Var>, p: &Conv2dParams, relu: bool) -> Result<Var> {
    let (xv, wv) = (x.value(), w.value());
    let bv = b.map(|b| b.value());
    let y = forward(&xv, &wv, bv.as_deref(), p, relu)?;
    let mut inputs = vec![x.clone(), w.clone()];
    inputs.extend(b.cloned());
    let refs: Vec<&Var> = inputs.iter().collect();
    if !Var::any_requires_grad(&refs) {
        return Ok(Var::leaf(y, false));
    }
    let y = Arc::new(y);
    let relu_out = relu.then(|| y.clone());
    Ok(Var::from_op_arc(
        y,
        Conv2dBackward {
            x: xv,
            w: wv,
            p: *p,
            relu_out,
        },
        inputs,
    ))
}
