"""knnkit.neighbors against scikit-learn, side by side: same neighbours, same votes, same errors.

Reference: scikit-learn with ``algorithm="brute"`` on the same data. Neighbours at equal distance
may be ordered differently by the two engines, so indices are compared "up to ties": where they
differ, the exact float64 distances (``pairwise_distances``) of the two neighbours must agree.
Votes are compared on the queries whose neighbour sets agree.
"""

from __future__ import annotations

import pickle
import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn.neighbors as skn
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.spatial.distance import cdist
from sklearn import config_context
from sklearn.base import clone
from sklearn.datasets import load_iris
from sklearn.exceptions import DataConversionWarning, EfficiencyWarning, NotFittedError
from sklearn.metrics import DistanceMetric, pairwise_distances
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.extmath import weighted_mode

from knnkit.neighbors import KNeighborsClassifier, KNeighborsRegressor, NearestNeighbors
from knnkit.neighbors._classification import _vote
from knnkit.neighbors._search import topk_rows

SEED = 0
N_FEATURES = 4
_RNG = np.random.RandomState(SEED)
_A = _RNG.randn(N_FEATURES, N_FEATURES)
#: A fixed, well-conditioned inverse covariance for mahalanobis; variances for seuclidean.
VI = _A @ _A.T + N_FEATURES * np.eye(N_FEATURES)
V = np.array([0.5, 2.0, 1.0, 3.0])
W = np.array([1.0, 0.5, 2.0, 0.0])


def l1_callable(a, b):
    """A user metric (module level so that fitted estimators pickle)."""
    return float(np.abs(a - b).sum())


#: name -> (estimator keyword arguments, scipy ``cdist`` arguments for exact float64 distances).
METRICS = {
    "euclidean": ({"metric": "euclidean"}, {"metric": "euclidean"}),
    "minkowski_p2_default": ({}, {"metric": "euclidean"}),
    "sqeuclidean": ({"metric": "sqeuclidean"}, {"metric": "sqeuclidean"}),
    "manhattan": ({"metric": "manhattan"}, {"metric": "cityblock"}),
    "chebyshev": ({"metric": "chebyshev"}, {"metric": "chebyshev"}),
    "minkowski_p3": ({"metric": "minkowski", "p": 3}, {"metric": "minkowski", "p": 3}),
    "minkowski_p3_w": (
        {"metric": "minkowski", "p": 3, "metric_params": {"w": W}},
        {"metric": "minkowski", "p": 3, "w": W},
    ),
    "cosine": ({"metric": "cosine"}, {"metric": "cosine"}),
    "hamming": ({"metric": "hamming"}, {"metric": "hamming"}),
    "mahalanobis": (
        {"metric": "mahalanobis", "metric_params": {"VI": VI}},
        {"metric": "mahalanobis", "VI": VI},
    ),
    "seuclidean": (
        {"metric": "seuclidean", "metric_params": {"V": V}},
        {"metric": "seuclidean", "V": V},
    ),
    # DistanceMetric's braycurtis (what scikit-learn uses) differs from scipy's on negative data
    "braycurtis": ({"metric": "braycurtis"}, {"metric": DistanceMetric.get_metric("braycurtis")}),
    "callable": ({"metric": l1_callable}, {"metric": "cityblock"}),
}

SHAPES = ["random", "n1", "duplicates", "constant_columns"]


def make_data(shape: str, metric: str, rng: np.random.RandomState):
    """Training rows, query rows (some equal to training rows), class and regression targets."""
    n = 1 if shape == "n1" else 30
    X = rng.rand(n, N_FEATURES) * 2 - 0.5
    if shape == "duplicates":
        X[10:20] = X[:10]  # every row of 0..19 has one duplicate
        X[25:30] = X[20]  # and a group of 6 identical rows
    if shape == "constant_columns":
        X[:, 1] = 0.7
        X[:, 3] = -1.0
    if metric == "hamming":
        X = (X > 0.5).astype(np.float64)
    Q = rng.rand(8, N_FEATURES) * 2 - 0.5
    if shape == "constant_columns":
        Q[:, 1] = 0.7
    if metric == "hamming":
        Q = (Q > 0.5).astype(np.float64)
    Q = np.vstack([Q, X[: min(4, n)]])
    y_class = rng.randint(0, 3, size=n)
    y_reg = rng.randn(n)
    return X, Q, y_class, y_reg


def sk(kwargs):
    """A copy for scikit-learn, whose predict_proba writes "p" into the caller's metric_params."""
    if "metric_params" in kwargs:
        return {**kwargs, "metric_params": dict(kwargs["metric_params"])}
    return kwargs


def tolerances(dtype):
    return (1e-5, 1e-6) if dtype == np.float32 else (1e-10, 1e-12)


def reference(Q, X, ref_kwargs, dtype):
    """Exact float64 distances of the (dtype-rounded) data (scipy's direct formulas)."""
    Q, X = Q.astype(dtype).astype(np.float64), X.astype(dtype).astype(np.float64)
    if isinstance(ref_kwargs["metric"], DistanceMetric):
        return ref_kwargs["metric"].pairwise(Q, X)
    return cdist(Q, X, **ref_kwargs)


def assert_same_neighbours(D, I, D_ref, I_ref, exact, dtype):
    """Distances close; indices equal, or different neighbours at the same exact distance."""
    rtol, atol = tolerances(dtype)
    assert D.shape == D_ref.shape and I.shape == I_ref.shape
    np.testing.assert_allclose(D, D_ref, rtol=rtol, atol=atol)
    diff = I != I_ref
    if diff.any():
        rows = np.nonzero(diff)[0]
        np.testing.assert_allclose(
            exact[rows, I[diff]], exact[rows, I_ref[diff]], rtol=rtol, atol=atol
        )


def same_sets(I, I_ref):
    """Rows whose neighbour sets agree (votes must then agree too)."""
    return np.all(np.sort(I, axis=1) == np.sort(I_ref, axis=1), axis=1)


# -- side by side over the grid ----------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("metric", list(METRICS))
def test_matches_sklearn(metric, shape, dtype):
    kwargs, ref_kwargs = METRICS[metric]
    rng = np.random.RandomState(SEED)
    X, Q, y_class, y_reg = make_data(shape, metric, rng)
    X, Q = X.astype(dtype), Q.astype(dtype)
    n = X.shape[0]
    exact_q = reference(Q, X, ref_kwargs, dtype)
    exact_x = reference(X, X, ref_kwargs, dtype)
    rtol, atol = tolerances(dtype)

    for k in sorted({1, 3, n}):
        ours = NearestNeighbors(n_neighbors=k, **kwargs).fit(X)
        theirs = skn.NearestNeighbors(n_neighbors=k, algorithm="brute", **sk(kwargs)).fit(X)
        assert ours.effective_metric_ == theirs.effective_metric_
        assert ours.effective_metric_params_.keys() == theirs.effective_metric_params_.keys()
        auto = skn.NearestNeighbors(n_neighbors=k, **sk(kwargs)).fit(X)
        assert ours._fit_method == auto._fit_method and ours.n_samples_fit_ == n

        if k > n:
            with pytest.raises(ValueError) as ours_err:
                ours.kneighbors(Q)
            with pytest.raises(ValueError) as their_err:
                theirs.kneighbors(Q)
            assert str(ours_err.value) == str(their_err.value)
            continue

        D, I = ours.kneighbors(Q)
        assert D.dtype == dtype and I.dtype == np.int64
        D_ref, I_ref = theirs.kneighbors(Q)
        assert_same_neighbours(D, I, D_ref, I_ref, exact_q, dtype)
        # our distances are the exact ones for the returned indices
        np.testing.assert_allclose(D, np.take_along_axis(exact_q, I, axis=1), rtol=rtol, atol=atol)

        # X=None: each sample left out of its own list (k <= n - 1)
        if k < n:
            D0, I0 = ours.kneighbors()
            D0_ref, I0_ref = theirs.kneighbors()
            assert_same_neighbours(D0, I0, D0_ref, I0_ref, exact_x, dtype)
            if shape == "random":
                assert not np.any(I0 == np.arange(n)[:, None])

        # radius: same sets, same distances (boundary ties excepted)
        radius = float(np.median(D_ref)) + 1e-3
        rd, ri = ours.radius_neighbors(Q, radius=radius, sort_results=True)
        rd_ref, ri_ref = theirs.radius_neighbors(Q, radius=radius, sort_results=True)
        for i in range(len(Q)):
            assert set(ri[i].tolist()) == set(ri_ref[i].tolist())
            np.testing.assert_allclose(rd[i], np.sort(exact_q[i, ri[i]]), rtol=rtol, atol=atol)
            assert np.all(np.diff(rd[i]) >= 0)

        for weights in ("uniform", "distance"):
            clf = KNeighborsClassifier(k, weights=weights, **kwargs).fit(X, y_class)
            clf_ref = skn.KNeighborsClassifier(
                k, weights=weights, algorithm="brute", **sk(kwargs)
            ).fit(X, y_class)
            reg = KNeighborsRegressor(k, weights=weights, **kwargs).fit(X, y_reg)
            reg_ref = skn.KNeighborsRegressor(
                k, weights=weights, algorithm="brute", **sk(kwargs)
            ).fit(X, y_reg)
            agree = same_sets(I, I_ref)
            # 0/1 data ties everywhere; elsewhere most neighbour sets must agree
            assert agree.sum() >= (1 if metric == "hamming" else len(Q) // 2), "too few to compare"
            if weights == "distance":
                # the zero-distance rule needs exact zeros, which scikit-learn's expanded
                # formulas can miss by ~1e-16 (float64) or ~1e-6 (float32) for duplicates
                agree &= np.all((D == 0) == (D_ref == 0), axis=1)
            np.testing.assert_array_equal(clf.predict(Q)[agree], clf_ref.predict(Q)[agree])
            np.testing.assert_allclose(
                clf.predict_proba(Q)[agree],
                clf_ref.predict_proba(Q)[agree],
                rtol=rtol,
                # scikit-learn's float32 distances to duplicates are ~1e-6, not 0
                atol=1e-4 if dtype == np.float32 else 1e-9,
            )
            np.testing.assert_allclose(
                reg.predict(Q)[agree],
                reg_ref.predict(Q)[agree],
                rtol=1e-4 if dtype == np.float32 else rtol,  # float32 1/d weights
                atol=1e-6,
            )


# -- voting exactness --------------------------------------------------------------------------


def test_uniform_vote_tie_smallest_class_wins():
    X = np.array([[0.0], [1.0], [10.0], [11.0]])
    y = np.array(["b", "a", "c", "a"])
    Q = np.array([[0.4], [10.4], [5.5]])
    for k in (2, 4):
        ours = KNeighborsClassifier(k).fit(X, y)
        theirs = skn.KNeighborsClassifier(k, algorithm="brute").fit(X, y)
        np.testing.assert_array_equal(ours.predict(Q), theirs.predict(Q))
        np.testing.assert_array_equal(ours.predict_proba(Q), theirs.predict_proba(Q))
    assert KNeighborsClassifier(2).fit(X, y).predict([[0.4]])[0] == "a"


def test_distance_vote_exact_ties_and_zero_distance():
    # Query 1.5 is equidistant to 1 and 2: weights 2 and 2, a tie that the smaller class wins.
    X = np.array([[1.0], [2.0], [5.0], [5.0]])
    y = np.array([1, 0, 1, 2])
    Q = np.array([[1.5], [5.0], [2.0]])
    ours = KNeighborsClassifier(2, weights="distance").fit(X, y)
    theirs = skn.KNeighborsClassifier(2, weights="distance", algorithm="brute").fit(X, y)
    np.testing.assert_array_equal(ours.predict(Q), theirs.predict(Q))
    np.testing.assert_array_equal(ours.predict_proba(Q), theirs.predict_proba(Q))
    # at distance 0 only the zero-distance neighbours count
    np.testing.assert_array_equal(ours.predict_proba([[5.0]]), [[0.0, 0.5, 0.5]])
    reg = KNeighborsRegressor(3, weights="distance").fit(X, y.astype(float))
    assert reg.predict([[2.0]])[0] == 0.0


def test_predict_proba_bit_identical():
    rng = np.random.RandomState(SEED)
    X, Q = rng.randn(300, 6), rng.randn(100, 6)
    y = rng.randint(0, 5, 300)
    for weights in ("uniform", "distance", lambda d: np.exp(-d)):
        ours = KNeighborsClassifier(7, weights=weights).fit(X, y)
        theirs = skn.KNeighborsClassifier(7, weights=weights, algorithm="brute").fit(X, y)
        agree = same_sets(ours.kneighbors(Q)[1], theirs.kneighbors(Q)[1])
        assert agree.all()
        np.testing.assert_allclose(ours.predict_proba(Q), theirs.predict_proba(Q), rtol=1e-12)
        np.testing.assert_array_equal(ours.predict(Q), theirs.predict(Q))


@settings(max_examples=60, deadline=None)
@given(
    labels=hnp.arrays(np.intp, (20, 9), elements=st.integers(0, 3)),
    weights=hnp.arrays(np.float64, (20, 9), elements=st.sampled_from([0.1, 0.2, 0.3, 0.7, 1.0])),
)
def test_weighted_vote_matches_weighted_mode(labels, weights):
    """Near-ties from summation order resolve exactly as sklearn's weighted_mode."""
    expected = weighted_mode(labels, weights, axis=1)[0].ravel().astype(np.intp)
    np.testing.assert_array_equal(_vote(labels, weights, 4), expected)
    expected_uniform = weighted_mode(labels, np.ones_like(weights), axis=1)[0].ravel()
    np.testing.assert_array_equal(_vote(labels, None, 4), expected_uniform.astype(np.intp))


@settings(max_examples=60, deadline=None)
@given(
    D=hnp.arrays(np.float64, (5, 12), elements=st.sampled_from([0.0, 1.0, 1.5, 2.0, np.inf])),
    k=st.integers(1, 12),
)
def test_topk_rows_is_a_stable_sort(D, k):
    dist, idx = topk_rows(D, k)
    order = np.argsort(D, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(idx, order)
    np.testing.assert_array_equal(dist, np.take_along_axis(D, order, axis=1))


# -- X=None, duplicates, graphs, radius --------------------------------------------------------


def test_self_exclusion_with_more_duplicates_than_neighbours():
    X = np.array([[0.0], [0.0], [0.0], [5.0]])
    ours = NearestNeighbors(n_neighbors=1).fit(X)
    theirs = skn.NearestNeighbors(n_neighbors=1, algorithm="brute").fit(X)
    D, I = ours.kneighbors()
    # sample 2's two nearest are 0 and 1 (ties by index): it is not in its list, drop the first
    np.testing.assert_array_equal(I.ravel(), [1, 0, 1, 0])
    np.testing.assert_array_equal(D.ravel(), [0, 0, 0, 5])
    np.testing.assert_array_equal(D, theirs.kneighbors()[0])
    rd, ri = ours.radius_neighbors(radius=0.1)
    assert [r.tolist() for r in ri] == [[1, 2], [0, 2], [0, 1], []]
    assert all(r.dtype == np.float64 for r in rd)


def test_graphs_match_sklearn():
    rng = np.random.RandomState(SEED)
    X, Q = rng.rand(40, 3), rng.rand(10, 3)
    ours = NearestNeighbors(n_neighbors=4, radius=0.3).fit(X)
    theirs = skn.NearestNeighbors(n_neighbors=4, radius=0.3, algorithm="brute").fit(X)
    for A in (None, Q):
        for mode in ("connectivity", "distance"):
            g = ours.kneighbors_graph(A, mode=mode)
            g_ref = theirs.kneighbors_graph(A, mode=mode)
            assert sp.issparse(g) and g.format == "csr" and g.shape == g_ref.shape
            np.testing.assert_allclose(g.toarray(), g_ref.toarray(), rtol=1e-12)
            g = ours.radius_neighbors_graph(A, mode=mode, sort_results=mode == "distance")
            g_ref = theirs.radius_neighbors_graph(A, mode=mode)
            np.testing.assert_allclose(g.toarray(), g_ref.toarray(), rtol=1e-12)
    with pytest.raises(ValueError, match="Unsupported mode"):
        ours.kneighbors_graph(Q, mode="bogus")
    with pytest.raises(ValueError, match="Unsupported mode"):
        ours.radius_neighbors_graph(Q, mode="bogus")


def test_radius_neighbors_details():
    rng = np.random.RandomState(SEED)
    X, Q = rng.rand(50, 3), rng.rand(6, 3)
    nn = NearestNeighbors(radius=0.4).fit(X)
    # unsorted: index order; sorted: by distance
    rd, ri = nn.radius_neighbors(Q)
    for i in ri:
        assert np.all(np.diff(i) > 0)
    rd, ri = nn.radius_neighbors(Q, sort_results=True)
    for d in rd:
        assert np.all(np.diff(d) >= 0)
    # one radius per query
    radii = np.linspace(0.1, 0.5, 6)
    ri = nn.radius_neighbors(Q, radius=radii, return_distance=False)
    exact = pairwise_distances(Q, X)
    for q in range(6):
        assert set(ri[q].tolist()) == set(np.nonzero(exact[q] <= radii[q])[0].tolist())
    # infinite radius: everything
    assert all(len(i) == 50 for i in nn.radius_neighbors(Q, np.inf, return_distance=False))
    with pytest.raises(ValueError, match="return_distance must be True"):
        nn.radius_neighbors(Q, return_distance=False, sort_results=True)
    with pytest.raises(ValueError, match=re.escape("radius == -1.0, must be >= 0.")):
        nn.radius_neighbors(Q, radius=-1)
    with pytest.raises(ValueError, match="one radius per query"):
        nn.radius_neighbors(Q, radius=[0.1, 0.2])


# -- targets ------------------------------------------------------------------------------------


def test_string_labels_and_multi_output():
    rng = np.random.RandomState(SEED)
    X, Q = rng.rand(60, 3), rng.rand(15, 3)
    y = np.array(["cat", "dog", "emu"])[rng.randint(0, 3, 60)]
    Y = np.column_stack([y, rng.randint(0, 4, 60).astype(str)])
    for target in (y, Y):
        for weights in ("uniform", "distance"):
            ours = KNeighborsClassifier(5, weights=weights).fit(X, target)
            theirs = skn.KNeighborsClassifier(5, weights=weights, algorithm="brute").fit(X, target)
            np.testing.assert_array_equal(ours.predict(Q), theirs.predict(Q))
            p, p_ref = ours.predict_proba(Q), theirs.predict_proba(Q)
            if not isinstance(p, list):
                p, p_ref = [p], [p_ref]
            for a, b in zip(p, p_ref, strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-12)
            assert ours.outputs_2d_ == theirs.outputs_2d_
            ours_classes = ours.classes_ if ours.outputs_2d_ else [ours.classes_]
            their_classes = theirs.classes_ if theirs.outputs_2d_ else [theirs.classes_]
            for a, b in zip(ours_classes, their_classes, strict=True):
                np.testing.assert_array_equal(a, b)
            if target.ndim == 1:
                assert ours.score(Q, ours.predict(Q)) == 1.0
    Yr = rng.randn(60, 2)
    for weights in ("uniform", "distance"):
        ours = KNeighborsRegressor(4, weights=weights).fit(X, Yr)
        theirs = skn.KNeighborsRegressor(4, weights=weights, algorithm="brute").fit(X, Yr)
        np.testing.assert_allclose(ours.predict(Q), theirs.predict(Q), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(ours.predict(None), theirs.predict(None), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(ours.score(Q, Yr[:15]), theirs.score(Q, Yr[:15]), rtol=1e-12)
    # leave-one-out via X=None
    clf = KNeighborsClassifier(3).fit(X, y)
    ref = skn.KNeighborsClassifier(3, algorithm="brute").fit(X, y)
    assert clf.score(None, y) == ref.score(None, y)


def test_column_vector_y_warns_like_sklearn():
    X, y = np.random.RandomState(SEED).rand(10, 2), np.arange(10).reshape(-1, 1) % 2
    with pytest.warns(DataConversionWarning, match="column-vector y"):
        clf = KNeighborsClassifier(3).fit(X, y)
    assert clf.outputs_2d_ is False and clf.predict(X).shape == (10,)


# -- dtypes, sparse, precomputed, other metric paths ----------------------------------------------


def test_dtypes():
    rng = np.random.RandomState(SEED)
    X = rng.rand(20, 3)
    for dtype, expected in (
        (np.float32, np.float32),
        (np.float64, np.float64),
        (np.int64, np.float64),
        (np.bool_, np.float64),
        (np.float16, np.float32),
    ):
        Xd = (X * 10).astype(dtype) if dtype != np.bool_ else X > 0.5
        nn = NearestNeighbors(n_neighbors=3).fit(Xd)
        D, I = nn.kneighbors(Xd[:5])
        assert D.dtype == expected and I.dtype == np.int64
        D_ref, _ = skn.NearestNeighbors(n_neighbors=3, algorithm="brute").fit(Xd).kneighbors(Xd[:5])
        rtol = 1e-3 if expected == np.float32 else 1e-10
        np.testing.assert_allclose(D, D_ref, rtol=rtol, atol=1e-6)
        rd, _ = nn.radius_neighbors(Xd[:5], radius=5.0)
        assert rd[0].dtype == expected
    # float32 fit, float64 queries: computed in the fitted dtype
    nn = NearestNeighbors(n_neighbors=2).fit(X.astype(np.float32))
    assert nn.kneighbors(X[:3])[0].dtype == np.float32
    assert nn._fit_X.dtype == np.float32


def test_sparse_input_is_densified():
    rng = np.random.RandomState(SEED)
    X = rng.rand(30, 5)
    X[X < 0.6] = 0
    y = rng.randint(0, 2, 30)
    dense = KNeighborsClassifier(4, weights="distance").fit(X, y)
    for fmt in (sp.csr_matrix, sp.csr_array, sp.coo_matrix, sp.csc_array):
        sparse = KNeighborsClassifier(4, weights="distance").fit(fmt(X), y)
        np.testing.assert_array_equal(sparse.kneighbors(fmt(X))[1], dense.kneighbors(X)[1])
        np.testing.assert_allclose(sparse.predict_proba(fmt(X)), dense.predict_proba(X))
    # every metric accepts sparse input here (scikit-learn allows only a few)
    nn = NearestNeighbors(n_neighbors=2, metric="chebyshev").fit(sp.csr_matrix(X))
    assert nn.kneighbors(X[:2])[1].shape == (2, 2)


def test_precomputed_dense():
    rng = np.random.RandomState(SEED)
    X, Q = rng.rand(25, 3), rng.rand(7, 3)
    y = rng.randint(0, 3, 25)
    DX, DQ = pairwise_distances(X), pairwise_distances(Q, X)
    pre = KNeighborsClassifier(4, metric="precomputed", weights="distance").fit(DX, y)
    direct = KNeighborsClassifier(4, weights="distance").fit(X, y)
    ref = skn.KNeighborsClassifier(4, metric="precomputed", weights="distance").fit(DX, y)
    np.testing.assert_array_equal(pre.kneighbors(DQ)[1], direct.kneighbors(Q)[1])
    np.testing.assert_array_equal(pre.kneighbors()[1], ref.kneighbors()[1])
    np.testing.assert_allclose(pre.predict_proba(DQ), ref.predict_proba(DQ), rtol=1e-12)
    assert pre.__sklearn_tags__().input_tags.pairwise
    nn = NearestNeighbors(radius=0.3, metric="precomputed").fit(DX)
    nn_ref = skn.NearestNeighbors(radius=0.3, metric="precomputed").fit(DX)
    for a, b in zip(nn.radius_neighbors(DQ)[1], nn_ref.radius_neighbors(DQ)[1], strict=True):
        assert set(a.tolist()) == set(b.tolist())
    with pytest.raises(ValueError, match="must be square"):
        NearestNeighbors(metric="precomputed").fit(DQ)
    with pytest.raises(ValueError, match=re.escape("requires shape (n_queries, n_indexed)")):
        pre.kneighbors(DQ[:, :5])
    # a sparse query is a distance graph: its stored entries are the candidates (all here)
    with pytest.warns(EfficiencyWarning, match="not sorted by row values"):
        I_graph = pre.kneighbors(sp.csr_matrix(DQ))[1]
    np.testing.assert_array_equal(I_graph, ref.kneighbors(DQ)[1])
    with pytest.raises(ValueError, match="Negative values"):
        NearestNeighbors(metric="precomputed").fit(-DX)


def test_slow_path_blocks_and_objects():
    """Tiny working_memory: one query row per block; results unchanged."""
    rng = np.random.RandomState(SEED)
    X, Q = rng.rand(80, 3), rng.rand(9, 3)
    for kwargs in (
        {"metric": "canberra"},
        {"metric": "correlation"},
        {"metric": DistanceMetric.get_metric("manhattan")},
        {"metric": "pyfunc", "metric_params": {"func": l1_callable}},
    ):
        ours = NearestNeighbors(n_neighbors=5, radius=0.6, **kwargs).fit(X)
        D, I = ours.kneighbors(Q)
        with config_context(working_memory=0.001):
            D1, I1 = ours.kneighbors(Q)
            R1 = ours.radius_neighbors(Q, sort_results=True)
        np.testing.assert_array_equal(I, I1)
        np.testing.assert_array_equal(D, D1)
        R = ours.radius_neighbors(Q, sort_results=True)
        for a, b in zip(R[1], R1[1], strict=True):
            np.testing.assert_array_equal(a, b)
        if kwargs["metric"] != "pyfunc":
            theirs = skn.NearestNeighbors(n_neighbors=5, algorithm="brute", **kwargs)
            D_ref, I_ref = theirs.fit(X).kneighbors(Q)
            np.testing.assert_allclose(D, D_ref, rtol=1e-10)
            np.testing.assert_array_equal(I, I_ref)


def test_minkowski_p_below_one_warns_like_sklearn():
    rng = np.random.RandomState(SEED)
    X = rng.rand(20, 3)
    with pytest.warns(UserWarning, match="0 < p < 1"):
        ours = NearestNeighbors(n_neighbors=3, p=0.5).fit(X)
    with pytest.warns(UserWarning, match="0 < p < 1"):
        theirs = skn.NearestNeighbors(n_neighbors=3, p=0.5, algorithm="brute").fit(X)
    np.testing.assert_allclose(ours.kneighbors(X)[0], theirs.kneighbors(X)[0], rtol=1e-10)
    with pytest.raises(ValueError, match="does not support 0 < p < 1"):
        NearestNeighbors(p=0.5, algorithm="kd_tree").fit(X)


def test_metric_params_p_warns_like_sklearn():
    X = np.random.RandomState(SEED).rand(10, 2)
    with pytest.warns(SyntaxWarning, match="Parameter p is found in metric_params"):
        nn = NearestNeighbors(n_neighbors=2, metric_params={"p": 1}).fit(X)
    assert nn.effective_metric_ == "manhattan"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nn = NearestNeighbors(n_neighbors=2, p=None, metric_params={"p": 3}).fit(X)
    assert nn.effective_metric_ == "minkowski" and nn.effective_metric_params_["p"] == 3


def test_nan_euclidean_accepts_nan():
    X = np.array([[0.0, np.nan], [1.0, 1.0], [np.nan, 2.0], [3.0, 3.0]])
    ours = NearestNeighbors(n_neighbors=2, metric="nan_euclidean").fit(X)
    theirs = skn.NearestNeighbors(n_neighbors=2, metric="nan_euclidean").fit(X)
    np.testing.assert_allclose(ours.kneighbors(X)[0], theirs.kneighbors(X)[0])
    assert ours.__sklearn_tags__().input_tags.allow_nan


def test_n_jobs_does_not_change_results():
    rng = np.random.RandomState(SEED)
    X, Q = rng.rand(500, 8).astype(np.float32), rng.rand(64, 8).astype(np.float32)
    a = NearestNeighbors(n_neighbors=6, n_jobs=1).fit(X).kneighbors(Q)
    b = NearestNeighbors(n_neighbors=6, n_jobs=-1).fit(X).kneighbors(Q)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


# -- bad input ----------------------------------------------------------------------------------


ESTIMATORS = [
    lambda **kw: NearestNeighbors(**kw),
    lambda **kw: KNeighborsClassifier(**kw),
    lambda **kw: KNeighborsRegressor(**kw),
]


def _fit(est, X, y=None):
    return est.fit(X, np.arange(len(X)) % 2 if y is None else y)


@pytest.mark.parametrize("make", ESTIMATORS, ids=["nn", "clf", "reg"])
def test_bad_input_raises_clear_errors(make):
    rng = np.random.RandomState(SEED)
    X = rng.rand(10, 3)
    est = _fit(make(n_neighbors=3), X)
    for bad in (np.nan, np.inf, -np.inf):
        Xb = X.copy()
        Xb[2, 1] = bad
        with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
            _fit(make(), Xb)
        with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
            est.kneighbors(Xb)
    with pytest.raises(ValueError, match="0 sample"):
        _fit(make(), np.empty((0, 3)), np.empty(0))
    with pytest.raises(ValueError, match="0 feature"):
        _fit(make(), np.empty((10, 0)))
    with pytest.raises(ValueError, match="Expected 2D array"):
        _fit(make(), np.arange(10.0))
    with pytest.raises(ValueError, match="Expected 2D array"):
        est.kneighbors(np.arange(3.0))
    with pytest.raises(ValueError, match="X has 4 features, but .* is expecting 3 features"):
        est.kneighbors(rng.rand(2, 4))
    with pytest.raises(ValueError, match="Complex data not supported"):
        _fit(make(), X + 1j)
    with pytest.raises(ValueError, match="could not convert|Unable to convert"):
        _fit(make(), np.array([["a", "b", "c"]] * 10, dtype=object))
    with pytest.raises(ValueError, match="n_neighbors"):
        _fit(make(n_neighbors=0), X)
    with pytest.raises(ValueError, match="Expected n_neighbors > 0. Got 0"):
        est.kneighbors(X, n_neighbors=0)
    with pytest.raises(TypeError, match="n_neighbors does not take"):
        est.kneighbors(X, n_neighbors=2.5)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Expected n_neighbors <= n_samples_fit, but n_neighbors = 11, "
            "n_samples_fit = 10, n_samples = 10"
        ),
    ):
        est.kneighbors(X, n_neighbors=11)
    with pytest.raises(ValueError, match="n_neighbors < n_samples_fit"):
        est.kneighbors(None, n_neighbors=10)
    with pytest.raises(ValueError, match="'metric' parameter"):
        _fit(make(metric="bogus"), X)
    with pytest.raises(ValueError, match="'cuda:99' is not available"):
        _fit(make(device="cuda:99"), X)
    with pytest.raises(ValueError, match="torch backend runs the exact brute-force search"):
        _fit(make(device="cpu", algorithm="kd_tree"), X)
    with pytest.raises(ValueError, match="algo_params"):
        _fit(make(algo_params={"m": 16}), X)
    with pytest.raises(NotFittedError):
        make().kneighbors(X)
    # the same messages as scikit-learn for algorithm/metric combinations
    with pytest.raises(ValueError, match=re.escape("Metric 'cosine' not valid")):
        _fit(make(algorithm="kd_tree", metric="cosine"), X)
    with pytest.raises(ValueError, match="kd_tree does not support callable metric"):
        _fit(make(algorithm="kd_tree", metric=l1_callable), X)
    with pytest.raises(ValueError, match="algorithm='kd_tree' is not valid for metric='minkowski'"):
        _fit(make(algorithm="kd_tree", p=3, metric_params={"w": np.ones(3)}), X)


def test_bad_metric_parameters():
    X = np.random.RandomState(SEED).rand(10, 3)
    cases = [
        ({"metric": "seuclidean"}, "needs the per-feature variances"),
        ({"metric": "seuclidean", "metric_params": {"V": [1, 2]}}, "shape"),
        ({"metric": "seuclidean", "metric_params": {"V": [1, 0, 2]}}, "must be > 0"),
        ({"metric": "mahalanobis"}, "needs metric_params"),
        ({"metric": "mahalanobis", "metric_params": {"VI": np.eye(2)}}, "shape"),
        ({"metric": "minkowski", "p": 3, "metric_params": {"w": [1, -1, 1]}}, "negative"),
        ({"metric": "minkowski", "p": 3, "metric_params": {"w": [1, 1]}}, "shape"),
        ({"metric": "minkowski", "p": np.inf, "metric_params": {"w": [1, 1, 1]}}, "finite p"),
        ({"metric": "pyfunc"}, "func"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            NearestNeighbors(**kwargs).fit(X)
    nn = NearestNeighbors(radius=-1.0)
    with pytest.raises(ValueError, match="'radius' parameter"):
        nn.fit(X)
    with pytest.raises(ValueError, match="radius is None"):
        NearestNeighbors(radius=None).fit(X).radius_neighbors(X)


def test_mahalanobis_from_covariance():
    rng = np.random.RandomState(SEED)
    X = rng.rand(30, 4)
    a = NearestNeighbors(
        n_neighbors=4, metric="mahalanobis", metric_params={"V": np.linalg.inv(VI)}
    )
    b = NearestNeighbors(n_neighbors=4, metric="mahalanobis", metric_params={"VI": VI})
    np.testing.assert_allclose(a.fit(X).kneighbors(X)[0], b.fit(X).kneighbors(X)[0], rtol=1e-8)
    # a singular (semi-definite) VI still works, through the eigen-decomposition
    VI_singular = np.diag([1.0, 2.0, 0.0, 1.0])
    nn = NearestNeighbors(n_neighbors=3, metric="mahalanobis", metric_params={"VI": VI_singular})
    D = nn.fit(X).kneighbors(X[:4])[0]
    exact = np.sort(pairwise_distances(X[:4], X, metric="mahalanobis", VI=VI_singular), axis=1)
    np.testing.assert_allclose(D, exact[:, :3], rtol=1e-8, atol=1e-12)


# -- pickling, clone, Pipeline, GridSearchCV -------------------------------------------------------


def test_pickle_clone_pipeline_gridsearch():
    X, y = load_iris(return_X_y=True)
    rng = np.random.RandomState(SEED)
    Q = rng.rand(10, 4) * 5
    for est in (
        KNeighborsClassifier(5, weights="distance", metric="manhattan"),
        KNeighborsRegressor(3, metric=l1_callable),
        NearestNeighbors(n_neighbors=4, metric="mahalanobis", metric_params={"VI": VI}),
    ):
        est.fit(X, y)
        restored = pickle.loads(pickle.dumps(est))
        np.testing.assert_array_equal(restored.kneighbors(Q)[1], est.kneighbors(Q)[1])
        if hasattr(est, "predict"):
            np.testing.assert_array_equal(restored.predict(Q), est.predict(Q))
        fresh = clone(est)
        assert fresh.get_params()["metric"] == est.get_params()["metric"]
        assert not hasattr(fresh, "n_samples_fit_")

    pipe = make_pipeline(StandardScaler(), KNeighborsClassifier(7)).fit(X, y)
    ref = make_pipeline(StandardScaler(), skn.KNeighborsClassifier(7)).fit(X, y)
    np.testing.assert_array_equal(pipe.predict(X), ref.predict(X))

    grid = {"n_neighbors": [1, 5, 15], "weights": ["uniform", "distance"]}
    ours = GridSearchCV(KNeighborsClassifier(), grid, cv=3).fit(X, y)
    theirs = GridSearchCV(skn.KNeighborsClassifier(), grid, cv=3).fit(X, y)
    assert ours.best_params_ == theirs.best_params_
    np.testing.assert_allclose(
        ours.cv_results_["mean_test_score"], theirs.cv_results_["mean_test_score"]
    )


def test_signatures_match_sklearn():
    import inspect

    for ours, theirs in (
        (NearestNeighbors, skn.NearestNeighbors),
        (KNeighborsClassifier, skn.KNeighborsClassifier),
        (KNeighborsRegressor, skn.KNeighborsRegressor),
    ):
        a = inspect.signature(ours.__init__).parameters
        b = inspect.signature(theirs.__init__).parameters
        assert list(a)[: len(b)] == list(b)
        assert list(a)[len(b) :] == ["algo_params", "device"]
        for name in b:
            assert a[name].default == b[name].default and a[name].kind == b[name].kind
        assert ours().get_params().keys() == set(theirs().get_params()) | {"algo_params", "device"}
