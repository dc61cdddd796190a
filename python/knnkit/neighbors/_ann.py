"""Approximate search behind the estimators: ``algorithm="hnsw"`` and ``algorithm="ivf"``.

Design: one table (:data:`ALGORITHMS`) maps each approximate algorithm to the ``algo_params`` it
accepts, their checks and a factory that builds and fills a knnkit index (``knnkit.HNSWIndex``,
``knnkit.IVFIndex``) from the fitted rows; one adapter (:class:`ApproximateSearch`) puts that
index behind the estimators' engine protocol (:class:`~knnkit.neighbors._engine.SearchEngine`),
so the estimators run unchanged on it. The adapter is the estimators' private fitted attribute
``_index`` and pickles with them (the indexes pickle).

Metrics: the indexes serve euclidean, sqeuclidean and cosine. A metric that the exact engine
computes as euclidean after a per-feature scaling or a linear map (minkowski with p=2, weighted
or not; seuclidean; mahalanobis) is served too, on the mapped rows (the same
:class:`~knnkit.neighbors._metrics.MetricPlan` as the exact engine). Anything else raises
``ValueError`` at fit, naming the supported metrics.

Invariants of the results (as the exact engine): distances in the fitted dtype (float32 stays
float32), indices int64, rows sorted closest first with ties by the lower index, radius results
in index order unless sorted. Distances are the exact distances of the neighbours found: when
the index computed them in float32 for float64 data, or from compressed codes, they are
recomputed from the fitted rows (cost O(k * n_features) per query). A query for which the index
returns fewer than k neighbours (possible for IVF when the probed lists hold fewer rows) is
answered by the exact engine instead, so every row holds k real neighbours.

Cost: fit builds the index (HNSW: graph insertion, parallel over ``n_jobs``; IVF: k-means on the
fitted rows, then assignment); queries cost what the index's search costs, plus the re-sort.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn import get_config

from knnkit import _metrics
from knnkit.neighbors._metrics import MetricPlan, effective_metric
from knnkit.neighbors._search import ExactSearch, NativeEngine, float_dtype

if TYPE_CHECKING:
    from knnkit.neighbors._engine import EngineSpec

#: The engine metrics the index itself computes for the estimators: the registry's approximate
#: metrics that are distances (scikit-learn has no similarity metric): euclidean, sqeuclidean,
#: cosine.
_INDEX_METRICS = frozenset(
    m for m in _metrics.names("approximate") if not _metrics.info(m)["similarity"]
)
#: Metric names (scikit-learn's, after ``effective_metric``) the approximate algorithms accept
#: when no metric parameter is given: those metrics and their aliases (``l2``).
_PLAIN_METRICS = _INDEX_METRICS | {a for a, m in _metrics.ALIASES.items() if m in _INDEX_METRICS}
#: Metrics served after the exact engine's linear map onto euclidean (parameters needed).
_MAPPED_METRICS = frozenset({"seuclidean", "mahalanobis"})
#: What error messages list as supported.
SUPPORTED_METRICS_TEXT = (
    "'euclidean' (also 'l2' and 'minkowski' with p=2, with or without weights w), "
    "'sqeuclidean', 'cosine', and 'seuclidean' / 'mahalanobis' (served as euclidean on "
    "linearly mapped rows)"
)


# -- algo_params ------------------------------------------------------------------------------


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if ok and value >= low and (high is None or value <= high):
        return int(value)
    bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
    raise ValueError(f"algo_params[{name!r}]: expected an integer {bounds}, got {value!r}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if isinstance(value, str) and value in choices:
        return value
    raise ValueError(f"algo_params[{name!r}]: expected one of {choices}, got {value!r}")


def _check_bool(name: str, value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ValueError(f"algo_params[{name!r}]: expected True or False, got {value!r}")


#: Per algorithm: each accepted ``algo_params`` key -> its check (returns the value or raises).
_HNSW_CHECKS = {
    "m": lambda v: _check_int("m", v, 2, 256),
    "ef_construction": lambda v: _check_int("ef_construction", v, 1),
    "ef_search": lambda v: _check_int("ef_search", v, 1),
    "codes": lambda v: _check_choice("codes", v, ("flat", "sq8", "sq4")),
    "seed": lambda v: _check_int("seed", v, 0),
}
_IVF_CHECKS = {
    "nlist": lambda v: _check_int("nlist", v, 1),
    "nprobe": lambda v: _check_int("nprobe", v, 1),
    "codes": lambda v: _check_choice("codes", v, ("flat", "sq8", "pq")),
    "pq_m": lambda v: _check_int("pq_m", v, 1),
    "nbits": lambda v: _check_int("nbits", v, 1, 8),
    "refine": lambda v: _check_bool("refine", v),
    "seed": lambda v: _check_int("seed", v, 0),
}


def default_nlist(n_samples: int) -> int:
    """IVF lists when ``nlist`` is not given: about sqrt(n), at least 1, at most n.

    Examples
    --------
    >>> [default_nlist(n) for n in (1, 2, 10, 1797, 1_000_000)]
    [1, 1, 3, 42, 1000]
    """
    return max(1, min(n_samples, round(math.sqrt(n_samples))))


def default_nprobe(nlist: int) -> int:
    """Lists probed when ``nprobe`` is not given: an eighth of them, at least 8 (at most all).

    Examples
    --------
    >>> [default_nprobe(n) for n in (3, 42, 1000)]
    [3, 8, 125]
    """
    return min(nlist, max(8, math.ceil(nlist / 8)))


def _ivf_class() -> Any:
    """``knnkit.IVFIndex``, or ImportError naming what is missing."""
    import knnkit

    cls = getattr(knnkit, "IVFIndex", None)
    if cls is None:
        try:
            from knnkit.index.ivf import IVFIndex as cls  # not exported yet
        except ImportError:
            cls = None
    if cls is None:
        raise ImportError(
            "algorithm='ivf' needs knnkit.IVFIndex, which this build of knnkit does not "
            "provide; use algorithm='hnsw' (approximate) or 'auto' (exact)"
        )
    return cls


def _build_hnsw(X: np.ndarray, metric: str, params: dict[str, Any], n_jobs: int | None) -> Any:
    from knnkit.index.hnsw import HNSWIndex

    return HNSWIndex(X.shape[1], metric=metric, **params)


def _build_ivf(X: np.ndarray, metric: str, params: dict[str, Any], n_jobs: int | None) -> Any:
    n_samples = X.shape[0]
    params = dict(params)
    nlist = params.pop("nlist", None)
    if nlist is None:
        nlist = default_nlist(n_samples)
    elif nlist > n_samples:
        raise ValueError(
            f"algo_params['nlist']={nlist}: IVF trains nlist centroids on the fitted rows and "
            f"needs nlist <= n_samples ({n_samples}); leave nlist out for about sqrt(n_samples)"
        )
    nprobe = params.pop("nprobe", None)
    nprobe = default_nprobe(nlist) if nprobe is None else min(nprobe, nlist)
    index = _ivf_class()(X.shape[1], metric=metric, nlist=nlist, nprobe=nprobe, **params)
    index.train(X, n_jobs=n_jobs)  # k-means (and codebooks) on the fitted rows
    return index


@dataclass(frozen=True)
class Algorithm:
    """An approximate algorithm: its accepted ``algo_params`` (with checks) and its factory
    ``build(X, metric, params, n_jobs) -> index``: an empty index, trained on ``X`` (the
    fitted rows as the index sees them) where it needs training."""

    checks: dict[str, Any]
    build: Any

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(sorted(self.checks))


#: algorithm name -> how to validate its parameters and build its index.
ALGORITHMS: dict[str, Algorithm] = {
    "hnsw": Algorithm(_HNSW_CHECKS, _build_hnsw),
    "ivf": Algorithm(_IVF_CHECKS, _build_ivf),
}
APPROXIMATE = frozenset(ALGORITHMS)


def check_algo_params(algorithm: str, algo_params: Any) -> dict[str, Any]:
    """The validated ``algo_params`` of an approximate algorithm (a new dict).

    Unknown keys and bad values raise ``ValueError`` naming the accepted keys or the expected
    values.

    Examples
    --------
    >>> check_algo_params("hnsw", {"m": 8, "ef_search": 32})
    {'m': 8, 'ef_search': 32}
    >>> check_algo_params("hnsw", {"M": 8})
    Traceback (most recent call last):
    ...
    ValueError: algo_params: unknown key(s) ['M'] for algorithm='hnsw'; accepted keys: codes, ef_construction, ef_search, m, seed
    """
    spec = ALGORITHMS[algorithm]
    if algo_params is None:
        return {}
    if not isinstance(algo_params, dict):
        raise TypeError(f"algo_params: expected a dict or None, got {type(algo_params).__name__}")
    unknown = sorted(str(key) for key in algo_params if key not in spec.checks)
    if unknown:
        raise ValueError(
            f"algo_params: unknown key(s) {unknown} for algorithm={algorithm!r}; "
            f"accepted keys: {', '.join(spec.keys)}"
        )
    return {key: spec.checks[key](value) for key, value in algo_params.items()}


def check_metric(algorithm: str, metric: Any, p: Any, metric_params: dict | None) -> None:
    """Raises ``ValueError`` unless an approximate algorithm serves this metric (by name; the
    metric's parameters are validated later, as for the exact engine)."""
    if isinstance(metric, str):
        name, params = effective_metric(metric, p, metric_params)
        if name in _PLAIN_METRICS and not params:
            return
        if name == "minkowski" and params.get("p") == 2:
            return
        if name in _MAPPED_METRICS:
            return
    shown = f"metric={metric!r}" + (f", p={p}" if metric == "minkowski" else "")
    if metric_params:
        shown += f", metric_params={metric_params!r}"
    raise ValueError(
        f"{shown}: algorithm={algorithm!r} supports only the metrics {SUPPORTED_METRICS_TEXT}; "
        "use algorithm='auto' (exact) for other metrics"
    )


# -- the search adapter -------------------------------------------------------------------------


def _index_metric(plan: MetricPlan, algorithm: str) -> str:
    if plan.kind == "native":
        if plan.engine_metric in _INDEX_METRICS:
            return plan.engine_metric
        if plan.engine_metric == "minkowski" and plan.engine_p == 2:
            return "euclidean"
    raise ValueError(
        f"algorithm={algorithm!r} supports only the metrics {SUPPORTED_METRICS_TEXT}; "
        "use algorithm='auto' (exact) for other metrics"
    )


def _sort_rows(D: np.ndarray, I: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row sorted by distance, ties by the lower index."""
    order = np.argsort(I, axis=1, kind="stable")
    D, I = np.take_along_axis(D, order, axis=1), np.take_along_axis(I, order, axis=1)
    order = np.argsort(D, axis=1, kind="stable")
    return np.take_along_axis(D, order, axis=1), np.take_along_axis(I, order, axis=1)


class ApproximateSearch(NativeEngine):
    """An approximate index behind the estimators (a ``SearchEngine``).

    Parameters
    ----------
    algorithm : {"hnsw", "ivf"}
    params : dict
        Validated ``algo_params`` (:func:`check_algo_params`).
    plan : MetricPlan
        The exact engine's plan for the metric; must be served (see the module docstring).
    X : ndarray of shape (n_samples, n_features)
        The validated, dense training rows.
    n_jobs : int or None
        Threads for building the index.
    """

    approximate = True
    query_blocks = False

    def __init__(
        self,
        algorithm: str,
        params: dict[str, Any],
        plan: MetricPlan,
        X: np.ndarray,
        n_jobs: int | None,
    ) -> None:
        self.algorithm = algorithm
        self.plan = plan
        self.metric = _index_metric(plan, algorithm)
        self.dtype = float_dtype(X.dtype)
        self.n = X.shape[0]
        self.base = plan.transform(X, self.dtype)
        n_jobs = None if n_jobs is None else int(n_jobs)
        try:
            index = ALGORITHMS[algorithm].build(self.base, self.metric, params, n_jobs)
        except (TypeError, ValueError) as e:
            raise ValueError(f"algo_params={params!r} for algorithm={algorithm!r}: {e}") from e
        index.add(self.base, n_jobs=n_jobs)
        self.index = index
        # The index's own distances are kept only where they are exact in the fitted dtype.
        exact_codes = algorithm == "hnsw" or (
            getattr(index, "codes", None) == "flat" or getattr(index, "refine", False) is True
        )
        self.recompute = self.dtype != np.float32 or not exact_codes
        self._exact: ExactSearch | None = None

    @classmethod
    def build(cls, X: Any, spec: EngineSpec) -> ApproximateSearch:
        return cls(spec.fit_method, spec.algo_params or {}, spec.plan, X, spec.n_jobs)

    @property
    def fit_method(self) -> str:
        return self.algorithm

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_exact"] = None  # rebuilt on demand
        return state

    # -- helpers --------------------------------------------------------------------------------

    def _queries(self, X: np.ndarray | None, rows: slice | None = None) -> np.ndarray:
        if X is None:
            return self.base if rows is None else self.base[rows]
        return self.plan.transform(X, self.dtype)

    def _exact_search(self) -> ExactSearch:
        """The exact engine over the mapped rows: answers queries the index left short."""
        if self._exact is None:
            self._exact = ExactSearch(MetricPlan("native", engine_metric=self.metric), self.base)
        return self._exact

    def _pair_distances(self, Q: np.ndarray, I: np.ndarray) -> np.ndarray:
        """Exact float64 distances between each query and its candidates ``I`` (n_queries, k)."""
        nq, k = I.shape
        out = np.empty((nq, k), dtype=np.float64)
        if nq == 0 or k == 0:
            return out
        budget = int(get_config()["working_memory"] * 2**20)
        step = max(1, budget // (8 * 3 * k * max(self.base.shape[1], 1)))
        for start in range(0, nq, step):
            stop = min(start + step, nq)
            q = np.asarray(Q[start:stop], dtype=np.float64)[:, None, :]
            x = np.asarray(self.base[np.maximum(I[start:stop], 0)], dtype=np.float64)
            if self.metric == "cosine":
                dot = np.einsum("qkd,qkd->qk", x, np.broadcast_to(q, x.shape))
                norms = np.linalg.norm(q, axis=2) * np.linalg.norm(x, axis=2)
                with np.errstate(invalid="ignore", divide="ignore"):
                    sim = np.where(norms > 0, dot / np.where(norms > 0, norms, 1.0), 0.0)
                out[start:stop] = np.clip(1.0 - sim, 0.0, 2.0)
            else:
                diff = x - q
                sq = np.einsum("qkd,qkd->qk", diff, diff)
                out[start:stop] = sq if self.metric == "sqeuclidean" else np.sqrt(sq)
        return out

    def _range_by_search(
        self, Q: np.ndarray, radii: np.ndarray, n_jobs: int | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Range search for an index without ``range_search``: a k-search whose k doubles until
        its farthest result is outside the radius."""
        nq = Q.shape[0]
        hits: list[tuple[np.ndarray, np.ndarray]] = [(np.empty(0), np.empty(0, np.int64))] * nq
        todo = np.arange(nq)
        k = min(16, self.n)
        while todo.size:
            D, I = self.index.search(Q[todo], k, n_jobs=n_jobs)
            inside = (D <= radii[todo, None]) & (I >= 0)
            full = inside[:, -1] & (k < self.n)
            for row, q in enumerate(todo):
                hits[q] = (D[row][inside[row]], I[row][inside[row]])
            todo = todo[full]
            k = min(2 * k, self.n)
        lims = np.zeros(nq + 1, dtype=np.int64)
        lims[1:] = np.cumsum([h[1].size for h in hits])
        D = np.concatenate([h[0] for h in hits]) if nq else np.empty(0)
        I = np.concatenate([h[1] for h in hits]).astype(np.int64) if nq else np.empty(0, np.int64)
        return lims, D, I

    # -- public ---------------------------------------------------------------------------------

    def kneighbors(
        self, X: np.ndarray | None, k: int, n_jobs: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(distances, indices)`` of shape (n_queries, k); ``X=None`` queries the fitted rows."""
        n_jobs = None if n_jobs is None else int(n_jobs)
        Q = self._queries(X)
        D, I = self.index.search(Q, int(k), n_jobs=n_jobs)
        I = np.asarray(I, dtype=np.int64)
        D = self._pair_distances(Q, I) if self.recompute else np.asarray(D, dtype=np.float64)
        D, I = _sort_rows(D, I)
        D = D.astype(self.dtype, copy=False)
        short = (I < 0).any(axis=1)
        if short.any():
            D[short], I[short] = self._exact_search().kneighbors(Q[short], int(k), n_jobs)
        return D, I

    def radius_neighbors(
        self,
        X: np.ndarray | None,
        radius: Any,
        sort: bool,
        n_jobs: int | None,
        rows: slice | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSR ``(lims, distances, indices)`` of the rows the index finds within ``radius`` (<=)
        of each query (approximate). ``X=None`` queries the fitted rows (those in ``rows``)."""
        n_jobs = None if n_jobs is None else int(n_jobs)
        Q = self._queries(X, rows)
        nq = Q.shape[0]
        radii = np.broadcast_to(np.asarray(radius, dtype=np.float64), (nq,))
        if nq == 0:
            return np.zeros(1, np.int64), np.empty(0, self.dtype), np.empty(0, np.int64)
        if hasattr(self.index, "range_search"):
            lims, D, I = self.index.range_search(Q, radius, n_jobs=n_jobs)
        else:
            lims, D, I = self._range_by_search(Q, radii, n_jobs)
        lims = np.asarray(lims, dtype=np.int64)
        I = np.asarray(I, dtype=np.int64)
        owner = np.repeat(np.arange(nq), np.diff(lims))
        if self.recompute:
            D = self._pair_distances(Q[owner], I[:, None])[:, 0]
            keep = D <= radii[owner]
            D, I, owner = D[keep], I[keep], owner[keep]
        D = np.asarray(D, dtype=np.float64)
        order = np.lexsort((I, D, owner)) if sort else np.lexsort((I, owner))
        D, I, owner = D[order], I[order], owner[order]
        lims = np.zeros(nq + 1, dtype=np.int64)
        np.cumsum(np.bincount(owner, minlength=nq), out=lims[1:])
        return lims, D.astype(self.dtype, copy=False), I
