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

/// The one `#[pymethods]` block of an approximate index binding (`$class` holding
/// `inner: Locked<core type>`): the kind's own methods (`$own`: construction, add, search,
/// remove and what only that kind has) plus the methods every kind answers the same way through
/// the core's [`Index`] trait — `get`, `ids`, `__len__`, `memory_usage`, `range_search` (with
/// the kind's search-width keyword `$width`), `save`, `encode` and `from_file` (with the kind's
/// file reader `$read`). One macro instead of the same methods written in each binding.
macro_rules! native_index_methods {
    ($class:ident, $read:path, $width:ident, { $($own:tt)* }) => {
        #[pymethods]
        impl $class {
            $($own)*

            /// The stored vectors of ``ids`` (KeyError for an id not in the index; decoded
            /// codes where the vectors are not kept).
            fn get<'py>(
                &self,
                py: Python<'py>,
                ids: numpy::PyReadonlyArray1<'py, i64>,
            ) -> PyResult<Py<PyAny>> {
                use knnkit_core::index::Index;
                self.inner
                    .get_rows(py, ids, |ix| Index::dim(ix), |ix, id| Index::get(ix, id))
            }

            /// Ids of the live vectors.
            fn ids<'py>(&self, py: Python<'py>) -> PyResult<Py<PyAny>> {
                use knnkit_core::index::Index;
                let ids = Index::ids(&*self.inner.read()?);
                Ok(crate::conversion::vector(py, ids).into_any().unbind())
            }

            fn __len__(&self) -> PyResult<usize> {
                Ok(knnkit_core::index::Index::len(&*self.inner.read()?))
            }

            /// Bytes held by the index.
            fn memory_usage(&self) -> PyResult<usize> {
                Ok(knnkit_core::index::Index::memory_usage(&*self.inner.read()?))
            }

            /// ``(lims, distances, ids)`` of the vectors within ``radius`` (one value or one
            /// per query) of each query; a filter is an int64 array of allowed ids or a boolean
            /// mask indexed by id.
            #[pyo3(signature = (queries, radius, $width, n_jobs=None, allowed_ids=None, allowed_mask=None))]
            #[allow(clippy::too_many_arguments)]
            fn range_search(
                &self,
                py: Python<'_>,
                queries: numpy::PyReadonlyArray2<'_, f32>,
                radius: numpy::PyReadonlyArray1<'_, f32>,
                $width: usize,
                n_jobs: Option<i64>,
                allowed_ids: Option<numpy::PyReadonlyArray1<'_, i64>>,
                allowed_mask: Option<numpy::PyReadonlyArray1<'_, bool>>,
            ) -> PyResult<(Py<PyAny>, Py<PyAny>, Py<PyAny>)> {
                let opts = knnkit_core::index::SearchOptions {
                    threads: knnkit_core::pool::resolve_threads(n_jobs),
                    $width: Some($width),
                    ..Default::default()
                };
                let filter = crate::locked::filter_of(&allowed_ids, &allowed_mask)?;
                self.inner.range_search(py, queries, radius, filter, opts)
            }

            /// Writes the index file to ``path`` atomically; ``extra`` (a JSON object's text)
            /// joins its header.
            fn save(&self, py: Python<'_>, path: std::path::PathBuf, extra: &str) -> PyResult<()> {
                self.inner.save(py, path, extra)
            }

            /// The whole index file as bytes (for pickling).
            fn encode(&self, py: Python<'_>, extra: &str) -> PyResult<Py<pyo3::types::PyBytes>> {
                self.inner.encode(py, extra)
            }

            /// The index an open ``IndexFile`` holds, validating everything
            /// (``CorruptIndexError`` otherwise); mappable sections stay in a mapped file.
            #[staticmethod]
            fn from_file(py: Python<'_>, file: PyRef<'_, crate::io::IndexFile>) -> PyResult<Self> {
                let file = &file.inner;
                let ix = crate::error::detach_gated(py, || $read(file))?
                    .map_err(crate::error::to_py)?;
                Ok(Self::wrap(ix))
            }
        }
    };
}
pub(crate) use native_index_methods;
