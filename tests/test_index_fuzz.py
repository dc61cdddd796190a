"""A bounded mutation fuzzer over every index kind's files.

Small indexes of each kind and storage are saved, then mutated: random byte flips and
truncations, and forgeries *with recomputed valid checksums* (the format: magic, version, a JSON
header with its CRC-32, 64-byte aligned CRC'd sections) — bad ids, huge counts and shapes,
non-finite floats, wrong dtypes, out-of-range graph and list entries, broken header fields. Each
mutated file is loaded (``mmap`` both ways) and, when it loads, used: ``search`` (k small and
k > n), ``get``, ``remove``, ``add``, ``save`` and load again.

Pass criteria, per case class: 0 crashes (cases run in a worker subprocess, so a dying process
is reported with the case that killed it), 0 hangs (the worker has a deadline), 0 exceptions
other than :class:`knnkit.errors.CorruptIndexError` from ``load`` (a ``PanicException``,
``TypeError``, ``OverflowError``, ``MemoryError`` or plain ``ValueError`` from a file is a
failure), only ``ValueError``/``KeyError`` from using an index that loaded, and 0 out-of-range
ids (every returned id is -1 or one that ``ids()`` reports).

Time is budgeted by wall clock: ``KNNKIT_FUZZ_SECONDS`` (default 60, shared by the classes);
``KNNKIT_FUZZ_SEED`` (default 0) is printed. ``make fuzz`` runs it for 600 s. A failing case
is reproduced with ``python tests/test_index_fuzz.py --repro CLASS SEED CASE`` (it writes the
file and runs it in-process).

Before issue 11's index core, 14 (class, family) pairs failed here within the fixed cases:
forged flat ids loaded, a NaN IVF centroid panicked, header edits raised TypeError/ValueError/
OverflowError, huge header counts aborted the process. They pass now and must keep passing.
"""

from __future__ import annotations

import copy
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

SEED = int(os.environ.get("KNNKIT_FUZZ_SEED", "0"))
BUDGET_S = float(os.environ.get("KNNKIT_FUZZ_SECONDS", "60"))
MAGIC = b"KNNKITIX"
PREFIX = struct.Struct("<8sIII")
ALIGN = 64
DIM = 8
#: Seconds without a finished case after which a worker is called hung.
HANG_S = 30.0
#: Cases of each class always run, whatever the time budget: with the fixed seed, the same
#: cases on every machine (the strict xfails below rely on them); more run while time is left.
MIN_CASES = 100
#: The seed files' index families; results are reported per class and family.
FAMILIES = ("flat", "hnsw", "ivf")
#: Address-space cap of a worker: a file that makes the loader allocate without bound is
#: stopped (and reported) instead of exhausting the machine.
MEMORY_LIMIT = 4 << 30

# -- the seed files ------------------------------------------------------------------------------


def seed_indexes() -> dict[str, Any]:
    """Small indexes of every kind and storage, by name (deterministic)."""
    import knnkit

    rng = np.random.default_rng(1234)
    X = (rng.normal(scale=3.0, size=(4, DIM))[rng.integers(0, 4, 300)]).astype(np.float32)
    X += rng.normal(size=X.shape).astype(np.float32)
    out: dict[str, Any] = {}
    for metric, dtype in (
        ("euclidean", "float32"),
        ("cosine", "float64"),
        ("manhattan", "float32"),
    ):
        ix = knnkit.FlatIndex(DIM, metric=metric, dtype=dtype)
        ix.add(X[:60].astype(dtype), ids=np.arange(60) * 3)
        out[f"flat-{metric}-{dtype}"] = ix
    for codes in ("flat", "sq8", "sq4"):
        ix = knnkit.HNSWIndex(DIM, m=4, ef_construction=32, codes=codes)
        ix.add(X[:60])
        ix.remove([5, 6])  # tombstones in the file
        out[f"hnsw-{codes}"] = ix
    for codes in ("flat", "sq8", "pq"):
        ix = knnkit.IVFIndex(DIM, nlist=4, nprobe=2, codes=codes, pq_m=4, nbits=4)
        ix.train(X[:64])
        ix.add(X[:60])
        ix.remove([7])
        out[f"ivf-{codes}"] = ix
    out["ivf-untrained"] = knnkit.IVFIndex(DIM, nlist=4)
    return out


def write_seed_files(folder: Path) -> list[Path]:
    paths = []
    for name, ix in seed_indexes().items():
        path = folder / f"{name}.knn"
        ix.save(path)
        paths.append(path)
    return paths


# -- the format, read and written here (independent of knnkit's own reader) ----------------------


def parse(raw: bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
    _, _, hlen, _ = PREFIX.unpack(raw[: PREFIX.size])
    header = json.loads(raw[PREFIX.size : PREFIX.size + hlen])
    blobs = {s["name"]: raw[s["offset"] : s["offset"] + s["length"]] for s in header["sections"]}
    return header, blobs


def assemble(
    header: dict[str, Any],
    blobs: dict[str, bytes],
    pins: dict[str, dict[str, Any]] | None = None,
    version: int = 1,
) -> bytes:
    """A file with valid checksums: ``header['sections']`` entries get each blob's length,
    CRC-32 and an aligned offset, then ``pins`` (by section name) overrides any of their fields."""
    pins = pins or {}
    header = copy.deepcopy(header)
    descr = header.get("sections")
    if not isinstance(descr, list):
        descr = []
    order = [s for s in descr if isinstance(s, dict) and s.get("name") in blobs]
    for s in order:
        b = blobs[s["name"]]
        s["length"], s["crc32"], s["offset"] = len(b), zlib.crc32(b), 0
    while True:  # offsets depend on the header's length and vice versa: iterate
        for s in order:
            s.update({k: v for k, v in pins.get(s["name"], {}).items() if k != "offset"})
        hbytes = json.dumps(header, sort_keys=True).encode()
        pos = _align(PREFIX.size + len(hbytes))
        moved = False
        for s in order:
            off = pins.get(s["name"], {}).get("offset", pos)
            if s["offset"] != off:
                s["offset"], moved = off, True
            pos = _align(pos + len(blobs[s["name"]]))
        if not moved:
            break
    out = bytearray(PREFIX.pack(MAGIC, version, len(hbytes), zlib.crc32(hbytes)) + hbytes)
    pos = _align(len(out))
    for s in order:
        b = blobs[s["name"]]
        out += b"\0" * (pos - len(out))
        out += b
        pos = _align(pos + len(b))
    return bytes(out)


def _align(x: int) -> int:
    return (x + ALIGN - 1) // ALIGN * ALIGN


def _array(header: dict[str, Any], blobs: dict[str, bytes], name: str) -> np.ndarray:
    s = next(s for s in header["sections"] if s["name"] == name)
    return np.frombuffer(blobs[name], dtype=s["dtype"]).copy()


def _sections(header: dict[str, Any], blobs: dict[str, bytes], kinds: str) -> list[str]:
    return [
        s["name"]
        for s in header["sections"]
        if np.dtype(s["dtype"]).kind in kinds and len(blobs[s["name"]]) > 0
    ]


# -- mutations: (rng, raw bytes of a seed file) -> mutated bytes, or None when not applicable ----

WEIRD = [-1, 0, 1, 2**31, 2**32, 2**53, 2**63 - 1, 2**63, 2**64, -(2**63), 1.5, float("nan"),
         "x", "", [1], [], {}, None, True]  # fmt: skip
HUGE = [2**31, 2**32, 2**40, 2**53, 2**63 - 1, 2**63, 2**64, -1, -(2**63)]


def m_flip(rng: np.random.Generator, raw: bytes) -> bytes:
    blob = bytearray(raw)
    for pos in rng.integers(0, len(blob), size=rng.integers(1, 9)):
        blob[pos] ^= int(rng.integers(1, 256))
    return bytes(blob)


def m_truncate(rng: np.random.Generator, raw: bytes) -> bytes:
    return raw[: int(rng.integers(0, len(raw)))]


def m_section_bytes(rng: np.random.Generator, raw: bytes) -> bytes | None:
    """Random bytes inside one section, with the section's checksum recomputed."""
    header, blobs = parse(raw)
    names = [n for n, b in blobs.items() if b]
    if not names:
        return None
    name = names[int(rng.integers(len(names)))]
    b = bytearray(blobs[name])
    for pos in rng.integers(0, len(b), size=rng.integers(1, 5)):
        b[pos] = int(rng.integers(0, 256))
    blobs[name] = bytes(b)
    return assemble(header, blobs)


def _set_ids(rng: np.random.Generator, raw: bytes, how: str) -> bytes | None:
    header, blobs = parse(raw)
    if "ids" not in blobs or len(blobs["ids"]) < 16:
        return None
    ids = _array(header, blobs, "ids").astype(np.int64)
    i, j = rng.choice(ids.size, size=2, replace=False)
    pins: dict[str, dict[str, Any]] = {}
    if how == "negative":
        ids[i] = int(rng.choice([-1, -2, -(2**63)]))
    elif how == "duplicate":
        ids[i] = ids[j]
    else:  # uint64: the same bytes read as unsigned, one id above 2**63
        ids[i] = -1 if rng.random() < 0.5 else -(2**62)
        pins["ids"] = {"dtype": "uint64"}
    blobs["ids"] = ids.tobytes()
    return assemble(header, blobs, pins)


def m_ids_negative(rng: np.random.Generator, raw: bytes) -> bytes | None:
    return _set_ids(rng, raw, "negative")


def m_ids_duplicate(rng: np.random.Generator, raw: bytes) -> bytes | None:
    return _set_ids(rng, raw, "duplicate")


def m_ids_uint64(rng: np.random.Generator, raw: bytes) -> bytes | None:
    return _set_ids(rng, raw, "uint64")


def m_nonfinite(rng: np.random.Generator, raw: bytes) -> bytes | None:
    """NaN, +-inf or a huge finite value in a float section (vectors, centroids, codebooks,
    quantizer ranges)."""
    header, blobs = parse(raw)
    names = _sections(header, blobs, "f")
    if not names:
        return None
    name = names[int(rng.integers(len(names)))]
    a = _array(header, blobs, name)
    for i in rng.integers(0, a.size, size=rng.integers(1, 4)):
        a[i] = rng.choice([np.nan, np.inf, -np.inf, 3e38, -3e38])
    blobs[name] = a.tobytes()
    return assemble(header, blobs)


def m_int_range(rng: np.random.Generator, raw: bytes) -> bytes | None:
    """Out-of-range values in an integer section other than ids: levels, links, list offsets
    and slots, tombstones, codes."""
    header, blobs = parse(raw)
    names = [n for n in _sections(header, blobs, "iu") if n != "ids"]
    if not names:
        return None
    name = names[int(rng.integers(len(names)))]
    a = _array(header, blobs, name)
    n = max(int(header.get("ntotal", 0) or 0), a.size)
    for i in rng.integers(0, a.size, size=rng.integers(1, 3)):
        v = int(
            rng.choice([-1, 0, n, n + 1, a.size, 2**31 - 1, 2**32 - 1, 2**63 - 1, int(a[i]) + 1])
        )
        a[i] = np.array(v % 2 ** (8 * a.itemsize), dtype=np.uint64).astype(a.dtype)
    blobs[name] = a.tobytes()
    return assemble(header, blobs)


def _header_keys(header: dict[str, Any]) -> list[tuple[str, ...]]:
    keys = [(k,) for k in header if k != "sections"]
    if isinstance(header.get("params"), dict):
        keys += [("params", k) for k in header["params"]]
    return keys


def _set(header: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    d = header
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = value


def m_header_field(rng: np.random.Generator, raw: bytes) -> bytes | None:
    """A random header field (top level or parameter) set to a value of the wrong type or
    range: ``next_id="x"``, ``kind=[1]``, ``dim=None``, ``metric=1.5`` ..."""
    header, blobs = parse(raw)
    keys = _header_keys(header)
    path = keys[int(rng.integers(len(keys)))]
    _set(header, path, WEIRD[int(rng.integers(len(WEIRD)))])
    return assemble(header, blobs)


def m_header_huge(rng: np.random.Generator, raw: bytes) -> bytes | None:
    """A count, size or position in the header set huge, negative or just out of range:
    ``nlist=2**53``, ``dim=2**63``, ``entry`` one past the last node ..."""
    header, blobs = parse(raw)
    keys = [
        p
        for p in _header_keys(header)
        if isinstance(_get(header, p), int) and not isinstance(_get(header, p), bool)
    ]
    if not keys:
        return None
    path = keys[int(rng.integers(len(keys)))]
    v = _get(header, path)
    values = HUGE + [v + 1, v - 1, 2 * v + 1, v + 60]
    _set(header, path, values[int(rng.integers(len(values)))])
    return assemble(header, blobs)


def _get(header: dict[str, Any], path: tuple[str, ...]) -> Any:
    d: Any = header
    for k in path:
        d = d[k]
    return d


def m_section_shape(rng: np.random.Generator, raw: bytes) -> bytes | None:
    """A section's shape, dtype, length or offset forged (the data and checksum unchanged):
    ``[2**64, 8]``, products that overflow, negative or float dims, a dtype of another size,
    an unknown dtype, an offset past the end or unaligned."""
    header, blobs = parse(raw)
    names = list(blobs)
    name = names[int(rng.integers(len(names)))]
    s = next(s for s in header["sections"] if s["name"] == name)
    choice = int(rng.integers(9))
    pin: dict[str, Any]
    if choice == 0:
        pin = {"shape": [2**64, 8]}
    elif choice == 1:
        pin = {"shape": [2**32, 2**32, 2**32]}
    elif choice == 2:
        pin = {"shape": [-1] + list(s["shape"])[1:]}
    elif choice == 3:
        pin = {"shape": [float(x) + 0.5 for x in s["shape"]]}
    elif choice == 4:
        pin = {
            "dtype": str(
                rng.choice(
                    [
                        "float64",
                        "float32",
                        "int64",
                        "uint8",
                        "uint32",
                        "uint64",
                        "float16",
                        "object",
                        "<f4",
                        7,
                    ]
                )
            )
        }
    elif choice == 5:
        pin = {"length": int(rng.choice([0, 2**63, 2**64, -8, len(blobs[name]) + 8]))}
    elif choice == 6:
        pin = {"offset": int(rng.choice([-64, 1, 2**63, 2**64, len(raw) + 64]))}
    elif choice == 7:  # shape and length consistent, but not what the index expects
        dt = np.dtype(s["dtype"])
        b = blobs[name] + bytes(dt.itemsize * int(rng.integers(1, 5)))
        blobs[name] = b
        pin = {"shape": [len(b) // dt.itemsize]}
    else:
        pin = {"shape": list(s["shape"]) + [1]}
    return assemble(header, blobs, {name: pin})


def m_section_table(rng: np.random.Generator, raw: bytes) -> bytes | None:
    """A section dropped, renamed, duplicated, resized consistently (shape, length and
    checksum all valid), or the section table itself broken."""
    header, blobs = parse(raw)
    names = list(blobs)
    choice = int(rng.integers(6))
    name = names[int(rng.integers(len(names)))] if names else None
    if name is None or choice == 5:
        header["sections"] = WEIRD[int(rng.integers(len(WEIRD)))]
        return assemble(header, {})
    s = next(s for s in header["sections"] if s["name"] == name)
    if choice == 0:  # dropped
        header["sections"] = [t for t in header["sections"] if t["name"] != name]
        del blobs[name]
    elif choice == 1:  # renamed
        s["name"] = name + "_"
        blobs[name + "_"] = blobs.pop(name)
    elif choice == 2:  # listed twice (same data)
        header["sections"].append(dict(s))
    else:  # shrunk or grown, whole rows, everything consistent
        dt = np.dtype(s["dtype"])
        a = np.frombuffer(blobs[name], dtype=dt).reshape(s["shape"])
        if a.ndim == 0:
            return None
        rows = a.shape[0]
        new_rows = int(rng.integers(0, rows + 3)) if choice == 3 else rows + 1
        if new_rows <= rows:
            a = a[:new_rows]
        else:
            extra = np.frombuffer(
                rng.integers(
                    0,
                    256,
                    size=(new_rows - rows)
                    * int(np.prod(a.shape[1:], dtype=np.int64))
                    * dt.itemsize,
                    dtype=np.uint8,
                ).tobytes(),
                dtype=dt,
            ).reshape((new_rows - rows, *a.shape[1:]))
            a = np.concatenate([a, extra])
        blobs[name] = np.ascontiguousarray(a).tobytes()
        s["shape"] = list(a.shape)
    return assemble(header, blobs)


def m_header_structure(rng: np.random.Generator, raw: bytes) -> bytes | None:
    """The header's shape broken: not an object, ``params`` not an object, an unknown or
    mistyped ``kind``, another format version, valid JSON that is not UTF-8 text."""
    header, blobs = parse(raw)
    choice = int(rng.integers(6))
    if choice == 0:
        header["kind"] = WEIRD[int(rng.integers(len(WEIRD)))]
    elif choice == 1:
        header["params"] = WEIRD[int(rng.integers(len(WEIRD)))]
    elif choice == 2:
        for k in [k for k in header if k not in ("sections", "kind")]:
            if rng.random() < 0.5:
                del header[k]
    elif choice == 3:
        return assemble(header, blobs, version=int(rng.choice([0, 2, 2**32 - 1])))
    elif choice == 4:
        header["kind"] = str(rng.choice(["flat", "hnsw", "ivf"]))  # another kind's loader
    else:
        hb = json.dumps([header]).encode()
        return PREFIX.pack(MAGIC, 1, len(hb), zlib.crc32(hb)) + hb
    return assemble(header, blobs)


MUTATIONS: dict[str, Callable[[np.random.Generator, bytes], bytes | None]] = {
    "flip": m_flip,
    "truncate": m_truncate,
    "section-bytes": m_section_bytes,
    "ids-negative": m_ids_negative,
    "ids-duplicate": m_ids_duplicate,
    "ids-uint64": m_ids_uint64,
    "nonfinite": m_nonfinite,
    "int-range": m_int_range,
    "header-field": m_header_field,
    "header-huge": m_header_huge,
    "section-shape": m_section_shape,
    "section-table": m_section_table,
    "header-structure": m_header_structure,
}


def make_case(cls: str, seed: int, case: int, seeds: list[Path]) -> tuple[str, bytes | None]:
    """The mutated bytes of case ``case`` of class ``cls`` (deterministic), and the seed file's
    name."""
    src = seeds[case % len(seeds)]
    rng = np.random.default_rng([seed, list(MUTATIONS).index(cls), case])
    return src.stem, MUTATIONS[cls](rng, src.read_bytes())


# -- running one case ------------------------------------------------------------------------------


class CaseFailure(Exception):
    """A case broke a pass criterion (other than by crashing or hanging)."""


def _live(ix: Any) -> np.ndarray:
    return np.asarray(ix.ids())


def _check_ids(ix: Any, I: Any, what: str) -> None:
    I = np.asarray(I)
    live = set(_live(ix).tolist())
    bad = [int(i) for i in I.ravel().tolist() if i != -1 and i not in live]
    if bad:
        raise CaseFailure(f"{what} returned ids not in ids(): {bad[:5]}")


def run_case(data: bytes, folder: Path) -> str:
    """Loads ``data`` both ways and uses what loads; returns "rejected" or "loaded", raises
    :class:`CaseFailure` when a pass criterion is broken."""
    import knnkit
    from knnkit.errors import CorruptIndexError

    path = folder / "case.knn"
    path.write_bytes(data)
    outcome = "rejected"
    for mmap in (True, False):
        try:
            ix = knnkit.load(path, mmap=mmap)
        except CorruptIndexError:
            continue
        except BaseException as e:  # noqa: BLE001 - PanicException is a BaseException
            raise CaseFailure(f"load(mmap={mmap}) raised {type(e).__name__}: {e}") from e
        outcome = "loaded"
        try:
            use(ix, folder)
        except CaseFailure:
            raise
        except (ValueError, KeyError):
            pass  # a clear refusal of an operation on a strange but valid index
        except BaseException as e:  # noqa: BLE001
            raise CaseFailure(
                f"using the index loaded with mmap={mmap} raised {type(e).__name__}: {e}"
            ) from e
        finally:
            del ix
    return outcome


def use(ix: Any, folder: Path) -> None:
    import knnkit

    rng = np.random.default_rng(0)
    dim = int(ix.dim)
    if dim < 1:
        raise CaseFailure(f"loaded an index with dim={dim}")
    dtype = getattr(ix, "dtype", np.float32)
    Q = rng.normal(size=(3, dim)).astype(dtype)
    n = len(ix)
    ids = _live(ix)
    if ids.size != n:
        raise CaseFailure(f"len() is {n} but ids() holds {ids.size}")
    if ids.dtype != np.int64 or (ids < 0).any() or np.unique(ids).size != ids.size:
        raise CaseFailure(
            f"loaded ids break the invariants (int64, non-negative, unique): {ids.dtype} "
            f"min {ids.min(initial=0)}, {ids.size - np.unique(ids).size} repeated"
        )
    if dim > 1 << 16:  # wider than any seed file's vectors could be
        if n:
            raise CaseFailure(f"loaded {n} vectors of dim={dim} from a small file")
        return  # an empty index of that width is consistent: no queries that wide here
    for k in (1, 3, n + 5):
        res = ix.search(Q, k)
        _check_ids(ix, res.ids, f"search(k={k})")
        if (np.asarray(res.ids) >= 0).sum(1).max(initial=0) > n:
            raise CaseFailure(f"search(k={k}) returned more results than the {n} vectors")
    if ids.size:
        res = ix.search(Q, 4, filter=ids[::2])
        _check_ids(ix, res.ids, "filtered search")
        got = ix.get(ids[:3])
        if got.shape != (min(3, ids.size), dim):
            raise CaseFailure(f"get returned shape {got.shape}")
        removed = ix.remove(ids[:2])
        if removed != min(2, ids.size):
            raise CaseFailure(f"remove of 2 live ids returned {removed}")
        res = ix.search(Q, n + 5)
        if np.isin(np.asarray(res.ids), ids[:2]).any():
            raise CaseFailure(f"search returned removed ids {ids[:2]}")
    ix.add(rng.normal(size=(5, dim)).astype(dtype))
    res = ix.search(Q, 3)
    _check_ids(ix, res.ids, "search after add")
    out = folder / "resaved.knn"
    ix.save(out)
    again = knnkit.load(out, mmap=False)
    if len(again) != len(ix):
        raise CaseFailure(f"save + load changed len from {len(ix)} to {len(again)}")


# -- the worker (a subprocess) and the driver -----------------------------------------------------


def worker(cls: str, seed: int, first: int, until: float, seed_dir: str, progress: str) -> None:
    """Runs cases ``first, first + 1, ...`` of ``cls``: the first :data:`MIN_CASES` always
    (the same cases on every machine), then more until the wall clock passes ``until``;
    appends a JSON line per case to ``progress`` (a "start" line before each case, so a crash
    or hang names its case)."""
    import faulthandler
    import resource

    faulthandler.enable()
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    seeds = sorted(Path(seed_dir).glob("*.knn"))
    folder = Path(tempfile.mkdtemp(prefix="knnkit-fuzz-"))
    case = first
    with open(progress, "a") as log:
        while case < MIN_CASES or time.time() < until:
            src, data = make_case(cls, seed, case, seeds)
            log.write(json.dumps({"case": case, "src": src, "status": "start"}) + "\n")
            log.flush()
            if data is None:
                status, detail = "skipped", ""
            else:
                try:
                    status, detail = run_case(data, folder), ""
                except CaseFailure as e:
                    status, detail = "failed", str(e)[:500]
                except BaseException:  # noqa: BLE001 - the fuzzer's own bug: report it
                    status, detail = "failed", "harness: " + traceback.format_exc()[-500:]
            log.write(
                json.dumps({"case": case, "src": src, "status": status, "detail": detail}) + "\n"
            )
            log.flush()
            case += 1


def fuzz_class(cls: str, seconds: float, seed: int, seed_dir: Path, work: Path) -> dict[str, Any]:
    """Runs class ``cls`` for about ``seconds`` (at least :data:`MIN_CASES` cases) in worker
    subprocesses, a new one after each crash or hang; returns per-family counts and the
    failing cases as ``(case, seed file, detail)``."""
    stats: dict[str, Any] = {
        "failures": [],
        **{f: dict.fromkeys(("cases", "loaded", "rejected", "skipped"), 0) for f in FAMILIES},
    }
    end = time.time() + seconds
    first = 0
    progress = work / f"{cls}.jsonl"
    errlog = work / f"{cls}.stderr"
    while True:
        progress.write_text("")
        cmd = [sys.executable, __file__, "--worker", cls, str(seed), str(first), str(end),
               str(seed_dir), str(progress)]  # fmt: skip
        with open(errlog, "w") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
            size, changed = -1, time.time()
            while proc.poll() is None:
                time.sleep(0.05)
                now_size = progress.stat().st_size
                if now_size != size:
                    size, changed = now_size, time.time()
                elif time.time() - changed > HANG_S:
                    proc.kill()
                    proc.wait()
                    break
        rc = None if proc.returncode == -9 and time.time() - changed > HANG_S else proc.returncode
        last = None
        for line in progress.read_text().splitlines():
            rec = json.loads(line)
            if rec["status"] == "start":
                last = rec
                continue
            last = None
            fam = stats[rec["src"].split("-")[0]]
            fam["cases"] += 1
            if rec["status"] == "failed":
                stats["failures"].append((rec["case"], rec["src"], rec["detail"]))
            else:
                fam[rec["status"]] += 1
        if rc == 0:
            return stats
        text = errlog.read_text(errors="replace")
        detail = text[:300] + (" ... " + text[-300:] if len(text) > 600 else text[300:])
        if last is None:  # died outside any case (start-up): report and stop
            stats["failures"].append((first, "-", f"worker exited {rc} outside a case: {detail}"))
            return stats
        stats[last["src"].split("-")[0]]["cases"] += 1
        what = f"hang (no case finished in {HANG_S} s)" if rc is None else f"crash (exit {rc})"
        stats["failures"].append((last["case"], last["src"], f"{what}: {detail}"))
        first = last["case"] + 1
        if time.time() >= end and first >= MIN_CASES:
            return stats


_RESULTS: dict[str, dict[str, Any]] = {}


def class_results(cls: str, seed_dir: Path, work: Path) -> dict[str, Any]:
    """The fuzzing results of one class (run once, then shared by its per-family tests)."""
    if cls not in _RESULTS:
        seconds = BUDGET_S / len(MUTATIONS)
        print(f"fuzz class {cls}: seed {SEED}, {seconds:.1f} s")
        _RESULTS[cls] = fuzz_class(cls, seconds, SEED, seed_dir, work)
    return _RESULTS[cls]


@pytest.fixture(scope="module")
def seed_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz-seeds")
    write_seed_files(folder)
    return folder


def _params() -> list[Any]:
    out = []
    for cls in MUTATIONS:
        for family in FAMILIES:
            out.append(pytest.param(cls, family, id=f"{cls}-{family}"))
    return out


@pytest.mark.parametrize(("cls", "family"), _params())
def test_fuzz_index_files(cls: str, family: str, seed_dir: Path, tmp_path_factory) -> None:
    stats = class_results(cls, seed_dir, tmp_path_factory.mktemp(f"fuzz-{cls}"))
    fam = stats[family]
    fails = [f for f in stats["failures"] if f[1].split("-")[0] in (family, "")]
    print(
        f"fuzz {cls} on {family} files (seed {SEED}): {fam['cases']} cases, {fam['loaded']} "
        f"loaded, {fam['rejected']} rejected, {fam['skipped']} not applicable, "
        f"{len(fails)} failures"
    )
    lines = [
        f"  case {case} ({src}): {detail}  "
        f"[repro: python tests/test_index_fuzz.py --repro {cls} {SEED} {case}]"
        for case, src, detail in fails[:10]
    ]
    assert not fails, (
        f"{cls} on {family} files (seed {SEED}): {len(fails)} of {fam['cases']} cases "
        "failed:\n" + "\n".join(lines)
    )


def repro(cls: str, seed: int, case: int) -> None:
    """Writes case ``case`` of ``cls`` to ``fuzz-<cls>-<seed>-<case>.knn`` and runs it here."""
    folder = Path(tempfile.mkdtemp(prefix="knnkit-fuzz-seeds-"))
    seeds = write_seed_files(folder)
    src, data = make_case(cls, seed, case, sorted(seeds))
    if data is None:
        print("not applicable to its seed file")
        return
    out = Path(f"fuzz-{cls}-{seed}-{case}.knn")
    out.write_bytes(data)
    print(f"wrote {out} (from the {src} seed file); running it")
    print(run_case(data, Path(tempfile.mkdtemp(prefix="knnkit-fuzz-"))))


if __name__ == "__main__":
    if sys.argv[1] == "--worker":
        c, s, f, u, d, p = sys.argv[2:8]
        worker(c, int(s), int(f), float(u), d, p)
    elif sys.argv[1] == "--repro":
        repro(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
