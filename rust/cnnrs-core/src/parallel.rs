//! The one thread pool every kernel runs on.
//!
//! A private rayon pool (not rayon's global one, which can be built only once)
//! so `set_num_threads` can resize it. The pool remembers the process id that
//! built it: after `fork` the child has none of the parent's worker threads,
//! so the first parallel call in the child builds a fresh pool instead of
//! waiting forever on threads that do not exist.

use std::sync::{Arc, Mutex, RwLock};

mod contention;
pub use contention::{fallbacks as serial_fallbacks, serial as serial_fallback_active};

struct Pool {
    inner: Arc<Inner>,
    threads: usize,
    pid: u32,
}

/// What a parallel call needs of the pool.
struct Inner {
    pool: rayon::ThreadPool,
    /// One thread, for [`install`] while the pool runs serially (see
    /// `contention`): a caller's rayon loops need a pool to run in.
    solo: rayon::ThreadPool,
    /// The kernel's ids of the pool's threads (for their `schedstat`).
    tids: Arc<Mutex<Vec<i32>>>,
    threads: usize,
    /// `CNNRS_SERIAL_FALLBACK` is not `0`.
    fallback: bool,
}

impl Inner {
    /// True when this call's parallel work should run serially.
    fn serial_now(&self) -> bool {
        contention::serial_now(self.threads, self.fallback)
    }

    /// After a parallel call: queues a check of the threads' waits on the
    /// pool when one is due (see `contention`).
    fn after_parallel(&self) {
        contention::after_parallel(
            |job| self.pool.spawn(job),
            &self.tids,
            self.threads,
            self.fallback,
        );
    }
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
    let tids = Arc::new(Mutex::new(Vec::new()));
    let start = {
        let tids = Arc::clone(&tids);
        move |_| {
            if let Some(ns) = slice {
                request_slice(ns);
            }
            if let Ok(mut t) = tids.lock() {
                t.push(contention::own_tid());
            }
        }
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("cnnrs-{i}"))
        .start_handler(start)
        .build()
        // Building a pool only fails when the OS refuses threads; fall back
        // to a single-thread pool, which needs just one.
        .or_else(|_| rayon::ThreadPoolBuilder::new().num_threads(1).build());
    let solo = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .thread_name(|_| "cnnrs-solo".to_string())
        .build();
    match (pool, solo) {
        (Ok(pool), Ok(solo)) => Pool {
            inner: Arc::new(Inner {
                pool,
                solo,
                tids,
                threads,
                fallback: std::env::var("CNNRS_SERIAL_FALLBACK").map_or(true, |v| v.trim() != "0"),
            }),
            threads,
            pid: std::process::id(),
        },
        (Err(e), _) | (_, Err(e)) => panic!("cnnrs: cannot start any worker thread: {e}"),
    }
}

fn current() -> Arc<Inner> {
    let pid = std::process::id();
    if let Ok(guard) = POOL.read() {
        if let Some(p) = guard.as_ref() {
            if p.pid == pid {
                return p.inner.clone();
            }
        }
    }
    let mut guard = match POOL.write() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    match guard.as_ref() {
        Some(p) if p.pid == pid => p.inner.clone(),
        other => {
            let threads = other.map(|p| p.threads).unwrap_or_else(default_threads);
            // After fork the parent's pool handle refers to threads that are
            // gone; leak it rather than run its destructor in the child.
            if let Some(old) = guard.take() {
                std::mem::forget(old);
            }
            let p = build(threads);
            let inner = p.inner.clone();
            *guard = Some(p);
            inner
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
    current().pool.install(current_slice)
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
/// from inside a pool thread it just runs `f` (no nesting of pools). While
/// other processes hold the cores (see `contention`) `f` runs on a
/// one-thread pool instead, its rayon loops in order.
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    let inner = current();
    if inner.serial_now() {
        return inner.solo.install(f);
    }
    let r = inner.pool.install(f);
    inner.after_parallel();
    r
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

/// [`install`] on the whole pool even while other processes hold the
/// cores: for the FMA-peak probe, which must run on every thread it asks
/// for.
pub(crate) fn install_all<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    current().pool.install(f)
}

/// Runs `f(0)`, ..., `f(n - 1)` split by rayon over the pool, the caller
/// waiting (for long products: see the GEMM); serially on the calling
/// thread when the pool runs serially (see `contention`), when it has one
/// thread, or inside a parallel region.
pub fn for_each_index_pooled(n: usize, f: impl Fn(usize) + Sync + Send) {
    use rayon::prelude::*;
    if n <= 1 || get_num_threads() <= 1 || in_parallel_region() {
        (0..n).for_each(f);
        return;
    }
    let inner = current();
    if inner.serial_now() {
        (0..n).for_each(f);
        return;
    }
    inner.pool.install(|| (0..n).into_par_iter().for_each(f));
    inner.after_parallel();
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
    let inner = current();
    // While other processes hold the cores the caller runs every task (the
    // same loop, so panics and nested calls behave as in a parallel run).
    let serial = inner.serial_now();
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
    let helpers = match (serial, every_thread) {
        (true, _) => 0,
        (false, true) => threads,
        (false, false) => threads - 1,
    };
    for _ in 0..helpers.min(n - 1) {
        let t = Arc::clone(&tasks);
        inner.pool.spawn(move || t.work());
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
    if !serial {
        inner.after_parallel();
    }
    let panic = tasks.panic.lock().ok().and_then(|mut p| p.take());
    if let Some(p) = panic {
        std::panic::resume_unwind(p);
    }
}

/// A raw pointer into a `&mut [T]` that parallel tasks may share: each task
/// dereferences only its own disjoint part of the slice, while the owning
/// borrow lasts for the whole parallel call ([`try_chunks_mut`], the GEMM's
/// tiles of C).
pub(crate) struct SendPtr<T>(pub(crate) *mut T);
impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SendPtr<T> {}
// SAFETY: only used as described above: disjoint parts of a `&mut [T]`
// with `T: Send`, each touched by one task at a time.
unsafe impl<T: Send> Send for SendPtr<T> {}
// SAFETY: as above; shared references only copy the pointer value.
unsafe impl<T: Send> Sync for SendPtr<T> {}

/// Runs `f(i, chunk_i)` over the `len`-element chunks of `out` (the last
/// may be shorter) with [`for_each_index_pooled`]: `group` consecutive
/// chunks per task, in order within a task, split by rayon over the pool;
/// while other processes hold the cores every chunk runs on the caller
/// (see `contention`). Returns the error of the lowest-numbered chunk that
/// failed (every chunk is still attempted).
pub fn try_chunks_mut<T: Send, E: Send>(
    out: &mut [T],
    len: usize,
    group: usize,
    f: impl Fn(usize, &mut [T]) -> Result<(), E> + Sync,
) -> Result<(), E> {
    let total = out.len();
    if total == 0 || len == 0 {
        return Ok(());
    }
    let chunks = total.div_ceil(len);
    let group = group.max(1);
    let base = SendPtr(out.as_mut_ptr());
    let errors: Mutex<Option<(usize, E)>> = Mutex::new(None);
    for_each_index_pooled(chunks.div_ceil(group), |t| {
        for i in t * group..((t + 1) * group).min(chunks) {
            let start = i * len;
            let n = len.min(total - start);
            let base = &base;
            // SAFETY: chunk `i` is `[start, start + n)` of `out`, inside it,
            // and runs in exactly one task; chunks do not overlap, and `out`
            // stays mutably borrowed until every task has finished.
            let chunk = unsafe { std::slice::from_raw_parts_mut(base.0.add(start), n) };
            if let Err(e) = f(i, chunk) {
                if let Ok(mut slot) = errors.lock() {
                    if slot.as_ref().is_none_or(|(j, _)| i < *j) {
                        *slot = Some((i, e));
                    }
                }
            }
        }
    });
    match errors.into_inner() {
        Ok(Some((_, e))) => Err(e),
        _ => Ok(()),
    }
}

/// [`try_chunks_mut`] for infallible work.
pub fn chunks_mut<T: Send>(
    out: &mut [T],
    len: usize,
    group: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let _ = try_chunks_mut::<T, std::convert::Infallible>(out, len, group, |i, c| {
        f(i, c);
        Ok(())
    });
}

/// For tests: `true` holds serial execution until called with `false`,
/// which lets the monitor decide again.
#[cfg(test)]
pub(crate) fn force_serial(on: bool) {
    contention::force(on)
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
    if block == 0 || out.is_empty() {
        return;
    }
    if out.len() >= par_min && out.len() > block && get_num_threads() > 1 {
        chunks_mut(out, block, 1, f);
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
    if out.len() < 2 * ELEMENTWISE_MIN || get_num_threads() <= 1 {
        f(0, out);
        return;
    }
    chunks_mut(out, ELEMENTWISE_MIN, 1, |i, c| f(i * ELEMENTWISE_MIN, c));
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

    /// The serial/parallel state machine: contended checks in a row start
    /// a hold, a hold ends in a probe, contention again during the probe
    /// doubles the next hold (capped), a calm probe resets it.
    #[test]
    fn serial_fallback_backs_off_and_recovers() {
        use contention::{Backoff, CHECK, HOLD_MAX, HOLD_MIN, PROBE_CHECKS, STREAK, WAIT_FRAC};
        let mut b = Backoff::new();
        let busy = Some(WAIT_FRAC + 0.01);
        let calm = Some(0.05);
        let mut t = 1_000_000_000;
        // `n` contended checks in a row, CHECK apart; the mode after them.
        let contended = |b: &mut Backoff, t: &mut u64, n: u32| {
            let mut serial = false;
            for _ in 0..n {
                *t += CHECK;
                serial = b.step(*t, busy, 1);
            }
            serial
        };
        assert!(!b.step(t, calm, 1));
        for _ in 0..2 * STREAK {
            assert!(!b.step(t, None, 1), "unknown waits never fall back");
            assert!(!b.step(t, busy, 0), "one thread never falls back");
            assert!(
                !b.step(t, Some(1.5 * WAIT_FRAC), 2),
                "scaled by extra threads"
            );
        }
        assert!(!contended(&mut b, &mut t, STREAK - 1));
        assert!(!b.step(t, calm, 1), "a calm check ends the streak");
        assert!(!contended(&mut b, &mut t, STREAK - 1));
        assert!(contended(&mut b, &mut t, 1));
        assert_eq!((b.hold, b.until), (HOLD_MIN, t + HOLD_MIN));
        assert!(b.step(t + HOLD_MIN - 1, None, 1), "held");
        let mut hold = HOLD_MIN;
        for _ in 0..8 {
            t = b.until;
            assert!(!b.step(t, None, 1), "the hold ends in a probe");
            t += CHECK;
            assert!(!b.step(t, None, 1), "the probe's first check settles");
            assert!(contended(&mut b, &mut t, STREAK), "contended probe");
            hold = (hold * 2).min(HOLD_MAX);
            assert_eq!(b.hold, hold);
        }
        assert_eq!(hold, HOLD_MAX);
        t = b.until;
        assert!(!b.step(t, None, 1));
        for _ in 0..PROBE_CHECKS {
            t += CHECK;
            assert!(!b.step(t, calm, 1), "calm probe");
        }
        assert_eq!((b.hold, b.probe), (HOLD_MIN, None));
        assert!(contended(&mut b, &mut t, STREAK));
        assert_eq!(
            b.hold, HOLD_MIN,
            "a new episode starts with the shortest hold"
        );
    }

    /// Serial execution runs every task of `for_each_index` on the calling
    /// thread (nested calls seeing a parallel region) and `install`'s rayon
    /// loops on one thread, with the same results.
    #[test]
    fn forced_serial_runs_on_the_caller_and_one_thread() {
        set_num_threads(get_num_threads().max(2));
        force_serial(true);
        let me = std::thread::current().id();
        let on_caller = AtomicUsize::new(0);
        let nested = AtomicUsize::new(0);
        for_each_index(64, true, |_| {
            if std::thread::current().id() == me {
                on_caller.fetch_add(1, Ordering::Relaxed);
            }
            if in_parallel_region() {
                nested.fetch_add(1, Ordering::Relaxed);
            }
        });
        let threads_seen = install(rayon::current_num_threads);
        let mut v = vec![0.0f32; 1 << 18];
        for_each_chunk_mut(&mut v, |off, c| {
            for (i, x) in c.iter_mut().enumerate() {
                *x = (off + i) as f32;
            }
        });
        force_serial(false);
        assert!(!in_parallel_region());
        assert_eq!(on_caller.load(Ordering::Relaxed), 64);
        assert_eq!(nested.load(Ordering::Relaxed), 64);
        assert_eq!(threads_seen, 1);
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as f32));
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
