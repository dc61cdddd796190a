//! `Ivf`: the inverted-file index as a Python object (the `knnkit.IVFIndex` façade wraps it).
//! Same locking and gate as `Hnsw` ([`crate::locked::Locked`]).

use numpy::{PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use std::path::PathBuf;

use knnkit_core::index::file::read_ivf;
use knnkit_core::ivf::{self, CodeKind, IvfParams};
use knnkit_core::{pool, Error, Metric};

use crate::conversion::{ids_slice, rows, vector};
use crate::error::{detach_gated, detach_restartable, to_py};
use crate::io::IndexFile;
use crate::locked::{filter_of, result_arrays, Locked};

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

#[pymethods]
impl Ivf {
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

    /// The stored vectors of ``ids`` (decoded codes when the vectors are not kept).
    fn get<'py>(&self, py: Python<'py>, ids: PyReadonlyArray1<'py, i64>) -> PyResult<Py<PyAny>> {
        self.inner
            .get_rows(py, ids, |ix| ix.dim(), |ix, id| ix.get(id))
    }

    /// Ids of the stored vectors.
    fn ids<'py>(&self, py: Python<'py>) -> PyResult<Py<PyAny>> {
        Ok(vector(py, self.inner.read()?.ids().to_vec())
            .into_any()
            .unbind())
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

    fn __len__(&self) -> PyResult<usize> {
        Ok(self.inner.read()?.len())
    }

    /// Bytes held by the index.
    fn memory_usage(&self) -> PyResult<usize> {
        Ok(self.inner.read()?.memory_usage())
    }

    /// Everything the index holds, as a dict of scalars and numpy arrays (for saving).
    fn to_parts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let p = self.inner.read()?.to_parts();
        let out = PyDict::new(py);
        out.set_item("dim", p.d)?;
        out.set_item("metric", p.metric)?;
        out.set_item("nlist", p.nlist)?;
        out.set_item("codes", p.codes)?;
        out.set_item("pq_m", p.pq_m)?;
        out.set_item("nbits", p.nbits)?;
        out.set_item("refine", p.refine)?;
        out.set_item("seed", p.seed)?;
        out.set_item("centroids", vector(py, p.centroids))?;
        out.set_item("list_offsets", vector(py, p.list_offsets))?;
        out.set_item("list_slots", vector(py, p.list_slots))?;
        out.set_item("list_vecs", vector(py, p.list_vecs))?;
        out.set_item("list_codes", vector(py, p.list_codes))?;
        out.set_item("ids", vector(py, p.ids))?;
        out.set_item("vectors", vector(py, p.vectors))?;
        out.set_item("sq_lo", vector(py, p.sq_lo))?;
        out.set_item("sq_step", vector(py, p.sq_step))?;
        out.set_item("pq_centroids", vector(py, p.pq_centroids))?;
        Ok(out)
    }

    /// ``(lims, distances, ids)`` of the vectors within ``radius`` (one value or one per
    /// query) of each query; a filter is an int64 array of allowed ids or a boolean mask
    /// indexed by id.
    #[pyo3(signature = (queries, radius, nprobe, n_jobs=None, allowed_ids=None, allowed_mask=None))]
    fn range_search(
        &self,
        py: Python<'_>,
        queries: PyReadonlyArray2<'_, f32>,
        radius: PyReadonlyArray1<'_, f32>,
        nprobe: usize,
        n_jobs: Option<i64>,
        allowed_ids: Option<PyReadonlyArray1<'_, i64>>,
        allowed_mask: Option<PyReadonlyArray1<'_, bool>>,
    ) -> PyResult<(Py<PyAny>, Py<PyAny>, Py<PyAny>)> {
        let opts = knnkit_core::index::SearchOptions {
            threads: pool::resolve_threads(n_jobs),
            nprobe: Some(nprobe),
            ..Default::default()
        };
        let filter = filter_of(&allowed_ids, &allowed_mask)?;
        self.inner.range_search(py, queries, radius, filter, opts)
    }

    /// Writes the index file to ``path`` atomically; ``extra`` (a JSON object's text) joins
    /// its header.
    fn save(&self, py: Python<'_>, path: PathBuf, extra: &str) -> PyResult<()> {
        self.inner.save(py, path, extra)
    }

    /// The whole index file as bytes (for pickling).
    fn encode(&self, py: Python<'_>, extra: &str) -> PyResult<Py<PyBytes>> {
        self.inner.encode(py, extra)
    }

    /// The index an open ``IndexFile`` holds, validating everything (``CorruptIndexError``
    /// otherwise).
    #[staticmethod]
    fn from_file(py: Python<'_>, file: PyRef<'_, IndexFile>) -> PyResult<Self> {
        let file = &file.inner;
        let ix = detach_gated(py, || read_ivf(file))?.map_err(to_py)?;
        Ok(Ivf::wrap(ix))
    }
}
