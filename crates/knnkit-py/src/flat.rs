//! Exact search bindings: `knn_search`, `radius_search`, `squared_norms`.

use numpy::{PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use knnkit_core::flat::{self, Base, Radius, SearchParams};
use knnkit_core::{pool, Float, Metric};

use crate::conversion::{matrix, optional_vector, slice, vector, Matrix};
use crate::error::{detach_interruptible, to_py};

/// Runs `f` with the GIL released and Ctrl-C polled (see [`crate::error::detach_interruptible`]).
fn detached<R: Send>(
    py: Python<'_>,
    n_jobs: Option<i64>,
    bf16: bool,
    f: impl FnOnce(&SearchParams) -> knnkit_core::Result<R> + Send,
) -> PyResult<R> {
    detach_interruptible(py, |check| {
        f(&SearchParams {
            threads: pool::resolve_threads(n_jobs),
            interrupt: Some(check),
            bf16,
        })
    })
}

fn parse_metric(metric: &str, p: f64) -> PyResult<Metric> {
    Metric::parse(metric, p).map_err(to_py)
}

/// Exact k-nearest neighbours of every query row among the base rows.
///
/// Returns ``(distances, indices)``, both ``(n_queries, k)``; distances have the base's dtype.
///
/// ``base_bf16`` (float32 bases only) is the base's ``to_bf16`` copy: few-query searches then read
/// half the bytes. ``bf16=False`` keeps float32 batches off the bf16 first pass. Results are the
/// same either way (candidates are re-scored in float32).
#[pyfunction]
#[pyo3(signature = (base, queries, k, metric="euclidean", p=2.0, base_norms=None, n_jobs=None, base_bf16=None, bf16=true))]
pub fn knn_search<'py>(
    py: Python<'py>,
    base: &Bound<'py, PyAny>,
    queries: &Bound<'py, PyAny>,
    k: i128,
    metric: &str,
    p: f64,
    base_norms: Option<&Bound<'py, PyAny>>,
    n_jobs: Option<i64>,
    base_bf16: Option<PyReadonlyArrayDyn<'py, u16>>,
    bf16: bool,
) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
    let k = usize::try_from(k)
        .ok()
        .filter(|&k| k >= 1)
        .ok_or_else(|| PyValueError::new_err(format!("invalid k: expected k >= 1, got {k}")))?;
    let metric = parse_metric(metric, p)?;
    let b = Matrix::extract(base, "base", None)?;
    let q = Matrix::extract(queries, "queries", Some(&b))?;
    check_dims(&b, &q)?;
    let nq = q.shape().0;
    fn go<'py, T: Float + numpy::Element>(
        py: Python<'py>,
        b: &numpy::PyReadonlyArray2<'py, T>,
        q: &numpy::PyReadonlyArray2<'py, T>,
        norms: Option<&Bound<'py, PyAny>>,
        k: usize,
        metric: Metric,
        n_jobs: Option<i64>,
        nq: usize,
        copy: Option<&[u16]>,
        bf16: bool,
    ) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
        let norms = optional_vector::<T>(norms, "base_norms")?;
        let (bs, qs, d) = (slice(b), slice(q), b.shape()[1]);
        let ns = norms.as_ref().map(|n| n.as_slice()).transpose()?;
        let res = detached(py, n_jobs, bf16, |params| {
            let mut base = Base::new(bs, d);
            if let Some(ns) = ns {
                base = base.with_norms(ns);
            }
            if let Some(copy) = copy {
                base = base.with_bf16(copy);
            }
            flat::knn(&base, qs, k, metric, params)
        })?;
        Ok((
            matrix(py, res.distances, nq, k)?.into_any().unbind(),
            matrix(py, res.indices, nq, k)?.into_any().unbind(),
        ))
    }
    let copy = base_bf16
        .as_ref()
        .map(|c| c.as_slice())
        .transpose()
        .map_err(|_| PyValueError::new_err("base_bf16: expected a C-contiguous uint16 array"))?;
    match (&b, &q) {
        (Matrix::F32(b), Matrix::F32(q)) => {
            go(py, b, q, base_norms, k, metric, n_jobs, nq, copy, bf16)
        }
        (Matrix::F64(b), Matrix::F64(q)) => {
            go(py, b, q, base_norms, k, metric, n_jobs, nq, None, bf16)
        }
        _ => unreachable!("queries are converted to the base dtype"),
    }
}

/// Every base row within ``radius`` of each query, as CSR ``(lims, distances, indices)``.
///
/// ``radius`` is a number or one number per query. For ``inner_product`` the result holds the rows
/// whose similarity is at least ``radius``.
#[pyfunction]
#[pyo3(signature = (base, queries, radius, metric="euclidean", p=2.0, base_norms=None, sort=true, n_jobs=None))]
pub fn radius_search<'py>(
    py: Python<'py>,
    base: &Bound<'py, PyAny>,
    queries: &Bound<'py, PyAny>,
    radius: &Bound<'py, PyAny>,
    metric: &str,
    p: f64,
    base_norms: Option<&Bound<'py, PyAny>>,
    sort: bool,
    n_jobs: Option<i64>,
) -> PyResult<(Py<PyAny>, Py<PyAny>, Py<PyAny>)> {
    let metric = parse_metric(metric, p)?;
    let b = Matrix::extract(base, "base", None)?;
    let q = Matrix::extract(queries, "queries", Some(&b))?;
    check_dims(&b, &q)?;
    fn go<'py, T: Float + numpy::Element>(
        py: Python<'py>,
        b: &numpy::PyReadonlyArray2<'py, T>,
        q: &numpy::PyReadonlyArray2<'py, T>,
        radius: &Bound<'py, PyAny>,
        norms: Option<&Bound<'py, PyAny>>,
        metric: Metric,
        sort: bool,
        n_jobs: Option<i64>,
    ) -> PyResult<(Py<PyAny>, Py<PyAny>, Py<PyAny>)> {
        let norms = optional_vector::<T>(norms, "base_norms")?;
        let scalar: Option<f64> = radius.extract().ok();
        let per_query = match scalar {
            Some(_) => None,
            None => optional_vector::<T>(Some(radius), "radius")?,
        };
        let (bs, qs, d) = (slice(b), slice(q), b.shape()[1]);
        let ns = norms.as_ref().map(|n| n.as_slice()).transpose()?;
        let rs = per_query.as_ref().map(|r| r.as_slice()).transpose()?;
        let res = detached(py, n_jobs, true, |params| {
            let mut base = Base::new(bs, d);
            if let Some(ns) = ns {
                base = base.with_norms(ns);
            }
            let radius = match (scalar, rs) {
                (Some(r), _) => Radius::All(T::from_f64(r)),
                (None, Some(rs)) => Radius::PerQuery(rs),
                (None, None) => unreachable!(),
            };
            flat::range_search(&base, qs, radius, metric, sort, params)
        })?;
        Ok((
            vector(py, res.lims).into_any().unbind(),
            vector(py, res.distances).into_any().unbind(),
            vector(py, res.indices).into_any().unbind(),
        ))
    }
    match (&b, &q) {
        (Matrix::F32(b), Matrix::F32(q)) => go(py, b, q, radius, base_norms, metric, sort, n_jobs),
        (Matrix::F64(b), Matrix::F64(q)) => go(py, b, q, radius, base_norms, metric, sort, n_jobs),
        _ => unreachable!("queries are converted to the base dtype"),
    }
}

/// bf16 copy (round to nearest even, as uint16 bits) of a float32 matrix, for ``base_bf16``.
#[pyfunction]
pub fn to_bf16<'py>(py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Py<PyAny>> {
    let m = Matrix::extract(data, "data", None)?;
    let (n, d) = m.shape();
    let Matrix::F32(a) = &m else {
        return Err(pyo3::exceptions::PyTypeError::new_err(
            "data: expected a float32 array for a bf16 copy, got float64",
        ));
    };
    let s = slice(a);
    Ok(matrix(py, py.detach(|| flat::tile::to_bf16(s)), n, d)?
        .into_any()
        .unbind())
}

/// Squared Euclidean norms of the rows (cache them as ``base_norms`` for repeated searches).
#[pyfunction]
pub fn squared_norms<'py>(py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Py<PyAny>> {
    fn go<T: Float + numpy::Element>(
        py: Python<'_>,
        a: &numpy::PyReadonlyArray2<'_, T>,
        d: usize,
    ) -> Py<PyAny> {
        let s = slice(a);
        let norms = py.detach(|| knnkit_core::metric::squared_norms(s, d.max(1)));
        vector(py, norms).into_any().unbind()
    }
    let m = Matrix::extract(data, "data", None)?;
    let d = m.shape().1;
    Ok(match &m {
        Matrix::F32(a) => go(py, a, d),
        Matrix::F64(a) => go(py, a, d),
    })
}

fn check_dims(b: &Matrix, q: &Matrix) -> PyResult<()> {
    let (bd, qd) = (b.shape().1, q.shape().1);
    if bd != qd {
        return Err(to_py(knnkit_core::Error::DimensionMismatch {
            expected: bd,
            got: qd,
        }));
    }
    Ok(())
}
