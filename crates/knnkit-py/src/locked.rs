//! What the index bindings (`Flat`, `Hnsw`, `Ivf`) share: the core index behind a read-write lock,
//! searches sharing it (many Python threads at once, GIL released), writes taking it
//! exclusively, so a search sees the index either before or after a concurrent write, never
//! half of one. A lock poisoned by a panic is reported as an error, never reused.

use std::path::PathBuf;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use numpy::{PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use knnkit_core::flat::Radius;
use knnkit_core::index::{Filter, Index, SearchOptions};
use knnkit_core::{Error, Result};

use crate::conversion::{ids_slice, matrix, rows, vector};
use crate::error::{detach_gated, detach_restartable, to_py};
use crate::io::{encoded_bytes, json_object, save_encoded};

/// A core index behind a read-write lock; `kind` names it in errors.
pub struct Locked<T> {
    inner: RwLock<T>,
    kind: &'static str,
}

impl<T> Locked<T> {
    pub fn new(value: T, kind: &'static str) -> Self {
        Locked {
            inner: RwLock::new(value),
            kind,
        }
    }

    fn unusable(&self) -> Error {
        Error::Internal(format!(
            "this {} index is unusable: an earlier operation on it failed inside the native \
             core (see the InternalError it raised); build or load the index again",
            self.kind
        ))
    }

    /// Shared access (core error when poisoned).
    pub fn read_core(&self) -> Result<RwLockReadGuard<'_, T>> {
        self.inner.read().map_err(|_| self.unusable())
    }

    /// Exclusive access (core error when poisoned).
    pub fn write_core(&self) -> Result<RwLockWriteGuard<'_, T>> {
        self.inner.write().map_err(|_| self.unusable())
    }

    /// Shared access with the GIL held (for quick reads).
    pub fn read(&self) -> PyResult<RwLockReadGuard<'_, T>> {
        self.read_core().map_err(to_py)
    }
}

impl<T: Send + Sync> Locked<T> {
    /// Runs a write `f` through the gate with the GIL released.
    pub fn write_detached<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut T) -> Result<R> + Send,
    ) -> PyResult<R> {
        detach_gated(py, || f(&mut *self.write_core()?))?.map_err(to_py)
    }

    /// The rows `row(index, id)` returns for `ids`, as a `len(ids) × dim` float32 array
    /// (KeyError for an id not in the index).
    pub fn get_rows<'py, V: AsRef<[f32]>>(
        &self,
        py: Python<'py>,
        ids: PyReadonlyArray1<'py, i64>,
        dim: impl Fn(&T) -> usize,
        row: impl Fn(&T, i64) -> Option<V>,
    ) -> PyResult<Py<PyAny>> {
        let ids = ids_slice(&ids)?;
        let ix = self.read()?;
        let d = dim(&ix);
        let mut out = Vec::new();
        out.try_reserve(ids.len().saturating_mul(d)).map_err(|_| {
            to_py(Error::InvalidParameter {
                name: "ids",
                expected: "a result that can be allocated".into(),
                got: ids.len().to_string(),
            })
        })?;
        for &id in ids {
            let r = row(&ix, id)
                .ok_or_else(|| PyKeyError::new_err(format!("id {id} is not in the index")))?;
            out.extend_from_slice(r.as_ref());
        }
        Ok(matrix(py, out, ids.len(), d)?.into_any().unbind())
    }
}

impl<T: Index> Locked<T> {
    /// Writes the index file to `path` atomically; `extra` (a JSON object's text) joins its
    /// header.
    pub fn save(&self, py: Python<'_>, path: PathBuf, extra: &str) -> PyResult<()> {
        let extra = json_object(extra, "extra")?;
        save_encoded(py, path, || self.read_core()?.encode(&extra))
    }

    /// The whole index file as bytes (for pickling).
    pub fn encode(&self, py: Python<'_>, extra: &str) -> PyResult<Py<PyBytes>> {
        let extra = json_object(extra, "extra")?;
        encoded_bytes(py, || self.read_core()?.encode(&extra))
    }

    /// `(lims, distances, ids)` of the vectors within `radius` (one value, or one per query)
    /// of each query, closest first: the core's range search (for the approximate kinds a
    /// k-search whose `k` doubles until its farthest result is outside the radius).
    pub fn range_search(
        &self,
        py: Python<'_>,
        queries: PyReadonlyArray2<'_, f32>,
        radius: PyReadonlyArray1<'_, f32>,
        filter: Option<Filter<'_>>,
        opts: SearchOptions<'_>,
    ) -> PyResult<(Py<PyAny>, Py<PyAny>, Py<PyAny>)> {
        let q = rows(&queries, "queries")?;
        let r = radius.as_slice()?;
        let res = detach_restartable(py, |check| {
            let ix = self.read_core()?;
            let allowed = filter.map(|f| ix.allowed(f));
            let radius = match r {
                [r] => Radius::All(*r),
                _ => Radius::PerQuery(r),
            };
            let opts = SearchOptions {
                interrupt: Some(check),
                ..opts
            };
            ix.range_search(q, radius, allowed.as_ref(), &opts)
        })?;
        Ok((
            vector(py, res.lims).into_any().unbind(),
            vector(py, res.distances).into_any().unbind(),
            vector(py, res.indices).into_any().unbind(),
        ))
    }
}

/// A search filter as every index binding receives it: an int64 array of allowed ids or a
/// boolean mask indexed by id (the ids win when both are given); `None` without either. The
/// core maps it to slots through the index's id map ([`Filter::allowed`]).
pub fn filter_of<'a>(
    ids: &'a Option<PyReadonlyArray1<'_, i64>>,
    mask: &'a Option<PyReadonlyArray1<'_, bool>>,
) -> PyResult<Option<Filter<'a>>> {
    Ok(match (ids, mask) {
        (Some(ids), _) => Some(Filter::Ids(ids_slice(ids)?)),
        (None, Some(mask)) => Some(Filter::Mask(mask.as_slice()?)),
        (None, None) => None,
    })
}

/// A search's result as the bindings return it: `(distances, ids)` arrays of `nq × k`.
pub fn result_arrays(
    py: Python<'_>,
    distances: Vec<f32>,
    ids: Vec<i64>,
    nq: usize,
    k: usize,
) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
    Ok((
        matrix(py, distances, nq, k)?.into_any().unbind(),
        matrix(py, ids, nq, k)?.into_any().unbind(),
    ))
}

/// A stats dict from `(name, value)` pairs.
pub fn stats_dict<'py>(py: Python<'py>, items: &[(&str, u64)]) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (name, value) in items {
        d.set_item(name, value)?;
    }
    Ok(d)
}
