//! The process's allocator policy, set once when the module is imported.
//!
//! Every op returns a freshly allocated tensor, and a training step frees
//! and reallocates the same large buffers (activations, gradients) over and
//! over. Under glibc's defaults a buffer above the dynamic mmap threshold is
//! mmapped and unmapped on every call, and the heap top is trimmed back to
//! the OS when more than twice the threshold is free: each new buffer then
//! arrives as fresh pages that the kernel must fault in and zero, one 4 KiB
//! page at a time (measured: `a + a` on a 32 MiB tensor 16 ms vs 6 ms for a
//! reused buffer). So on Linux/glibc we set, via `mallopt`:
//!
//! - `M_MMAP_THRESHOLD` = 32 MiB (glibc's maximum): buffers below it come
//!   from the heap and are reused after `free`;
//! - `M_MMAP_MAX` = 0: buffers above it too. Otherwise every larger one (a
//!   batch-32 activation of 64 x 112 x 112 is 103 MB) is mapped and
//!   faulted in afresh on each call: a 7x7/2 convolution at batch 32 took
//!   2.4 ms per image against 1.2 at batch 8, and 1.2 at both with this;
//!   (glibc still maps memory when the heap cannot grow);
//! - `M_TRIM_THRESHOLD` = 512 MiB: freed memory at the heap top is kept for
//!   the next call instead of being returned at once;
//! - `M_TOP_PAD` = 64 MiB: the heap grows in large steps.
//!
//! The cost: up to ~512 MiB of freed memory may stay with the process
//! rather than go back to the OS, and a large buffer freed below live ones
//! is only reused, never returned, until the heap top is free again. Setting `CNNRS_MALLOPT=0` before importing
//! cnnrs keeps glibc's defaults. Elsewhere (musl, macOS, Windows) nothing is
//! changed.

/// `CNNRS_MALLOPT` value that opts out.
fn opted_out() -> bool {
    std::env::var("CNNRS_MALLOPT")
        .map(|v| v.trim() == "0")
        .unwrap_or(false)
}

/// Applies the policy once; true when it is in force.
pub(crate) fn apply() -> bool {
    use std::sync::OnceLock;
    static APPLIED: OnceLock<bool> = OnceLock::new();
    *APPLIED.get_or_init(|| !opted_out() && set())
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set() -> bool {
    const MIB: libc::c_int = 1 << 20;
    // SAFETY: mallopt only changes glibc's allocator parameters; any value
    // is accepted or refused (returning 0), never undefined behaviour. It
    // runs at import, before this module allocates anything large.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 * MIB) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, 512 * MIB) == 1
            && libc::mallopt(libc::M_TOP_PAD, 64 * MIB) == 1
            && libc::mallopt(libc::M_MMAP_MAX, 0) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set() -> bool {
    false
}
