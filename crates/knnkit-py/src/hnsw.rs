//! `Hnsw`: the graph index as a Python object (the `knnkit.HNSWIndex` façade wraps it).
//!
//! The core index sits behind the bindings' shared lock ([`crate::locked::Locked`]): searches
//! share it, `add`/`remove` take it exclusively; every GIL-released call goes through the gate
//! of [`crate::error`].

use std::sync::atomic::Ordering;

use numpy::{PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use knnkit_core::hnsw::{self, Codes, HnswParams, SearchOptions};
use knnkit_core::index::file::read_hnsw;
use knnkit_core::{pool, Metric};

use crate::conversion::{ids_slice, rows};
use crate::error::{detach_polling, detach_restartable, to_py};
use crate::locked::{filter_of, native_index_methods, result_arrays, stats_dict, Locked};

/// HNSW graph over float32 vectors (internal; use ``knnkit.HNSWIndex``).
#[pyclass(module = "knnkit._core", frozen)]
pub struct Hnsw {
    inner: Locked<hnsw::Hnsw>,
}

impl Hnsw {
    fn wrap(h: hnsw::Hnsw) -> Self {
        Hnsw {
            inner: Locked::new(h, "HNSW"),
        }
    }
}

native_index_methods!(Hnsw, read_hnsw, ef_search, {
    #[new]
    #[pyo3(signature = (dim, metric="euclidean", m=16, ef_construction=200, seed=0, codes="flat"))]
    fn new(
        dim: usize,
        metric: &str,
        m: usize,
        ef_construction: usize,
        seed: u64,
        codes: &str,
    ) -> PyResult<Self> {
        let metric = Metric::parse(metric, 2.0).map_err(to_py)?;
        let codes = match Codes::from_name(codes) {
            Some(c) => c,
            None => {
                return Err(PyValueError::new_err(format!(
                    "codes: expected 'flat', 'sq8' or 'sq4', got {codes:?}"
                )))
            }
        };
        let params = HnswParams {
            m,
            ef_construction,
            seed,
            codes,
        };
        Ok(Hnsw::wrap(
            hnsw::Hnsw::new(dim, metric, params).map_err(to_py)?,
        ))
    }

    /// Adds vectors (float32, C order) with their int64 ids; ``progress(done, total)`` is
    /// called about every 50 ms while the graph is linked.
    #[pyo3(signature = (vectors, ids, n_jobs=None, progress=None))]
    fn add(
        &self,
        py: Python<'_>,
        vectors: PyReadonlyArray2<'_, f32>,
        ids: PyReadonlyArray1<'_, i64>,
        n_jobs: Option<i64>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let (data, ids) = (rows(&vectors, "vectors")?, ids_slice(&ids)?);
        let threads = pool::resolve_threads(n_jobs);
        let counter = self.inner.read()?.progress_counter();
        let total = ids.len();
        let poll = |py: Python<'_>| {
            if let Some(cb) = &progress {
                // A failing progress callback must not abort the build.
                let _ = cb.call1(py, (counter.load(Ordering::Relaxed), total));
            }
        };
        detach_polling(py, poll, |check| {
            self.inner
                .write_core()?
                .add(data, ids, threads, Some(check))
        })
    }

    /// ``(distances, ids, stats)`` of the ``k`` nearest live vectors of each query; a filter is
    /// an int64 array of allowed ids or a boolean mask indexed by id.
    #[pyo3(signature = (queries, k, ef_search=64, n_jobs=None, allowed_ids=None, allowed_mask=None))]
    fn search<'py>(
        &self,
        py: Python<'py>,
        queries: PyReadonlyArray2<'py, f32>,
        k: usize,
        ef_search: usize,
        n_jobs: Option<i64>,
        allowed_ids: Option<PyReadonlyArray1<'py, i64>>,
        allowed_mask: Option<PyReadonlyArray1<'py, bool>>,
    ) -> PyResult<(Py<PyAny>, Py<PyAny>, Py<PyAny>)> {
        let nq = queries.shape()[0];
        let q = rows(&queries, "queries")?;
        let filter = filter_of(&allowed_ids, &allowed_mask)?;
        let threads = pool::resolve_threads(n_jobs);
        let res = detach_restartable(py, |check| {
            let h = self.inner.read_core()?;
            let allowed = filter.map(|f| f.allowed(h.id_map()));
            let opts = SearchOptions {
                ef_search,
                threads,
                interrupt: Some(check),
            };
            h.search(q, k, &opts, allowed.as_ref())
        })?;
        let stats = stats_dict(
            py,
            &[
                ("distance_computations", res.stats.distance_computations),
                ("visited_nodes", res.stats.visited_nodes),
                ("exact_fallbacks", res.stats.exact_fallbacks),
            ],
        )?;
        let (d, i) = result_arrays(py, res.distances, res.ids, nq, k)?;
        Ok((d, i, stats.into_any().unbind()))
    }

    /// Deletes ids (unknown ones are skipped); returns how many were present.
    #[pyo3(signature = (ids, n_jobs=None))]
    fn remove(
        &self,
        py: Python<'_>,
        ids: PyReadonlyArray1<'_, i64>,
        n_jobs: Option<i64>,
    ) -> PyResult<usize> {
        let ids = ids_slice(&ids)?;
        let threads = pool::resolve_threads(n_jobs);
        self.inner
            .write_detached(py, |h| Ok(h.remove(ids, threads)))
    }

    /// Repairs the graph around deleted nodes and gives their memory back.
    #[pyo3(signature = (n_jobs=None))]
    fn consolidate(&self, py: Python<'_>, n_jobs: Option<i64>) -> PyResult<()> {
        let threads = pool::resolve_threads(n_jobs);
        self.inner.write_detached(py, |h| {
            h.consolidate(threads);
            Ok(())
        })
    }

    /// Deleted slots waiting for consolidation.
    fn n_deleted(&self) -> PyResult<usize> {
        Ok(self.inner.read()?.n_deleted())
    }
});
