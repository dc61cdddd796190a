"""``HNSWIndex``: approximate search on a hierarchical navigable small-world graph.

A thin façade over ``knnkit._core.Hnsw`` (Rust): the graph, the vectors, the optional SQ8 codes
and the id map all live there. This class validates input, assigns ids, turns filters into id
lists and writes files. See ``crates/knnkit-core/src/hnsw/mod.rs`` for layout and invariants.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from knnkit import _core
from knnkit import io as _io
from knnkit._validation import as_matrix, check_positive_int
from knnkit.errors import CorruptIndexError
from knnkit.index._common import allowed_mask, as_ids, empty_result, new_ids
from knnkit.index._result import SearchResult

#: Metric names the graph accepts (aliases resolve to the first of each group).
METRICS = ("euclidean", "sqeuclidean", "inner_product", "cosine")
_ALIASES = {"l2": "euclidean", "ip": "inner_product"}
#: Storage options for traversal: exact float32 only, or float32 plus 8-bit codes.
CODES = ("flat", "sq8")
_PARTS = (
    "vectors",
    "ids",
    "levels",
    "links0",
    "upper",
    "upper_offsets",
    "deleted",
    "sq_lo",
    "sq_step",
)


def _metric_name(metric: Any, allowed: tuple[str, ...]) -> str:
    name = _ALIASES.get(metric, metric) if isinstance(metric, str) else metric
    if name not in allowed:
        raise ValueError(f"metric: expected one of {allowed}, got {metric!r}")
    return name


class HNSWIndex:
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
    codes : {"sq8", "flat"}, default="sq8"
        ``"sq8"`` keeps an 8-bit code per coordinate next to the float32 vectors (a quarter of
        their size) and walks the graph on codes; the best ``2 * k`` candidates are re-ranked on
        the float32 vectors, so returned distances are exact. ``"flat"`` walks on float32.
    seed : int, default=0
        Seed of the level draws. A build is deterministic: same data, same seed, same graph,
        whatever the thread count.

    Notes
    -----
    Memory per vector: ``4 * dim`` bytes (float32), plus ``dim + 4`` with SQ8, plus
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
        self.dim = check_positive_int(dim, "dim")
        self.metric: str = _metric_name(metric, METRICS)
        self.m = check_positive_int(m, "m")
        if not 2 <= self.m <= 256:
            raise ValueError(f"m: expected an integer in [2, 256], got {m}")
        self.ef_construction = check_positive_int(ef_construction, "ef_construction")
        self.ef_search = check_positive_int(ef_search, "ef_search")
        if codes not in CODES:
            raise ValueError(f"codes: expected one of {CODES}, got {codes!r}")
        self.codes = codes
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        self.dtype = np.dtype(np.float32)
        self._graph = _core.Hnsw(
            self.dim, self.metric, self.m, self.ef_construction, self.seed, codes == "sq8"
        )
        self._next_id = 0

    # -- contents -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._graph)

    @property
    def ntotal(self) -> int:
        """Number of stored vectors (faiss's name for ``len``)."""
        return len(self._graph)

    def __repr__(self) -> str:
        return (
            f"HNSWIndex(dim={self.dim}, metric={self.metric!r}, m={self.m}, "
            f"ef_construction={self.ef_construction}, codes={self.codes!r}, ntotal={len(self)})"
        )

    def train(self, X: Any = None) -> None:
        """No-op: the graph needs no training (SQ8 ranges are learnt from the first ``add``)."""

    def add(self, X: Any, ids: Any = None, n_jobs: int | None = None) -> None:
        """Adds the rows of ``X`` (n, dim) and links them into the graph (parallel over
        ``n_jobs`` threads). ``ids`` (int64, unique, not already present) defaults to
        consecutive numbers continuing after the largest id so far. Ctrl-C stops between
        batches; the rows linked so far stay (``len`` says how many)."""
        X = as_matrix(X, "X", self.dtype, self.dim)
        new = new_ids(ids, X.shape[0], self._next_id, self._graph.ids())
        if X.shape[0] == 0:
            return
        try:
            self._graph.add(X, new, n_jobs)
        finally:
            present = self._graph.ids()
            if present.size:
                self._next_id = max(self._next_id, int(present.max()) + 1)

    def get(self, ids: Any) -> np.ndarray:
        """The stored vectors for ``ids``, in the order given (KeyError for an unknown id)."""
        return self._graph.get(as_ids(ids))

    def ids(self) -> np.ndarray:
        """Ids of the stored vectors."""
        return self._graph.ids()

    def remove(self, ids: Any, n_jobs: int | None = None) -> int:
        """Removes the vectors with these ids; returns how many were present. Removed vectors
        leave results at once; once they are 10 % of the slots the graph is repaired around them
        and their memory given back (or call :meth:`consolidate`)."""
        return self._graph.remove(as_ids(ids), n_jobs)

    def consolidate(self, n_jobs: int | None = None) -> None:
        """Repairs the graph around removed vectors now and frees their memory."""
        self._graph.consolidate(n_jobs)

    def reset(self) -> None:
        """Removes everything."""
        self.__init__(
            self.dim,
            self.metric,
            self.m,
            self.ef_construction,
            self.ef_search,
            self.codes,
            self.seed,
        )

    def memory_usage(self) -> int:
        """Bytes held by vectors, codes, links and ids."""
        return self._graph.memory_usage()

    # -- search ---------------------------------------------------------------------------------

    def _allowed(self, filter: Any) -> np.ndarray | None:
        if filter is None:
            return None
        present = self._graph.ids()
        return np.ascontiguousarray(present[allowed_mask(filter, present)])

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
        if type(k) is not int or k < 1:
            k = check_positive_int(k, "k")
        ef = self.ef_search if ef_search is None else check_positive_int(ef_search, "ef_search")
        Q = as_matrix(Q, "queries", self.dtype, self.dim, check_finite=False)
        if Q.shape[0] == 0:
            return empty_result(0, k, self.metric, self.dtype)
        D, I, stats = self._graph.search(Q, k, ef, n_jobs, self._allowed(filter))
        return SearchResult(D, I, stats)

    def range_search(
        self,
        Q: Any,
        radius: Any,
        filter: Any = None,
        ef_search: int | None = None,
        n_jobs: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stored vectors within ``radius`` of each query (for ``inner_product``: similarity at
        least ``radius``), as ``(lims, D, I)``: query ``i``'s matches are ``D[lims[i]:lims[i+1]]``,
        closest first. Approximate: a k-search whose ``k`` doubles until its farthest result is
        outside the radius."""
        Q = as_matrix(Q, "queries", self.dtype, self.dim)
        nq = Q.shape[0]
        r = np.broadcast_to(np.asarray(radius, dtype=np.float32), (nq,))
        if np.asarray(radius).ndim > 1 or np.asarray(radius).size not in (1, nq):
            raise ValueError(f"radius: expected a number or {nq} numbers, got {radius!r}")
        sim = self.metric == "inner_product"
        if not np.isfinite(r).all() or (not sim and (r < 0).any()):
            raise ValueError(f"radius: expected finite non-negative values, got {radius!r}")
        hits: list[tuple[np.ndarray, np.ndarray]] = [(np.empty(0, np.float32), np.empty(0, int))]
        hits = hits * nq
        todo = np.arange(nq)
        k = min(max(ef_search or self.ef_search, 16), max(len(self), 1))
        while todo.size:
            D, I = self.search(
                Q[todo], k, filter=filter, ef_search=max(k, ef_search or 0), n_jobs=n_jobs
            )
            inside = (D >= r[todo, None]) if sim else (D <= r[todo, None])
            inside &= I >= 0
            full = inside[:, -1] & (k < len(self))
            for row, q in enumerate(todo):
                hits[q] = (D[row][inside[row]], I[row][inside[row]])
            todo = todo[full]
            k = min(2 * k, len(self))
        lims = np.zeros(nq + 1, dtype=np.int64)
        lims[1:] = np.cumsum([h[0].size for h in hits])
        D = np.concatenate([h[0] for h in hits]).astype(np.float32)
        I = np.concatenate([h[1] for h in hits]).astype(np.int64)
        return lims, D, I

    # -- persistence ----------------------------------------------------------------------------

    def _header_and_parts(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        parts = self._graph.to_parts()
        header = {
            "kind": self.kind,
            "dim": self.dim,
            "metric": self.metric,
            "m": self.m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "codes": self.codes,
            "seed": self.seed,
            "inserted": int(parts["inserted"]),
            "entry": int(parts["entry"]),
            "next_id": self._next_id,
        }
        return header, {name: parts[name] for name in _PARTS}

    def save(self, path: str | os.PathLike) -> None:
        """Writes the index to one file (see :mod:`knnkit.io`), atomically."""
        header, sections = self._header_and_parts()
        _io.write(path, header, sections)

    @classmethod
    def _from_parts(cls, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> HNSWIndex:
        try:
            ix = cls(
                int(header["dim"]),
                header["metric"],
                int(header["m"]),
                int(header["ef_construction"]),
                int(header["ef_search"]),
                header["codes"],
                int(header["seed"]),
            )
            parts = {
                "dim": ix.dim,
                "metric": ix.metric,
                "m": ix.m,
                "ef_construction": ix.ef_construction,
                "seed": ix.seed,
                "inserted": int(header["inserted"]),
                "entry": int(header["entry"]),
            }
            for name in _PARTS:
                parts[name] = np.asarray(arrays[name]).reshape(-1)
            next_id = int(header["next_id"])
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise CorruptIndexError(f"hnsw index header is invalid: {e}") from e
        if (ix.codes == "sq8") != (parts["sq_lo"].size > 0):
            raise CorruptIndexError("hnsw index: codes setting does not match the sections")
        ix._graph = _core.Hnsw.from_parts(parts)
        ix._next_id = next_id
        return ix

    def __getstate__(self) -> dict[str, Any]:
        header, sections = self._header_and_parts()
        return {"header": header, **sections}

    def __setstate__(self, state: dict[str, Any]) -> None:
        other = HNSWIndex._from_parts(state["header"], state)
        self.__dict__.update(other.__dict__)
