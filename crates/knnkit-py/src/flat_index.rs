//! `Flat`: the exact index as a Python object (the `knnkit.FlatIndex` façade wraps it).
//!
//! The core index (float32 or float64) sits behind a read-write lock: searches share it with the
//! GIL released, `add`/`remove` take it exclusively, so a search sees the index before or after
//! a concurrent write, never half of one. A lock poisoned by a panic is reported, not reused.

use std::sync::{RwLockReadGuard, RwLockWriteGuard};

use numpy::{PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyKeyError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use serde_json::{Map, Value};
use std::path::PathBuf;

use knnkit_core::flat::index::FlatIndex;
use knnkit_core::flat::{Radius, SearchParams};
use knnkit_core::index::file::{encode_flat, read_flat};
use knnkit_core::{pool, Float, Metric};

use crate::conversion::{ids_slice, matrix, vector};
use crate::error::{detach_interruptible, to_py};
use crate::io::{encoded_bytes, json_object, save_encoded, IndexFile};
use crate::locked::{filter_of, Locked};

enum Core {
    F32(FlatIndex<f32>),
    F64(FlatIndex<f64>),
}

/// The element types a `Flat` holds, and how to reach the typed index inside `Core`.
trait Elem: Float + bytemuck::Pod + numpy::Element {
    fn of(core: &Core) -> &FlatIndex<Self>;
    fn of_mut(core: &mut Core) -> &mut FlatIndex<Self>;
}

macro_rules! elem {
    ($t:ty, $v:ident) => {
        impl Elem for $t {
            fn of(core: &Core) -> &FlatIndex<Self> {
                match core {
                    Core::$v(ix) => ix,
                    _ => unreachable!("the dtype is fixed at construction"),
                }
            }
            fn of_mut(core: &mut Core) -> &mut FlatIndex<Self> {
                match core {
                    Core::$v(ix) => ix,
                    _ => unreachable!("the dtype is fixed at construction"),
                }
            }
        }
    };
}
elem!(f32, F32);
elem!(f64, F64);

/// Runs `$body` with `$t` bound to the index's element type.
macro_rules! typed {
    ($self:expr, $t:ident => $body:expr) => {
        if $self.f32 {
            type $t = f32;
            $body
        } else {
            type $t = f64;
            $body
        }
    };
}

/// Exact index over float32 or float64 vectors (internal; use ``knnkit.FlatIndex``).
///
/// Locks are taken with the GIL released (inside `detach`), never while holding it: a thread
/// waiting for the lock must not block the thread that holds it from getting the GIL back.
#[pyclass(module = "knnkit._core", frozen)]
pub struct Flat {
    f32: bool,
    inner: Locked<Core>,
}

impl Flat {
    fn encode_core(&self, extra: &Map<String, Value>) -> knnkit_core::Result<Vec<u8>> {
        match &*self.read()? {
            Core::F32(ix) => encode_flat(ix, extra),
            Core::F64(ix) => encode_flat(ix, extra),
        }
    }
    fn read(&self) -> knnkit_core::Result<RwLockReadGuard<'_, Core>> {
        self.inner.read_core()
    }
    fn write(&self) -> knnkit_core::Result<RwLockWriteGuard<'_, Core>> {
        self.inner.write_core()
    }
    /// Runs `f` on the typed index under the read lock, with the GIL released.
    fn with<T: Elem, R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&FlatIndex<T>) -> knnkit_core::Result<R> + Send,
    ) -> PyResult<R> {
        detach_interruptible(py, |_| f(T::of(&*self.read()?)))
    }
}

fn params(threads: usize, check: &(dyn Fn() -> bool + Sync), bf16: bool) -> SearchParams<'_> {
    SearchParams {
        threads,
        interrupt: Some(check),
        bf16,
    }
}

fn wrong_dtype(what: &str, want: &str) -> PyErr {
    PyTypeError::new_err(format!("{what}: expected a C-contiguous {want} array"))
}

fn rows_of<'py, T: numpy::Element>(
    ob: &Bound<'py, PyAny>,
    what: &str,
) -> PyResult<PyReadonlyArray2<'py, T>> {
    let a: PyReadonlyArray2<'py, T> = ob
        .extract()
        .map_err(|_| wrong_dtype(what, std::any::type_name::<T>()))?;
    if !a.is_c_contiguous() {
        return Err(wrong_dtype(what, std::any::type_name::<T>()));
    }
    Ok(a)
}

#[pymethods]
impl Flat {
    #[new]
    #[pyo3(signature = (dim, metric="euclidean", p=2.0, dtype="float32", bf16=false))]
    fn new(dim: usize, metric: &str, p: f64, dtype: &str, bf16: bool) -> PyResult<Self> {
        let metric = Metric::parse(metric, p).map_err(to_py)?;
        let core = match dtype {
            "float32" => Core::F32(FlatIndex::new(dim, metric, bf16).map_err(to_py)?),
            "float64" => Core::F64(FlatIndex::new(dim, metric, bf16).map_err(to_py)?),
            other => {
                return Err(PyTypeError::new_err(format!(
                    "dtype: expected 'float32' or 'float64', got {other:?}"
                )))
            }
        };
        Ok(Flat {
            f32: matches!(core, Core::F32(_)),
            inner: Locked::new(core, "flat"),
        })
    }

    /// Adds rows (C-contiguous, the index's dtype) with their int64 ids (``None``: consecutive
    /// ids after the largest so far). Nothing changes unless everything is valid.
    #[pyo3(signature = (vectors, ids=None))]
    fn add(
        &self,
        py: Python<'_>,
        vectors: &Bound<'_, PyAny>,
        ids: Option<PyReadonlyArray1<'_, i64>>,
    ) -> PyResult<()> {
        let ids = ids.as_ref().map(ids_slice).transpose()?;
        typed!(self, T => {
            let v = rows_of::<T>(vectors, "vectors")?;
            let data = v.as_slice()?;
            detach_interruptible(py, |_| T::of_mut(&mut *self.write()?).add(data, ids))
        })
    }

    /// Deletes ids (unknown ones are skipped); returns how many were present.
    fn remove(&self, py: Python<'_>, ids: PyReadonlyArray1<'_, i64>) -> PyResult<usize> {
        let ids = ids_slice(&ids)?;
        typed!(self, T => detach_interruptible(py, |_| {
            Ok(T::of_mut(&mut *self.write()?).remove(ids))
        }))
    }

    /// The stored vectors of ``ids`` in the order given (KeyError for an id not present).
    fn get(&self, py: Python<'_>, ids: PyReadonlyArray1<'_, i64>) -> PyResult<Py<PyAny>> {
        let ids = ids_slice(&ids)?;
        typed!(self, T => {
            let (out, d) = self.with::<T, _>(py, |ix| {
                let d = ix.dim();
                let mut out: Vec<T> = Vec::with_capacity(ids.len() * d);
                for &id in ids {
                    match ix.get(id) {
                        Some(row) => out.extend_from_slice(row),
                        None => return Ok(Err(id)),
                    }
                }
                ix.check_mapping()?;
                Ok(Ok((out, d)))
            })?
            .map_err(|id| PyKeyError::new_err(format!("ids not in the index: [{id}]")))?;
            Ok(matrix(py, out, ids.len(), d)?.into_any().unbind())
        })
    }

    /// Ids of the stored vectors, in storage order.
    fn ids(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let ids = typed!(self, T => self.with::<T, _>(py, |ix| Ok(ix.ids().to_vec()))?);
        Ok(vector(py, ids).into_any().unbind())
    }

    /// A copy of the stored vectors and their ids, in storage order (one consistent snapshot).
    fn snapshot(&self, py: Python<'_>) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
        typed!(self, T => {
            let (v, ids, d) = self.with::<T, _>(py, |ix| {
                let v = ix.vectors().to_vec();
                ix.check_mapping()?;
                Ok((v, ix.ids().to_vec(), ix.dim()))
            })?;
            let n = ids.len();
            Ok((
                matrix(py, v, n, d)?.into_any().unbind(),
                vector(py, ids).into_any().unbind(),
            ))
        })
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        typed!(self, T => self.with::<T, _>(py, |ix| Ok(ix.len())))
    }

    /// Where default ids continue.
    fn next_id(&self, py: Python<'_>) -> PyResult<i64> {
        typed!(self, T => self.with::<T, _>(py, |ix| Ok(ix.next_id())))
    }

    /// Bytes held in process memory.
    fn memory_usage(&self, py: Python<'_>) -> PyResult<usize> {
        typed!(self, T => self.with::<T, _>(py, |ix| Ok(ix.memory_usage())))
    }

    /// ``(distances, ids)`` of the ``k`` nearest stored vectors of each query; a filter is an
    /// int64 array of allowed ids or a boolean mask indexed by id.
    #[pyo3(signature = (queries, k, n_jobs=None, allowed_ids=None, allowed_mask=None))]
    fn search(
        &self,
        py: Python<'_>,
        queries: &Bound<'_, PyAny>,
        k: usize,
        n_jobs: Option<i64>,
        allowed_ids: Option<PyReadonlyArray1<'_, i64>>,
        allowed_mask: Option<PyReadonlyArray1<'_, bool>>,
    ) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
        let threads = pool::resolve_threads(n_jobs);
        let filter = filter_of(&allowed_ids, &allowed_mask)?;
        typed!(self, T => {
            let q = rows_of::<T>(queries, "queries")?;
            let nq = q.shape()[0];
            let qs = q.as_slice()?;
            let res = detach_interruptible(py, |check| {
                let guard = self.read()?;
                let ix = T::of(&guard);
                let allowed = filter.map(|f| f.allowed(ix.id_map()));
                ix.search(qs, k, allowed.as_ref(), &params(threads, check, ix.bf16()))
            })?;
            Ok((
                matrix(py, res.distances, nq, k)?.into_any().unbind(),
                matrix(py, res.indices, nq, k)?.into_any().unbind(),
            ))
        })
    }

    /// ``(lims, distances, ids)`` of every stored vector within ``radius`` (a number or one
    /// per query) of each query, closest first.
    #[pyo3(signature = (queries, radius, n_jobs=None, allowed_ids=None, allowed_mask=None))]
    fn range_search(
        &self,
        py: Python<'_>,
        queries: &Bound<'_, PyAny>,
        radius: &Bound<'_, PyAny>,
        n_jobs: Option<i64>,
        allowed_ids: Option<PyReadonlyArray1<'_, i64>>,
        allowed_mask: Option<PyReadonlyArray1<'_, bool>>,
    ) -> PyResult<(Py<PyAny>, Py<PyAny>, Py<PyAny>)> {
        let threads = pool::resolve_threads(n_jobs);
        let filter = filter_of(&allowed_ids, &allowed_mask)?;
        let scalar: Option<f64> = radius.extract().ok();
        typed!(self, T => {
            let q = rows_of::<T>(queries, "queries")?;
            let qs = q.as_slice()?;
            let per_query: Option<PyReadonlyArray1<'_, T>> = match scalar {
                Some(_) => None,
                None => Some(radius.extract().map_err(|_| wrong_dtype("radius", "1-D"))?),
            };
            let rs = per_query.as_ref().map(|r| r.as_slice()).transpose()?;
            let res = detach_interruptible(py, |check| {
                let guard = self.read()?;
                let ix = T::of(&guard);
                let allowed = filter.map(|f| f.allowed(ix.id_map()));
                let r = match (scalar, rs) {
                    (Some(r), _) => Radius::All(T::from_f64(r)),
                    (None, Some(rs)) => Radius::PerQuery(rs),
                    (None, None) => unreachable!("one of the two is set above"),
                };
                ix.range_search(qs, r, allowed.as_ref(), &params(threads, check, true))
            })?;
            Ok((
                vector(py, res.lims).into_any().unbind(),
                vector(py, res.distances).into_any().unbind(),
                vector(py, res.indices).into_any().unbind(),
            ))
        })
    }

    /// Writes the index file to ``path`` atomically; ``extra`` (a JSON object's text) joins
    /// its header.
    fn save(&self, py: Python<'_>, path: PathBuf, extra: &str) -> PyResult<()> {
        let extra = json_object(extra, "extra")?;
        save_encoded(py, path, || self.encode_core(&extra))
    }

    /// The whole index file as bytes (for pickling).
    fn encode(&self, py: Python<'_>, extra: &str) -> PyResult<Py<PyBytes>> {
        let extra = json_object(extra, "extra")?;
        encoded_bytes(py, || self.encode_core(&extra))
    }

    /// The index an open ``IndexFile`` holds, validating everything (``CorruptIndexError``
    /// otherwise); a mapped file's vectors stay in its mapping (copied on the first change).
    #[staticmethod]
    fn from_file(py: Python<'_>, file: PyRef<'_, IndexFile>) -> PyResult<Self> {
        let file = &file.inner;
        let core = detach_interruptible(py, |_| {
            let dtype = file.header().get("dtype").and_then(|d| d.as_str());
            Ok(if dtype == Some("float64") {
                Core::F64(read_flat(file)?)
            } else {
                Core::F32(read_flat(file)?)
            })
        })?;
        Ok(Flat {
            f32: matches!(core, Core::F32(_)),
            inner: Locked::new(core, "flat"),
        })
    }
}
