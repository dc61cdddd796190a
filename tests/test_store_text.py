"""knnkit.Store's text side: BM25 search against a hand-checked example and a Python oracle of
FTS5's formula, the full-text index kept in step with every write, hostile query strings,
``where_document`` against a Python oracle (hypothesis), and hybrid search against reciprocal
rank fusion computed here from the two rankings."""

from __future__ import annotations

import math
import re
import string

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import knnkit

SEED = 20240612
K1, B = 1.2, 0.75
RRF_K = 60


@pytest.fixture
def store(tmp_path):
    return knnkit.Store(tmp_path / "db", durability="normal")


def tokens(text: str) -> list[str]:
    """unicode61 on ASCII text: runs of letters and digits, lower-cased."""
    return re.findall(r"[a-z0-9]+", text.lower())


def bm25(docs: dict[str, str | None], query: str) -> dict[str, float]:
    """FTS5's bm25() (k1=1.2, b=0.75, IDF floored at 1e-6), negated, summed over the query's
    distinct terms, for the records holding at least one term."""
    toks = {i: tokens(d) for i, d in docs.items() if d is not None}
    if not toks:
        return {}
    n_docs = len(toks)
    avgdl = sum(len(t) for t in toks.values()) / n_docs
    terms = list(dict.fromkeys(tokens(query)))
    idf = {}
    for t in set(terms):
        n = sum(t in d for d in toks.values())
        v = math.log((n_docs - n + 0.5) / (n + 0.5))
        idf[t] = v if v > 0 else 1e-6
    out = {}
    for i, d in toks.items():
        if not any(t in d for t in terms):
            continue
        out[i] = sum(
            idf[t] * d.count(t) * (K1 + 1) / (d.count(t) + K1 * (1 - B + B * len(d) / avgdl))
            for t in terms
        )
    return out


def check_ranking(got_ids, got_scores, want: dict[str, float], k: int) -> None:
    """The k best of `want` (ties in any order), with their scores, best first."""
    assert len(got_ids) == min(k, len(want)), (got_ids, want)
    assert len(set(got_ids)) == len(got_ids)
    np.testing.assert_allclose(got_scores, [want[i] for i in got_ids], rtol=1e-9, atol=1e-12)
    assert all(a >= b for a, b in zip(got_scores, got_scores[1:], strict=False))
    if got_ids:
        rest = [s for i, s in want.items() if i not in set(got_ids)]
        assert not rest or max(rest) <= got_scores[-1] + 1e-9


def vec(n: int, dim: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


# -- BM25 -------------------------------------------------------------------------------------


def test_bm25_hand_checked(store):
    col = store.create_collection("c", dim=2, index="flat", metric="euclidean")
    docs = ["Apple banana", "apple APPLE cherry", "cherry date", "elder fig grape", "kiwi", None]
    col.add([f"d{i}" for i in range(6)], vec(6), documents=docs)
    res = col.query(texts=["apple cherry"], mode="text")
    # N=5, avgdl=11/5; "apple" and "cherry" each in 2 documents: idf = ln(3.5/2.5)
    idf = math.log(3.5 / 2.5)

    def part(tf, dl):
        return idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * dl / 2.2))

    assert res.ids == [["d1", "d0", "d2"]]  # d0 and d2 tie: the older record first
    np.testing.assert_allclose(
        res.scores[0], [part(2, 3) + part(1, 3), part(1, 2), part(1, 2)], rtol=1e-12
    )
    assert "distances" not in res
    np.testing.assert_allclose(res.scores[0][0], 0.712623, atol=1e-6)
    # diacritics and case are folded, one row per text, at most k, fewer when few match
    col.update(["d5"], documents=["Café au lait"])
    res = col.query(texts=["CAFE", "kiwi", "nothing here"], k=2, mode="text", include=("scores",))
    assert res.ids == [["d5"], ["d4"], []]
    assert list(res) == ["ids", "scores"]
    assert col.query(texts="apple", k=1, mode="text").ids == [["d1"]]


def test_include_names_the_ranking_values_by_mode(store):
    col = store.create_collection("c", dim=2, index="flat", metric="euclidean")
    col.add(["a", "b"], vec(2), documents=["x y", "y"])
    q = [[0.0, 0.0]]
    assert set(col.query(q)) == {"ids", "distances", "metadata", "documents"}
    assert set(col.query(q, include=("scores",))) == {"ids", "distances"}
    assert set(col.query(texts="y", mode="text")) == {"ids", "scores", "metadata", "documents"}
    assert set(col.query(texts="y", mode="text", include=())) == {"ids"}
    h = col.query(q, texts="y", mode="hybrid", include=("distances",))
    assert set(h) == {"ids", "scores"}


VOCAB = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta", "iota", "kappa", "x1"]


def _doc(draw_words: list[int], seps: list[str], caps: list[bool]) -> str:
    words = [VOCAB[w].upper() if c else VOCAB[w] for w, c in zip(draw_words, caps, strict=False)]
    return "".join(w + s for w, s in zip(words, seps, strict=False))


docs_strategy = st.lists(
    st.one_of(
        st.none(),
        st.builds(
            _doc,
            st.lists(st.integers(0, len(VOCAB) - 1), min_size=0, max_size=12),
            st.lists(st.sampled_from([" ", ", ", "-", ". ", "\n", "'"]), min_size=12, max_size=12),
            st.lists(st.booleans(), min_size=12, max_size=12),
        ),
    ),
    min_size=1,
    max_size=40,
)
query_strategy = st.lists(
    st.sampled_from([*VOCAB, "ALPHA", "missing", "AND", "OR", "NEAR", '"', "*", "(", "^"]),
    min_size=0,
    max_size=6,
).map(" ".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    docs=docs_strategy,
    queries=st.lists(query_strategy, min_size=1, max_size=3),
    k=st.integers(1, 12),
)
def test_bm25_matches_the_python_oracle(tmp_path_factory, docs, queries, k):
    db = knnkit.Store(tmp_path_factory.mktemp("bm25") / "db", durability="normal")
    col = db.create_collection("c", dim=2, index="flat", metric="euclidean")
    ids = [f"r{i}" for i in range(len(docs))]
    col.add(ids, vec(len(docs)), documents=docs)
    res = col.query(texts=queries, k=k, mode="text")
    model = dict(zip(ids, docs, strict=True))
    for q, got_ids, got_scores in zip(queries, res.ids, res.scores, strict=True):
        check_ranking(got_ids, got_scores, bm25(model, q), k)


HOSTILE = [
    '"',
    '""',
    "AND",
    "OR",
    "NOT",
    "foo*(",
    "NEAR(a b, 3)",
    "^start",
    "col:alpha",
    "document:alpha",
    "alpha:",
    "-alpha",
    "+alpha",
    "(alpha OR",
    "{alpha beta}",
    "alpha\x00beta",
    "'; DROP TABLE records; --",
    "",
    "   ",
    "*",
    "\u0301",
    "日本語",
    "a" * 5000,
]


def test_hostile_query_strings_are_words_or_nothing(store):
    col = store.create_collection("c", dim=2, index="flat", metric="euclidean")
    docs = ["alpha beta", "and or not near", "start document col", "日本語 テキスト"]
    col.add([f"r{i}" for i in range(4)], vec(4), documents=docs)
    res = col.query(texts=HOSTILE, k=10, mode="text")
    model = dict(zip([f"r{i}" for i in range(4)], docs, strict=True))
    for q, ids in zip(HOSTILE, res.ids, strict=True):
        if q == "日本語":
            assert ids == ["r3"]
            continue
        assert set(ids) == set(bm25(model, q)), q
    assert res.ids[HOSTILE.index("AND")] == ["r1"]
    assert res.ids[HOSTILE.index('"')] == []
    assert res.ids[HOSTILE.index("foo*(")] == []
    assert len(col) == 4


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=40))
def test_any_text_is_a_valid_query(tmp_path_factory, text):
    col = _shared_text_collection(tmp_path_factory)
    res = col.query(texts=[text], k=5, mode="text", include=("scores",))
    assert len(res.ids[0]) <= 5


_SHARED = {}


def _shared_text_collection(factory):
    if "col" not in _SHARED:
        db = knnkit.Store(factory.mktemp("any") / "db", durability="normal")
        col = db.create_collection("c", dim=2, index="flat", metric="euclidean")
        alphabet = string.ascii_letters + string.digits + string.punctuation + " éüß日"
        rng = np.random.default_rng(SEED)
        docs = ["".join(rng.choice(list(alphabet), 30)) for _ in range(50)]
        col.add([f"r{i}" for i in range(50)], vec(50), documents=docs)
        _SHARED["db"], _SHARED["col"] = db, col
    return _SHARED["col"]


# -- the index follows every write --------------------------------------------------------------


def test_the_text_index_follows_writes_reopens_and_collection_deletes(tmp_path):
    rng = np.random.default_rng(SEED + 1)
    path = tmp_path / "db"
    db = knnkit.Store(path, durability="normal")
    col = db.create_collection("c", dim=2, index="hnsw", metric="euclidean")
    model: dict[str, str | None] = {}
    pool = [f"i{j}" for j in range(40)]

    def random_doc():
        if rng.random() < 0.2:
            return None
        return " ".join(rng.choice(VOCAB, int(rng.integers(0, 6))))

    def check(c):
        assert c._native.check_text_index() == sum(d is not None for d in model.values())
        for word in VOCAB[:6]:
            got = c.query(texts=[word], k=100, mode="text")
            check_ranking(got.ids[0], got.scores[0], bm25(model, word), 100)

    for step in range(120):
        op = rng.choice(["add", "upsert", "update", "update_doc", "delete"])
        ids = list(rng.choice(pool, int(rng.integers(1, 5)), replace=False))
        docs = [random_doc() for _ in ids]
        if op == "add":
            ids = [i for i in ids if i not in model]
            if not ids:
                continue
            docs = docs[: len(ids)]
            col.add(ids, vec(len(ids), seed=step), documents=docs)
        elif op == "upsert":
            # with or without documents (without: existing records keep theirs)
            with_docs = rng.random() < 0.7
            col.upsert(ids, vec(len(ids), seed=step), documents=docs if with_docs else None)
            if not with_docs:
                docs = [model.get(i) for i in ids]
        elif op in ("update", "update_doc"):
            ids = [i for i in ids if i in model]
            if not ids:
                continue
            docs = docs[: len(ids)]
            if op == "update":  # a new vector moves the row to a new key, the text stays
                col.update(ids, vec(len(ids), seed=step))
                docs = [model[i] for i in ids]
            else:
                col.update(ids, documents=docs)
        else:
            col.delete(ids)
            for i in ids:
                model.pop(i, None)
            continue
        model.update(zip(ids, docs, strict=True))
        if step % 20 == 0:
            check(col)
    check(col)
    del col, db
    db = knnkit.Store(path)
    col = db.get_collection("c")
    check(col)
    db.delete_collection("c")
    again = db.create_collection("c", dim=2, index="flat")
    assert again.query(texts=VOCAB, mode="text").ids == [[] for _ in VOCAB]
    assert again._native.check_text_index() == 0


def test_failed_writes_leave_the_text_index_unchanged(store):
    col = store.create_collection("c", dim=2, index="flat", metric="euclidean")
    col.add(["a"], vec(1), documents=["owl"])
    with pytest.raises(ValueError):
        col.add(["b", "a"], vec(2), documents=["owl", "owl"])
    with pytest.raises(ValueError):
        col.update(["a", "zz"], documents=["cat", "cat"])
    assert col.query(texts="owl", mode="text").ids == [["a"]]
    assert col.query(texts="cat", mode="text").ids == [[]]
    assert col._native.check_text_index() == 1


# -- where_document -----------------------------------------------------------------------------

DOC_WORDS = ["ab", "Ab", "abc", "b", "ca", "x-y", "AB"]


def doc_oracle(f: dict, doc: str | None) -> bool:
    out = True
    for op, arg in f.items():
        if op == "$contains":
            out &= doc is not None and arg in doc
        elif op == "$not_contains":
            out &= doc is None or arg not in doc
        elif op == "$and":
            out &= all(doc_oracle(g, doc) for g in arg)
        else:
            out &= any(doc_oracle(g, doc) for g in arg)
    return out


needles = st.sampled_from(
    [
        "ab",
        "Ab",
        "AB",
        "b",
        "abc",
        " ab ",
        " ab",
        "ab ",
        "b c",
        " ca ",
        "x-y",
        "-",
        " ",
        "",
        "zz",
        "ab Ab",
        " abc ab ",
    ]
)
doc_leaf = st.builds(
    lambda op, s: {op: s}, st.sampled_from(["$contains", "$not_contains"]), needles
)
doc_trees = st.recursive(
    doc_leaf,
    lambda inner: st.one_of(
        st.builds(lambda fs: {"$and": fs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda fs: {"$or": fs}, st.lists(inner, min_size=1, max_size=3)),
    ),
    max_leaves=5,
)


@pytest.fixture(scope="module")
def documented(tmp_path_factory):
    rng = np.random.default_rng(SEED + 2)
    n = 400
    docs = [
        None if rng.random() < 0.15 else " ".join(rng.choice(DOC_WORDS, int(rng.integers(0, 6))))
        for _ in range(n)
    ]
    meta = [{"g": int(rng.integers(0, 5))} for _ in range(n)]
    x = vec(n, 3, seed=1)
    db = knnkit.Store(tmp_path_factory.mktemp("wd") / "db", durability="normal")
    col = db.create_collection("c", dim=3, index="flat", metric="euclidean")
    col.add([f"r{i}" for i in range(n)], x, meta, docs)
    return col, docs, meta, x


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wd=doc_trees, g=st.one_of(st.none(), st.integers(0, 5)), k=st.sampled_from([1, 7, 50]))
def test_where_document_matches_the_python_oracle(documented, wd, g, k):
    col, docs, meta, x = documented
    where = None if g is None else {"g": {"$lt": g}}
    keep = [
        doc_oracle(wd, d) and (g is None or m["g"] < g) for d, m in zip(docs, meta, strict=True)
    ]
    sel = [i for i, kp in enumerate(keep) if kp]
    assert col.count(where, where_document=wd) == len(sel)
    assert col.get(where=where, where_document=wd, include=()).ids == [f"r{i}" for i in sel]
    q = vec(2, 3, seed=9)
    got = col.query(q, k=k, where=where, where_document=wd, include=("distances",))
    for row, qq in zip(got.ids, q, strict=True):
        d = ((x[sel] - qq) ** 2).sum(1)
        want = [f"r{sel[j]}" for j in np.argsort(d, kind="stable")[:k]]
        assert row == want
    t = col.query(texts=["ab b"], k=k, where=where, where_document=wd, mode="text")
    model = {f"r{i}": docs[i] for i in range(len(docs))}
    scores = bm25(model, "ab b")
    check_ranking(t.ids[0], t.scores[0], {i: s for i, s in scores.items() if int(i[1:]) in sel}, k)


def test_delete_by_where_document(store):
    col = store.create_collection("c", dim=2, index="hnsw", metric="euclidean")
    docs = ["red fox", "Red fox", "blue fox", None, "red owl"]
    col.add([f"r{i}" for i in range(5)], vec(5), [{"g": i % 2} for i in range(5)], docs)
    assert col.delete(where_document={"$contains": "red"}) == 2
    assert col.get(include=()).ids == ["r1", "r2", "r3"]
    assert col.delete(where={"g": 1}, where_document={"$not_contains": "fox"}) == 1
    assert col.delete(["r1", "r2"], where_document={"$contains": "blue"}) == 1
    assert col.get(include=("documents",)).documents == ["Red fox"]
    assert col._native.check_text_index() == 1
    assert col.query(texts="fox", mode="text").ids == [["r1"]]
    with pytest.raises(ValueError, match="ids or where"):
        col.delete()


def test_where_document_errors_name_what_was_expected(store):
    col = store.create_collection("c", dim=2, index="flat")
    col.add(["a"], vec(1), documents=["x"])
    for bad, want in [
        ({"$contains": 3}, "a str after \\$contains"),
        ({"$regex": "x"}, "unknown operator"),
        ({"$and": []}, "non-empty list"),
        ({"$or": {"$contains": "x"}}, "non-empty list"),
        ({}, "at least one operator"),
        ("x", "a dict"),
    ]:
        with pytest.raises((ValueError, TypeError), match=want):
            col.get(where_document=bad)
    with pytest.raises(TypeError, match="where_document"):
        col.count(where_document={"$contains": object()})


# -- hybrid -------------------------------------------------------------------------------------


def fuse(lists: list[list[str]], order: dict[str, int], k: int) -> tuple[list[str], list[float]]:
    score: dict[str, float] = {}
    best: dict[str, int] = {}
    for lst in lists:
        for r, i in enumerate(lst):
            score[i] = score.get(i, 0.0) + 1.0 / (RRF_K + r + 1)
            best[i] = min(best.get(i, r), r)
    ranked = sorted(score, key=lambda i: (-score[i], best[i], order[i]))[:k]
    return ranked, [score[i] for i in ranked]


@pytest.mark.parametrize("k", [1, 5, 30])
def test_hybrid_is_reciprocal_rank_fusion_of_both_rankings(store, k):
    rng = np.random.default_rng(SEED + 3)
    n, dim = 250, 4
    x = rng.standard_normal((n, dim)).astype(np.float32)
    docs = [
        None if rng.random() < 0.2 else " ".join(rng.choice(VOCAB, int(rng.integers(1, 6))))
        for _ in range(n)
    ]
    ids = [f"r{i}" for i in range(n)]
    col = store.create_collection("c", dim=dim, index="flat", metric="euclidean")
    col.add(ids, x, [{"g": i % 3} for i in range(n)], docs)
    order = {i: j for j, i in enumerate(ids)}
    q = rng.standard_normal((3, dim)).astype(np.float32)
    texts = ["alpha beta", "kappa", "missing words"]
    depth = 2 * k + RRF_K
    for where in [None, {"g": 1}]:
        res = col.query(q, k=k, where=where, texts=texts, mode="hybrid")
        by_vec = col.query(q, k=depth, where=where, include=()).ids
        by_text = col.query(texts=texts, k=depth, where=where, mode="text", include=()).ids
        matches = col.count(where)
        for r in range(len(q)):
            want_ids, want_scores = fuse([by_vec[r], by_text[r]], order, k)
            assert res.ids[r] == want_ids
            np.testing.assert_allclose(res.scores[r], want_scores, rtol=1e-12)
            assert len(res.ids[r]) == min(k, matches)


def test_hybrid_ranks_a_record_first_in_both_lists_first(store):
    n = 100
    x = np.array([[float(i), 0.0] for i in range(n)], dtype=np.float32)
    docs = [f"filler{i} words" for i in range(n)]
    docs[42] = "the rare answer"
    docs[3] = "answer answer answer"  # best by text alone, far by vector
    col = store.create_collection("c", dim=2, index="hnsw", metric="euclidean")
    col.add([f"r{i}" for i in range(n)], x, documents=docs)
    res = col.query([[42.1, 0.0]], texts=["rare answer"], k=10, mode="hybrid")
    assert res.ids[0][0] == "r42"
    assert res.scores[0][0] == pytest.approx(2 / (RRF_K + 1))
    assert "r3" in res.ids[0] and len(res.ids[0]) == 10
    res = col.query(
        [[42.1, 0.0]],
        texts=["rare answer"],
        k=10,
        mode="hybrid",
        where_document={"$not_contains": "rare"},
    )
    assert "r42" not in res.ids[0] and res.ids[0][0] in ("r3", "r42", "r41", "r43")


def test_mode_arguments_are_checked(store):
    col = store.create_collection("c", dim=2, index="flat")
    col.add(["a"], vec(1), documents=["x"])
    # Without an embedder, texts cannot stand in for the vectors.
    with pytest.raises(ValueError, match="has no embedder"):
        col.query(texts=["x"], mode="hybrid")
    with pytest.raises(ValueError, match="has no embedder"):
        col.query(texts=["x"])
    with pytest.raises(ValueError, match="hybrid mode needs texts"):
        col.query([[0, 0]], mode="hybrid")
    with pytest.raises(ValueError, match="text mode needs texts"):
        col.query(mode="text")
    with pytest.raises(ValueError, match="mode: expected one of"):
        col.query([[0, 0]], mode="bm25")
    with pytest.raises(ValueError, match="texts"):
        col.query([[0, 0], [1, 1]], texts=["x"], mode="hybrid")
    with pytest.raises(TypeError, match="texts"):
        col.query(texts=[b"x"], mode="text")
    with pytest.raises(ValueError, match="at most 128 distinct words"):
        col.query(texts=" ".join(f"w{i}" for i in range(200)), mode="text")
    # repeats count once: a long text of few words is a cheap query
    assert col.query(texts="x " * 50_000, mode="text").ids == [["a"]]
