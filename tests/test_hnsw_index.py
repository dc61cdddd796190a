"""HNSW-specific behaviour: deterministic builds, tombstones and consolidation, work stats.
(What every approximate index shares is tested in test_ann_indexes.py.)"""

from __future__ import annotations

import numpy as np
from test_ann_indexes import built, clustered

import knnkit
from knnkit import io as kio

SEED = 0


def test_build_is_deterministic_for_a_seed_whatever_the_threads():
    X = clustered(1500)

    def graph(n_jobs, seed):
        _, f = kio.from_bytes(built("hnsw-sq8", X, n_jobs=n_jobs, seed=seed)._native.encode("{}"))
        return {name: f.array(name) for name in ("links0", "upper", "levels")}

    a, b, c = graph(1, 3), graph(2, 3), graph(2, 4)
    for name in ("links0", "upper", "levels"):
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert not np.array_equal(a["levels"], c["levels"]), "another seed draws other levels"


def test_few_deletes_are_hidden_at_once_and_consolidate_on_demand():
    X = clustered(2000)
    ix = built("hnsw-sq8", X)
    ix.remove([0, 1, 2, 3, 4])
    assert ix._native.n_deleted() == 5, "under 10 %: tombstones only"
    assert not np.isin(ix.search(X[:5], 5).ids, np.arange(5)).any()
    ix.consolidate()
    assert ix._native.n_deleted() == 0 and len(ix) == 1995
    ix.remove(np.arange(5, 1000))
    assert ix._native.n_deleted() == 0, "over 10 %: consolidated at once"


def test_stats_report_work_done():
    X, Q = clustered(1000), clustered(10, seed=SEED + 1)
    ix = built("hnsw-sq8", X)
    stats = ix.search(Q, 5).stats
    assert stats["distance_computations"] > 10 * 5
    assert 0 < stats["visited_nodes"] < 10 * 1000
    assert stats["exact_fallbacks"] == 0
    assert ix.search(Q, 5, filter=[1, 2, 3]).stats["exact_fallbacks"] == 10


def test_ef_search_trades_work_for_recall():
    X, Q = clustered(3000), clustered(50, seed=SEED + 1)
    ix = knnkit.HNSWIndex(X.shape[1], m=8, ef_construction=40)
    ix.add(X)
    low, high = ix.search(Q, 10, ef_search=10), ix.search(Q, 10, ef_search=200)
    assert high.stats["distance_computations"] > low.stats["distance_computations"]


def _child_search(path, Q, out):
    out.put(knnkit.load(path, mmap=True).search(Q, 5).ids.tolist())


def test_mmap_load_shares_the_file_and_copies_on_write(tmp_path):
    """Annoy's use case: a static index file served by many processes without copies."""
    import multiprocessing as mp

    X, Q = clustered(3000), clustered(20, seed=SEED + 1)
    path = tmp_path / "g.knn"
    built("hnsw-sq8", X).save(path)
    mapped, copied = knnkit.load(path, mmap=True), knnkit.load(path, mmap=False)
    want = copied.search(Q, 5).ids
    np.testing.assert_array_equal(mapped.search(Q, 5).ids, want)
    # vectors, links and codes stay in the file: the mapped index holds far less memory
    assert mapped.memory_usage() < 0.3 * copied.memory_usage()
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    kids = [ctx.Process(target=_child_search, args=(str(path), Q, out)) for _ in range(2)]
    for p in kids:
        p.start()
    got = [out.get(timeout=120) for _ in kids]
    for p in kids:
        p.join(60)
    assert all(g == want.tolist() for g in got)
    # the first change copies what it modifies; the file is untouched
    mapped.add(X[:10] + 0.5)
    mapped.remove([0])
    assert len(mapped) == 3009
    np.testing.assert_array_equal(knnkit.load(path).search(Q, 5).ids, want)


def test_progress_line_on_request(capsys):
    X = clustered(3000)
    ix = knnkit.HNSWIndex(X.shape[1], m=8, ef_construction=32)
    ix.add(X, progress=True)
    err = capsys.readouterr().err
    assert "HNSW add: 3,000/3,000 (100%" in err
    ix.add(X[:10] + 1, progress=False)
    assert capsys.readouterr().err == ""
