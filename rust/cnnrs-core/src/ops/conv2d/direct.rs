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
//! input grad   dxq[q]            = sum_co sum_p w[co, p] * dy[co, q - off[p]]
//! weight grad  dw[co, p]        += sum_j dy[co, j] * xq[off[p] + j]
//! ```
//!
//! The input gradient is written as a gather (every `dxq` block summed in
//! registers over all channels and taps, from a copy of `dy` with zeros in
//! front), not as the scatter `dxq[off[p] + j] += ...`: there, the taps
//! `p` and `p + 1` are one float apart, so each block's load overlapped the
//! previous tap's store at a misaligned offset and waited for it (no store
//! forwarding): 31% of LeNet's backward sat on that one load.
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

/// Lanes of one register-sized block (an AVX-512 register, two AVX2 ones).
const L: usize = 16;

/// `V` blocks of `L` floats at `s[o..]`.
#[inline(always)]
fn blocks<const V: usize>(s: &[f32], o: usize) -> [&[f32; L]; V] {
    let s = &s[o..o + V * L];
    std::array::from_fn(|v| s[v * L..(v + 1) * L].try_into().expect("L floats"))
}

/// `y[c0 + o, j..j + V*L]` for `o < O`: `O x V` accumulators in registers,
/// each image load feeding `O` of them and each weight `V`. `wt` is the
/// block's weight transposed, `[K, O]`.
#[inline(always)]
fn fwd_block<const O: usize, const V: usize, M: Madd>(
    d: &Direct,
    wt: &[f32],
    xq: &[f32],
    j: usize,
    c0: usize,
    y: &mut [f32],
) {
    let mut acc = [[[0.0f32; L]; V]; O];
    for (wp, &off) in wt.chunks_exact(O).zip(d.offsets) {
        let x = blocks::<V>(xq, off + j);
        for o in 0..O {
            let a = wp[o];
            for v in 0..V {
                for l in 0..L {
                    acc[o][v][l] = M::madd(a, x[v][l], acc[o][v][l]);
                }
            }
        }
    }
    for (o, acc_o) in acc.iter().enumerate() {
        let row = (c0 + o) * d.n + j;
        for (v, a) in acc_o.iter().enumerate() {
            y[row + v * L..row + (v + 1) * L].copy_from_slice(a);
        }
    }
}

/// Channels `c0..c0 + O` over all columns: blocks of `V*L` columns, then
/// single blocks for the rest.
#[inline(always)]
fn fwd_chans<const O: usize, const V: usize, M: Madd>(
    d: &Direct,
    xq: &[f32],
    c0: usize,
    y: &mut [f32],
) {
    let k = d.offsets.len();
    let mut wt = [0.0f32; 8 * 64];
    let mut wt_heap = Vec::new();
    let wt: &mut [f32] = if k * O <= wt.len() {
        &mut wt[..k * O]
    } else {
        wt_heap.resize(k * O, 0.0);
        &mut wt_heap
    };
    for (p, wp) in wt.chunks_exact_mut(O).enumerate() {
        for (o, v) in wp.iter_mut().enumerate() {
            *v = d.w[(c0 + o) * k + p];
        }
    }
    let mut j = 0;
    while j + V * L <= d.n {
        fwd_block::<O, V, M>(d, wt, xq, j, c0, y);
        j += V * L;
    }
    while j < d.n {
        fwd_block::<O, 1, M>(d, wt, xq, j, c0, y);
        j += L;
    }
}

/// The forward pass in blocks of output channels: with `W` (AVX-512's 32
/// registers) up to 8 channels x 3-8 column blocks (at most 24
/// accumulators), else (16 AVX2 registers, an accumulator taking two) up
/// to 6 channels with at most 6 accumulators.
#[inline(always)]
fn fwd_body<const W: bool, M: Madd>(d: &Direct, xq: &[f32], y: &mut [f32]) {
    let max_o = if W { 8 } else { 6 };
    let mut c0 = 0;
    while c0 < d.c_out {
        let o = (d.c_out - c0).min(max_o);
        match (W, o) {
            (true, 1) => fwd_chans::<1, 8, M>(d, xq, c0, y),
            (true, 2) => fwd_chans::<2, 8, M>(d, xq, c0, y),
            (true, 3) => fwd_chans::<3, 8, M>(d, xq, c0, y),
            (true, 4) => fwd_chans::<4, 6, M>(d, xq, c0, y),
            (true, 5) => fwd_chans::<5, 4, M>(d, xq, c0, y),
            (true, 6) => fwd_chans::<6, 4, M>(d, xq, c0, y),
            (true, 7) => fwd_chans::<7, 3, M>(d, xq, c0, y),
            (true, _) => fwd_chans::<8, 3, M>(d, xq, c0, y),
            (false, 1) => fwd_chans::<1, 4, M>(d, xq, c0, y),
            (false, 2) => fwd_chans::<2, 3, M>(d, xq, c0, y),
            (false, 3) => fwd_chans::<3, 2, M>(d, xq, c0, y),
            (false, 4) => fwd_chans::<4, 1, M>(d, xq, c0, y),
            (false, 5) => fwd_chans::<5, 1, M>(d, xq, c0, y),
            (false, _) => fwd_chans::<6, 1, M>(d, xq, c0, y),
        }
        c0 += o;
    }
}

/// The layout of the input gradient's `dy` copy and of its output, per
/// input channel `ci` (the gradient of channel `ci` of `xq`, the `cs` floats
/// from `ci * cs`, reads only the taps of that channel): row `co` of `dyp`
/// holds `dy[co, j]` at `co * row + front + j` (junk grid columns zero), with
/// zeros in the `front` floats before it and up to the row's end.
pub(crate) struct Gather {
    /// Zeros before each row's data: the largest tap offset within a
    /// channel.
    pub front: usize,
    /// Floats per row of `dyp`.
    pub row: usize,
    /// Floats of `xq` per input channel.
    pub cs: usize,
    /// Taps per input channel (`k_h * k_w`).
    pub taps: usize,
    /// Positions computed per channel (at least `cs`); the output buffer
    /// holds `(c_in_g - 1) * cs + nq` floats. Blocks past `cs` land in the
    /// next channel's part, computed (and overwritten) after it.
    pub nq: usize,
    /// Stride 1, no dilation, a kernel height the row kernel takes: the
    /// geometry for [`dx_rows`].
    pub rows: Option<RowsGeom>,
}

/// The grid of a stride-1 undilated input gradient for [`dx_rows`].
pub(crate) struct RowsGeom {
    pub k_h: usize,
    pub k_w: usize,
    /// Row stride of the grid (`dxq` and `dyp` alike).
    pub wq: usize,
    /// Rows of a channel of `dxq`.
    pub hq: usize,
}

/// Most rows (`R`) and lanes (`V * L`) of one [`dx_rows`] block, for
/// sizing buffers.
pub(crate) const ROWS_MAX: usize = 8;
pub(crate) const ROWS_LANES_MAX: usize = 2 * L;

impl RowsGeom {
    /// Positions a channel's blocks reach (rows rounded up to the block).
    pub(crate) fn reach(&self) -> usize {
        self.hq.next_multiple_of(ROWS_MAX) * self.wq + ROWS_LANES_MAX
    }
}

/// `acc0 += a * x0; acc1 += a * x1`, lane by lane: one weight, two blocks.
#[inline(always)]
fn axpy_pair<M: Madd>(
    acc0: &mut [f32; JB],
    acc1: &mut [f32; JB],
    a: f32,
    x0: &[f32; JB],
    x1: &[f32; JB],
) {
    for l in 0..JB {
        acc0[l] = M::madd(a, x0[l], acc0[l]);
        acc1[l] = M::madd(a, x1[l], acc1[l]);
    }
}

/// The input gradient of one channel as a gather over its taps (any
/// stride or dilation): `out[q] = sum_co sum_p w[co, p] * dyp[co, front + q
/// - off[p]]`, `off` local to the channel.
#[inline(always)]
fn dx_gather<M: Madd>(d: &Direct, g: &Gather, ci: usize, dyp: &[f32], out: &mut [f32]) {
    // Two blocks at a time: eight independent FMA chains (AVX-512), each
    // weight broadcast once for both.
    let k = d.offsets.len();
    let offs = &d.offsets[ci * g.taps..(ci + 1) * g.taps];
    let c0 = ci * g.cs;
    let nq = g.cs.next_multiple_of(JB);
    let mut q = 0;
    while q < nq {
        let two = q + 2 * JB <= nq;
        let (mut a0, mut a1) = ([0.0f32; JB], [0.0f32; JB]);
        for co in 0..d.c_out {
            let base = co * g.row + g.front + q;
            let w = &d.w[co * k + ci * g.taps..co * k + (ci + 1) * g.taps];
            for (&wv, &off) in w.iter().zip(offs) {
                let s = base - (off - c0);
                if two {
                    axpy_pair::<M>(&mut a0, &mut a1, wv, lanes(dyp, s), lanes(dyp, s + JB));
                } else {
                    axpy::<M>(&mut a0, wv, lanes(dyp, s));
                }
            }
        }
        out[q..q + JB].copy_from_slice(&a0);
        if two {
            out[q + JB..q + 2 * JB].copy_from_slice(&a1);
            q += JB;
        }
        q += JB;
    }
}

/// The input gradient of one channel for stride 1 and no dilation, where
/// the taps of kernel row `kh` are `kh` grid rows apart: blocks of `R` grid
/// rows x `V*L` columns in registers, so each (misaligned) load of `dy`
/// feeds up to `k_h` rows' accumulators (against one in [`dx_gather`]) and
/// the `k_h` weights of a kernel column stay in registers. `wr` is the
/// channel's weight, flipped, as `[c_out, k_w, KH]`.
#[inline(always)]
fn dx_rows<const KH: usize, const R: usize, const V: usize, M: Madd>(
    c_out: usize,
    wr: &[f32],
    rg: &RowsGeom,
    row: usize,
    dyp: &[f32],
    out: &mut [f32],
) {
    let (wq, kw) = (rg.wq, rg.k_w);
    for y0 in (0..rg.hq).step_by(R) {
        for x0 in (0..wq).step_by(V * L) {
            let q0 = y0 * wq + x0;
            let mut acc = [[[0.0f32; L]; V]; R];
            for co in 0..c_out {
                for b in 0..kw {
                    // The kernel column's weights, broadcast once into
                    // registers for the whole reach.
                    let wc = &wr[(co * kw + b) * KH..(co * kw + b + 1) * KH];
                    let w: [[f32; L]; KH] = std::array::from_fn(|a| [wc[a]; L]);
                    let w = &w;
                    let base = co * row + q0 + b;
                    // Row `t` of the block's reach, loaded once, meets
                    // kernel row `a` in output row `t - a`. One call per
                    // `t` with `t` a constant, so every accumulator index
                    // is known at compile time and they stay in registers
                    // (as a loop, LLVM does not unroll it).
                    macro_rules! steps {
                        ($($t:literal)*) => {
                            $(if $t < R + KH - 1 {
                                dx_step::<$t, KH, R, V, M>(&mut acc, w, dyp, base + $t * wq);
                            })*
                        };
                    }
                    steps!(0 1 2 3 4 5 6 7 8 9 10 11 12 13);
                }
            }
            for (r, acc_r) in acc.iter().enumerate() {
                let o = q0 + r * wq;
                for (v, a) in acc_r.iter().enumerate() {
                    out[o + v * L..o + (v + 1) * L].copy_from_slice(a);
                }
            }
        }
    }
}

/// One row `T` of a [`dx_rows`] block's reach: `acc[T - a] += w[a] * dy`
/// for the kernel rows `a` that land inside the block.
#[inline(always)]
fn dx_step<const T: usize, const KH: usize, const R: usize, const V: usize, M: Madd>(
    acc: &mut [[[f32; L]; V]; R],
    w: &[[f32; L]; KH],
    dyp: &[f32],
    at: usize,
) {
    let x = blocks::<V>(dyp, at);
    for a in 0..KH {
        if T >= a && T - a < R {
            for v in 0..V {
                for l in 0..L {
                    acc[T - a][v][l] = M::madd(w[a][l], x[v][l], acc[T - a][v][l]);
                }
            }
        }
    }
}

/// [`dx_rows`] for a kernel height and this family's block shape: with `W`
/// (32 registers) 8 rows x 2 blocks when the row width wastes no more than
/// with one block, else 8 x 1; otherwise (16 AVX2 registers) 4 x 1.
#[inline(always)]
fn dx_rows_any<const W: bool, M: Madd>(
    c_out: usize,
    wr: &[f32],
    rg: &RowsGeom,
    row: usize,
    dyp: &[f32],
    out: &mut [f32],
) {
    let two = rg.wq.next_multiple_of(2 * L) == rg.wq.next_multiple_of(L);
    macro_rules! go {
        ($kh:literal) => {
            match (W, two) {
                (true, true) => dx_rows::<$kh, 8, 2, M>(c_out, wr, rg, row, dyp, out),
                (true, false) => dx_rows::<$kh, 8, 1, M>(c_out, wr, rg, row, dyp, out),
                (false, _) => dx_rows::<$kh, 4, 1, M>(c_out, wr, rg, row, dyp, out),
            }
        };
    }
    match rg.k_h {
        3 => go!(3),
        5 => go!(5),
        7 => go!(7),
        _ => unreachable!("dx_rows: kernel height {}", rg.k_h),
    }
}

/// Kernel heights [`dx_rows`] is compiled for.
pub(crate) fn rows_kernel_takes(k_h: usize, k_w: usize) -> bool {
    matches!(k_h, 3 | 5 | 7) && k_w <= 7
}

#[inline(always)]
fn dx_body<const W: bool, M: Madd>(d: &Direct, g: &Gather, dyp: &[f32], dxq: &mut [f32]) {
    let k = d.offsets.len();
    let c_in = k / g.taps.max(1);
    let mut wr = [0.0f32; MAX_C * 7 * 7];
    for ci in 0..c_in {
        let out = &mut dxq[ci * g.cs..];
        match &g.rows {
            Some(rg) => {
                // This channel's weight, flipped, as [c_out, k_w, k_h].
                let (kh, kw) = (rg.k_h, rg.k_w);
                let mut i = 0;
                for co in 0..d.c_out {
                    let wc = &d.w[co * k + ci * g.taps..co * k + (ci + 1) * g.taps];
                    for b in 0..kw {
                        for a in 0..kh {
                            wr[i] = wc[(kh - 1 - a) * kw + (kw - 1 - b)];
                            i += 1;
                        }
                    }
                }
                dx_rows_any::<W, M>(d.c_out, &wr[..i], rg, g.row, dyp, out);
            }
            None => dx_gather::<M>(d, g, ci, dyp, out),
        }
    }
}

/// Sums the lanes of `v` pairwise, in a fixed order (`N` a power of two).
#[inline(always)]
fn lane_sum<const N: usize>(mut v: [f32; N]) -> f32 {
    let mut w = N;
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
fn dw_body<const W: bool, M: Madd>(d: &Direct, dy: &[f32], xq: &[f32], dw: &mut [f32]) {
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

/// The weight gradient's grid for stride 1 and no dilation ([`dw_rows`]):
/// `dy` copied with rows of `wq2` floats (`wq` rounded up to 16, junk
/// columns zero) and `t_rows` rows (zero past `h_out`).
pub(crate) struct DwRows {
    pub k_h: usize,
    pub k_w: usize,
    /// Row stride of `xq`.
    pub wq: usize,
    /// Row stride of the `dy` copy, a multiple of 16.
    pub wq2: usize,
    /// Floats of `xq` per input channel.
    pub cs: usize,
    /// Rows the kernel walks: `h_out + k_h - 1`.
    pub t_rows: usize,
}

impl DwRows {
    /// Floats per output channel of the `dy` copy.
    pub(crate) fn dy_len(&self) -> usize {
        self.t_rows * self.wq2
    }

    /// Floats of `xq` the kernel reads (zero past the image's grid).
    pub(crate) fn xq_reach(&self, c_in: usize) -> usize {
        (c_in - 1) * self.cs + (self.t_rows - 1) * self.wq + self.k_w - 1 + self.wq2
    }
}

/// `V` blocks of `LW` floats at `s[o..]`.
#[inline(always)]
fn blocks_w<const LW: usize, const V: usize>(s: &[f32], o: usize) -> [[f32; LW]; V] {
    let s = &s[o..o + V * LW];
    std::array::from_fn(|v| s[v * LW..(v + 1) * LW].try_into().expect("LW floats"))
}

/// Step `U` (of `KH`) of [`dw_rows`]: row `t` of `dy` enters the window
/// at slot `U = t % KH`; `acc[kh] += dy[t - kh] * x[t]`.
#[inline(always)]
fn dw_step<const U: usize, const KH: usize, const V: usize, const LW: usize, M: Madd>(
    acc: &mut [[[f32; LW]; V]; KH],
    win: &mut [[[f32; LW]; V]; KH],
    dy: &[f32],
    xq: &[f32],
    at_dy: usize,
    at_x: usize,
) {
    if U >= KH {
        return;
    }
    debug_assert!(at_dy + V * LW <= dy.len() && at_x + V * LW <= xq.len());
    // SAFETY: `dw_rows` checked once that its farthest reads are in bounds.
    let (d, x) = unsafe {
        (
            dy.get_unchecked(at_dy..at_dy + V * LW),
            xq.get_unchecked(at_x..at_x + V * LW),
        )
    };
    win[U] = blocks_w::<LW, V>(d, 0);
    let x = blocks_w::<LW, V>(x, 0);
    for kh in 0..KH {
        let d = &win[(U + KH - kh) % KH];
        for v in 0..V {
            for l in 0..LW {
                acc[kh][v][l] = M::madd(d[v][l], x[v][l], acc[kh][v][l]);
            }
        }
    }
}

/// Sums `V x LW` lanes: the blocks first, then the lanes pairwise.
#[inline(always)]
fn hsum<const V: usize, const LW: usize>(a: &[[f32; LW]; V]) -> f32 {
    let mut s = a[0];
    for b in &a[1..] {
        for l in 0..LW {
            s[l] += b[l];
        }
    }
    lane_sum(s)
}

/// The weight gradient for stride 1 and no dilation, where the taps of
/// kernel row `kh` are `kh` grid rows apart: for one output channel,
/// input channel and kernel column, the kernel walks the grid's rows once,
/// keeping the last `KH` rows of `dy` in registers, so each (misaligned)
/// image load feeds all `KH` kernel rows (against one FMA per load in
/// [`dw_body`]), and sums lanes once per kernel row and column block
/// instead of once per tap and image pass. `dyr` is `[c_out, t_rows,
/// wq2]`.
#[inline(always)]
fn dw_rows<const KH: usize, const V: usize, const LW: usize, M: Madd>(
    c_out: usize,
    c_in: usize,
    rg: &DwRows,
    dyr: &[f32],
    xq: &[f32],
    dw: &mut [f32],
) {
    let kw_n = rg.k_w;
    let k = c_in * KH * kw_n;
    // The farthest reads of `dw_step` (which skips its bounds checks):
    // `dy` up to row `t_rows - 1`, column block `wq2 - V*LW` of the last
    // channel; the image up to `xq_reach`.
    assert!(rg.wq2 % (V * LW) == 0 && dyr.len() >= c_out * rg.dy_len());
    assert!(c_in > 0 && xq.len() >= rg.xq_reach(c_in) && dw.len() >= c_out * k);
    for co in 0..c_out {
        let dyc = &dyr[co * rg.dy_len()..(co + 1) * rg.dy_len()];
        for c in 0..c_in {
            for kw in 0..kw_n {
                let mut sums = [0.0f32; KH];
                for x0 in (0..rg.wq2).step_by(V * LW) {
                    let mut acc = [[[0.0f32; LW]; V]; KH];
                    let mut win = [[[0.0f32; LW]; V]; KH];
                    let xb = c * rg.cs + kw + x0;
                    for g in (0..rg.t_rows).step_by(KH) {
                        macro_rules! steps {
                            ($($u:literal)*) => {
                                $(dw_step::<$u, KH, V, LW, M>(
                                    &mut acc,
                                    &mut win,
                                    dyc,
                                    xq,
                                    x0 + (g + $u) * rg.wq2,
                                    xb + (g + $u) * rg.wq,
                                );)*
                            };
                        }
                        if g + KH <= rg.t_rows {
                            steps!(0 1 2 3 4 5 6);
                        } else {
                            // The last, partial group: the same steps, each
                            // guarded (`t_rows` need not be a multiple of KH).
                            macro_rules! tail {
                                ($($u:literal)*) => {
                                    $(if g + $u < rg.t_rows {
                                        steps!($u);
                                    })*
                                };
                            }
                            tail!(0 1 2 3 4 5 6);
                        }
                    }
                    for (s, a) in sums.iter_mut().zip(&acc) {
                        *s += hsum(a);
                    }
                }
                for (kh, s) in sums.iter().enumerate() {
                    dw[co * k + (c * KH + kh) * kw_n + kw] += s;
                }
            }
        }
    }
}

#[inline(always)]
fn dw_rows_body<const W: bool, M: Madd>(
    d: &Direct,
    rg: &DwRows,
    dyr: &[f32],
    xq: &[f32],
    dw: &mut [f32],
) {
    let c_in = d.offsets.len() / (rg.k_h * rg.k_w);
    let two = rg.wq2 % 32 == 0;
    macro_rules! go {
        ($kh:literal) => {
            match (W, two) {
                (true, true) => dw_rows::<$kh, 2, 16, M>(d.c_out, c_in, rg, dyr, xq, dw),
                (true, false) => dw_rows::<$kh, 1, 16, M>(d.c_out, c_in, rg, dyr, xq, dw),
                (false, _) => dw_rows::<$kh, 1, 8, M>(d.c_out, c_in, rg, dyr, xq, dw),
            }
        };
    }
    match rg.k_h {
        3 => go!(3),
        5 => go!(5),
        7 => go!(7),
        _ => unreachable!("dw_rows: kernel height {}", rg.k_h),
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
                    $body::<true, Fused>(d, $($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2(d: &Direct, $($arg: $ty),*) {
                    $body::<false, Fused>(d, $($arg),*)
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
            $body::<false, Unfused>(d, $($arg),*)
        }
    };
}

family_fns!(fwd_body, forward, (xq: &[f32], y: &mut [f32]));
family_fns!(dx_body, grad_input, (g: &Gather, dyp: &[f32], dxq: &mut [f32]));
family_fns!(dw_body, grad_weight, (dy: &[f32], xq: &[f32], dw: &mut [f32]));
family_fns!(dw_rows_body, grad_weight_rows, (rg: &DwRows, dyr: &[f32], xq: &[f32], dw: &mut [f32]));
