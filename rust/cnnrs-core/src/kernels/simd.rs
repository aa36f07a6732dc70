//! SIMD kernel families and the one-time choice between them.
//!
//! Every kernel that has hand-written SIMD variants (the GEMM micro-kernels,
//! the FMA peak probe) dispatches on [`SimdFamily`]. The family is chosen once
//! per process ([`active`]): the widest one the CPU supports, unless the
//! environment variable `CNNRS_SIMD=scalar|avx2|avx512` asks for another. A
//! request the CPU cannot honour falls back to the widest available family
//! that is not wider than the request (`avx512` on an AVX2-only CPU runs
//! `avx2`), so a script that sets it runs everywhere. The `*_with(family, ..)`
//! entry points let tests run every available family in one process without
//! touching the environment.

use std::sync::OnceLock;

/// A family of hand-written kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SimdFamily {
    /// Portable Rust, no intrinsics (the compiler may still vectorise it for
    /// the baseline target). Always available, always tested.
    Scalar,
    /// x86-64 AVX2 + FMA, 256-bit.
    Avx2,
    /// x86-64 AVX-512F, 512-bit.
    Avx512,
}

impl SimdFamily {
    /// Every family, narrowest first.
    pub const ALL: [SimdFamily; 3] = [SimdFamily::Scalar, SimdFamily::Avx2, SimdFamily::Avx512];

    /// The name used by `CNNRS_SIMD`.
    pub fn name(self) -> &'static str {
        match self {
            SimdFamily::Scalar => "scalar",
            SimdFamily::Avx2 => "avx2",
            SimdFamily::Avx512 => "avx512",
        }
    }

    /// Parses a `CNNRS_SIMD` value (case-insensitive, surrounding blanks ignored).
    pub fn parse(s: &str) -> Option<SimdFamily> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" | "portable" | "none" => Some(SimdFamily::Scalar),
            "avx2" => Some(SimdFamily::Avx2),
            "avx512" | "avx512f" => Some(SimdFamily::Avx512),
            _ => None,
        }
    }

    /// True when this CPU (and OS) can run the family.
    pub fn is_available(self) -> bool {
        match self {
            SimdFamily::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            SimdFamily::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            SimdFamily::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }
}

impl std::fmt::Display for SimdFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The families this CPU can run, narrowest first (always starts with
/// `Scalar`).
pub fn available() -> Vec<SimdFamily> {
    SimdFamily::ALL
        .into_iter()
        .filter(|f| f.is_available())
        .collect()
}

/// The widest family the CPU can run.
pub fn best() -> SimdFamily {
    SimdFamily::ALL
        .into_iter()
        .rev()
        .find(|f| f.is_available())
        .unwrap_or(SimdFamily::Scalar)
}

/// What to run for a request: the request itself if available, else the
/// widest available family not wider than it.
pub fn resolve(requested: SimdFamily) -> SimdFamily {
    SimdFamily::ALL
        .into_iter()
        .rev()
        .filter(|&f| f <= requested)
        .find(|f| f.is_available())
        .unwrap_or(SimdFamily::Scalar)
}

/// The family every kernel uses, chosen once per process: `CNNRS_SIMD` if
/// set (see [`from_env_value`]), else [`best`].
pub fn active() -> SimdFamily {
    static ACTIVE: OnceLock<SimdFamily> = OnceLock::new();
    *ACTIVE.get_or_init(|| from_env_value(std::env::var("CNNRS_SIMD").ok().as_deref()))
}

/// The family a `CNNRS_SIMD` value selects: unset or blank -> [`best`]; a
/// known name -> [`resolve`]d (an unavailable request falls back); anything
/// else is reported once on stderr and ignored.
pub fn from_env_value(value: Option<&str>) -> SimdFamily {
    match value {
        Some(v) if !v.trim().is_empty() => match SimdFamily::parse(v) {
            Some(f) => resolve(f),
            None => {
                let b = best();
                eprintln!("cnnrs: CNNRS_SIMD={v:?} is not one of scalar|avx2|avx512; using {b}");
                b
            }
        },
        _ => best(),
    }
}

/// Runs `f` inlined into a function compiled with the active family's
/// instructions enabled (AVX-512F / AVX2+FMA), so plain loops inside it —
/// elementwise adds, copies, scatter-adds — vectorise at that width instead
/// of the baseline build's SSE2. Results are the same on every family (the
/// compiler only changes vector width, never the order of a reduction it
/// was not already allowed to reorder).
#[inline(always)]
pub fn wide<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    match active() {
        // SAFETY: `active()` only reports a family the CPU supports.
        SimdFamily::Avx512 => return unsafe { wide_avx512(f) },
        // SAFETY: as above.
        SimdFamily::Avx2 => return unsafe { wide_avx2(f) },
        SimdFamily::Scalar => {}
    }
    f()
}

/// # Safety
/// The CPU supports AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn wide_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// # Safety
/// The CPU supports AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn wide_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}
