"""The search engines behind the neighbour estimators, and the one place that chooses among them.

Every estimator holds its fitted engine as the private attribute ``_index`` and reaches it only
through :class:`SearchEngine`, so it runs the same code on every engine:

- :class:`~knnkit.neighbors._search.ExactSearch` (``algorithm="brute"``, and ``"auto"`` where
  scikit-learn picks brute force): the Rust exact search, the block-wise slow and precomputed
  paths, and sparse fitted rows;
- :class:`~knnkit.neighbors._tree_search.TreeSearch` (``"kd_tree"``, ``"ball_tree"``): knnkit's
  KD-tree and ball tree;
- :class:`~knnkit.neighbors._ann.ApproximateSearch` (``"hnsw"``, ``"ivf"``): the approximate
  indexes, parameters in ``algo_params``;
- :class:`~knnkit.neighbors._device.TorchSearch` (``device=`` anything but ``None``): exact brute
  force on a torch device, tensors in and out, votes and averages on the device.

An engine plugs in three things: the search (:meth:`~SearchEngine.kneighbors`,
:meth:`~SearchEngine.radius_neighbors`), what it accepts as queries (sparse rows, dense blocks of
large sparse queries, tensors where they are) and what it returns: numpy arrays for the native
engines, tensors on the device for the torch engine, with the arithmetic on them (weights,
votes, averages, self-exclusion) in its ``arrays`` (:class:`ResultArrays`:
:class:`~knnkit.neighbors._arrays.NumpyArrays` or :class:`~knnkit.neighbors._device.TorchArrays`).
Engines pickle with the estimators (the torch engine through the host).

A new engine: a class satisfying :class:`SearchEngine` (built by ``build(X, spec)``), one branch
in :func:`choose_engine`, and a line in ``tests/test_engine_protocol.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from knnkit.neighbors._ann import APPROXIMATE, ApproximateSearch
from knnkit.neighbors._device import TorchSearch
from knnkit.neighbors._metrics import MetricPlan
from knnkit.neighbors._search import ExactSearch
from knnkit.neighbors._tree_search import TREES, TreeSearch


@dataclass(frozen=True)
class EngineSpec:
    """What ``fit`` resolved for the engine: scikit-learn's ``_fit_method`` (or the approximate
    algorithm), the exact engine's metric plan, scikit-learn's ``effective_metric_`` and
    ``effective_metric_params_``, and the estimator's parameters an engine may take."""

    fit_method: str
    plan: MetricPlan
    metric: Any
    metric_params: dict[str, Any]
    leaf_size: int = 30
    algo_params: dict[str, Any] | None = None
    n_jobs: int | None = None
    device: Any = None


@runtime_checkable
class ResultArrays(Protocol):
    """The estimators' arithmetic on an engine's results, in the engine's own arrays.

    ``labels`` are the encoded class labels of each query's neighbours (n_queries, k);
    ``weights`` what :meth:`weights` returned (``None``: uniform)."""

    def arange(self, n: int) -> Any:
        """Row numbers ``0..n-1``."""

    def drop_self(self, lims: Any, dist: Any, ind: Any, offset: int) -> tuple[Any, Any, Any]:
        """A CSR radius result over fitted rows ``offset:`` without each query's own row."""

    def targets(self, y: Any, classes: bool) -> Any:
        """The fitted targets (encoded classes when ``classes``) where the arithmetic runs."""

    def weights(self, dist: Any, weights: Any) -> Any:
        """scikit-learn's neighbour weights (``None`` for uniform)."""

    def vote(self, labels: Any, weights: Any, n_classes: int) -> Any:
        """Index of the winning class of each row of ``labels`` (scikit-learn's mode)."""

    def proba(self, labels: Any, weights: Any, n_classes: int) -> Any:
        """(n_queries, n_classes) class probabilities."""

    def take(self, classes: Any, modes: Any) -> Any:
        """The labels of the winning classes."""

    def columns(self, cols: list[Any]) -> Any:
        """Per-output predictions side by side."""

    def average(self, y: Any, ind: Any, weights: Any) -> Any:
        """(n_queries, n_outputs) mean of the neighbours' targets ``y[ind]`` (``y``: (n_samples,
        n_outputs)), weighted when ``weights`` is given."""


@runtime_checkable
class SearchEngine(Protocol):
    """A fitted search over the rows an estimator was fitted on.

    Results: ``kneighbors`` gives ``(distances, indices)`` of shape (n_queries, k), closest
    first, ties to the lower index; ``radius_neighbors`` the CSR ``(lims, distances, indices)``
    of the rows within ``radius`` (<=), by index within each query unless ``sort`` (then by
    distance, ties by index). Distances in the fitted float dtype, indices int64. ``X=None``
    queries the fitted rows (only ``rows``, a slice, when given); the estimators remove each
    row from its own result.
    """

    #: scikit-learn's ``_fit_method`` for this engine.
    fit_method: str
    #: Whether true neighbours may be missed (self-exclusion then drops the farthest instead).
    approximate: bool
    #: Whether scipy sparse queries are passed as they are.
    sparse_queries: bool
    #: Whether sparse queries too large to densify at once may come as dense blocks of rows
    #: (otherwise they are densified whole, or refused above ``MAX_DENSE_BYTES``).
    query_blocks: bool
    #: Whether scipy sparse fitted rows too large to densify may stay sparse.
    sparse_fit: bool
    #: Whether tensor queries are searched where they are (checked as tensors, never copied
    #: through the host); otherwise they are read through the host and validated as arrays.
    tensor_queries: bool
    #: How error messages name the engine (``"algorithm='brute'"``, ``"device='cuda'"``).
    label: str
    #: The arithmetic on this engine's results.
    arrays: ResultArrays

    @classmethod
    def build(cls, X: Any, spec: EngineSpec) -> SearchEngine:
        """The engine over the validated fitted rows ``X`` (an array, scipy CSR, or a tensor for
        the torch engine)."""

    def kneighbors(self, X: Any, k: int, n_jobs: int | None) -> tuple[Any, Any]: ...

    def radius_neighbors(
        self, X: Any, radius: Any, sort: bool, n_jobs: int | None, rows: slice | None = None
    ) -> tuple[Any, Any, Any]: ...


def choose_engine(fit_method: str, device: Any = None) -> type[SearchEngine]:
    """The engine class for a fit method (scikit-learn's ``_fit_method`` or an approximate
    algorithm) and a resolved device (``None``: the native engines).

    Examples
    --------
    >>> [choose_engine(m).__name__ for m in ("brute", "kd_tree", "hnsw")]
    ['ExactSearch', 'TreeSearch', 'ApproximateSearch']
    """
    if device is not None:
        return TorchSearch  # exact brute force whatever the fit method (auto or brute only)
    if fit_method in APPROXIMATE:
        return ApproximateSearch
    if fit_method in TREES:
        return TreeSearch
    return ExactSearch
