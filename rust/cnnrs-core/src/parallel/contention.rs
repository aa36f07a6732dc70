//! Falling back to one thread while other processes hold the cores.
//!
//! With a busy process on one of two cores, a 2-thread call is slower than
//! the same call on one thread: both pool threads keep migrating onto the
//! busy core and wait there (`/proc/self/task/*/schedstat`, 0.3 s of
//! back-to-back calls: each pool thread ran ~50% and waited ~50% of the
//! time, together about one core), and a thread preempted in the middle of
//! a task holds the call until the other process's time slice ends.
//! Measured in one process on this 2-core VM, 150 calls each (median / 90th
//! percentile): the 1x3 forward (N=8, 64 channels, 56x56) 7.6-7.8 / 8.8 ms
//! on two threads against 6.3-7.2 / 6.6-7.5 ms on one; the 1x1 forward
//! 10.3-10.4 / 12.0-12.7 ms against 8.2-8.8 / 8.9-9.3; LeNet's 5x5
//! forward+backward 1.10 / 1.16-1.34 ms against 0.82-0.84 / 0.90-1.00. The
//! single thread ran at its quiet speed: the scheduler gives it the free
//! core.
//!
//! So the pool watches how long its threads wait for a CPU. After a
//! parallel call, at most every [`CHECK`], a check queued on a pool thread
//! (so no caller waits for procfs) reads the run-queue wait of each pool
//! thread and of the calling thread (`schedstat`). When they waited,
//! together, at least [`WAIT_FRAC`] of the elapsed time per extra thread,
//! in [`STREAK`] checks in a row, each time while other processes kept at
//! least [`OTHERS_MIN`] of a core busy on this process's CPUs over the last
//! [`OTHERS_SPAN`] (`/proc/stat` less this process's own CPU time: the
//! pool's own threads in each other's way, or another thread pool of this
//! process, are no reason), it runs parallel work *serially* for a hold
//! time: [`super::for_each_index`] and the chunked loops
//! ([`super::try_chunks_mut`], [`super::for_each_index_pooled`]) run every
//! task on the calling thread, and the few remaining rayon loops
//! ([`super::install`]: locally connected layers, paired augmentation) run
//! on a one-thread pool. Only execution changes: every split into tasks and
//! partial sums is still made for the configured thread count, so results
//! are bit-identical to the parallel
//! ones. When the hold ends the pool runs in parallel again (a probe); if
//! it falls back again within [`PROBE_CHECKS`] checks, the next hold is
//! twice as long (up to [`HOLD_MAX`]), else holds start again at
//! [`HOLD_MIN`]. Summed waits measured over 0.3 s of back-to-back calls:
//! quiet 0.02-0.10 of the elapsed time (the larger figure for LeNet's short
//! calls), contended 0.84-1.05. Single 10 ms windows read 0.6-2.0 quiet:
//! at start-up, right after a hold while idle threads still yield the
//! core, with a helper per pool thread besides the caller (batch-1 GEMMs),
//! or while another thread pool of the process spins (ONNX Runtime in the
//! harness); hence the other-process condition, integrated over time (an
//! instantaneous count of runnable tasks raced with them: 5 of 10 quiet
//! harness runs fell back once), the streak, and a first probe window that
//! only takes baselines.
//!
//! Linux only (elsewhere the pool never falls back). `CNNRS_SERIAL_FALLBACK=0`
//! turns it off (read when a pool is built).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// Nanoseconds between checks of the threads' waits.
pub(super) const CHECK: u64 = 10_000_000;
/// Summed wait of the threads per wall second, per thread beyond the first,
/// from which the pool counts as contended.
pub(super) const WAIT_FRAC: f64 = 0.25;
/// First and longest serial hold, in nanoseconds.
pub(super) const HOLD_MIN: u64 = 50_000_000;
pub(super) const HOLD_MAX: u64 = 1_000_000_000;
/// A fall-back within this many checks of a probe's start (the first of
/// them only takes baselines) doubles the hold.
pub(super) const PROBE_CHECKS: u32 = STREAK + 2;
/// Cores' worth of CPU time other processes must have used on this
/// process's CPUs, over [`OTHERS_SPAN`], for waits to count as contention.
/// Measured in harness runs at checks with high waits: quiet 0.05-0.27,
/// with a busy loop on one of the two cores 0.54-0.83 (the loop shares its
/// core with pool threads that land there).
pub(super) const OTHERS_MIN: f64 = 0.4;
/// The span (ns) over which other processes' CPU time is measured.
pub(super) const OTHERS_SPAN: u64 = 100_000_000;
/// Contended checks in a row that make the pool fall back.
pub(super) const STREAK: u32 = 3;

/// The mode in force, read on every parallel call (cheap).
static SERIAL: AtomicBool = AtomicBool::new(false);
/// When the next check is due, in nanoseconds since [`epoch`].
static NEXT_CHECK: AtomicU64 = AtomicU64::new(0);
/// When the current serial hold ends.
static HOLD_UNTIL: AtomicU64 = AtomicU64::new(0);
/// Switches to serial execution so far in this process.
static FALLBACKS: AtomicU64 = AtomicU64::new(0);
static MONITOR: Mutex<Monitor> = Mutex::new(Monitor {
    backoff: Backoff::new(),
    settle: false,
    waits: Vec::new(),
    cpu: std::collections::VecDeque::new(),
});

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// The serial/parallel state machine, apart from how waits are measured.
#[derive(Debug)]
pub(super) struct Backoff {
    pub(super) serial: bool,
    /// The current (or next) hold's length.
    pub(super) hold: u64,
    /// When the current hold ends.
    pub(super) until: u64,
    /// Checks since the current probe (parallel again after a hold) started.
    pub(super) probe: Option<u32>,
    /// Contended checks in a row.
    pub(super) streak: u32,
}

impl Backoff {
    pub(super) const fn new() -> Self {
        Self {
            serial: false,
            hold: HOLD_MIN,
            until: 0,
            probe: None,
            streak: 0,
        }
    }

    /// One check at `now`: `waiting` is the threads' summed wait per wall
    /// second since the last check (`None` when unknown), `extra` the pool
    /// threads beyond the first. Returns whether to run serially.
    pub(super) fn step(&mut self, now: u64, waiting: Option<f64>, extra: usize) -> bool {
        if self.serial {
            if now >= self.until {
                self.serial = false;
                self.probe = Some(0);
            }
            return self.serial;
        }
        let busy = waiting.is_some_and(|w| extra > 0 && w >= WAIT_FRAC * extra as f64);
        self.streak = if busy { self.streak + 1 } else { 0 };
        if let Some(c) = self.probe.as_mut() {
            *c += 1;
        }
        if self.streak >= STREAK {
            self.hold = match self.probe {
                Some(c) if c <= PROBE_CHECKS => (self.hold * 2).min(HOLD_MAX),
                _ => HOLD_MIN,
            };
            self.serial = true;
            self.until = now + self.hold;
            self.probe = None;
            self.streak = 0;
        } else if !busy && self.probe.is_some_and(|c| c >= PROBE_CHECKS) {
            self.probe = None;
            self.hold = HOLD_MIN;
        }
        self.serial
    }
}

struct Monitor {
    backoff: Backoff,
    /// The next check only takes new baselines: the first window after
    /// the pool wakes from a serial hold reads high (idle threads of the
    /// one-thread pool still yielding the core; 0.55-0.98 seen, quiet).
    settle: bool,
    /// Run-queue wait (ns) of each thread at its last reading, and when.
    waits: Vec<(i32, u64, u64)>,
    /// Recent [`cpu_times`] samples: (time, busy, own), oldest first.
    cpu: std::collections::VecDeque<(u64, u64, u64)>,
}

/// Run-queue wait of a thread in nanoseconds (`schedstat`'s second field);
/// `None` where the kernel does not give it.
fn read_wait(path: &str) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    s.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// CPU time in nanoseconds that the CPUs this process may run on spent
/// busy (user, nice, system, irq, softirq; `/proc/stat`, in clock ticks),
/// and this process's own CPU time (`getrusage`). `None` where either is
/// missing.
fn cpu_times() -> Option<(u64, u64)> {
    #[cfg(target_os = "linux")]
    {
        static ALLOWED: OnceLock<Vec<usize>> = OnceLock::new();
        let allowed = ALLOWED.get_or_init(|| {
            // SAFETY: `set` is a plain bitmask the kernel fills; size given.
            unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                if libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) != 0 {
                    return Vec::new();
                }
                (0..libc::CPU_SETSIZE as usize)
                    .filter(|&c| libc::CPU_ISSET(c, &set))
                    .collect()
            }
        });
        // SAFETY: sysconf has no preconditions.
        let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if tick <= 0 {
            return None;
        }
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let mut ticks = 0u64;
        for line in stat.lines().skip(1) {
            let Some(rest) = line.strip_prefix("cpu") else {
                break; // the per-CPU lines come first
            };
            let mut f = rest.split_ascii_whitespace();
            let cpu: usize = f.next()?.parse().ok()?;
            if !allowed.is_empty() && !allowed.contains(&cpu) {
                continue;
            }
            let v: Vec<u64> = f.take(7).filter_map(|x| x.parse().ok()).collect();
            if let [user, nice, system, _idle, _iowait, irq, softirq] = v[..] {
                ticks += user + nice + system + irq + softirq;
            }
        }
        // SAFETY: `ru` is a writable rusage the kernel fills.
        let own = unsafe {
            let mut ru: libc::rusage = std::mem::zeroed();
            if libc::getrusage(libc::RUSAGE_SELF, &mut ru) != 0 {
                return None;
            }
            let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
            (us(ru.ru_utime) + us(ru.ru_stime)) * 1000
        };
        Some((ticks * (1_000_000_000 / tick as u64), own))
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// Cores' worth of CPU time other processes used on this process's CPUs
/// over roughly the last [`OTHERS_SPAN`] (at least half of it), from the
/// samples `cpu` (time, busy, own); `None` without enough history.
fn others_busy(cpu: &std::collections::VecDeque<(u64, u64, u64)>) -> Option<f64> {
    let &(now, busy, own) = cpu.back()?;
    let &(t0, busy0, own0) = cpu
        .iter()
        .rev()
        .find(|(t, ..)| now - t >= OTHERS_SPAN)
        .or_else(|| cpu.front().filter(|(t, ..)| now - t >= OTHERS_SPAN / 2))?;
    let others = busy.saturating_sub(busy0) as f64 - own.saturating_sub(own0) as f64;
    Some(others / (now - t0) as f64)
}

/// This thread's id as the kernel knows it.
pub(super) fn own_tid() -> i32 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions.
        unsafe { libc::gettid() }
    }
    #[cfg(not(target_os = "linux"))]
    0
}

/// True when parallel work should run serially now: a flag read, and
/// when a serial hold has run out, the switch back to parallel (a probe).
/// `threads` is the pool's size; `enabled` false keeps the pool parallel.
pub(super) fn serial_now(threads: usize, enabled: bool) -> bool {
    if !enabled || !cfg!(target_os = "linux") || threads < 2 {
        return false;
    }
    if !SERIAL.load(Ordering::Relaxed) {
        return false;
    }
    if now_ns() < HOLD_UNTIL.load(Ordering::Relaxed) {
        return true;
    }
    let Ok(mut m) = MONITOR.try_lock() else {
        return SERIAL.load(Ordering::Relaxed);
    };
    let serial = m.backoff.step(now_ns(), None, threads - 1);
    if !serial {
        // A probe starts: the next check only takes baselines.
        m.settle = true;
        NEXT_CHECK.store(now_ns() + CHECK, Ordering::Relaxed);
    }
    SERIAL.store(serial, Ordering::Relaxed);
    serial
}

/// Called after a parallel call: when a check is due, queues it on the
/// pool with `spawn`, so reading the counts (tens of microseconds: procfs)
/// never delays a caller. `tids` are the pool's threads; the calling
/// thread's id goes with the check.
pub(super) fn after_parallel(
    spawn: impl FnOnce(Box<dyn FnOnce() + Send>),
    tids: &Arc<Mutex<Vec<i32>>>,
    threads: usize,
    enabled: bool,
) {
    if !enabled || !cfg!(target_os = "linux") || threads < 2 || SERIAL.load(Ordering::Relaxed) {
        return;
    }
    let now = now_ns();
    let due = NEXT_CHECK.load(Ordering::Relaxed);
    if now < due
        || NEXT_CHECK
            .compare_exchange(due, now + CHECK, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    let caller = own_tid();
    let tids = Arc::clone(tids);
    spawn(Box::new(move || check(&tids, caller, threads)));
}

/// One check (on a pool thread): measures the waits since the last check
/// and steps the state machine.
fn check(tids: &Mutex<Vec<i32>>, caller: i32, threads: usize) {
    let Ok(mut m) = MONITOR.lock() else {
        return;
    };
    if m.backoff.serial {
        return; // holds end in `serial_now`
    }
    let now = now_ns();
    let mut ids: Vec<i32> = tids.lock().map(|t| t.clone()).unwrap_or_default();
    ids.push(caller);
    let measured = measure(&mut m, &ids, now);
    if let Some((busy, own)) = cpu_times() {
        // A sample per check; the span needs about OTHERS_SPAN / CHECK.
        if m.cpu.len() > 2 * (OTHERS_SPAN / CHECK) as usize {
            m.cpu.pop_front();
        }
        m.cpu.push_back((now, busy, own));
    }
    let waiting = if std::mem::take(&mut m.settle) {
        None
    } else {
        // High waits while no other process takes CPU time are the pool's
        // own threads in each other's way: not a reason to fall back.
        measured.filter(|&w| w < WAIT_FRAC || others_busy(&m.cpu).is_some_and(|o| o >= OTHERS_MIN))
    };
    let serial = m.backoff.step(now, waiting, threads - 1);
    if serial {
        FALLBACKS.fetch_add(1, Ordering::Relaxed);
        HOLD_UNTIL.store(m.backoff.until, Ordering::Relaxed);
    }
    SERIAL.store(serial, Ordering::Relaxed);
}

/// The summed run-queue wait per wall second of the threads `ids` since
/// their last readings (each over its own span; readings over a second
/// old are skipped: idle time would dilute them), and new baselines. `None`
/// when the kernel gives no counts or no thread has an earlier reading.
fn measure(m: &mut Monitor, ids: &[i32], now: u64) -> Option<f64> {
    let mut frac = None::<f64>;
    let mut waits = Vec::with_capacity(ids.len());
    for &tid in ids {
        let Some(w) = read_wait(&format!("/proc/self/task/{tid}/schedstat")) else {
            continue;
        };
        if let Some(&(_, before, at)) = m.waits.iter().find(|(t, ..)| *t == tid) {
            let span = now.saturating_sub(at);
            if span > 0 && span <= 100 * CHECK {
                *frac.get_or_insert(0.0) += w.saturating_sub(before) as f64 / span as f64;
            }
        }
        waits.push((tid, w, now));
    }
    m.waits = waits;
    frac
}

/// How many times this process switched to serial execution.
pub fn fallbacks() -> u64 {
    FALLBACKS.load(Ordering::Relaxed)
}

/// Whether parallel work currently runs serially (see the module docs).
pub fn serial() -> bool {
    SERIAL.load(Ordering::Relaxed)
}

/// For tests: `true` holds serial execution until called with `false`,
/// which resets the monitor.
#[cfg(test)]
pub(super) fn force(on: bool) {
    let mut m = MONITOR.lock().unwrap_or_else(|p| p.into_inner());
    m.backoff = Backoff::new();
    m.backoff.serial = on;
    m.backoff.until = if on { u64::MAX } else { 0 };
    SERIAL.store(on, Ordering::Relaxed);
    HOLD_UNTIL.store(m.backoff.until, Ordering::Relaxed);
    NEXT_CHECK.store(if on { u64::MAX } else { 0 }, Ordering::Relaxed);
}
