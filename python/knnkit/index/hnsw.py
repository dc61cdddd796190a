"""``HNSWIndex``: approximate search on a hierarchical navigable small-world graph.

A thin façade over ``knnkit._core.Hnsw`` (Rust): the graph, the vectors, the optional SQ8 codes
and the id map all live there. This class validates input, assigns ids, turns filters into id
lists and writes files (see :class:`knnkit.index._native.NativeIndex`). Layout and invariants:
``crates/knnkit-core/src/hnsw/mod.rs``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from knnkit import _core
from knnkit._progress import reporter
from knnkit._validation import check_positive_int
from knnkit.index._common import as_ids
from knnkit.index._native import METRICS, NativeIndex, check_count, check_seed, metric_name
from knnkit.index._result import SearchResult

#: Storage options for traversal: float32 plus 8-bit or 4-bit codes, or exact float32 only.
CODES = ("sq8", "sq4", "flat")


class HNSWIndex(NativeIndex):
    """Approximate k-nearest-neighbour index on an HNSW graph (Malkov & Yashunin).

    Parameters
    ----------
    dim : int
        Number of features of every vector.
    metric : {"euclidean", "sqeuclidean", "inner_product", "cosine"}, default="euclidean"
        Distances come back in the metric's own units, closest first (``inner_product``: the
        similarity, largest first). Cosine does not normalise the stored vectors: ``get``
        returns exactly what was added.
    m : int, default=16
        Neighbours per node on the upper levels; level 0 keeps up to ``2 * m``. Larger: better
        recall at a given ``ef_search``, more memory, slower build.
    ef_construction : int, default=200
        Candidate list size while inserting. Larger: better graph, slower build.
    ef_search : int, default=64
        Default beam width of searches (per call: ``search(..., ef_search=)``). Larger: higher
        recall, fewer queries per second.
    codes : {"sq8", "sq4", "flat"}, default="sq8"
        ``"sq8"`` keeps an 8-bit code per coordinate next to the float32 vectors (a quarter of
        their size) and walks the graph on codes; the best ``2 * k`` candidates are re-ranked on
        the float32 vectors (more when the codes' measured error allows a further candidate
        into the top ``k``), so returned distances are exact. ``"sq4"``: 4 bits per coordinate
        (an eighth of the float32 size), ``4 * k`` re-ranked at least; about a third faster
        than ``"sq8"`` on sentence embeddings at the same recall, but on data made of tight,
        far-apart clusters the codes cannot tell a cluster's points apart and recall needs a
        wider ``ef_search``: measure it on your data. ``"flat"`` walks on float32.
    seed : int, default=0
        Seed of the level draws. A build is deterministic: same data, same seed, same graph,
        whatever the thread count.

    Notes
    -----
    Memory per vector: ``4 * dim`` bytes (float32), plus ``dim + 4`` with SQ8 (``dim / 2 + 4``
    with SQ4, ``dim`` rounded up to a multiple of 64), plus
    ``4 * (2 * m + 1)`` for level-0 links, plus 8 for the id and about 30 for the id map.

    Searches may run from many threads at once and alongside ``add``/``remove``: a search sees
    the index either before or after a concurrent write, never part of one.

    Examples
    --------
    >>> import numpy as np, knnkit
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((1000, 16)).astype(np.float32)
    >>> ix = knnkit.HNSWIndex(16, metric="cosine", m=8)
    >>> ix.add(X)
    >>> D, I = ix.search(X[:2], k=3)
    >>> I[:, 0].tolist()
    [0, 1]
    """

    kind = "hnsw"

    def __init__(
        self,
        dim: int,
        metric: str = "euclidean",
        m: int = 16,
        ef_construction: int = 200,
        ef_search: int = 64,
        codes: str = "sq8",
        seed: int = 0,
    ) -> None:
        self.dim = check_count(dim, "dim")
        self.metric: str = metric_name(metric)
        self.m = check_positive_int(m, "m")
        if not 2 <= self.m <= 256:
            raise ValueError(f"m: expected an integer in [2, 256], got {m}")
        self.ef_construction = check_count(ef_construction, "ef_construction")
        self.ef_search = check_count(ef_search, "ef_search")
        if codes not in CODES:
            raise ValueError(f"codes: expected one of {CODES}, got {codes!r}")
        self.codes = codes
        self.seed = check_seed(seed)
        self._native = _core.Hnsw(
            self.dim, self.metric, self.m, self.ef_construction, self.seed, codes
        )
        self._next_id = 0

    def _params(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "metric": self.metric,
            "m": self.m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "codes": self.codes,
            "seed": self.seed,
        }

    def train(self, X: Any = None) -> None:
        """No-op: the graph needs no training (code ranges are learnt from the first ``add``
        and relearnt when later adds fall outside them: always while the index is small,
        after a quarter's growth beyond that)."""

    def add(
        self, X: Any, ids: Any = None, n_jobs: int | None = None, progress: bool | None = None
    ) -> None:
        """Adds the rows of ``X`` (n, dim) and links them into the graph (parallel over
        ``n_jobs`` threads, at most the available cores; the graph is the same whatever the
        thread count). Rows with a non-finite value, or whose squared norm overflows float32,
        are refused (the error names the row). ``ids`` (int64,
        unique, not already present) defaults to consecutive numbers continuing after the
        largest id so far. ``progress`` draws a progress line on stderr (``None``: when stderr
        is a terminal). Ctrl-C stops between batches and leaves the index as it was before the
        call."""
        super().add(X, ids, n_jobs, progress=progress)

    def _add_native(
        self, X: np.ndarray, ids: np.ndarray, n_jobs: int | None, progress: bool | None = None
    ) -> None:
        show = reporter("HNSW add", progress)
        self._native.add(X, ids, n_jobs, show)
        if show is not None:
            show(len(ids), len(ids))

    def remove(self, ids: Any, n_jobs: int | None = None) -> int:
        """Removes the vectors with these ids; returns how many were present. Removed vectors
        leave results at once; once they are 10 % of the slots the graph is repaired around them
        and their memory given back (or call :meth:`consolidate`)."""
        return self._native.remove(as_ids(ids), n_jobs)

    def consolidate(self, n_jobs: int | None = None) -> None:
        """Repairs the graph around removed vectors now and frees their memory."""
        self._native.consolidate(n_jobs)

    def search(
        self,
        Q: Any,
        k: int,
        filter: Any = None,
        ef_search: int | None = None,
        n_jobs: int | None = None,
    ) -> SearchResult:
        """The (approximate) ``k`` nearest stored vectors of each row of ``Q``.

        ``filter`` restricts results to some ids (a boolean mask indexed by id, or an array of
        allowed ids) and still returns ``min(k, allowed)`` of them: small filters are searched
        exactly. ``ef_search`` overrides the index's beam width for this call. Missing places
        (fewer than ``k`` vectors) hold id -1 and distance +inf (-inf for inner product).
        ``result.stats`` counts distance computations, visited nodes and exact fallbacks.
        """
        return super().search(Q, k, filter=filter, n_jobs=n_jobs, ef_search=ef_search)

    def _search_native(
        self,
        Q: np.ndarray,
        k: int,
        allowed: tuple[np.ndarray | None, np.ndarray | None],
        n_jobs: int | None,
        ef_search: int | None = None,
    ) -> SearchResult:
        ef = self.ef_search if ef_search is None else check_count(ef_search, "ef_search")
        D, I, stats = self._native.search(Q, k, ef, n_jobs, *allowed)
        return SearchResult(D, I, stats)

    def _range_params(self, search_params: dict[str, Any]) -> dict[str, Any]:
        ef = search_params.get("ef_search")
        return {"ef_search": self.ef_search if ef is None else check_count(ef, "ef_search")}


__all__ = ["CODES", "METRICS", "HNSWIndex"]
