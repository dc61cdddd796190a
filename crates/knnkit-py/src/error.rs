//! The one place core errors become Python exceptions, and the one way to run core work with the
//! GIL released while Ctrl-C stays live.

use std::sync::Mutex;

use knnkit_core::Error;
use pyo3::exceptions::{
    PyFileNotFoundError, PyKeyboardInterrupt, PyOSError, PyPermissionError, PyRuntimeError,
    PyValueError,
};
use pyo3::prelude::*;

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
        Error::Poisoned => PyRuntimeError::new_err(Error::Poisoned.to_string()),
        other => PyValueError::new_err(other.to_string()),
    }
}

/// Runs `f` with the GIL released, handing it an interrupt hook that checks Python signals
/// (Ctrl-C); a pending KeyboardInterrupt is raised once the core has stopped.
pub fn detach_interruptible<R: Send>(
    py: Python<'_>,
    f: impl FnOnce(&(dyn Fn() -> bool + Sync)) -> knnkit_core::Result<R> + Send,
) -> PyResult<R> {
    detach_polling(py, |_| {}, f)
}

/// [`detach_interruptible`], also running `poll` (with the GIL) each time the hook is polled,
/// about every 50 ms: progress reports.
pub fn detach_polling<R: Send>(
    py: Python<'_>,
    poll: impl Fn(Python<'_>) + Sync,
    f: impl FnOnce(&(dyn Fn() -> bool + Sync)) -> knnkit_core::Result<R> + Send,
) -> PyResult<R> {
    let pending: Mutex<Option<PyErr>> = Mutex::new(None);
    let check = || {
        Python::attach(|py| match py.check_signals().map(|()| poll(py)) {
            Ok(()) => false,
            Err(e) => {
                *pending.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                true
            }
        })
    };
    let out = py.detach(|| f(&check));
    out.map_err(|e| {
        pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_else(|| to_py(e))
    })
}
