"""Helpers that users and knnkit's own tests share: an exact oracle and recall@k.

The oracle is deliberately independent of the Rust engine (SciPy's ``cdist`` in float64), so it
can judge it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_SCIPY_NAMES = {
    "euclidean": "euclidean",
    "sqeuclidean": "sqeuclidean",
    "cosine": "cosine",
    "manhattan": "cityblock",
    "chebyshev": "chebyshev",
    "minkowski": "minkowski",
    "hamming": "hamming",
}


def exact_knn(
    X: Any, Q: Any, k: int, metric: str = "euclidean", p: float = 2.0, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest rows of ``X`` for each row of ``Q`` in float64, ties to the lower index.

    Returns ``(distances, indices)``; for ``inner_product`` the similarities, largest first.
    """
    from scipy.spatial.distance import cdist

    X = np.asarray(X, dtype=np.float64)
    Q = np.asarray(Q, dtype=np.float64)
    k = min(k, X.shape[0])
    out_d, out_i = [], []
    for s in range(0, Q.shape[0], chunk):
        q = Q[s : s + chunk]
        if metric == "inner_product":
            key = -(q @ X.T)
        else:
            kw = {"p": p} if metric == "minkowski" else {}
            key = cdist(q, X, _SCIPY_NAMES[metric], **kw)
        # lexsort: by key, then index (stable argsort keeps the lower index first on ties)
        idx = np.argsort(key, axis=1, kind="stable")[:, :k]
        out_i.append(idx)
        out_d.append(np.take_along_axis(key, idx, axis=1))
    D, I = np.concatenate(out_d), np.concatenate(out_i)
    return (-D if metric == "inner_product" else D), I


def recall_at_k(found: Any, truth: Any, k: int | None = None) -> float:
    """Mean fraction of the true ``k`` nearest ids that ``found`` contains (order ignored).

    ``found`` and ``truth`` are ``(n_queries, ≥ k)`` id arrays; ``k`` defaults to ``found``'s
    width.
    """
    found, truth = np.asarray(found), np.asarray(truth)
    k = found.shape[1] if k is None else k
    hits = [len(np.intersect1d(f[:k], t[:k])) for f, t in zip(found, truth, strict=True)]
    return float(np.sum(hits)) / (k * len(hits)) if hits else 1.0


__all__ = ["exact_knn", "recall_at_k"]
