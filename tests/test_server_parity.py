"""One suite, two stores: every test runs on the embedded ``knnkit.Store`` and on
``knnkit.Client`` against a real ``knnkit serve`` (uvicorn in a subprocess on a free loopback
port), and asserts the same answers; a last test replays one scenario on both and compares the
transcripts value for value."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from _server import Server, needs_server

import knnkit
from knnkit.errors import DimensionMismatchError

pytestmark = needs_server
SEED = 7
_names = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with Server(tmp_path_factory.mktemp("served") / "db") as s:
        yield s


@pytest.fixture(params=["store", "client"])
def db(request, tmp_path):
    if request.param == "store":
        yield knnkit.Store(tmp_path / "db")
        return
    server = request.getfixturevalue("server")
    client = knnkit.Client(server.url)
    yield client
    for name in client.list_collections():
        client.delete_collection(name)
    client.close()


def name() -> str:
    return f"c{next(_names)}"


def data(n=60, dim=4, seed=SEED):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    ids = [f"id{i}" for i in range(n)]
    meta = [
        {"i": i, "even": i % 2 == 0, "tags": ["a", "b"] if i % 3 == 0 else ["c"]} for i in range(n)
    ]
    docs = [f"the {'red' if i % 4 == 0 else 'blue'} record number {i}" for i in range(n)]
    return ids, x, meta, docs


def test_collections_create_get_list_delete(db):
    a, b = name(), name()
    col = db.create_collection(a, dim=3, metric="euclidean", index="flat")
    assert (col.name, col.dim, col.metric, col.index) == (a, 3, "euclidean", "flat")
    db.get_or_create_collection(b, dim=5)
    assert db.list_collections() == sorted([a, b])
    got = db.get_collection(a)
    assert (got.dim, got.metric, got.index, got.params) == (3, "euclidean", "flat", col.params)
    with pytest.raises(ValueError, match="which exists"):
        db.create_collection(a, dim=3)
    with pytest.raises(ValueError, match="expected 4"):
        db.get_collection(a, dim=4)
    with pytest.raises(ValueError, match="does not exist"):
        db.get_collection("missing")
    with pytest.raises(ValueError, match="expected 1 to 128 characters"):
        db.create_collection("a/b", dim=3)
    db.delete_collection(a)
    assert db.list_collections() == [b]
    with pytest.raises(ValueError, match="does not exist"):
        db.delete_collection(a)


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "inner_product"])
def test_add_query_get_with_filters(db, metric):
    ids, x, meta, docs = data()
    col = db.create_collection(name(), dim=4, metric=metric, index="flat")
    col.add(ids[:30], x[:30], meta[:30], docs[:30])
    col.add(ids[30:], x[30:], meta[30:], docs[30:])
    assert len(col) == 60 and col.count({"even": True}) == 30
    q = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    res = col.query(q, k=5, where={"i": {"$gte": 10}})
    assert set(res) == {"ids", "distances", "metadata", "documents"}
    assert all(len(r) == 5 for r in res.ids)
    assert all(m["i"] >= 10 for row in res.metadata for m in row)
    res = col.query(q, k=4, where={"tags": {"$contains": "a"}}, include=("distances",))
    assert set(res) == {"ids", "distances"}
    assert all(int(i[2:]) % 3 == 0 for row in res.ids for i in row)
    g = col.get(["id5", "nope", "id2"], include=("metadata", "documents", "vectors"))
    assert g.ids == ["id5", "id2"]
    assert g.vectors.dtype == np.float32 and g.vectors.shape == (2, 4)
    np.testing.assert_array_equal(g.vectors, x[[5, 2]])
    assert g.metadata == [meta[5], meta[2]] and g.documents == [docs[5], docs[2]]
    g = col.get(where={"even": False}, limit=3, offset=2, include=())
    assert g == {"ids": ["id5", "id7", "id9"]}
    e = col.get(["nope"], include=("vectors",))
    assert e.ids == [] and e.vectors.shape == (0, 4)


def test_update_upsert_delete(db):
    ids, x, meta, docs = data(10)
    col = db.create_collection(name(), dim=4, index="flat")
    col.add(ids, x, meta, docs)
    col.update("id1", metadata={"i": 100})
    col.update(["id2"], documents=[None])
    col.upsert(["id3", "new"], x[:2], [{"n": 1}, {"n": 2}], ["d3", "dn"])
    g = col.get(["id1", "id2", "id3", "new"])
    assert g.metadata == [{"i": 100}, meta[2], {"n": 1}, {"n": 2}]
    assert g.documents == [docs[1], None, "d3", "dn"]
    assert col.delete(["id1", "zzz"]) == 1
    assert col.delete(where={"n": {"$exists": True}}) == 2
    assert col.delete(where_document={"$contains": "number 4"}) == 1
    assert len(col) == 11 - 4
    with pytest.raises(ValueError, match="existing ids"):
        col.add(["id0"], x[:1])
    with pytest.raises(ValueError, match="unknown ids"):
        col.update(["nope"], x[:1])
    with pytest.raises(DimensionMismatchError):
        col.add(["z"], np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="where"):
        col.get(where={"$bogus": 1})
    with pytest.raises(ValueError, match="include"):
        col.get(include=("distances",))
    with pytest.raises(ValueError, match="k: expected a positive int"):
        col.query(x[:1], k=0)
    assert len(col) == 7  # nothing written by the refused calls


def test_text_hybrid_and_where_document(db):
    ids, x, meta, docs = data(40)
    col = db.create_collection(name(), dim=4, index="flat")
    col.add(ids, x, meta, docs)
    res = col.query(texts=["red record"], k=5, mode="text")
    assert set(res) == {"ids", "scores", "metadata", "documents"}
    assert len(res.ids[0]) == 5 and all("red" in d for d in res.documents[0])
    res = col.query(x[:2], texts=["blue", "red"], k=3, mode="hybrid", include=("scores",))
    assert [len(r) for r in res.ids] == [3, 3]
    res = col.query(x[:1], k=40, where_document={"$contains": "red"}, include=())
    assert len(res.ids[0]) == 10
    assert col.count(where_document={"$not_contains": "red"}) == 30
    with pytest.raises(ValueError, match="text mode needs texts"):
        col.query(mode="text")
    with pytest.raises(ValueError, match="mode: expected one of"):
        col.query(x[:1], mode="nope")
    with pytest.raises(ValueError, match="no embedder"):
        col.query(texts=["red"])


def test_backup_opens_as_a_store(db, tmp_path):
    ids, x, meta, docs = data(20)
    n = name()
    db.create_collection(n, dim=4, index="flat").add(ids, x, meta, docs)
    db.backup(tmp_path / "copy")
    copy = knnkit.Store(tmp_path / "copy")
    g = copy.get_collection(n).get(include=("vectors", "metadata"))
    assert g.ids == ids and g.metadata == meta
    np.testing.assert_array_equal(g.vectors, x)
    with pytest.raises(ValueError, match="holds one"):
        db.backup(tmp_path / "copy")


def _scenario(db) -> list:
    """A mixed run whose every answer is recorded (floats exactly)."""
    ids, x, meta, docs = data(80, dim=6, seed=3)
    out = []
    for index in ("flat", "hnsw"):
        params = {"seed": 1} if index == "hnsw" else {}
        col = db.create_collection(f"t-{index}", dim=6, metric="cosine", index=index, **params)
        col.add(ids, x, meta, docs)
        col.upsert(ids[:5], x[5:10][::-1])
        col.update(ids[10:12], metadata=[{"i": -1}, None])
        out.append(col.delete(where={"i": {"$in": [20, 21, 22]}}))
        q = np.random.default_rng(9).standard_normal((4, 6)).astype(np.float32)
        for where in (
            None,
            {"even": True},
            {"$or": [{"i": {"$lt": 5}}, {"tags": {"$contains": "a"}}]},
        ):
            out.append(dict(col.query(q, k=7, where=where)))
        out.append(dict(col.query(texts=["blue record 3"], k=6, mode="text")))
        out.append(dict(col.query(q[:2], texts=["red", "blue"], k=6, mode="hybrid")))
        g = col.get(where={"even": True}, include=("metadata", "documents", "vectors"))
        g = dict(g)
        g["vectors"] = g["vectors"].tolist()
        out.append(g)
        out.append([col.count(), col.count({"i": {"$gte": 40}})])
    return out


@needs_server
def test_the_same_transcript_from_both(server, tmp_path):
    embedded = _scenario(knnkit.Store(tmp_path / "db"))
    client = knnkit.Client(server.url)
    try:
        served = _scenario(client)
    finally:
        for n in client.list_collections():
            client.delete_collection(n)
        client.close()
    assert json.dumps(served) == json.dumps(embedded)
