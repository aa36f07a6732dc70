//! Quick GEMM throughput check from Rust alone (no Python), for tuning the
//! micro-kernels and blocking:
//!
//! ```text
//! cargo run --release -p cnnrs-core --example gemm_bench -- [family] [m n k] [threads] [repeats]
//! cargo run --release -p cnnrs-core --example gemm_bench -- avx2 1024 1024 1024 1 20
//! ```
//!
//! Prints the median and best time, GFLOP/s and the fraction of the FMA peak
//! measured by `kernels::peak` for the same family and thread count.

use std::io::Write;
use std::time::Instant;

use cnnrs_core::kernels::{gemm_par_with, peak, simd, GemmOpts, MatRef, SimdFamily};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let family = args
        .first()
        .and_then(|s| SimdFamily::parse(s))
        .unwrap_or_else(simd::active);
    let num = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (m, n, k) = (num(1, 1024), num(2, 1024), num(3, 1024));
    let threads = num(4, 1);
    let repeats = num(5, 20);
    cnnrs_core::parallel::set_num_threads(threads);
    let family = simd::resolve(family);
    let a: Vec<f32> = (0..m * k)
        .map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1)
        .collect();
    let b: Vec<f32> = (0..k * n)
        .map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.1)
        .collect();
    let mut c = vec![0.0f32; m * n];
    let av = MatRef::row_major(&a, m, k, k);
    let bv = MatRef::row_major(&b, k, n, n);
    let opts = GemmOpts::default();
    for _ in 0..3 {
        gemm_par_with(family, av, bv, &mut c, n, &opts);
    }
    let mut times = Vec::with_capacity(repeats);
    let mut cpu_times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let c0 = thread_cpu_ns();
        let t = Instant::now();
        gemm_par_with(family, av, bv, &mut c, n, &opts);
        times.push(t.elapsed().as_secs_f64());
        if let (Some(c0), Some(c1)) = (c0, thread_cpu_ns()) {
            cpu_times.push((c1 - c0) as f64 * 1e-9);
        }
    }
    times.sort_by(|x, y| x.total_cmp(y));
    cpu_times.sort_by(|x, y| x.total_cmp(y));
    let med = times[times.len() / 2];
    let flops = 2.0 * (m * n * k) as f64;
    let pk = peak::peak_gflops_with(family, threads);
    let mut out = std::io::stdout().lock();
    // Ignore write errors: piping into `head` must not panic.
    let _ = writeln!(
        out,
        "{family} {m}x{n}x{k} threads={threads}: median {:.3} ms (min {:.3}), {:.1} GFLOP/s (best {:.1}), peak {:.1}, {:.1}% of peak (best {:.1}%)",
        med * 1e3,
        times[0] * 1e3,
        flops / med / 1e9,
        flops / times[0] / 1e9,
        pk,
        100.0 * flops / med / 1e9 / pk,
        100.0 * flops / times[0] / 1e9 / pk
    );
    if threads == 1 && !cpu_times.is_empty() {
        // On a shared machine: the time this thread was actually on a CPU,
        // which descheduling does not inflate.
        let cm = cpu_times[cpu_times.len() / 2];
        let _ = writeln!(
            out,
            "  on-cpu median {:.3} ms: {:.1} GFLOP/s, {:.1}% of peak",
            cm * 1e3,
            flops / cm / 1e9,
            100.0 * flops / cm / 1e9 / pk
        );
    }
}

/// Nanoseconds this thread has run on a CPU (`CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu_ns() -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` to the pointer we pass,
    // which points at a live local.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}
