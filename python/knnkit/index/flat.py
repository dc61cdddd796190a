"""``FlatIndex``: exact search over stored vectors, with a faiss-like API.

Storage: a row-major buffer of ``dtype`` grown geometrically (amortised O(1) ``add``), the int64 id
of each row, and the rows' squared norms (cached for the dot-product metrics). Searches call the
Rust engine on the live rows with the GIL released; ``remove`` compacts the buffer.

With ``device=`` (a torch device), the numpy buffer stays the stored copy (``get``, ``remove``,
``save`` and pickling work on it) and a tensor of the live rows and their ids lives on the device,
built at the first search after a change; searches there go through
:mod:`knnkit.backends.torch` (exact, same distances and tie order as the Rust engine up to
rounding). Numpy queries give numpy results; tensor queries (on the index's device, of its dtype)
give tensors on that device, with no host copy.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from knnkit import _core, _metrics
from knnkit import io as _io
from knnkit._validation import as_matrix, check_dtype, check_positive_int
from knnkit.errors import CorruptIndexError, DimensionMismatchError
from knnkit.index._common import (
    allowed_mask,
    as_filter,
    as_ids,
    check_ids,
    check_k,
    empty_result,
)
from knnkit.index._result import SearchResult

#: Metric names the flat index accepts (from the core's registry; aliases resolve to these).
METRICS = _metrics.names("exact")
_NORM_METRICS = frozenset(m for m in METRICS if _metrics.info(m)["dot_based"])


class FlatIndex:
    """Exact k-nearest-neighbour index (brute force, SIMD, bounded memory).

    Parameters
    ----------
    dim : int
        Number of features of every vector.
    metric : str, default="euclidean"
        One of :data:`METRICS`. Distances come back in the metric's own units, closest first;
        ``inner_product`` returns the similarity itself, largest first.
    dtype : {"float32", "float64"}, default="float32"
        Storage and computation type; results have the same type.
    p : float, default=2.0
        Exponent for ``metric="minkowski"``.
    bf16 : bool or None, default=None
        Use bfloat16 first passes (float32 with a dot-product metric only): batches compute their
        tiles from bf16-rounded rows (twice the arithmetic rate where the CPU has AVX-512 BF16),
        and single queries stream a bf16 copy of the vectors that the index keeps (half their
        size again: half the bytes to read). Either way each approximate distance comes with a
        proven error bound and whatever the bound cannot exclude is re-scored in float32, so
        results are exactly the float32 ones. ``None``: on for float32 with euclidean,
        sqeuclidean, cosine or inner_product; ``False`` saves the copy's memory.
    device : str or torch.device, optional
        Search with :mod:`knnkit.backends.torch` on this torch device (``"cuda"``, ``"mps"``,
        ``"cpu"``; needs torch) instead of the Rust engine. Not for ``hamming``. ``None``
        (default): the Rust engine, which is the faster choice on the CPU. An unavailable
        device raises ``ValueError`` naming it. ``save`` writes a plain (CPU) index; pickling
        keeps the device.

    Examples
    --------
    >>> import numpy as np, knnkit
    >>> ix = knnkit.FlatIndex(2)
    >>> ix.add(np.array([[0, 0], [3, 4], [1, 1]], dtype=np.float32))
    >>> D, I = ix.search(np.array([[0, 0]], dtype=np.float32), k=2)
    >>> I.tolist(), D.astype(float).round(3).tolist()
    ([[0, 2]], [[0.0, 1.414]])
    """

    def __init__(
        self,
        dim: int,
        metric: str = "euclidean",
        dtype: Any = "float32",
        p: float = 2.0,
        bf16: bool | None = None,
        device: Any = None,
    ) -> None:
        self.dim = check_positive_int(dim, "dim")
        name = _metrics.resolve(metric, "exact")
        if name == "minkowski" and not (isinstance(p, (int, float)) and p >= 1):
            raise ValueError(f"p: expected a number >= 1 for minkowski, got {p!r}")
        self.metric: str = name
        self.p = float(p)
        self.dtype = check_dtype(dtype)
        supported = self.dtype == np.float32 and name in _NORM_METRICS
        if bf16 and not supported:
            raise ValueError(
                "bf16: expected float32 vectors and a dot-product metric "
                f"{sorted(_NORM_METRICS)}, got {self.dtype.name} and {name!r}"
            )
        self.bf16 = supported if bf16 is None else bool(bf16)
        self._native = _core.Flat(self.dim, name, self.p, self.dtype.name, self.bf16)
        self.device = None
        # (vectors, ids, PreparedBase) of the live rows on the device, until the next write
        self._dev: tuple[Any, Any, Any, np.ndarray] | None = None
        if device is not None:
            if name == "hamming":
                raise ValueError(
                    f"device: the torch backend has no 'hamming' metric; expected device=None, "
                    f"got {device!r}"
                )
            from knnkit.backends.torch import resolve_device

            self.device = resolve_device(device)
            if self.device.type == "mps" and self.dtype == np.float64:
                raise TypeError(f"device: {str(self.device)!r} has no float64; use float32")

    # -- contents -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._native)

    @property
    def ntotal(self) -> int:
        """Number of stored vectors (faiss's name for ``len``)."""
        return len(self._native)

    def __repr__(self) -> str:
        dev = "" if self.device is None else f", device={str(self.device)!r}"
        return (
            f"FlatIndex(dim={self.dim}, metric={self.metric!r}, dtype={self.dtype.name!r}, "
            f"ntotal={len(self)}{dev})"
        )

    def train(self, X: Any = None) -> None:
        """No-op: a flat index needs no training (present so all indexes share one API)."""

    def add(self, X: Any, ids: Any = None) -> None:
        """Adds the rows of ``X`` (n, dim). ``ids`` (int64, unique, not already present) defaults
        to consecutive numbers continuing after the largest id so far. Bad input (including
        values so large that distances would overflow) leaves the index unchanged."""
        X = as_matrix(X, "X", self.dtype, self.dim)
        new = None if ids is None else check_ids(ids, X.shape[0])
        self._dev = None
        self._native.add(X, new)

    def get(self, ids: Any) -> np.ndarray:
        """The stored vectors for ``ids`` (a copy), in the order given."""
        return self._native.get(as_ids(ids))

    def ids(self) -> np.ndarray:
        """Ids of the stored vectors, in storage order."""
        return self._native.ids()

    def remove(self, ids: Any) -> int:
        """Removes the vectors with these ids; returns how many were present."""
        self._dev = None
        return self._native.remove(as_ids(ids))

    def reset(self) -> None:
        """Removes everything."""
        self.__init__(self.dim, self.metric, self.dtype, self.p, self.bf16, self.device)

    def memory_usage(self) -> int:
        """Bytes held by the stored vectors, ids, norms and bf16 copy (vectors read from a
        memory-mapped file count zero: the page cache holds them, shared)."""
        return self._native.memory_usage()

    # -- search ---------------------------------------------------------------------------------

    def search(self, Q: Any, k: int, filter: Any = None, n_jobs: int | None = None) -> SearchResult:
        """The ``k`` nearest stored vectors of each row of ``Q``.

        ``filter`` restricts the search to some ids: a boolean mask indexed by id, or an array of
        allowed ids. With fewer than ``k`` candidates the missing places hold id -1 and distance
        +inf (-inf for inner product). The work is bounded by the number of stored vectors
        whatever ``k``; a ``k`` whose result could not fit in memory is refused.
        """
        k = check_k(k)
        if self.device is not None:
            return self._search_device(Q, k, filter)
        Q = as_matrix(Q, "queries", self.dtype, self.dim)
        ids, mask = (None, None) if filter is None else as_filter(filter)
        D, I = self._native.search(Q, k, n_jobs, ids, mask)
        return SearchResult(D, I, {"distance_computations": Q.shape[0] * len(self)})

    def range_search(
        self, Q: Any, radius: Any, filter: Any = None, n_jobs: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every stored vector within ``radius`` of each query, as ``(lims, D, I)``: the matches
        of query ``i`` are ``D[lims[i]:lims[i+1]]``, sorted closest first. For ``inner_product``,
        the vectors whose similarity is at least ``radius``."""
        if self.device is not None:
            return self._range_search_device(Q, radius, filter)
        Q = as_matrix(Q, "queries", self.dtype, self.dim)
        r = np.asarray(radius, dtype=self.dtype)
        if r.ndim > 1 or (r.ndim == 1 and r.shape[0] != Q.shape[0]):
            raise ValueError(
                f"radius: expected a number or {Q.shape[0]} numbers, got shape {r.shape}"
            )
        if not np.isfinite(r).all() or (self.metric != "inner_product" and (r < 0).any()):
            raise ValueError(f"radius: expected finite non-negative values, got {radius!r}")
        ids, mask = (None, None) if filter is None else as_filter(filter)
        rad = float(r) if r.ndim == 0 else np.ascontiguousarray(r)
        return self._native.range_search(Q, rad, n_jobs, ids, mask)

    # -- search on a torch device ------------------------------------------------------------

    def _device_rows(self, filter: Any) -> tuple[Any, Any]:
        """The live (or filter-allowed) vectors, prepared for search
        (:class:`knnkit.backends.torch.PreparedBase`), and their ids, on the device; the
        unfiltered ones are kept until the next write."""
        import torch

        from knnkit.backends.torch import PreparedBase

        if self._dev is None:
            vectors, host_ids = self._native.snapshot()
            X = torch.from_numpy(vectors).to(self.device)
            ids = torch.from_numpy(host_ids).to(self.device)
            self._dev = (X, ids, PreparedBase(X, self.metric, self.p), host_ids)
        X, ids, prepared, host_ids = self._dev
        if filter is None:
            return prepared, ids
        rows = np.flatnonzero(allowed_mask(filter, host_ids))
        sel = torch.from_numpy(rows).to(self.device)
        return PreparedBase(X[sel], self.metric, self.p), ids[sel]

    def _device_queries(self, Q: Any) -> tuple[Any, bool]:
        """Queries as a tensor on the device (a tensor must already be there and of the index's
        dtype; numpy is checked and copied there); and whether the input was a tensor."""
        import torch

        from knnkit.backends.torch import _is_tensor

        if not _is_tensor(Q):
            Q = as_matrix(Q, "queries", self.dtype, self.dim)
            return torch.from_numpy(np.ascontiguousarray(Q)).to(self.device), False
        if Q.device != self.device and not (
            Q.device.type == self.device.type and self.device.index is None
        ):
            raise ValueError(
                f"queries: expected a tensor on the index's device {self.device}, got one on "
                f"{Q.device}"
            )
        if Q.dtype != getattr(torch, self.dtype.name):
            raise TypeError(
                f"queries: expected a {self.dtype.name} tensor (the index's dtype), got {Q.dtype}"
            )
        if Q.ndim == 1 and Q.shape[0] == self.dim:
            Q = Q[None, :]
        if Q.ndim != 2 or Q.shape[1] != self.dim:
            raise DimensionMismatchError(
                f"queries: expected shape (n, {self.dim}), got {tuple(Q.shape)}"
            )
        return Q, True

    def _search_device(self, Q: Any, k: int, filter: Any) -> SearchResult:
        import torch

        Q, tensor = self._device_queries(Q)
        X, ids = self._device_rows(filter)
        nq = Q.shape[0]
        if X.n == 0 or nq == 0:
            D, I = empty_result(nq, k, self.metric, self.dtype)
            if tensor:
                D, I = torch.from_numpy(D).to(Q.device), torch.from_numpy(I).to(Q.device)
            return SearchResult(D, I, {"distance_computations": 0})
        kk = min(k, X.n)
        D, pos = X.knn(Q, kk)
        I = ids[pos]
        if kk < k:  # fewer candidates than k: id -1, distance +inf (-inf for a similarity)
            fill = -math.inf if self.metric == "inner_product" else math.inf
            D = torch.cat([D, torch.full((nq, k - kk), fill, dtype=D.dtype, device=D.device)], 1)
            I = torch.cat([I, torch.full((nq, k - kk), -1, dtype=I.dtype, device=I.device)], 1)
        if not tensor:
            D, I = D.cpu().numpy(), I.cpu().numpy()
        return SearchResult(D, I, {"distance_computations": nq * X.n})

    def _range_search_device(self, Q: Any, radius: Any, filter: Any) -> tuple[Any, Any, Any]:
        Q, tensor = self._device_queries(Q)
        X, ids = self._device_rows(filter)
        lims, D, pos = X.radius(Q, radius)
        I = ids[pos]
        if not tensor:
            lims, D, I = lims.cpu().numpy(), D.cpu().numpy(), I.cpu().numpy()
        return lims, D, I

    # -- persistence ----------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Writes the index to one file (see :mod:`knnkit.io`), atomically."""
        self._native.save(os.fspath(path), "{}")

    @classmethod
    def _from_file(cls, header: dict[str, Any], file: Any) -> FlatIndex:
        """The index an open ``knnkit._core.IndexFile`` holds (``header``: its header); with a
        mapped file the vectors stay in the mapping (copied on the first change)."""
        try:
            ix = cls(
                int(header["dim"]),
                header["metric"],
                header["dtype"],
                float(header["p"]),
                bool(header.get("bf16", False)),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise CorruptIndexError(f"flat index header is invalid: {e}") from e
        ix._native = _core.Flat.from_file(file)
        return ix

    def __getstate__(self) -> dict[str, Any]:
        return {
            "device": None if self.device is None else str(self.device),
            "file": self._native.encode("{}"),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        other = FlatIndex._from_file(*_io.from_bytes(state["file"]))
        if state.get("device") is not None:
            from knnkit.backends.torch import resolve_device

            other.device = resolve_device(state["device"])
        self.__dict__.update(other.__dict__)
