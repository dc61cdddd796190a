"""``NativeIndex``: what the Rust-backed indexes (HNSW, IVF) share — ids, filters, get/remove,
range search on top of k-search, files and pickling. Subclasses name their native class, their
constructor parameters and their saved sections, and run the search call."""

from __future__ import annotations

import json
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
    dim: int
    metric: str
    _native: Any
    dtype = np.dtype(np.float32)
    _next_id = 0

    def _params(self) -> dict[str, Any]:
        """Constructor arguments (saved in files)."""
        raise NotImplementedError

    def _search_native(
        self,
        Q: np.ndarray,
        k: int,
        allowed: tuple[np.ndarray | None, np.ndarray | None],
        n_jobs: int | None,
        **kw: Any,
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

    def _allowed(self, filter: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
        """A filter as the core takes it: ``(allowed ids, boolean mask indexed by id)``, at most
        one set (the core maps either to its slots and ignores ids it does not hold)."""
        return (None, None) if filter is None else as_filter(filter)

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

    def _range_params(self, search_params: dict[str, Any]) -> dict[str, Any]:
        """The native range search's keyword arguments for these search parameters."""
        raise NotImplementedError

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
        outside the radius (the core's ``range_by_knn``)."""
        Q = as_matrix(Q, "queries", self.dtype, self.dim)
        nq = Q.shape[0]
        r_in = np.asarray(radius)
        if r_in.ndim > 1 or r_in.size not in (1, nq) or r_in.dtype.kind not in "fiu":
            raise ValueError(f"radius: expected a number or {nq} numbers, got {radius!r}")
        # Finite and (for distances) non-negative values are the core's check.
        r = np.ascontiguousarray(r_in.astype(np.float32).reshape(-1))
        if nq == 0:
            return np.zeros(1, np.int64), np.empty(0, np.float32), np.empty(0, np.int64)
        ids, mask = self._allowed(filter)
        return self._native.range_search(
            Q,
            r,
            n_jobs=n_jobs,
            allowed_ids=ids,
            allowed_mask=mask,
            **self._range_params(search_params),
        )

    # -- persistence ----------------------------------------------------------------------------

    def _saved_params(self) -> dict[str, Any]:
        """Constructor arguments written to files (what ``_from_file`` rebuilds the façade
        from)."""
        return self._params()

    def _extra_header(self) -> str:
        """The header entries the façade adds to the core's: its parameters and next id."""
        return json.dumps({"params": self._saved_params(), "next_id": self._next_id})

    def save(self, path: str | os.PathLike) -> None:
        """Writes the index to one file (see :mod:`knnkit.io`), atomically."""
        self._native.save(os.fspath(path), self._extra_header())

    @classmethod
    def _from_file(cls, header: dict[str, Any], file: Any) -> Any:
        """The index an open ``knnkit._core.IndexFile`` holds (``header``: its header); the
        core reads the kind's sections (mapped ones stay in the mapping)."""
        try:
            ix = cls(**header["params"])
            next_id = int(header["next_id"])
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise CorruptIndexError(f"{cls.kind} index header is invalid: {e}") from e
        native = type(ix._native).from_file(file)
        if (header.get("dim"), header.get("metric")) != (ix.dim, ix.metric):
            raise CorruptIndexError(
                f"{cls.kind} index header is invalid: dim {header.get('dim')!r} and metric "
                f"{header.get('metric')!r} do not match its params {header['params']!r}"
            )
        ix._native = native
        ix._next_id = next_id
        return ix

    def __getstate__(self) -> dict[str, Any]:
        return {"file": self._native.encode(self._extra_header())}

    def __setstate__(self, state: dict[str, Any]) -> None:
        other = type(self)._from_file(*_io.from_bytes(state["file"]))
        self.__dict__.update(other.__dict__)
