"""knnkit.Store end to end: the API against a numpy brute-force oracle over what was written,
filters against a Python oracle over random metadata and random ``where`` trees, bad input
that changes nothing, reopening, damaged snapshots, and two processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import knnkit
from knnkit.errors import DimensionMismatchError

#: HNSW collections must find at least this share of the exact filtered neighbours.
MIN_RECALL = 0.95
SEED = 20240611


def brute(vectors: np.ndarray, queries: np.ndarray, k: int, metric: str) -> np.ndarray:
    """Row indices of the ``k`` nearest ``vectors`` of each query (exact)."""
    v = vectors.astype(np.float64)
    q = queries.astype(np.float64)
    if metric == "euclidean":
        d = ((q[:, None, :] - v[None, :, :]) ** 2).sum(-1)
    elif metric == "cosine":
        vn = v / np.linalg.norm(v, axis=1, keepdims=True)
        qn = q / np.linalg.norm(q, axis=1, keepdims=True)
        d = 1.0 - qn @ vn.T
    else:
        d = -(q @ v.T)
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def everything(col: knnkit.store.Collection) -> dict:
    r = col.get(include=("metadata", "documents", "vectors"))
    return {
        i: (r.vectors[j].tobytes(), json.dumps(r.metadata[j], sort_keys=True), r.documents[j])
        for j, i in enumerate(r.ids)
    }


@pytest.fixture
def store(tmp_path: Path) -> knnkit.Store:
    return knnkit.Store(tmp_path / "db")


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "inner_product"])
def test_flat_queries_match_brute_force(store, metric):
    rng = np.random.default_rng(SEED)
    n, dim = 300, 8
    x = rng.standard_normal((n, dim)).astype(np.float32)
    ids = [f"id{i}" for i in range(n)]
    col = store.create_collection("c", dim=dim, metric=metric, index="flat")
    meta = [{"i": i, "even": i % 2 == 0} for i in range(n)]
    docs = [f"doc {i}" for i in range(n)]
    for s in range(0, n, 100):
        col.add(ids[s : s + 100], x[s : s + 100], meta[s : s + 100], docs[s : s + 100])
    assert len(col) == n and col.count({"even": True}) == n // 2
    q = rng.standard_normal((5, dim)).astype(np.float32)
    res = col.query(q, k=7)
    want = brute(x, q, 7, metric)
    assert res.ids == [[ids[j] for j in row] for row in want]
    assert res.metadata == [[meta[j] for j in row] for row in want]
    assert res.documents == [[docs[j] for j in row] for row in want]
    sign = -1 if metric == "inner_product" else 1  # similarities: largest first
    assert all(np.all(sign * np.diff(d) >= -1e-6) for d in res.distances)
    # filtered: the exact answer among the matches
    res = col.query(q, k=7, where={"even": False}, include=("distances",))
    odd = np.arange(1, n, 2)
    want = odd[brute(x[odd], q, 7, metric)]
    assert res.ids == [[ids[j] for j in row] for row in want]
    assert set(res) == {"ids", "distances"}
    # k above the matches: exactly the matches
    res = col.query(q[:1], k=50, where={"i": {"$lt": 3}})
    assert sorted(res.ids[0]) == ["id0", "id1", "id2"]
    assert col.query(q[:1], k=5, where={"i": -1}).ids == [[]]


def test_hnsw_recall_and_exact_counts_at_every_selectivity(store):
    rng = np.random.default_rng(SEED + 1)
    n, dim, k = 4000, 16, 10
    x = rng.standard_normal((n, dim)).astype(np.float32)
    u = rng.permutation(n)
    col = store.create_collection("h", dim=dim, metric="euclidean", index="hnsw", seed=3)
    col.add([f"r{i}" for i in range(n)], x, [{"u": int(v)} for v in u])
    q = rng.standard_normal((20, dim)).astype(np.float32)
    for matches in [n, n // 2, 400, 40, 4, 1, 0]:
        res = col.query(q, k=k, where={"u": {"$lt": matches}}, include=())
        sel = np.flatnonzero(u < matches)
        want = sel[brute(x[sel], q, k, "euclidean")] if matches else np.empty((20, 0), int)
        assert all(len(r) == min(k, matches) for r in res.ids), matches
        found = sum(len({f"r{j}" for j in w} & set(r)) for w, r in zip(want, res.ids, strict=True))
        total = want.size
        recall = found / total if total else 1.0
        assert recall >= MIN_RECALL, f"recall {recall:.3f} < {MIN_RECALL} at {matches} matches"
        assert all(u[int(i[1:])] < matches for r in res.ids for i in r)


def test_get_upsert_update_delete(store):
    col = store.get_or_create_collection("c", dim=2, metric="euclidean", index="flat")
    col.add(["a", "b", "c"], [[0, 0], [1, 0], [2, 0]], [{"x": 1}, None, {"x": 3}], ["A", "B", None])
    col.update(["a"], metadata=[{"x": 10}])
    col.update("b", vectors=[5, 5])
    col.upsert(["c", "d"], [[9, 9], [3, 3]], documents=["C", "D"])
    r = col.get(include=("metadata", "documents", "vectors"))
    assert r.ids == ["a", "b", "c", "d"]
    assert r.metadata == [{"x": 10}, None, {"x": 3}, None]
    assert r.documents == ["A", "B", "C", "D"]
    np.testing.assert_array_equal(r.vectors, [[0, 0], [5, 5], [9, 9], [3, 3]])
    assert col.get(["d", "nope", "a"], include=()).ids == ["d", "a"]
    assert col.get(where={"x": {"$gt": 5}}).ids == ["a"]
    assert col.get(limit=2, offset=1).ids == ["b", "c"]
    assert col.query([[5, 5.1]], k=1).ids == [["b"]]
    assert col.delete(["a", "nope"]) == 1
    assert col.delete(where={"x": 3}) == 1
    assert col.get().ids == ["b", "d"]
    assert len(col) == 2
    with pytest.raises(ValueError, match="ids or where"):
        col.delete()


def test_bad_input_is_refused_and_changes_nothing(store):
    col = store.create_collection("c", dim=3, metric="cosine", index="hnsw")
    col.add(["a", "b"], np.ones((2, 3)), [{"k": 1}, {"k": 2}], ["x", "y"])
    before = everything(col)
    bad = [
        (ValueError, lambda: col.add(["c", "a"], np.ones((2, 3)))),  # existing id
        (ValueError, lambda: col.add(["c", "c"], np.ones((2, 3)))),  # repeated id
        (ValueError, lambda: col.add(["c"], [[1, np.nan, 0]])),
        (ValueError, lambda: col.add(["c"], [[1, np.inf, 0]])),
        (DimensionMismatchError, lambda: col.add(["c"], np.ones((1, 4)))),
        (ValueError, lambda: col.add(["c", "d"], np.ones((1, 3)))),
        (ValueError, lambda: col.add(["c"], np.ones((1, 3)), [{"x": {"y": 1}}])),
        (ValueError, lambda: col.add(["c"], np.ones((1, 3)), [{"$x": 1}])),
        (ValueError, lambda: col.add(["c"], np.ones((1, 3)), [{"x": float("nan")}])),
        (ValueError, lambda: col.add(["c"], np.ones((1, 3)), [{"x": 2**70}])),
        (TypeError, lambda: col.add(["c"], np.ones((1, 3)), [{"x": None}])),
        (TypeError, lambda: col.add(["c"], np.ones((1, 3)), [{"x": object()}])),
        (TypeError, lambda: col.add(["c"], np.ones((1, 3)), [{1: 1}])),
        (TypeError, lambda: col.add(["c"], np.ones((1, 3)), ["meta"])),
        (TypeError, lambda: col.add([1], np.ones((1, 3)))),
        (TypeError, lambda: col.add(["c"], np.ones((1, 3)), documents=[3])),
        (TypeError, lambda: col.add(["c"], [["a", "b", "c"]])),
        (ValueError, lambda: col.add([""], np.ones((1, 3)))),
        (ValueError, lambda: col.add([], np.ones((0, 3)))),
        (ValueError, lambda: col.update(["a", "zz"], metadata=[{"k": 5}, {"k": 6}])),
        (ValueError, lambda: col.upsert(["a"])),
        (ValueError, lambda: col.query([[1, 1, 1]], k=0)),
        (ValueError, lambda: col.query([[1, 1, 1]], where={"k": {"$regex": "x"}})),
        (ValueError, lambda: col.query([[1, 1, 1]], where={"k": {"$gt": [1]}})),
        (ValueError, lambda: col.query([[1, 1, 1]], where={"$and": {}})),
        (ValueError, lambda: col.query([[1, 1, 1]], where={"k": {"$in": 3}})),
        (ValueError, lambda: col.delete(where={"k": {"$exists": "yes"}})),
        (ValueError, lambda: col.get(include=("embeddings",))),
        (ValueError, lambda: store.get_or_create_collection("c", dim=4)),
        (ValueError, lambda: store.get_or_create_collection("c", metric="euclidean")),
        (ValueError, lambda: store.create_collection("c", dim=3)),
        (ValueError, lambda: store.create_collection("bad/name", dim=3)),
        (ValueError, lambda: store.create_collection("x", dim=3, index="ivf")),
        (ValueError, lambda: store.create_collection("x", dim=3, mm=4)),
        (ValueError, lambda: store.get_collection("missing")),
        # No embedder: text cannot become vectors (tests/test_embed.py covers embedders).
        (ValueError, lambda: col.add(["c"], documents=["text only"])),
        (ValueError, lambda: col.query(texts=["hello"])),
        (ValueError, lambda: col.query([[1, 1, 1]], mode="hybrid")),
        (ValueError, lambda: col.query(texts=["x"], mode="hybrid")),
        (ValueError, lambda: col.query([[1, 1, 1]], mode="bm25")),
        (ValueError, lambda: col.query([[1, 1, 1]], texts=["x"], mode="text")),
        (ValueError, lambda: col.query([[1, 1, 1]], texts=["x"])),
        (ValueError, lambda: col.query([[1, 1, 1]], where_document={"$contains": 1})),
        (ValueError, lambda: col.query(texts="x", mode="text", where_document={"$has": "x"})),
        (ValueError, lambda: col.delete(where_document={"$or": []})),
        (TypeError, lambda: col.query(texts=[1], mode="text")),
        (TypeError, lambda: store.get_or_create_collection("e", dim=3, embedder=42)),
        (ValueError, lambda: store.get_or_create_collection("e", dim=4, embedder=_ones3)),
    ]
    for i, (exc, call) in enumerate(bad):
        with pytest.raises(exc):
            call()
        assert everything(col) == before, f"bad call {i} changed the collection"
    assert store.list_collections() == ["c"]
    assert col._native.index_state()[0] == 2


def _ones3(texts):
    return np.ones((len(texts), 3), dtype=np.float32)


def test_reopen_sees_everything_and_damaged_snapshots_are_rebuilt(tmp_path):
    rng = np.random.default_rng(SEED + 2)
    path = tmp_path / "db"
    x = rng.standard_normal((500, 6)).astype(np.float32)
    q = rng.standard_normal((8, 6)).astype(np.float32)
    db = knnkit.Store(path, snapshot_every=0)
    col = db.create_collection("h", dim=6, metric="euclidean", index="hnsw")
    col.add([str(i) for i in range(400)], x[:400], [{"i": i} for i in range(400)])
    snap = Path(col.snapshot())
    col.add([str(i) for i in range(400, 500)], x[400:])
    col.delete([str(i) for i in range(0, 500, 7)])
    col.update([str(i) for i in range(1, 50, 7)], vectors=x[:7] + 1)
    expected_rows = everything(col)
    expected = col.query(q, k=10, where={"i": {"$gte": 100}})
    del db, col

    def reopen():
        c = knnkit.Store(path).get_collection("h")
        assert everything(c) == expected_rows
        assert c.query(q, k=10, where={"i": {"$gte": 100}}) == expected
        return c._native.index_state()

    assert reopen() == (len(expected_rows), True)
    good = snap.read_bytes()
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x04
    for damaged in [good[: len(good) // 3], bytes(flipped), b"", b"KNNKITIX" + b"\0" * 40]:
        snap.write_bytes(damaged)
        assert reopen() == (len(expected_rows), False)
    snap.unlink()
    assert reopen() == (len(expected_rows), False)


def test_backup_is_a_consistent_store(store, tmp_path):
    col = store.create_collection("c", dim=2, index="flat", metric="euclidean")
    col.add(["a", "b"], [[0, 1], [1, 0]], [{"t": ["x"]}, {"t": ["y"]}])
    store.backup(tmp_path / "copy")
    copy = knnkit.Store(tmp_path / "copy").get_collection("c")
    assert everything(copy) == everything(col)
    assert copy.query([[0, 1]], k=1, where={"t": {"$contains": "y"}}).ids == [["b"]]
    with pytest.raises(ValueError, match="holds one"):
        store.backup(tmp_path / "copy")


def test_delete_collection_and_recreate(store):
    col = store.create_collection("c", dim=2, index="flat")
    col.add(["a"], [[1, 0]])
    col.snapshot()
    store.delete_collection("c")
    with pytest.raises(ValueError, match="deleted"):
        col.count()
    col2 = store.create_collection("c", dim=2, index="flat")
    assert len(col2) == 0 and store.list_collections() == ["c"]
    with pytest.raises(ValueError):
        store.delete_collection("nope")


# -- filters against a Python oracle ------------------------------------------------------------

FIELDS = ["a", "b", "c", "d", "tags"]


def _eq(v, x):
    if isinstance(v, bool) or isinstance(x, bool):
        return isinstance(v, bool) and isinstance(x, bool) and v == x
    if isinstance(v, str) or isinstance(x, str):
        return isinstance(v, str) and isinstance(x, str) and v == x
    return v == x


def _order(v, x):
    if isinstance(v, bool) or isinstance(x, bool):
        return None
    if isinstance(v, str) != isinstance(x, str):
        return None
    return (v > x) - (v < x)


def _field(op, arg, meta, name):
    present = name in meta
    v = meta.get(name)
    if op == "$exists":
        return present == arg
    if op == "$contains":
        return present and isinstance(v, list) and any(_eq(i, arg) for i in v)
    if op == "$ne":
        return not _field("$eq", arg, meta, name)
    if op == "$nin":
        return not _field("$in", arg, meta, name)
    if op == "$not":
        return not all(_field(o, a, meta, name) for o, a in arg.items())
    if not present or isinstance(v, list):
        return False
    if op == "$eq":
        return _eq(v, arg)
    if op == "$in":
        return any(_eq(v, a) for a in arg)
    o = _order(v, arg)
    return (
        o is not None
        and {
            "$gt": o > 0,
            "$gte": o >= 0,
            "$lt": o < 0,
            "$lte": o <= 0,
        }[op]
    )


def oracle(where, meta):
    out = True
    for key, val in where.items():
        if key == "$and":
            out &= all(oracle(w, meta) for w in val)
        elif key == "$or":
            out &= any(oracle(w, meta) for w in val)
        elif key == "$not":
            out &= not oracle(val, meta)
        elif isinstance(val, dict):
            out &= all(_field(o, a, meta, key) for o, a in val.items())
        else:
            out &= _field("$eq", val, meta, key)
    return out


def random_metadata(rng: np.random.Generator, n: int) -> list[dict]:
    out = []
    for _ in range(n):
        m = {"a": int(rng.integers(0, 10))}
        if rng.random() < 0.8:
            m["b"] = float(np.round(rng.random(), 2))
        if rng.random() < 0.7:
            m["c"] = str(rng.choice(["x", "y", "z"]))
        if rng.random() < 0.5:
            m["d"] = bool(rng.random() < 0.5)
        if rng.random() < 0.6:
            m["tags"] = [str(t) for t in rng.choice(["p", "q", "r"], rng.integers(0, 3))]
            if rng.random() < 0.3:
                m["tags"].append(int(rng.integers(0, 3)))
        out.append(m)
    return out


scalars = st.one_of(
    st.integers(-1, 10),
    st.floats(-0.5, 10.5, allow_nan=False).map(lambda f: round(f, 2)),
    st.sampled_from(["x", "y", "z", "p", "q"]),
    st.booleans(),
)
ranged = st.one_of(
    st.integers(-1, 10), st.floats(0, 1, allow_nan=False), st.sampled_from(["x", "y", "z"])
)
field_op = st.one_of(
    st.tuples(st.sampled_from(["$eq", "$ne"]), scalars),
    st.tuples(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), ranged),
    st.tuples(st.sampled_from(["$in", "$nin"]), st.lists(scalars, max_size=3)),
    st.tuples(st.just("$exists"), st.booleans()),
    st.tuples(st.just("$contains"), st.sampled_from(["p", "q", "r", 1, 2])),
)
leaf = st.one_of(
    st.builds(lambda f, op: {f: {op[0]: op[1]}}, st.sampled_from(FIELDS), field_op),
    st.builds(lambda f, v: {f: v}, st.sampled_from(FIELDS), scalars),
    st.builds(lambda f, op: {f: {"$not": {op[0]: op[1]}}}, st.sampled_from(FIELDS), field_op),
)
where_trees = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.builds(lambda ws: {"$and": ws}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda ws: {"$or": ws}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda w: {"$not": w}, inner),
    ),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def filtered(tmp_path_factory):
    rng = np.random.default_rng(SEED + 3)
    n, dim = 600, 4
    x = rng.standard_normal((n, dim)).astype(np.float32)
    meta = random_metadata(rng, n)
    db = knnkit.Store(tmp_path_factory.mktemp("filters") / "db")
    cols = {}
    for kind in ["flat", "hnsw"]:
        c = db.create_collection(kind, dim=dim, metric="euclidean", index=kind)
        c.add([f"r{i}" for i in range(n)], x, meta)
        cols[kind] = c
    q = rng.standard_normal((3, dim)).astype(np.float32)
    return cols, x, meta, q


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(where=where_trees, k=st.sampled_from([1, 5, 40]))
def test_filters_match_the_python_oracle(filtered, where, k):
    cols, x, meta, q = filtered
    keep = np.array([oracle(where, m) for m in meta])
    sel = np.flatnonzero(keep)
    flat, hnsw = cols["flat"], cols["hnsw"]
    assert flat.count(where) == len(sel), where
    assert flat.get(where=where, include=()).ids == [f"r{i}" for i in sel]
    want = sel[brute(x[sel], q, k, "euclidean")] if len(sel) else np.empty((len(q), 0), int)
    assert flat.query(q, k=k, where=where, include=()).ids == [
        [f"r{i}" for i in row] for row in want
    ]
    got = hnsw.query(q, k=k, where=where, include=()).ids
    assert all(len(r) == min(k, len(sel)) for r in got), where
    found = sum(len({f"r{i}" for i in w} & set(r)) for w, r in zip(want, got, strict=True))
    assert want.size == 0 or found / want.size >= MIN_RECALL, where


@pytest.mark.parametrize("share", [1.0, 0.5, 0.1, 0.01, 0.001, 0.0001])
def test_filters_at_selectivities(share, tmp_path):
    rng = np.random.default_rng(SEED + 4)
    n, dim, k = 10_000, 8, 10
    x = rng.standard_normal((n, dim)).astype(np.float32)
    rank = rng.permutation(n)
    db = knnkit.Store(tmp_path / "db")
    col = db.create_collection("c", dim=dim, metric="euclidean", index="flat")
    col.add([f"r{i}" for i in range(n)], x, [{"rank": int(r)} for r in rank])
    matches = max(1, int(round(share * n)))
    q = rng.standard_normal((4, dim)).astype(np.float32)
    res = col.query(q, k=k, where={"rank": {"$lt": matches}}, include=())
    sel = np.flatnonzero(rank < matches)
    want = sel[brute(x[sel], q, k, "euclidean")]
    assert res.ids == [[f"r{i}" for i in row] for row in want]


# -- two processes -------------------------------------------------------------------------------

READER = textwrap.dedent(
    """
    import sys, knnkit
    col = knnkit.Store(sys.argv[1]).get_collection("c")
    for line in sys.stdin:
        want = int(line)
        ids = col.get(include=()).ids
        hit = col.query([[float(want), 0.0]], k=1, include=()).ids[0]
        print(len(ids), len(col), hit[0] if hit else "-", flush=True)
    """
)

LOCKER = textwrap.dedent(
    """
    import sqlite3, sys
    con = sqlite3.connect(sys.argv[1], isolation_level=None)
    con.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    sys.stdin.readline()
    con.execute("ROLLBACK")
    """
)


def _python(script: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(Path(knnkit.__file__).parents[1]))
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_a_reader_process_sees_each_commit(tmp_path):
    path = tmp_path / "db"
    db = knnkit.Store(path)
    col = db.create_collection("c", dim=2, metric="euclidean", index="hnsw")
    col.add(["p0"], [[0.0, 0.0]])
    with _python(READER, str(path)) as reader:
        for i in range(1, 15):
            col.add([f"p{i}"], [[float(i), 0.0]])
            if i % 5 == 0:
                col.delete([f"p{i - 1}"])
            reader.stdin.write(f"{i}\n")
            reader.stdin.flush()
            n_ids, n, hit = reader.stdout.readline().split()
            assert int(n_ids) == int(n) == len(col), i
            assert hit == f"p{i}"
        reader.stdin.close()
        assert reader.wait(timeout=60) == 0


def test_a_second_writer_waits_then_errors_clearly(tmp_path):
    path = tmp_path / "db"
    db = knnkit.Store(path, timeout=0.2)
    col = db.create_collection("c", dim=2, index="flat")
    with _python(LOCKER, str(path / "store.sqlite3")) as locker:
        assert locker.stdout.readline().strip() == "locked"
        with pytest.raises(TimeoutError, match="busy timeout"):
            col.add(["x"], [[1.0, 0.0]])
        assert len(col) == 0  # readers are not blocked by the writer
        assert len(db.get_or_create_collection("c")) == 0  # nor is opening an existing one
        locker.stdin.write("\n")
        locker.stdin.close()
        assert locker.wait(timeout=60) == 0
    col.add(["x"], [[1.0, 0.0]])
    assert col.get().ids == ["x"]


def test_docstring_example_runs():
    import doctest

    import knnkit.store

    result = doctest.testmod(knnkit.store, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_must_reopen_the_store(store):
    import warnings

    col = store.create_collection("c", dim=2, index="flat")
    col.add(["a"], [[1.0, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (Python 3.12+)
        pid = os.fork()
    if pid == 0:  # the child: the parent's store refuses, a new one works
        code = 1
        try:
            col.count()
        except ValueError as e:
            if "fork" in str(e) and len(knnkit.Store(store.path).get_collection("c")) == 1:
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(col) == 1


def test_threads_never_see_a_record_in_get_that_query_misses(store):
    import threading

    col = store.create_collection("c", dim=4, metric="euclidean", index="hnsw")
    rng = np.random.default_rng(SEED + 5)
    x = rng.standard_normal((300, 4)).astype(np.float32)
    errors: list[str] = []
    done = threading.Event()

    def writer():
        try:
            for i in range(0, 300, 3):
                col.add(
                    [f"r{j}" for j in range(i, i + 3)],
                    x[i : i + 3],
                    [{"n": j} for j in range(i, i + 3)],
                )
                if i % 30 == 0:
                    col.update([f"r{i}"], vectors=x[i : i + 1] + 1)
        finally:
            done.set()

    def reader():
        while not done.is_set():
            ids = col.get(include=()).ids
            if not ids:
                continue
            last = int(ids[-1][1:])
            res = col.query(x[last : last + 1] + 0.5, k=1, where={"n": last}, include=())
            if res.ids != [[f"r{last}"]]:
                errors.append(f"r{last} is in get() but query() found {res.ids}")

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:3]
    assert len(col) == 300 and col._native.index_state()[0] == 300


def test_a_process_that_exits_leaves_a_snapshot_for_the_next_open(tmp_path):
    # Far below snapshot_every: without the snapshot written as the store closes (here at
    # interpreter exit, without a del), every open would rebuild the graph from SQLite.
    path = tmp_path / "db"
    script = textwrap.dedent(
        """
        import sys, numpy as np, knnkit
        db = knnkit.Store(sys.argv[1])
        col = db.create_collection("c", dim=8, index="hnsw")
        x = np.random.default_rng(0).standard_normal((1500, 8)).astype(np.float32)
        col.add([str(i) for i in range(1500)], x)
        """
    )
    with _python(script, str(path)) as writer:
        assert writer.wait(timeout=120) == 0
    col = knnkit.Store(path).get_collection("c")
    assert col._native.index_state() == (1500, True)
    x = np.random.default_rng(0).standard_normal((1500, 8)).astype(np.float32)
    assert col.query(x[:5], k=1, include=()).ids == [[str(i)] for i in range(5)]
