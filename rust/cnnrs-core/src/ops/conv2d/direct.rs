//! Direct kernels on the wide grid for layers with few output channels
//! (LeNet's first layer: 1 -> 6 channels, 5x5), where a GEMM's register
//! tile is mostly padding and its packing costs more than the arithmetic.
//!
//! With the image in the padded, phase-split buffer `xq` of [`super::wide`],
//! row `p` of the column matrix is the contiguous run `xq[off[p]..]`, so
//! the three passes are vector loops over the grid's columns `j` with no
//! packing at all (`C = c_out_g <= 8`, `K = c_in_g*k_h*k_w`):
//!
//! ```text
//! forward      y[co, j]          = sum_p w[co, p] * xq[off[p] + j]
//! input grad   dxq[off[p] + j]  += sum_co w[co, p] * dy[co, j]
//! weight grad  dw[co, p]        += sum_j dy[co, j] * xq[off[p] + j]
//! ```
//!
//! Each is written once, generically over how a multiply-add is done, then
//! compiled three times: for AVX-512F and for
//! AVX2+FMA (fused, 16 / 8 lanes via the compiler's vectoriser inside a
//! `#[target_feature]` function) and portably (unfused), dispatched on the
//! SIMD family like the GEMM. Sums run in a fixed order, so results are
//! reproducible.

use crate::kernels::SimdFamily;

/// Floats per column block: four 16-lane (eight 8-lane) vectors; with two
/// channels or taps per pass, eight independent FMA chains, enough to hide
/// the FMA latency.
pub(crate) const JB: usize = 64;
/// Most output channels per group the kernels take.
pub(crate) const MAX_C: usize = 8;

/// A multiply-add: fused where the target has FMA (`mul_add` would call a
/// slow libm routine otherwise).
trait Madd {
    fn madd(a: f32, b: f32, c: f32) -> f32;
}
struct Fused;
struct Unfused;
impl Madd for Fused {
    #[inline(always)]
    fn madd(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}
impl Madd for Unfused {
    #[inline(always)]
    fn madd(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// `acc += a * x`, lane by lane (a fixed-length loop over an array, which
/// the compiler vectorises as a whole).
#[inline(always)]
fn axpy<M: Madd>(acc: &mut [f32; JB], a: f32, x: &[f32; JB]) {
    for l in 0..JB {
        acc[l] = M::madd(a, x[l], acc[l]);
    }
}

/// `acc0 += a0 * x; acc1 += a1 * x`, lane by lane: two independent
/// accumulators sharing the loads of `x`.
#[inline(always)]
fn axpy2<M: Madd>(acc0: &mut [f32; JB], acc1: &mut [f32; JB], a0: f32, a1: f32, x: &[f32; JB]) {
    for l in 0..JB {
        acc0[l] = M::madd(a0, x[l], acc0[l]);
        acc1[l] = M::madd(a1, x[l], acc1[l]);
    }
}

/// `acc += a * x`, lane by lane, for two vectors of lanes.
#[inline(always)]
fn vmul_add<M: Madd>(acc: &mut [f32; JB], a: &[f32; JB], x: &[f32; JB]) {
    for l in 0..JB {
        acc[l] = M::madd(a[l], x[l], acc[l]);
    }
}

/// The operands of one image of one group.
pub(crate) struct Direct<'a> {
    /// `[c_out_g, K]`.
    pub w: &'a [f32],
    pub c_out: usize,
    /// Column-matrix row offsets into `xq`.
    pub offsets: &'a [usize],
    /// Grid columns to compute, a multiple of [`JB`]; `xq` and the `[C, n]`
    /// buffers are long enough for it.
    pub n: usize,
}

/// `JB` floats at `s[o..]` as an array reference.
#[inline(always)]
fn lanes(s: &[f32], o: usize) -> &[f32; JB] {
    s[o..o + JB].try_into().expect("JB floats")
}

// Loop order: the innermost loop is always over the `JB` lanes of one
// accumulator (so the vectoriser works along the columns, never across
// channels or taps, where it would need gathers); the next one walks the
// taps with that accumulator in registers, reading the image or gradient
// from L1.

#[inline(always)]
fn fwd_body<const T: usize, M: Madd>(d: &Direct, xq: &[f32], y: &mut [f32]) {
    let k = d.offsets.len();
    for j in (0..d.n).step_by(JB) {
        let mut co = 0;
        while co + 2 <= d.c_out {
            let (w0, w1) = (&d.w[co * k..(co + 1) * k], &d.w[(co + 1) * k..(co + 2) * k]);
            let (mut a0, mut a1) = ([0.0f32; JB], [0.0f32; JB]);
            for ((&v0, &v1), &off) in w0.iter().zip(w1).zip(d.offsets) {
                axpy2::<M>(&mut a0, &mut a1, v0, v1, lanes(xq, off + j));
            }
            y[co * d.n + j..co * d.n + j + JB].copy_from_slice(&a0);
            y[(co + 1) * d.n + j..(co + 1) * d.n + j + JB].copy_from_slice(&a1);
            co += 2;
        }
        if co < d.c_out {
            let w = &d.w[co * k..(co + 1) * k];
            let mut acc = [0.0f32; JB];
            for (&wv, &off) in w.iter().zip(d.offsets) {
                axpy::<M>(&mut acc, wv, lanes(xq, off + j));
            }
            y[co * d.n + j..co * d.n + j + JB].copy_from_slice(&acc);
        }
    }
}

/// `dxq[off..off + JB] += acc` (a function with `inline(always)`, compiled
/// with its caller's target features).
#[inline(always)]
fn add(dxq: &mut [f32], off: usize, acc: &[f32; JB]) {
    let dst: &mut [f32; JB] = (&mut dxq[off..off + JB]).try_into().expect("JB floats");
    for l in 0..JB {
        dst[l] += acc[l];
    }
}

#[inline(always)]
fn dx_body<const T: usize, M: Madd>(d: &Direct, dy: &[f32], dxq: &mut [f32]) {
    let k = d.offsets.len();
    for j in (0..d.n).step_by(JB) {
        let mut p = 0;
        while p + 2 <= k {
            let (mut a0, mut a1) = ([0.0f32; JB], [0.0f32; JB]);
            for co in 0..d.c_out {
                let (v0, v1) = (d.w[co * k + p], d.w[co * k + p + 1]);
                axpy2::<M>(&mut a0, &mut a1, v0, v1, lanes(dy, co * d.n + j));
            }
            add(dxq, d.offsets[p] + j, &a0);
            add(dxq, d.offsets[p + 1] + j, &a1);
            p += 2;
        }
        if p < k {
            let mut acc = [0.0f32; JB];
            for co in 0..d.c_out {
                axpy::<M>(&mut acc, d.w[co * k + p], lanes(dy, co * d.n + j));
            }
            add(dxq, d.offsets[p] + j, &acc);
        }
    }
}

/// Sums the lanes of `v` pairwise, in a fixed order.
#[inline(always)]
fn lane_sum(mut v: [f32; JB]) -> f32 {
    let mut w = JB;
    while w > 1 {
        w /= 2;
        for l in 0..w {
            v[l] += v[l + w];
        }
    }
    v[0]
}

/// `sum_j dy[co, j] * xq[off[p] + j]`. A function (not a closure) with
/// `inline(always)`, so it is compiled with its caller's target features
/// (a closure that is not inlined would call a libm `fmaf` per element).
#[inline(always)]
fn dot_one<M: Madd>(d: &Direct, dy: &[f32], xq: &[f32], co: usize, p: usize) -> f32 {
    let dyc = &dy[co * d.n..(co + 1) * d.n];
    let off = d.offsets[p];
    let mut a = [0.0f32; JB];
    for j in (0..d.n).step_by(JB) {
        vmul_add::<M>(&mut a, lanes(dyc, j), lanes(xq, off + j));
    }
    lane_sum(a)
}

#[inline(always)]
fn dw_body<const T: usize, M: Madd>(d: &Direct, dy: &[f32], xq: &[f32], dw: &mut [f32]) {
    // Blocks of two channels x two taps: four accumulators (16 AVX-512
    // registers), each load of `dy` or of the image feeding two of them.
    let k = d.offsets.len();
    let dot = |co: usize, p: usize| dot_one::<M>(d, dy, xq, co, p);
    let (c2, k2) = (d.c_out / 2 * 2, k / 2 * 2);
    for co in (0..c2).step_by(2) {
        let (dy0, dy1) = (
            &dy[co * d.n..(co + 1) * d.n],
            &dy[(co + 1) * d.n..(co + 2) * d.n],
        );
        for p in (0..k2).step_by(2) {
            let (o0, o1) = (d.offsets[p], d.offsets[p + 1]);
            let (mut a00, mut a01) = ([0.0f32; JB], [0.0f32; JB]);
            let (mut a10, mut a11) = ([0.0f32; JB], [0.0f32; JB]);
            for j in (0..d.n).step_by(JB) {
                let (d0, d1) = (lanes(dy0, j), lanes(dy1, j));
                let (x0, x1) = (lanes(xq, o0 + j), lanes(xq, o1 + j));
                for l in 0..JB {
                    a00[l] = M::madd(d0[l], x0[l], a00[l]);
                    a01[l] = M::madd(d0[l], x1[l], a01[l]);
                    a10[l] = M::madd(d1[l], x0[l], a10[l]);
                    a11[l] = M::madd(d1[l], x1[l], a11[l]);
                }
            }
            dw[co * k + p] += lane_sum(a00);
            dw[co * k + p + 1] += lane_sum(a01);
            dw[(co + 1) * k + p] += lane_sum(a10);
            dw[(co + 1) * k + p + 1] += lane_sum(a11);
        }
        if k2 < k {
            dw[co * k + k2] += dot(co, k2);
            dw[(co + 1) * k + k2] += dot(co + 1, k2);
        }
    }
    if c2 < d.c_out {
        for p in 0..k {
            dw[c2 * k + p] += dot(c2, p);
        }
    }
}

macro_rules! family_fns {
    ($body:ident, $name:ident, ($($arg:ident : $ty:ty),*)) => {
        /// Runs the kernel with the given family's instruction set.
        pub(crate) fn $name(family: SimdFamily, d: &Direct, $($arg: $ty),*) {
            assert!(d.c_out <= MAX_C && d.n % JB == 0);
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn avx512(d: &Direct, $($arg: $ty),*) {
                    $body::<2, Fused>(d, $($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2(d: &Direct, $($arg: $ty),*) {
                    $body::<2, Fused>(d, $($arg),*)
                }
                match crate::kernels::simd::resolve(family) {
                    // SAFETY: `resolve` returns only families the CPU runs.
                    SimdFamily::Avx512 => return unsafe { avx512(d, $($arg),*) },
                    // SAFETY: as above.
                    SimdFamily::Avx2 => return unsafe { avx2(d, $($arg),*) },
                    SimdFamily::Scalar => {}
                }
            }
            let _ = family;
            $body::<2, Unfused>(d, $($arg),*)
        }
    };
}

family_fns!(fwd_body, forward, (xq: &[f32], y: &mut [f32]));
family_fns!(dx_body, grad_input, (dy: &[f32], dxq: &mut [f32]));
family_fns!(dw_body, grad_weight, (dy: &[f32], xq: &[f32], dw: &mut [f32]));
