"""The index file format: files written by earlier releases keep loading, saves are atomic and
never share a temporary file, loads open the file once."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

import knnkit
from knnkit import io as kio
from knnkit.errors import CorruptIndexError

PINNED = Path(__file__).parent / "data" / "format_v1"


@pytest.mark.parametrize("name", sorted(p.stem for p in PINNED.glob("*.knn")))
@pytest.mark.parametrize("mmap", [True, False])
def test_files_written_by_the_first_release_keep_loading(name, mmap):
    """Files written on 2026-12-03 by format version 1 (tests/data/format_v1)."""
    want = json.loads((PINNED / "expected.json").read_text())[name]
    Q = np.load(PINNED / "queries.npy")
    ix = knnkit.load(PINNED / f"{name}.knn", mmap=mmap)
    assert len(ix) == 118
    D, I = ix.search(Q.astype(ix.dtype), 4)
    np.testing.assert_array_equal(I, want["ids"])
    np.testing.assert_allclose(D, want["distances"], rtol=1e-5, atol=1e-6)
    assert 4 not in set(ix.ids().tolist()) and 1 in set(ix.ids().tolist())


def test_write_and_read_round_trip(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(4, 3)
    b = np.array([5, -1], dtype=np.int64)
    e = np.empty((0, 7), dtype=np.float64)
    kio.write(tmp_path / "x.knn", {"kind": "test", "n": 3}, {"a": a, "b": b, "e": e})
    for mmap in (True, False):
        header, arrays = kio.read(tmp_path / "x.knn", mmap=mmap)
        assert header["kind"] == "test" and header["n"] == 3
        np.testing.assert_array_equal(arrays["a"], a)
        np.testing.assert_array_equal(arrays["b"], b)
        assert arrays["e"].shape == (0, 7) and arrays["e"].dtype == np.float64
    assert os.listdir(tmp_path) == ["x.knn"]


def test_missing_file_and_missing_directory_raise_os_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        knnkit.load(tmp_path / "nope.knn")
    with pytest.raises(FileNotFoundError):
        knnkit.FlatIndex(2).save(tmp_path / "no" / "dir.knn")


def test_empty_indexes_save_and_load(tmp_path):
    for ix in (knnkit.FlatIndex(4), knnkit.FlatIndex(4, dtype="float64", metric="cosine")):
        ix.save(tmp_path / "e.knn")
        for mmap in (True, False):
            j = knnkit.load(tmp_path / "e.knn", mmap=mmap)
            assert len(j) == 0 and j.dim == 4
            j.add(np.ones((2, 4), dtype=j.dtype))
            assert j.search(np.ones((1, 4), dtype=j.dtype), 1).ids.tolist() == [[0]]
    assert os.listdir(tmp_path) == ["e.knn"], "no temporary file left behind"


def test_concurrent_saves_to_one_path(tmp_path):
    """Each thread saves its own index to the same path: no error, and the final file is one
    complete version."""
    path = tmp_path / "c.knn"
    rng = np.random.default_rng(0)
    indexes = []
    for t in range(4):
        ix = knnkit.FlatIndex(8)
        ix.add(rng.normal(size=(200 + t, 8)).astype(np.float32))
        indexes.append(ix)
    errors: list[BaseException] = []

    def run(ix):
        try:
            for _ in range(15):
                ix.save(path)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(ix,)) for ix in indexes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    j = knnkit.load(path)
    assert len(j) in {200, 201, 202, 203}
    assert os.listdir(tmp_path) == ["c.knn"]


@pytest.mark.parametrize("edit", ["next_id", "shape", "kind", "sections", "dim"])
def test_forged_headers_raise_corrupt_index_error(tmp_path, edit):
    ix = knnkit.FlatIndex(3)
    ix.add(np.eye(3, dtype=np.float32))
    ix.save(tmp_path / "f.knn")
    header, arrays = kio.read(tmp_path / "f.knn")
    if edit == "next_id":
        header["next_id"] = "x"
    elif edit == "kind":
        header["kind"] = [1]
    elif edit == "dim":
        header["dim"] = 2**70
    kio.write(tmp_path / "f.knn", header, arrays)
    raw = bytearray((tmp_path / "f.knn").read_bytes())
    if edit in ("shape", "sections"):
        hlen = int.from_bytes(raw[12:16], "little")
        h = json.loads(raw[20 : 20 + hlen])
        if edit == "shape":
            h["sections"][0]["shape"] = [2**64, 8]
        else:
            h["sections"] = {"x": 1}
        import zlib

        hb = json.dumps(h).encode()
        raw = raw[:12] + len(hb).to_bytes(4, "little") + zlib.crc32(hb).to_bytes(4, "little")
        raw += hb + bytes((tmp_path / "f.knn").read_bytes())[20 + hlen :]
        (tmp_path / "f.knn").write_bytes(bytes(raw))
    with pytest.raises(CorruptIndexError):
        knnkit.load(tmp_path / "f.knn")


_TRUNCATE = """
import sys, numpy as np, knnkit
from knnkit.errors import CorruptIndexError
path, kind = sys.argv[1], sys.argv[2]
X = np.random.default_rng(0).normal(size=(40000, 32)).astype(np.float32)
ix = knnkit.FlatIndex(32) if kind == "flat" else knnkit.HNSWIndex(32, m=8, ef_construction=16)
ix.add(X)
ix.save(path)
j = knnkit.load(path, mmap=True)
with open(path, "r+b") as f:  # another program truncates the file in place
    f.truncate(8192)
try:
    j.search(X[:3], 5)
    j.search(X[:40], 5)
except CorruptIndexError as e:
    assert "truncated" in str(e), e
    print("reported")
else:
    print("not reported")
"""


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_mapped_file_truncated_in_place_is_reported_not_fatal(tmp_path, kind):
    """Reading a page past the new end of a truncated mapped file raises SIGBUS; knnkit turns
    it into CorruptIndexError (run in a child process: a regression would kill it)."""
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-c", _TRUNCATE, str(tmp_path / "t.knn"), kind],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    assert r.stdout.strip() == "reported"
