//! The one error type of the core. Every variant says what was expected and what was received.

/// Errors returned by `knnkit-core`. The Python bindings map each variant to a Python exception
/// in one place (`knnkit-py/src/error.rs`).
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum Error {
    /// Two arrays disagree on the number of features.
    #[error("dimension mismatch: expected {expected} features, got {got}")]
    DimensionMismatch { expected: usize, got: usize },

    /// A parameter is out of its domain.
    #[error("invalid {name}: expected {expected}, got {got}")]
    InvalidParameter {
        name: &'static str,
        expected: String,
        got: String,
    },

    /// The metric name is not one the core knows.
    #[error("unknown metric {0:?}: expected one of {names}", names = crate::metric::Metric::NAMES.join(", "))]
    UnknownMetric(String),

    /// An array's length does not match the shape it was declared with.
    #[error("invalid shape for {name}: expected {expected} values, got {got}")]
    Shape {
        name: &'static str,
        expected: usize,
        got: usize,
    },

    /// Saved index data is inconsistent (damaged or crafted file).
    #[error("corrupt index: {0}")]
    Corrupt(String),

    /// A file could not be opened, read or written.
    #[error("{path}: {message}")]
    Io {
        path: String,
        kind: std::io::ErrorKind,
        message: String,
    },

    /// The caller asked the computation to stop (Ctrl-C in Python).
    #[error("interrupted")]
    Interrupted,

    /// The store's database stayed locked by another writer past the busy timeout.
    #[error("the store is locked: {0}")]
    Busy(String),

    /// The store's database failed (SQLite's own message): an unreadable or full disk, a file
    /// that is not a knnkit store.
    #[error("store database error: {0}")]
    Database(String),

    /// An object cannot be used any more: an earlier operation on it failed midway (a panic
    /// while it was locked). Not a user error; reported instead of reusing half-changed state.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result alias used across the crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: &std::path::Path, err: &std::io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            kind: err.kind(),
            message: err.to_string(),
        }
    }

    pub(crate) fn param(
        name: &'static str,
        expected: impl Into<String>,
        got: impl ToString,
    ) -> Self {
        Error::InvalidParameter {
            name,
            expected: expected.into(),
            got: got.to_string(),
        }
    }
}
