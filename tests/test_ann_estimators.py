"""Approximate search inside the scikit-learn estimators: ``algorithm="hnsw"`` and ``"ivf"``.

The exact estimators (same class, ``algorithm="brute"``) are the oracle: recall of the neighbour
lists, agreement of the predictions, quality of TSNE/Isomap embeddings built on approximate
neighbour graphs. Thresholds are named constants and every assert message is built from them;
the data (scikit-learn's digits) and the seed are fixed, and the seed is printed.

Approximate variants are not in ``tests/test_estimator_checks.py``: those checks expect exact
results. IVF tests are skipped while ``knnkit.IVFIndex`` does not exist.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.manifold import TSNE, Isomap, trustworthiness
from sklearn.metrics import pairwise_distances
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline

import knnkit
from knnkit.neighbors import (
    KNeighborsClassifier,
    KNeighborsRegressor,
    KNeighborsTransformer,
    LocalOutlierFactor,
    NearestNeighbors,
    RadiusNeighborsClassifier,
    RadiusNeighborsRegressor,
    RadiusNeighborsTransformer,
)
from knnkit.neighbors._ann import default_nlist, default_nprobe
from knnkit.testing import recall_at_k

SEED = 0
K = 10
#: recall@10 of ``kneighbors`` against the exact estimator on digits, default parameters.
MIN_RECALL = {"hnsw": 0.97, "ivf": 0.95}
#: recall@10 with deliberately weak parameters (they must reach the index: recall drops).
MIN_RECALL_LOW_EFFORT = {"hnsw": 0.8, "ivf": 0.5}
LOW_EFFORT = {
    "hnsw": {"m": 4, "ef_construction": 16, "ef_search": 4},
    "ivf": {"nlist": 64, "nprobe": 1},
}
#: recall of ``radius_neighbors`` (fraction of the exact in-radius pairs found).
MIN_RADIUS_RECALL = {"hnsw": 0.95, "ivf": 0.93}
#: fraction of the digits test split where KNeighborsClassifier agrees with the exact one.
MIN_AGREEMENT = 0.98
#: fraction of training points LocalOutlierFactor labels as the exact one does.
MIN_LOF_AGREEMENT = 0.97
#: mean overlap of the KNeighborsTransformer graphs (approximate vs exact) fed to TSNE/Isomap.
MIN_GRAPH_OVERLAP = 0.95
#: the trustworthiness of an embedding built on the approximate graph may be this much lower.
MAX_TRUSTWORTHINESS_DROP = 0.01

print(f"test_ann_estimators: seed {SEED}")

IVF_MISSING = getattr(knnkit, "IVFIndex", None) is None
needs_ivf = pytest.mark.skipif(
    IVF_MISSING, reason="knnkit.IVFIndex does not exist yet (python/knnkit/index/ivf.py)"
)
ALGORITHMS = ["hnsw", pytest.param("ivf", marks=needs_ivf)]


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, random_state=SEED, stratify=y)


def _approx(algorithm: str, **params):
    return {"algorithm": algorithm, **params}


# -- recall of kneighbors --------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine", "minkowski"])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_kneighbors_recall_against_exact(digits, algorithm, metric):
    X_train, X_test, _, _ = digits
    ann = NearestNeighbors(n_neighbors=K, metric=metric, algorithm=algorithm).fit(X_train)
    exact = NearestNeighbors(n_neighbors=K, metric=metric, algorithm="brute").fit(X_train)
    assert ann._fit_method == algorithm and exact._fit_method == "brute"
    floor = MIN_RECALL[algorithm]
    for name, query in (("new queries", X_test), ("X=None", None)):
        D, I = ann.kneighbors(query)
        _, I_exact = exact.kneighbors(query)
        r = recall_at_k(I, I_exact)
        print(f"{algorithm}/{metric} {name}: recall@{K} {r:.4f} (seed {SEED})")
        assert r >= floor, f"{algorithm}/{metric} {name}: recall@{K} {r:.4f} < {floor}"
        assert D.dtype == np.float64 and I.dtype == np.int64 and D.shape == (len(I), K)
        # the distances are the exact distances of the neighbours found, closest first
        Q = X_train if query is None else query
        full = pairwise_distances(
            Q, X_train, metric="euclidean" if metric == "minkowski" else metric
        )
        np.testing.assert_allclose(D, np.take_along_axis(full, I, axis=1), rtol=1e-9, atol=1e-9)
        assert (np.diff(D, axis=1) >= 0).all()
    # X=None leaves each point out of its own list
    I_self = ann.kneighbors(return_distance=False)
    assert not (I_self == np.arange(len(X_train))[:, None]).any()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_algo_params_reach_the_index(digits, algorithm):
    X_train, X_test, _, _ = digits
    params = LOW_EFFORT[algorithm]
    weak = NearestNeighbors(n_neighbors=K, algorithm=algorithm, algo_params=params).fit(X_train)
    for name, value in params.items():
        assert getattr(weak._index.index, name) == value
    _, I_exact = NearestNeighbors(n_neighbors=K).fit(X_train).kneighbors(X_test)
    r_weak = recall_at_k(weak.kneighbors(X_test)[1], I_exact)
    default = NearestNeighbors(n_neighbors=K, algorithm=algorithm).fit(X_train)
    r_default = recall_at_k(default.kneighbors(X_test)[1], I_exact)
    floor = MIN_RECALL_LOW_EFFORT[algorithm]
    print(f"{algorithm} {params}: recall@{K} {r_weak:.4f}, default {r_default:.4f} (seed {SEED})")
    assert floor <= r_weak < r_default, (
        f"{algorithm} {params}: recall@{K} {r_weak:.4f} should be in [{floor}, {r_default:.4f})"
    )


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_float32_in_float32_out_and_overrides(digits, algorithm):
    X_train, X_test, _, _ = digits
    X32 = X_train.astype(np.float32)
    ann = NearestNeighbors(n_neighbors=K, algorithm=algorithm).fit(X32)
    D, I = ann.kneighbors(X_test[:20].astype(np.float32))
    assert D.dtype == np.float32 and I.dtype == np.int64
    ref = pairwise_distances(X_test[:20], X_train)
    np.testing.assert_allclose(D, np.take_along_axis(ref, I, axis=1), rtol=1e-4)
    # n_neighbors override, return_distance=False, the graph
    I3 = ann.kneighbors(X_test[:20], n_neighbors=3, return_distance=False)
    assert I3.shape == (20, 3)
    G = ann.kneighbors_graph(X_test[:20], n_neighbors=4, mode="distance")
    assert G.shape == (20, len(X_train)) and G.nnz == 80
    with pytest.raises(ValueError, match="n_neighbors < n_samples_fit"):
        ann.kneighbors(None, n_neighbors=len(X_train))


def test_mapped_metrics_and_sparse_input(digits):
    """Metrics the exact engine maps onto euclidean (weights, seuclidean) are served on the
    mapped rows; sparse input is densified as for the exact engine."""
    X_train, X_test, _, _ = digits
    V = X_train.var(axis=0) + 1.0
    w = np.linspace(0.5, 2.0, X_train.shape[1])
    for kwargs in (
        {"metric": "seuclidean", "metric_params": {"V": V}},
        {"metric": "minkowski", "p": 2, "metric_params": {"w": w}},
        {"metric": "l2"},
    ):
        ann = NearestNeighbors(n_neighbors=K, algorithm="hnsw", **kwargs).fit(X_train)
        exact = NearestNeighbors(n_neighbors=K, **kwargs).fit(X_train)
        D, I = ann.kneighbors(X_test)
        D_exact, I_exact = exact.kneighbors(X_test)
        r = recall_at_k(I, I_exact)
        assert r >= MIN_RECALL["hnsw"], f"{kwargs}: recall@{K} {r:.4f} < {MIN_RECALL['hnsw']}"
        same = (I == I_exact).all(axis=1)
        np.testing.assert_allclose(D[same], D_exact[same], rtol=1e-9)
    ann = NearestNeighbors(n_neighbors=K, algorithm="hnsw").fit(sp.csr_matrix(X_train))
    dense = NearestNeighbors(n_neighbors=K, algorithm="hnsw").fit(X_train)
    np.testing.assert_array_equal(
        ann.kneighbors(sp.csr_matrix(X_test))[1], dense.kneighbors(X_test)[1]
    )


# -- sklearn semantics where the index falls short -------------------------------------------------


class _StubIndex:
    """Stands in for a fitted index: returns fixed candidate lists."""

    def __init__(self, D, I):
        self.D, self.I = D, I

    def search(self, Q, k, n_jobs=None):
        return self.D[: len(Q), :k], self.I[: len(Q), :k]


def test_self_exclusion_when_the_index_misses_the_point_itself():
    X = np.array([[0.0], [1.0], [2.0], [4.0]])
    nn = NearestNeighbors(n_neighbors=2, algorithm="hnsw").fit(X)
    # row 0 finds itself; row 1 misses itself (its farthest candidate is dropped instead)
    I = np.array([[0, 1, 2], [0, 2, 3], [2, 1, 3], [3, 2, 1]])
    D = np.abs(X[I, 0] - X[:, [0]])
    nn._index.index = _StubIndex(D, I)
    D_out, I_out = nn.kneighbors()
    np.testing.assert_array_equal(I_out, [[1, 2], [0, 2], [1, 3], [2, 1]])
    np.testing.assert_allclose(D_out, [[1, 2], [1, 1], [1, 2], [2, 3]])


def test_short_results_are_completed_by_the_exact_engine():
    X = np.arange(6, dtype=np.float64)[:, None]
    nn = NearestNeighbors(n_neighbors=3, algorithm="hnsw").fit(X)
    exact = NearestNeighbors(n_neighbors=3).fit(X)
    I = np.array([[0, 1, -1]] * 6)  # fewer than k found: id -1, distance +inf
    D = np.where(I >= 0, 0.0, np.inf)
    nn._index.index = _StubIndex(D, I)
    D_out, I_out = nn.kneighbors(X)
    D_ref, I_ref = exact.kneighbors(X)
    np.testing.assert_array_equal(I_out, I_ref)
    np.testing.assert_allclose(D_out, D_ref)


# -- radius queries ------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_radius_neighbors_recall(digits, algorithm):
    X_train, X_test, _, _ = digits
    radius = 22.0  # about 20 neighbours per query on digits
    ann = NearestNeighbors(radius=radius, algorithm=algorithm).fit(X_train)
    exact = NearestNeighbors(radius=radius).fit(X_train)
    floor = MIN_RADIUS_RECALL[algorithm]
    for name, query in (("new queries", X_test), ("X=None", None)):
        lims, D, I = ann.radius_neighbors(query, return_csr=True, sort_results=True)
        lims_e, _, I_e = exact.radius_neighbors(query, return_csr=True)
        found = {(q, i) for q in range(len(lims) - 1) for i in I[lims[q] : lims[q + 1]]}
        truth = {(q, i) for q in range(len(lims_e) - 1) for i in I_e[lims_e[q] : lims_e[q + 1]]}
        r = len(found & truth) / len(truth)
        print(f"{algorithm} radius {name}: recall {r:.4f} of {len(truth)} pairs (seed {SEED})")
        assert r >= floor, f"{algorithm} radius {name}: recall {r:.4f} < {floor}"
        assert found <= truth and (D <= radius).all()
        rows = np.repeat(np.arange(len(lims) - 1), np.diff(lims))
        assert (np.diff(D)[rows[1:] == rows[:-1]] >= 0).all()  # sorted within each row
    # unsorted: index order; X=None leaves the point out
    lims, I = ann.radius_neighbors(return_distance=False, return_csr=True)
    rows = np.repeat(np.arange(len(lims) - 1), np.diff(lims))
    assert (np.diff(I)[rows[1:] == rows[:-1]] > 0).all()
    assert not (I == rows).any()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_radius_estimators(digits, algorithm):
    X_train, X_test, y_train, _ = digits
    radius = 30.0  # every test digit has a training digit within 28.3
    kw = {"radius": radius, "algorithm": algorithm}
    clf = RadiusNeighborsClassifier(outlier_label="most_frequent", **kw).fit(X_train, y_train)
    ref = RadiusNeighborsClassifier(radius=radius, outlier_label="most_frequent")
    agree = np.mean(clf.predict(X_test) == ref.fit(X_train, y_train).predict(X_test))
    assert agree >= MIN_AGREEMENT, f"{algorithm}: radius agreement {agree:.4f} < {MIN_AGREEMENT}"
    reg = RadiusNeighborsRegressor(**kw).fit(X_train, y_train.astype(float))
    assert np.isfinite(reg.predict(X_test)).all()
    G = RadiusNeighborsTransformer(**kw).fit_transform(X_train[:100])
    assert G.shape == (100, 100) and G.nnz >= 100


# -- predictions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_classifier_agrees_with_exact_on_digits(digits, algorithm):
    X_train, X_test, y_train, y_test = digits
    for weights in ("uniform", "distance"):
        ann = KNeighborsClassifier(5, weights=weights, algorithm=algorithm).fit(X_train, y_train)
        exact = KNeighborsClassifier(5, weights=weights).fit(X_train, y_train)
        pred = ann.predict(X_test)
        agree = float(np.mean(pred == exact.predict(X_test)))
        print(
            f"{algorithm}/{weights}: agreement {agree:.4f}, accuracy "
            f"{np.mean(pred == y_test):.4f} on {len(y_test)} test digits (seed {SEED})"
        )
        assert agree >= MIN_AGREEMENT, (
            f"{algorithm}/{weights}: predictions agree on {agree:.4f} < {MIN_AGREEMENT}"
        )
        proba = ann.predict_proba(X_test)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    reg = KNeighborsRegressor(5, algorithm=algorithm).fit(X_train, y_train.astype(float))
    ref = KNeighborsRegressor(5).fit(X_train, y_train.astype(float))
    close = np.mean(np.isclose(reg.predict(X_test), ref.predict(X_test)))
    assert close >= MIN_AGREEMENT, f"{algorithm}: regressor agreement {close:.4f}"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_local_outlier_factor(digits, algorithm):
    X_train, X_test, _, _ = digits
    ann = LocalOutlierFactor(n_neighbors=10, algorithm=algorithm)
    exact = LocalOutlierFactor(n_neighbors=10)
    agree = np.mean(ann.fit_predict(X_train) == exact.fit_predict(X_train))
    assert agree >= MIN_LOF_AGREEMENT, f"{algorithm}: LOF agreement {agree:.4f}"
    novelty = LocalOutlierFactor(n_neighbors=10, novelty=True, algorithm=algorithm)
    assert novelty.fit(X_train).score_samples(X_test).shape == (len(X_test),)


# -- pipelines on approximate neighbour graphs ---------------------------------------------------


def _graph_overlap(A, B) -> float:
    """Mean fraction of each row's stored neighbours that both graphs share."""
    A, B = sp.csr_matrix(A), sp.csr_matrix(B)
    shared = A.multiply(B > 0) != 0  # explicit zeros (a point itself) are not stored by multiply
    both = np.asarray(shared.sum(axis=1)).ravel() + 1  # the point itself, at distance 0
    return float(np.mean(both / np.diff(B.indptr)))


def test_transformer_feeds_isomap_and_tsne(digits):
    X = digits[0][:300]
    # TSNE(perplexity=5) asks the graph for 3 * 5 + 1 neighbours (plus the point itself)
    n_neighbors = 16
    graphs = {
        alg: KNeighborsTransformer(n_neighbors=n_neighbors, algorithm=alg).fit_transform(X)
        for alg in ("brute", "hnsw")
    }
    overlap = _graph_overlap(graphs["hnsw"], graphs["brute"])
    print(f"KNeighborsTransformer graph overlap, hnsw vs exact: {overlap:.4f} (seed {SEED})")
    assert overlap >= MIN_GRAPH_OVERLAP, f"graph overlap {overlap:.4f} < {MIN_GRAPH_OVERLAP}"

    def trust(alg, final):
        pipe = make_pipeline(
            KNeighborsTransformer(n_neighbors=n_neighbors, mode="distance", algorithm=alg), final
        )
        return trustworthiness(X, pipe.fit_transform(X), n_neighbors=5)

    for name, final in (
        ("isomap", Isomap(n_neighbors=n_neighbors, metric="precomputed")),
        (
            "tsne",
            TSNE(
                metric="precomputed", init="random", perplexity=5, max_iter=250, random_state=SEED
            ),
        ),
    ):
        t_exact, t_ann = trust("brute", clone(final)), trust("hnsw", clone(final))
        print(f"{name}: trustworthiness exact {t_exact:.4f}, hnsw {t_ann:.4f} (seed {SEED})")
        assert t_ann >= t_exact - MAX_TRUSTWORTHINESS_DROP, (
            f"{name}: trustworthiness {t_ann:.4f} on the hnsw graph is more than "
            f"{MAX_TRUSTWORTHINESS_DROP} below the exact graph's {t_exact:.4f}"
        )


# -- pickle, clone, GridSearchCV -----------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_pickle_round_trip(digits, algorithm):
    X_train, X_test, y_train, _ = digits
    est = KNeighborsClassifier(
        5, algorithm=algorithm, algo_params={"seed": 3}, metric="cosine"
    ).fit(X_train, y_train)
    restored = pickle.loads(pickle.dumps(est))
    assert restored._fit_method == algorithm
    assert type(restored._index.index) is type(est._index.index)
    np.testing.assert_array_equal(restored.kneighbors(X_test)[1], est.kneighbors(X_test)[1])
    np.testing.assert_array_equal(restored.predict(X_test), est.predict(X_test))


def test_build_is_deterministic_whatever_the_thread_count(digits):
    X_train, X_test, _, _ = digits
    a = NearestNeighbors(algorithm="hnsw", n_jobs=1).fit(X_train).kneighbors(X_test)[1]
    b = NearestNeighbors(algorithm="hnsw", n_jobs=2).fit(X_train).kneighbors(X_test)[1]
    np.testing.assert_array_equal(a, b)


def test_clone_and_grid_search_over_algo_params(digits):
    X_train, _, y_train, _ = digits
    params = {"m": 8, "ef_search": 16}
    est = KNeighborsClassifier(algorithm="hnsw", algo_params=params)
    fresh = clone(est)
    assert fresh.get_params()["algo_params"] == params
    assert fresh.get_params()["algo_params"] is not params
    grid = {"algo_params": [{"ef_search": 8}, {"ef_search": 64}], "n_neighbors": [1, 5]}
    search = GridSearchCV(KNeighborsClassifier(algorithm="hnsw"), grid, cv=3)
    search.fit(X_train[:600], y_train[:600])
    assert search.best_params_["algo_params"] in grid["algo_params"]
    assert search.best_estimator_._fit_method == "hnsw"
    assert (search.cv_results_["mean_test_score"] > 0.9).all()
    assert est.algo_params is params and params == {"m": 8, "ef_search": 16}  # not mutated


# -- parameter and metric validation -------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "algo_params", "message"),
    [
        (
            "hnsw",
            {"M": 16},
            r"unknown key\(s\) \['M'\].*accepted keys: codes, ef_construction, "
            r"ef_search, m, seed",
        ),
        ("hnsw", {"nprobe": 4}, r"accepted keys: codes, ef_construction, ef_search, m, seed"),
        (
            "ivf",
            {"ef_search": 4},
            r"accepted keys: codes, nbits, nlist, nprobe, pq_m, refine, "
            r"seed",
        ),
        ("hnsw", {"m": 1}, r"algo_params\['m'\]: expected an integer in \[2, 256\], got 1"),
        ("hnsw", {"ef_search": 0}, r"algo_params\['ef_search'\]: expected an integer >= 1"),
        ("hnsw", {"ef_construction": 2.5}, r"algo_params\['ef_construction'\]"),
        ("hnsw", {"m": True}, r"algo_params\['m'\]"),
        (
            "hnsw",
            {"codes": "pq"},
            r"algo_params\['codes'\]: expected one of \('flat', 'sq8', 'sq4'\)",
        ),
        ("hnsw", {"seed": -1}, r"algo_params\['seed'\]: expected an integer >= 0"),
        ("ivf", {"nlist": 0}, r"algo_params\['nlist'\]"),
        ("ivf", {"refine": "yes"}, r"algo_params\['refine'\]: expected True or False"),
        ("ivf", {"nbits": 9}, r"algo_params\['nbits'\]: expected an integer in \[1, 8\]"),
        ("brute", {"m": 16}, r"exact engine, which takes no algorithm parameters"),
        ("auto", {"nlist": 4}, r"exact engine, which takes no algorithm parameters"),
    ],
)
def test_bad_algo_params_are_rejected(algorithm, algo_params, message):
    X = np.random.default_rng(SEED).random((50, 4))
    with pytest.raises(ValueError, match=message):
        NearestNeighbors(algorithm=algorithm, algo_params=algo_params).fit(X)


def test_bad_algo_params_type_and_algorithm_name():
    X = np.random.default_rng(SEED).random((50, 4))
    with pytest.raises(ValueError, match="'algo_params' parameter"):
        NearestNeighbors(algorithm="hnsw", algo_params=[("m", 8)]).fit(X)
    with pytest.raises(ValueError, match="'algorithm' parameter.*'hnsw'"):
        NearestNeighbors(algorithm="annoy").fit(X)


@needs_ivf
def test_ivf_parameters():
    X = np.random.default_rng(SEED).random((200, 8))
    nn = NearestNeighbors(algorithm="ivf").fit(X)
    assert nn._index.index.nlist == default_nlist(200) == 14
    assert nn._index.index.nprobe == default_nprobe(14) == 8
    nn = NearestNeighbors(algorithm="ivf", algo_params={"nlist": 4, "nprobe": 99}).fit(X)
    assert nn._index.index.nprobe == 4  # at most nlist: every list
    exact = NearestNeighbors().fit(X)
    np.testing.assert_array_equal(nn.kneighbors(X[:20])[1], exact.kneighbors(X[:20])[1])
    with pytest.raises(ValueError, match=r"nlist <= n_samples \(200\)"):
        NearestNeighbors(algorithm="ivf", algo_params={"nlist": 201}).fit(X)
    with pytest.raises(ValueError, match="pq_m"):  # the index's own check, with context
        NearestNeighbors(algorithm="ivf", algo_params={"codes": "pq", "pq_m": 3}).fit(X)
    assert NearestNeighbors(n_neighbors=1, algorithm="ivf").fit(X[:1]).kneighbors(X[:1])[1] == 0


@needs_ivf
def test_ivf_codes_without_refine_give_exact_distances(digits):
    X_train, X_test, _, _ = digits
    for codes in ("sq8", "pq"):
        params = {"codes": codes, "refine": False, "nprobe": 16}
        X32 = X_train.astype(np.float32)
        nn = NearestNeighbors(n_neighbors=K, algorithm="ivf", algo_params=params).fit(X32)
        D, I = nn.kneighbors(X_test[:50].astype(np.float32))
        ref = pairwise_distances(X_test[:50], X_train)
        np.testing.assert_allclose(D, np.take_along_axis(ref, I, axis=1), rtol=1e-4)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(
    "kwargs",
    [
        {"metric": "manhattan"},
        {"metric": "chebyshev"},
        {"metric": "minkowski", "p": 3},
        {"metric": "hamming"},
        {"metric": "cosine", "metric_params": {"w": 1}},
        {"metric": lambda a, b: float(np.abs(a - b).sum())},
        {"metric": "precomputed"},
    ],
    ids=["manhattan", "chebyshev", "minkowski_p3", "hamming", "cosine_params", "callable", "pre"],
)
def test_unsupported_metrics_are_rejected(algorithm, kwargs):
    X = np.random.default_rng(SEED).random((20, 20))
    with pytest.raises(
        ValueError,
        match=f"algorithm='{algorithm}' supports only the metrics "
        "'euclidean'.*'sqeuclidean', 'cosine'",
    ):
        NearestNeighbors(algorithm=algorithm, **kwargs).fit(X)
