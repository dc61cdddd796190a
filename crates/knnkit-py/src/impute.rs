//! `nan_euclidean` distances for `knnkit.impute`.

use numpy::{PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::conversion::{matrix, slice};
use crate::error::to_py;
use knnkit_core::metric::nan_euclidean::nan_euclidean;
use knnkit_core::pool::resolve_threads;

/// ``nan_euclidean`` distances (float64, NaN where two rows share no present coordinate)
/// between the rows of ``x`` and ``y`` (C-contiguous float64), ignoring the places where the
/// boolean masks ``missing_x`` / ``missing_y`` are true.
#[pyfunction]
#[pyo3(signature = (x, missing_x, y, missing_y, n_jobs=None))]
pub fn nan_euclidean_distances<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f64>,
    missing_x: PyReadonlyArray2<'py, bool>,
    y: PyReadonlyArray2<'py, f64>,
    missing_y: PyReadonlyArray2<'py, bool>,
    n_jobs: Option<i64>,
) -> PyResult<Py<PyAny>> {
    let (nx, d) = (x.shape()[0], x.shape()[1]);
    let ny = y.shape()[0];
    if y.shape()[1] != d || missing_x.shape() != x.shape() || missing_y.shape() != y.shape() {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "nan_euclidean_distances: expected x and y with the same number of columns and \
             masks of their shapes, got x {:?}, y {:?}, masks {:?} and {:?}",
            x.shape(),
            y.shape(),
            missing_x.shape(),
            missing_y.shape()
        )));
    }
    let (xs, mxs, ys, mys) = (slice(&x), slice(&missing_x), slice(&y), slice(&missing_y));
    let threads = resolve_threads(n_jobs);
    let out = py
        .detach(|| nan_euclidean(xs, mxs, ys, mys, d, threads))
        .map_err(to_py)?;
    Ok(matrix(py, out, nx, ny)?.into_any().unbind())
}
