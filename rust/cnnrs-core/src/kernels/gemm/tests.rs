use super::*;
use crate::kernels::simd::SimdFamily;
use crate::testutil::{assert_close, Rng};
use std::cell::Cell;

thread_local! {
    /// The family the last serial driver call on this thread ran (set by
    /// `run_serial` in test builds).
    pub(super) static LAST_FAMILY: Cell<Option<SimdFamily>> = const { Cell::new(None) };
    /// B panels packed by a tile as it computed (`tile_pack`) on this
    /// thread (counted by `macro_kernel` in test builds).
    pub(super) static FUSED_PANELS: Cell<usize> = const { Cell::new(0) };
}

fn naive(a: MatRef, b: MatRef) -> Vec<f32> {
    let mut c = vec![0.0f32; a.rows * b.cols];
    for i in 0..a.rows {
        for j in 0..b.cols {
            let mut s = 0.0f64;
            for p in 0..a.cols {
                s += a.at(i, p) as f64 * b.at(p, j) as f64;
            }
            c[i * b.cols + j] = s as f32;
        }
    }
    c
}

#[test]
fn matches_naive_on_random_shapes_and_strides() {
    let mut rng = Rng::new(7);
    for case in 0..60 {
        let m = rng.below(70) + 1;
        let n = rng.below(600) + 1;
        let k = rng.below(300) + 1;
        let a_data = rng.normal_vec(m * k);
        let b_data = rng.normal_vec(k * n);
        let a = if case % 2 == 0 {
            MatRef::row_major(&a_data, m, k, k)
        } else {
            MatRef::transposed(&a_data, m, k, m)
        };
        let b = if case % 3 == 0 {
            MatRef::transposed(&b_data, k, n, k)
        } else {
            MatRef::row_major(&b_data, k, n, n)
        };
        let expect = naive(a, b);
        let mut c = vec![0.0; m * n];
        gemm(a, b, &mut c, n, &GemmOpts::default());
        assert_close(&c, &expect, 1e-4, 1e-4, "gemm");
        let mut c2 = vec![0.0; m * n];
        gemm_par(a, b, &mut c2, n, &GemmOpts::default());
        assert_close(&c2, &expect, 1e-4, 1e-4, "gemm_par");
    }
}

#[test]
fn epilogue_bias_relu_and_accumulate() {
    let mut rng = Rng::new(3);
    let (m, n, k) = (5, 9, 4);
    let a_data = rng.normal_vec(m * k);
    let b_data = rng.normal_vec(k * n);
    let br = rng.normal_vec(m);
    let bc = rng.normal_vec(n);
    let a = MatRef::row_major(&a_data, m, k, k);
    let b = MatRef::row_major(&b_data, k, n, n);
    let prod = naive(a, b);
    let init = rng.normal_vec(m * n);
    let mut c = init.clone();
    let opts = GemmOpts {
        accumulate: true,
        bias_row: Some(&br),
        bias_col: Some(&bc),
        relu: true,
    };
    gemm(a, b, &mut c, n, &opts);
    let expect: Vec<f32> = (0..m * n)
        .map(|idx| (init[idx] + prod[idx] + br[idx / n] + bc[idx % n]).max(0.0))
        .collect();
    assert_close(&c, &expect, 1e-5, 1e-5, "epilogue");
}

/// The naive oracle with the whole epilogue, in f64.
fn naive_full(a: MatRef, b: MatRef, init: &[f32], ldc: usize, opts: &GemmOpts) -> Vec<f32> {
    let (m, n) = (a.rows, b.cols);
    let mut c = init.to_vec();
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            for p in 0..a.cols {
                s += a.at(i, p) as f64 * b.at(p, j) as f64;
            }
            if opts.accumulate {
                s += init[i * ldc + j] as f64;
            }
            if let Some(br) = opts.bias_row {
                s += br[i] as f64;
            }
            if let Some(bc) = opts.bias_col {
                s += bc[j] as f64;
            }
            if opts.relu {
                s = s.max(0.0);
            }
            c[i * ldc + j] = s as f32;
        }
    }
    c
}

/// One of the ways a caller can lay out an operand.
#[derive(Clone, Copy, Debug)]
enum Layout {
    RowMajor,
    /// Transposed view of a row-major matrix (unit row stride).
    Transposed,
    /// Row-major inside a wider buffer (leading dimension > cols).
    Padded,
    /// Neither stride is 1 (every other element of a bigger matrix).
    Strided,
}

/// A `rows x cols` view with the given layout over freshly drawn data.
fn make_view(rng: &mut Rng, rows: usize, cols: usize, layout: Layout) -> (Vec<f32>, usize, usize) {
    match layout {
        Layout::RowMajor => (rng.normal_vec(rows * cols), cols, 1),
        Layout::Transposed => (rng.normal_vec(rows * cols), 1, rows),
        Layout::Padded => {
            let ld = cols + 3;
            (rng.normal_vec(rows * ld), ld, 1)
        }
        Layout::Strided => {
            let ld = 2 * cols + 1;
            (rng.normal_vec(rows * ld * 2 + 2), 2 * ld, 2)
        }
    }
}

/// The `rows x cols` matrix a [`make_view`] result describes.
fn as_mat(view: &(Vec<f32>, usize, usize), rows: usize, cols: usize) -> MatRef<'_> {
    MatRef {
        data: &view.0,
        rows,
        cols,
        rs: view.1,
        cs: view.2,
    }
}

const LAYOUTS: [Layout; 4] = [
    Layout::RowMajor,
    Layout::Transposed,
    Layout::Padded,
    Layout::Strided,
];

/// Dimensions that hit the edges: 1, primes, register-block multiples and
/// their neighbours, cache-block boundaries.
const EDGE_DIMS: [usize; 14] = [1, 2, 3, 5, 7, 11, 13, 16, 17, 31, 33, 97, 193, 257];

fn check_family(family: SimdFamily, par: bool, seed: u64, cases: usize) {
    let mut rng = Rng::new(seed);
    for case in 0..cases {
        let pick = |rng: &mut Rng, big: usize| {
            if rng.below(2) == 0 {
                EDGE_DIMS[rng.below(EDGE_DIMS.len())]
            } else {
                rng.below(big) + 1
            }
        };
        let m = pick(&mut rng, 70);
        let n = pick(&mut rng, 130);
        let k = pick(&mut rng, 300);
        let la = LAYOUTS[rng.below(4)];
        let lb = LAYOUTS[rng.below(4)];
        let a_view = make_view(&mut rng, m, k, la);
        let b_view = make_view(&mut rng, k, n, lb);
        let (a, b) = (as_mat(&a_view, m, k), as_mat(&b_view, k, n));
        let ldc = n + rng.below(3);
        let what = format!("{family} case {case}: m={m} n={n} k={k} A {la:?} B {lb:?}");
        check_product(&mut rng, family, par, (a, b), case % 16, ldc, &what);
    }
}

/// `C = [C +] A·B` with the epilogue chosen by `flags` (bit 0 accumulate,
/// 1 bias per row, 2 bias per column, 3 ReLU) into a C with row stride
/// `ldc`, serial or parallel, against [`naive_full`]; the padding between
/// rows of C (`ldc > n`) must stay untouched.
fn check_product(
    rng: &mut Rng,
    family: SimdFamily,
    par: bool,
    (a, b): (MatRef, MatRef),
    flags: usize,
    ldc: usize,
    what: &str,
) {
    let (m, n, k) = (a.rows, b.cols, a.cols);
    let br = rng.normal_vec(m);
    let bc = rng.normal_vec(n);
    let opts = GemmOpts {
        accumulate: flags & 1 != 0,
        bias_row: (flags & 2 != 0).then_some(&br[..]),
        bias_col: (flags & 4 != 0).then_some(&bc[..]),
        relu: flags & 8 != 0,
    };
    let init = rng.normal_vec((m - 1) * ldc + n);
    let expect = naive_full(a, b, &init, ldc, &opts);
    let mut c = init.clone();
    if par {
        gemm_par_with(family, a, b, &mut c, ldc, &opts);
    } else {
        gemm_with(family, a, b, &mut c, ldc, &opts);
    }
    let what = format!("{what} par={par} ldc={ldc} {opts:?}");
    // Sums of up to ~1000 products of unit normals: allow for f32 rounding
    // growing with sqrt(k).
    assert_close(&c, &expect, 1e-4, 1e-4 * (k as f32).sqrt(), &what);
    for i in 0..m.saturating_sub(1) {
        for j in n..ldc {
            assert_eq!(c[i * ldc + j], init[i * ldc + j], "{what}: wrote padding");
        }
    }
}

#[test]
fn every_family_matches_naive_serial() {
    for f in crate::kernels::simd::available() {
        check_family(f, false, 11 + f as u64, 150);
    }
}

#[test]
fn every_family_matches_naive_parallel() {
    // Shapes big enough that `gemm_par` splits them.
    crate::parallel::set_num_threads(crate::parallel::get_num_threads().max(2));
    for f in crate::kernels::simd::available() {
        let mut rng = Rng::new(100 + f as u64);
        for case in 0..8 {
            let m = 100 + rng.below(200);
            let n = 100 + rng.below(300);
            let k = 100 + rng.below(300);
            let a_data = rng.normal_vec(m * k);
            let b_data = rng.normal_vec(k * n);
            let a = if case % 2 == 0 {
                MatRef::row_major(&a_data, m, k, k)
            } else {
                MatRef::transposed(&a_data, m, k, m)
            };
            let b = if case % 4 < 2 {
                MatRef::row_major(&b_data, k, n, n)
            } else {
                MatRef::transposed(&b_data, k, n, k)
            };
            let br = rng.normal_vec(m);
            let bc = rng.normal_vec(n);
            let opts = GemmOpts {
                accumulate: case % 3 == 0,
                bias_row: (case % 2 == 1).then_some(&br[..]),
                bias_col: (case % 4 == 2).then_some(&bc[..]),
                relu: case % 3 == 1,
            };
            let init = rng.normal_vec(m * n);
            let expect = naive_full(a, b, &init, n, &opts);
            let mut c = init.clone();
            gemm_par_with(f, a, b, &mut c, n, &opts);
            let what = format!("{f} par case {case}: m={m} n={n} k={k}");
            assert_close(&c, &expect, 1e-4, 1e-4 * (k as f32).sqrt(), &what);
            // Same family, serial: the split must not change a single bit
            // (every element is computed by the same kernel over the same
            // k-blocks, whichever task owns it).
            let mut c1 = init.clone();
            gemm_with(f, a, b, &mut c1, n, &opts);
            assert_eq!(c, c1, "{what}: parallel differs from serial");
        }
    }
}

#[test]
fn small_random_shapes_every_family_parallel_entry() {
    // Below the threading threshold `gemm_par` runs serially: still right.
    for f in crate::kernels::simd::available() {
        check_family(f, true, 50 + f as u64, 60);
    }
}

#[test]
fn zero_sized_dimensions() {
    for f in crate::kernels::simd::available() {
        // k == 0: C = beta*C + bias, then ReLU.
        let init = vec![1.0, -2.0, 3.0, -4.0, 5.0, -6.0];
        let br = [0.5, -0.5];
        let bc = [1.0, 0.0, -10.0];
        for accumulate in [false, true] {
            let mut c = init.clone();
            let a = MatRef::row_major(&[], 2, 0, 0);
            let b = MatRef::row_major(&[], 0, 3, 3);
            let opts = GemmOpts {
                accumulate,
                bias_row: Some(&br),
                bias_col: Some(&bc),
                relu: true,
            };
            gemm_with(f, a, b, &mut c, 3, &opts);
            let expect = naive_full(a, b, &init, 3, &opts);
            assert_eq!(c, expect, "{f} k=0 accumulate={accumulate}");
        }
        // m == 0 or n == 0: nothing to do, nothing touched.
        let mut c = vec![7.0f32; 4];
        let a = MatRef::row_major(&[], 0, 5, 5);
        let b_data = vec![1.0f32; 10];
        let b = MatRef::row_major(&b_data, 5, 2, 2);
        gemm_with(f, a, b, &mut c, 2, &GemmOpts::default());
        assert_eq!(c, vec![7.0; 4]);
    }
}

#[test]
fn forcing_a_family_runs_that_family() {
    use crate::kernels::simd::{self, from_env_value, resolve};
    let mut rng = Rng::new(5);
    let (m, n, k) = (37, 45, 513);
    let a_data = rng.normal_vec(m * k);
    let b_data = rng.normal_vec(k * n);
    let a = MatRef::row_major(&a_data, m, k, k);
    let b = MatRef::row_major(&b_data, k, n, n);
    let run = |f: SimdFamily| {
        let mut c = vec![0.0f32; m * n];
        LAST_FAMILY.with(|x| x.set(None));
        gemm_with(f, a, b, &mut c, n, &GemmOpts::default());
        (c, LAST_FAMILY.with(|x| x.get()))
    };
    // Every request reaches the family it resolves to: itself when the CPU
    // has it, else the widest available one not wider than it.
    for f in SimdFamily::ALL {
        let r = resolve(f);
        assert!(r <= f && r.is_available(), "{f} -> {r}");
        if f.is_available() {
            assert_eq!(r, f);
        }
        let (c, ran) = run(f);
        assert_eq!(ran, Some(r), "requested {f}");
        // Same family, same bits.
        assert_eq!(run(r).0, c, "{r} not deterministic");
    }
    // Scalar rounds the multiply and the add separately, the SIMD families
    // fuse them: on a 513-long dot product the low bits differ somewhere.
    let scalar = run(SimdFamily::Scalar).0;
    for f in simd::available()
        .into_iter()
        .filter(|&f| f != SimdFamily::Scalar)
    {
        assert_ne!(run(f).0, scalar, "{f} gave the scalar kernel's bits");
    }
    // The environment variable's parsing, without touching the environment.
    assert_eq!(from_env_value(Some("scalar")), SimdFamily::Scalar);
    assert_eq!(from_env_value(Some(" SCALAR\n")), SimdFamily::Scalar);
    assert_eq!(from_env_value(Some("avx2")), resolve(SimdFamily::Avx2));
    assert_eq!(from_env_value(Some("avx512")), resolve(SimdFamily::Avx512));
    assert_eq!(from_env_value(None), simd::best());
    assert_eq!(from_env_value(Some("")), simd::best());
    assert_eq!(from_env_value(Some("sse9")), simd::best());
    assert_eq!(SimdFamily::parse(" AVX2 "), Some(SimdFamily::Avx2));
    assert_eq!(SimdFamily::parse("sse9"), None);
}

#[test]
fn blocking_constants_are_consistent() {
    fn check<K: MicroKernel>(name: &str) {
        assert!(K::MR * K::NR <= MAX_TILE, "{name}: tile too big");
        assert!(
            K::MR <= MAX_EDGE && K::NR <= MAX_EDGE,
            "{name}: edge too big"
        );
        assert_eq!(K::MC % K::MR, 0, "{name}: MC not a multiple of MR");
        assert_eq!(K::NC % K::NR, 0, "{name}: NC not a multiple of NR");
        assert!(K::KC >= 1);
    }
    check::<scalar::Kernel>("scalar");
    check::<avx2::Kernel>("avx2");
    check::<avx512::Kernel>("avx512");
}

#[test]
fn pack_rows_interleaved_transposes() {
    let mut rng = Rng::new(9);
    for rows in 1..14 {
        for kc in [1, 3, 4, 5, 8, 17] {
            let rs = kc + rng.below(3);
            let src = rng.normal_vec((rows - 1) * rs + kc);
            let mut dst = vec![f32::NAN; rows * kc];
            pack_rows_interleaved(&src, rs, rows, kc, &mut dst);
            for p in 0..kc {
                for r in 0..rows {
                    assert_eq!(dst[p * rows + r], src[r * rs + p], "rows={rows} kc={kc}");
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn denormals_flushed_inside_and_mxcsr_restored() {
    use crate::kernels::fpenv::mxcsr;
    // 1e-39 is subnormal in f32. With DAZ it reads as zero, so the product
    // is exactly 0 (without flushing it would be ~1e-39); the normal term
    // in the second column is unaffected.
    let tiny = 1e-39f32;
    assert!(tiny != 0.0 && !tiny.is_normal());
    for f in crate::kernels::simd::available() {
        let before = mxcsr();
        let a_data = [tiny, 1.0];
        let b_data = [1.0, 0.0, 0.0, 2.0];
        let a = MatRef::row_major(&a_data, 1, 2, 2);
        let b = MatRef::row_major(&b_data, 2, 2, 2);
        let mut c = [5.0f32; 2];
        gemm_with(f, a, b, &mut c, 2, &GemmOpts::default());
        assert_eq!(c, [0.0, 2.0], "{f}");
        assert_eq!(mxcsr(), before, "{f}: MXCSR not restored");
    }
}

#[test]
fn grid_choice_splits_long_dimension_and_respects_blocks() {
    // Short, wide C (conv forward: c_out x pixels) splits over columns.
    let (gm, gn) = choose_grid(64, 25088, 6, 16, 6);
    assert_eq!((gm, gn), (1, 6));
    // Square C splits both ways.
    let (gm, gn) = choose_grid(1024, 1024, 6, 16, 4);
    assert_eq!((gm, gn), (2, 2));
    // Never more tiles than register blocks.
    let (gm, gn) = choose_grid(5, 20, 6, 16, 8);
    assert_eq!((gm, gn), (1, 2));
    assert_eq!(choose_grid(5, 10, 6, 16, 8), (1, 1));
}

#[test]
fn crosses_every_cache_block_boundary() {
    // n past NC (the jc loop), k past KC (pc: accumulation across k blocks,
    // epilogue only on the last), m past MC (ic), each with a ragged tail,
    // bias offsets checked on every block.
    let mut rng = Rng::new(21);
    for f in crate::kernels::simd::available() {
        let (m, n, k) = (2 * 192 + 7, 4096 + 45, 2 * 256 + 3);
        let a_data = rng.normal_vec(m * k);
        let b_data = rng.normal_vec(k * n);
        let a = MatRef::row_major(&a_data, m, k, k);
        let b = MatRef::transposed(&b_data, k, n, k);
        let br = rng.normal_vec(m);
        let bc = rng.normal_vec(n);
        let opts = GemmOpts {
            accumulate: true,
            bias_row: Some(&br),
            bias_col: Some(&bc),
            relu: true,
        };
        let init = rng.normal_vec(m * n);
        // The f64 oracle on a sample of rows keeps the test fast.
        let rows: Vec<usize> = (0..m).step_by(37).chain([m - 1]).collect();
        let mut c = init.clone();
        gemm_with(f, a, b, &mut c, n, &opts);
        for &i in &rows {
            let a_row = MatRef::row_major(&a_data[i * k..], 1, k, k);
            let br_i = [br[i]];
            let one = GemmOpts {
                bias_row: Some(&br_i),
                ..opts
            };
            let expect = naive_full(a_row, b, &init[i * n..(i + 1) * n], n, &one);
            assert_close(
                &c[i * n..(i + 1) * n],
                &expect,
                1e-4,
                3e-3,
                &format!("{f} row {i}"),
            );
        }
    }
}

/// [`PackB::pack`] one element at a time from `at(row, col)` of B: the
/// block `(p0, kc, j0, nc)` as panels of `nr` columns, zero past `nc`.
fn pack_by_element(
    at: impl Fn(usize, usize) -> f32,
    (p0, kc, j0, nc, nr): (usize, usize, usize, usize, usize),
    dst: &mut [f32],
) {
    for q in 0..nc.div_ceil(nr) {
        for p in 0..kc {
            for j in 0..nr {
                let col = q * nr + j;
                dst[q * nr * kc + p * nr + j] = if col < nc { at(p0 + p, j0 + col) } else { 0.0 };
            }
        }
    }
}

/// im2col of one `[c, h, w]` image as a [`PackB`]: B is
/// `[c*kh*kw, h_out*w_out]`, packed straight from the image (the use the
/// trait exists for).
struct Im2col<'a> {
    x: &'a [f32],
    c: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    pad: usize,
}

impl Im2col<'_> {
    fn out_hw(&self) -> (usize, usize) {
        (
            (self.h + 2 * self.pad - self.kh) / self.stride + 1,
            (self.w + 2 * self.pad - self.kw) / self.stride + 1,
        )
    }
    fn at(&self, row: usize, col: usize) -> f32 {
        let (_, wo) = self.out_hw();
        let (ci, r) = (row / (self.kh * self.kw), row % (self.kh * self.kw));
        let (i, j) = (r / self.kw, r % self.kw);
        let (oy, ox) = (col / wo, col % wo);
        let y = (oy * self.stride + i) as isize - self.pad as isize;
        let x = (ox * self.stride + j) as isize - self.pad as isize;
        if y < 0 || x < 0 || y >= self.h as isize || x >= self.w as isize {
            0.0
        } else {
            self.x[(ci * self.h + y as usize) * self.w + x as usize]
        }
    }
}

impl PackB for Im2col<'_> {
    fn rows(&self) -> usize {
        self.c * self.kh * self.kw
    }
    fn cols(&self) -> usize {
        let (ho, wo) = self.out_hw();
        ho * wo
    }
    fn pack(&self, p0: usize, kc: usize, j0: usize, nc: usize, nr: usize, dst: &mut [f32]) {
        assert_eq!(dst.len(), nc.div_ceil(nr) * nr * kc);
        pack_by_element(|p, j| self.at(p, j), (p0, kc, j0, nc, nr), dst)
    }
}

#[test]
fn pack_b_source_im2col_matches_explicit_columns() {
    crate::parallel::set_num_threads(crate::parallel::get_num_threads().max(2));
    let mut rng = Rng::new(33);
    for f in crate::kernels::simd::available() {
        for case in 0..6 {
            let (c, h, w) = (1 + rng.below(9), 5 + rng.below(30), 5 + rng.below(30));
            let (kh, kw) = (1 + rng.below(3) * 2, 1 + rng.below(3) * 2);
            let stride = 1 + rng.below(2);
            let pad = rng.below(2);
            let x = rng.normal_vec(c * h * w);
            let src = Im2col {
                x: &x,
                c,
                h,
                w,
                kh,
                kw,
                stride,
                pad,
            };
            let (k, n) = (src.rows(), src.cols());
            // Enough output channels that the parallel split kicks in on
            // the larger cases.
            let m = 1 + rng.below(80);
            let wt = rng.normal_vec(m * k);
            let a = MatRef::row_major(&wt, m, k, k);
            // The explicit column matrix, the thing the trait avoids.
            let cols: Vec<f32> = (0..k * n).map(|i| src.at(i / n, i % n)).collect();
            let b = MatRef::row_major(&cols, k, n, n);
            let bias = rng.normal_vec(m);
            let opts = GemmOpts {
                bias_row: Some(&bias),
                relu: case % 2 == 0,
                ..GemmOpts::default()
            };
            let mut expect = vec![0.0; m * n];
            gemm_with(f, a, b, &mut expect, n, &opts);
            for par in [false, true] {
                let mut got = vec![0.0; m * n];
                gemm_src_with(f, par, a, &src, &mut got, n, &opts);
                // Same packed values, same kernel: the same bits.
                assert_eq!(got, expect, "{f} par={par} case {case}");
            }
            // And a strided view used as a PackB agrees too.
            let mut via_view = vec![0.0; m * n];
            gemm_src_with(f, true, a, &b, &mut via_view, n, &opts);
            assert_eq!(via_view, expect, "{f} MatRef as PackB case {case}");
            let oracle = naive_full(a, b, &vec![0.0; m * n], n, &opts);
            assert_close(&expect, &oracle, 1e-4, 1e-3, "im2col gemm vs f64");
        }
    }
}

/// A [`FusedSrc`]-shaped operand: `B[p, j] = data[table[p] + col(col0 + j)]`
/// with runs of `run` columns `pitch` apart. `exposed` floats of `data` are
/// shown to the fused path (fewer than `pack` reads: the GEMM must notice
/// and pack those blocks itself).
struct Runs<'a> {
    data: &'a [f32],
    table: &'a [usize],
    col0: usize,
    cols: usize,
    run: usize,
    pitch: usize,
    exposed: usize,
}

impl Runs<'_> {
    fn at(&self, p: usize, j: usize) -> f32 {
        let t = self.col0 + j;
        self.data[self.table[p] + (t / self.run) * self.pitch + t % self.run]
    }
}

impl PackB for Runs<'_> {
    fn rows(&self) -> usize {
        self.table.len()
    }
    fn cols(&self) -> usize {
        self.cols
    }
    fn pack(&self, p0: usize, kc: usize, j0: usize, nc: usize, nr: usize, dst: &mut [f32]) {
        pack_by_element(|p, j| self.at(p, j), (p0, kc, j0, nc, nr), dst)
    }
    fn fused(&self) -> Option<FusedSrc<'_>> {
        Some(FusedSrc {
            data: &self.data[..self.exposed],
            rows: RowOffsets::Table(self.table),
            col0: self.col0,
            run: self.run,
            pitch: self.pitch,
        })
    }
}

/// Panels packed by the first tile of each column from a table of row
/// offsets and runs of columns (the valid outputs of a convolution's
/// padded grid): runs shorter than, equal to and longer than a panel,
/// panels that join two runs at every lane, column offsets, depths across
/// the `KC` blocks, serial and parallel, and sources too short for the
/// fused path: the same bits as the GEMM of the explicit matrix.
#[test]
fn fused_runs_source_matches_explicit_matrix() {
    crate::parallel::set_num_threads(crate::parallel::get_num_threads().max(2));
    let mut rng = Rng::new(41);
    for f in crate::kernels::simd::available() {
        let (_, nr) = tile_shape(f);
        let mut fused_seen = 0;
        for case in 0..40 {
            let run = [1, 5, nr - 1, nr, nr + 1, 2 * nr - 1, 56, 100][case % 8];
            let pitch = run + rng.below(4);
            let col0 = rng.below(3 * run);
            let cols = 1 + rng.below(300);
            let k = [1, 9, 255, 257, 300][rng.below(5)];
            let m = 1 + rng.below(40);
            let last = {
                let t = col0 + cols - 1;
                (t / run) * pitch + t % run
            };
            let table: Vec<usize> = (0..k).map(|_| rng.below(200)).collect();
            let max_row = table.iter().copied().max().unwrap();
            // Tight: the last element read is the last of `data`.
            let data = rng.normal_vec(max_row + last + 1);
            let exposed = if case % 5 == 4 {
                data.len() - 1 - rng.below(40.min(data.len()))
            } else {
                data.len()
            };
            let src = Runs {
                data: &data,
                table: &table,
                col0,
                cols,
                run,
                pitch,
                exposed,
            };
            let wt = rng.normal_vec(m * k);
            let a = MatRef::row_major(&wt, m, k, k);
            let explicit: Vec<f32> = (0..k * cols).map(|i| src.at(i / cols, i % cols)).collect();
            let b = MatRef::row_major(&explicit, k, cols, cols);
            let bias = rng.normal_vec(m);
            let opts = GemmOpts {
                bias_row: Some(&bias),
                relu: case % 2 == 0,
                ..GemmOpts::default()
            };
            let mut expect = vec![0.0; m * cols];
            gemm_with(f, a, b, &mut expect, cols, &opts);
            let what = format!("{f} case {case}: run={run} pitch={pitch} col0={col0} n={cols} k={k} m={m} exposed={exposed}/{}", data.len());
            for par in [false, true] {
                let before = FUSED_PANELS.with(Cell::get);
                let mut got = vec![0.0; m * cols];
                gemm_src_with(f, par, a, &src, &mut got, cols, &opts);
                // Same packed values, same kernel: the same bits.
                assert_eq!(got, expect, "{what} par={par}");
                fused_seen += FUSED_PANELS.with(Cell::get) - before;
            }
        }
        // The fused path itself ran (not only the packing fallback).
        assert!(fused_seen > 0, "{f}: no panel was packed by a tile");
    }
}

/// The skinny path (AVX-512, at most `skinny::MAX_N` columns, A with unit
/// column stride): every column count, row counts across its 4-row tiles,
/// depths with and without a masked tail and across its B packing blocks,
/// every B layout and every epilogue flag, serial and parallel.
#[test]
fn skinny_products_match_naive() {
    if !SimdFamily::Avx512.is_available() {
        return;
    }
    let mut rng = Rng::new(808);
    let mut case = 0;
    for n in 1..=super::skinny::MAX_N {
        for (m, k) in [(1, 1), (3, 15), (4, 16), (9, 17), (33, 600), (70, 1100)] {
            let la = [Layout::RowMajor, Layout::Padded][case % 2];
            let lb = LAYOUTS[case % 4];
            let a_view = make_view(&mut rng, m, k, la);
            let b_view = make_view(&mut rng, k, n, lb);
            let (a, b) = (as_mat(&a_view, m, k), as_mat(&b_view, k, n));
            let ldc = n + case % 3;
            for par in [false, true] {
                let what = format!("skinny m={m} n={n} k={k} B {lb:?}");
                check_product(
                    &mut rng,
                    SimdFamily::Avx512,
                    par,
                    (a, b),
                    case % 16,
                    ldc,
                    &what,
                );
            }
            case += 1;
        }
    }
}
