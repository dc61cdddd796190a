"""Metric resolution for the estimators: scikit-learn's names in, an engine plan out.

Design: ``fit`` turns ``(metric, p, metric_params)`` into scikit-learn's ``effective_metric_`` and
``effective_metric_params_`` (same rules as ``sklearn.neighbors``), then :func:`resolve` maps that
pair onto one of three engines:

- ``native``: the Rust exact search (``knnkit._core``). Metrics that are the native ones after a
  per-feature scaling or a linear map run here too: weighted minkowski (``x * w**(1/p)``),
  ``seuclidean`` (``x / sqrt(V)``) and ``mahalanobis`` (``x @ L`` with ``L Lᵀ = VI``), so that the
  native metric on transformed rows equals the requested metric on the original rows.
- ``slow``: anything else (callables, ``DistanceMetric`` objects, the remaining scipy/sklearn
  names). Distances are computed with ``DistanceMetric.pairwise`` or
  ``sklearn.metrics.pairwise_distances`` one block of query rows at a time (memory bounded by
  scikit-learn's ``working_memory``), then reduced with a deterministic top-k (ties: lower index
  first). Correct but O(n) Python-level calls per query for callables: use a named metric when one
  fits.
- ``precomputed``: the caller passes distances (dense only); the same top-k reduction applies.

Invariants: a plan is plain data (numpy arrays, strings, the user's callable) so fitted estimators
pickle; transforms are computed in float64 and cast to the fitted dtype.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import linalg
from sklearn.metrics import DistanceMetric, pairwise_distances

#: scikit-learn metric names the Rust engine computes directly (name -> engine name).
NATIVE_METRICS = {
    "euclidean": "euclidean",
    "l2": "euclidean",
    "sqeuclidean": "sqeuclidean",
    "manhattan": "manhattan",
    "cityblock": "manhattan",
    "l1": "manhattan",
    "chebyshev": "chebyshev",
    "infinity": "chebyshev",
    "cosine": "cosine",
    "hamming": "hamming",
}

#: Engine metrics that use cached squared norms of the fitted rows.
NORM_METRICS = frozenset({"euclidean", "sqeuclidean", "cosine"})

#: Metrics ``sklearn.metrics.pairwise_distances`` converts to boolean (with a warning); the slow
#: path converts them itself, silently, as scikit-learn's tree and reduction engines do.
_BOOLEAN_METRICS = frozenset(
    {"dice", "jaccard", "rogerstanimoto", "russellrao", "sokalmichener", "sokalsneath", "yule"}
)


#: Names ``sklearn.metrics.DistanceMetric`` computes (the slow path prefers it for these).
_DISTANCE_METRIC_NAMES = frozenset(
    {
        "braycurtis",
        "canberra",
        "chebyshev",
        "cityblock",
        "dice",
        "euclidean",
        "hamming",
        "haversine",
        "infinity",
        "jaccard",
        "l1",
        "l2",
        "manhattan",
        "minkowski",
        "rogerstanimoto",
        "russellrao",
        "sokalmichener",
        "sokalsneath",
    }
)


def effective_metric(metric: Any, p: Any, metric_params: dict | None) -> tuple[Any, dict[str, Any]]:
    """scikit-learn's ``effective_metric_`` / ``effective_metric_params_`` for these parameters.

    ``minkowski`` with p = 1, 2, inf and no weights becomes ``manhattan``, ``euclidean``,
    ``chebyshev``; otherwise ``p`` (and ``w``) move into the parameters. ``p`` given in
    ``metric_params`` wins over the ``p`` argument.

    Examples
    --------
    >>> effective_metric("minkowski", 2, None)
    ('euclidean', {})
    >>> effective_metric("minkowski", 3, None)
    ('minkowski', {'p': 3, 'w': None})
    """
    params: dict[str, Any] = {} if metric_params is None else dict(metric_params)
    effective_p = params.get("p", p)
    if isinstance(metric, str) and metric == "minkowski":
        params["p"] = effective_p
    name = metric
    if isinstance(metric, str) and metric == "minkowski":
        pw = params.pop("p", 2)
        w = params.pop("w", None)
        if pw == 1 and w is None:
            name = "manhattan"
        elif pw == 2 and w is None:
            name = "euclidean"
        elif pw == np.inf and w is None:
            name = "chebyshev"
        else:
            params["p"] = pw
            params["w"] = w
    return name, params


@dataclass
class MetricPlan:
    """How the fitted estimator computes distances (see the module docstring).

    Attributes
    ----------
    kind : {"native", "slow", "precomputed"}
    engine_metric, engine_p : the ``knnkit._core`` metric name and its ``p`` (native only).
    scale : per-feature multipliers applied before a native search, or None.
    linear : matrix ``L`` applied as ``x @ L`` before a native search, or None.
    slow_metric, slow_params : what the slow path hands to ``DistanceMetric`` or
        ``pairwise_distances``.
    slow_backend : {"distance_metric", "pairwise", "object"}.
    """

    kind: str
    engine_metric: str = "euclidean"
    engine_p: float = 2.0
    scale: np.ndarray | None = None
    linear: np.ndarray | None = None
    slow_metric: Any = None
    slow_params: dict[str, Any] = field(default_factory=dict)
    slow_backend: str = "pairwise"

    @property
    def takes_sparse_rows(self) -> bool:
        """Whether sparse rows reach the metric as they are (a user's callable, as
        scikit-learn's ``pairwise_distances`` passes them) rather than densified."""
        return (
            self.kind == "slow" and self.slow_backend == "pairwise" and callable(self.slow_metric)
        )

    @property
    def uses_norms(self) -> bool:
        return self.kind == "native" and self.engine_metric in NORM_METRICS

    def transform(self, X: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """Rows as the native engine sees them: scaled / mapped, in ``dtype``, C-contiguous."""
        if self.linear is not None:
            X = np.asarray(X, dtype=np.float64) @ self.linear
        elif self.scale is not None:
            X = np.asarray(X, dtype=np.float64) * self.scale
        return np.ascontiguousarray(X, dtype=dtype)


def _feature_vector(value: Any, name: str, metric: str, n_features: int) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != (n_features,):
        raise ValueError(
            f"metric={metric!r}: {name} must have shape ({n_features},) (one value per feature), "
            f"got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"metric={metric!r}: {name} must be finite, got {arr!r}")
    return arr


def _mahalanobis_map(params: dict[str, Any], n_features: int) -> np.ndarray | None:
    """``L`` with ``L Lᵀ = VI`` (Cholesky; eigen-decomposition when VI is only semi-definite),
    or ``None`` when VI is not positive semi-definite (no such ``L`` exists)."""
    if params.get("VI") is not None:
        VI = np.asarray(params["VI"], dtype=np.float64)
        name = "VI"
    else:
        V = np.asarray(params["V"], dtype=np.float64)
        if V.shape != (n_features, n_features):
            raise ValueError(
                f"metric='mahalanobis': V must have shape ({n_features}, {n_features}), "
                f"got {V.shape}"
            )
        VI = np.linalg.inv(V)
        name = "inv(V)"
    if VI.shape != (n_features, n_features):
        raise ValueError(
            f"metric='mahalanobis': VI must have shape ({n_features}, {n_features}), got {VI.shape}"
        )
    if not np.all(np.isfinite(VI)):
        raise ValueError(f"metric='mahalanobis': {name} must be finite")
    VI = 0.5 * (VI + VI.T)  # (x-y)ᵀ VI (x-y) only sees the symmetric part
    try:
        return linalg.cholesky(VI, lower=True)
    except linalg.LinAlgError:
        pass
    evals, evecs = np.linalg.eigh(VI)
    top = max(float(np.abs(evals).max()), np.finfo(np.float64).tiny)
    if evals.min() < -1e-10 * top:
        return None
    return evecs * np.sqrt(np.clip(evals, 0.0, None))


def resolve(metric: Any, params: dict[str, Any], n_features: int) -> MetricPlan:
    """Maps an effective metric and its parameters onto an engine plan.

    Raises ``ValueError`` for parameters the metric cannot use (wrong shapes, negative weights,
    missing ``V``/``VI``).
    """
    if isinstance(metric, DistanceMetric):
        return MetricPlan("slow", slow_metric=metric, slow_backend="object")
    if callable(metric):
        return MetricPlan("slow", slow_metric=metric, slow_params=params)
    if metric == "precomputed":
        return MetricPlan("precomputed")

    if metric in NATIVE_METRICS and not params:
        return MetricPlan("native", engine_metric=NATIVE_METRICS[metric])

    if metric in ("minkowski", "p"):
        rest = {k: v for k, v in params.items() if k not in ("p", "w")}
        p = params.get("p", 2)
        w = params.get("w")
        if p is None:
            raise ValueError(
                "metric='minkowski' needs a power p > 0: got p=None (set p=... or "
                "metric_params={'p': ...})"
            )
        if not rest and p is not None and p >= 1:
            if np.isinf(p) and w is not None:
                raise ValueError(
                    "MinkowskiDistance requires finite p. For p=inf, use ChebyshevDistance."
                )
            scale = None
            if w is not None:
                w = _feature_vector(w, "w", "minkowski", n_features)
                if np.any(w < 0):
                    raise ValueError("w cannot contain negative weights")
                scale = w ** (1.0 / p)
            return MetricPlan("native", engine_metric="minkowski", engine_p=float(p), scale=scale)
        params = {**rest, "p": p, **({"w": w} if w is not None else {})}
        metric = "minkowski"

    elif metric == "seuclidean":
        rest = {k: v for k, v in params.items() if k != "V"}
        if params.get("V") is None:
            raise ValueError(
                "metric='seuclidean' needs the per-feature variances: pass "
                "metric_params={'V': variances} (an array of shape (n_features,))"
            )
        if not rest:
            V = _feature_vector(params["V"], "V", "seuclidean", n_features)
            if np.any(V <= 0):
                raise ValueError("metric='seuclidean': every variance in V must be > 0")
            return MetricPlan("native", engine_metric="euclidean", scale=1.0 / np.sqrt(V))

    elif metric == "mahalanobis":
        rest = {k: v for k, v in params.items() if k not in ("V", "VI")}
        if params.get("V") is None and params.get("VI") is None:
            raise ValueError(
                "metric='mahalanobis' needs metric_params={'VI': inverse_covariance} "
                "(or {'V': covariance}), each of shape (n_features, n_features)"
            )
        if not rest:
            linear = _mahalanobis_map(params, n_features)
            if linear is not None:
                return MetricPlan("native", engine_metric="euclidean", linear=linear)
            # Not a valid inverse covariance: (x-y)ᵀ VI (x-y) can be negative, and its square
            # root NaN. scikit-learn computes with it anyway; so does the slow path, with
            # scikit-learn's own DistanceMetric (NaN distances rank last, as in its brute force).
            warnings.warn(
                "metric='mahalanobis': VI is not positive semi-definite (not a valid inverse "
                "covariance), so some distances are the square root of a negative number (NaN); "
                "computing them as scikit-learn does, on the slow path",
                UserWarning,
                stacklevel=4,
            )
            return MetricPlan(
                "slow", slow_metric=metric, slow_params=params, slow_backend="distance_metric"
            )

    if metric == "pyfunc":
        func = params.get("func")
        if not callable(func):
            raise ValueError("metric='pyfunc' needs metric_params={'func': callable}")
        rest = {k: v for k, v in params.items() if k != "func"}
        return MetricPlan("slow", slow_metric=func, slow_params=rest)

    # Everything else: a block-wise slow path. DistanceMetric for the names it knows (what
    # scikit-learn's own engines use for them), pairwise_distances for the others.
    if metric in _DISTANCE_METRIC_NAMES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            DistanceMetric.get_metric(metric, **params)  # bad parameters fail here, at fit
        return MetricPlan(
            "slow", slow_metric=metric, slow_params=params, slow_backend="distance_metric"
        )
    return MetricPlan("slow", slow_metric=metric, slow_params=params, slow_backend="pairwise")


def slow_distances(
    plan: MetricPlan, X: np.ndarray, Y: np.ndarray, n_jobs: int | None
) -> np.ndarray:
    """Dense distance block ``(len(X), len(Y))`` in float64 for a ``slow`` plan."""
    if plan.slow_backend == "object":
        return np.asarray(
            plan.slow_metric.pairwise(np.asarray(X, np.float64), np.asarray(Y, np.float64)),
            dtype=np.float64,
        )
    if plan.slow_backend == "distance_metric":
        dm = DistanceMetric.get_metric(plan.slow_metric, **plan.slow_params)
        return np.asarray(
            dm.pairwise(
                np.ascontiguousarray(X, dtype=np.float64), np.ascontiguousarray(Y, dtype=np.float64)
            ),
            dtype=np.float64,
        )
    metric = plan.slow_metric
    if isinstance(metric, str) and metric in _BOOLEAN_METRICS:
        X, Y = np.asarray(X) != 0, np.asarray(Y) != 0
    return np.asarray(
        pairwise_distances(X, Y, metric=metric, n_jobs=n_jobs, **plan.slow_params),
        dtype=np.float64,
    )
