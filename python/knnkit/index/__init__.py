"""Indexes with one faiss-like API: ``FlatIndex`` (exact), ``HNSWIndex`` (graph),
``IVFIndex`` (inverted file: flat, SQ8, PQ), and :func:`load` for any saved index."""

from __future__ import annotations

import os

from knnkit import io as _io
from knnkit.errors import CorruptIndexError
from knnkit.index.factory import index_factory
from knnkit.index.flat import FlatIndex
from knnkit.index.hnsw import HNSWIndex
from knnkit.index.ivf import IVFIndex

#: Index classes by the ``kind`` their files record.
KINDS = {"flat": FlatIndex, "hnsw": HNSWIndex, "ivf": IVFIndex}


def load(path: str | os.PathLike, mmap: bool = True) -> FlatIndex | HNSWIndex | IVFIndex:
    """Loads an index saved with ``save``, whatever its kind.

    With ``mmap=True`` the large arrays stay in the file — a flat index's vectors, an HNSW
    index's vectors, links and codes — read-only and shared between processes through the page
    cache (Annoy's use case: one static index served by many workers); the first change to the
    index copies what it modifies. Everything is validated first either way. IVF lists are
    copied. The file is opened once, so a concurrent save to the same path (an atomic rename)
    gives either the old index or the new one, never a mix.

    Raises :class:`knnkit.errors.CorruptIndexError` for a damaged, truncated or foreign file.
    """
    header, file = _io.open_file(path, mmap=mmap)
    kind = header.get("kind")
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise CorruptIndexError(f"{path}: unknown index kind {kind!r}")
    return cls._from_file(header, file)


__all__ = ["KINDS", "FlatIndex", "HNSWIndex", "IVFIndex", "index_factory", "load"]
