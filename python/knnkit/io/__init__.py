"""knnkit's index file format: one file per index, safe to load.

Layout (all integers little-endian)::

    magic   8 bytes  b"KNNKITIX"
    version u32      format version (1)
    hlen    u32      length of the header
    hcrc    u32      CRC-32 of the header
    header  hlen bytes of UTF-8 JSON: kind, metric, parameters, counts, and for each section
            {name, dtype, shape, offset, length, crc32}
    sections, each starting at a 64-byte aligned offset (so ``mmap=True`` maps them without a copy)

The reader and the writer are the Rust core's (``knnkit_core::io``), shared with every other
user of these files: every length, offset, dtype and shape is validated against the file size
before anything is read, and checksums are verified, so a truncated, damaged or foreign file
raises :class:`knnkit.errors.CorruptIndexError` instead of crashing or reading past the end. A
load opens the file once (mapped or read); a save is atomic (a uniquely named temporary file in
the same directory, fsync, rename, fsync of the directory), so concurrent saves and loads of one
path never see a mix of two files.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from knnkit import _core
from knnkit.errors import CorruptIndexError

_DTYPES = ("float32", "float64", "int64", "uint8", "uint32", "uint64")


def write(path: str | os.PathLike, header: dict[str, Any], sections: dict[str, Any]) -> None:
    """Writes ``header`` (JSON-serialisable) and the arrays in ``sections`` atomically."""
    table = []
    for name, a in sections.items():
        a = np.ascontiguousarray(a)
        if a.dtype.name not in _DTYPES:
            raise TypeError(f"section {name!r}: expected one of {_DTYPES}, got {a.dtype}")
        table.append((name, a.dtype.name, list(a.shape), a.reshape(-1).view(np.uint8)))
    _core.write_index_file(os.fspath(path), json.dumps(header, sort_keys=True), table)


def open_file(path: str | os.PathLike, mmap: bool = True) -> tuple[dict[str, Any], Any]:
    """Opens and validates an index file once: its header and the ``knnkit._core.IndexFile``
    (mapped when ``mmap``) whose ``array(name)`` copies a section out; the native indexes'
    ``from_file`` read their kind from it."""
    f = _core.IndexFile.open(os.fspath(path), mmap)
    header = json.loads(f.header())
    return header, f


def from_bytes(data: bytes) -> tuple[dict[str, Any], Any]:
    """Validates a whole file held in memory (as an index's ``encode`` returns it, e.g. in a
    pickle): its header and the ``knnkit._core.IndexFile``."""
    f = _core.IndexFile.from_bytes(data)
    return json.loads(f.header()), f


def read(
    path: str | os.PathLike, mmap: bool = True
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Reads and validates a file written by :func:`write`: its header and a copy of every
    section."""
    header, f = open_file(path, mmap)
    return header, {name: f.array(name) for name in f.names()}


__all__ = ["CorruptIndexError", "from_bytes", "open_file", "read", "write"]
