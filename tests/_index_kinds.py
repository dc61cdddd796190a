"""Index kinds shared by the state-machine, concurrency and fuzz tests: how to build a small
index of each kind, the ids it holds, and a float64 oracle of the distances it reports.

Not a test module (no ``test_`` prefix); the three test files import it from their own folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import knnkit

#: Largest number of live vectors the stateful and concurrency tests keep (small data).
MAX_N = 300


@dataclass(frozen=True)
class Kind:
    """One index configuration: a name, a constructor and what the tests may expect of it."""

    name: str
    make: Callable[[int], Any]
    metric: str
    dtype: Any = np.float32
    exact: bool = False
    #: IVF: rows to train on before the first add (``None``: no training step).
    train: int | None = None


def _flat(metric: str, dtype: Any) -> Callable[[int], Any]:
    return lambda d: knnkit.FlatIndex(d, metric=metric, dtype=dtype)


def _hnsw(metric: str, codes: str) -> Callable[[int], Any]:
    return lambda d: knnkit.HNSWIndex(
        d, metric=metric, m=8, ef_construction=64, ef_search=256, codes=codes
    )


def _ivf(metric: str, codes: str) -> Callable[[int], Any]:
    # nprobe = nlist: every cell is scanned, so recall is limited by the codes alone.
    return lambda d: knnkit.IVFIndex(
        d, metric=metric, nlist=4, nprobe=4, codes=codes, pq_m=d // 2, nbits=8
    )


def _kinds() -> list[Kind]:
    out = []
    for metric in ("euclidean", "cosine", "inner_product", "manhattan"):
        for dtype in (np.float32, np.float64):
            out.append(
                Kind(
                    f"flat-{metric}-{np.dtype(dtype).name}",
                    _flat(metric, dtype),
                    metric,
                    dtype,
                    exact=True,
                )
            )
    for codes in ("flat", "sq8", "sq4"):
        for metric in ("euclidean", "cosine"):
            out.append(Kind(f"hnsw-{codes}-{metric}", _hnsw(metric, codes), metric))
    for codes, metric in (
        ("flat", "euclidean"),
        ("flat", "cosine"),
        ("sq8", "euclidean"),
        ("pq", "euclidean"),
    ):
        out.append(Kind(f"ivf-{codes}-{metric}", _ivf(metric, codes), metric, train=256))
    return out


#: Every configuration, by name.
KINDS = {k.name: k for k in _kinds()}


def live_ids(ix: Any) -> np.ndarray:
    """The ids an index holds, sorted."""
    return np.sort(np.asarray(ix.ids(), dtype=np.int64))


def clustered(rng: np.random.Generator, n: int, dim: int, centers: np.ndarray) -> np.ndarray:
    """``n`` float64 rows around the rows of ``centers`` (small clustered data)."""
    c = centers[rng.integers(0, len(centers), n)]
    return c + rng.normal(size=(n, dim))


def distances(metric: str, X: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """Float64 distances (``inner_product``: similarities) of each row of ``Q`` to each of ``X``."""
    X = np.asarray(X, np.float64)
    Q = np.asarray(Q, np.float64)
    if metric == "inner_product":
        return Q @ X.T
    if metric == "manhattan":
        return np.abs(Q[:, None, :] - X[None, :, :]).sum(-1)
    if metric == "cosine":
        nx = np.linalg.norm(X, axis=1)
        nq = np.linalg.norm(Q, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            cos = (Q @ X.T) / (nq[:, None] * nx[None, :])
        return 1.0 - np.nan_to_num(cos, nan=0.0)
    sq = ((Q[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    return sq if metric == "sqeuclidean" else np.sqrt(sq)


def tolerance(metric: str, dtype: Any, X: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """Per-query absolute tolerance on a reported distance's :func:`key`: rounding of the index's own
    arithmetic in ``dtype`` (norm expansion for the dot-product metrics), nothing more."""
    eps = float(np.finfo(dtype).eps)
    d = Q.shape[1]
    qn = (np.asarray(Q, np.float64) ** 2).sum(1)
    xn = float((np.asarray(X, np.float64) ** 2).sum(1).max()) if len(X) else 0.0
    if metric == "cosine":
        scale = np.ones_like(qn)
    elif metric == "manhattan":
        scale = np.abs(Q).sum(1) + (float(np.abs(X).sum(1).max()) if len(X) else 0.0)
    else:
        scale = 1.0 + qn + xn
    return 8 * d * eps * scale


def key(metric: str, D: np.ndarray) -> np.ndarray:
    """Distances as the ascending key :func:`tolerance` is an absolute bound on: squared for
    euclidean (the index's rounding is uniform there), negated similarity for inner product."""
    D = np.asarray(D, np.float64)
    if metric == "euclidean":
        return np.where(np.isinf(D), np.inf, D * D)
    return -D if metric == "inner_product" else D
