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
//! So the pool watches how long its threads wait for a CPU. Every
//! [`CHECK`] (at the next parallel call) it reads the run-queue wait of
//! each pool thread and of the calling thread (`schedstat`); when they
//! waited, together, at least [`WAIT_FRAC`] of the elapsed time per extra
//! thread, in [`STREAK`] checks in a row, each time with another process
//! runnable (`/proc/loadavg` less this process's running threads: the
//! pool's own threads in each other's way, or another thread pool of the
//! same process, are no reason), it runs parallel work *serially* for a
//! hold time: [`super::for_each_index`] and the chunked loops
//! ([`super::try_chunks_mut`], [`super::for_each_index_pooled`]) run every
//! task on the calling thread, and the few remaining rayon loops
//! ([`super::install`]) run on a one-thread pool. Only execution changes:
//! every split into tasks and partial sums is still made for the
//! configured thread count, so results are bit-identical to the parallel
//! ones. When the hold ends the pool runs in parallel again (a probe); if
//! it falls back again within [`PROBE_CHECKS`] checks, the next hold is
//! twice as long (up to [`HOLD_MAX`]), else holds start again at
//! [`HOLD_MIN`]. Summed waits measured over 0.3 s of back-to-back calls:
//! quiet 0.02-0.10 of the elapsed time (the larger figure for LeNet's short
//! calls), contended 0.84-1.05; single 10 ms windows read up to 0.6-1.0
//! quiet (at start-up, and right after a hold while idle threads still
//! yield the core), hence the streak, the other-process condition and a
//! first probe window that only takes baselines.
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
});

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// The serial/parallel state machine, apart from how waits are measured.
#[derive(Debug, Clone, PartialEq)]
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
}

/// Run-queue wait of a thread in nanoseconds (`schedstat`'s second field);
/// `None` where the kernel does not give it.
fn read_wait(path: &str) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    s.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// Runnable tasks in the system that are not this process's threads, from
/// `/proc/loadavg` (system-wide) less this process's threads in state `R`
/// (counted before and after; the larger count is taken). `None` where
/// the files are missing.
fn others_running() -> Option<i64> {
    let ours = || -> Option<i64> {
        let mut n = 0;
        for e in std::fs::read_dir("/proc/self/task").ok()? {
            let Ok(stat) = std::fs::read_to_string(e.ok()?.path().join("stat")) else {
                continue; // the thread just ended
            };
            // The state follows the ")" closing the command name.
            let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
            n += i64::from(state == 'R');
        }
        Some(n)
    };
    let before = ours()?;
    let la = std::fs::read_to_string("/proc/loadavg").ok()?;
    let running: i64 = la
        .split_ascii_whitespace()
        .nth(3)?
        .split('/')
        .next()?
        .parse()
        .ok()?;
    let after = ours()?;
    Some(running - before.max(after))
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
/// pool (`spawn`), so reading the counts (tens of microseconds: procfs)
/// never delays a caller. `caller` is the calling thread's id, `tids` the
/// pool's threads.
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
    let waiting = if std::mem::take(&mut m.settle) {
        None
    } else {
        // High waits with no other process runnable are the pool's own
        // threads in each other's way (idle ones yielding, a caller with a
        // helper per pool thread): not a reason to fall back.
        measured.filter(|&w| w < WAIT_FRAC || others_running().is_none_or(|o| o >= 1))
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

/// Forces the mode for tests: `Some(serial)` holds it until the next call
/// with `None`, which lets the monitor decide again.
#[cfg(test)]
pub(super) fn force(mode: Option<bool>) {
    let mut m = MONITOR.lock().unwrap_or_else(|p| p.into_inner());
    match mode {
        Some(s) => {
            m.backoff = Backoff {
                serial: s,
                hold: HOLD_MAX,
                until: u64::MAX,
                probe: None,
                streak: 0,
            };
            SERIAL.store(s, Ordering::Relaxed);
            HOLD_UNTIL.store(u64::MAX, Ordering::Relaxed);
            NEXT_CHECK.store(u64::MAX, Ordering::Relaxed);
        }
        None => {
            m.backoff = Backoff::new();
            SERIAL.store(false, Ordering::Relaxed);
            HOLD_UNTIL.store(0, Ordering::Relaxed);
            NEXT_CHECK.store(0, Ordering::Relaxed);
        }
    }
}
