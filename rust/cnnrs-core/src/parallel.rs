//! The one thread pool every kernel runs on.
//!
//! A private rayon pool (not rayon's global one, which can be built only once)
//! so `set_num_threads` can resize it. The pool remembers the process id that
//! built it: after `fork` the child has none of the parent's worker threads,
//! so the first parallel call in the child builds a fresh pool instead of
//! waiting forever on threads that do not exist.

use std::sync::{Arc, RwLock};

struct Pool {
    pool: Arc<rayon::ThreadPool>,
    threads: usize,
    pid: u32,
}

static POOL: RwLock<Option<Pool>> = RwLock::new(None);

/// Threads to use when nothing was set: `CNNRS_NUM_THREADS`, else the number
/// of CPUs this process may run on.
fn default_threads() -> usize {
    // Computed once: `available_parallelism` reads cgroup files (tens of
    // microseconds), and tiny ops ask for the thread count on every call
    // before the pool exists.
    static DEFAULT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *DEFAULT.get_or_init(read_default_threads)
}

fn read_default_threads() -> usize {
    std::env::var("CNNRS_NUM_THREADS")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
}

fn build(threads: usize) -> Pool {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("cnnrs-{i}"))
        .build()
        .map(Arc::new)
        // Building a pool only fails when the OS refuses threads; fall back
        // to a single-thread pool, which needs just one.
        .or_else(|_| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .map(Arc::new)
        });
    match pool {
        Ok(pool) => Pool {
            pool,
            threads,
            pid: std::process::id(),
        },
        Err(e) => panic!("cnnrs: cannot start any worker thread: {e}"),
    }
}

fn current() -> Arc<rayon::ThreadPool> {
    let pid = std::process::id();
    if let Ok(guard) = POOL.read() {
        if let Some(p) = guard.as_ref() {
            if p.pid == pid {
                return p.pool.clone();
            }
        }
    }
    let mut guard = match POOL.write() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    match guard.as_ref() {
        Some(p) if p.pid == pid => p.pool.clone(),
        other => {
            let threads = other.map(|p| p.threads).unwrap_or_else(default_threads);
            // After fork the parent's pool handle refers to threads that are
            // gone; leak it rather than run its destructor in the child.
            if let Some(old) = guard.take() {
                std::mem::forget(old);
            }
            let p = build(threads);
            let pool = p.pool.clone();
            *guard = Some(p);
            pool
        }
    }
}

/// Sets the number of worker threads (at least 1) for later calls.
pub fn set_num_threads(n: usize) {
    let n = n.max(1);
    let mut guard = match POOL.write() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    if let Some(p) = guard.as_ref() {
        if p.threads == n && p.pid == std::process::id() {
            return;
        }
    }
    if let Some(old) = guard.take() {
        if old.pid != std::process::id() {
            std::mem::forget(old);
        }
    }
    *guard = Some(build(n));
}

/// Number of worker threads parallel kernels use.
pub fn get_num_threads() -> usize {
    if let Ok(guard) = POOL.read() {
        if let Some(p) = guard.as_ref() {
            return p.threads;
        }
    }
    default_threads()
}

/// Runs `f` inside the pool, so rayon calls in `f` use its threads. Called
/// from inside a pool thread it just runs `f` (no nesting of pools).
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    current().install(f)
}

/// Elements below which an elementwise pass stays on the calling thread (a
/// pool hand-off costs a few microseconds; 64K floats take about that long).
pub const ELEMENTWISE_MIN: usize = 1 << 16;

/// Runs `f(offset, chunk)` over `out` in chunks of [`ELEMENTWISE_MIN`]
/// elements, in parallel on the pool when `out` is large enough. `offset` is
/// the index of the chunk's first element, so `f` can read matching inputs.
pub fn for_each_chunk_mut(out: &mut [f32], f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    use rayon::prelude::*;
    if out.len() < 2 * ELEMENTWISE_MIN || get_num_threads() <= 1 {
        f(0, out);
        return;
    }
    install(|| {
        out.par_chunks_mut(ELEMENTWISE_MIN)
            .enumerate()
            .for_each(|(i, c)| f(i * ELEMENTWISE_MIN, c));
    });
}

/// A new vector of `len` values computed chunk by chunk by `f(offset, chunk)`
/// (see [`for_each_chunk_mut`]); `f` must write every element.
pub fn map_new(len: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    // SAFETY: f32 has no invalid bit patterns and `f` overwrites every element
    // before anything reads it (contract above); this skips zero-filling a
    // buffer that is about to be overwritten.
    #[allow(clippy::uninit_vec)]
    unsafe {
        out.set_len(len)
    };
    for_each_chunk_mut(&mut out, f);
    out
}
