//! B operands packed inside the micro-kernel: a [`FusedSrc`] (row-major,
//! or an im2col matrix read from a padded image through a table of row
//! offsets, its columns in runs) gives the block's panels ([`FusedB`]),
//! each panel the source rows the first tile of its column reads
//! ([`PanelSrc`]).

/// A B operand whose element `(p, j)` is `data[row(p) + col(col0 + j)]`,
/// where `row(p)` comes from [`RowOffsets`] and `col(t) = (t / run) * pitch
/// + t % run`: runs of `run` contiguous columns, `pitch` floats apart. A
/// row-major matrix is one endless run; the valid columns of a convolution's
/// padded grid are runs of `w_out` outputs a grid row (`pitch`) apart.
#[derive(Clone, Copy, Debug)]
pub struct FusedSrc<'a> {
    pub data: &'a [f32],
    pub rows: RowOffsets<'a>,
    pub col0: usize,
    /// Columns per run (`usize::MAX`: one run).
    pub run: usize,
    /// Floats from the start of one run to the next (`>= run`).
    pub pitch: usize,
}

/// Offset of column `t` of runs of `run` columns `pitch` apart
/// (`run == usize::MAX`: one run).
#[inline]
fn run_offset(t: usize, run: usize, pitch: usize) -> usize {
    if run == usize::MAX {
        t
    } else {
        (t / run) * pitch + t % run
    }
}

/// Where the rows of a [`FusedSrc`] start.
#[derive(Clone, Copy, Debug)]
pub enum RowOffsets<'a> {
    /// Row `p` at `p * stride`.
    Stride(usize),
    /// Row `p` at `table[p]` (one entry per row of B).
    Table(&'a [usize]),
}

impl FusedSrc<'_> {
    /// Offset of column `t` (counted from column 0 of the source, i.e.
    /// including `col0`).
    #[inline]
    fn col(&self, t: usize) -> usize {
        run_offset(t, self.run, self.pitch)
    }

    /// The fused panels of the block `B[pc..pc+kc, jc..jc+nc]` for panels
    /// of `nr` columns: its full panels, when each touches at most two runs
    /// and every element they address lies inside `data`; else `None` (the
    /// block is packed by [`PackB::pack`]).
    pub(super) fn block(
        &self,
        pc: usize,
        kc: usize,
        jc: usize,
        nc: usize,
        nr: usize,
    ) -> Option<FusedB> {
        let panels = nc / nr;
        let two_runs_at_most = self.run == usize::MAX || (self.run >= nr && self.pitch >= self.run);
        if panels == 0 || kc == 0 || !two_runs_at_most || nr > 32 {
            return None;
        }
        let (base, max_row, ld, table) = match self.rows {
            RowOffsets::Stride(ld) => (pc.checked_mul(ld)?, (kc - 1).checked_mul(ld)?, ld, None),
            RowOffsets::Table(t) => {
                let t = t.get(pc..pc.checked_add(kc)?)?;
                (0, t.iter().copied().max()?, 0, Some(t.as_ptr()))
            }
        };
        let col0 = self.col0.checked_add(jc)?;
        // The last column of the last full panel is the furthest element
        // any panel row reads (see `FusedB::panel`).
        let last = self.col(col0.checked_add(panels * nr - 1)?);
        let end = base.checked_add(max_row)?.checked_add(last)?;
        (end < self.data.len()).then(|| FusedB {
            base: self.data[base..].as_ptr(),
            ld,
            table: table.unwrap_or(std::ptr::null()),
            col0,
            run: self.run,
            pitch: self.pitch,
            panels,
        })
    }
}

/// The block of a [`FusedSrc`] whose first `panels` panels the
/// macro-kernel packs on the fly (made, and bounds-checked, by
/// [`FusedSrc::block`]): row `p` of the block starts at `base + row(p)`,
/// `row(p) = table[p]` when `table` is non-null, else `p * ld`; column `j`
/// of the block at `col(col0 + j)`.
#[derive(Clone, Copy)]
pub(super) struct FusedB {
    pub(super) base: *const f32,
    pub(super) ld: usize,
    pub(super) table: *const usize,
    pub(super) col0: usize,
    pub(super) run: usize,
    pub(super) pitch: usize,
    pub(super) panels: usize,
}

impl FusedB {
    #[inline]
    fn col(&self, t: usize) -> usize {
        run_offset(t, self.run, self.pitch)
    }

    /// Panel `q` of `nr` columns: one run, or the end of one run and the
    /// start of the next (`run >= nr`, so never more).
    pub(super) fn panel(&self, q: usize, nr: usize) -> PanelSrc {
        let j = self.col0 + q * nr;
        let g0 = self.col(j);
        let first = if self.run == usize::MAX {
            nr
        } else {
            (self.run - j % self.run).min(nr)
        };
        let lo = self.base.wrapping_add(g0);
        let (hi, keep) = if first >= nr {
            (lo, u32::MAX)
        } else {
            // Lanes `first..` come from the next run, whose start lines up
            // with lane `first`: read it `first` floats early.
            let g1 = self.col(j + first);
            (self.base.wrapping_add(g1 - first), (1u32 << first) - 1)
        };
        PanelSrc {
            lo,
            hi,
            keep,
            ld: self.ld,
            table: self.table,
        }
    }

    /// Floats from the first to the last element of a row of panel `q`.
    pub(super) fn span(&self, q: usize, nr: usize) -> usize {
        let j = self.col0 + q * nr;
        self.col(j + nr - 1) - self.col(j)
    }
}

/// Where the first tile of a column reads the B panel it packs: row `p`
/// (`p < kc`) is `NR` floats, lane `j` being `lo[off(p) + j]` when bit `j`
/// of `keep` is set, else `hi[off(p) + j]`; `off(p) = table[p]` when
/// `table` is non-null, else `p * ld`. With a null table, `keep` is all
/// ones (one run: `hi` is not read).
#[derive(Clone, Copy)]
pub(crate) struct PanelSrc {
    pub lo: *const f32,
    pub hi: *const f32,
    pub keep: u32,
    pub ld: usize,
    pub table: *const usize,
}

impl PanelSrc {
    /// Offset of row `p`.
    ///
    /// # Safety
    /// With a table, `p` is below its length.
    #[inline(always)]
    pub(crate) unsafe fn off(&self, p: usize) -> usize {
        if self.table.is_null() {
            p * self.ld
        } else {
            // SAFETY: forwarded from the caller.
            unsafe { *self.table.add(p) }
        }
    }
}
