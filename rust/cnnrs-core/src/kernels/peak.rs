//! FMA-throughput probe: the floating-point peak this process can reach, so
//! benchmarks report a fraction of a measured peak rather than of a
//! datasheet figure.
//!
//! Each thread runs independent chains of fused multiply-adds
//! (`acc = acc*x + y` on full vectors, 12 chains for AVX2, 16 for AVX-512:
//! more than FMA latency x FMA pipes, so the pipes never wait), for about
//! 20 ms per window, three windows after a short warm-up; the best window is
//! that thread's peak. For `threads > 1` the probe runs on that many pool
//! threads at the same time and the per-thread peaks are summed, so shared
//! clocks, power limits and a busy neighbour show up in the figure. One call
//! takes about 70 ms.

use std::time::{Duration, Instant};

use super::simd::{self, SimdFamily};

const WARMUP: Duration = Duration::from_millis(8);
const WINDOW: Duration = Duration::from_millis(20);
const WINDOWS: usize = 3;
/// Iterations between clock reads (~30-100 us of work).
const CHUNK: u64 = 1 << 14;

/// Peak single-precision GFLOP/s of `threads` threads running the widest
/// kernel family this CPU supports (one FMA = 2 flops).
pub fn peak_gflops(threads: usize) -> f64 {
    peak_gflops_with(simd::best(), threads)
}

/// [`peak_gflops`] for a given family (resolved to one the CPU runs).
///
/// Runs on the cnnrs pool when it has at least `threads` threads, otherwise
/// on `threads` scoped OS threads.
pub fn peak_gflops_with(family: SimdFamily, threads: usize) -> f64 {
    let family = simd::resolve(family);
    let threads = threads.max(1);
    if threads == 1 {
        return probe_thread(family);
    }
    if threads <= crate::parallel::get_num_threads() && rayon::current_thread_index().is_none() {
        crate::parallel::install_all(|| {
            rayon::broadcast(|ctx| {
                if ctx.index() < threads {
                    probe_thread(family)
                } else {
                    0.0
                }
            })
        })
        .into_iter()
        .sum()
    } else {
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads)
                .map(|_| s.spawn(move || probe_thread(family)))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
        })
    }
}

/// Best GFLOP/s of the calling thread over a few windows.
fn probe_thread(family: SimdFamily) -> f64 {
    let (flops_per_iter, run): (u64, fn(u64) -> f32) = match family {
        #[cfg(target_arch = "x86_64")]
        SimdFamily::Avx512 => (AVX512_FLOPS, chains_avx512),
        #[cfg(target_arch = "x86_64")]
        SimdFamily::Avx2 => (AVX2_FLOPS, chains_avx2),
        _ => (SCALAR_FLOPS, chains_scalar),
    };
    let mut sink = 0.0f32;
    let t0 = Instant::now();
    while t0.elapsed() < WARMUP {
        sink += run(CHUNK);
    }
    let mut best = 0.0f64;
    for _ in 0..WINDOWS {
        let t = Instant::now();
        let mut iters = 0u64;
        let mut el;
        loop {
            sink += run(CHUNK);
            iters += CHUNK;
            el = t.elapsed();
            if el >= WINDOW {
                break;
            }
        }
        best = best.max((iters * flops_per_iter) as f64 / el.as_secs_f64() / 1e9);
    }
    std::hint::black_box(sink);
    best
}

const SCALAR_CHAINS: usize = 8;
const SCALAR_LANES: usize = 8;
const SCALAR_FLOPS: u64 = (SCALAR_CHAINS * SCALAR_LANES * 2) as u64;

/// Portable chains (multiply then add; the compiler vectorises the lanes).
fn chains_scalar(iters: u64) -> f32 {
    let x = std::hint::black_box(0.999f32);
    let y = std::hint::black_box(0.001f32);
    let mut acc = [[1.0f32; SCALAR_LANES]; SCALAR_CHAINS];
    for _ in 0..iters {
        for chain in acc.iter_mut() {
            for v in chain.iter_mut() {
                *v = *v * x + y;
            }
        }
    }
    acc.iter().flatten().sum()
}

#[cfg(target_arch = "x86_64")]
const AVX2_CHAINS: usize = 12;
#[cfg(target_arch = "x86_64")]
const AVX2_FLOPS: u64 = (AVX2_CHAINS * 8 * 2) as u64;

#[cfg(target_arch = "x86_64")]
fn chains_avx2(iters: u64) -> f32 {
    // SAFETY: only reached for the Avx2 family, which `simd::resolve` returns
    // only when the CPU reports AVX2 and FMA.
    unsafe { chains_avx2_impl(iters) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn chains_avx2_impl(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let x = _mm256_set1_ps(std::hint::black_box(0.999));
    let y = _mm256_set1_ps(std::hint::black_box(0.001));
    let mut acc = [_mm256_set1_ps(1.0); AVX2_CHAINS];
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(*v, x, y);
        }
    }
    let mut s = _mm256_setzero_ps();
    for v in acc {
        s = _mm256_add_ps(s, v);
    }
    _mm256_cvtss_f32(s)
}

#[cfg(target_arch = "x86_64")]
const AVX512_CHAINS: usize = 16;
#[cfg(target_arch = "x86_64")]
const AVX512_FLOPS: u64 = (AVX512_CHAINS * 16 * 2) as u64;

#[cfg(target_arch = "x86_64")]
fn chains_avx512(iters: u64) -> f32 {
    // SAFETY: only reached for the Avx512 family, which `simd::resolve`
    // returns only when the CPU reports AVX-512F.
    unsafe { chains_avx512_impl(iters) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn chains_avx512_impl(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let x = _mm512_set1_ps(std::hint::black_box(0.999));
    let y = _mm512_set1_ps(std::hint::black_box(0.001));
    let mut acc = [_mm512_set1_ps(1.0); AVX512_CHAINS];
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm512_fmadd_ps(*v, x, y);
        }
    }
    let mut s = _mm512_setzero_ps();
    for v in acc {
        s = _mm512_add_ps(s, v);
    }
    _mm512_reduce_add_ps(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_available_family_reports_a_positive_finite_peak() {
        for f in simd::available() {
            // One window is enough to check the plumbing.
            let g = probe_thread(f);
            assert!(g.is_finite() && g > 0.0, "{f}: {g}");
        }
    }

    #[test]
    fn chains_compute_the_recurrence() {
        // acc_{t+1} = 0.999*acc_t + 0.001 from 1.0 stays at 1.0 (fixed point),
        // so every lane of every chain ends at 1.0.
        assert!((chains_scalar(100) - (SCALAR_CHAINS * SCALAR_LANES) as f32).abs() < 1e-2);
        #[cfg(target_arch = "x86_64")]
        {
            if SimdFamily::Avx2.is_available() {
                // Lane 0 of the sum of 12 chains.
                assert!((chains_avx2(100) - AVX2_CHAINS as f32).abs() < 1e-2);
            }
            if SimdFamily::Avx512.is_available() {
                assert!((chains_avx512(100) - (AVX512_CHAINS * 16) as f32).abs() < 1e-1);
            }
        }
    }
}
