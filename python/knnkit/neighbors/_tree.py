"""``KDTree`` and ``BallTree``: scikit-learn's trees (same signatures, arrays and answers) on the
Rust engine, with queries run in parallel and the GIL released.

The tree is a set of flat numpy arrays, laid out exactly as scikit-learn lays them out: ``data``,
``idx_array`` (a permutation of the rows; node ``i`` owns ``idx_array[idx_start:idx_end]``),
``node_data`` (``idx_start, idx_end, is_leaf, radius`` per node; the children of node ``i`` are
``2i + 1`` and ``2i + 2``) and ``node_bounds`` (KD-tree: lower and upper corners of each node's
box, shape ``(2, n_nodes, d)``; ball tree: centroids, ``(1, n_nodes, d)``). The build replays
scikit-learn's median split step for step, so for float64 data these arrays equal scikit-learn's,
and so do the distances of every query. The tree also keeps a copy of the rows in tree order
(each leaf contiguous, packed eight rows at a time so that distances vectorise), which the
queries read.

Metrics: ``euclidean``, ``manhattan``, ``chebyshev`` and ``minkowski`` (any p ≥ 1, aliases
``l2``, ``cityblock``, ``l1``, ``infinity``, ``p``) run natively, on both trees. ``BallTree`` also
accepts every other metric scikit-learn's ``BallTree`` does (``seuclidean``, ``mahalanobis``,
``haversine``, ``canberra``, boolean metrics, weighted minkowski, Python callables, ...): those
are served by scikit-learn's own ``BallTree``, wrapped — the same answers at scikit-learn's
speed, single-threaded, in float64. ``KDTree`` with weighted minkowski takes the same path.

``KDTree`` and ``BallTree`` are subclasses of scikit-learn's (``isinstance(KDTree(X),
sklearn.neighbors.KDTree)`` holds, as code in the wild checks): every public method and attribute
is knnkit's own, so nothing runs through scikit-learn's base class, whose arrays stay empty (a
few bytes); scikit-learn's Cython code never reaches into a tree's C-level state from outside
its own estimators, which knnkit replaces.

Differences from scikit-learn, all deliberate:

- float32 data stays float32 (scikit-learn's ``KDTree`` converts it to float64): ``data`` is the
  float32 rows, and distances and densities come back as float32. They are *computed* as
  scikit-learn computes them, in float64 (the tree's working copy of the rows, its bounds and
  the queries are float64), so a float32 tree ranks neighbours, ties and near-ties included,
  exactly as scikit-learn's tree on the same values and as knnkit's exact engine, and only the
  returned values are rounded to float32.
- Every query method takes ``n_jobs`` (None: the tree's own ``n_jobs``, which defaults to all
  cores; -1: all cores; 1: one thread).
- ``kernel_density`` rejects a bandwidth ``h <= 0`` (scikit-learn returns NaN).
- Unsorted results (``sort_results=False``) of ``query`` come sorted anyway; ties at the same
  distance are ordered by row number.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import DistanceMetric

# scikit-learn's own trees, from the modules that define them (never rebound by
# ``knnkit.patch_sklearn``), serve the metrics the Rust engine does not compute.
from sklearn.neighbors._ball_tree import BallTree as SkBallTree
from sklearn.neighbors._kd_tree import KDTree as SkKDTree
from sklearn.utils import check_array

from knnkit import _core

#: The dtype of ``node_data`` (scikit-learn's ``NodeData``).
NODE_DATA_DTYPE = np.dtype(
    [("idx_start", np.intp), ("idx_end", np.intp), ("is_leaf", np.intp), ("radius", np.float64)]
)

_NATIVE_METRIC_IDS = [
    "euclidean",
    "l2",
    "minkowski",
    "p",
    "manhattan",
    "cityblock",
    "l1",
    "chebyshev",
    "infinity",
]
_BALL_ONLY_METRIC_IDS = [
    "seuclidean",
    "mahalanobis",
    "hamming",
    "canberra",
    "braycurtis",
    "jaccard",
    "dice",
    "rogerstanimoto",
    "russellrao",
    "sokalmichener",
    "sokalsneath",
    "haversine",
    "pyfunc",
]
_NATIVE_CLASSES = {
    "EuclideanDistance": "euclidean",
    "ManhattanDistance": "manhattan",
    "ChebyshevDistance": "chebyshev",
    "MinkowskiDistance": "minkowski",
}
# Metric classes served by scikit-learn's own trees (weighted minkowski, and the ball tree's
# non-minkowski metrics).
_FALLBACK_CLASSES = {
    "kd_tree": {"MinkowskiDistance"},
    "ball_tree": {
        "MinkowskiDistance",
        "SEuclideanDistance",
        "MahalanobisDistance",
        "HammingDistance",
        "CanberraDistance",
        "BrayCurtisDistance",
        "JaccardDistance",
        "DiceDistance",
        "RogersTanimotoDistance",
        "RussellRaoDistance",
        "SokalMichenerDistance",
        "SokalSneathDistance",
        "HaversineDistance",
        "PyFuncDistance",
        "WMinkowskiDistance",
    },
}
_KERNELS = ("gaussian", "tophat", "epanechnikov", "exponential", "linear", "cosine")


def _metric_class(dm: Any) -> str:
    name = type(dm).__name__
    return name[:-2] if name.endswith(("64", "32")) else name


def _resolve_metric(metric: Any, kwargs: dict[str, Any]) -> tuple[str, float] | None:
    """The native (name, p) of a metric, or None when only scikit-learn can compute it.

    Raises scikit-learn's errors for unknown metrics and bad parameters.
    """
    if isinstance(metric, DistanceMetric):
        dm = metric
    elif callable(metric):
        return None
    else:
        dm = DistanceMetric.get_metric(metric, **kwargs)
    name = _NATIVE_CLASSES.get(_metric_class(dm))
    if name is None:
        return None
    p, w = dm.__getstate__()[:2]
    if name == "minkowski" and np.size(w) and not np.all(np.asarray(w) == 1.0):
        return None  # weighted minkowski
    return name, float(p)


class _BinaryTree:
    """Shared implementation of :class:`KDTree` and :class:`BallTree`."""

    _kind = ""
    valid_metrics: list[str] = []

    def __init__(
        self,
        X: Any,
        leaf_size: int = 40,
        metric: Any = "minkowski",
        sample_weight: Any = None,
        *,
        n_jobs: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.n_jobs = n_jobs
        self._fallback = None
        if isinstance(leaf_size, (bool, np.bool_)) or not isinstance(leaf_size, (int, np.integer)):
            raise TypeError(f"leaf_size must be an integer, got {leaf_size!r}")
        if leaf_size < 1:
            raise ValueError("leaf_size must be greater than or equal to 1")
        try:
            native = _resolve_metric(metric, kwargs)
        except ValueError as e:
            if not isinstance(metric, str) or metric in self.valid_metrics:
                raise
            # scikit-learn's "Unrecognized metric 'x'", plus what this tree accepts.
            raise ValueError(f"{e}; {self._invalid_metric_message(metric)}") from None
        if native is None:
            self._build_fallback(X, leaf_size, metric, sample_weight, kwargs)
            return
        self._metric, self._p = native
        data = check_array(X, dtype=[np.float64, np.float32], order="C")
        if data.size == 0:
            raise ValueError("X is an empty array")
        weights = None
        if sample_weight is not None:
            weights = np.ascontiguousarray(sample_weight, dtype=np.float64)
            if weights.shape != (data.shape[0],):
                raise ValueError(
                    f"sample_weight: expected shape ({data.shape[0]},), got {weights.shape}"
                )
        # built and searched in float64 whatever the data's type (scikit-learn's arithmetic)
        idx, info, radius, bounds, blocks = _core.tree_build(
            np.ascontiguousarray(data, dtype=np.float64),
            self._kind,
            int(leaf_size),
            self._metric,
            self._p,
            weights,
            n_jobs,
        )
        self._set_arrays(data, idx, info, radius, bounds, blocks, weights, int(leaf_size))
        n_levels = int(np.log2(len(info) + 1))
        # scikit-learn counts the ball tree's radius computations (one per point and level).
        self._n_calls = data.shape[0] * n_levels if self._kind == "ball_tree" else 0
        self._stats = (0, 0, 0)

    # -- construction helpers ---------------------------------------------------------------

    def _build_fallback(self, X, leaf_size, metric, sample_weight, kwargs) -> None:
        """Wraps scikit-learn's tree for the metrics the Rust engine does not compute."""
        if isinstance(metric, DistanceMetric):
            cls_name = _metric_class(metric)
        elif callable(metric):
            cls_name = "PyFuncDistance"
        else:
            cls_name = _metric_class(DistanceMetric.get_metric(metric, **kwargs))
        valid = _FALLBACK_CLASSES[self._kind]
        if cls_name not in valid:
            raise ValueError(self._invalid_metric_message(metric))
        cls = SkBallTree if self._kind == "ball_tree" else SkKDTree
        self._fallback = cls(
            X, leaf_size=leaf_size, metric=metric, sample_weight=sample_weight, **kwargs
        )

    @classmethod
    def wrap(cls, tree: Any) -> _BinaryTree:
        """A knnkit tree that answers with scikit-learn's fitted ``tree`` (of the same kind)."""
        self = cls.__new__(cls)
        self.n_jobs = None
        self._fallback = tree
        return self

    def _invalid_metric_message(self, metric: Any) -> str:
        name = metric if isinstance(metric, str) else type(metric).__name__
        tree = type(self).__name__
        return (
            f"metric {name!r} is not valid for {tree}: expected one of "
            f"{self.valid_metrics} ({tree}.valid_metrics)"
        )

    def _set_arrays(self, data, idx, info, radius, bounds, blocks, weights, leaf_size) -> None:
        self._data = data
        self._idx_array = np.ascontiguousarray(idx, dtype=np.intp)
        self._node_info = np.ascontiguousarray(info, dtype=np.int64)
        self._node_radius = np.ascontiguousarray(radius, dtype=np.float64)
        self._node_bounds = np.ascontiguousarray(bounds, dtype=np.float64)
        self._blocks = np.ascontiguousarray(blocks, dtype=np.float64)
        self._sample_weight = None if weights is None else weights.astype(data.dtype, copy=False)
        self._tree_weights = (
            None if weights is None else np.asarray(weights, dtype=np.float64)[self._idx_array]
        )
        self._leaf_size = leaf_size
        # The queries read the private copies; keep the public arrays consistent with them.
        for a in (self._idx_array, self._node_bounds, self._blocks):
            a.setflags(write=False)

    def _state(self) -> tuple:
        d = self._data.shape[1]
        return (
            self._kind,
            self._metric,
            self._p,
            self._leaf_size,
            self._blocks,
            self._idx_array.astype(np.int64, copy=False),
            self._node_info,
            self._node_radius,
            self._node_bounds.reshape(-1, d),
            self._tree_weights,
        )

    def _jobs(self, n_jobs: int | None) -> int | None:
        return self.n_jobs if n_jobs is None else n_jobs

    def _check_X(self, X: Any) -> np.ndarray:
        X = check_array(X, dtype=np.float64, order="C")  # float64, as the tree computes
        if X.shape[X.ndim - 1] != self._data.shape[1]:
            raise ValueError("query data dimension must match training data dimension")
        return X

    # -- attributes ---------------------------------------------------------------------------

    @property
    def data(self) -> np.ndarray:
        """The training data, shape ``(n_samples, n_features)``."""
        if self._fallback is not None:
            return self._fallback.get_arrays()[0]
        return self._data

    @property
    def idx_array(self) -> np.ndarray:
        """Row numbers in tree order: node ``i`` owns ``idx_array[idx_start:idx_end]``."""
        if self._fallback is not None:
            return self._fallback.get_arrays()[1]
        return self._idx_array

    @property
    def node_data(self) -> np.ndarray:
        """Per node: ``idx_start``, ``idx_end``, ``is_leaf``, ``radius`` (structured array)."""
        if self._fallback is not None:
            return self._fallback.get_arrays()[2]
        out = np.empty(len(self._node_radius), dtype=NODE_DATA_DTYPE)
        out["idx_start"] = self._node_info[:, 0]
        out["idx_end"] = self._node_info[:, 1]
        out["is_leaf"] = self._node_info[:, 2]
        out["radius"] = self._node_radius
        return out

    @property
    def node_bounds(self) -> np.ndarray:
        """KD-tree: ``(2, n_nodes, d)`` box corners; ball tree: ``(1, n_nodes, d)`` centroids."""
        if self._fallback is not None:
            return self._fallback.get_arrays()[3]
        # in the data's type (the tree keeps them in float64, the type it computes in)
        return self._node_bounds.astype(self._data.dtype, copy=False)

    @property
    def sample_weight(self) -> np.ndarray | None:
        if self._fallback is not None:
            sw = self._fallback.sample_weight
            return None if sw is None else np.asarray(sw)
        return self._sample_weight

    @property
    def sum_weight(self) -> float:
        if self._fallback is not None:
            return self._fallback.sum_weight
        if self._sample_weight is None:
            return float(self._data.shape[0])
        return float(np.sum(self._sample_weight))

    def get_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(data, idx_array, node_data, node_bounds)``."""
        if self._fallback is not None:
            return self._fallback.get_arrays()
        return self.data, self.idx_array, self.node_data, self.node_bounds

    def get_n_calls(self) -> int:
        """Distance computations since the tree was built (or since :meth:`reset_n_calls`)."""
        if self._fallback is not None:
            return self._fallback.get_n_calls()
        return self._n_calls

    def reset_n_calls(self) -> None:
        """Resets the distance-computation counter to 0."""
        if self._fallback is not None:
            self._fallback.reset_n_calls()
        else:
            self._n_calls = 0

    def get_tree_stats(self) -> tuple[int, int, int]:
        """``(n_trims, n_leaves, n_splits)`` of the last :meth:`query`."""
        if self._fallback is not None:
            return self._fallback.get_tree_stats()
        return self._stats

    # -- queries ------------------------------------------------------------------------------

    def query(
        self,
        X: Any,
        k: int = 1,
        return_distance: bool = True,
        dualtree: bool = False,
        breadth_first: bool = False,
        sort_results: bool = True,
        *,
        n_jobs: int | None = None,
    ):
        """The ``k`` nearest neighbours of each row of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
        k : int, default=1
            Number of neighbours; at most the number of training points.
        return_distance : bool, default=True
            Return ``(distances, indices)`` rather than ``indices``.
        dualtree : bool, default=False
            Build a tree over the queries and traverse both (same results).
        breadth_first : bool, default=False
            Visit nodes nearest-first from a priority queue (same results).
        sort_results : bool, default=True
            Accepted for compatibility; results always come closest first.
        n_jobs : int or None
            Threads (None: the tree's ``n_jobs``).

        Returns
        -------
        distances : ndarray of shape (n_queries, k), the tree's dtype
        indices : ndarray of shape (n_queries, k), intp
        """
        if self._fallback is not None:
            return self._fallback.query(
                X, k, return_distance, dualtree, breadth_first, sort_results
            )
        X = self._check_X(X)
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"k must be an integer, got {k!r}")
        if self._data.shape[0] < k:
            raise ValueError("k must be less than or equal to the number of training points")
        if k < 0:
            raise ValueError(f"k must be non-negative, got {k}")
        dist, ind, stats = _core.tree_query(
            self._state(), X, int(k), bool(breadth_first), bool(dualtree), self._jobs(n_jobs)
        )
        self._n_calls += stats[0]
        self._stats = tuple(int(s) for s in stats[1:])
        ind = ind.astype(np.intp, copy=False)
        dist = dist.astype(self._data.dtype, copy=False)
        return (dist, ind) if return_distance else ind

    def query_radius(
        self,
        X: Any,
        r: Any,
        return_distance: bool = False,
        count_only: bool = False,
        sort_results: bool = False,
        *,
        n_jobs: int | None = None,
    ):
        """Neighbours within distance ``r`` (a number, or one per row of ``X``).

        Returns
        -------
        count : ndarray of shape (n_queries,), if ``count_only``
        ind : object ndarray of shape (n_queries,) of intp arrays
        (ind, dist) : if ``return_distance``; sorted by distance if ``sort_results``,
            otherwise in tree order (scikit-learn's order).
        """
        if self._fallback is not None:
            return self._fallback.query_radius(X, r, return_distance, count_only, sort_results)
        if count_only and return_distance:
            raise ValueError("count_only and return_distance cannot both be true")
        if sort_results and not return_distance:
            raise ValueError("return_distance must be True if sort_results is True")
        lims, ind, dist = self._query_radius_csr(
            X, r, return_distance, count_only, sort_results, n_jobs
        )
        if count_only:
            return np.diff(lims).astype(np.intp)
        ind = ind.astype(np.intp, copy=False)
        bounds = lims[1:-1]
        ind_out = _ragged(np.split(ind, bounds))
        if return_distance:
            return ind_out, _ragged(np.split(dist, bounds))
        return ind_out

    def _query_radius_csr(
        self,
        X: Any,
        r: Any,
        return_distance: bool = True,
        count_only: bool = False,
        sort_results: bool = False,
        n_jobs: int | None = None,
        cast: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`query_radius` as flat CSR arrays ``(lims, indices, distances)`` (int64
        ``lims`` and indices; distances empty unless ``return_distance``), without one Python
        object per query. What the estimators' tree search reads (with ``cast=False``: the
        float64 distances the tree computed, which it orders by, before the rounding)."""
        if self._fallback is not None:
            if count_only:
                counts = self._fallback.query_radius(X, r, count_only=True)
                lims = np.zeros(len(counts) + 1, dtype=np.int64)
                np.cumsum(counts, out=lims[1:])
                return lims, np.empty(0, np.int64), np.empty(0)
            if return_distance:
                ind, dist = self._fallback.query_radius(
                    X, r, return_distance=True, sort_results=sort_results
                )
            else:
                ind, dist = self._fallback.query_radius(X, r), None
            lims = np.zeros(len(ind) + 1, dtype=np.int64)
            np.cumsum([len(i) for i in ind], out=lims[1:])
            flat_ind = np.concatenate(ind).astype(np.int64) if len(ind) else np.empty(0, np.int64)
            flat_dist = np.empty(0)
            if dist is not None and len(dist):
                flat_dist = np.concatenate(dist)
            return lims, flat_ind, flat_dist
        X = self._check_X(X)
        r = np.atleast_1d(np.asarray(r, dtype=np.float64))
        if r.shape == (1,):
            radius: Any = float(r[0])
        elif r.shape != X.shape[: X.ndim - 1]:
            raise ValueError("r must be broadcastable to X.shape")
        else:
            radius = np.ascontiguousarray(r, dtype=np.float64)
        lims, ind, dist, stats = _core.tree_query_radius(
            self._state(),
            X,
            radius,
            bool(return_distance),
            bool(count_only),
            bool(sort_results),
            self._jobs(n_jobs),
        )
        self._n_calls += stats[0]
        dist = np.asarray(dist)
        if cast:  # else float64, as computed (for callers that order by them first)
            dist = dist.astype(self._data.dtype, copy=False)
        return np.asarray(lims, dtype=np.int64), np.asarray(ind, dtype=np.int64), dist

    def kernel_density(
        self,
        X: Any,
        h: float,
        kernel: str = "gaussian",
        atol: float = 0,
        rtol: float = 1e-8,
        breadth_first: bool = True,
        return_log: bool = False,
        *,
        n_jobs: int | None = None,
    ) -> np.ndarray:
        """Kernel density estimate at each row of ``X`` (not divided by the number of points),
        within ``atol + rtol * estimate``.

        ``kernel``: one of ``gaussian``, ``tophat``, ``epanechnikov``, ``exponential``,
        ``linear``, ``cosine``. Returns the tree's dtype; the log of it with ``return_log``.
        """
        if self._fallback is not None:
            return self._fallback.kernel_density(
                X, h, kernel, atol, rtol, breadth_first, return_log
            )
        if kernel not in _KERNELS:
            raise ValueError(f"kernel = '{kernel}' not recognized")
        h = float(h)
        if not (h > 0 and np.isfinite(h)):
            raise ValueError(f"h: expected a positive bandwidth, got {h}")
        X = self._check_X(X)
        log_density, stats = _core.tree_kernel_density(
            self._state(),
            X,
            h,
            kernel,
            float(atol),
            float(rtol),
            bool(breadth_first),
            self._jobs(n_jobs),
        )
        self._n_calls += stats[0]
        log_density = log_density.astype(self._data.dtype, copy=False)
        return log_density if return_log else np.exp(log_density)

    def two_point_correlation(
        self, X: Any, r: Any, dualtree: bool = False, *, n_jobs: int | None = None
    ) -> np.ndarray:
        """For each radius of ``r`` (in ascending order, as scikit-learn returns them), the
        number of pairs (row of ``X``, training point) at distance ``<= r``."""
        if self._fallback is not None:
            return self._fallback.two_point_correlation(X, r, dualtree)
        X = self._check_X(X)
        r = np.atleast_1d(np.asarray(r, dtype=np.float64))
        if r.ndim != 1:
            raise ValueError("r must be a 1-dimensional array")
        r = np.ascontiguousarray(np.sort(r))
        counts, stats = _core.tree_two_point_correlation(
            self._state(), X, r, bool(dualtree), self._jobs(n_jobs)
        )
        self._n_calls += stats[0]
        return counts.astype(np.intp, copy=False)

    # -- pickling -----------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        if self._fallback is not None:
            return {"fallback": self._fallback, "n_jobs": self.n_jobs}
        return {
            "data": self._data,
            "idx_array": self._idx_array,
            "node_data": self.node_data,
            "node_bounds": self._node_bounds,
            "leaf_size": self._leaf_size,
            "metric": self._metric,
            "p": self._p,
            "sample_weight": self._sample_weight,
            "n_calls": self._n_calls,
            "stats": self._stats,
            "n_jobs": self.n_jobs,
        }

    def __reduce__(self) -> tuple:
        # knnkit's state (scikit-learn's base class would pickle its own, empty, arrays)
        return (_new_tree, (type(self),), self.__getstate__())

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.n_jobs = state.get("n_jobs")
        self._fallback = state.get("fallback")
        if self._fallback is not None:
            return
        self._metric, self._p = state["metric"], state["p"]
        data = np.ascontiguousarray(state["data"])
        idx = np.ascontiguousarray(state["idx_array"], dtype=np.intp)
        if idx.shape != (data.shape[0],) or (
            idx.size and (idx.min() < 0 or idx.max() >= len(data))
        ):
            raise ValueError("idx_array: expected a permutation of the rows of data")
        nd = np.asarray(state["node_data"], dtype=NODE_DATA_DTYPE)
        info = np.stack([nd["idx_start"], nd["idx_end"], nd["is_leaf"]], axis=1)
        self._set_arrays(
            data,
            idx,
            info,
            nd["radius"],
            state["node_bounds"],
            _pack_blocks(np.asarray(data[idx], dtype=np.float64)),
            state["sample_weight"],
            int(state["leaf_size"]),
        )
        self._n_calls = state["n_calls"]
        self._stats = tuple(state["stats"])

    def __repr__(self) -> str:
        n, d = self.data.shape
        return f"{type(self).__name__}(n_samples={n}, n_features={d})"


def _new_tree(cls: type) -> _BinaryTree:
    """An empty tree of class ``cls`` for unpickling (its state is set next)."""
    return cls.__new__(cls)


def _pack_blocks(rows: np.ndarray) -> np.ndarray:
    """Rows in tree order packed as the Rust queries read them: blocks of 8 rows stored
    dimension-major, zero-padded, as a ``(ceil(n / 8) * 8, d)`` buffer."""
    n, d = rows.shape
    nb = -(-n // 8)
    padded = np.zeros((nb * 8, d), dtype=rows.dtype)
    padded[:n] = rows
    return np.ascontiguousarray(padded.reshape(nb, 8, d).transpose(0, 2, 1)).reshape(nb * 8, d)


def _ragged(parts: list[np.ndarray]) -> np.ndarray:
    out = np.empty(len(parts), dtype=object)
    for i, part in enumerate(parts):
        out[i] = part
    return out


class KDTree(_BinaryTree, SkKDTree):
    """KD-tree for fast nearest-neighbour queries (scikit-learn's ``KDTree``, on the Rust engine).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The points. float32 stays float32; other dtypes become float64.
    leaf_size : int, default=40
        A leaf holds between ``leaf_size`` and ``2 * leaf_size`` points. Does not change results.
    metric : str or DistanceMetric, default="minkowski"
        One of :attr:`valid_metrics` (with ``p`` for minkowski).
    sample_weight : array-like of shape (n_samples,), default=None
        Weights for :meth:`kernel_density`.
    n_jobs : int or None, keyword-only
        Threads for the build and, by default, for queries (None: all cores).
    **kwargs
        Metric parameters (``p``, ``w``).

    Examples
    --------
    >>> import numpy as np
    >>> from knnkit.neighbors import KDTree
    >>> X = np.random.RandomState(0).random_sample((10, 3))
    >>> tree = KDTree(X, leaf_size=2)
    >>> dist, ind = tree.query(X[:1], k=3)
    >>> ind
    array([[0, 3, 1]])
    >>> tree.query_radius(X[:1], r=0.3, count_only=True)
    array([3])
    """

    _kind = "kd_tree"
    valid_metrics = list(_NATIVE_METRIC_IDS)


class BallTree(_BinaryTree, SkBallTree):
    """Ball tree for fast nearest-neighbour queries (scikit-learn's ``BallTree``, on the Rust
    engine for the minkowski family; other metrics are served by scikit-learn's ``BallTree``).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The points. float32 stays float32 on the native metrics; other dtypes become float64.
    leaf_size : int, default=40
        A leaf holds between ``leaf_size`` and ``2 * leaf_size`` points. Does not change results.
    metric : str, DistanceMetric or callable, default="minkowski"
        One of :attr:`valid_metrics`; the non-minkowski ones (and callables) run on
        scikit-learn's ``BallTree``: same results, its speed.
    sample_weight : array-like of shape (n_samples,), default=None
        Weights for :meth:`kernel_density` (and the centroids).
    n_jobs : int or None, keyword-only
        Threads for the build and, by default, for queries (None: all cores).
    **kwargs
        Metric parameters.

    Examples
    --------
    >>> import numpy as np
    >>> from knnkit.neighbors import BallTree
    >>> X = np.random.RandomState(0).random_sample((10, 3))
    >>> BallTree(X, leaf_size=2).query(X[:1], k=3, return_distance=False)
    array([[0, 3, 1]])
    """

    _kind = "ball_tree"
    valid_metrics = _NATIVE_METRIC_IDS + _BALL_ONLY_METRIC_IDS


__all__ = ["NODE_DATA_DTYPE", "BallTree", "KDTree", "SkBallTree", "SkKDTree"]
