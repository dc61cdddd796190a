"""Tree search behind the estimators: ``algorithm="kd_tree"`` and ``"ball_tree"`` (and ``"auto"``
wherever scikit-learn's ``auto`` picks a tree).

Design: :func:`choose_fit_method` replays scikit-learn 1.9's choice in ``NeighborsBase._fit``
line by line (sparse input, ``precomputed``, more than 15 features, ``n_neighbors >= n / 2``,
minkowski with p < 1 → ``"brute"``; weighted minkowski → ``"ball_tree"``; a metric of
``KDTree.valid_metrics`` → ``"kd_tree"``; a callable or a metric of ``BallTree.valid_metrics`` →
``"ball_tree"``; anything else → ``"brute"``), so ``_fit_method`` always equals scikit-learn's.
One adapter, :class:`TreeSearch`, puts a knnkit :class:`~knnkit.neighbors.KDTree` /
:class:`~knnkit.neighbors.BallTree` behind the estimators' engine protocol
(:class:`~knnkit.neighbors._engine.SearchEngine`), as
:class:`~knnkit.neighbors._ann.ApproximateSearch` does for the approximate indexes; the
estimators hold it as ``_index`` and the tree itself as ``_tree`` (scikit-learn's attribute).

The tree is built as scikit-learn builds it: on the fitted rows, with ``leaf_size``,
``effective_metric_`` and ``effective_metric_params_``; queries run on the Rust engine with
``n_jobs`` threads (the minkowski family; the ball tree's other metrics run on scikit-learn's
own ``BallTree``, wrapped by knnkit's, single-threaded).

Invariants (the same as the exact engine's): distances in the fitted float dtype (float32 stays
float32; other dtypes become float64), indices int64, k-nearest rows sorted closest first with
ties by the lower index, radius results in index order unless sorted (then by distance, ties by
index). Scikit-learn's trees return unsorted radius results in tree order; the sets are the
same.

Cost: fit O(n log(n / leaf_size) d); a query O(log n) node visits in low dimension, degrading
towards a full scan as d grows (which is why ``auto`` takes brute force above 15 features).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.sparse import issparse
from sklearn.neighbors import VALID_METRICS

from knnkit.neighbors._search import NativeEngine, float_dtype
from knnkit.neighbors._tree import BallTree, KDTree, SkKDTree

if TYPE_CHECKING:
    from knnkit.neighbors._engine import EngineSpec

#: Tree classes by ``_fit_method``.
TREES = {"kd_tree": KDTree, "ball_tree": BallTree}


def choose_fit_method(
    algorithm: str,
    metric: Any,
    effective_metric: Any,
    effective_params: dict[str, Any],
    X: Any,
    n_neighbors: int | None,
) -> str:
    """scikit-learn's ``_fit_method`` for these parameters and fitted rows.

    Examples
    --------
    >>> X = np.zeros((100, 3))
    >>> choose_fit_method("auto", "minkowski", "euclidean", {}, X, 5)
    'kd_tree'
    >>> choose_fit_method("auto", "minkowski", "euclidean", {}, np.zeros((100, 16)), 5)
    'brute'
    >>> choose_fit_method("auto", "haversine", "haversine", {}, np.zeros((100, 2)), 5)
    'ball_tree'
    >>> choose_fit_method("auto", "cosine", "cosine", {}, X, 5)
    'brute'
    """
    if issparse(X):
        return "brute"
    if algorithm != "auto":
        return algorithm
    n, d = X.shape
    if (
        (isinstance(metric, str) and metric == "precomputed")
        or d > 15
        or (n_neighbors is not None and n_neighbors >= n // 2)
    ):
        return "brute"
    is_minkowski = isinstance(effective_metric, str) and effective_metric == "minkowski"
    p = effective_params.get("p") if is_minkowski else None
    if is_minkowski and p is not None and p < 1:
        return "brute"
    if is_minkowski and effective_params.get("w") is not None:
        return "ball_tree"  # KDTree takes no weights
    if isinstance(effective_metric, str) and effective_metric in VALID_METRICS["kd_tree"]:
        return "kd_tree"
    if callable(effective_metric) or (
        isinstance(effective_metric, str) and effective_metric in VALID_METRICS["ball_tree"]
    ):
        return "ball_tree"
    return "brute"


def _index_order(
    lims: np.ndarray, dist: np.ndarray, ind: np.ndarray, sort: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Each query's neighbours ordered by index, or by distance then index when ``sort``."""
    owner = np.repeat(np.arange(len(lims) - 1), np.diff(lims))
    order = np.lexsort((ind, dist, owner)) if sort else np.lexsort((ind, owner))
    return dist[order], ind[order]


class TreeSearch(NativeEngine):
    """A knnkit KD-tree or ball tree behind the estimators (a ``SearchEngine``).

    Parameters
    ----------
    algorithm : {"kd_tree", "ball_tree"}
    X : ndarray of shape (n_samples, n_features)
        The validated, dense training rows.
    leaf_size : int
    metric, metric_params :
        scikit-learn's ``effective_metric_`` and ``effective_metric_params_``.
    n_jobs : int or None
        Threads for the build and the queries (None: all cores).
    """

    def __init__(
        self,
        algorithm: str,
        X: np.ndarray,
        leaf_size: int,
        metric: Any,
        metric_params: dict[str, Any],
        n_jobs: int | None,
    ) -> None:
        self.algorithm = algorithm
        self.dtype = float_dtype(X.dtype)
        self.base = np.ascontiguousarray(X, dtype=self.dtype)
        self.n = self.base.shape[0]
        n_jobs = None if n_jobs is None else int(n_jobs)
        self.tree = TREES[algorithm](
            self.base, leaf_size=leaf_size, metric=metric, n_jobs=n_jobs, **metric_params
        )

    @classmethod
    def from_tree(cls, tree: Any) -> TreeSearch:
        """The engine over a tree built elsewhere (knnkit's, or scikit-learn's, which is then
        wrapped by knnkit's and queried as it is): what ``fit`` does with a tree as ``X``."""
        if not isinstance(tree, (KDTree, BallTree)):
            tree = (KDTree if isinstance(tree, SkKDTree) else BallTree).wrap(tree)
        self = cls.__new__(cls)
        self.algorithm = "kd_tree" if isinstance(tree, KDTree) else "ball_tree"
        data = np.asarray(tree.data)
        self.dtype = float_dtype(data.dtype)
        self.base = np.ascontiguousarray(data, dtype=self.dtype)
        self.n = self.base.shape[0]
        self.tree = tree
        return self

    @classmethod
    def build(cls, X: Any, spec: EngineSpec) -> TreeSearch:
        return cls(spec.fit_method, X, spec.leaf_size, spec.metric, spec.metric_params, spec.n_jobs)

    @property
    def fit_method(self) -> str:
        return self.algorithm

    def _queries(self, X: Any, rows: slice | None = None) -> np.ndarray:
        if X is None:
            return self.base if rows is None else self.base[rows]
        if issparse(X):  # a block of a large sparse query (see the estimators' _query_blocks)
            X = X.toarray()
        return np.ascontiguousarray(X, dtype=self.dtype)

    def kneighbors(
        self, X: np.ndarray | None, k: int, n_jobs: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(distances, indices)`` of shape (n_queries, k); ``X=None`` queries the fitted rows."""
        n_jobs = None if n_jobs is None else int(n_jobs)
        D, I = self.tree.query(self._queries(X), k=int(k), n_jobs=n_jobs)
        return D.astype(self.dtype, copy=False), I.astype(np.int64, copy=False)

    def radius_neighbors(
        self,
        X: np.ndarray | None,
        radius: Any,
        sort: bool,
        n_jobs: int | None,
        rows: slice | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSR ``(lims, distances, indices)`` of the rows within ``radius`` (<=) of each query.

        ``radius`` is a number or one number per query (validated, non-negative). ``X=None``
        queries the fitted rows (only those in ``rows``, a slice, when given).
        """
        n_jobs = None if n_jobs is None else int(n_jobs)
        Q = self._queries(X, rows)
        if Q.shape[0] == 0:
            return np.zeros(1, np.int64), np.empty(0, self.dtype), np.empty(0, np.int64)
        lims, ind, dist = self.tree._query_radius_csr(
            Q, radius, return_distance=True, sort_results=False, n_jobs=n_jobs, cast=False
        )
        # ordered by the float64 distances (as the other engines), then in the fitted dtype
        dist, ind = _index_order(lims, np.asarray(dist), ind, sort)
        return lims, dist.astype(self.dtype, copy=False), ind
