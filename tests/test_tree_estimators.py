"""The estimators on knnkit's trees, sparse input and sparse precomputed graphs, side by side
with scikit-learn.

- ``_fit_method`` (and the class of ``_tree``) equals scikit-learn's for every combination of
  (algorithm, n, d, n_neighbors, metric, sparse input) below.
- algorithm in {auto, kd_tree, ball_tree, brute}: the same neighbours as scikit-learn with the
  same algorithm (distances close, indices equal except between tied distances).
- ``metric="precomputed"`` with sparse graphs: scikit-learn's answers and error messages.
- scipy CSR input larger than ``MAX_DENSE_BYTES`` (patched small here) stays sparse and still
  gives scikit-learn's answers.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn.neighbors as skn
from scipy.spatial.distance import cdist
from sklearn import config_context
from sklearn.exceptions import EfficiencyWarning
from sklearn.metrics import DistanceMetric, pairwise_distances

import knnkit.neighbors._base as base_module
from knnkit.neighbors import (
    BallTree,
    KDTree,
    KernelDensity,
    KNeighborsClassifier,
    NearestNeighbors,
    RadiusNeighborsRegressor,
)

SEED = 0


def l1(a, b):
    return float(np.abs(a - b).sum())


# -- _fit_method -------------------------------------------------------------------------------

FIT_METRICS = [
    {},
    {"metric": "euclidean"},
    {"metric": "manhattan"},
    {"metric": "chebyshev"},
    {"metric": "minkowski", "p": 3},
    {"metric": "minkowski", "p": 0.5},
    {"metric": "minkowski", "p": 3, "metric_params": {"w": "ones"}},
    {"metric": "sqeuclidean"},
    {"metric": "cosine"},
    {"metric": "seuclidean", "metric_params": {"V": "ones"}},
    {"metric": "hamming"},
    {"metric": "canberra"},
    {"metric": "correlation"},
    {"metric": l1},
    {"metric": DistanceMetric.get_metric("manhattan")},
    {"metric": "precomputed"},
]


def _concrete(kwargs, d):
    out = dict(kwargs)
    if "metric_params" in out:
        out["metric_params"] = {k: np.ones(d) for k in out["metric_params"]}
    return out


def _fit_quietly(est, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("algorithm", ["auto", "kd_tree", "ball_tree", "brute"])
def test_fit_method_equals_sklearn(algorithm, sparse):
    rng = np.random.RandomState(SEED)
    checked = 0
    for n, d in [(1, 1), (7, 2), (40, 3), (40, 15), (40, 16), (100, 2)]:
        X = rng.rand(n, d)
        for kwargs in FIT_METRICS:
            kw = _concrete(kwargs, d)
            data = pairwise_distances(X) if kw.get("metric") == "precomputed" else X
            if sparse:
                data = sp.csr_matrix(data)
            for k in (None, 1, 3, n // 2, 20):
                if k == 0:
                    continue
                try:
                    theirs = _fit_quietly(
                        skn.NearestNeighbors(n_neighbors=k, algorithm=algorithm, **kw), data
                    )
                except (ValueError, TypeError):
                    continue  # scikit-learn refuses; knnkit may accept more (sparse metrics)
                ours = _fit_quietly(
                    NearestNeighbors(n_neighbors=k, algorithm=algorithm, **kw), data
                )
                assert ours._fit_method == theirs._fit_method, (n, d, k, kwargs)
                if theirs._tree is None:
                    assert ours._tree is None
                else:
                    assert type(ours._tree).__name__ == type(theirs._tree).__name__
                    assert isinstance(ours._tree, (KDTree, BallTree))
                checked += 1
    assert checked > 100


def test_fit_method_radius_estimators_and_large_k():
    X = np.random.RandomState(SEED).rand(50, 3)
    ours = RadiusNeighborsRegressor().fit(X, X[:, 0])
    theirs = skn.RadiusNeighborsRegressor().fit(X, X[:, 0])
    assert ours._fit_method == theirs._fit_method == "kd_tree"
    ours = KNeighborsClassifier(25).fit(X, X[:, 0] > 0.5)
    theirs = skn.KNeighborsClassifier(25).fit(X, X[:, 0] > 0.5)
    assert ours._fit_method == theirs._fit_method == "brute"


# -- side by side ------------------------------------------------------------------------------

SIDE_METRICS = [
    {"metric": "euclidean"},
    {"metric": "manhattan"},
    {"metric": "chebyshev"},
    {"metric": "minkowski", "p": 3},
    {"metric": "canberra"},
    {"metric": "seuclidean", "metric_params": {"V": "ones"}},
]


def _data(shape, dtype, rng, d=3):
    n = 1 if shape == "n1" else 60
    X = rng.rand(n, d)
    if shape == "duplicates":
        X = np.round(X * 3) / 3
    Q = np.vstack([rng.rand(9, d), X[:3]])
    return X.astype(dtype), Q.astype(dtype)


def _assert_same(D, I, D_ref, I_ref, exact, dtype):
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    atol = 1e-6 if dtype == np.float32 else 1e-13
    # scikit-learn's brute euclidean uses the expanded form |x|² + |y|² - 2<x, y>, whose rounding
    # depends on the CPU's BLAS kernel (FMA or not) and reaches sqrt(eps · |x|²) near zero:
    # 1.49e-8 instead of 0 for a duplicate on some CPUs. Where scikit-learn's value is off the
    # exact one by at most that, ours must be the exact one.
    ours_exact = np.take_along_axis(exact, I, 1)
    off = ~np.isclose(D, D_ref, rtol=rtol, atol=atol)
    expanded = 4 * np.sqrt(np.finfo(dtype).eps * max(1.0, float(np.abs(exact).max()) ** 2))
    assert (np.abs(D_ref - ours_exact)[off] <= expanded).all(), (D[off], D_ref[off])
    np.testing.assert_allclose(D[off], ours_exact[off], rtol=rtol, atol=atol)
    diff = I != I_ref
    if diff.any():
        rows = np.nonzero(diff)[0]
        np.testing.assert_allclose(exact[rows, I[diff]], exact[rows, I_ref[diff]], rtol=rtol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", ["random", "duplicates", "n1"])
@pytest.mark.parametrize("algorithm", ["auto", "kd_tree", "ball_tree", "brute"])
def test_tree_estimators_match_sklearn(algorithm, shape, dtype):
    rng = np.random.RandomState(SEED)
    X, Q = _data(shape, dtype, rng)
    n = X.shape[0]
    for kwargs in SIDE_METRICS:
        if algorithm == "kd_tree" and kwargs["metric"] in ("canberra", "seuclidean"):
            continue
        kw = _concrete(kwargs, X.shape[1])
        metric_kw = {"metric": kw["metric"], **kw.get("metric_params", {})}
        if "p" in kw:
            metric_kw["p"] = kw["p"]
        exact = pairwise_distances(Q.astype(np.float64), X.astype(np.float64), **metric_kw)
        if kw["metric"] == "euclidean":  # directly, not by scikit-learn's expanded form
            exact = cdist(Q.astype(np.float64), X.astype(np.float64))
        for k in sorted({1, 3, n}):
            if k > n:
                continue
            ours = NearestNeighbors(n_neighbors=k, algorithm=algorithm, leaf_size=4, **kw).fit(X)
            theirs = skn.NearestNeighbors(
                n_neighbors=k, algorithm=algorithm, leaf_size=4, **kw
            ).fit(X)
            assert ours._fit_method == theirs._fit_method
            D, I = ours.kneighbors(Q)
            assert D.dtype == dtype and I.dtype == np.int64
            D_ref, I_ref = theirs.kneighbors(Q)
            _assert_same(D, I, D_ref, I_ref, exact, dtype)
            if k < n:
                D0, I0 = ours.kneighbors()
                D0_ref, _ = theirs.kneighbors()
                np.testing.assert_allclose(D0, D0_ref, rtol=1e-5, atol=1e-6)
        # radius: 0 (the duplicates only), a typical radius, one radius per query
        nn = NearestNeighbors(radius=0.5, algorithm=algorithm, leaf_size=4, **kw).fit(X)
        nn_ref = skn.NearestNeighbors(radius=0.5, algorithm=algorithm, leaf_size=4, **kw).fit(X)
        for r in (0.0, float(np.median(exact)), np.linspace(0.0, 1.0, len(Q))):
            rd, ri = nn.radius_neighbors(Q, radius=r, sort_results=True)
            if np.ndim(r) and nn_ref._fit_method == "brute":
                # scikit-learn's brute force takes one radius only: the exact sets instead
                ri_ref = [np.nonzero(exact[i] <= r[i])[0] for i in range(len(Q))]
            else:
                ri_ref = nn_ref.radius_neighbors(Q, radius=r, sort_results=True)[1]
            for i in range(len(Q)):
                r_i = r if np.ndim(r) == 0 else r[i]
                # points within float32 rounding of the sphere may fall on either side
                near = np.abs(exact[i] - r_i) <= 1e-5 * max(r_i, 1.0)
                a, b = set(ri[i].tolist()), set(ri_ref[i].tolist())
                assert a ^ b <= set(np.nonzero(near)[0].tolist())
                assert np.all(np.diff(rd[i]) >= 0)
            ri = nn.radius_neighbors(Q, radius=r, return_distance=False)
            assert all(np.all(np.diff(i) > 0) for i in ri)  # unsorted: index order


def test_tree_is_used_with_leaf_size_and_n_jobs():
    rng = np.random.RandomState(SEED)
    X = rng.rand(500, 2)
    nn = NearestNeighbors(n_neighbors=4, leaf_size=7, n_jobs=1).fit(X)
    assert nn._fit_method == "kd_tree" and isinstance(nn._tree, KDTree)
    ref = skn.NearestNeighbors(n_neighbors=4, leaf_size=7).fit(X)
    for x, y in zip(nn._tree.get_arrays(), ref._tree.get_arrays(), strict=True):
        np.testing.assert_array_equal(x, y)
    calls = nn._tree.get_n_calls()
    D, I = nn.kneighbors(X[:50])
    assert nn._tree.get_n_calls() > calls  # the queries ran on the tree
    D_ref, I_ref = ref.kneighbors(X[:50])
    np.testing.assert_array_equal(D, D_ref)
    np.testing.assert_array_equal(I, I_ref)
    ball = NearestNeighbors(n_neighbors=4, algorithm="ball_tree", metric="manhattan").fit(X)
    assert isinstance(ball._tree, BallTree) and ball._tree.get_arrays()[0] is not None
    np.testing.assert_array_equal(
        ball.kneighbors(X[:20])[1],
        skn.NearestNeighbors(n_neighbors=4, algorithm="ball_tree", metric="manhattan")
        .fit(X)
        .kneighbors(X[:20])[1],
    )


def test_tree_classifier_votes_match_sklearn():
    rng = np.random.RandomState(SEED)
    X, Q = rng.rand(200, 3), rng.rand(40, 3)
    y = rng.randint(0, 3, 200)
    for algorithm in ("kd_tree", "ball_tree"):
        for weights in ("uniform", "distance"):
            ours = KNeighborsClassifier(5, weights=weights, algorithm=algorithm).fit(X, y)
            theirs = skn.KNeighborsClassifier(5, weights=weights, algorithm=algorithm).fit(X, y)
            np.testing.assert_allclose(ours.predict_proba(Q), theirs.predict_proba(Q))
            yr = y.astype(np.float64)
            reg = RadiusNeighborsRegressor(0.3, weights=weights, algorithm=algorithm).fit(X, yr)
            reg_ref = skn.RadiusNeighborsRegressor(0.3, weights=weights, algorithm=algorithm)
            np.testing.assert_allclose(reg.predict(Q), reg_ref.fit(X, yr).predict(Q))


# -- sparse precomputed graphs -----------------------------------------------------------------


def test_sparse_precomputed_graph_matches_sklearn():
    rng = np.random.RandomState(SEED)
    X, Q = rng.rand(40, 3), rng.rand(9, 3)
    y = rng.randint(0, 3, 40)
    graph = skn.NearestNeighbors(n_neighbors=8).fit(X).kneighbors_graph(mode="distance")
    qgraph = skn.NearestNeighbors(n_neighbors=8).fit(X).kneighbors_graph(Q, mode="distance")
    for k in (1, 5, 7):
        ours = NearestNeighbors(n_neighbors=k, metric="precomputed").fit(graph)
        theirs = skn.NearestNeighbors(n_neighbors=k, metric="precomputed").fit(graph)
        assert ours._fit_method == theirs._fit_method == "brute"
        assert sp.issparse(ours._fit_X)
        for q in (qgraph, None):
            D, I = ours.kneighbors(q)
            D_ref, I_ref = theirs.kneighbors(q)
            np.testing.assert_array_equal(D, D_ref)
            np.testing.assert_array_equal(I, I_ref)
        clf = KNeighborsClassifier(k, metric="precomputed", weights="distance").fit(graph, y)
        ref = skn.KNeighborsClassifier(k, metric="precomputed", weights="distance").fit(graph, y)
        np.testing.assert_allclose(clf.predict_proba(qgraph), ref.predict_proba(qgraph))
    # radius: the stored entries within the radius
    ours = NearestNeighbors(radius=0.3, metric="precomputed").fit(graph)
    theirs = skn.NearestNeighbors(radius=0.3, metric="precomputed").fit(graph)
    for q in (qgraph, None):
        rd, ri = ours.radius_neighbors(q, sort_results=True)
        rd_ref, ri_ref = theirs.radius_neighbors(q, sort_results=True)
        for a, b, c, e in zip(rd, ri, rd_ref, ri_ref, strict=True):
            np.testing.assert_array_equal(a, c)
            assert set(b.tolist()) == set(e.tolist())
    # a dense query against a sparse fit, and a sparse query against a dense fit
    dense = NearestNeighbors(n_neighbors=3, metric="precomputed").fit(pairwise_distances(X))
    D, I = dense.kneighbors(qgraph)
    np.testing.assert_array_equal(
        I,
        skn.NearestNeighbors(n_neighbors=3, metric="precomputed").fit(graph).kneighbors(qgraph)[1],
    )


def test_sparse_precomputed_errors_and_unsorted_graphs():
    rng = np.random.RandomState(SEED)
    X = rng.rand(30, 2)
    graph = skn.NearestNeighbors(n_neighbors=4).fit(X).kneighbors_graph(mode="distance")
    ours = NearestNeighbors(n_neighbors=6, metric="precomputed").fit(graph)
    theirs = skn.NearestNeighbors(n_neighbors=6, metric="precomputed").fit(graph)
    with pytest.raises(ValueError) as err:
        ours.kneighbors(graph)
    with pytest.raises(ValueError) as err_ref:
        theirs.kneighbors(graph)
    assert str(err.value) == str(err_ref.value)
    assert "neighbors per samples are required" in str(err.value)
    # rows stored out of order: sorted (a copy), with scikit-learn's EfficiencyWarning
    shuffled = graph.copy()
    for i in range(shuffled.shape[0]):
        s, e = shuffled.indptr[i], shuffled.indptr[i + 1]
        shuffled.data[s:e] = shuffled.data[s:e][::-1].copy()
        shuffled.indices[s:e] = shuffled.indices[s:e][::-1].copy()
    with pytest.warns(EfficiencyWarning, match="not sorted by row values"):
        nn = NearestNeighbors(n_neighbors=3, metric="precomputed").fit(shuffled)
    np.testing.assert_array_equal(
        nn.kneighbors(graph)[1],
        skn.NearestNeighbors(n_neighbors=3, metric="precomputed").fit(graph).kneighbors(graph)[1],
    )
    with pytest.raises(TypeError, match="not supported due to its handling of explicit zeros"):
        nn.kneighbors(sp.dia_matrix(pairwise_distances(X)))
    with pytest.raises(ValueError, match="Negative values"):
        NearestNeighbors(metric="precomputed").fit(-graph)


# -- sparse CSR input, not densified -----------------------------------------------------------


@pytest.fixture
def tiny_dense_limit(monkeypatch):
    """Every sparse input is 'large': knnkit must not densify it."""
    monkeypatch.setattr(base_module, "MAX_DENSE_BYTES", 64)


def _sparse_data(rng, n=80, d=12):
    X = rng.rand(n, d)
    X[X < 0.7] = 0
    X[3] = 0  # an empty row (cosine distance 1 to everything)
    X[10:14] = X[20:24]  # duplicates
    Q = rng.rand(15, d)
    Q[Q < 0.7] = 0
    return X, Q


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine", "manhattan"])
def test_large_sparse_input_stays_sparse_and_matches_sklearn(tiny_dense_limit, metric):
    rng = np.random.RandomState(SEED)
    X, Q = _sparse_data(rng)
    Xs, Qs = sp.csr_matrix(X), sp.csr_matrix(Q)
    exact = pairwise_distances(Q, X, metric=metric)
    ours = NearestNeighbors(n_neighbors=5, radius=0.8, metric=metric).fit(Xs)
    theirs = skn.NearestNeighbors(n_neighbors=5, radius=0.8, metric=metric, algorithm="brute")
    theirs.fit(X)
    assert ours._fit_method == "brute" and sp.issparse(ours._fit_X)
    D_ref, I_ref = theirs.kneighbors(Q)
    for q in (Qs, Q):
        with config_context(working_memory=0.001):  # many blocks
            D, I = ours.kneighbors(q)
        _assert_same(D, I, D_ref, I_ref, exact, np.float32)
    D0, _ = ours.kneighbors()
    np.testing.assert_allclose(D0, theirs.kneighbors()[0], rtol=1e-6, atol=1e-6)
    rd, ri = ours.radius_neighbors(Qs, sort_results=True)
    _, ri_ref = theirs.radius_neighbors(Q, sort_results=True)
    for i in range(len(Q)):
        near = np.abs(exact[i] - 0.8) <= 1e-9
        assert set(ri[i].tolist()) ^ set(ri_ref[i].tolist()) <= set(np.nonzero(near)[0].tolist())
    g = ours.radius_neighbors_graph(mode="distance")
    assert g.shape == (80, 80)


def test_large_sparse_queries_on_dense_fit_and_refused_metrics(tiny_dense_limit):
    rng = np.random.RandomState(SEED)
    X, Q = _sparse_data(rng)
    # dense fit, large sparse queries: densified one block of rows at a time (brute force);
    # the trees refuse sparse queries with scikit-learn's ValueError
    tree = NearestNeighbors(n_neighbors=4, algorithm="kd_tree").fit(X)
    for query in (tree.kneighbors, tree.radius_neighbors):
        with pytest.raises(ValueError, match="kd_tree does not work with sparse matrices"):
            query(sp.csr_matrix(Q))
    for algorithm in ("brute",):
        ours = NearestNeighbors(n_neighbors=4, algorithm=algorithm).fit(X)
        with config_context(working_memory=0.0005):
            D, I = ours.kneighbors(sp.csr_matrix(Q))
            lims, _, _ = ours.radius_neighbors(sp.csr_matrix(Q), 1.0, return_csr=True)
        D_ref, I_ref = ours.kneighbors(Q)
        np.testing.assert_array_equal(I, I_ref)
        np.testing.assert_array_equal(D, D_ref)
        np.testing.assert_array_equal(lims, ours.radius_neighbors(Q, 1.0, return_csr=True)[0])
    # a metric computed on dense rows only: refused with the MAX_DENSE_BYTES message
    with pytest.raises(ValueError, match=re.escape("MAX_DENSE_BYTES")):
        NearestNeighbors(metric="chebyshev").fit(sp.csr_matrix(X))
    # below the limit, every metric works (densified)
    base_module.MAX_DENSE_BYTES = 2**30
    nn = NearestNeighbors(n_neighbors=2, metric="chebyshev").fit(sp.csr_matrix(X))
    assert not sp.issparse(nn._fit_X)


# -- KernelDensity on the trees ----------------------------------------------------------------


def test_kernel_density_uses_the_tree_with_tolerances():
    rng = np.random.RandomState(SEED)
    X, Q = rng.rand(500, 2), rng.rand(30, 2)
    for algorithm, cls in (("auto", KDTree), ("kd_tree", KDTree), ("ball_tree", BallTree)):
        for atol, rtol in ((0.0, 0.0), (1e-3, 0.0), (0.0, 1e-2)):
            ours = KernelDensity(bandwidth=0.2, algorithm=algorithm, atol=atol, rtol=rtol).fit(X)
            assert isinstance(ours.tree_, cls)
            theirs = skn.KernelDensity(bandwidth=0.2, algorithm=algorithm).fit(X)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                exact = np.exp(theirs.score_samples(Q))
            got = np.exp(ours.score_samples(Q))
            assert np.all(np.abs(got - exact) <= 2 * (atol + rtol * exact) + 1e-12 * exact)
    # metrics outside the minkowski family: exact sums on the native engine
    kde = KernelDensity(bandwidth=0.5, metric="braycurtis").fit(X)
    assert kde._index is not None
    ref = skn.KernelDensity(bandwidth=0.5, metric="braycurtis").fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        np.testing.assert_allclose(kde.score_samples(Q), ref.score_samples(Q), rtol=1e-11)
