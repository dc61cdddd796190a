"""FlatIndex: exactness against the SciPy oracle, ids, filters, removal, files and pickling."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import knnkit
from knnkit.errors import CorruptIndexError, DimensionMismatchError
from knnkit.testing import exact_knn

METRICS = ["euclidean", "sqeuclidean", "cosine", "inner_product", "manhattan", "chebyshev"]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(700, 24))
    Q = rng.normal(size=(40, 24))
    return X, Q


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_search_matches_oracle(data, metric, dtype):
    X, Q = data
    ix = knnkit.FlatIndex(X.shape[1], metric=metric, dtype=dtype)
    ix.add(X)
    D, I = ix.search(Q, 10)
    assert D.dtype == np.dtype(dtype) and I.dtype == np.int64
    D0, I0 = exact_knn(X, Q, 10, metric)
    rtol = 1e-4 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(D, D0, rtol=rtol, atol=rtol)
    # indices equal wherever the oracle's distances are not tied
    assert (I == I0).mean() > 0.99


def test_ids_filters_and_padding(data):
    X, Q = data
    ix = knnkit.FlatIndex(X.shape[1])
    ids = np.arange(1000, 1000 + len(X))
    ix.add(X, ids=ids)
    res = ix.search(Q[:3], 5)
    _, I0 = exact_knn(X, Q[:3], 5)
    np.testing.assert_array_equal(res.ids, ids[I0])
    # an id-array filter and the equivalent boolean mask give the same answer
    allowed = ids[::7]
    mask = np.zeros(ids.max() + 1, dtype=bool)
    mask[allowed] = True
    r1, r2 = ix.search(Q, 5, filter=allowed), ix.search(Q, 5, filter=mask)
    np.testing.assert_array_equal(r1.ids, r2.ids)
    assert np.isin(r1.ids, allowed).all()
    # fewer candidates than k: padded with -1 / inf, and n_found says so
    r = ix.search(Q[:2], 5, filter=allowed[:3])
    assert r.n_found.tolist() == [3, 3]
    assert (r.ids[:, 3:] == -1).all() and np.isinf(r.distances[:, 3:]).all()
    ip = knnkit.FlatIndex(X.shape[1], metric="inner_product")
    ip.add(X[:2])
    r = ip.search(Q[:1], 4)
    assert r.ids[0, 2:].tolist() == [-1, -1] and (r.distances[0, 2:] == -np.inf).all()


def test_remove_get_and_continuing_ids(data):
    X, _ = data
    ix = knnkit.FlatIndex(X.shape[1], dtype="float64")
    ix.add(X[:10])
    assert ix.remove([3, 4, 99]) == 2 and len(ix) == 8
    np.testing.assert_array_equal(ix.get([5, 0]), X[[5, 0]])
    with pytest.raises(KeyError):
        ix.get([3])
    ix.add(X[10:12])
    assert ix.search(X[10:12], 1).ids[:, 0].tolist() == [10, 11]
    with pytest.raises(ValueError, match="already"):
        ix.add(X[:1], ids=[5])


def test_range_search(data):
    X, Q = data
    ix = knnkit.FlatIndex(X.shape[1], dtype="float64")
    ix.add(X)
    D0, I0 = exact_knn(X, Q, len(X))
    r = np.median(D0[:, 5])
    lims, D, I = ix.range_search(Q, r)
    for i in range(len(Q)):
        expected = I0[i][D0[i] <= r]
        np.testing.assert_array_equal(I[lims[i] : lims[i + 1]], expected)
    with pytest.raises(ValueError, match="radius"):
        ix.range_search(Q, -1.0)


def test_self_query_is_exactly_zero_and_first():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 50)).astype(np.float32) * 100
    X[1] = X[0] + 1e-4  # a near-duplicate
    for metric in ["euclidean", "sqeuclidean", "cosine"]:
        ix = knnkit.FlatIndex(50, metric=metric)
        ix.add(X)
        D, I = ix.search(X, 2)
        assert (D[:, 0] == 0).all(), metric
        # itself first, unless another row is also at exactly 0 (a tie, lower index first)
        tied = D[:, 1] == 0
        assert (I[~tied, 0] == np.arange(len(X))[~tied]).all(), metric
        assert tied.sum() <= 2, metric


def test_bad_input_is_rejected_clearly():
    ix = knnkit.FlatIndex(4)
    with pytest.raises(DimensionMismatchError, match="expected 4"):
        ix.add(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="finite"):
        ix.add(np.array([[0, np.nan, 0, 0]]))
    with pytest.raises(TypeError, match="dtype"):
        ix.add(np.zeros((2, 4), dtype=complex))
    with pytest.raises(ValueError, match="metric"):
        knnkit.FlatIndex(4, metric="nope")
    with pytest.raises(ValueError, match="positive"):
        ix.search(np.zeros((1, 4)), 0)
    with pytest.raises(ValueError, match="dim"):
        knnkit.FlatIndex(0)


def test_save_load_mmap_and_pickle(tmp_path, data):
    X, Q = data
    ix = knnkit.FlatIndex(X.shape[1], metric="cosine")
    ix.add(X, ids=np.arange(len(X)) * 2)
    path = tmp_path / "ix.knn"
    ix.save(path)
    for mmap in (True, False):
        j = knnkit.load(path, mmap=mmap)
        assert (j.metric, j.dim, len(j)) == ("cosine", X.shape[1], len(X))
        np.testing.assert_array_equal(j.search(Q, 5).ids, ix.search(Q, 5).ids)
    j = knnkit.load(path)
    j.add(X[:1])  # a memory-mapped index becomes writable by copying
    assert len(j) == len(X) + 1 and len(knnkit.load(path)) == len(X)
    k = pickle.loads(pickle.dumps(ix))
    np.testing.assert_array_equal(k.search(Q, 5).ids, ix.search(Q, 5).ids)


def test_corrupt_files_raise_clear_errors(tmp_path, data):
    X, _ = data
    ix = knnkit.FlatIndex(X.shape[1])
    ix.add(X[:50])
    path = tmp_path / "ix.knn"
    ix.save(path)
    raw = path.read_bytes()
    bad = tmp_path / "bad.knn"
    cases = {
        "truncated": raw[: len(raw) // 2],
        "empty": b"",
        "foreign": b"\x89PNG" + raw[4:],
        "flipped payload": raw[:-10] + bytes([raw[-10] ^ 0xFF]) + raw[-9:],
        "flipped header": raw[:30] + bytes([raw[30] ^ 0x01]) + raw[31:],
        "version": raw[:8] + (99).to_bytes(4, "little") + raw[12:],
    }
    for name, blob in cases.items():
        bad.write_bytes(blob)
        with pytest.raises(CorruptIndexError):
            knnkit.load(bad)
        assert name


def test_random_mutations_never_crash(tmp_path, data):
    """Mutate a real file many times: every load either succeeds or raises CorruptIndexError."""
    X, _ = data
    ix = knnkit.FlatIndex(X.shape[1])
    ix.add(X[:20])
    path = tmp_path / "ix.knn"
    ix.save(path)
    raw = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    bad = tmp_path / "m.knn"
    for _ in range(300):
        blob = bytearray(raw)
        for pos in rng.integers(0, len(blob), size=rng.integers(1, 4)):
            blob[pos] = rng.integers(0, 256)
        if rng.random() < 0.3:
            blob = blob[: rng.integers(0, len(blob))]
        bad.write_bytes(bytes(blob))
        try:
            knnkit.load(bad, mmap=bool(rng.integers(0, 2)))
        except CorruptIndexError:
            pass


def _search_in_child(ix, Q, out):
    out.put(ix.search(Q, 3).ids.tolist())


def test_forked_child_searches_without_deadlock():
    """The parent's thread pool does not exist in a forked child: the child must build its own."""
    import multiprocessing as mp

    rng = np.random.default_rng(1)
    X = rng.normal(size=(20_000, 32)).astype(np.float32)  # big enough to use the pool
    Q = X[:64]
    ix = knnkit.FlatIndex(32)
    ix.add(X)
    expected = ix.search(Q, 3).ids.tolist()  # the parent's pool now exists
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_search_in_child, args=(ix, Q, out))
    child.start()
    child.join(60)
    assert child.exitcode == 0, "the forked child hung or crashed"
    assert out.get(timeout=5) == expected


# -- device= (the torch backend; skipped without torch) ---------------------------------------


@pytest.mark.parametrize("metric", [*METRICS, "minkowski"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_device_cpu_matches_the_rust_engine(data, metric, dtype):
    pytest.importorskip("torch")
    X, Q = data
    ids = np.arange(X.shape[0], dtype=np.int64) * 3 + 5
    rust = knnkit.FlatIndex(24, metric=metric, dtype=dtype, p=3.0)
    dev = knnkit.FlatIndex(24, metric=metric, dtype=dtype, p=3.0, device="cpu")
    for ix in (rust, dev):
        ix.add(X[:400], ids=ids[:400])
        ix.add(X[400:], ids=ids[400:])
    rtol = 1e-4 if dtype == "float32" else 1e-10
    for kw in ({}, {"filter": ids[::7]}):
        Dr, Ir = rust.search(Q, 9, **kw)
        Dd, Id = dev.search(Q, 9, **kw)
        assert isinstance(Dd, np.ndarray) and Dd.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(Id, Ir)
        np.testing.assert_allclose(Dd, Dr, rtol=rtol, atol=rtol)
    radius = float(np.quantile(rust.search(Q, 5)[0][:, -1], 0.5))
    for got, want in zip(dev.range_search(Q, radius), rust.range_search(Q, radius), strict=True):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)


def test_device_tensors_in_tensors_out_padding_and_mutations(data):
    torch = pytest.importorskip("torch")
    X, Q = (a.astype(np.float32) for a in data)
    rust = knnkit.FlatIndex(24)
    dev = knnkit.FlatIndex(24, device=torch.device("cpu"))
    assert "device='cpu'" in repr(dev)
    for ix in (rust, dev):
        ix.add(X)
    D, I = dev.search(torch.from_numpy(Q), 4)
    assert isinstance(D, torch.Tensor) and isinstance(I, torch.Tensor) and I.dtype == torch.int64
    np.testing.assert_array_equal(I.numpy(), rust.search(Q, 4)[1])
    D1, I1 = dev.search(torch.from_numpy(Q[0]), 2)  # one vector is one query
    assert tuple(I1.shape) == (1, 2)
    # fewer candidates than k: id -1, distance +inf, as the Rust engine
    for kw in ({"filter": [3, 9]}, {}):
        Dd, Id = dev.search(Q[:3], 3 if kw else 701, **kw)
        Dr, Ir = rust.search(Q[:3], 3 if kw else 701, **kw)
        np.testing.assert_array_equal(Id, Ir)
        np.testing.assert_allclose(Dd, Dr, rtol=1e-4, atol=1e-4)
    # the device copy follows removals and additions
    gone = rust.search(Q[:1], 2)[1][0]
    for ix in (rust, dev):
        assert ix.remove(gone) == 2
        ix.add(Q[:5])
    np.testing.assert_array_equal(dev.search(Q, 3)[1], rust.search(Q, 3)[1])
    back = pickle.loads(pickle.dumps(dev))
    assert back.device == dev.device
    np.testing.assert_array_equal(back.search(Q, 3)[1], rust.search(Q, 3)[1])
    empty = knnkit.FlatIndex(24, device="cpu")
    De, Ie = empty.search(torch.from_numpy(Q[:2]), 2)
    assert isinstance(Ie, torch.Tensor) and (Ie == -1).all() and torch.isinf(De).all()


def test_device_bad_input_is_rejected_clearly(data):
    torch = pytest.importorskip("torch")
    X, Q = (a.astype(np.float32) for a in data)
    with pytest.raises(ValueError, match="hamming"):
        knnkit.FlatIndex(24, metric="hamming", device="cpu")
    with pytest.raises(ValueError, match="nosuchdevice"):
        knnkit.FlatIndex(24, device="nosuchdevice")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            knnkit.FlatIndex(24, device="cuda")
    ix = knnkit.FlatIndex(24, device="cpu")
    ix.add(X)
    with pytest.raises(TypeError):
        ix.search(torch.from_numpy(Q.astype(np.float64)), 2)
    with pytest.raises(DimensionMismatchError):
        ix.search(torch.zeros((2, 5)), 2)
    with pytest.raises(DimensionMismatchError):
        ix.search(np.zeros((2, 5), np.float32), 2)
    with pytest.raises(ValueError, match="finite"):
        ix.search(torch.full((1, 24), float("nan")), 2)
