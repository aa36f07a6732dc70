//! Single-precision GEMM: `C = beta*C + A·B`, then an optional fused epilogue
//! (bias per row or per column, ReLU), applied while each tile of `C` is in
//! registers.
//!
//! This is the one GEMM entry point of the crate. `A` and `B` are strided
//! views ([`MatRef`]), so transposes cost nothing at the call site; `C` is
//! row-major with leading dimension `ldc`.
//!
//! # Algorithm (BLIS-style)
//!
//! ```text
//! for jc in 0..n step NC            B block  [KC x NC]  -> packed, lives in L3
//!   for pc in 0..k step KC
//!     pack B[pc.., jc..] into NR-column panels (zero padded to NR)
//!     for ic in 0..m step MC        A block  [MC x KC]  -> packed, lives in L2
//!       pack A[ic.., pc..] into MR-row panels (zero padded to MR)
//!       for jr in 0..NC step NR     B micro-panel [KC x NR] stays in L1
//!         for ir in 0..MC step MR   A micro-panel [MR x KC] streams from L2
//!           micro-kernel: MR x NR tile of C in registers, KC rank-1 updates,
//!           then (last pc only) bias/ReLU, one store of the tile
//! ```
//!
//! Packing reads through the strided views (so `A^T`, `B^T`, padded rows or
//! every-other-column views pack at the same cost as plain matrices) and writes the panels in
//! exactly the order the micro-kernel consumes them: unit stride, aligned.
//! Panels are zero padded, so every micro-kernel call computes a full
//! `MR x NR` tile; a tile that sticks out of `C` is written to a small buffer
//! and copied back, so ragged edges never fall to a scalar loop.
//!
//! B can also be a [`PackB`]: an operand that writes its own panels (e.g.
//! im2col straight from an image, see [`gemm_src`]), so a convolution never
//! materialises its column matrix.
//!
//! A row-major B, and any B of the form `data[row(p) + col(j)]` with columns
//! in runs (a [`FusedSrc`]: the valid outputs of a convolution's padded
//! grid), is not packed in a pass of its own: the first tile of each column
//! of C loads its panel from the source, computes with it and stores it
//! packed for the other tiles of the column, which find it in L1. Measured
//! on the 3x3 convolution (64 -> 64, 56x56; Zen 5): the separate im2col
//! packing pass took ~10% of the forward; fused, 0.74 -> 0.79 of peak.
//!
//! Packing and prefetching live in `gemm/pack.rs`; the micro-kernel
//! families in `gemm/{scalar,avx2,avx512}.rs`, each with
//! its register block and cache blocking (explained next to the constants).
//! [`crate::kernels::simd::active`] picks one per process; [`gemm_with`] and
//! [`gemm_par_with`] run a given family (tests use them to check every path).
//!
//! Denormals are flushed to zero for the duration of a call (see
//! `kernels::fpenv`). Packing buffers are thread-local and grow on demand:
//! after the first call of a given size no call allocates.

use std::cell::RefCell;

use super::fpenv::FlushDenormals;
use super::simd::{self, SimdFamily};

mod avx2;
mod avx512;
mod fused;
mod pack;
mod scalar;
mod skinny;

use fused::FusedB;
pub(crate) use fused::PanelSrc;
pub use fused::{FusedSrc, RowOffsets};
#[cfg(test)]
use pack::pack_rows_interleaved;
use pack::{pack_a, pack_b, pack_b_any, Segments};

/// A read-only strided matrix view: element `(i, j)` is `data[i*rs + j*cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// Row-major `rows x cols` with leading dimension `ld`.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize, ld: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: ld,
            cs: 1,
        }
    }
    /// The transpose of a row-major `cols x rows` matrix with leading dim `ld`.
    pub fn transposed(data: &'a [f32], rows: usize, cols: usize, ld: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: 1,
            cs: ld,
        }
    }
    /// The transposed view.
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }
    #[inline(always)]
    #[cfg_attr(not(test), allow(dead_code))]
    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.rs + j * self.cs]
    }
    /// The memory of the block `[i0..i0+rows, j0..j0+cols]` as contiguous
    /// segments: one per row when rows are contiguous, one per column when
    /// columns are, else `None`. For prefetching only.
    fn block_segments(&self, i0: usize, rows: usize, j0: usize, cols: usize) -> Option<Segments> {
        let base = self.data.as_ptr().wrapping_add(i0 * self.rs + j0 * self.cs);
        if self.cs == 1 {
            Some(Segments {
                base,
                count: rows,
                stride: self.rs,
                len: cols,
            })
        } else if self.rs == 1 {
            Some(Segments {
                base,
                count: cols,
                stride: self.cs,
                len: rows,
            })
        } else {
            None
        }
    }
    /// True when every element the view addresses lies inside `data`.
    fn in_bounds(&self) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        let last = (self.rows - 1)
            .checked_mul(self.rs)
            .and_then(|r| (self.cols - 1).checked_mul(self.cs).map(|c| (r, c)))
            .and_then(|(r, c)| r.checked_add(c));
        matches!(last, Some(l) if l < self.data.len())
    }
    /// Rows `r0..r0+rows` (all columns).
    fn rows_sub(&self, r0: usize, rows: usize) -> MatRef<'a> {
        MatRef {
            data: if rows == 0 {
                &[]
            } else {
                &self.data[r0 * self.rs..]
            },
            rows,
            ..*self
        }
    }
    /// Columns `c0..c0+cols` (all rows).
    fn cols_sub(&self, c0: usize, cols: usize) -> MatRef<'a> {
        MatRef {
            data: if cols == 0 {
                &[]
            } else {
                &self.data[c0 * self.cs..]
            },
            cols,
            ..*self
        }
    }
}

/// What to do besides the product.
#[derive(Clone, Copy, Debug, Default)]
pub struct GemmOpts<'a> {
    /// `true`: `C += A·B` (beta = 1, e.g. residual add or gradient
    /// accumulation); `false`: `C = A·B`.
    pub accumulate: bool,
    /// Added to every element of row `i` (length `m`): conv bias.
    pub bias_row: Option<&'a [f32]>,
    /// Added to every element of column `j` (length `n`): linear bias.
    pub bias_col: Option<&'a [f32]>,
    /// Clamp at zero after the bias.
    pub relu: bool,
}

/// `C[m x n] (row-major, ldc) = beta*C + A[m x k]·B[k x n]` + epilogue, on the
/// calling thread, with the process-wide kernel family
/// ([`simd::active`]).
///
/// The epilogue order is: product, `+ C` when accumulating, `+ bias_row[i]`,
/// `+ bias_col[j]`, then ReLU.
///
/// # Panics
/// Only on violated internal invariants (views reaching outside their slices,
/// `C` too short, bias lengths, inner dimensions), never on user input:
/// callers validate shapes first.
pub fn gemm(a: MatRef, b: MatRef, c: &mut [f32], ldc: usize, opts: &GemmOpts) {
    gemm_with(simd::active(), a, b, c, ldc, opts)
}

/// [`gemm`] with a chosen kernel family. A family the CPU cannot run falls
/// back to the widest available one not wider than it
/// ([`simd::resolve`]).
///
/// # Panics
/// As [`gemm`].
pub fn gemm_with(
    family: SimdFamily,
    a: MatRef,
    b: MatRef,
    c: &mut [f32],
    ldc: usize,
    opts: &GemmOpts,
) {
    gemm_impl(family, false, a, b, c, ldc, opts)
}

/// Like [`gemm`], split over blocks of `C` on the cnnrs thread pool when the
/// product is large enough to pay for threads. Called from inside a pool
/// thread (a parallel region) it runs serially, so parallelism never nests.
///
/// # Panics
/// As [`gemm`].
pub fn gemm_par(a: MatRef, b: MatRef, c: &mut [f32], ldc: usize, opts: &GemmOpts) {
    gemm_par_with(simd::active(), a, b, c, ldc, opts)
}

/// Products below this many flops run on the calling thread: waking a pool
/// thread costs a few microseconds, ~4 MFLOP take ~20-40 us on one core.
const MIN_PAR_FLOPS: usize = 1 << 22;
/// Smallest share of a parallel product given to one task (~2 MFLOP, ten
/// times the cost of handing a task to another thread).
const MIN_TASK_FLOPS: usize = 1 << 21;
/// Tasks per pool thread: more than one, so a thread that is descheduled
/// (another process on its core) leaves work for the others to steal; few,
/// because every task packs its own panels of A and B. Measured on the
/// 2-core Zen 5 (1024^3, 2 threads): 1 task/thread 88% of peak, 2: 87-88%,
/// 4: 85-86%, 8: 83-84%; with a busy process on one core all settings took
/// ~2.1x their quiet time (the OS gives the shared core's thread little).
const TASKS_PER_THREAD: usize = 2;

/// [`gemm_par`] with a chosen kernel family (see [`gemm_with`]).
///
/// # Panics
/// As [`gemm`].
pub fn gemm_par_with(
    family: SimdFamily,
    a: MatRef,
    b: MatRef,
    c: &mut [f32],
    ldc: usize,
    opts: &GemmOpts,
) {
    gemm_impl(family, true, a, b, c, ldc, opts)
}

/// A `k x n` B operand that writes its own packed panels, for operands that
/// are not a strided matrix: e.g. the im2col matrix of a convolution, packed
/// straight from the image, one cache-sized panel at a time, so the full
/// column matrix never exists.
///
/// The GEMM calls [`PackB::pack`] for blocks of B as it needs them (from
/// several threads at once under [`gemm_src_par`]); it never keeps a block
/// longer than the call.
pub trait PackB: Sync {
    /// Rows of B (`k`, the inner dimension).
    fn rows(&self) -> usize;
    /// Columns of B (`n`).
    fn cols(&self) -> usize;
    /// Writes the block `B[p0..p0+kc, j0..j0+nc]` as `ceil(nc/nr)` panels of
    /// `kc x nr`: element `(p0+p, j0+j)` goes to
    /// `dst[(j/nr)*nr*kc + p*nr + j%nr]`. `dst` has exactly
    /// `ceil(nc/nr)*nr*kc` floats; the slots past column `nc` of the last
    /// panel should be zero (any value gives the right result: those columns
    /// are computed and thrown away).
    fn pack(&self, p0: usize, kc: usize, j0: usize, nc: usize, nr: usize, dst: &mut [f32]);
    /// The same operand as a [`FusedSrc`], when it has that form: the
    /// GEMM then packs its full panels inside the first tile of each column
    /// of C as that tile computes, instead of in a separate pass (the
    /// panel goes from memory to registers to the packed buffer once, and
    /// the other tiles of the column read it while it is still in L1).
    /// Must describe exactly the elements [`PackB::pack`] writes.
    fn fused(&self) -> Option<FusedSrc<'_>> {
        None
    }
}

impl PackB for MatRef<'_> {
    fn rows(&self) -> usize {
        self.rows
    }
    fn cols(&self) -> usize {
        self.cols
    }
    fn pack(&self, p0: usize, kc: usize, j0: usize, nc: usize, nr: usize, dst: &mut [f32]) {
        assert!(
            self.in_bounds(),
            "gemm: view of B reaches outside its slice"
        );
        pack_b_any(self, p0, kc, j0, nc, nr, dst)
    }
}

/// [`gemm`] with B supplied by a [`PackB`] (serial, process-wide family).
///
/// # Panics
/// As [`gemm`]; also when `b.rows() != a.cols`.
pub fn gemm_src(a: MatRef, b: &dyn PackB, c: &mut [f32], ldc: usize, opts: &GemmOpts) {
    gemm_src_with(simd::active(), false, a, b, c, ldc, opts)
}

/// [`gemm_par`] with B supplied by a [`PackB`]: split over blocks of C on the
/// pool, each task packing only its own columns of B.
///
/// # Panics
/// As [`gemm_src`].
pub fn gemm_src_par(a: MatRef, b: &dyn PackB, c: &mut [f32], ldc: usize, opts: &GemmOpts) {
    gemm_src_with(simd::active(), true, a, b, c, ldc, opts)
}

/// [`gemm_src`] / [`gemm_src_par`] (`parallel`) with a chosen family.
///
/// # Panics
/// As [`gemm_src`].
pub fn gemm_src_with(
    family: SimdFamily,
    parallel: bool,
    a: MatRef,
    b: &dyn PackB,
    c: &mut [f32],
    ldc: usize,
    opts: &GemmOpts,
) {
    let src = DynB {
        src: b,
        c0: 0,
        k: b.rows(),
        n: b.cols(),
    };
    gemm_impl(family, parallel, a, src, c, ldc, opts)
}

/// The B operand as the driver sees it: a strided view, or a [`PackB`].
trait BSource: Copy + Send + Sync {
    fn k(&self) -> usize;
    fn n(&self) -> usize;
    fn in_bounds(&self) -> bool;
    /// Columns `c0..c0+cols`.
    fn cols_sub(&self, c0: usize, cols: usize) -> Self;
    /// B as a [`FusedSrc`]: its panels can be packed by the micro-kernel on
    /// the fly ([`MicroKernel::tile_pack`]).
    fn fused(&self) -> Option<FusedSrc<'_>> {
        None
    }
    /// The memory of the block `B[p0..p0+kc, j0..j0+nc]` as contiguous
    /// segments, for prefetching (`None`: not a plain strided matrix).
    fn segments(&self, _p0: usize, _kc: usize, _j0: usize, _nc: usize) -> Option<Segments> {
        None
    }
    /// Packs `B[p0..p0+kc, j0..j0+nc]` into `NR`-column panels (see
    /// [`PackB::pack`]); `dst` has exactly `ceil(nc/NR)*NR*kc` floats.
    fn pack_block<K: MicroKernel>(
        &self,
        p0: usize,
        kc: usize,
        j0: usize,
        nc: usize,
        dst: &mut [f32],
    );
}

impl BSource for MatRef<'_> {
    fn k(&self) -> usize {
        self.rows
    }
    fn n(&self) -> usize {
        self.cols
    }
    fn in_bounds(&self) -> bool {
        MatRef::in_bounds(self)
    }
    fn cols_sub(&self, c0: usize, cols: usize) -> Self {
        MatRef::cols_sub(self, c0, cols)
    }
    fn fused(&self) -> Option<FusedSrc<'_>> {
        (self.cs == 1 && self.rows > 0 && self.cols > 0).then_some(FusedSrc {
            data: self.data,
            rows: RowOffsets::Stride(self.rs),
            col0: 0,
            run: usize::MAX,
            pitch: 0,
        })
    }
    fn segments(&self, p0: usize, kc: usize, j0: usize, nc: usize) -> Option<Segments> {
        self.block_segments(p0, kc, j0, nc)
    }
    fn pack_block<K: MicroKernel>(
        &self,
        p0: usize,
        kc: usize,
        j0: usize,
        nc: usize,
        dst: &mut [f32],
    ) {
        pack_b::<K>(self, p0, kc, j0, nc, dst)
    }
}

/// A [`PackB`] seen through a column offset (the part one task covers).
#[derive(Clone, Copy)]
struct DynB<'a> {
    src: &'a dyn PackB,
    c0: usize,
    k: usize,
    n: usize,
}

impl BSource for DynB<'_> {
    fn k(&self) -> usize {
        self.k
    }
    fn n(&self) -> usize {
        self.n
    }
    fn in_bounds(&self) -> bool {
        true
    }
    fn cols_sub(&self, c0: usize, cols: usize) -> Self {
        DynB {
            c0: self.c0 + c0,
            n: cols,
            ..*self
        }
    }
    fn fused(&self) -> Option<FusedSrc<'_>> {
        self.src.fused().map(|f| FusedSrc {
            col0: f.col0 + self.c0,
            ..f
        })
    }
    fn pack_block<K: MicroKernel>(
        &self,
        p0: usize,
        kc: usize,
        j0: usize,
        nc: usize,
        dst: &mut [f32],
    ) {
        let len = nc.div_ceil(K::NR) * K::NR * kc;
        self.src
            .pack(p0, kc, self.c0 + j0, nc, K::NR, &mut dst[..len]);
    }
}

fn gemm_impl<B: BSource>(
    family: SimdFamily,
    parallel: bool,
    a: MatRef,
    b: B,
    c: &mut [f32],
    ldc: usize,
    opts: &GemmOpts,
) {
    check_args(&a, &b, c, ldc, opts);
    let (m, k, n) = (a.rows, a.cols, b.n());
    if m == 0 || n == 0 {
        return;
    }
    let family = simd::resolve(family);
    let threads = crate::parallel::get_num_threads();
    let flops = 2usize.saturating_mul(m).saturating_mul(n).saturating_mul(k);
    let want = (threads * TASKS_PER_THREAD).min(flops / MIN_TASK_FLOPS);
    let (gm, gn) = if !parallel
        || threads <= 1
        || flops < MIN_PAR_FLOPS
        || crate::parallel::in_parallel_region()
    {
        (1, 1)
    } else {
        let (mr, nr) = tile_shape(family);
        choose_grid(m, n, mr, nr, want)
    };
    if gm * gn < 2 {
        // SAFETY: `check_args` established that `a` and `b` address only
        // elements inside their slices and that `c` holds the `m x n` block
        // at stride `ldc` (`ldc >= n`); `c` is an exclusive borrow, so
        // nothing else reads or writes it during the call.
        unsafe { run_serial(family, a, b, c.as_mut_ptr(), ldc, opts) };
        return;
    }
    let (mr, nr) = tile_shape(family);
    // Tile edges on register-block multiples, so no task has a ragged edge
    // in its interior.
    let rows_per = m.div_ceil(mr).div_ceil(gm) * mr;
    let cols_per = n.div_ceil(nr).div_ceil(gn) * nr;
    let gm = m.div_ceil(rows_per);
    let gn = n.div_ceil(cols_per);
    let c_ptr = crate::parallel::SendPtr(c.as_mut_ptr());
    let run = |t: usize| {
        let (ti, tj) = (t / gn, t % gn);
        let (r0, c0) = (ti * rows_per, tj * cols_per);
        let rows = rows_per.min(m - r0);
        let cols = cols_per.min(n - c0);
        let sub_opts = GemmOpts {
            accumulate: opts.accumulate,
            bias_row: opts.bias_row.map(|br| &br[r0..r0 + rows]),
            bias_col: opts.bias_col.map(|bc| &bc[c0..c0 + cols]),
            relu: opts.relu,
        };
        let c = c_ptr;
        // SAFETY: the tiles `(r0..r0+rows) x (c0..c0+cols)` of the grid
        // are pairwise disjoint and lie inside the `m x n` block of `c`
        // that `check_args` validated, so each task writes only its own
        // elements of the caller's exclusively borrowed `c`, which
        // outlives the parallel call. The sub-views address a subset of the
        // checked views.
        unsafe {
            run_serial(
                family,
                a.rows_sub(r0, rows),
                b.cols_sub(c0, cols),
                c.0.add(r0 * ldc + c0),
                ldc,
                &sub_opts,
            )
        };
    };
    if flops < CALLER_TASKS_MAX_FLOPS {
        crate::parallel::for_each_index(gm * gn, flops >= EVERY_THREAD_MIN_FLOPS, run);
    } else {
        crate::parallel::for_each_index_pooled(gm * gn, run);
    }
}

/// Parallel products below this many flops (~1 ms on one core) run their
/// tasks with the calling thread taking part
/// ([`crate::parallel::for_each_index`]): the pool's wake-ups are a large
/// share of such a call, and under contention the caller's own wake-up can
/// wait for a busy core. Measured in alternating harness runs at 2 threads
/// (below 2^26 first): sgemm_256 0.153 -> 0.141 ms, ResNet-18 (32x32)
/// batch-1 inference 2.25 -> 1.8 ms, LeNet-5 training step 1.61 -> 1.4 ms,
/// other rows within the machine's noise; with a busy process on one core,
/// the batch-1 3x3 forward+backward (231 MFLOP products) 2.7-3.2x its quiet
/// time -> 1.2-1.7x once 2^28 was reached. Larger products (a batch's
/// worth of columns) keep rayon's split.
const CALLER_TASKS_MAX_FLOPS: usize = 1 << 28;

/// Caller-run products from this many flops (~0.25 ms on one core) offer
/// their tasks to every pool thread (see [`crate::parallel::for_each_index`]):
/// below it the extra wake-up costs more than it can save (sgemm_256, 2^25
/// flops: 0.144 -> 0.146-0.153 ms with it).
const EVERY_THREAD_MIN_FLOPS: usize = 1 << 26;

/// Picks a `gm x gn` grid of C tiles with about `want` tiles that minimises
/// the packing traffic `k*(m*gn + n*gm)` (every tile packs its own rows of A
/// and columns of B), with at most one tile per register block.
fn choose_grid(m: usize, n: usize, mr: usize, nr: usize, want: usize) -> (usize, usize) {
    let (mu, nu) = (m.div_ceil(mr), n.div_ceil(nr));
    if want < 2 {
        return (1, 1);
    }
    let mut best = (1, 1);
    let mut best_key = (usize::MAX, usize::MAX);
    for gm in 1..=want.min(mu) {
        let gn = want.div_ceil(gm).min(nu);
        // Tiles actually made after rounding the edges to register blocks.
        let rows_per = mu.div_ceil(gm);
        let cols_per = nu.div_ceil(gn);
        let (tm, tn) = (mu.div_ceil(rows_per), nu.div_ceil(cols_per));
        let tiles = tm * tn;
        if tiles < 2 {
            continue;
        }
        // Prefer reaching `want` tiles, then the least packing traffic.
        let shortfall = want.saturating_sub(tiles);
        let traffic = m.saturating_mul(tn).saturating_add(n.saturating_mul(tm));
        let key = (shortfall, traffic);
        if key < best_key {
            best_key = key;
            best = (tm, tn);
        }
    }
    best
}

/// Register block `(MR, NR)` of a family.
fn tile_shape(family: SimdFamily) -> (usize, usize) {
    match family {
        SimdFamily::Scalar => (scalar::Kernel::MR, scalar::Kernel::NR),
        SimdFamily::Avx2 => (avx2::Kernel::MR, avx2::Kernel::NR),
        SimdFamily::Avx512 => (avx512::Kernel::MR, avx512::Kernel::NR),
    }
}

fn check_args<B: BSource>(a: &MatRef, b: &B, c: &[f32], ldc: usize, opts: &GemmOpts) {
    let (m, k, n) = (a.rows, a.cols, b.n());
    assert_eq!(b.k(), k, "gemm: inner dimensions differ");
    assert!(a.in_bounds(), "gemm: view of A reaches outside its slice");
    assert!(b.in_bounds(), "gemm: view of B reaches outside its slice");
    assert!(
        m == 0 || n == 0 || (ldc >= n && c.len() >= (m - 1) * ldc + n),
        "gemm: C too small"
    );
    if let Some(br) = opts.bias_row {
        assert!(br.len() >= m, "gemm: bias_row shorter than m");
    }
    if let Some(bc) = opts.bias_col {
        assert!(bc.len() >= n, "gemm: bias_col shorter than n");
    }
}

/// Epilogue of one `MR x NR` tile, handed to the micro-kernel.
pub(crate) struct TileEpilogue {
    /// Add the tile's current contents of C (beta = 1) instead of
    /// overwriting them.
    pub load_c: bool,
    /// Null, or `MR` values: `bias_row[r]` is added to row `r`.
    pub bias_row: *const f32,
    /// Null, or `NR` values: `bias_col[j]` is added to column `j`.
    pub bias_col: *const f32,
    /// Clamp at zero after the bias.
    pub relu: bool,
    /// Null, or the first of `pf_rows` source rows of a B panel still to
    /// be packed: the tile prefetches them towards L2, one every
    /// `kc / pf_rows` steps of its k loop (the portable kernel ignores
    /// them). Row `i` starts at `pf_src + pf_table[i]` when `pf_table` is
    /// non-null (then `pf_rows` entries long), else at `pf_src + i*pf_ld`,
    /// and spans `pf_span + 1` floats.
    pub pf_src: *const f32,
    pub pf_ld: usize,
    pub pf_table: *const usize,
    pub pf_span: usize,
    pub pf_rows: usize,
}

impl TileEpilogue {
    /// Prefetches towards L2 the source row due at step `k` of a
    /// `kc`-step k loop, if any (see the `pf_*` fields).
    #[inline(always)]
    pub(crate) fn prefetch_row(&self, k: usize, every: usize) {
        if self.pf_src.is_null() || k % every != 0 || k / every >= self.pf_rows {
            return;
        }
        let i = k / every;
        let off = if self.pf_table.is_null() {
            i * self.pf_ld
        } else {
            // SAFETY: `i < pf_rows`, the table's length (field docs).
            unsafe { *self.pf_table.add(i) }
        };
        let row = self.pf_src.wrapping_add(off);
        // Every line of the row: one prefetch per 16 floats and one at its
        // end (an unaligned row of `16*t` floats spans `t + 1` lines).
        let mut o = 0;
        while o < self.pf_span {
            pack::prefetch_l2(row.wrapping_add(o));
            o += 16;
        }
        pack::prefetch_l2(row.wrapping_add(self.pf_span));
    }
    /// Steps of k between two prefetched rows.
    #[inline(always)]
    pub(crate) fn prefetch_every(&self, kc: usize) -> usize {
        kc.checked_div(self.pf_rows).unwrap_or(1).max(1)
    }
}

/// One register-blocked micro-kernel and its cache blocking.
pub(crate) trait MicroKernel {
    /// Rows of the register tile.
    const MR: usize;
    /// Columns of the register tile.
    const NR: usize;
    /// Depth of a packed panel (the `pc` step).
    const KC: usize;
    /// Rows of the packed A block (the `ic` step; a multiple of `MR`).
    const MC: usize;
    /// Columns of the packed B block (the `jc` step; a multiple of `NR`).
    const NC: usize;

    /// `C[0..MR, 0..NR] (stride ldc) = (load_c ? C : 0) + Ap·Bp`, then the
    /// bias and ReLU of `ep`.
    ///
    /// # Safety
    /// `kc >= 1`; `a` points at `MR*kc` readable floats (a packed A
    /// micro-panel: `MR` values per step of k), `b` at `kc*NR` (a packed B
    /// micro-panel: `NR` values per step); `c` at `MR` rows of `NR` writable
    /// floats `ldc` apart, not aliasing `a`, `b` or the biases; the bias
    /// pointers of `ep` are null or point at `MR` / `NR` readable floats; the
    /// CPU supports the kernel's instruction set.
    unsafe fn tile(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        ep: &TileEpilogue,
    );

    /// [`MicroKernel::tile`] with B read from `kc` source rows of `NR`
    /// floats (see [`PanelSrc`]) and also written to `b_dst` as the packed
    /// panel (`NR` per step), which the other tiles of the column then read:
    /// packing rides along with the first tile's loads instead of a separate
    /// pass over memory. The default packs first, then runs `tile`.
    ///
    /// # Safety
    /// As [`MicroKernel::tile`], with `src.lo + off(p) .. + NR` (and, when
    /// `keep` is not all ones, `src.hi + off(p) .. + NR`) readable for every
    /// `p < kc`, a non-null `src.table` holding `kc` entries, and `b_dst`
    /// pointing at `kc*NR` writable floats that alias nothing else.
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_pack(
        kc: usize,
        a: *const f32,
        src: &PanelSrc,
        b_dst: *mut f32,
        c: *mut f32,
        ldc: usize,
        ep: &TileEpilogue,
    ) {
        let nr = Self::NR;
        for p in 0..kc {
            // SAFETY: source row `p` and panel step `p` as the caller
            // guarantees; the panel aliases nothing.
            unsafe {
                let o = src.off(p);
                for j in 0..nr {
                    let from = if j < 32 && src.keep >> j & 1 == 1 {
                        src.lo
                    } else {
                        src.hi
                    };
                    *b_dst.add(p * nr + j) = *from.add(o + j);
                }
            }
        }
        // SAFETY: the panel is packed; the rest is forwarded.
        unsafe { Self::tile(kc, a, b_dst, c, ldc, ep) }
    }
}

/// Largest `MR * NR` of any family (sizes the edge-tile buffer).
const MAX_TILE: usize = 16 * 32;
/// Largest `MR` or `NR` of any family (sizes the padded bias buffers).
const MAX_EDGE: usize = 32;

/// Runs the serial driver with the given (available) family.
///
/// # Safety
/// `a` and `b` are in bounds, `c` points at an `a.rows x b.n()` block with
/// row stride `ldc >= b.n()` that nothing else accesses during the call;
/// bias lengths are at least `m` / `n`; `family` is available on this CPU.
unsafe fn run_serial<B: BSource>(
    family: SimdFamily,
    a: MatRef,
    b: B,
    c: *mut f32,
    ldc: usize,
    opts: &GemmOpts,
) {
    #[cfg(test)]
    tests::LAST_FAMILY.with(|f| f.set(Some(family)));
    if family == SimdFamily::Avx512 && b.n() <= skinny::MAX_N && a.cs == 1 && a.cols > 0 {
        // SAFETY: forwarded from the caller; AVX-512 was resolved as
        // available.
        unsafe { skinny::run(a, b, c, ldc, opts) };
        return;
    }
    // SAFETY (all three arms): forwarded from the caller; `family` was
    // resolved to one the CPU runs, which is what `driver::<K>` requires.
    unsafe {
        match family {
            SimdFamily::Scalar => driver::<scalar::Kernel, B>(a, b, c, ldc, opts),
            SimdFamily::Avx2 => driver::<avx2::Kernel, B>(a, b, c, ldc, opts),
            SimdFamily::Avx512 => driver::<avx512::Kernel, B>(a, b, c, ldc, opts),
        }
    }
}

/// Grow-only packing buffers of one thread.
struct PackBuffers {
    a: Vec<f32>,
    b: Vec<f32>,
}

thread_local! {
    static PACK: RefCell<PackBuffers> = const {
        RefCell::new(PackBuffers { a: Vec::new(), b: Vec::new() })
    };
}

/// Floats of slack so a buffer can start on a 64-byte boundary.
const ALIGN_FLOATS: usize = 16;

/// A 64-byte aligned window of `len` floats inside `v`, growing `v` if
/// needed. Contents are unspecified (packing overwrites all of it).
fn aligned(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len + ALIGN_FLOATS {
        v.resize(len + ALIGN_FLOATS, 0.0);
    }
    let off = v.as_ptr().align_offset(64).min(ALIGN_FLOATS);
    &mut v[off..off + len]
}

/// The five loops around the micro-kernel (see the module docs).
///
/// # Safety
/// As [`run_serial`], with `K`'s instruction set available.
unsafe fn driver<K: MicroKernel, B: BSource>(
    a: MatRef,
    b: B,
    c: *mut f32,
    ldc: usize,
    opts: &GemmOpts,
) {
    let (m, k, n) = (a.rows, a.cols, b.n());
    if m == 0 || n == 0 {
        return;
    }
    let _flush = FlushDenormals::new();
    if k == 0 {
        // SAFETY: forwarded from the caller.
        unsafe { epilogue_only(m, n, c, ldc, opts) };
        return;
    }
    debug_assert!(K::MC % K::MR == 0 && K::NC % K::NR == 0);
    let kc_max = K::KC.min(k);
    let a_len = K::MC.min(m.next_multiple_of(K::MR)) * kc_max;
    let b_len = K::NC.min(n.next_multiple_of(K::NR)) * kc_max;
    let body = |bufs: &mut PackBuffers| {
        let apack = aligned(&mut bufs.a, a_len);
        let bpack = aligned(&mut bufs.b, b_len);
        for jc in (0..n).step_by(K::NC) {
            let nc = K::NC.min(n - jc);
            for pc in (0..k).step_by(K::KC) {
                let kc = K::KC.min(k - pc);
                let panels = nc.div_ceil(K::NR);
                // Full panels of a fused B are packed by the first row of
                // tiles as they compute (`tile_pack`); the rest here.
                let fused = b.fused().and_then(|f| f.block(pc, kc, jc, nc, K::NR));
                let own = fused.map_or(0, |f| f.panels);
                if own < panels {
                    let j0 = own * K::NR;
                    b.pack_block::<K>(
                        pc,
                        kc,
                        jc + j0,
                        nc - j0,
                        &mut bpack[j0 * kc..panels * K::NR * kc],
                    );
                }
                let first = pc == 0;
                let last = pc + kc == k;
                // The B block after this one (next `pc`, else next `jc`):
                // fetched towards L2 while this one computes, so its packing
                // pass does not wait on memory. Not for fused B (its tiles
                // prefetch their next panel themselves).
                let next_b = if fused.is_some() {
                    None
                } else if pc + kc < k {
                    b.segments(pc + kc, K::KC.min(k - pc - kc), jc, nc)
                } else if jc + nc < n {
                    b.segments(0, kc_max, jc + nc, K::NC.min(n - jc - nc))
                } else {
                    None
                };
                for ic in (0..m).step_by(K::MC) {
                    let mc = K::MC.min(m - ic);
                    pack_a::<K>(&a, ic, mc, pc, kc, apack);
                    // Likewise the next A block (next `ic`, else the first
                    // rows of the next `pc`); the next B block is spread
                    // over the row blocks.
                    let next_a = if ic + mc < m {
                        a.block_segments(ic + mc, K::MC.min(m - ic - mc), pc, kc)
                    } else if pc + kc < k {
                        a.block_segments(0, K::MC.min(m), pc + kc, K::KC.min(k - pc - kc))
                    } else {
                        None
                    };
                    let row_blocks = m.div_ceil(K::MC);
                    let b_share = next_b.map(|s| s.part(ic / K::MC, row_blocks));
                    let prefetch = [b_share, next_a];
                    let block = Block {
                        ic,
                        jc,
                        mc,
                        nc,
                        kc,
                        load_c: !first || opts.accumulate,
                        last,
                        stream_c: m.saturating_mul(n) >= STREAM_C_FLOATS,
                    };
                    // The first block of rows packs the fused panels.
                    let fused = if ic == 0 { fused } else { None };
                    // SAFETY: the packed buffers hold `ceil(mc/MR)` A panels
                    // and `ceil(nc/NR)` B panels of depth `kc` (packed just
                    // above, or by the tiles of the first row block, which
                    // read `kc` rows of `NR` floats that `FusedSrc::block`
                    // checked lie inside B's source); `c` and the biases as
                    // guaranteed by our caller.
                    unsafe {
                        macro_kernel::<K>(apack, bpack, fused, &prefetch, c, ldc, opts, &block)
                    };
                }
            }
        }
    };
    // A kernel never calls back into user code, so the thread-local is
    // normally free; if it is not (re-entrancy), use fresh buffers.
    PACK.with(|cell| match cell.try_borrow_mut() {
        Ok(mut bufs) => body(&mut bufs),
        Err(_) => body(&mut PackBuffers {
            a: Vec::new(),
            b: Vec::new(),
        }),
    });
}

/// Products whose C has at least this many floats (256 KiB) prefetch each
/// next tile of C (see [`macro_kernel`]); smaller ones stay in cache.
const STREAM_C_FLOATS: usize = 1 << 16;

/// The part of C one macro-kernel call covers.
struct Block {
    ic: usize,
    jc: usize,
    mc: usize,
    nc: usize,
    kc: usize,
    load_c: bool,
    last: bool,
    /// C is large enough to come from memory: prefetch the next tile's.
    stream_c: bool,
}

#[repr(C, align(64))]
struct EdgeTile([f32; MAX_TILE]);

/// Panels ahead whose source rows the tiles prefetch (see [`macro_kernel`]).
const PF_AHEAD: usize = 2;

/// Loops over the micro-tiles of one `mc x nc` block of C.
///
/// # Safety
/// `apack` / `bpack` hold the packed block (see `pack_a` / `pack_b`), except
/// the first `fused.panels` B panels, which the first tile of each column
/// packs from `fused`'s rows (every element they address checked by
/// [`FusedSrc::block`]); `c`, `ldc` and the biases as in [`run_serial`];
/// `K` runs on this CPU.
#[allow(clippy::too_many_arguments)]
unsafe fn macro_kernel<K: MicroKernel>(
    apack: &[f32],
    bpack: &mut [f32],
    fused: Option<FusedB>,
    prefetch: &[Option<Segments>],
    c: *mut f32,
    ldc: usize,
    opts: &GemmOpts,
    blk: &Block,
) {
    let (mr, nr, kc) = (K::MR, K::NR, blk.kc);
    debug_assert!(mr * nr <= MAX_TILE && mr <= MAX_EDGE && nr <= MAX_EDGE);
    debug_assert!(apack.len() >= blk.mc.div_ceil(mr) * mr * kc);
    debug_assert!(bpack.len() >= blk.nc.div_ceil(nr) * nr * kc);
    let bias_row = if blk.last { opts.bias_row } else { None };
    let bias_col = if blk.last { opts.bias_col } else { None };
    let relu = blk.last && opts.relu;
    let mut edge = EdgeTile([0.0; MAX_TILE]);
    let mut row_pad = [0.0f32; MAX_EDGE];
    let mut col_pad = [0.0f32; MAX_EDGE];
    let bbase = bpack.as_mut_ptr();
    // Segments of the next blocks to prefetch per tile: all of them spread
    // evenly over the block's tiles.
    let tiles = blk.mc.div_ceil(mr) * blk.nc.div_ceil(nr);
    let mut tile_no = 0;
    for jr in (0..blk.nc).step_by(nr) {
        let nv = nr.min(blk.nc - jr);
        let j = blk.jc + jr;
        // SAFETY: panel `jr/nr` of `ceil(nc/nr)` lies inside `bpack`.
        let bp = unsafe { bbase.add((jr / nr) * nr * kc) };
        // Source rows of this panel while its first tile still has to pack it.
        let mut pack_src = fused
            .filter(|f| jr / nr < f.panels)
            .map(|f| f.panel(jr / nr, nr));
        // A fused B panel's source rows are scattered (`ldb` apart, 12.5 KB
        // on a 56x56 map: one hardware stream per row, more than it
        // follows), so the tiles prefetch them: the panel `PF_AHEAD`
        // columns on, a share of its rows per tile of this column, one row
        // every few k steps. Issued all by the packing tile (512 lines in
        // one tile's time) they overran the outstanding-miss buffers and
        // that tile took ~2.7x a plain one; spread, the 1x1 convolution's
        // forward went from 0.77 to 0.86 of peak on one thread (0.75 ->
        // 0.83 on two).
        let pf_panel = fused.filter(|f| jr / nr + PF_AHEAD < f.panels).map(|f| {
            (
                f.panel(jr / nr + PF_AHEAD, nr),
                f.span(jr / nr + PF_AHEAD, nr),
            )
        });
        let pf_per = kc.div_ceil(blk.mc.div_ceil(mr));
        let bc_ptr = match bias_col {
            None => std::ptr::null(),
            Some(bc) if nv == nr => bc[j..j + nr].as_ptr(),
            Some(bc) => {
                col_pad[..nv].copy_from_slice(&bc[j..j + nv]);
                col_pad[nv..].fill(0.0);
                col_pad.as_ptr()
            }
        };
        for ir in (0..blk.mc).step_by(mr) {
            // This tile's share of the next blocks' segments. A tile with
            // no fused panel to prefetch for issues the first share from
            // inside its k loop, a segment every few steps (a burst of a
            // few hundred lines overruns the outstanding-miss buffers: the
            // 1x1 weight gradient's next block of the image is 256 KB); the
            // rest is prefetched now.
            let mut spread = None;
            for seg in prefetch.iter().flatten() {
                let per = seg.count.div_ceil(tiles);
                let (s0, s1) = (
                    (tile_no * per).min(seg.count),
                    ((tile_no + 1) * per).min(seg.count),
                );
                if pf_panel.is_none() && spread.is_none() && s0 < s1 {
                    spread = Some((
                        seg.base.wrapping_add(s0 * seg.stride),
                        seg.stride,
                        seg.len,
                        s1 - s0,
                    ));
                } else {
                    seg.prefetch(s0, s1);
                }
            }
            tile_no += 1;
            let mv = mr.min(blk.mc - ir);
            let i = blk.ic + ir;
            let ap = apack[(ir / mr) * mr * kc..].as_ptr();
            let br_ptr = match bias_row {
                None => std::ptr::null(),
                Some(br) if mv == mr => br[i..i + mr].as_ptr(),
                Some(br) => {
                    row_pad[..mv].copy_from_slice(&br[i..i + mv]);
                    row_pad[mv..].fill(0.0);
                    row_pad.as_ptr()
                }
            };
            // This tile's share of the source rows of the panel PF_AHEAD
            // columns on.
            let (pf_src, pf_ld, pf_table, pf_span, pf_rows) = match pf_panel {
                Some((src, span)) => {
                    let t = ir / mr;
                    let r0 = (t * pf_per).min(kc);
                    let r1 = ((t + 1) * pf_per).min(kc);
                    if src.table.is_null() {
                        let first = src.lo.wrapping_add(r0 * src.ld);
                        (first, src.ld, std::ptr::null(), span, r1 - r0)
                    } else {
                        // Entries `r0..r1 <= kc` of the block's table.
                        (src.lo, 0, src.table.wrapping_add(r0), span, r1 - r0)
                    }
                }
                None => match spread {
                    Some((first, stride, len, count)) => (
                        first,
                        stride,
                        std::ptr::null(),
                        len.saturating_sub(1),
                        count,
                    ),
                    None => (std::ptr::null(), 0, std::ptr::null(), 0, 0),
                },
            };
            let ep = TileEpilogue {
                load_c: blk.load_c,
                bias_row: br_ptr,
                bias_col: bc_ptr,
                relu,
                pf_src,
                pf_ld,
                pf_table,
                pf_span,
                pf_rows,
            };
            // SAFETY: `i + mv <= m` and `j + nv <= n`, so the tile's first
            // element lies inside the block the caller vouched for.
            let ct = unsafe { c.add(i * ldc + j) };
            // The next tile's rows of C (down the column, else the top of
            // the next column), towards L2: its store, or its load when
            // accumulating, then finds them near. The tile's own prefetch
            // of C comes one k loop before its store, too late when C is
            // streamed from memory and k is short (the 1x1 input gradient:
            // k = 64, C 3.2 MB per image; 0.66 -> 0.81 of peak). Not for a
            // small C (a weight gradient accumulating in cache), where it
            // only costs.
            let next = if !blk.stream_c {
                None
            } else if ir + mr < blk.mc {
                Some((ir + mr, jr, mr.min(blk.mc - ir - mr), nv))
            } else if jr + nr < blk.nc {
                Some((0, jr + nr, mr.min(blk.mc), nr.min(blk.nc - jr - nr)))
            } else {
                None
            };
            if let Some((ni, nj, rows, cols)) = next {
                let first = c.wrapping_add((blk.ic + ni) * ldc + blk.jc + nj);
                for r in 0..rows {
                    let row = first.wrapping_add(r * ldc);
                    let mut off = 0;
                    while off < cols {
                        pack::prefetch_l2(row.wrapping_add(off));
                        off += 16;
                    }
                    pack::prefetch_l2(row.wrapping_add(cols - 1));
                }
            }
            #[cfg(test)]
            if pack_src.is_some() {
                tests::FUSED_PANELS.with(|n| n.set(n.get() + 1));
            }
            if mv == mr && nv == nr {
                // SAFETY: a full tile: `mr` rows of `nr` floats at stride
                // `ldc` inside C; panels hold `mr*kc` / `kc*nr` floats (or
                // the source rows `NR` each, see [`FusedB`]); bias pointers
                // cover `mr` / `nr` floats (slices checked above).
                unsafe { run_tile::<K>(kc, ap, bp, pack_src.take(), ct, ldc, &ep) };
            } else {
                // A ragged tile: compute the full tile into `edge` (stride
                // `nr`), then copy the `mv x nv` part that exists.
                let buf = edge.0.as_mut_ptr();
                if blk.load_c {
                    for r in 0..mv {
                        // SAFETY: row `r < mv` of the tile has `nv` valid
                        // floats in C; `edge` has room for `mr*nr` floats.
                        unsafe {
                            std::ptr::copy_nonoverlapping(ct.add(r * ldc), buf.add(r * nr), nv)
                        };
                    }
                }
                // SAFETY: `edge` holds `mr*nr >= MR*NR` initialised floats
                // at stride `nr`; panels and biases as for a full tile.
                unsafe { run_tile::<K>(kc, ap, bp, pack_src.take(), buf, nr, &ep) };
                for r in 0..mv {
                    // SAFETY: as for the copy-in above, reversed.
                    unsafe { std::ptr::copy_nonoverlapping(buf.add(r * nr), ct.add(r * ldc), nv) };
                }
            }
        }
    }
}

/// One tile: [`MicroKernel::tile_pack`] when `pack` gives the source rows
/// of the panel `bp`, else [`MicroKernel::tile`].
///
/// # Safety
/// As the kernel function called.
#[inline(always)]
unsafe fn run_tile<K: MicroKernel>(
    kc: usize,
    ap: *const f32,
    bp: *mut f32,
    pack: Option<PanelSrc>,
    c: *mut f32,
    ldc: usize,
    ep: &TileEpilogue,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match pack {
            Some(src) => K::tile_pack(kc, ap, &src, bp, c, ldc, ep),
            None => K::tile(kc, ap, bp, c, ldc, ep),
        }
    }
}

/// `k == 0`: the product is zero, only beta and the epilogue remain.
///
/// # Safety
/// `c` points at an `m x n` block with stride `ldc` that only we access;
/// bias lengths are at least `m` / `n`.
unsafe fn epilogue_only(m: usize, n: usize, c: *mut f32, ldc: usize, opts: &GemmOpts) {
    for i in 0..m {
        // SAFETY: row `i < m` of the block has `n` valid floats.
        let row = unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc), n) };
        for (j, v) in row.iter_mut().enumerate() {
            let mut x = if opts.accumulate { *v } else { 0.0 };
            if let Some(br) = opts.bias_row {
                x += br[i];
            }
            if let Some(bc) = opts.bias_col {
                x += bc[j];
            }
            if opts.relu {
                x = x.max(0.0);
            }
            *v = x;
        }
    }
}

#[cfg(test)]
mod tests;
