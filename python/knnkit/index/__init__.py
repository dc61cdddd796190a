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

    With ``mmap=True`` a flat index's vectors stay in the file (read-only, shared between
    processes through the page cache) until the index is modified; graph indexes are validated
    and copied into memory.

    Raises :class:`knnkit.errors.CorruptIndexError` for a damaged, truncated or foreign file.
    """
    header, arrays = _io.read(path, mmap=mmap)
    cls = KINDS.get(header.get("kind"))  # type: ignore[arg-type]
    if cls is None:
        raise CorruptIndexError(f"{path}: unknown index kind {header.get('kind')!r}")
    return cls._from_parts(header, arrays)


__all__ = ["KINDS", "FlatIndex", "HNSWIndex", "IVFIndex", "index_factory", "load"]
