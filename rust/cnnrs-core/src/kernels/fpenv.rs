//! Denormals flushed to zero for the duration of a kernel call.
//!
//! Denormal (subnormal) floats take a microcode assist on x86 that costs
//! ~100 cycles per operation; trained networks produce them (tiny gradients,
//! decayed weights), and one such value in a GEMM tile slows the whole tile by
//! an order of magnitude. [`FlushDenormals`] sets MXCSR's FTZ (results) and
//! DAZ (inputs) bits on the current thread and restores the caller's MXCSR
//! when dropped, so code outside cnnrs sees its own floating-point mode.
//! MXCSR is per thread: every pool task that runs a kernel takes its own
//! guard. On other architectures the guard does nothing (yet).

/// MXCSR bit 15: flush-to-zero (denormal results become zero).
#[cfg(target_arch = "x86_64")]
const FTZ: u32 = 1 << 15;
/// MXCSR bit 6: denormals-are-zero (denormal inputs read as zero).
#[cfg(target_arch = "x86_64")]
const DAZ: u32 = 1 << 6;

/// Restores the saved floating-point control state on drop.
pub(crate) struct FlushDenormals {
    /// The caller's MXCSR, when this guard changed it.
    #[cfg(target_arch = "x86_64")]
    restore: Option<u32>,
}

#[cfg(target_arch = "x86_64")]
fn read_mxcsr() -> u32 {
    let mut v: u32 = 0;
    // SAFETY: `stmxcsr` stores the 32-bit MXCSR to the given address, which
    // points at a live, writable, aligned u32 on our stack; it touches no
    // other memory, no flags and no stack.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut v as *mut u32, options(nostack, preserves_flags));
    }
    v
}

#[cfg(target_arch = "x86_64")]
fn write_mxcsr(v: u32) {
    // SAFETY: `ldmxcsr` loads MXCSR from a live u32 on our stack. Callers
    // only pass a value read by `read_mxcsr` with the FTZ/DAZ bits changed,
    // so no reserved bit is set (which would fault) and exception masks are
    // unchanged.
    unsafe {
        std::arch::asm!("ldmxcsr [{}]", in(reg) &v as *const u32, options(nostack, preserves_flags, readonly));
    }
}

impl FlushDenormals {
    /// Turns on flush-to-zero and denormals-are-zero for this thread until
    /// the guard drops.
    #[inline]
    pub(crate) fn new() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let saved = read_mxcsr();
            let want = saved | FTZ | DAZ;
            if want == saved {
                return Self { restore: None };
            }
            write_mxcsr(want);
            Self {
                restore: Some(saved),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Self {}
        }
    }
}

impl Drop for FlushDenormals {
    #[inline]
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        if let Some(saved) = self.restore {
            write_mxcsr(saved);
        }
    }
}

/// The current thread's MXCSR (tests check it is restored).
#[cfg(all(test, target_arch = "x86_64"))]
pub(crate) fn mxcsr() -> u32 {
    read_mxcsr()
}
