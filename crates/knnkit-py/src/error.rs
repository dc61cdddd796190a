//! The one place core errors become Python exceptions, and the one way to run core work with the
//! GIL released while Ctrl-C stays live.
//!
//! # The gate
//!
//! Every GIL-released core call passes through one process-wide gate ([`detach_polling`] and
//! friends, used by every binding). A call counts itself *in flight* while it runs. Two moments
//! need no call in flight:
//!
//! - **interpreter exit** (`atexit`): a daemon thread still inside a call would try to take the
//!   GIL back during finalisation and the process would abort;
//! - **`os.fork()`** (`os.register_at_fork(before=...)`): a lock held by a thread of the parent
//!   (an index's read-write lock, a pool's mutex) is copied held into the child, where no thread
//!   will ever release it.
//!
//! Both hooks (registered by `knnkit/__init__.py`) *close* the gate and wait, GIL released and
//! bounded by [`GATE_WAIT`] ([`GATE_WAIT_EXIT`] at exit), until no call is in flight; calls that start meanwhile wait at the
//! gate, and no call returns to Python while the gate is closed. Calls that can run again from
//! the start ([`detach_restartable`]: HNSW and IVF searches, HNSW `add`, which leaves the index
//! as it was when stopped) are asked to stop at their next interrupt check (every 16 queries,
//! every insertion batch, about every 50 ms) and run again once the gate reopens, so a parent
//! thread searching across a fork only takes a little longer. Calls that run once
//! ([`detach_interruptible`], [`detach_gated`]) are waited for at a fork and stopped only at
//! exit. After a fork the gate reopens in the parent and in the child; at exit it never
//! reopens, and the threads still inside wait, GIL released, until the process ends.
//!
//! A call stays counted in flight until it holds the GIL again, so a gate that sees none in
//! flight knows no thread is about to take the GIL back during finalisation.
//!
//! The gate is made of atomics only (no mutex that a fork could copy held).
//!
//! # Panics
//!
//! No panic may reach Python: a panic in a core call is caught here and raised as
//! `knnkit._core._InternalError` (a `RuntimeError` named `InternalError`), never as pyo3's `PanicException`. An index
//! whose lock was held by the panicking call reports itself unusable (a poisoned lock is an
//! error, never reused).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use knnkit_core::Error;
use pyo3::exceptions::{
    PyFileNotFoundError, PyKeyboardInterrupt, PyOSError, PyPermissionError, PyRuntimeError,
    PyTimeoutError, PyValueError,
};
use pyo3::prelude::*;

pyo3::create_exception!(
    knnkit._core,
    InternalError,
    PyRuntimeError,
    "A defect inside knnkit's native core (a caught panic): please report it. An index whose \
     operation failed this way refuses further use."
);

/// Maps a core error to the Python exception a user expects.
pub fn to_py(err: Error) -> PyErr {
    match err {
        Error::Interrupted => PyKeyboardInterrupt::new_err("interrupted"),
        Error::Corrupt(msg) => Python::attach(|py| {
            let corrupt = py
                .import("knnkit.errors")
                .and_then(|m| m.getattr("CorruptIndexError"));
            match corrupt {
                Ok(cls) => match cls.call1((format!("corrupt index: {msg}"),)) {
                    Ok(inst) => PyErr::from_value(inst),
                    Err(e) => e,
                },
                Err(e) => e,
            }
        }),
        Error::Io {
            kind,
            path,
            message,
        } => {
            let msg = format!("{path}: {message}");
            match kind {
                std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(msg),
                std::io::ErrorKind::PermissionDenied => PyPermissionError::new_err(msg),
                _ => PyOSError::new_err(msg),
            }
        }
        Error::Internal(msg) => InternalError::new_err(msg),
        // A writer waited out the busy timeout: retrying later can succeed.
        err @ Error::Busy(_) => PyTimeoutError::new_err(err.to_string()),
        // The store's database failed below the store (disk, foreign file).
        err @ Error::Database(_) => PyOSError::new_err(err.to_string()),
        other => PyValueError::new_err(other.to_string()),
    }
}

/// How long a fork waits for the calls in flight (a lock held across the fork would stay held
/// in the child).
pub const GATE_WAIT: Duration = Duration::from_secs(30);
/// How long interpreter exit waits for them: a call that outlives the wait never returns to
/// Python (the gate stays closed) and never polls it again, so this only bounds how long exit
/// lets calls finish cleanly.
pub const GATE_WAIT_EXIT: Duration = Duration::from_secs(5);

/// Whether new calls may start.
static OPEN: AtomicBool = AtomicBool::new(true);
/// The interpreter is exiting: every call stops at its next interrupt check.
static EXITING: AtomicBool = AtomicBool::new(false);
/// Calls running with the GIL released.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
/// Bumped each time the gate closes: a call stopped by the gate knows it (not by Ctrl-C).
static CLOSINGS: AtomicU64 = AtomicU64::new(0);

/// A call counted in flight until dropped.
struct Pass;

impl Drop for Pass {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Waits (GIL released by the caller) until the gate is open, then counts a call in flight.
fn enter() -> Pass {
    loop {
        while !OPEN.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        if OPEN.load(Ordering::SeqCst) {
            return Pass;
        }
        // Closed between the check and the count: step back and wait.
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Closes the gate and waits up to `wait` (GIL released) for the calls in flight to stop;
/// returns how many were still in flight at the end.
fn close(py: Python<'_>, wait: Duration) -> usize {
    OPEN.store(false, Ordering::SeqCst);
    CLOSINGS.fetch_add(1, Ordering::SeqCst);
    py.detach(|| {
        let deadline = Instant::now() + wait;
        loop {
            let n = IN_FLIGHT.load(Ordering::SeqCst);
            if n == 0 || Instant::now() >= deadline {
                return n;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    })
}

/// `atexit` hook: stop the calls in flight and keep new ones from starting. Returns the number
/// still in flight after the bounded wait (0 normally).
#[pyfunction]
pub fn _gate_at_exit(py: Python<'_>) -> usize {
    EXITING.store(true, Ordering::SeqCst);
    close(py, GATE_WAIT_EXIT)
}

/// `os.register_at_fork(before=...)` hook: no call may be in flight across a fork.
#[pyfunction]
pub fn _gate_before_fork(py: Python<'_>) -> usize {
    close(py, GATE_WAIT)
}

/// `os.register_at_fork(after_in_parent=...)` hook: reopen the gate.
#[pyfunction]
pub fn _gate_after_fork_parent() {
    OPEN.store(true, Ordering::SeqCst);
}

/// `os.register_at_fork(after_in_child=...)` hook: the child has no call in flight; open.
#[pyfunction]
pub fn _gate_after_fork_child() {
    IN_FLIGHT.store(0, Ordering::SeqCst);
    EXITING.store(false, Ordering::SeqCst);
    OPEN.store(true, Ordering::SeqCst);
}

/// Calls in flight now (for tests).
#[pyfunction]
pub fn _gate_in_flight() -> usize {
    IN_FLIGHT.load(Ordering::SeqCst)
}

/// Runs `f` with the GIL released through the gate, handing it an interrupt hook that checks
/// Python signals (Ctrl-C); a pending KeyboardInterrupt is raised once the core has stopped.
/// `f` runs once: a closing gate stops it only at interpreter exit (at a fork it is waited
/// for); see [`detach_restartable`] for calls the gate may stop and run again.
pub fn detach_interruptible<R: Send>(
    py: Python<'_>,
    f: impl FnOnce(&(dyn Fn() -> bool + Sync)) -> knnkit_core::Result<R> + Send,
) -> PyResult<R> {
    let mut f = Some(f);
    let mut call = |check: &(dyn Fn() -> bool + Sync)| match f.take() {
        Some(f) => f(check),
        None => Err(Error::Interrupted),
    };
    run_gated(py, &|_| {}, false, &mut call)
}

/// [`detach_interruptible`] for a call that may run more than once: a closing gate (exit or
/// fork) stops it at its next interrupt check, and it runs again from the start once the gate
/// reopens. Only for calls that leave everything as it was when they stop.
pub fn detach_restartable<R: Send>(
    py: Python<'_>,
    f: impl Fn(&(dyn Fn() -> bool + Sync)) -> knnkit_core::Result<R> + Sync,
) -> PyResult<R> {
    run_gated(py, &|_| {}, true, &mut |check| f(check))
}

/// Runs `f` with the GIL released through the gate (see the module comment), without an
/// interrupt hook: for calls that do not poll. Never stopped by the gate, only waited for.
pub fn detach_gated<R: Send>(py: Python<'_>, f: impl FnOnce() -> R + Send) -> PyResult<R> {
    detach_interruptible(py, |_| Ok(f()))
}

/// [`detach_restartable`], also running `poll` (with the GIL) each time Python is polled,
/// about every 50 ms: progress reports.
pub fn detach_polling<R: Send>(
    py: Python<'_>,
    poll: impl Fn(Python<'_>) + Sync,
    f: impl Fn(&(dyn Fn() -> bool + Sync)) -> knnkit_core::Result<R> + Sync,
) -> PyResult<R> {
    run_gated(py, &poll, true, &mut |check| f(check))
}

/// The one gated runner. The hook handed to `call` is cheap to call often: it reads the gate's
/// flags and takes the GIL at most every 50 ms. A call never returns to Python while the gate
/// is closed (at exit it waits, GIL released, until the process ends).
fn run_gated<R: Send>(
    py: Python<'_>,
    poll: &(dyn Fn(Python<'_>) + Sync),
    restartable: bool,
    call: &mut (dyn FnMut(&(dyn Fn() -> bool + Sync)) -> knnkit_core::Result<R> + Send),
) -> PyResult<R> {
    let pending: Mutex<Option<PyErr>> = Mutex::new(None);
    let last_poll: Mutex<Option<Instant>> = Mutex::new(None);
    let check = || {
        if EXITING.load(Ordering::SeqCst) || (restartable && !OPEN.load(Ordering::SeqCst)) {
            return true;
        }
        {
            let Ok(mut last) = last_poll.lock() else {
                return false;
            };
            if last.is_some_and(|t| t.elapsed() < Duration::from_millis(50)) {
                return false;
            }
            *last = Some(Instant::now());
        }
        Python::attach(|py| match py.check_signals().map(|()| poll(py)) {
            Ok(()) => false,
            Err(e) => {
                if let Ok(mut p) = pending.lock() {
                    *p = Some(e);
                }
                true
            }
        })
    };
    // The pass is given back only once this thread holds the GIL again: a closing gate that
    // sees no call in flight knows none is about to take the GIL back.
    let (pass, out) = py.detach(|| loop {
        let mut pass = enter();
        let closings = CLOSINGS.load(Ordering::SeqCst);
        let r = catch_unwind(AssertUnwindSafe(|| call(&check)));
        let gate_stopped = matches!(r, Ok(Err(Error::Interrupted)))
            && CLOSINGS.load(Ordering::SeqCst) != closings
            && pending.lock().map(|p| p.is_none()).unwrap_or(false);
        if restartable && gate_stopped {
            drop(pass);
            continue; // `enter` waits for the gate to reopen
        }
        if !OPEN.load(Ordering::SeqCst) {
            // Not in flight while waiting (at exit: until the process ends).
            drop(pass);
            pass = enter();
        }
        return (pass, r);
    });
    drop(pass);
    match out {
        Ok(r) => r.map_err(|e| {
            pending
                .lock()
                .ok()
                .and_then(|mut p| p.take())
                .unwrap_or_else(|| to_py(e))
        }),
        Err(payload) => Err(InternalError::new_err(panic_message(payload))),
    }
}

/// The text of a caught panic.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string());
    format!("internal error in the native core: {what}")
}
