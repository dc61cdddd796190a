"""``index_factory``: build an index from a faiss-style description string."""

from __future__ import annotations

import re
from typing import Any

from knnkit.index.flat import FlatIndex
from knnkit.index.hnsw import HNSWIndex
from knnkit.index.ivf import IVFIndex

_HNSW = re.compile(r"HNSW(\d+)?")
_IVF = re.compile(r"IVF(\d+)")
_PQ = re.compile(r"PQ(\d+)(?:x(\d+))?")


def index_factory(
    dim: int, description: str, metric: str = "euclidean", **params: Any
) -> FlatIndex | HNSWIndex | IVFIndex:
    """An empty index described faiss-style.

    ``"Flat"`` (exact); ``"HNSW32"`` or ``"HNSW32,Flat"`` (graph with ``m = 32``, float32
    traversal), ``"HNSW32,SQ8"`` (SQ8 traversal), ``"HNSW32,SQ4"`` (SQ4 traversal); ``"IVF1024,Flat"``, ``"IVF1024,SQ8"``,
    ``"IVF1024,PQ32"`` or ``"IVF1024,PQ32x4"`` (``nlist = 1024``; PQ with ``pq_m = 32`` codes
    of 8 or 4 bits). Extra keyword parameters go to the index (e.g. ``ef_search=128``,
    ``nprobe=16``, ``refine=False``).

    Examples
    --------
    >>> import knnkit
    >>> knnkit.index_factory(64, "IVF256,PQ16x4", metric="cosine")
    IVFIndex(dim=64, metric='cosine', nlist=256, nprobe=8, codes='pq', pq_m=16, nbits=4, refine=True, seed=0, ntotal=0)
    """
    parts = [p.strip() for p in str(description).split(",")]
    head, tail = parts[0], parts[1:]
    if len(tail) > 1:
        raise ValueError(
            f"description: expected at most one storage after the index, got {description!r}"
        )
    store = tail[0] if tail else "Flat"
    if head == "Flat" and not tail:
        return FlatIndex(dim, metric=metric, **params)
    if m := _HNSW.fullmatch(head):
        codes = {"Flat": "flat", "SQ8": "sq8", "SQ4": "sq4"}.get(store)
        if codes is None:
            raise ValueError(f"description: HNSW stores Flat, SQ8 or SQ4, got {store!r}")
        if m.group(1):
            params.setdefault("m", int(m.group(1)))
        return HNSWIndex(dim, metric=metric, codes=codes, **params)
    if m := _IVF.fullmatch(head):
        params.setdefault("nlist", int(m.group(1)))
        if store in ("Flat", "SQ8"):
            return IVFIndex(dim, metric=metric, codes=store.lower(), **params)
        if pq := _PQ.fullmatch(store):
            params.setdefault("pq_m", int(pq.group(1)))
            params.setdefault("nbits", int(pq.group(2) or 8))
            return IVFIndex(dim, metric=metric, codes="pq", **params)
        raise ValueError(f"description: IVF stores Flat, SQ8 or PQ<m>[x<bits>], got {store!r}")
    raise ValueError(
        f"description: expected Flat, HNSW<m>[,Flat|SQ8|SQ4] or "
        f"IVF<nlist>,Flat|SQ8|PQ<m>[x<bits>], "
        f"got {description!r}"
    )
