"""The value every index search returns."""

from __future__ import annotations

from typing import Any

import numpy as np


class SearchResult(tuple):
    """``(distances, ids)`` of a k-nearest search, each ``(n_queries, k)``, closest first.

    Unpacks like faiss (``D, I = index.search(Q, k)``) and carries more:

    - ``distances``, ``ids``: the two arrays (missing neighbours are id -1 with distance +inf, or
      -inf for inner product);
    - ``n_found``: how many real neighbours each query got;
    - ``stats``: work done, e.g. ``{"distance_computations": ...}``.
    """

    stats: dict[str, Any]

    def __new__(
        cls, distances: np.ndarray, ids: np.ndarray, stats: dict[str, Any] | None = None
    ) -> SearchResult:
        self = super().__new__(cls, (distances, ids))
        self.stats = dict(stats or {})
        return self

    def __getnewargs__(self) -> tuple[Any, ...]:
        return (self[0], self[1], self.stats)

    @property
    def distances(self) -> np.ndarray:
        return self[0]

    @property
    def ids(self) -> np.ndarray:
        return self[1]

    @property
    def n_found(self) -> np.ndarray:
        return (self[1] >= 0).sum(axis=1)
