"""``NativeIndex``: what the Rust-backed indexes (HNSW, IVF) share — ids, filters, get/remove,
range search on top of k-search, files and pickling. Subclasses name their native class, their
constructor parameters and their saved sections, and run the search call."""

from __future__ import annotations

import os
from typing import Any, ClassVar

import numpy as np

from knnkit import _metrics
from knnkit import io as _io
from knnkit._validation import as_matrix, check_positive_int
from knnkit.errors import CorruptIndexError
from knnkit.index._common import as_filter, as_ids, empty_result, new_ids
from knnkit.index._result import SearchResult

#: Metric names the approximate indexes accept (from :mod:`knnkit._metrics`; the aliases ``l2``
#: and ``ip`` resolve to ``euclidean`` and ``inner_product``).
METRICS = _metrics.names("approximate")


def metric_name(metric: Any) -> str:
    """The canonical name of a metric the approximate indexes serve (``ValueError`` otherwise)."""
    return _metrics.resolve(metric, "approximate")


#: Largest count a native call takes (a signed 64-bit integer); the core applies its own,
#: tighter limits with a clear message.
MAX_COUNT = 2**63 - 1


def check_count(value: Any, name: str, limit: int = MAX_COUNT) -> int:
    """``value`` as a positive integer no larger than ``limit`` (``ValueError`` naming
    ``name`` and the expected range otherwise; ``TypeError`` for a non-integer)."""
    n = check_positive_int(value, name)
    if n > limit:
        raise ValueError(f"{name}: expected {name} >= 1 and at most {limit}, got {value}")
    return n


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    return int(seed)


class NativeIndex:
    """Base of the indexes whose storage lives in Rust (``self._native``)."""

    kind: ClassVar[str]
    #: Names of the arrays ``to_parts`` returns that are saved as file sections.
    _PARTS: ClassVar[tuple[str, ...]]
    #: Scalars of ``to_parts`` saved in the header.
    _SCALARS: ClassVar[tuple[str, ...]]
    #: Sections the native index can map from the file instead of copying.
    _MAPPABLE: ClassVar[tuple[str, ...]] = ()
    dim: int
    metric: str
    _native: Any
    dtype = np.dtype(np.float32)
    _next_id = 0

    def _params(self) -> dict[str, Any]:
        """Constructor arguments (saved in files)."""
        raise NotImplementedError

    def _search_native(
        self, Q: np.ndarray, k: int, allowed: np.ndarray | None, n_jobs: int | None, **kw: Any
    ) -> SearchResult:
        raise NotImplementedError

    # -- contents -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._native)

    @property
    def ntotal(self) -> int:
        """Number of stored vectors (faiss's name for ``len``)."""
        return len(self._native)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args}, ntotal={len(self)})"

    def _before_add(self, X: np.ndarray, n_jobs: int | None) -> None:
        """Hook run before vectors are added (IVF trains here when needed)."""

    def add(self, X: Any, ids: Any = None, n_jobs: int | None = None, **add_params: Any) -> None:
        """Adds the rows of ``X`` (n, dim) using ``n_jobs`` threads. ``ids`` (int64, unique, not
        already present) defaults to consecutive numbers continuing after the largest id so
        far. Bad input leaves the index unchanged."""
        X = as_matrix(X, "X", self.dtype, self.dim)
        new = new_ids(ids, X.shape[0], self._next_id, self._native.ids())
        if X.shape[0] == 0:
            return
        self._before_add(X, n_jobs)
        try:
            self._add_native(X, new, n_jobs, **add_params)
        finally:
            present = self._native.ids()
            if present.size:
                self._next_id = max(self._next_id, int(present.max()) + 1)

    def _add_native(
        self, X: np.ndarray, ids: np.ndarray, n_jobs: int | None, **add_params: Any
    ) -> None:
        self._native.add(X, ids, n_jobs)

    def get(self, ids: Any) -> np.ndarray:
        """The stored vectors for ``ids``, in the order given (KeyError for an unknown id)."""
        return self._native.get(as_ids(ids))

    def ids(self) -> np.ndarray:
        """Ids of the stored vectors."""
        return self._native.ids()

    def reset(self) -> None:
        """Removes everything (keeps the parameters)."""
        self.__init__(**self._params())  # type: ignore[misc]

    def memory_usage(self) -> int:
        """Bytes the index holds (vectors, codes, links or lists, ids)."""
        return self._native.memory_usage()

    # -- search ---------------------------------------------------------------------------------

    def _allowed(self, filter: Any) -> np.ndarray | None:
        """The allowed ids of a filter (the core ignores ids it does not hold)."""
        if filter is None:
            return None
        ids, mask = as_filter(filter)
        return ids if mask is None else np.flatnonzero(mask).astype(np.int64)

    def search(
        self, Q: Any, k: int, filter: Any = None, n_jobs: int | None = None, **search_params: Any
    ) -> SearchResult:
        """The (approximate) ``k`` nearest stored vectors of each row of ``Q``.

        ``filter`` restricts results to some ids (a boolean mask indexed by id, or an array of
        allowed ids) and still returns ``min(k, allowed)`` of them. Missing places (fewer than
        ``k`` vectors) hold id -1 and distance +inf (-inf for inner product): the work is
        capped at what the index holds, only the result has ``k`` columns (a result too large
        to allocate raises ``ValueError`` first). ``result.stats`` reports the work done.
        """
        if type(k) is not int or not 1 <= k <= MAX_COUNT:
            k = check_count(k, "k")
        Q = as_matrix(Q, "queries", self.dtype, self.dim, check_finite=False)
        if Q.shape[0] == 0:
            return empty_result(0, k, self.metric, self.dtype)
        return self._search_native(Q, k, self._allowed(filter), n_jobs, **search_params)

    def _widen(self, k: int, search_params: dict[str, Any]) -> dict[str, Any]:
        """Search parameters for a range search's k-search of width ``k``."""
        return search_params

    def range_search(
        self,
        Q: Any,
        radius: Any,
        filter: Any = None,
        n_jobs: int | None = None,
        **search_params: Any,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stored vectors within ``radius`` of each query (for ``inner_product``: similarity at
        least ``radius``), as ``(lims, D, I)``: query ``i``'s matches are ``D[lims[i]:lims[i+1]]``,
        closest first. Approximate: a k-search whose ``k`` doubles until its farthest result is
        outside the radius."""
        Q = as_matrix(Q, "queries", self.dtype, self.dim)
        nq = Q.shape[0]
        r_in = np.asarray(radius)
        if r_in.ndim > 1 or r_in.size not in (1, nq) or r_in.dtype.kind not in "fiu":
            raise ValueError(f"radius: expected a number or {nq} numbers, got {radius!r}")
        r = np.broadcast_to(r_in.astype(np.float32).reshape(-1), (nq,))
        sim = self.metric == "inner_product"
        if not np.isfinite(r).all() or (not sim and (r < 0).any()):
            raise ValueError(f"radius: expected finite non-negative values, got {radius!r}")
        empty = (np.empty(0, np.float32), np.empty(0, np.int64))
        hits = [empty] * nq
        todo = np.arange(nq)
        n = len(self)
        k = min(32, max(n, 1))
        while todo.size and n:
            params = self._widen(k, search_params)
            D, I = self.search(Q[todo], k, filter=filter, n_jobs=n_jobs, **params)
            inside = ((D >= r[todo, None]) if sim else (D <= r[todo, None])) & (I >= 0)
            for row, q in enumerate(todo):
                hits[q] = (D[row][inside[row]], I[row][inside[row]])
            todo = todo[inside[:, -1] & (k < n)]
            k = min(2 * k, n)
        lims = np.zeros(nq + 1, dtype=np.int64)
        lims[1:] = np.cumsum([h[0].size for h in hits])
        D = np.concatenate([h[0] for h in hits]).astype(np.float32)
        I = np.concatenate([h[1] for h in hits]).astype(np.int64)
        return lims, D, I

    # -- persistence ----------------------------------------------------------------------------

    def _header_and_parts(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        parts = self._native.to_parts()
        header = {"kind": self.kind, "params": self._params(), "next_id": self._next_id}
        header.update({name: parts[name] for name in self._SCALARS})
        return header, {name: parts[name] for name in self._PARTS}

    def save(self, path: str | os.PathLike) -> None:
        """Writes the index to one file (see :mod:`knnkit.io`), atomically."""
        header, sections = self._header_and_parts()
        _io.write(path, header, sections)

    @classmethod
    def _from_parts(cls, header: dict[str, Any], arrays: Any, file: Any = None) -> Any:
        """An index from a file's header and sections (``arrays``: name -> array); ``file``
        (the open ``knnkit._core.IndexFile``, when mapped) lets the large arrays stay in its
        mapping instead of being copied."""
        try:
            ix = cls(**header["params"])
            # Scalars the wrapper also holds come from its validated parameters.
            own = ix._params()
            parts: dict[str, Any] = {n: own.get(n, header[n]) for n in cls._SCALARS}
            mapped = file is not None and file.mapped()
            for name in cls._PARTS:
                if mapped and name in cls._MAPPABLE and name in arrays:
                    parts[name] = file.span(name)
                else:
                    parts[name] = np.asarray(arrays[name]).reshape(-1)
            next_id = int(header["next_id"])
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise CorruptIndexError(f"{cls.kind} index header is invalid: {e}") from e
        ix._native = ix._load_native(parts, file if mapped else None)
        ix._next_id = next_id
        return ix

    def _load_native(self, parts: dict[str, Any], file: Any = None) -> Any:
        return type(self._native).from_parts(parts)

    def __getstate__(self) -> dict[str, Any]:
        header, sections = self._header_and_parts()
        return {"header": header, **sections}

    def __setstate__(self, state: dict[str, Any]) -> None:
        other = type(self)._from_parts(state["header"], state)
        self.__dict__.update(other.__dict__)
