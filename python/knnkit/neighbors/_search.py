"""The fitted exact search behind the estimators (a private, picklable attribute ``_index``).

Layout: the fitted rows as the engine sees them (``base``: transformed per the metric plan, in
float32 or float64, C-contiguous; the caller's array itself when no transform or cast is needed),
and their squared norms for the dot-product metrics, computed once at fit.

- ``native`` plans call ``knnkit._core.knn_search`` / ``radius_search`` (GIL released, all cores
  unless ``n_jobs`` says otherwise).
- ``slow`` and ``precomputed`` plans compute (or read) one block of the distance matrix at a time,
  sized by scikit-learn's ``working_memory``, and reduce it with :func:`topk_rows` /
  :func:`within_radius`, so memory stays bounded whatever the number of queries.
- scipy sparse (CSR) fitted rows, kept sparse when densifying them would exceed
  ``MAX_DENSE_BYTES`` (see :mod:`._base`), take the same block-wise path: ``euclidean``,
  ``sqeuclidean`` and ``cosine`` from one sparse × (sparse or dense) product per block and the
  squared row norms cached at fit (scikit-learn's expanded formula, as its sparse
  ``euclidean_distances``), ``manhattan`` from scikit-learn's ``pairwise_distances`` on the block
  (:data:`SPARSE_METRICS`). Memory: the fitted CSR arrays plus one ``working_memory`` block.
- ``precomputed`` also takes sparse distance graphs (CSR, rows sorted by value as scikit-learn's
  ``_check_precomputed`` leaves them): each row's stored entries are its only candidates; the k
  nearest are the first k stored (``ValueError`` with scikit-learn's message when a row stores
  fewer), the radius neighbours the stored entries within the radius.

Invariants: results are sorted closest first with ties broken by the lower index, distances have
the fitted dtype (float32 stays float32), indices are int64.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.sparse import csr_matrix, issparse
from sklearn import get_config
from sklearn.metrics import pairwise_distances

from knnkit import _core
from knnkit.neighbors._arrays import NUMPY
from knnkit.neighbors._metrics import MetricPlan, slow_distances

if TYPE_CHECKING:
    from knnkit.neighbors._engine import EngineSpec

#: Engine metrics (after scikit-learn's ``effective_metric_``, no parameters) computed on sparse
#: fitted rows without densifying them: from sparse products and norms, or (manhattan) by
#: scikit-learn's ``pairwise_distances`` on blocks.
SPARSE_METRICS = frozenset({"euclidean", "sqeuclidean", "cosine", "manhattan"})


def serves_sparse(plan: MetricPlan) -> bool:
    """Whether :class:`ExactSearch` can keep sparse fitted rows sparse under this plan."""
    if plan.kind == "precomputed":
        return True
    return (
        plan.kind == "native"
        and plan.scale is None
        and plan.linear is None
        and plan.engine_metric in SPARSE_METRICS
    )


def _row_sq_norms(X: Any) -> np.ndarray:
    """Squared L2 norm of every row (float64) of a dense or sparse matrix."""
    if issparse(X):
        return np.asarray(X.multiply(X).sum(axis=1), dtype=np.float64).ravel()
    return np.einsum("ij,ij->i", X, X)


def graph_kneighbors(graph: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` stored entries of every row of a sorted CSR distance graph
    (scikit-learn's ``_kneighbors_from_graph``).

    Examples
    --------
    >>> from scipy.sparse import csr_matrix
    >>> G = csr_matrix(([0.5, 2.0, 1.0], [1, 2, 0], [0, 2, 3]), shape=(2, 3))
    >>> graph_kneighbors(G, 1)
    (array([[0.5],
           [1. ]]), array([[1],
           [0]]))
    """
    n = graph.shape[0]
    row_nnz = np.diff(graph.indptr)
    row_nnz_min = int(row_nnz.min()) if n else k
    if row_nnz_min < k:
        raise ValueError(
            f"{k} neighbors per samples are required, but some samples have only"
            f" {row_nnz_min} neighbors in precomputed graph matrix. Decrease number of "
            "neighbors used or recompute the graph with more neighbors."
        )
    take = graph.indptr[:-1, None] + np.arange(k)
    return (
        np.asarray(graph.data[take], dtype=np.float64),
        np.asarray(graph.indices[take], dtype=np.int64),
    )


def graph_radius(
    graph: Any, radius: np.ndarray, sort: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR ``(counts, distances, indices)`` of the stored entries ``<= radius`` of every row of
    a distance graph (scikit-learn's ``_radius_neighbors_from_graph``); by index, or by
    distance then index when ``sort``."""
    counts = np.diff(graph.indptr)
    rows = np.repeat(np.arange(graph.shape[0]), counts)
    data = np.asarray(graph.data, dtype=np.float64)
    keep = data <= radius[rows]
    rows, dist, ind = rows[keep], data[keep], np.asarray(graph.indices[keep], dtype=np.int64)
    order = np.lexsort((ind, dist, rows)) if sort else np.lexsort((ind, rows))
    return np.bincount(rows, minlength=graph.shape[0]), dist[order], ind[order]


def float_dtype(dtype: np.dtype) -> np.dtype:
    """The float type a search runs in: float32 (and float16) stay 32-bit, the rest float64."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and dtype.itemsize <= 4:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _block_rows(n_columns: int) -> int:
    """Query rows per block so a float64 block and its temporaries fit in ``working_memory``."""
    budget = int(get_config()["working_memory"] * 2**20)
    return max(1, budget // (8 * 6 * max(n_columns, 1)))


def topk_rows(D: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` smallest entries of every row of ``D``, sorted, ties to the lower column.

    NaN ranks after everything (as +inf) but is returned as NaN.

    Examples
    --------
    >>> D = np.array([[3.0, 1.0, 1.0, 0.5]])
    >>> topk_rows(D, 3)
    (array([[0.5, 1. , 1. ]]), array([[3, 1, 2]]))
    """
    m, n = D.shape
    key = np.where(np.isnan(D), np.inf, D) if np.isnan(D).any() else D
    if k >= n:
        idx = np.argsort(key, axis=1, kind="stable")[:, :k]
    else:
        thr = np.partition(key, k - 1, axis=1)[:, k - 1 : k]
        below = key < thr
        tied = key == thr
        need = k - below.sum(axis=1, keepdims=True)
        chosen = below | tied
        # Rows with more ties at the threshold than places left keep the lowest columns.
        (crowded,) = np.nonzero(tied.sum(axis=1) > need[:, 0])
        if crowded.size:
            t = tied[crowded]
            chosen[crowded] = below[crowded] | (t & (np.cumsum(t, axis=1) <= need[crowded]))
        cols = np.nonzero(chosen)[1].reshape(m, k)  # row-major: columns ascending per row
        order = np.argsort(np.take_along_axis(key, cols, axis=1), axis=1, kind="stable")
        idx = np.take_along_axis(cols, order, axis=1)
    return np.take_along_axis(D, idx, axis=1), idx.astype(np.int64, copy=False)


def within_radius(
    D: np.ndarray, radius: np.ndarray, sort: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR ``(counts, distances, indices)`` of the entries ``<= radius`` of each row of ``D``."""
    hit = D <= radius.reshape(-1, 1)
    rows, cols = np.nonzero(hit)
    dist = D[rows, cols]
    if sort:
        order = np.lexsort((cols, dist, rows))
        dist, cols = dist[order], cols[order]
    return hit.sum(axis=1), dist, cols.astype(np.int64, copy=False)


class NativeEngine:
    """What the native engines share (see :class:`~knnkit.neighbors._engine.SearchEngine`):
    numpy results, tensors read through the host, large sparse queries in dense blocks."""

    fit_method: str
    approximate = False
    sparse_queries = False
    sparse_fit = False
    query_blocks = True
    tensor_queries = False
    arrays = NUMPY

    @property
    def label(self) -> str:
        return f"algorithm={self.fit_method!r}"


class ExactSearch(NativeEngine):
    """Exact k-nearest and radius search over the fitted rows.

    Parameters
    ----------
    plan : MetricPlan
        How distances are computed (see :mod:`knnkit.neighbors._metrics`).
    X : ndarray of shape (n_samples, n_features)
        The validated, dense training rows (or the square distance matrix for ``precomputed``).
    """

    fit_method = "brute"
    sparse_fit = True

    def __init__(self, plan: MetricPlan, X: Any) -> None:
        self.plan = plan
        self.dtype = float_dtype(X.dtype)
        self.n = X.shape[0]
        #: Whether the fitted rows are scipy sparse (then served block-wise, never densified).
        self.sparse = issparse(X)
        #: Whether sparse queries may be passed as they are (otherwise the estimators hand over
        #: dense blocks of them).
        self.sparse_queries = self.sparse or plan.kind == "precomputed" or plan.takes_sparse_rows
        self.norms = None
        if self.sparse and plan.takes_sparse_rows:
            self.base = X  # the callable sees the fitted rows as scikit-learn keeps them
        elif self.sparse and plan.kind != "precomputed":
            if not serves_sparse(plan):
                raise ValueError(
                    f"sparse fitted rows: metric {plan.engine_metric!r} is computed on dense "
                    f"rows only; sparse rows are served for {sorted(SPARSE_METRICS)}"
                )
            self.base = csr_matrix(X, dtype=np.float64)
            self.base.sort_indices()
            self.norms = _row_sq_norms(self.base)
        elif plan.kind == "native":
            self.base = plan.transform(X, self.dtype)
            self.norms = _core.squared_norms(self.base) if plan.uses_norms else None
        else:
            self.base = X

    @classmethod
    def build(cls, X: Any, spec: EngineSpec) -> ExactSearch:
        return cls(spec.plan, X)

    # -- native engine --------------------------------------------------------------------------

    def _queries(self, X: np.ndarray | None, rows: slice | None = None) -> np.ndarray:
        if X is None:
            return self.base if rows is None else self.base[rows]
        return self.plan.transform(X, self.dtype)

    # -- public ---------------------------------------------------------------------------------

    def kneighbors(
        self, X: np.ndarray | None, k: int, n_jobs: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(distances, indices)`` of shape (n_queries, k); ``X=None`` queries the fitted rows."""
        n_jobs = None if n_jobs is None else int(n_jobs)
        if self.plan.kind == "native" and not self.sparse:
            return _core.knn_search(
                self.base,
                self._queries(X),
                int(k),
                metric=self.plan.engine_metric,
                p=self.plan.engine_p,
                base_norms=self.norms,
                n_jobs=n_jobs,
            )
        Q = self.base if X is None else X
        if self.plan.kind == "precomputed" and issparse(Q):
            D, I = graph_kneighbors(Q, int(k))
            return D.astype(self.dtype, copy=False), I
        nq = Q.shape[0]
        D_out = np.empty((nq, k), dtype=self.dtype)
        I_out = np.empty((nq, k), dtype=np.int64)
        step = _block_rows(self.n)
        for start in range(0, nq, step):
            stop = min(start + step, nq)
            D_out[start:stop], I_out[start:stop] = topk_rows(self._block(Q, start, stop, n_jobs), k)
        return D_out, I_out

    def radius_neighbors(
        self,
        X: np.ndarray | None,
        radius: Any,
        sort: bool,
        n_jobs: int | None,
        rows: slice | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSR ``(lims, distances, indices)`` of the rows within ``radius`` (<=) of each query.

        ``radius`` is a number or one number per query (already validated, non-negative).
        ``X=None`` queries the fitted rows (only those in ``rows``, a slice, when given).
        """
        n_jobs = None if n_jobs is None else int(n_jobs)
        if self.plan.kind == "native" and not self.sparse:
            r = float(radius) if np.ndim(radius) == 0 else np.asarray(radius, dtype=self.dtype)
            return _core.radius_search(
                self.base,
                self._queries(X, rows),
                r,
                metric=self.plan.engine_metric,
                p=self.plan.engine_p,
                base_norms=self.norms,
                sort=bool(sort),
                n_jobs=n_jobs,
            )
        Q = (self.base if rows is None else self.base[rows]) if X is None else X
        nq = Q.shape[0]
        radii = np.broadcast_to(np.asarray(radius, dtype=np.float64), (nq,))
        if self.plan.kind == "precomputed" and issparse(Q):
            c, d, i = graph_radius(Q, radii, sort)
            lims = np.zeros(nq + 1, dtype=np.int64)
            np.cumsum(c, out=lims[1:])
            return lims, d.astype(self.dtype, copy=False), i
        counts, dists, inds = [], [], []
        step = _block_rows(self.n)
        for start in range(0, nq, step):
            stop = min(start + step, nq)
            c, d, i = within_radius(self._block(Q, start, stop, n_jobs), radii[start:stop], sort)
            counts.append(c)
            dists.append(d)
            inds.append(i)
        lims = np.zeros(nq + 1, dtype=np.int64)
        np.cumsum(np.concatenate(counts), out=lims[1:])
        return lims, np.concatenate(dists).astype(self.dtype, copy=False), np.concatenate(inds)

    def _block(self, Q: Any, start: int, stop: int, n_jobs: int | None) -> np.ndarray:
        """Distances of query rows ``start:stop`` to every fitted row, float64."""
        if self.plan.kind == "precomputed":
            return np.asarray(Q[start:stop], dtype=np.float64)
        if self.sparse and not self.plan.takes_sparse_rows:
            return self._sparse_block(Q[start:stop], n_jobs)
        return slow_distances(self.plan, Q[start:stop], self.base, n_jobs)

    def _sparse_block(self, Qb: Any, n_jobs: int | None) -> np.ndarray:
        """Distances of the query rows ``Qb`` (dense or sparse) to the sparse fitted rows."""
        metric = self.plan.engine_metric
        if metric == "manhattan":
            return np.asarray(
                pairwise_distances(Qb, self.base, metric="manhattan", n_jobs=n_jobs),
                dtype=np.float64,
            )
        if issparse(Qb):
            Qb = csr_matrix(Qb, dtype=np.float64)
            prod = (Qb @ self.base.T).toarray()
        else:
            Qb = np.asarray(Qb, dtype=np.float64)
            prod = np.asarray((self.base @ Qb.T).T)
        qn = _row_sq_norms(Qb)
        if metric == "cosine":
            denom = np.sqrt(qn)[:, None] * np.sqrt(self.norms)[None, :]
            with np.errstate(invalid="ignore", divide="ignore"):
                sim = np.where(denom > 0, prod / np.where(denom > 0, denom, 1.0), 0.0)
            return np.clip(1.0 - sim, 0.0, 2.0)
        prod *= -2.0
        prod += qn[:, None]
        prod += self.norms[None, :]
        np.maximum(prod, 0.0, out=prod)
        return np.sqrt(prod, out=prod) if metric == "euclidean" else prod
