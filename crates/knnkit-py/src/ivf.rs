//! `Ivf`: the inverted-file index as a Python object (the `knnkit.IVFIndex` façade wraps it).
//! Same locking and gate as `Hnsw` ([`crate::locked::Locked`]).

use numpy::{PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use knnkit_core::index::file::read_ivf;
use knnkit_core::ivf::{self, CodeKind, IvfParams};
use knnkit_core::{pool, Error, Metric};

use crate::conversion::{ids_slice, rows, vector};
use crate::error::{detach_restartable, to_py};
use crate::locked::{filter_of, native_index_methods, result_arrays, Locked};

/// Inverted-file index over float32 vectors (internal; use ``knnkit.IVFIndex``).
#[pyclass(module = "knnkit._core", frozen)]
pub struct Ivf {
    inner: Locked<ivf::Ivf>,
}

impl Ivf {
    fn wrap(ix: ivf::Ivf) -> Self {
        Ivf {
            inner: Locked::new(ix, "IVF"),
        }
    }
}

fn code_kind(codes: &str, pq_m: usize, nbits: usize) -> PyResult<CodeKind> {
    Ok(match codes {
        "flat" => CodeKind::Flat,
        "sq8" => CodeKind::Sq8,
        "pq" => CodeKind::Pq { m: pq_m, nbits },
        other => {
            return Err(PyValueError::new_err(format!(
                "codes: expected one of flat, sq8, pq, got {other:?}"
            )))
        }
    })
}

native_index_methods!(Ivf, read_ivf, nprobe, {
    #[new]
    #[pyo3(signature = (dim, metric="euclidean", nlist=1024, codes="flat", pq_m=8, nbits=8, refine=true, seed=0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        dim: usize,
        metric: &str,
        nlist: usize,
        codes: &str,
        pq_m: usize,
        nbits: usize,
        refine: bool,
        seed: u64,
    ) -> PyResult<Self> {
        let metric = Metric::parse(metric, 2.0).map_err(to_py)?;
        let params = IvfParams {
            nlist,
            codes: code_kind(codes, pq_m, nbits)?,
            refine,
            seed,
        };
        Ok(Ivf::wrap(
            ivf::Ivf::new(dim, metric, params).map_err(to_py)?,
        ))
    }

    /// Trains the coarse quantizer (and SQ8/PQ codebooks) on float32 rows; with ``centroids``
    /// (float32, nlist × dim) those are the coarse centroids and only the codes are trained.
    #[pyo3(signature = (vectors, n_jobs=None, centroids=None))]
    fn train(
        &self,
        py: Python<'_>,
        vectors: PyReadonlyArray2<'_, f32>,
        n_jobs: Option<i64>,
        centroids: Option<PyReadonlyArray2<'_, f32>>,
    ) -> PyResult<()> {
        let data = rows(&vectors, "vectors")?;
        let threads = pool::resolve_threads(n_jobs);
        let given = match &centroids {
            Some(c) => {
                let d = self.inner.read()?.dim();
                if c.shape()[1] != d {
                    return Err(to_py(Error::DimensionMismatch {
                        expected: d,
                        got: c.shape()[1],
                    }));
                }
                Some(rows(c, "centroids")?)
            }
            None => None,
        };
        self.inner.write_detached(py, |ix| match given {
            Some(c) => ix.train_with_centroids(data, c, threads),
            None => ix.train(data, threads),
        })
    }

    fn is_trained(&self) -> PyResult<bool> {
        Ok(self.inner.read()?.is_trained())
    }

    /// Adds vectors (float32, C order) with their int64 ids.
    #[pyo3(signature = (vectors, ids, n_jobs=None))]
    fn add(
        &self,
        py: Python<'_>,
        vectors: PyReadonlyArray2<'_, f32>,
        ids: PyReadonlyArray1<'_, i64>,
        n_jobs: Option<i64>,
    ) -> PyResult<()> {
        let (data, ids) = (rows(&vectors, "vectors")?, ids_slice(&ids)?);
        let threads = pool::resolve_threads(n_jobs);
        self.inner
            .write_detached(py, |ix| ix.add(data, ids, threads))
    }

    /// ``(distances, ids, distance_computations)`` of the ``k`` nearest vectors of each query
    /// over ``nprobe`` lists; a filter is an int64 array of allowed ids or a boolean mask
    /// indexed by id.
    #[pyo3(signature = (queries, k, nprobe=8, n_jobs=None, allowed_ids=None, allowed_mask=None))]
    fn search<'py>(
        &self,
        py: Python<'py>,
        queries: PyReadonlyArray2<'py, f32>,
        k: usize,
        nprobe: usize,
        n_jobs: Option<i64>,
        allowed_ids: Option<PyReadonlyArray1<'py, i64>>,
        allowed_mask: Option<PyReadonlyArray1<'py, bool>>,
    ) -> PyResult<(Py<PyAny>, Py<PyAny>, u64)> {
        let nq = queries.shape()[0];
        let q = rows(&queries, "queries")?;
        let filter = filter_of(&allowed_ids, &allowed_mask)?;
        let threads = pool::resolve_threads(n_jobs);
        let res = detach_restartable(py, |check| {
            let ix = self.inner.read_core()?;
            let allowed = filter.map(|f| f.allowed(ix.id_map()));
            ix.search_with(q, k, nprobe, threads, allowed.as_ref(), Some(check))
        })?;
        let (d, i) = result_arrays(py, res.distances, res.ids, nq, k)?;
        Ok((d, i, res.distance_computations))
    }

    /// Deletes ids (unknown ones are skipped); returns how many were present.
    fn remove(&self, py: Python<'_>, ids: PyReadonlyArray1<'_, i64>) -> PyResult<usize> {
        let ids = ids_slice(&ids)?;
        self.inner.write_detached(py, |ix| Ok(ix.remove(ids)))
    }

    /// Number of vectors in each list.
    fn list_sizes<'py>(&self, py: Python<'py>) -> PyResult<Py<PyAny>> {
        let sizes: Vec<u64> = self
            .inner
            .read()?
            .list_sizes()
            .iter()
            .map(|&s| s as u64)
            .collect();
        Ok(vector(py, sizes).into_any().unbind())
    }
});
