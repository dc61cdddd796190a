"""knnkit's index file format: one file per index, safe to load.

Layout (all integers little-endian)::

    magic   8 bytes  b"KNNKITIX"
    version u32      format version (1)
    hlen    u32      length of the header
    hcrc    u32      CRC-32 of the header
    header  hlen bytes of UTF-8 JSON: kind, metric, parameters, counts, and for each section
            {name, dtype, shape, offset, length, crc32}
    sections, each starting at a 64-byte aligned offset (so ``mmap=True`` maps them without a copy)

Every length, offset, dtype and shape is validated against the file size before anything is read,
and checksums are verified, so a truncated, damaged or foreign file raises
:class:`knnkit.errors.CorruptIndexError` instead of crashing or reading past the end.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from knnkit.errors import CorruptIndexError

MAGIC = b"KNNKITIX"
VERSION = 1
ALIGN = 64
_PREFIX = struct.Struct("<8sIII")
_MAX_HEADER = 1 << 20
_DTYPES = {"float32", "float64", "int64", "uint8", "uint32", "uint64"}


def write(path: str | os.PathLike, header: dict[str, Any], sections: dict[str, np.ndarray]) -> None:
    """Writes ``header`` and the arrays in ``sections`` atomically (temp file, fsync, rename)."""
    path = Path(path)
    arrays = {name: np.ascontiguousarray(a) for name, a in sections.items()}
    descr = [
        {
            "name": name,
            "dtype": a.dtype.name,
            "shape": list(a.shape),
            "offset": 0,
            "length": int(a.nbytes),
            "crc32": zlib.crc32(memoryview(a).cast("B")) if a.nbytes else 0,
        }
        for name, a in arrays.items()
    ]
    header = dict(header, sections=descr)
    # Offsets depend on the header length, which depends on the offsets: iterate to a fixed point.
    while True:
        hbytes = json.dumps(header, sort_keys=True).encode()
        pos = _align(_PREFIX.size + len(hbytes))
        offsets = []
        for s in descr:
            offsets.append(pos)
            pos = _align(pos + s["length"])
        if offsets == [s["offset"] for s in descr]:
            break
        for s, off in zip(descr, offsets, strict=True):
            s["offset"] = off
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(_PREFIX.pack(MAGIC, VERSION, len(hbytes), zlib.crc32(hbytes)))
        f.write(hbytes)
        for s, a in zip(descr, arrays.values(), strict=True):
            f.write(b"\0" * (s["offset"] - f.tell()))
            f.write(memoryview(a).cast("B"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read(
    path: str | os.PathLike, mmap: bool = True
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Reads and validates a file written by :func:`write`; arrays are read-only memmaps when
    ``mmap`` is true, else in-memory copies."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(_PREFIX.size)
        if len(prefix) < _PREFIX.size:
            raise CorruptIndexError(f"{path}: file too short to be a knnkit index ({size} bytes)")
        magic, version, hlen, hcrc = _PREFIX.unpack(prefix)
        if magic != MAGIC:
            raise CorruptIndexError(f"{path}: not a knnkit index file (magic {magic!r})")
        if version != VERSION:
            raise CorruptIndexError(
                f"{path}: format version {version} is not supported (this knnkit reads {VERSION})"
            )
        if hlen > min(_MAX_HEADER, size - _PREFIX.size):
            raise CorruptIndexError(f"{path}: header length {hlen} exceeds the file")
        hbytes = f.read(hlen)
    if zlib.crc32(hbytes) != hcrc:
        raise CorruptIndexError(f"{path}: header checksum mismatch")
    try:
        header = json.loads(hbytes)
    except ValueError as e:
        raise CorruptIndexError(f"{path}: header is not valid JSON") from e
    if not isinstance(header, dict) or not isinstance(header.get("sections"), list):
        raise CorruptIndexError(f"{path}: header has no section table")
    arrays: dict[str, np.ndarray] = {}
    for s in header["sections"]:
        arrays[s.get("name", "?")] = _section(path, s, size, mmap)
    return header, arrays


def _section(path: Path, s: Any, size: int, mmap: bool) -> np.ndarray:
    try:
        name, dtype, shape = str(s["name"]), str(s["dtype"]), [int(x) for x in s["shape"]]
        offset, length, crc = int(s["offset"]), int(s["length"]), int(s["crc32"])
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptIndexError(f"{path}: malformed section entry {s!r}") from e
    if dtype not in _DTYPES or any(x < 0 for x in shape):
        raise CorruptIndexError(f"{path}: section {name!r} has invalid dtype/shape {dtype}{shape}")
    expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if expected != length or offset < 0 or offset % ALIGN or offset + length > size:
        raise CorruptIndexError(
            f"{path}: section {name!r} (offset {offset}, length {length}) does not fit the "
            f"{size}-byte file or its shape {shape}"
        )
    if length == 0:
        return np.zeros(shape, dtype=dtype)
    arr = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=tuple(shape))
    if zlib.crc32(memoryview(arr).cast("B")) != crc:
        raise CorruptIndexError(f"{path}: checksum mismatch in section {name!r}")
    return arr if mmap else np.array(arr)


def _align(x: int) -> int:
    return (x + ALIGN - 1) // ALIGN * ALIGN
