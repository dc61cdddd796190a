"""Pieces every index façade shares: id assignment, filters, the empty result."""

from __future__ import annotations

from typing import Any

import numpy as np

from knnkit._validation import check_positive_int
from knnkit.index._result import SearchResult


def new_ids(ids: Any, n: int, next_id: int, present: np.ndarray) -> np.ndarray:
    """The int64 ids of ``n`` new vectors: ``ids`` validated (integers, non-negative, unique, not
    in ``present``), or consecutive numbers from ``next_id``."""
    if ids is None:
        last = int(np.iinfo(np.int64).max)
        if n == 0:
            return np.empty(0, dtype=np.int64)
        if next_id > last - n + 1:
            raise ValueError(
                f"ids: default ids are exhausted (the next would be {next_id}, and {n} are needed "
                f"below 2**63): pass ids explicitly"
            )
        return np.arange(next_id, next_id + n, dtype=np.int64)
    new = np.asarray(ids)
    if new.dtype.kind not in "iu" or new.shape != (n,):
        raise ValueError(
            f"ids: expected {n} integers (one per row), got shape {new.shape} dtype {new.dtype}"
        )
    new = new.astype(np.int64)
    if (new < 0).any():
        raise ValueError("ids: expected non-negative integers (-1 marks a missing result)")
    if np.unique(new).size != n or np.isin(new, present).any():
        raise ValueError("ids: expected ids not already in the index and no repeats")
    return new


def as_ids(ids: Any) -> np.ndarray:
    """A 1-D int64 array of ids (one id or many)."""
    arr = np.atleast_1d(np.asarray(ids))
    if arr.dtype.kind not in "iu" or arr.ndim != 1:
        raise ValueError(f"ids: expected a 1-D array of integers, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def as_filter(filter: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    """A search filter as ``(allowed ids, mask)``, one of them set: an array (or list) of
    allowed int ids, or a boolean mask indexed by id."""
    f = np.asarray(filter)
    if f.dtype == bool:
        if f.ndim != 1:
            raise ValueError(f"filter: expected a 1-D boolean mask over ids, got shape {f.shape}")
        return None, np.ascontiguousarray(f)
    if f.size == 0 and f.ndim == 1:
        return np.empty(0, np.int64), None
    if f.dtype.kind in "iu" and f.ndim <= 1:
        if f.dtype.kind == "u" and f.size and f.max() > np.iinfo(np.int64).max:
            f = f[f <= np.iinfo(np.int64).max]
        return np.ascontiguousarray(np.atleast_1d(f), dtype=np.int64), None
    raise TypeError(
        "filter: expected a boolean mask over ids or a 1-D array of ids, got "
        f"dtype {f.dtype} shape {f.shape}"
    )


def allowed_mask(filter: Any, ids: np.ndarray) -> np.ndarray:
    """Which of ``ids`` a filter allows: ``filter`` is a boolean mask indexed by id, or an array
    of allowed ids."""
    f = np.asarray(filter)
    if f.dtype == bool:
        if f.ndim != 1:
            raise ValueError(f"filter: expected a 1-D boolean mask over ids, got shape {f.shape}")
        if not f.size:
            return np.zeros(ids.size, bool)
        return (ids < f.size) & f[np.minimum(ids, f.size - 1)]
    if f.dtype.kind in "iu":
        return np.isin(ids, f)
    raise TypeError(
        f"filter: expected a boolean mask over ids or an array of ids, got dtype {f.dtype}"
    )


def empty_result(nq: int, k: int, metric: str, dtype: Any) -> SearchResult:
    """``nq`` rows of ``k`` missing neighbours (id -1, distance +inf or -inf for a similarity)."""
    fill = -np.inf if metric == "inner_product" else np.inf
    return SearchResult(
        np.full((nq, k), fill, dtype=dtype),
        np.full((nq, k), -1, dtype=np.int64),
        {"distance_computations": 0},
    )


def check_ids(ids: Any, n: int) -> np.ndarray:
    """``ids`` for ``n`` new rows as a C-contiguous int64 array (integers, one per row); the
    core checks that they are non-negative, unique and new."""
    new = np.asarray(ids)
    if new.dtype.kind not in "iu" or new.shape != (n,):
        raise ValueError(
            f"ids: expected {n} integers (one per row), got shape {new.shape} dtype {new.dtype}"
        )
    if new.dtype.kind == "u" and n and new.max() > np.iinfo(np.int64).max:
        raise ValueError(f"ids: expected integers below 2**63, got {int(new.max())}")
    return np.ascontiguousarray(new, dtype=np.int64)


def check_k(k: Any) -> int:
    """``k`` as an int in [1, 2**63)."""
    if type(k) is int and 1 <= k < 2**63:
        return k
    k = check_positive_int(k, "k")
    if k >= 2**63:
        raise ValueError(f"k: expected a positive integer below 2**63, got {k}")
    return k
