"""Shared machinery of the neighbour estimators: fitting, ``kneighbors``, ``radius_neighbors``.

Radius results stay in the engine's flat CSR form (``lims``, distances, indices) until a caller
asks for scikit-learn's arrays of arrays: the graphs are built from it directly,
``radius_neighbors(..., return_csr=True)`` returns it, and the radius estimators consume it one
block of queries at a time (:meth:`RadiusNeighborsMixin._radius_blocks`).

The estimators follow ``sklearn.neighbors`` line by line where behaviour is visible to users
(parameter validation, ``effective_metric_``, ``_fit_method``, self-exclusion when ``X=None``,
error types and messages, tags), but every search runs on knnkit's engines; scikit-learn's
pairwise reductions are never called. ``algorithm`` takes scikit-learn's values, validated and
resolved as scikit-learn does (:func:`~knnkit.neighbors._tree_search.choose_fit_method`, so
``_fit_method`` is scikit-learn's): ``"kd_tree"`` and ``"ball_tree"`` run knnkit's
:class:`~knnkit.neighbors.KDTree` / :class:`~knnkit.neighbors.BallTree` (:mod:`._tree_search`,
the tree is ``_tree``), ``"brute"`` the exact engine (:mod:`._search`); and two approximate
ones, ``"hnsw"`` and ``"ivf"`` (:mod:`._ann`, ``_fit_method`` is their name), whose parameters
come in ``algo_params``; ``device=`` runs the torch engine (:mod:`._device`). Every engine sits
behind the private fitted attribute ``_index`` with one protocol
(:class:`~knnkit.neighbors._engine.SearchEngine`, chosen by
:func:`~knnkit.neighbors._engine.choose_engine`): the search, the queries it takes, and the
arithmetic on its results (numpy, or tensors on the device), so every estimator runs the same
code on any of them.

Choices that differ from scikit-learn (documented on each estimator):

- distances keep the fitted dtype: float32 data gives float32 distances (scikit-learn returns
  float64 for most metrics); int and bool data compute in float64;
- scipy sparse input (``_fit_method == "brute"``, as scikit-learn) is densified up to
  :data:`MAX_DENSE_BYTES`, so every metric accepts it (scikit-learn allows only a few); larger
  fitted rows stay sparse, served block by block for euclidean, sqeuclidean, cosine and
  manhattan, and larger sparse queries are densified one block of rows at a time;
- ``metric="precomputed"`` takes dense distance matrices and sparse distance graphs (CSR, as
  scikit-learn: the stored entries of a row are its candidates);
- unsorted radius results come in index order whatever the engine (scikit-learn's trees give
  tree order; the sets are the same);
- ``n_jobs=None`` uses every core of the native engine (scikit-learn's brute engine also runs on
  all OpenMP threads whatever ``n_jobs`` is).
"""

from __future__ import annotations

import itertools
import numbers
import warnings
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np
from scipy.sparse import csr_array, csr_matrix, issparse
from sklearn import get_config
from sklearn.base import BaseEstimator, MultiOutputMixin, is_classifier
from sklearn.exceptions import DataConversionWarning, EfficiencyWarning
from sklearn.metrics import DistanceMetric
from sklearn.neighbors import VALID_METRICS
from sklearn.neighbors._base import NeighborsBase as _SkNeighborsBase
from sklearn.utils import check_array, get_tags
from sklearn.utils._param_validation import Interval, StrOptions, validate_params
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from knnkit.neighbors._ann import APPROXIMATE, check_algo_params, check_metric
from knnkit.neighbors._device import (
    check_device,
    check_device_metric,
    check_tensor,
    host,
    is_tensor,
    query_output,
    validate_tensor_fit,
)
from knnkit.neighbors._engine import EngineSpec, choose_engine
from knnkit.neighbors._metrics import effective_metric, resolve
from knnkit.neighbors._search import SPARSE_METRICS, ExactSearch, serves_sparse
from knnkit.neighbors._tree import BallTree, KDTree, SkBallTree, SkKDTree
from knnkit.neighbors._tree_search import TreeSearch, choose_fit_method

#: Largest dense copy (in bytes) made of a scipy sparse input. Smaller sparse inputs are densified
#: (the dense engines are the fastest); larger fitted rows stay sparse on the brute path for the
#: metrics of :data:`knnkit.neighbors._search.SPARSE_METRICS` (distances computed block by block,
#: memory bounded by ``working_memory``) and are refused for the others; larger sparse queries
#: are densified one bounded block of rows at a time.
MAX_DENSE_BYTES = 2 * 2**30

#: Bytes a radius-based ``predict`` holds per (query, neighbour) pair: distance, index and the
#: temporaries of the vote; sizes the query blocks of :meth:`RadiusNeighborsMixin._radius_blocks`.
_BYTES_PER_NEIGHBOUR = 48


def _get_csr_weights(dist: np.ndarray, lims: np.ndarray, weights: Any) -> np.ndarray | None:
    """:func:`~knnkit.neighbors._arrays._get_weights` for a flat radius result (neighbours of
    query i in ``dist[lims[i]:lims[i+1]]``), vectorised; the same values scikit-learn computes
    per row.

    ``"distance"``: ``1 / dist``, except in rows with a neighbour at distance 0, where those
    neighbours weigh 1 and the others 0. A callable receives scikit-learn's argument, an object
    array with one distance array per query, and must return one weight array per query.

    Examples
    --------
    >>> _get_csr_weights(np.array([2.0, 4.0, 0.0, 1.0]), np.array([0, 2, 4]), "distance")
    array([0.5 , 0.25, 1.  , 0.  ])
    """
    if weights in (None, "uniform"):
        return None
    counts = np.diff(lims)
    if weights == "distance":
        rows = np.repeat(np.arange(len(counts)), counts)
        zero = dist == 0
        has_zero = np.bincount(rows[zero], minlength=len(counts)) > 0
        with np.errstate(divide="ignore"):
            inverse = 1.0 / dist
        return np.where(has_zero[rows], zero, inverse)
    if callable(weights):
        per_row = weights(_ragged(dist, lims))
        parts = [np.asarray(per_row[i], dtype=np.float64).reshape(-1) for i in range(len(counts))]
        out = np.concatenate(parts) if parts else np.empty(0)
        if out.shape != dist.shape:
            raise ValueError(
                f"weights: the callable must return one weight per neighbour ({dist.shape[0]} "
                f"in all), got {out.shape[0]}"
            )
        return out
    return None


def _ragged(values: np.ndarray, lims: np.ndarray) -> np.ndarray:
    """A 1-D object array whose item ``i`` is ``values[lims[i]:lims[i+1]]``."""
    out = np.empty(len(lims) - 1, dtype=object)
    for i, part in enumerate(np.split(values, lims[1:-1])):
        out[i] = part
    return out


def _align_sparse(graph: csr_array) -> Any:
    """``csr_array`` or ``csr_matrix``, following scikit-learn's ``sparse_interface`` setting."""
    if get_config().get("sparse_interface", "spmatrix") == "sparray":
        return graph
    return csr_matrix(graph)


def _dense_bytes(X: Any) -> int:
    n, d = X.shape
    return n * d * np.dtype(X.dtype).itemsize


def _densify(X: Any, what: str, why: str = "") -> np.ndarray:
    """Dense C-ordered copy of a scipy sparse matrix, refusing copies above MAX_DENSE_BYTES."""
    n, d = X.shape
    nbytes = _dense_bytes(X)
    if nbytes > MAX_DENSE_BYTES:
        raise ValueError(
            f"{what}: scipy sparse input is densified {why or 'for this search'}, and this "
            f"{n} x {d} matrix would take {nbytes / 2**30:.1f} GiB (the limit is "
            f"MAX_DENSE_BYTES = {MAX_DENSE_BYTES / 2**30:.3g} GiB); pass a dense array, reduce "
            f"the dimension, or use algorithm='brute' with one of the metrics served on sparse "
            f"rows: {sorted(SPARSE_METRICS)}"
        )
    return np.ascontiguousarray(X.toarray())


def _query_step(n_features: int) -> int:
    """Rows per dense block of a large sparse query (one block within ``working_memory``)."""
    budget = int(get_config()["working_memory"] * 2**20)
    return max(1, budget // (8 * max(n_features, 1)))


def check_extra_params(device: Any, algo_params: Any, algorithm: Any) -> dict[str, Any]:
    """Checks knnkit's extra keywords: ``device`` (resolved by
    :func:`~knnkit.neighbors._device.check_device`: an unavailable device, or a device with a
    tree or approximate algorithm, is a ``ValueError``); ``algo_params`` valid for an
    approximate algorithm (returned, validated) and empty for the exact ones."""
    check_device(device, algorithm)
    if isinstance(algorithm, str) and algorithm in APPROXIMATE:
        return check_algo_params(algorithm, algo_params)
    if algo_params:
        raise ValueError(
            f"algo_params={algo_params!r}: algorithm={algorithm!r} runs knnkit's "
            "exact engine, which takes no algorithm parameters; leave algo_params=None "
            f"(algo_params are for the approximate algorithms {sorted(APPROXIMATE)})"
        )
    return {}


@dataclass(frozen=True)
class FittedSource:
    """What ``fit`` reuses from a fitted neighbours estimator or a tree passed as ``X``."""

    data: Any
    fit_method: str
    tree: Any = None
    n_features_in: int | None = None
    feature_names_in: Any = None


def fitted_source(X: Any) -> FittedSource | None:
    """The reusable parts of ``X`` when it is a fitted neighbours estimator (knnkit's or
    scikit-learn's), a ``KDTree`` or a ``BallTree`` (knnkit's or scikit-learn's), as
    scikit-learn's ``fit`` takes them; ``None`` for anything else (data).

    An estimator gives its fitted rows and, when it searched with a tree, that tree; an
    estimator that is not fitted raises scikit-learn's ``NotFittedError``.
    """
    if isinstance(X, (NeighborsBase, _SkNeighborsBase)):
        check_is_fitted(X, "n_samples_fit_")
        tree = getattr(X, "_tree", None)
        fit_method = getattr(X, "_fit_method", "brute")
        if tree is None or fit_method not in ("kd_tree", "ball_tree"):
            tree, fit_method = None, "brute"
        return FittedSource(
            X._fit_X,
            fit_method,
            tree,
            getattr(X, "n_features_in_", None),
            getattr(X, "feature_names_in_", None),
        )
    if isinstance(X, (KDTree, SkKDTree)):
        return FittedSource(np.asarray(X.data), "kd_tree", X)
    if isinstance(X, (BallTree, SkBallTree)):
        return FittedSource(np.asarray(X.data), "ball_tree", X)
    return None


def _check_precomputed(X: Any) -> Any:
    """A non-negative, finite precomputed distance matrix (scikit-learn's ``_check_precomputed``):
    dense, or a sparse graph returned as CSR with every row sorted by value (a copy, with an
    ``EfficiencyWarning``, when it was not)."""
    if not issparse(X):
        return check_array(X, ensure_non_negative=True, input_name="X")
    graph = X
    if graph.format not in ("csr", "csc", "coo", "lil"):
        raise TypeError(
            f"Sparse matrix in {graph.format!r} format is not supported due to "
            "its handling of explicit zeros"
        )
    copied = graph.format != "csr"
    graph = check_array(
        graph,
        accept_sparse="csr",
        ensure_non_negative=True,
        input_name="precomputed distance matrix",
    )
    return sort_graph_by_row_values(graph, copy=not copied, warn_when_not_sorted=True)


def _is_sorted_by_data(graph: Any) -> bool:
    """Whether every row of a CSR graph stores its entries by increasing value."""
    data = graph.data
    if data.size < 2:
        return True
    out_of_order = data[:-1] > data[1:]
    # a decrease across a row boundary is allowed
    row_end = graph.indptr[1:-1] - 1
    row_end = row_end[(row_end >= 0) & (row_end < out_of_order.shape[0])]
    allowed = np.zeros(out_of_order.shape[0], dtype=bool)
    allowed[row_end] = True
    return not np.any(out_of_order & ~allowed)


@validate_params(
    {
        "graph": ["sparse matrix"],
        "copy": ["boolean"],
        "warn_when_not_sorted": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def sort_graph_by_row_values(graph, copy=False, warn_when_not_sorted=True):
    """Sort a sparse graph such that each row is stored with increasing values.

    Same behaviour as ``sklearn.neighbors.sort_graph_by_row_values``, but every row is sorted
    by one vectorised stable sort (``np.lexsort`` on (row, value)) instead of a Python loop
    over rows; equal values keep their stored order, as scikit-learn's mergesort does.

    Parameters
    ----------
    graph : sparse matrix of shape (n_samples, n_samples)
        Distance matrix to other samples, where only non-zero elements are
        considered neighbors. Matrix is converted to CSR format if not already.

    copy : bool, default=False
        If True, the graph is copied before sorting. If False, the sorting is
        performed inplace. If the graph is not of CSR format, `copy` must be
        True to allow the conversion to CSR format, otherwise an error is
        raised.

    warn_when_not_sorted : bool, default=True
        If True, a :class:`~sklearn.exceptions.EfficiencyWarning` is raised
        when the input graph is not sorted by row values.

    Returns
    -------
    graph : sparse matrix of shape (n_samples, n_samples)
        Distance matrix to other samples, where only non-zero elements are
        considered neighbors. Matrix is in CSR format.

    Examples
    --------
    >>> from scipy.sparse import csr_array
    >>> from knnkit.neighbors import sort_graph_by_row_values
    >>> X = csr_array([[0., 3., 1.], [3., 0., 2.], [1., 2., 0.]])
    >>> X.data
    array([3., 1., 3., 2., 1., 2.])
    >>> sort_graph_by_row_values(X, warn_when_not_sorted=False).data
    array([1., 3., 2., 3., 1., 2.])
    """
    if graph.format == "csr" and _is_sorted_by_data(graph):
        return graph

    if warn_when_not_sorted:
        warnings.warn(
            (
                "Precomputed sparse input was not sorted by row values. Use the"
                " function knnkit.neighbors.sort_graph_by_row_values to sort the input"
                " by row values, with warn_when_not_sorted=False to remove this"
                " warning."
            ),
            EfficiencyWarning,
            stacklevel=2,
        )

    if graph.format not in ("csr", "csc", "coo", "lil"):
        raise TypeError(
            f"Sparse matrix in {graph.format!r} format is not supported due to "
            "its handling of explicit zeros"
        )
    elif graph.format != "csr":
        if not copy:
            raise ValueError(
                "The input graph is not in CSR format. Use copy=True to allow "
                "the conversion to CSR format."
            )
        graph = graph.asformat("csr")
    elif copy:  # csr format with copy=True
        graph = graph.copy()

    row_nnz = np.diff(graph.indptr)
    rows = np.repeat(np.arange(graph.shape[0]), row_nnz)
    order = np.lexsort((graph.data, rows))  # stable: ties keep their stored order
    graph.data = graph.data[order]
    graph.indices = graph.indices[order]
    return graph


class NeighborsBase(MultiOutputMixin, BaseEstimator):
    """Base class of the knnkit neighbour estimators (fitting and validation)."""

    _parameter_constraints: dict = {
        "n_neighbors": [Interval(Integral, 1, None, closed="left"), None],
        "radius": [Interval(Real, 0, None, closed="both"), None],
        "algorithm": [StrOptions({"auto", "ball_tree", "kd_tree", "brute", *APPROXIMATE})],
        "leaf_size": [Interval(Integral, 1, None, closed="left")],
        "p": [Interval(Real, 0, None, closed="right"), None],
        "metric": [
            StrOptions(set(itertools.chain(*VALID_METRICS.values()))),
            callable,
            DistanceMetric,
        ],
        "metric_params": [dict, None],
        "n_jobs": [Integral, None],
        "algo_params": [dict, None],
        "device": "no_validation",  # resolved in fit: a str or torch.device, checked available
    }

    def __init__(
        self,
        n_neighbors=None,
        radius=None,
        algorithm="auto",
        leaf_size=30,
        metric="minkowski",
        p=2,
        metric_params=None,
        n_jobs=None,
        algo_params=None,
        device=None,
    ):
        self.n_neighbors = n_neighbors
        self.radius = radius
        self.algorithm = algorithm
        self.leaf_size = leaf_size
        self.metric = metric
        self.metric_params = metric_params
        self.p = p
        self.n_jobs = n_jobs
        self.algo_params = algo_params
        self.device = device

    # -- checks ---------------------------------------------------------------------------------

    def _is_precomputed(self) -> bool:
        return isinstance(self.metric, str) and self.metric == "precomputed"

    def _check_extra_params(self) -> dict[str, Any]:
        return check_extra_params(self.device, self.algo_params, self.algorithm)

    def _is_approximate(self) -> bool:
        return self.algorithm in APPROXIMATE

    def _check_tree_metric(self) -> None:
        """scikit-learn's checks of (algorithm, metric) for its exact algorithms."""
        metric = self.metric
        if self.algorithm == "auto":
            if self._is_precomputed():
                alg_check = "brute"
            elif (
                callable(metric)
                or metric in VALID_METRICS["ball_tree"]
                or isinstance(metric, DistanceMetric)
            ):
                alg_check = "ball_tree"
            else:
                alg_check = "brute"
        else:
            alg_check = self.algorithm

        if callable(metric):
            if self.algorithm == "kd_tree":
                raise ValueError(
                    f"kd_tree does not support callable metric '{metric}'"
                    "Function call overhead will result"
                    "in very poor performance."
                )
        elif metric not in VALID_METRICS[alg_check] and not isinstance(metric, DistanceMetric):
            raise ValueError(
                f"Metric '{metric}' not valid. Use "
                f"sorted(sklearn.neighbors.VALID_METRICS['{alg_check}']) "
                "to get valid options. "
                "Metric can also be a callable function."
            )

    def _check_algorithm_metric(self) -> None:
        if self._is_approximate():
            check_metric(self.algorithm, self.metric, self.p, self.metric_params)
        else:
            self._check_tree_metric()

        if self.metric_params is not None and "p" in self.metric_params:
            if self.p is not None:
                warnings.warn(
                    (
                        "Parameter p is found in metric_params. "
                        "The corresponding parameter from __init__ "
                        "is ignored."
                    ),
                    SyntaxWarning,
                    stacklevel=4,
                )

    # -- fit ------------------------------------------------------------------------------------

    def _fit(self, X, y=None):
        algo_params = self._check_extra_params()
        device = check_device(self.device, self.algorithm)
        # scikit-learn's fit also takes a fitted neighbours estimator or a tree (its own or
        # knnkit's) and reuses its rows and tree; a device engine takes its rows only.
        source = fitted_source(X)
        if source is not None and (device is not None or self._is_approximate()):
            X, source = source.data, None
        self._fit_home = X.device if is_tensor(X) else None  # where results of X=None go
        ensure_all_finite = "allow-nan" if get_tags(self).input_tags.allow_nan else True
        target = self.__sklearn_tags__().target_tags.required
        # What `device` means: a device engine keeps a tensor where it is (checked there, never
        # copied through the host); the native engines read it through the host as an array.
        if source is not None:
            if target:
                y = check_array(host(y), ensure_2d=False, dtype=None, input_name="y")
                if y.shape[0] != source.data.shape[0]:
                    raise ValueError(
                        "Found input variables with inconsistent numbers of samples: "
                        f"[{source.data.shape[0]}, {y.shape[0]}]"
                    )
        elif is_tensor(X) and device is not None:
            X, y = validate_tensor_fit(self, X, y, target)
        elif target:
            X, y = validate_data(
                self,
                host(X),
                host(y),
                accept_sparse="csr",
                multi_output=True,
                order="C",
                ensure_all_finite=ensure_all_finite,
            )
        else:
            X = validate_data(
                self, host(X), ensure_all_finite=ensure_all_finite, accept_sparse="csr", order="C"
            )
        if target:
            if is_classifier(self):
                if y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1):
                    if y.ndim != 1:
                        warnings.warn(
                            (
                                "A column-vector y was passed when a "
                                "1d array was expected. Please change "
                                "the shape of y to (n_samples,), for "
                                "example using ravel()."
                            ),
                            DataConversionWarning,
                            stacklevel=3,
                        )
                    self.outputs_2d_ = False
                    y = y.reshape((-1, 1))
                else:
                    self.outputs_2d_ = True

                check_classification_targets(y)
                self.classes_ = []
                self._y = np.empty(y.shape, dtype=np.intp)
                for k in range(self._y.shape[1]):
                    classes, self._y[:, k] = np.unique(y[:, k], return_inverse=True)
                    self.classes_.append(classes)

                if not self.outputs_2d_:
                    self.classes_ = self.classes_[0]
                    self._y = self._y.ravel()
            else:
                self._y = y

        self._check_algorithm_metric()
        self.effective_metric_, self.effective_metric_params_ = effective_metric(
            self.metric, self.p, self.metric_params
        )
        # Before scikit-learn's checks below: the device engine refuses 'precomputed' and p < 1.
        check_device_metric(device, self.effective_metric_, self.effective_metric_params_)

        if source is not None:
            return self._fit_from(source)

        if self._is_precomputed():
            X = _check_precomputed(X)
            if X.shape[0] != X.shape[1]:
                raise ValueError(
                    "Precomputed matrix must be square. "
                    f"Input is a {X.shape[0]}x{X.shape[1]} matrix."
                )
            self.n_features_in_ = X.shape[1]

        if X.shape[0] == 0:
            raise ValueError("n_samples must be greater than 0")

        # scikit-learn's checks of p < 1 and weights, which it skips for sparse input (brute).
        if not issparse(X):
            if (
                isinstance(self.effective_metric_, str)
                and self.effective_metric_ == "minkowski"
                and self.effective_metric_params_["p"] is not None
                and self.effective_metric_params_["p"] < 1
            ):
                if self.algorithm in ("auto", "brute"):
                    warnings.warn(
                        "Mind that for 0 < p < 1, Minkowski metrics are not distance"
                        " metrics. Continuing the execution with `algorithm='brute'`.",
                        stacklevel=3,
                    )
                else:
                    raise ValueError(
                        f'algorithm="{self.algorithm}" does not support 0 < p < 1 for '
                        "the Minkowski metric. To resolve this problem either "
                        'set p >= 1 or algorithm="brute".'
                    )
            if (
                self.algorithm == "kd_tree"
                and isinstance(self.effective_metric_, str)
                and self.effective_metric_ == "minkowski"
                and self.effective_metric_params_.get("w") is not None
            ):
                raise ValueError(
                    "algorithm='kd_tree' is not valid for "
                    "metric='minkowski' with a weight parameter 'w': "
                    "try algorithm='ball_tree' "
                    "or algorithm='brute' instead."
                )

        plan = resolve(self.effective_metric_, self.effective_metric_params_, X.shape[1])
        # scikit-learn's choice (trees, brute force), or the approximate algorithm asked for.
        fit_method = (
            self.algorithm
            if self._is_approximate()
            else choose_fit_method(
                self.algorithm,
                self.metric,
                self.effective_metric_,
                self.effective_metric_params_,
                X,
                self.n_neighbors,
            )
        )

        engine = choose_engine(fit_method, device)
        if issparse(X):
            if self.algorithm in ("kd_tree", "ball_tree"):
                warnings.warn("cannot use tree with sparse input: using brute force", stacklevel=3)
            # scikit-learn refuses sparse input for metrics outside VALID_METRICS_SPARSE; here
            # small inputs are densified, so every metric works, and large ones stay sparse on
            # the exact engine (see MAX_DENSE_BYTES). Precomputed graphs stay sparse.
            # A callable metric receives the rows as scikit-learn passes them: sparse.
            keep_sparse = (
                self._is_precomputed()
                or (engine.sparse_fit and plan.takes_sparse_rows)
                or (engine.sparse_fit and _dense_bytes(X) > MAX_DENSE_BYTES and serves_sparse(plan))
            )
            if not keep_sparse:
                X = _densify(X, "X", "for knnkit's dense engines")

        self._index = engine.build(
            X,
            EngineSpec(
                fit_method,
                plan,
                self.effective_metric_,
                self.effective_metric_params_,
                leaf_size=self.leaf_size,
                algo_params=algo_params,
                n_jobs=self.n_jobs,
                device=device,
            ),
        )
        self._tree = getattr(self._index, "tree", None)  # scikit-learn's attribute for the trees
        self._fit_method = self._index.fit_method
        self._fit_X = X
        self.n_samples_fit_ = X.shape[0]
        if target:  # where the votes and averages read them
            self._y_t = self._index.arrays.targets(self._y, is_classifier(self))
        return self

    def _fit_from(self, source: FittedSource):
        """``fit`` on a fitted estimator or tree, as scikit-learn does it: the rows, the tree
        and ``_fit_method`` are the source's (a tree keeps the metric it was built with, as in
        scikit-learn); brute force runs this estimator's metric on the source's rows."""
        X = source.data
        if source.tree is not None:
            self._index = TreeSearch.from_tree(source.tree)
        else:
            plan = resolve(self.effective_metric_, self.effective_metric_params_, X.shape[1])
            if issparse(X) and not (self._is_precomputed() or serves_sparse(plan)):
                X = _densify(X, "X", "for knnkit's dense engines")
            self._index = ExactSearch.build(
                X,
                EngineSpec(
                    "brute",
                    plan,
                    self.effective_metric_,
                    self.effective_metric_params_,
                    n_jobs=self.n_jobs,
                ),
            )
        self._tree = source.tree
        self._fit_method = source.fit_method
        self._fit_X = source.data
        self.n_samples_fit_ = X.shape[0]
        if source.n_features_in is not None:
            self.n_features_in_ = source.n_features_in
        if source.feature_names_in is not None:
            self.feature_names_in_ = source.feature_names_in
        if self.__sklearn_tags__().target_tags.required:
            self._y_t = self._index.arrays.targets(self._y, is_classifier(self))
        return self

    def _output(self, X):
        """Converter of results to the caller's kind for query ``X``: tensors on ``X``'s device
        for a tensor (``X=None``: the fitted tensor's device), numpy otherwise."""
        return query_output(X, getattr(self, "_fit_home", None))[1]

    def __getstate__(self):
        # tensors travel through the host (a CUDA-fitted estimator then unpickles with a clear
        # device error from its engine rather than torch's storage error); _y_t is set again
        state = {name: host(value) for name, value in super().__getstate__().items()}
        state.pop("_y_t", None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if "_y" in state and "_index" in state:
            self._y_t = self._index.arrays.targets(self._y, is_classifier(self))

    # -- queries --------------------------------------------------------------------------------

    def _validate_query(self, X):
        """Validated query rows (or a dense precomputed distance block), as the engine takes
        them: a tensor where it is for an engine with ``tensor_queries``, else through the host;
        scipy sparse rows densified unless the engine takes them (see ``SearchEngine``)."""
        engine = self._index
        if is_tensor(X) and engine.tensor_queries:
            X = check_tensor(X)
            if X.shape[1] != self.n_features_in_:
                raise ValueError(
                    f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                    f"{self.n_features_in_} features as input."
                )
            return X
        X = host(X)
        if self._is_precomputed():
            X = _check_precomputed(X)
            if X.shape[1] != self.n_samples_fit_:
                raise ValueError(
                    "Precomputed metric requires shape "
                    f"(n_queries, n_indexed). Got ({X.shape[0]}, {X.shape[1]}) "
                    f"for {self.n_samples_fit_} indexed."
                )
            return X
        ensure_all_finite = "allow-nan" if get_tags(self).input_tags.allow_nan else True
        if issparse(X) and self._fit_method in ("kd_tree", "ball_tree"):
            # scikit-learn's error (knnkit's trees, like its own, take dense rows only)
            raise ValueError(
                f"{self._fit_method} does not work with sparse matrices. Densify the data, "
                "or set algorithm='brute'"
            )
        X = validate_data(
            self,
            X,
            ensure_all_finite=ensure_all_finite,
            accept_sparse="csr",
            reset=False,
            order="C",
        )
        if issparse(X) and not engine.sparse_queries:
            if not engine.query_blocks or _dense_bytes(X) <= MAX_DENSE_BYTES:
                X = _densify(X, "X", f"for {engine.label}")
            # else: densified one block of rows at a time by _index_kneighbors / _index_radius
        return X

    def _index_kneighbors(self, X, k):
        """``self._index.kneighbors``; a large sparse query goes in dense blocks of rows."""
        if X is None or not issparse(X) or self._index.sparse_queries:
            return self._index.kneighbors(X, k, self.n_jobs)
        parts = [
            self._index.kneighbors(X[s : s + step].toarray(), k, self.n_jobs)
            for step in [_query_step(X.shape[1])]
            for s in range(0, X.shape[0], step)
        ]
        return np.vstack([p[0] for p in parts]), np.vstack([p[1] for p in parts])

    def _index_radius(self, X, radius, sort, rows=None):
        """``self._index.radius_neighbors``; a large sparse query goes in dense blocks of rows."""
        if X is None or not issparse(X) or self._index.sparse_queries:
            return self._index.radius_neighbors(X, radius, sort, self.n_jobs, rows=rows)
        step = _query_step(X.shape[1])
        lims, dists, inds = [np.zeros(1, dtype=np.int64)], [], []
        for s in range(0, X.shape[0], step):
            r = radius if np.ndim(radius) == 0 else radius[s : s + step]
            l, d, i = self._index.radius_neighbors(X[s : s + step].toarray(), r, sort, self.n_jobs)
            lims.append(l[1:] + lims[-1][-1])
            dists.append(d)
            inds.append(i)
        return np.concatenate(lims), np.concatenate(dists), np.concatenate(inds)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.pairwise = self._is_precomputed()
        tags.input_tags.positive_only = tags.input_tags.pairwise
        tags.input_tags.allow_nan = isinstance(self.metric, str) and self.metric == "nan_euclidean"
        return tags


class KNeighborsMixin:
    """k-nearest-neighbour queries (``kneighbors``, ``kneighbors_graph``)."""

    def kneighbors(self, X=None, n_neighbors=None, return_distance=True):
        """Find the K-neighbors of a point.

        Returns indices of and distances to the neighbors of each point, closest first; equal
        distances are ordered by the lower index.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_queries, n_features), \
            or (n_queries, n_indexed) if metric == 'precomputed', default=None
            The query point or points (sparse input is densified).
            If not provided, neighbors of each indexed point are returned.
            In this case, the query point is not considered its own neighbor.

        n_neighbors : int, default=None
            Number of neighbors required for each sample. The default is the
            value passed to the constructor.

        return_distance : bool, default=True
            Whether or not to return the distances.

        Returns
        -------
        neigh_dist : ndarray of shape (n_queries, n_neighbors)
            Distances to the neighbours, in the fitted data's float dtype (float32 stays
            float32). Only present if ``return_distance=True``.

        neigh_ind : ndarray of shape (n_queries, n_neighbors)
            Indices of the nearest points in the population matrix.

        Examples
        --------
        >>> from knnkit.neighbors import NearestNeighbors
        >>> samples = [[0., 0., 0.], [0., .5, 0.], [1., 1., .5]]
        >>> neigh = NearestNeighbors(n_neighbors=1).fit(samples)
        >>> print(neigh.kneighbors([[1., 1., 1.]]))
        (array([[0.5]]), array([[2]]))
        >>> neigh.kneighbors(n_neighbors=1, return_distance=False)  # X=None: leave self out
        array([[1],
               [0],
               [1]])
        """
        out = self._output(X)
        result = self._kneighbors(X, n_neighbors, return_distance)
        return tuple(map(out, result)) if return_distance else out(result)

    def _kneighbors(self, X, n_neighbors, return_distance=True):
        """:meth:`kneighbors` in the engine's own arrays: tensors on the device for a device
        engine, numpy otherwise."""
        check_is_fitted(self)

        if n_neighbors is None:
            n_neighbors = self.n_neighbors
        elif n_neighbors <= 0:
            raise ValueError(f"Expected n_neighbors > 0. Got {int(n_neighbors)}")
        elif not isinstance(n_neighbors, numbers.Integral):
            raise TypeError(
                f"n_neighbors does not take {type(n_neighbors)} value, enter integer value"
            )
        if n_neighbors is None:
            raise ValueError(
                "n_neighbors is None: pass n_neighbors to kneighbors or set it in the constructor"
            )

        query_is_train = X is None
        if query_is_train:
            n_queries = self.n_samples_fit_
            # one extra neighbour: the sample itself, removed below
            n_neighbors += 1
        else:
            X = self._validate_query(X)
            n_queries = X.shape[0]

        n_samples_fit = self.n_samples_fit_
        if n_neighbors > n_samples_fit:
            if query_is_train:
                n_neighbors -= 1
                inequality_str = "n_neighbors < n_samples_fit"
            else:
                inequality_str = "n_neighbors <= n_samples_fit"
            raise ValueError(
                f"Expected {inequality_str}, but "
                f"n_neighbors = {n_neighbors}, n_samples_fit = {n_samples_fit}, "
                f"n_samples = {n_queries}"
            )

        neigh_dist, neigh_ind = self._index_kneighbors(X, n_neighbors)

        if query_is_train:
            # Drop each sample from its own list. Corner case (as scikit-learn): when a sample has
            # more exact duplicates than neighbours asked for, it may be missing from its own
            # list; then the first neighbour (a duplicate) is dropped instead. An approximate
            # search may also miss the sample itself: then its farthest neighbour is dropped.
            # (written for numpy arrays and torch tensors alike)
            sample_range = self._index.arrays.arange(n_queries)[:, None]
            sample_mask = neigh_ind != sample_range
            dup_gr_nbrs = sample_mask.all(1)
            drop = -1 if self._index.approximate else 0
            sample_mask[:, drop][dup_gr_nbrs] = False
            neigh_ind = neigh_ind[sample_mask].reshape(n_queries, n_neighbors - 1)
            if return_distance:
                neigh_dist = neigh_dist[sample_mask].reshape(n_queries, n_neighbors - 1)

        if return_distance:
            return neigh_dist, neigh_ind
        return neigh_ind

    def kneighbors_graph(self, X=None, n_neighbors=None, mode="connectivity"):
        """Compute the (weighted) graph of k-Neighbors for points in X.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_queries, n_features), \
            or (n_queries, n_indexed) if metric == 'precomputed', default=None
            The query point or points.
            If not provided, neighbors of each indexed point are returned.
            In this case, the query point is not considered its own neighbor.

        n_neighbors : int, default=None
            Number of neighbors for each sample. The default is the value
            passed to the constructor.

        mode : {'connectivity', 'distance'}, default='connectivity'
            Type of returned matrix: 'connectivity' will return the
            connectivity matrix with ones and zeros, in 'distance' the
            edges are distances between points.

        Returns
        -------
        A : sparse-matrix of shape (n_queries, n_samples_fit)
            ``A[i, j]`` gives the weight of the edge connecting ``i`` to ``j``, in CSR format.

        Examples
        --------
        >>> from knnkit.neighbors import NearestNeighbors
        >>> neigh = NearestNeighbors(n_neighbors=2).fit([[0], [3], [1]])
        >>> neigh.kneighbors_graph([[0], [3], [1]]).toarray()
        array([[1., 0., 1.],
               [0., 1., 1.],
               [1., 0., 1.]])
        """
        check_is_fitted(self)
        if n_neighbors is None:
            n_neighbors = self.n_neighbors

        if mode == "connectivity":
            A_ind = host(self._kneighbors(X, n_neighbors, return_distance=False))
            n_queries = A_ind.shape[0]
            A_data = np.ones(n_queries * n_neighbors)
        elif mode == "distance":
            A_data, A_ind = map(host, self._kneighbors(X, n_neighbors, return_distance=True))
            A_data = np.ravel(A_data)
        else:
            raise ValueError(
                'Unsupported mode, must be one of "connectivity", '
                f'or "distance" but got "{mode}" instead'
            )

        n_queries = A_ind.shape[0]
        n_nonzero = n_queries * n_neighbors
        A_indptr = np.arange(0, n_nonzero + 1, n_neighbors)
        graph = csr_array((A_data, A_ind.ravel(), A_indptr), shape=(n_queries, self.n_samples_fit_))
        return _align_sparse(graph)


class RadiusNeighborsMixin:
    """Radius queries (``radius_neighbors``, ``radius_neighbors_graph``)."""

    def _check_radius(self, radius, n_queries):
        """The validated radius: a float, or a float64 array with one radius per query."""
        if radius is None:
            radius = self.radius
        if radius is None:
            raise ValueError(
                "radius is None: pass radius to radius_neighbors or set it in the constructor"
            )
        radius = host(radius)
        if np.ndim(radius) == 0:
            try:
                radius = float(radius)
            except (TypeError, ValueError):
                raise TypeError(f"radius must be a real number, got {radius!r}") from None
            if np.isnan(radius):
                raise ValueError("radius must be a number >= 0, got nan")
            if radius < 0:
                raise ValueError(f"radius == {float(radius)}, must be >= 0.")
            return radius
        radius = np.asarray(radius, dtype=np.float64)
        if radius.shape != (n_queries,):
            raise ValueError(
                f"radius: expected a number or one radius per query, shape ({n_queries},); "
                f"got shape {radius.shape}"
            )
        if np.isnan(radius).any() or (radius < 0).any():
            raise ValueError("radius: every radius must be >= 0 (and not NaN)")
        return radius

    def _radius_csr(self, X, radius, sort_results):
        """Validated radius search as CSR ``(lims, dist, ind)``, self excluded when X is None."""
        check_is_fitted(self)
        query_is_train = X is None
        if not query_is_train:
            X = self._validate_query(X)
        n_queries = self.n_samples_fit_ if query_is_train else X.shape[0]
        radius = self._check_radius(radius, n_queries)
        lims, dist, ind = self._index_radius(X, radius, sort_results)
        if query_is_train:
            lims, dist, ind = self._index.arrays.drop_self(lims, dist, ind, 0)
        return lims, dist, ind

    def _radius_blocks(self, X, radius, sort_results=False):
        """The radius search of :meth:`_radius_csr`, one block of queries at a time.

        Validates ``X`` and ``radius`` at once and returns ``(n_queries, blocks)``, where
        ``blocks`` yields ``(start, stop, lims, dist, ind)`` for query rows ``start:stop``. A
        block holds at most ``working_memory`` worth of neighbours even if every fitted row is
        within reach, so ``predict`` on many queries with a large radius stays bounded in memory.
        """
        check_is_fitted(self)
        query_is_train = X is None
        if not query_is_train:
            X = self._validate_query(X)
        n_queries = self.n_samples_fit_ if query_is_train else X.shape[0]
        radius = self._check_radius(radius, n_queries)
        budget = int(get_config()["working_memory"] * 2**20)
        step = max(1, budget // (_BYTES_PER_NEIGHBOUR * max(self.n_samples_fit_, 1)))

        def blocks():
            for start in range(0, n_queries, step):
                stop = min(start + step, n_queries)
                r = radius if np.ndim(radius) == 0 else radius[start:stop]
                if query_is_train:
                    lims, dist, ind = self._index_radius(
                        None, r, sort_results, rows=slice(start, stop)
                    )
                    lims, dist, ind = self._index.arrays.drop_self(lims, dist, ind, start)
                else:
                    lims, dist, ind = self._index_radius(X[start:stop], r, sort_results)
                yield start, stop, host(lims), host(dist), host(ind)

        return n_queries, blocks()

    def radius_neighbors(
        self, X=None, radius=None, return_distance=True, sort_results=False, *, return_csr=False
    ):
        """Find the neighbors within a given radius of a point or points.

        Return the indices and distances of each point from the dataset lying in a ball with
        size ``radius`` around the points of the query array. Points lying on the boundary are
        included in the results. Without ``sort_results`` the neighbours of each query come in
        index order.

        ``return_csr=True`` (a knnkit extra) returns the flat, CSR-style result instead of
        scikit-learn's arrays of arrays: no Python object per query, as
        ``knnkit.FlatIndex.range_search``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of (n_samples, n_features), default=None
            The query point or points.
            If not provided, neighbors of each indexed point are returned.
            In this case, the query point is not considered its own neighbor.

        radius : float or array-like of shape (n_queries,), default=None
            Limiting distance of neighbors to return (one per query if an array). The default
            is the value passed to the constructor.

        return_distance : bool, default=True
            Whether or not to return the distances.

        sort_results : bool, default=False
            If True, the distances and indices will be sorted by increasing distances (ties by
            index) before being returned. If `return_distance=False`, setting
            `sort_results=True` will result in an error.

        return_csr : bool, default=False
            Return ``(lims, neigh_dist, neigh_ind)`` (``(lims, neigh_ind)`` without distances):
            flat arrays where the neighbours of query ``i`` are
            ``neigh_ind[lims[i]:lims[i + 1]]``, ``lims`` of shape (n_queries + 1,), int64.

        Returns
        -------
        neigh_dist : ndarray of shape (n_samples,) of arrays
            Distances to the neighbours of each query (fitted dtype). Only present if
            ``return_distance=True``.

        neigh_ind : ndarray of shape (n_samples,) of arrays
            Indices of the points within ``radius`` of each query.

        lims : ndarray of shape (n_queries + 1,)
            Only with ``return_csr=True``, first: where each query's neighbours start and end
            in the flat ``neigh_dist`` and ``neigh_ind``.

        Examples
        --------
        >>> import numpy as np
        >>> from knnkit.neighbors import NearestNeighbors
        >>> samples = [[0., 0., 0.], [0., .5, 0.], [1., 1., .5]]
        >>> neigh = NearestNeighbors(radius=1.6).fit(samples)
        >>> dist, ind = neigh.radius_neighbors([[1., 1., 1.]])
        >>> print(np.asarray(dist[0]))
        [1.5 0.5]
        >>> print(np.asarray(ind[0]))
        [1 2]
        >>> lims, dist, ind = neigh.radius_neighbors([[1., 1., 1.]], return_csr=True)
        >>> lims, ind
        (array([0, 2]), array([1, 2]))
        """
        if sort_results and not return_distance:
            raise ValueError("return_distance must be True if sort_results is True.")
        out = self._output(X)
        lims, dist, ind = self._radius_csr(X, radius, sort_results)
        if return_csr:
            return tuple(map(out, (lims, dist, ind) if return_distance else (lims, ind)))
        lims, dist, ind = host(lims), host(dist), host(ind)  # arrays of arrays: numpy
        neigh_ind = _ragged(ind, lims)
        if return_distance:
            return _ragged(dist, lims), neigh_ind
        return neigh_ind

    def radius_neighbors_graph(self, X=None, radius=None, mode="connectivity", sort_results=False):
        """Compute the (weighted) graph of Neighbors for points in X.

        Neighborhoods are restricted the points at a distance lower than radius.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features), default=None
            The query point or points.
            If not provided, neighbors of each indexed point are returned.
            In this case, the query point is not considered its own neighbor.

        radius : float, default=None
            Radius of neighborhoods. The default is the value passed to the
            constructor.

        mode : {'connectivity', 'distance'}, default='connectivity'
            Type of returned matrix: 'connectivity' will return the
            connectivity matrix with ones and zeros, in 'distance' the
            edges are distances between points.

        sort_results : bool, default=False
            If True, in each row of the result, the non-zero entries will be
            sorted by increasing distances. Only used with mode='distance'.

        Returns
        -------
        A : sparse-matrix of shape (n_queries, n_samples_fit)
            ``A[i, j]`` gives the weight of the edge connecting ``i`` to ``j``, in CSR format.

        Examples
        --------
        >>> from knnkit.neighbors import NearestNeighbors
        >>> neigh = NearestNeighbors(radius=1.5).fit([[0], [3], [1]])
        >>> neigh.radius_neighbors_graph([[0], [3], [1]]).toarray()
        array([[1., 0., 1.],
               [0., 1., 0.],
               [1., 0., 1.]])
        """
        check_is_fitted(self)
        if mode == "connectivity":
            lims, _, ind = map(host, self._radius_csr(X, radius, False))
            data = np.ones(len(ind))
        elif mode == "distance":
            lims, data, ind = map(host, self._radius_csr(X, radius, sort_results))
        else:
            raise ValueError(
                'Unsupported mode, must be one of "connectivity", '
                f'or "distance" but got "{mode}" instead'
            )
        graph = csr_array((data, ind, lims), shape=(len(lims) - 1, self.n_samples_fit_))
        return _align_sparse(graph)
