"""FlatIndex on its Rust core: the defects of the numpy-backed version stay fixed (issue 11)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import knnkit
from knnkit import io as kio
from knnkit.errors import CorruptIndexError

SEED = 7


def oracle(X, ids, Q, k, metric="euclidean"):
    X, Q = X.astype(np.float64), Q.astype(np.float64)
    if metric == "euclidean":
        d = np.sqrt(((Q[:, None, :] - X[None]) ** 2).sum(-1))
    else:
        d = -(Q @ X.T)
    o = np.argsort(d, axis=1, kind="stable")[:, :k]
    return ids[o], np.take_along_axis(d, o, 1)


@pytest.mark.parametrize("nq", [1, 5, 15, 16, 40])
def test_remove_keeps_few_query_searches_exact(nq):
    """The bf16 copy used by searches of fewer than 16 queries follows removals."""
    X = np.random.default_rng(SEED).normal(size=(200, 32)).astype(np.float32)
    ix = knnkit.FlatIndex(32)
    ix.add(X)
    ix.remove(range(100))
    Q = X[150 : 150 + nq]
    D, I = ix.search(Q, 3)
    want, _ = oracle(X[100:], np.arange(100, 200), Q, 3)
    np.testing.assert_array_equal(I, want)
    assert I[0, 0] == 150


@pytest.mark.parametrize("forgery", ["negative", "duplicate", "uint64", "nan", "huge", "short"])
def test_forged_flat_files_with_valid_checksums_are_rejected(tmp_path, forgery):
    """Sections written with valid checksums but contents a flat index cannot hold."""
    ix = knnkit.FlatIndex(4)
    ix.add(np.arange(24, dtype=np.float32).reshape(6, 4))
    path = tmp_path / "f.knn"
    ix.save(path)
    header, parts = kio.read(path)
    ids, vectors = parts["ids"].copy(), parts["vectors"].copy()
    if forgery == "negative":
        ids[2] = -5
    elif forgery == "duplicate":
        ids[1] = ids[0]
    elif forgery == "uint64":
        ids = ids.astype(np.uint64)
        ids[0] = 2**64 - 1
    elif forgery == "nan":
        vectors[0, 3] = np.nan
    elif forgery == "huge":
        vectors[0, 3] = 3e38
    else:
        ids = ids[:5]
    kio.write(path, header, {"vectors": vectors, "ids": ids})
    for mmap in (True, False):
        with pytest.raises(CorruptIndexError):
            knnkit.load(path, mmap=mmap)


def test_concurrent_writer_never_breaks_searches():
    """Searches while another thread adds and removes: no error, and every returned (id,
    distance) pair is that id's true distance."""
    rng = np.random.default_rng(SEED)
    X = rng.normal(size=(4000, 16)).astype(np.float32)
    Q = rng.normal(size=(8, 16)).astype(np.float32)
    ix = knnkit.FlatIndex(16, bf16=False)
    ix.add(X[:1000], ids=np.arange(1000))
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer():
        i = 1000
        try:
            while not stop.is_set() and i < 4000:
                ix.add(X[i : i + 50], ids=np.arange(i, i + 50))
                ix.remove(np.arange(i - 1000, i - 950))
                i += 50
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t = threading.Thread(target=writer)
    t.start()
    wrong = 0
    try:
        for rep in range(200):
            q = Q[: 1 + rep % 8]
            D, I = ix.search(q, 5)
            ok = I >= 0
            true = np.linalg.norm(X[I[ok]] - np.repeat(q, ok.sum(1), 0), axis=1)
            wrong += int((np.abs(true - D[ok]) > 1e-3 * (1 + true)).sum())
    finally:
        stop.set()
        t.join(60)
    assert not t.is_alive() and not errors
    assert wrong == 0


def test_absurd_k_is_refused_or_capped():
    ix = knnkit.FlatIndex(4)
    ix.add(np.eye(4, dtype=np.float32))
    D, I = ix.search(np.eye(4, dtype=np.float32)[:1], 50)
    assert (I[0, :4] >= 0).all() and (I[0, 4:] == -1).all() and np.isinf(D[0, 4:]).all()
    for k in (10**9, 2**40):
        with pytest.raises(ValueError, match="k"):
            ix.search(np.ones((5, 4), np.float32), k)
    for k in (2**63, 2**64):
        with pytest.raises(ValueError, match="k"):
            ix.search(np.ones((1, 4), np.float32), k)


def test_values_that_would_overflow_are_refused_and_change_nothing():
    ix = knnkit.FlatIndex(3)
    ix.add(np.ones((2, 3), np.float32))
    for bad in (1e30, 3e38):
        with pytest.raises(ValueError, match="squared norm"):
            ix.add(np.array([[bad, 0, 0], [1, 1, 1]], np.float32))
    assert len(ix) == 2 and ix.ids().tolist() == [0, 1]


def test_filters_edge_cases():
    ix = knnkit.FlatIndex(2)
    ix.add(np.eye(2, dtype=np.float32), ids=[3, 9])
    q = np.zeros((1, 2), np.float32)
    assert ix.search(q, 2, filter=[]).ids.tolist() == [[-1, -1]]
    assert ix.search(q, 2, filter=np.array([9], np.uint64)).ids.tolist() == [[9, -1]]
    mask = np.zeros(5, bool)
    mask[3] = True
    assert ix.search(q, 2, filter=mask).ids.tolist() == [[3, -1]]
    with pytest.raises(TypeError, match="filter"):
        ix.search(q, 2, filter=["a"])


def test_exhausted_default_ids_raise_clearly():
    ix = knnkit.FlatIndex(2)
    ix.add(np.ones((1, 2), np.float32), ids=[2**63 - 1])
    with pytest.raises(ValueError, match="ids"):
        ix.add(np.ones((1, 2), np.float32))
    with pytest.raises(ValueError, match="2\\*\\*63"):
        ix.add(np.ones((1, 2), np.float32), ids=np.array([2**63], np.uint64))
    assert len(ix) == 1
