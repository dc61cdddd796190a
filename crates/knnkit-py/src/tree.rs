//! KD-tree and ball-tree bindings: `tree_build` returns the tree's flat arrays (Python owns them,
//! so the tree pickles as plain numpy arrays); every query function takes them back as a `state`
//! tuple, borrows them, validates them in the core and runs with the GIL released.
//!
//! `state` = `(kind, metric, p, leaf_size, data, idx_array, node_info, node_radius, node_bounds,
//! weights)`: `data` is the rows in tree order (n × d), `node_info` the (n_nodes × 3) int64
//! `idx_start, idx_end, is_leaf`, `node_radius` float64, `node_bounds` `(rows · n_nodes) × d` in
//! the data's dtype, `weights` the sample weights in tree order or None.

use std::borrow::Cow;

use numpy::{
    IntoPyArray, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use knnkit_core::flat::{Radius, SearchParams};
use knnkit_core::tree::kernels::LANES;
use knnkit_core::tree::{
    KernelKind, Kind, KnnOptions, Node, RadiusOptions, Stats, Tree, TreeMetric, TreeView,
};
use knnkit_core::{pool, Float};

use crate::conversion::{matrix, optional_vector, slice, vector, Matrix};
use crate::error::{detach_interruptible, to_py};

type StatsTuple = (u64, u64, u64, u64);
/// `(lims, indices, distances, stats)`.
type RadiusOut = (Py<PyAny>, Py<PyAny>, Py<PyAny>, StatsTuple);

fn stats_tuple(s: Stats) -> StatsTuple {
    (s.n_calls, s.n_trims, s.n_leaves, s.n_splits)
}

/// Runs `f` with the GIL released and Ctrl-C checked between chunks of query rows (see
/// [`crate::error::detach_interruptible`]; the same contract as the exact-search bindings).
fn detached<R: Send>(
    py: Python<'_>,
    n_jobs: Option<i64>,
    f: impl FnOnce(&SearchParams) -> knnkit_core::Result<R> + Send,
) -> PyResult<R> {
    detach_interruptible(py, |check| {
        f(&SearchParams {
            threads: pool::resolve_threads(n_jobs),
            interrupt: Some(check),
            bf16: false,
        })
    })
}

fn tree_metric(metric: &str, p: f64) -> PyResult<TreeMetric> {
    TreeMetric::parse(metric, p).map_err(to_py)
}

/// The borrowed arrays of a `state` tuple.
struct State<'py> {
    kind: Kind,
    metric: TreeMetric,
    leaf_size: usize,
    data: Matrix<'py>,
    idx: PyReadonlyArray1<'py, i64>,
    info: PyReadonlyArray2<'py, i64>,
    radius: PyReadonlyArray1<'py, f64>,
    bounds: Matrix<'py>,
    weights: Option<Bound<'py, PyAny>>,
}

impl<'py> State<'py> {
    fn extract(ob: &Bound<'py, PyAny>) -> PyResult<Self> {
        let t = ob.cast::<PyTuple>().map_err(|_| {
            PyValueError::new_err("state: expected the tuple returned by a tree's _state()")
        })?;
        if t.len() != 10 {
            return Err(PyValueError::new_err(format!(
                "state: expected 10 items, got {}",
                t.len()
            )));
        }
        let kind = Kind::parse(&t.get_item(0)?.extract::<String>()?).map_err(to_py)?;
        let metric = tree_metric(
            &t.get_item(1)?.extract::<String>()?,
            t.get_item(2)?.extract()?,
        )?;
        let leaf_size: usize = t.get_item(3)?.extract()?;
        let data = Matrix::extract(&t.get_item(4)?, "data", None)?;
        let array = |i: usize, name: &str| -> PyResult<Bound<'py, PyAny>> {
            let item = t.get_item(i)?;
            if item.cast::<numpy::PyUntypedArray>().is_err() {
                return Err(PyValueError::new_err(format!(
                    "{name}: expected a numpy array"
                )));
            }
            Ok(item)
        };
        let idx = array(5, "idx_array")?
            .extract()
            .map_err(|_| PyValueError::new_err("idx_array: expected a 1-D int64 array"))?;
        let info = array(6, "node_info")?
            .extract()
            .map_err(|_| PyValueError::new_err("node_info: expected a 2-D int64 array"))?;
        let radius = array(7, "node_radius")?
            .extract()
            .map_err(|_| PyValueError::new_err("node_radius: expected a 1-D float64 array"))?;
        let bounds = Matrix::extract(&t.get_item(8)?, "node_bounds", Some(&data))?;
        let weights = Some(t.get_item(9)?).filter(|w| !w.is_none());
        Ok(State {
            kind,
            metric,
            leaf_size,
            data,
            idx,
            info,
            radius,
            bounds,
            weights,
        })
    }

    fn nodes(&self) -> PyResult<Vec<Node>> {
        let shape = self.info.shape();
        let info = self
            .info
            .as_slice()
            .map_err(|_| PyValueError::new_err("node_info: expected a C-contiguous array"))?;
        let radius = self
            .radius
            .as_slice()
            .map_err(|_| PyValueError::new_err("node_radius: expected a C-contiguous array"))?;
        if shape[1] != 3 || radius.len() != shape[0] {
            return Err(PyValueError::new_err(format!(
                "node_info: expected (n_nodes, 3) with n_nodes radii, got {shape:?} and {}",
                radius.len()
            )));
        }
        info.chunks_exact(3)
            .zip(radius)
            .map(|(r, &radius)| {
                let ok = r[0] >= 0 && r[1] >= 0;
                ok.then_some(Node {
                    idx_start: r[0] as usize,
                    idx_end: r[1] as usize,
                    is_leaf: r[2] != 0,
                    radius,
                })
                .ok_or_else(|| PyValueError::new_err("node_info: negative node range"))
            })
            .collect()
    }

    fn idx(&self) -> PyResult<&[i64]> {
        self.idx
            .as_slice()
            .map_err(|_| PyValueError::new_err("idx_array: expected a C-contiguous array"))
    }
}

/// Validates and borrows a tree of element type `T`.
fn view<'a, T: Float + numpy::Element>(
    st: &'a State<'_>,
    data: &'a numpy::PyReadonlyArray2<'_, T>,
    bounds: &'a numpy::PyReadonlyArray2<'_, T>,
    weights: Option<&'a [T]>,
) -> PyResult<TreeView<'a, T>> {
    TreeView::new(
        st.kind,
        st.metric,
        data.shape()[1],
        st.leaf_size,
        slice(data),
        st.idx()?,
        Cow::Owned(st.nodes()?),
        slice(bounds),
        weights,
    )
    .map_err(to_py)
}

/// Runs `$body` with `$view: TreeView<T>` and `$q: &[T]` (queries converted to the tree's
/// dtype) for the state's element type.
macro_rules! with_tree {
    ($py:expr, $state:expr, $queries:expr, |$view:ident, $q:ident, $nq:ident| $body:expr) => {{
        let st = State::extract($state)?;
        let q = Matrix::extract($queries, "X", Some(&st.data))?;
        let (nq, qd) = q.shape();
        if qd != st.data.shape().1 {
            return Err(PyValueError::new_err(
                "query data dimension must match training data dimension",
            ));
        }
        let $nq = nq;
        match (&st.data, &st.bounds, &q) {
            (Matrix::F32(d), Matrix::F32(b), Matrix::F32(qa)) => {
                let w = optional_vector::<f32>(st.weights.as_ref(), "weights")?;
                let ws = w.as_ref().map(|w| w.as_slice()).transpose()?;
                let $view = view(&st, d, b, ws)?;
                let $q = slice(qa);
                $body
            }
            (Matrix::F64(d), Matrix::F64(b), Matrix::F64(qa)) => {
                let w = optional_vector::<f64>(st.weights.as_ref(), "weights")?;
                let ws = w.as_ref().map(|w| w.as_slice()).transpose()?;
                let $view = view(&st, d, b, ws)?;
                let $q = slice(qa);
                $body
            }
            _ => Err(PyValueError::new_err(
                "node_bounds: expected the dtype of the tree's data",
            )),
        }
    }};
}

/// Builds a tree. Returns ``(idx_array, node_info, node_radius, node_bounds, blocks)``
/// (``blocks``: the rows in tree order, packed for the queries);
/// ``node_bounds`` has shape ``(2, n_nodes, d)`` (KD-tree) or ``(1, n_nodes, d)`` (ball tree) and
/// the data's dtype (float32 stays float32).
#[pyfunction]
#[pyo3(signature = (data, kind, leaf_size=40, metric="euclidean", p=2.0, sample_weight=None, n_jobs=None))]
pub fn tree_build<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    kind: &str,
    leaf_size: i64,
    metric: &str,
    p: f64,
    sample_weight: Option<&Bound<'py, PyAny>>,
    n_jobs: Option<i64>,
) -> PyResult<Bound<'py, PyTuple>> {
    let kind = Kind::parse(kind).map_err(to_py)?;
    let metric = tree_metric(metric, p)?;
    let leaf_size = usize::try_from(leaf_size)
        .ok()
        .filter(|&l| l >= 1)
        .ok_or_else(|| PyValueError::new_err("leaf_size must be greater than or equal to 1"))?;
    let m = Matrix::extract(data, "data", None)?;
    fn go<'py, T: Float + numpy::Element>(
        py: Python<'py>,
        a: &numpy::PyReadonlyArray2<'py, T>,
        kind: Kind,
        metric: TreeMetric,
        leaf_size: usize,
        sample_weight: Option<&Bound<'py, PyAny>>,
        n_jobs: Option<i64>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let w = optional_vector::<T>(sample_weight, "sample_weight")?;
        let ws = w.as_ref().map(|w| w.as_slice()).transpose()?;
        let (n, d) = (a.shape()[0], a.shape()[1]);
        let s = slice(a);
        let threads = pool::resolve_threads(n_jobs);
        let tree = py
            .detach(|| Tree::build(s, d, kind, metric, leaf_size, ws, threads))
            .map_err(to_py)?;
        let n_nodes = tree.nodes.len();
        let mut info = Vec::with_capacity(3 * n_nodes);
        for nd in &tree.nodes {
            info.extend([nd.idx_start as i64, nd.idx_end as i64, nd.is_leaf as i64]);
        }
        let radius: Vec<f64> = tree.nodes.iter().map(|nd| nd.radius).collect();
        let bounds = tree
            .bounds
            .into_pyarray(py)
            .reshape([kind.bound_rows(), n_nodes, d])?;
        PyTuple::new(
            py,
            [
                vector(py, tree.idx_array).into_any(),
                matrix(py, info, n_nodes, 3)?.into_any(),
                vector(py, radius).into_any(),
                bounds.into_any(),
                matrix(py, tree.blocks, n.div_ceil(LANES) * LANES, d)?.into_any(),
            ],
        )
    }
    match &m {
        Matrix::F32(a) => go(py, a, kind, metric, leaf_size, sample_weight, n_jobs),
        Matrix::F64(a) => go(py, a, kind, metric, leaf_size, sample_weight, n_jobs),
    }
}

/// k nearest neighbours of each row of ``X``: ``(distances, indices, stats)``, closest first;
/// ``stats`` = ``(n_calls, n_trims, n_leaves, n_splits)``.
#[pyfunction]
#[pyo3(signature = (state, X, k, breadth_first=false, dualtree=false, n_jobs=None))]
#[allow(non_snake_case)]
pub fn tree_query<'py>(
    py: Python<'py>,
    state: &Bound<'py, PyAny>,
    X: &Bound<'py, PyAny>,
    k: i64,
    breadth_first: bool,
    dualtree: bool,
    n_jobs: Option<i64>,
) -> PyResult<(Py<PyAny>, Py<PyAny>, StatsTuple)> {
    let k = usize::try_from(k)
        .map_err(|_| PyValueError::new_err(format!("k must be non-negative, got {k}")))?;
    let opts = KnnOptions {
        breadth_first,
        dualtree,
    };
    with_tree!(py, state, X, |t, q, nq| {
        let (res, stats) = detached(py, n_jobs, |params| t.knn(q, k, opts, params))?;
        Ok((
            matrix(py, res.distances, nq, k)?.into_any().unbind(),
            matrix(py, res.indices, nq, k)?.into_any().unbind(),
            stats_tuple(stats),
        ))
    })
}

/// Neighbours within ``r`` (a number, or one per row of ``X``): CSR ``(lims, indices,
/// distances, stats)``; ``indices`` is empty with ``count_only``, ``distances`` unless
/// ``return_distance``.
#[pyfunction]
#[pyo3(signature = (state, X, r, return_distance=false, count_only=false, sort_results=false, n_jobs=None))]
#[allow(non_snake_case)]
pub fn tree_query_radius<'py>(
    py: Python<'py>,
    state: &Bound<'py, PyAny>,
    X: &Bound<'py, PyAny>,
    r: &Bound<'py, PyAny>,
    return_distance: bool,
    count_only: bool,
    sort_results: bool,
    n_jobs: Option<i64>,
) -> PyResult<RadiusOut> {
    let opts = RadiusOptions {
        count_only,
        return_distance,
        sort_results,
    };
    let scalar: Option<f64> = r.extract().ok();
    macro_rules! run {
        ($t:ty, $view:expr, $q:expr) => {{
            let per_query = match scalar {
                Some(_) => None,
                None => optional_vector::<$t>(Some(r), "r")?,
            };
            let rs = per_query.as_ref().map(|v| v.as_slice()).transpose()?;
            let radius = match (scalar, rs) {
                (Some(v), _) => Radius::All(<$t as Float>::from_f64(v)),
                (None, Some(rs)) => Radius::PerQuery(rs),
                (None, None) => {
                    return Err(PyValueError::new_err("r: expected a number or an array"))
                }
            };
            let (view, qs) = ($view, $q);
            let (res, stats) =
                detached(py, n_jobs, |params| view.radius(qs, radius, opts, params))?;
            Ok((
                vector(py, res.lims).into_any().unbind(),
                vector(py, res.indices).into_any().unbind(),
                vector(py, res.distances).into_any().unbind(),
                stats_tuple(stats),
            ))
        }};
    }
    let st = State::extract(state)?;
    let q = Matrix::extract(X, "X", Some(&st.data))?;
    if q.shape().1 != st.data.shape().1 {
        return Err(PyValueError::new_err(
            "query data dimension must match training data dimension",
        ));
    }
    match (&st.data, &st.bounds, &q) {
        (Matrix::F32(d), Matrix::F32(b), Matrix::F32(qa)) => {
            let w = optional_vector::<f32>(st.weights.as_ref(), "weights")?;
            let ws = w.as_ref().map(|w| w.as_slice()).transpose()?;
            run!(f32, view(&st, d, b, ws)?, slice(qa))
        }
        (Matrix::F64(d), Matrix::F64(b), Matrix::F64(qa)) => {
            let w = optional_vector::<f64>(st.weights.as_ref(), "weights")?;
            let ws = w.as_ref().map(|w| w.as_slice()).transpose()?;
            run!(f64, view(&st, d, b, ws)?, slice(qa))
        }
        _ => Err(PyValueError::new_err(
            "node_bounds: expected the dtype of the tree's data",
        )),
    }
}

/// Log kernel density at each row of ``X`` (float64; normalised, not divided by the total
/// weight): ``(log_density, stats)``.
#[pyfunction]
#[pyo3(signature = (state, X, h, kernel="gaussian", atol=0.0, rtol=1e-8, breadth_first=true, n_jobs=None))]
#[allow(non_snake_case)]
pub fn tree_kernel_density<'py>(
    py: Python<'py>,
    state: &Bound<'py, PyAny>,
    X: &Bound<'py, PyAny>,
    h: f64,
    kernel: &str,
    atol: f64,
    rtol: f64,
    breadth_first: bool,
    n_jobs: Option<i64>,
) -> PyResult<(Py<PyAny>, StatsTuple)> {
    let kernel = KernelKind::parse(kernel).map_err(to_py)?;
    with_tree!(py, state, X, |t, q, _nq| {
        let (out, stats) = detached(py, n_jobs, |params| {
            t.kernel_density(q, h, kernel, atol, rtol, breadth_first, params)
        })?;
        Ok((vector(py, out).into_any().unbind(), stats_tuple(stats)))
    })
}

/// Two-point correlation: for each radius of ``r`` (float64, ascending), the number of pairs
/// (row of ``X``, tree point) at distance ≤ it: ``(counts, stats)``.
#[pyfunction]
#[pyo3(signature = (state, X, r, dualtree=false, n_jobs=None))]
#[allow(non_snake_case)]
pub fn tree_two_point_correlation<'py>(
    py: Python<'py>,
    state: &Bound<'py, PyAny>,
    X: &Bound<'py, PyAny>,
    r: PyReadonlyArray1<'py, f64>,
    dualtree: bool,
    n_jobs: Option<i64>,
) -> PyResult<(Py<PyAny>, StatsTuple)> {
    let rs = r
        .as_slice()
        .map_err(|_| PyValueError::new_err("r: expected a C-contiguous float64 array"))?;
    with_tree!(py, state, X, |t, q, _nq| {
        let (counts, stats) = detached(py, n_jobs, |params| {
            t.two_point_correlation(q, rs, dualtree, params)
        })?;
        Ok((vector(py, counts).into_any().unbind(), stats_tuple(stats)))
    })
}
