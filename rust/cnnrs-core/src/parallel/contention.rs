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
use std::sync::{Mutex, OnceLock};
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
/// Switches to serial execution so far in this process.
static FALLBACKS: AtomicU64 = AtomicU64::new(0);
static MONITOR: Mutex<Monitor> = Mutex::new(Monitor {
    backoff: Backoff::new(),
    settle: false,
    last_check: 0,
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
    last_check: u64,
    /// Run-queue wait (ns) of each pool thread at the last check.
    waits: Vec<(i32, u64)>,
}

thread_local! {
    /// This (calling) thread's run-queue wait and the time it was read.
    static OWN: std::cell::Cell<Option<(u64, u64)>> = const { std::cell::Cell::new(None) };
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

/// True when parallel work should run serially now. `tids` are the pool's
/// threads, `threads` its size; `enabled` false keeps the pool parallel.
pub(super) fn serial_now(tids: &Mutex<Vec<i32>>, threads: usize, enabled: bool) -> bool {
    if !enabled || !cfg!(target_os = "linux") || threads < 2 {
        return false;
    }
    let now = now_ns();
    if now < NEXT_CHECK.load(Ordering::Relaxed) {
        return SERIAL.load(Ordering::Relaxed);
    }
    // One thread checks at a time; the others go on with the mode in force.
    let Ok(mut m) = MONITOR.try_lock() else {
        return SERIAL.load(Ordering::Relaxed);
    };
    NEXT_CHECK.store(now + CHECK, Ordering::Relaxed);
    let was_serial = m.backoff.serial;
    let waiting = if was_serial {
        None
    } else if std::mem::take(&mut m.settle) {
        let _ = measure(&mut m, tids, now);
        None
    } else {
        measure(&mut m, tids, now)
            // High waits with no other process runnable are the pool's own
            // threads in each other's way (idle ones yielding, a caller with
            // a helper per pool thread): not a reason to fall back.
            .filter(|&w| w < WAIT_FRAC || others_running().is_none_or(|o| o >= 1))
    };
    let serial = m.backoff.step(now, waiting, threads - 1);
    if was_serial && !serial {
        // A probe starts: measure from the next check on.
        m.settle = true;
    }
    if serial && !was_serial {
        FALLBACKS.fetch_add(1, Ordering::Relaxed);
    }
    SERIAL.store(serial, Ordering::Relaxed);
    serial
}

/// The pool threads' and this thread's summed run-queue wait per wall
/// second since their last readings, and new baselines. `None` when the
/// kernel gives no counts or there is no earlier reading.
fn measure(m: &mut Monitor, tids: &Mutex<Vec<i32>>, now: u64) -> Option<f64> {
    let tids: Vec<i32> = tids.lock().map(|t| t.clone()).unwrap_or_default();
    let span = now.saturating_sub(m.last_check);
    let mut frac = None::<f64>;
    let mut waits = Vec::with_capacity(tids.len());
    for tid in tids {
        let Some(w) = read_wait(&format!("/proc/self/task/{tid}/schedstat")) else {
            continue;
        };
        if let Some(&(_, before)) = m.waits.iter().find(|(t, _)| *t == tid) {
            if span > 0 && m.last_check > 0 {
                *frac.get_or_insert(0.0) += w.saturating_sub(before) as f64 / span as f64;
            }
        }
        waits.push((tid, w));
    }
    m.waits = waits;
    m.last_check = now;
    if let Some(w) = read_wait("/proc/thread-self/schedstat") {
        if let Some((at, before)) = OWN.with(|c| c.replace(Some((now, w)))) {
            let own_span = now.saturating_sub(at);
            // An old reading spans idle time the pool's did not: skip it.
            if own_span > 0 && own_span <= 4 * span.max(CHECK) {
                *frac.get_or_insert(0.0) += w.saturating_sub(before) as f64 / own_span as f64;
            }
        }
    }
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
            NEXT_CHECK.store(u64::MAX, Ordering::Relaxed);
        }
        None => {
            m.backoff = Backoff::new();
            SERIAL.store(false, Ordering::Relaxed);
            NEXT_CHECK.store(0, Ordering::Relaxed);
        }
    }
}
