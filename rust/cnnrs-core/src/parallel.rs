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
    let slice = worker_slice();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("cnnrs-{i}"))
        .start_handler(move |_| {
            if let Some(ns) = slice {
                request_slice(ns);
            }
        })
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

/// The time slice the pool threads ask the scheduler for, in nanoseconds:
/// `CNNRS_WORKER_SLICE_MS` (a positive number of milliseconds, at most
/// 100), else none (the system default). Read when a pool is built.
fn worker_slice() -> Option<u64> {
    parse_slice_ms(&std::env::var("CNNRS_WORKER_SLICE_MS").ok()?)
}

/// Milliseconds (positive, finite; capped at 100, the kernel's limit) as
/// nanoseconds; anything else is `None`.
fn parse_slice_ms(v: &str) -> Option<u64> {
    let ms: f64 = v.trim().parse().ok()?;
    (ms > 0.0 && ms.is_finite()).then(|| (ms.min(100.0) * 1e6) as u64)
}

/// Asks Linux (6.12 or later: EEVDF custom slices) to run the calling
/// thread for up to `ns` nanoseconds at a time before the scheduler may
/// switch to another runnable task of the same policy, keeping its policy
/// and nice value. Best effort: does nothing on other systems, on older
/// kernels (which ignore the request), or for a non-default policy.
///
/// Why: with another process busy on one of two cores, 2-thread calls are
/// bimodal: most take ~2x their quiet time (the other core does all the
/// work), but 10-50% take ~2x plus ~3.6 ms, most likely a pool thread
/// preempted in the middle of a task (the default slice is 1.4 ms here)
/// and waiting a scheduler tick for the core (a 1.4 ms transposed
/// convolution: ~2.8 ms or ~5 ms). With 20 ms slices the slow calls went
/// below 10%, and the worst conv row of `bench.py --contend` per run was
/// 1.86-1.99x its quiet time (2.02-2.89x without). The cost, in a quiet
/// machine: between back-to-back small calls rayon's idle workers keep
/// spinning, so the caller shares a core with one of them, and with long
/// slices it waits longer for that core (LeNet's 5x5 forward at batch 64,
/// 2 threads: 63 -> 77 us; `perf sched`: the Python thread's mean
/// scheduling delay 0.07 -> 0.37 ms). Hence an opt-in, for machines that
/// run other busy processes.
fn request_slice(ns: u64) {
    #[cfg(target_os = "linux")]
    {
        const SCHED_OTHER: u32 = 0;
        const SCHED_BATCH: u32 = 3;
        const SCHED_FLAG_RESET_ON_FORK: u64 = 1;
        let Some(mut attr) = SchedAttr::get() else {
            return;
        };
        if !(attr.policy == SCHED_OTHER || attr.policy == SCHED_BATCH) {
            return;
        }
        attr.flags &= SCHED_FLAG_RESET_ON_FORK;
        attr.runtime = ns;
        (attr.deadline, attr.period, attr.util_min, attr.util_max) = (0, 0, 0, 0);
        // SAFETY: `attr` is a valid `sched_attr` of `attr.size` bytes, only
        // read by the kernel; pid 0 is the calling thread.
        unsafe {
            libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = ns;
}

/// `struct sched_attr` (linux/sched/types.h), with utilization clamps.
#[cfg(target_os = "linux")]
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
    util_min: u32,
    util_max: u32,
}

#[cfg(target_os = "linux")]
impl SchedAttr {
    /// The calling thread's scheduling attributes, `None` when the kernel
    /// does not give them.
    fn get() -> Option<Self> {
        let size = std::mem::size_of::<Self>() as u32;
        let mut attr = Self::default();
        // SAFETY: `attr` is a writable `sched_attr` of `size` bytes; pid 0
        // is the calling thread.
        let got =
            unsafe { libc::syscall(libc::SYS_sched_getattr, 0, &mut attr as *mut Self, size, 0) };
        attr.size = size;
        (got == 0).then_some(attr)
    }
}

/// The time slice the calling thread runs with, in nanoseconds, as the
/// kernel reports it (Linux 6.12 or later: the slice [`request_slice`]
/// set, else the default one; 0 where unknown).
fn current_slice() -> u64 {
    #[cfg(target_os = "linux")]
    if let Some(attr) = SchedAttr::get() {
        return attr.runtime;
    }
    0
}

/// The time slice of a pool thread in nanoseconds, as the kernel reports
/// it (0 where unknown): shows whether `CNNRS_WORKER_SLICE_MS` took effect.
pub fn worker_slice_ns() -> u64 {
    current().install(current_slice)
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

thread_local! {
    /// Set on a caller thread while it runs tasks of [`for_each_index`]:
    /// nested parallel calls from those tasks stay on the thread.
    static IN_TASKS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// True on a pool thread, or on a caller running [`for_each_index`] tasks:
/// a parallel call made here should run serially.
pub fn in_parallel_region() -> bool {
    rayon::current_thread_index().is_some() || IN_TASKS.with(|c| c.get())
}

/// The state [`for_each_index`] shares with the pool's helpers.
struct Tasks {
    next: std::sync::atomic::AtomicUsize,
    done: std::sync::atomic::AtomicUsize,
    n: usize,
    /// The task function, its lifetime erased (see [`for_each_index`]).
    f: TaskFn,
    caller: std::thread::Thread,
    panic: std::sync::Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

/// A pointer to the task function of [`for_each_index`].
struct TaskFn(*const (dyn Fn(usize) + Sync));
// SAFETY: the pointee is `Sync` (calls from several threads at once are
// what it is for); the pointer is only dereferenced under the protocol of
// [`for_each_index`].
unsafe impl Send for TaskFn {}
// SAFETY: as above.
unsafe impl Sync for TaskFn {}

impl Tasks {
    /// Claims and runs tasks until none is left.
    fn work(&self) {
        use std::sync::atomic::Ordering;
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.n {
                return;
            }
            // SAFETY: task `i < n` is claimed and not yet counted in `done`,
            // so the caller of `for_each_index`, which owns the closure, is
            // still inside that call: the pointer is valid.
            let f = unsafe { &*self.f.0 };
            if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(i))) {
                if let Ok(mut slot) = self.panic.lock() {
                    slot.get_or_insert(p);
                }
            }
            if self.done.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
                self.caller.unpark();
            }
        }
    }
}

/// How long a caller spins for the last tasks of [`for_each_index`], then
/// yields its core between checks, before it parks. A wake-up from park
/// costs 10-50 us on a VM, and a woken caller can land on a core another
/// process holds: with a busy loop on one of two cores, a batch-1 3x3
/// forward+backward took ~3.6x its quiet time in one sample of two until
/// the caller stopped sleeping through its products' ends (then 1.2-1.7x).
/// Yielding leaves the core to whatever else is runnable.
const SPIN: std::time::Duration = std::time::Duration::from_micros(20);
const YIELD: std::time::Duration = std::time::Duration::from_micros(200);

/// Runs `f(0)`, ..., `f(n - 1)`, each once, on the calling thread together
/// with the pool: tasks are claimed from a shared counter, so the caller
/// starts at once instead of sleeping while a pool thread wakes up (17 us
/// back to back, ~50 us after a pause, on this VM; then the caller's own
/// wake-up at the end), and a helper that wakes after the work is gone just
/// returns. Returns when every task has finished. Serial on one thread,
/// for one task, or inside a parallel region.
///
/// `every_thread`: hand the work to every pool thread, not just as many as
/// the caller needs besides itself. The pool has as many threads as the
/// caller may use, so one of them is spare; rayon gives a job to a thread
/// that is awake and idle before it wakes a sleeping one, and the awake one
/// can be spinning on the caller's own core (the scheduler placed it there
/// on an earlier wake-up, while the other core was busy). It then takes
/// the helper's job and the caller and it share one core while the other
/// sits idle, call after call, until the load balancer moves a thread:
/// traced on this 2-core VM, one such stretch lasted 18 ms, and 5-16% of
/// batch-1 3x3 forwards (4 tasks) took the one-thread time (1.0 instead of
/// 0.54 ms). Offering a second job wakes the sleeping thread, which lands on
/// the idle core. Measured in one process, alternating blocks of 200 calls
/// (three runs): that forward's calls at one-thread time 4.6-6.4% -> 0.3-0.4%,
/// mean 0.572-0.582 -> 0.551-0.555 ms; the 64-channel 32x32 one (75 MFLOP)
/// 0.205 -> 0.197 ms; ResNet-50 at batch 1 the same or faster; with a busy
/// loop on one core unchanged (~1.0 ms). It costs one wake-up (a few
/// microseconds), so the GEMM asks for it only on larger products.
///
/// # Panics
/// Re-raises the first panic of a task (the other tasks still run).
pub fn for_each_index(n: usize, every_thread: bool, f: impl Fn(usize) + Sync) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let threads = get_num_threads();
    if n <= 1 || threads <= 1 || in_parallel_region() {
        (0..n).for_each(f);
        return;
    }
    let f_ref: &(dyn Fn(usize) + Sync) = &f;
    // SAFETY: only the lifetime is erased. A helper dereferences the
    // pointer only for a task `i < n` it claimed, before counting it in
    // `done`; this function returns only once `done == n` (read with
    // Acquire, after the tasks' writes), and any later claim gets `i >= n`
    // and never dereferences it.
    let f_static = unsafe {
        std::mem::transmute::<
            *const (dyn Fn(usize) + Sync + '_),
            *const (dyn Fn(usize) + Sync + 'static),
        >(f_ref)
    };
    let tasks = Arc::new(Tasks {
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        n,
        f: TaskFn(f_static),
        caller: std::thread::current(),
        panic: std::sync::Mutex::new(None),
    });
    let pool = current();
    let helpers = if every_thread { threads } else { threads - 1 };
    for _ in 0..helpers.min(n - 1) {
        let t = Arc::clone(&tasks);
        pool.spawn(move || t.work());
    }
    IN_TASKS.with(|c| c.set(true));
    tasks.work();
    IN_TASKS.with(|c| c.set(false));
    let t0 = std::time::Instant::now();
    while tasks.done.load(Ordering::Acquire) < n {
        let e = t0.elapsed();
        if e < SPIN {
            std::hint::spin_loop();
        } else if e < YIELD {
            std::thread::yield_now();
        } else {
            std::thread::park_timeout(std::time::Duration::from_millis(1));
        }
    }
    let panic = tasks.panic.lock().ok().and_then(|mut p| p.take());
    if let Some(p) = panic {
        std::panic::resume_unwind(p);
    }
}

/// Runs `f(i, block_i)` over the `block`-element blocks of `out` (the last
/// may be shorter), on the pool when `out` holds at least `par_min`
/// elements and two blocks, else in order on the calling thread.
pub fn for_each_block_mut(
    out: &mut [f32],
    block: usize,
    par_min: usize,
    f: impl Fn(usize, &mut [f32]) + Sync + Send,
) {
    use rayon::prelude::*;
    if block == 0 || out.is_empty() {
        return;
    }
    if out.len() >= par_min && out.len() > block && get_num_threads() > 1 {
        install(|| {
            out.par_chunks_mut(block)
                .enumerate()
                .for_each(|(i, o)| f(i, o))
        });
    } else {
        for (i, o) in out.chunks_mut(block).enumerate() {
            f(i, o);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A requested slice is what the kernel then reports for the thread
    /// (where it reports slices at all), and the thread keeps its nice
    /// value; a request on a thread with a real-time-like policy is not
    /// possible here, so only the default policy is exercised.
    #[test]
    fn request_slice_sets_this_threads_slice_only() {
        std::thread::spawn(|| {
            let before = current_slice();
            // SAFETY: plain libc calls on this thread.
            let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            request_slice(20_000_000);
            let after = current_slice();
            if before != 0 {
                // Linux >= 6.12 reports fair slices: the request must show.
                assert_eq!(after, 20_000_000);
            }
            // SAFETY: as above.
            assert_eq!(unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }, nice);
        })
        .join()
        .unwrap();
        // Another thread's request left this one alone.
        assert_ne!(
            current_slice(),
            20_000_000,
            "the slice leaked to this thread"
        );
    }

    /// The environment knob: milliseconds, positive, capped at 100 ms.
    #[test]
    fn worker_slice_parses_milliseconds() {
        let parse = parse_slice_ms;
        assert_eq!(parse("20"), Some(20_000_000));
        assert_eq!(parse(" 2.5 "), Some(2_500_000));
        assert_eq!(parse("1000"), Some(100_000_000));
        for bad in ["0", "-3", "abc", "", "inf", "NaN"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    /// Every index runs exactly once, with tasks borrowing the caller's data;
    /// a task sees itself inside a parallel region (so nested calls stay
    /// serial). (The pool is only ever grown to two threads here: other
    /// tests compare bits across runs at the process's thread count.)
    #[test]
    fn for_each_index_runs_every_task_once() {
        set_num_threads(get_num_threads().max(2));
        let threads = get_num_threads();
        {
            for (n, every) in [0, 1, 2, 3, 7, 64, 1000]
                .into_iter()
                .flat_map(|n| [(n, false), (n, true)])
            {
                let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                let nested = AtomicUsize::new(0);
                for_each_index(n, every, |i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                    if in_parallel_region() || threads == 1 || n == 1 {
                        nested.fetch_add(1, Ordering::Relaxed);
                    }
                });
                assert!(
                    hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                    "{threads} {n} {every}"
                );
                assert_eq!(nested.load(Ordering::Relaxed), n, "{threads} {n} {every}");
                assert!(!in_parallel_region(), "flag left set");
            }
        }
    }

    /// A panicking task is re-raised to the caller after the others ran,
    /// and the pool keeps working afterwards.
    #[test]
    fn for_each_index_reraises_a_task_panic() {
        set_num_threads(get_num_threads().max(2));
        let ran = AtomicUsize::new(0);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for_each_index(16, true, |i| {
                ran.fetch_add(1, Ordering::Relaxed);
                assert!(i != 5, "task 5 fails");
            })
        }));
        assert!(r.is_err());
        assert_eq!(ran.load(Ordering::Relaxed), 16);
        assert!(!in_parallel_region());
        let sum = AtomicUsize::new(0);
        for_each_index(10, false, |i| {
            sum.fetch_add(i, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 45);
    }
}
