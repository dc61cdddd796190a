"""The approximate indexes (HNSW and IVF, every storage): recall against the exact oracle,
deletes, filters, range search, files, threads and bad input — one set of tests for all."""

from __future__ import annotations

import os
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest

import knnkit
from knnkit import io as kio
from knnkit.errors import CorruptIndexError, DimensionMismatchError
from knnkit.testing import exact_knn, recall_at_k

#: recall@10 each index must reach on the clustered test data with its default search width.
MIN_RECALL = {
    "hnsw-sq8": 0.95,
    "hnsw-sq4": 0.95,
    "hnsw-flat": 0.95,
    "ivf-flat": 0.95,
    "ivf-sq8": 0.95,
    "ivf-pq": 0.9,
}
#: recall@10 on real MiniLM word embeddings (a hard set, like GloVe).
MIN_RECALL_WORDS = 0.93
#: recall@10 after deleting half the points, and after re-adding them.
MIN_RECALL_CHURN = 0.93
#: recall@10 of filtered searches against the exact filtered oracle.
MIN_RECALL_FILTERED = 0.9
SEED = 0
METRICS = ["euclidean", "sqeuclidean", "inner_product", "cosine"]
KINDS = list(MIN_RECALL)


def clustered(n: int, d: int = 32, seed: int = SEED, centers: int = 20) -> np.ndarray:
    rng = np.random.default_rng(seed)
    C = np.random.default_rng(1234).normal(scale=3.0, size=(centers, d))
    return (C[rng.integers(0, centers, n)] + rng.normal(size=(n, d))).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    return clustered(4000), clustered(200, seed=SEED + 1)


def make(kind: str, d: int, metric: str = "euclidean", **kw):
    """An empty index of one kind, with parameters sized for the 4,000-vector test data."""
    family, codes = kind.split("-")
    if family == "hnsw":
        return knnkit.HNSWIndex(d, metric=metric, m=12, ef_construction=100, codes=codes, **kw)
    return knnkit.IVFIndex(
        d, metric=metric, nlist=32, nprobe=8, codes=codes, pq_m=16, nbits=6, **kw
    )


def built(kind, X, metric="euclidean", n_jobs=2, **kw):
    ix = make(kind, X.shape[1], metric, **kw)
    ix.add(X, n_jobs=n_jobs)
    return ix


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("metric", METRICS)
def test_recall_against_exact_oracle(data, kind, metric):
    X, Q = data
    ix = built(kind, X, metric)
    D, I = ix.search(Q, 10)
    _, truth = exact_knn(X, Q, 10, metric)
    r = recall_at_k(I, truth)
    want = MIN_RECALL[kind]
    assert r >= want, f"{kind}/{metric}: recall@10 {r:.3f} < {want} (seed {SEED})"
    # Returned distances are the exact float32 distances of the returned ids.
    exact_d = exact_knn(X[I[0]], Q[:1], 10, metric)[0][0]
    got = -np.sort(-D[0]) if metric == "inner_product" else np.sort(D[0])
    np.testing.assert_allclose(got, exact_d, rtol=1e-4, atol=1e-4)


def _words() -> tuple[np.ndarray, np.ndarray] | None:
    candidates = [
        os.environ.get("KNNKIT_SHARED_DATA", ""),
        Path(__file__).resolve().parents[1].parent / "shared" / "data",
        "/work/shared/data",
    ]
    for c in candidates:
        p = Path(c) / "words_minilm.npz"
        if c and p.exists():
            z = np.load(p)
            return z["base"], z["queries"]
    return None


@pytest.mark.parametrize("kind", ["hnsw-sq8", "hnsw-sq4", "ivf-sq8"])
def test_recall_on_real_embeddings(kind):
    words = _words()
    if words is None:
        pytest.skip("../shared/data/words_minilm.npz is not present")
    X = words[0][:20_000].astype(np.float32)
    Q = words[1][:200].astype(np.float32)
    if kind.startswith("hnsw"):
        codes = kind.split("-")[1]
        ix = knnkit.HNSWIndex(X.shape[1], metric="cosine", m=16, ef_construction=100, codes=codes)
        params = {"ef_search": 128}
    else:
        ix = knnkit.IVFIndex(X.shape[1], metric="cosine", nlist=128, codes="sq8")
        params = {"nprobe": 64}
    ix.add(X)
    _, truth = exact_knn(X, Q, 10, "cosine")
    r = recall_at_k(ix.search(Q, 10, **params).ids, truth)
    assert r >= MIN_RECALL_WORDS, f"{kind} words 20k: recall@10 {r:.3f} < {MIN_RECALL_WORDS}"


@pytest.mark.parametrize("kind", KINDS)
def test_delete_half_then_re_add(data, kind):
    X, Q = data
    ix = built(kind, X)
    before = ix.memory_usage()
    gone = np.arange(0, len(X), 2)
    assert ix.remove(gone) == gone.size
    assert ix.remove(gone) == 0, "already removed"
    assert len(ix) == len(X) - gone.size
    assert ix.memory_usage() < 0.75 * before, "memory of deleted vectors is given back"
    keep = np.setdiff1d(np.arange(len(X)), gone)
    _, truth = exact_knn(X[keep], Q, 10)
    res = ix.search(Q, 10)
    r = recall_at_k(res.ids, keep[truth])
    assert r >= MIN_RECALL_CHURN, f"{kind} after deleting half: recall {r:.3f} < {MIN_RECALL_CHURN}"
    assert not np.isin(res.ids, gone).any()
    ix.add(X[gone], ids=gone)
    _, truth = exact_knn(X, Q, 10)
    r = recall_at_k(ix.search(Q, 10).ids, truth)
    assert r >= MIN_RECALL_CHURN, f"{kind} after re-adding: recall {r:.3f} < {MIN_RECALL_CHURN}"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("selectivity", [0.001, 0.01, 0.1, 0.5])
def test_filters_return_k_allowed_results(data, kind, selectivity):
    X, Q = data
    ix = built(kind, X, "cosine")
    rng = np.random.default_rng(SEED)
    allowed = np.sort(rng.choice(len(X), max(1, int(selectivity * len(X))), replace=False))
    k = 10
    for filt in (allowed, np.isin(np.arange(len(X)), allowed)):
        res = ix.search(Q, k, filter=filt)
        assert (res.n_found == min(k, allowed.size)).all()
        assert np.isin(res.ids[res.ids >= 0], allowed).all()
    _, truth = exact_knn(X[allowed], Q, k, "cosine")
    found = ix.search(Q, k, filter=allowed).ids
    r = recall_at_k(found[:, : min(k, allowed.size)], allowed[truth])
    assert r >= MIN_RECALL_FILTERED, (
        f"{kind} filter {selectivity:.1%}: recall@10 {r:.3f} < {MIN_RECALL_FILTERED}"
    )


@pytest.mark.parametrize("kind", ["hnsw-sq8", "ivf-flat"])
def test_fewer_vectors_than_k_are_padded(data, kind):
    X, _ = data
    ix = make(kind, X.shape[1], "inner_product")
    res = ix.search(X[:2], 3)
    assert (res.ids == -1).all() and np.isneginf(res.distances).all()
    if kind.startswith("ivf"):
        ix = knnkit.IVFIndex(X.shape[1], metric="inner_product", nlist=2)
    ix.add(X[:2])
    res = ix.search(X[:1], 3)
    assert res.n_found.tolist() == [2] and res.ids[0, 2] == -1


@pytest.mark.parametrize("kind", ["hnsw-sq8", "ivf-flat", "ivf-pq"])
def test_get_returns_what_was_added_even_for_cosine(data, kind):
    X, _ = data
    ix = built(kind, X[:1000] * 7.5, "cosine")
    np.testing.assert_array_equal(ix.get([5, 2]), X[[5, 2]] * 7.5)
    assert ix.search(X[:3] * 7.5, 1).ids[:, 0].tolist() == [0, 1, 2]
    with pytest.raises(KeyError):
        ix.get([10**9])


@pytest.mark.parametrize("kind", ["hnsw-sq8", "ivf-sq8"])
def test_range_search_matches_exact_range(data, kind):
    X, Q = data
    ix = built(kind, X)
    exact = knnkit.FlatIndex(X.shape[1])
    exact.add(X)
    radius = float(np.median(exact.search(Q, 20).distances[:, -1]))
    lims, D, I = ix.range_search(Q, radius)
    elims, _, eI = exact.range_search(Q, radius)
    assert lims.shape == (len(Q) + 1,) and (D <= radius).all()
    got = sum(
        len(np.intersect1d(I[lims[i] : lims[i + 1]], eI[elims[i] : elims[i + 1]]))
        for i in range(len(Q))
    )
    assert got >= MIN_RECALL_FILTERED * eI.size
    for i in range(len(Q)):
        assert (np.diff(D[lims[i] : lims[i + 1]]) >= 0).all()


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_mmap_pickle_round_trip(tmp_path, data, kind):
    X, Q = data
    ix = built(kind, X[:1000])
    ix.remove([3, 4])
    want = ix.search(Q, 5)
    path = tmp_path / "g.knn"
    ix.save(path)
    for mmap in (True, False):
        j = knnkit.load(path, mmap=mmap)
        assert type(j) is type(ix) and len(j) == 998
        np.testing.assert_array_equal(j.search(Q, 5).ids, want.ids)
    k = pickle.loads(pickle.dumps(ix))
    np.testing.assert_array_equal(k.search(Q, 5).ids, want.ids)
    k.add(X[1000:1010])
    assert k.ids().max() == 1009, "ids continue after the largest"
    assert repr(k).startswith(type(ix).__name__)


@pytest.mark.parametrize("kind", ["hnsw-sq8", "ivf-sq8", "ivf-pq"])
def test_crafted_files_raise_corrupt_index_error(tmp_path, data, kind):
    """Files with valid checksums but inconsistent contents: the loader's own checks."""
    X, _ = data
    path = tmp_path / "c.knn"
    built(kind, X[:300]).save(path)
    header, parts = kio.read(path)
    rng = np.random.default_rng(SEED)
    names = [n for n, a in parts.items() if a.size and a.dtype.kind in "iu"]
    rejected = 0
    for trial in range(120):
        p = {k: np.array(v) for k, v in parts.items()}
        h = dict(header)
        name = names[trial % len(names)]
        a = p[name]
        if trial % 7 == 6:
            p[name] = a[: rng.integers(0, a.size)]
        else:
            i = rng.integers(0, a.size)
            v = int(a[i])
            new = int(rng.choice([v + 1, v - 1, 0, 255, 2**31, a.size * 10]))
            a[i] = np.asarray(new % 2 ** (8 * a.itemsize), dtype=np.uint64).astype(a.dtype)
        if trial % 11 == 0 and "entry" in h:
            h["entry"] = int(rng.integers(-5, 2000))
        kio.write(path, h, p)
        try:
            j = knnkit.load(path)
        except CorruptIndexError:
            rejected += 1
            continue
        j.search(X[:3], 5)  # a file that loads must also search without crashing
    assert rejected > 40


@pytest.mark.parametrize("kind", ["hnsw-sq8", "ivf-pq"])
def test_random_byte_mutations_never_crash(tmp_path, data, kind):
    X, _ = data
    path = tmp_path / "g.knn"
    built(kind, X[:300]).save(path)
    raw = bytearray(path.read_bytes())
    rng = np.random.default_rng(SEED)
    bad = tmp_path / "m.knn"
    for _ in range(200):
        blob = bytearray(raw)
        for pos in rng.integers(0, len(blob), size=rng.integers(1, 4)):
            blob[pos] = rng.integers(0, 256)
        if rng.random() < 0.3:
            blob = blob[: rng.integers(0, len(blob))]
        bad.write_bytes(bytes(blob))
        try:
            knnkit.load(bad, mmap=bool(rng.integers(0, 2))).search(X[:2], 3)
        except CorruptIndexError:
            pass


@pytest.mark.parametrize("kind", ["hnsw-sq8", "ivf-sq8"])
def test_concurrent_searches_adds_and_removes(data, kind):
    X, Q = data
    ix = built(kind, X[:2000])
    errors: list[BaseException] = []

    def searcher():
        try:
            for _ in range(20):
                res = ix.search(Q[:20], 5, n_jobs=1)
                assert ((res.ids >= 0) & (res.ids < len(X))).all()
        except BaseException as e:  # noqa: BLE001 - reported to the main thread
            errors.append(e)

    threads = [threading.Thread(target=searcher) for _ in range(4)]
    for t in threads:
        t.start()
    ix.add(X[2000:3000], n_jobs=1)
    ix.remove(np.arange(0, 600))
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(ix) == 2400


@pytest.mark.parametrize("kind", ["hnsw-sq8", "ivf-pq"])
def test_bad_input_is_rejected_clearly(data, kind):
    X, _ = data
    d = X.shape[1]
    with pytest.raises(ValueError, match="metric"):
        make(kind, d, "manhattan")
    ix = built(kind, X[:300])
    with pytest.raises(DimensionMismatchError):
        ix.search(X[:2, :5], 3)
    with pytest.raises(ValueError, match="finite"):
        ix.add(np.full((1, d), np.nan))
    with pytest.raises(ValueError, match="finite"):
        ix.search(np.full((1, d), np.inf), 3)
    with pytest.raises(ValueError, match="ids"):
        ix.add(X[:2], ids=[1, 500])
    with pytest.raises(ValueError, match="k"):
        ix.search(X[:2], 0)
    with pytest.raises(TypeError, match="filter"):
        ix.search(X[:2], 3, filter=np.array([0.5]))
    with pytest.raises(ValueError, match="radius"):
        ix.range_search(X[:2], [1.0, 2.0, 3.0])
    assert len(ix) == 300, "failed adds leave the index unchanged"


def test_index_specific_parameters_are_checked():
    with pytest.raises(ValueError, match="codes"):
        knnkit.HNSWIndex(8, codes="pq")
    with pytest.raises(ValueError, match="m:"):
        knnkit.HNSWIndex(8, m=1)
    with pytest.raises(TypeError):
        knnkit.HNSWIndex(8, ef_search=2.5)
    with pytest.raises(ValueError, match="pq_m"):
        knnkit.IVFIndex(10, codes="pq", pq_m=3)
    with pytest.raises(ValueError, match="nbits"):
        knnkit.IVFIndex(8, codes="pq", nbits=9)
    with pytest.raises(ValueError, match="codes"):
        knnkit.IVFIndex(8, codes="opq")
    ix = knnkit.IVFIndex(4, nlist=16)
    with pytest.raises(ValueError, match="at least nlist"):
        ix.add(np.zeros((3, 4), np.float32))
    assert not ix.is_trained and len(ix) == 0


@pytest.mark.parametrize(
    "spec, cls, attrs",
    [
        ("Flat", knnkit.FlatIndex, {}),
        ("HNSW32", knnkit.HNSWIndex, {"m": 32, "codes": "flat"}),
        ("HNSW8,SQ8", knnkit.HNSWIndex, {"m": 8, "codes": "sq8"}),
        ("IVF64,Flat", knnkit.IVFIndex, {"nlist": 64, "codes": "flat"}),
        ("IVF64,SQ8", knnkit.IVFIndex, {"nlist": 64, "codes": "sq8"}),
        ("IVF64, PQ8x4", knnkit.IVFIndex, {"nlist": 64, "codes": "pq", "pq_m": 8, "nbits": 4}),
    ],
)
def test_index_factory(spec, cls, attrs):
    ix = knnkit.index_factory(32, spec, metric="cosine")
    assert type(ix) is cls and ix.metric == "cosine"
    for name, value in attrs.items():
        assert getattr(ix, name) == value, name


@pytest.mark.parametrize(
    "spec", ["IVF,Flat", "IVF8,PQ", "HNSW16,PQ8", "LSH", "Flat,SQ8", "IVF8,Flat,SQ8"]
)
def test_index_factory_rejects_unknown_descriptions(spec):
    with pytest.raises(ValueError, match="description"):
        knnkit.index_factory(32, spec)
