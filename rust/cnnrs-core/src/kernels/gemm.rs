//! Single-precision GEMM: `C = beta*C + A·B`, then an optional fused epilogue
//! (bias per row or per column, ReLU), written while the tile is hot.
//!
//! This is the one GEMM entry point of the crate. `A` and `B` are strided
//! views ([`MatRef`]), so transposes cost nothing at the call site; `C` is
//! row-major with leading dimension `ldc`.
//!
//! The implementation here is a cache-blocked loop that the compiler
//! vectorises; the packed, register-blocked SIMD core replaces it behind the
//! same signature (issue #3).

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
    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.rs + j * self.cs]
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
/// calling thread.
///
/// # Panics
/// Only on violated internal invariants (slice lengths), never on user input:
/// callers validate shapes first.
pub fn gemm(a: MatRef, b: MatRef, c: &mut [f32], ldc: usize, opts: &GemmOpts) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "gemm: inner dimensions differ");
    assert!(
        m == 0 || n == 0 || c.len() >= (m - 1) * ldc + n,
        "gemm: C too small"
    );
    if m == 0 || n == 0 {
        return;
    }
    if !opts.accumulate {
        for i in 0..m {
            c[i * ldc..i * ldc + n].fill(0.0);
        }
    }
    // Block k so a strip of B stays in cache while all rows of A pass over it.
    const KC: usize = 256;
    const NC: usize = 512;
    let mut bpanel = vec![0.0f32; KC.min(k.max(1)) * NC.min(n)];
    for j0 in (0..n).step_by(NC) {
        let nb = NC.min(n - j0);
        for p0 in (0..k).step_by(KC) {
            let kb = KC.min(k - p0);
            // Pack B[p0..p0+kb, j0..j0+nb] row-major (unit stride inner loop).
            for p in 0..kb {
                let row = &mut bpanel[p * nb..(p + 1) * nb];
                for (j, dst) in row.iter_mut().enumerate() {
                    *dst = b.at(p0 + p, j0 + j);
                }
            }
            for i in 0..m {
                let crow = &mut c[i * ldc + j0..i * ldc + j0 + nb];
                for p in 0..kb {
                    let av = a.at(i, p0 + p);
                    if av == 0.0 {
                        continue;
                    }
                    let brow = &bpanel[p * nb..(p + 1) * nb];
                    for (cv, bv) in crow.iter_mut().zip(brow) {
                        *cv += av * bv;
                    }
                }
            }
        }
    }
    epilogue(c, ldc, m, n, opts);
}

fn epilogue(c: &mut [f32], ldc: usize, m: usize, n: usize, opts: &GemmOpts) {
    if opts.bias_row.is_none() && opts.bias_col.is_none() && !opts.relu {
        return;
    }
    for i in 0..m {
        let row = &mut c[i * ldc..i * ldc + n];
        if let Some(br) = opts.bias_row {
            let bv = br[i];
            row.iter_mut().for_each(|v| *v += bv);
        }
        if let Some(bc) = opts.bias_col {
            row.iter_mut().zip(bc).for_each(|(v, b)| *v += b);
        }
        if opts.relu {
            row.iter_mut().for_each(|v| *v = v.max(0.0));
        }
    }
}

/// Like [`gemm`], split over row blocks of `C` on the cnnrs thread pool when
/// the product is large enough to pay for threads. Do not call it from inside
/// a parallel region (use [`gemm`] there).
pub fn gemm_par(a: MatRef, b: MatRef, c: &mut [f32], ldc: usize, opts: &GemmOpts) {
    use rayon::prelude::*;
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let threads = crate::parallel::get_num_threads();
    // Below ~4 MFLOP a thread hand-off costs more than it saves.
    if threads <= 1 || m < 2 || 2 * m * n * k < (1 << 22) || rayon::current_thread_index().is_some()
    {
        gemm(a, b, c, ldc, opts);
        return;
    }
    let rows_per = m.div_ceil(threads * 2).max(1);
    let c = &mut c[..(m - 1) * ldc + n];
    crate::parallel::install(|| {
        c.par_chunks_mut(rows_per * ldc)
            .enumerate()
            .for_each(|(t, chunk)| {
                let r0 = t * rows_per;
                let rows = rows_per.min(m - r0);
                let sub = MatRef {
                    data: &a.data[r0 * a.rs..],
                    rows,
                    cols: k,
                    rs: a.rs,
                    cs: a.cs,
                };
                let sub_opts = GemmOpts {
                    bias_row: opts.bias_row.map(|br| &br[r0..r0 + rows]),
                    ..*opts
                };
                gemm(sub, b, chunk, ldc, &sub_opts);
            });
    });
}

#[cfg(test)]
mod tests;
