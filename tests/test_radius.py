"""Radius estimators, neighbour graphs and transformers against scikit-learn, side by side.

Reference: scikit-learn on the same data. For the radius votes scikit-learn's general code path
is the reference (``algorithm="ball_tree"`` where the metric allows it): its ``brute`` path for
uniform votes (``RadiusNeighborsClassMode``) mishandles ``outlier_label`` (see the
``RadiusNeighborsClassifier`` notes). Radii are chosen half way between two consecutive exact
distances, so no pair sits on the boundary, where float32 and float64 may disagree.
"""

from __future__ import annotations

import pickle
import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn.neighbors as skn
from scipy.spatial.distance import cdist
from sklearn import config_context
from sklearn.base import clone
from sklearn.exceptions import EfficiencyWarning
from sklearn.metrics import DistanceMetric
from sklearn.pipeline import make_pipeline
from threadpoolctl import threadpool_limits

from knnkit.neighbors import (
    KNeighborsTransformer,
    NearestNeighbors,
    RadiusNeighborsClassifier,
    RadiusNeighborsRegressor,
    RadiusNeighborsTransformer,
    kneighbors_graph,
    radius_neighbors_graph,
    sort_graph_by_row_values,
)

SEED = 0


@pytest.fixture(autouse=True)
def _sklearn_on_one_openmp_thread():
    """scikit-learn's OpenMP threads spin-wait after each call and, on a small machine, fight
    knnkit's own pool as the two alternate; the reference runs on one thread (same results)."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


N_FEATURES = 4
_RNG = np.random.RandomState(SEED)
_A = _RNG.randn(N_FEATURES, N_FEATURES)
VI = _A @ _A.T + N_FEATURES * np.eye(N_FEATURES)


def l1_callable(a, b):
    """A user metric (module level so that fitted estimators pickle)."""
    return float(np.abs(a - b).sum())


#: name -> (estimator keyword arguments, reference distances for cdist, sklearn algorithm).
METRICS = {
    "euclidean": ({}, {"metric": "euclidean"}, "ball_tree"),
    "manhattan": ({"metric": "manhattan"}, {"metric": "cityblock"}, "ball_tree"),
    "chebyshev": ({"metric": "chebyshev"}, {"metric": "chebyshev"}, "ball_tree"),
    "minkowski_p3": ({"p": 3}, {"metric": "minkowski", "p": 3}, "ball_tree"),
    "cosine": ({"metric": "cosine"}, {"metric": "cosine"}, "brute"),
    "mahalanobis": (
        {"metric": "mahalanobis", "metric_params": {"VI": VI}},
        {"metric": "mahalanobis", "VI": VI},
        "ball_tree",
    ),
    "braycurtis": (
        {"metric": "braycurtis"},
        {"metric": DistanceMetric.get_metric("braycurtis")},
        "ball_tree",
    ),
    "callable": ({"metric": l1_callable}, {"metric": "cityblock"}, "ball_tree"),
}

SHAPES = ["random", "n1", "duplicates"]


def make_data(shape, rng):
    n = 1 if shape == "n1" else 30
    X = rng.rand(n, N_FEATURES) * 2 - 0.5
    if shape == "duplicates":
        X[10:20] = X[:10]
        X[25:30] = X[20]
    Q = np.vstack([rng.rand(8, N_FEATURES) * 2 - 0.5, X[: min(4, n)]])
    return X, Q, rng.randint(0, 3, size=n), rng.randn(n)


def exact(A, B, ref_kwargs):
    if isinstance(ref_kwargs["metric"], DistanceMetric):
        return ref_kwargs["metric"].pairwise(A, B)
    return cdist(A, B, **ref_kwargs)


def safe_radius(D, q):
    """A radius half way between two consecutive distinct distances, near quantile q."""
    values = np.unique(np.round(D.ravel(), 9))
    i = min(int(q * (values.size - 1)), values.size - 2)
    return float((values[i] + values[i + 1]) / 2)


def sk_kwargs(kwargs):
    if "metric_params" in kwargs:
        return {**kwargs, "metric_params": dict(kwargs["metric_params"])}
    return kwargs


def quiet(func, *args):
    """Call a scikit-learn method, hiding its own warnings (checked separately on ours)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return func(*args)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("metric", list(METRICS))
def test_radius_estimators_match_sklearn(metric, shape, dtype):
    kwargs, ref_kwargs, algorithm = METRICS[metric]
    rng = np.random.RandomState(SEED)
    X, Q, y_class, y_reg = make_data(shape, rng)
    X, Q = X.astype(dtype), Q.astype(dtype)
    D = exact(Q.astype(np.float64), X.astype(np.float64), ref_kwargs)
    rtol = 1e-5 if dtype == np.float32 else 1e-10
    atol = 1e-6 if dtype == np.float32 else 1e-12  # float32 1/d weights, averages near 0
    radii = [safe_radius(D, 0.1), safe_radius(D, 0.5)]
    if metric != "cosine":  # scikit-learn's cosine puts a vector ~1e-16 from itself, ours at 0
        radii.insert(0, 0.0)

    for radius in radii:
        for weights in ("uniform", "distance"):
            ours = RadiusNeighborsClassifier(
                radius, weights=weights, outlier_label="most_frequent", **kwargs
            ).fit(X, y_class)
            theirs = skn.RadiusNeighborsClassifier(
                radius,
                weights=weights,
                outlier_label="most_frequent",
                algorithm=algorithm,
                **sk_kwargs(kwargs),
            ).fit(X, y_class)
            assert ours.outlier_label_ == theirs.outlier_label_
            np.testing.assert_array_equal(ours.classes_, theirs.classes_)
            for query in (Q, None):
                # a Fortran-ordered query keeps scikit-learn on its general path
                ref_query = None if query is None else np.asfortranarray(query)
                proba = ours.predict_proba(query)
                np.testing.assert_allclose(
                    proba, theirs.predict_proba(ref_query), rtol=rtol, atol=10 * atol
                )
                np.testing.assert_array_equal(ours.predict(query), theirs.predict(ref_query))
                assert proba.shape == (len(X) if query is None else len(Q), 3 if len(X) > 1 else 1)

            reg = RadiusNeighborsRegressor(radius, weights=weights, **kwargs).fit(X, y_reg)
            reg_ref = skn.RadiusNeighborsRegressor(
                radius, weights=weights, algorithm=algorithm, **sk_kwargs(kwargs)
            ).fit(X, y_reg)
            for query in (Q, None):
                expected = quiet(reg_ref.predict, query)
                if np.isnan(expected).any():
                    with pytest.warns(UserWarning, match="no neighbors within specified radius"):
                        got = reg.predict(query)
                else:
                    got = reg.predict(query)
                np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
                np.testing.assert_allclose(got, expected, rtol=rtol, atol=10 * atol)

        # the flat result and the arrays of arrays agree, and match the exact distances
        nn = NearestNeighbors(radius=radius, **kwargs).fit(X)
        lims, dist, ind = nn.radius_neighbors(Q, sort_results=True, return_csr=True)
        rd, ri = nn.radius_neighbors(Q, sort_results=True)
        assert lims.dtype == np.int64 and lims.shape == (len(Q) + 1,) and lims[-1] == len(ind)
        for i in range(len(Q)):
            np.testing.assert_array_equal(ri[i], ind[lims[i] : lims[i + 1]])
            np.testing.assert_array_equal(rd[i], dist[lims[i] : lims[i + 1]])
            assert set(ri[i].tolist()) == set(np.flatnonzero(D[i] <= radius).tolist())
        np.testing.assert_allclose(
            dist,
            D[np.repeat(np.arange(len(Q)), np.diff(lims)), ind],
            rtol=rtol,
            atol=1e-6 if dtype == np.float32 else 1e-12,
        )


def test_radius_zero_and_empty_neighbourhoods():
    X = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
    y = np.array([0, 1, 1, 2])
    Q = np.array([[0.0, 0.0], [1.0, 1.0], [9.0, 9.0]])
    clf = RadiusNeighborsClassifier(radius=0.0, outlier_label=2).fit(X, y)
    # radius 0: only the exact duplicates count; an empty neighbourhood is an outlier
    np.testing.assert_array_equal(clf.predict_proba(Q), [[0.5, 0.5, 0], [0, 1, 0], [0, 0, 1]])
    np.testing.assert_array_equal(clf.predict(Q), [0, 1, 2])
    # X=None: each sample leaves itself out; sample 2 and 3 have nobody at distance 0
    np.testing.assert_array_equal(clf.predict(None), [1, 0, 2, 2])
    # exact zeros for every metric, cosine included: a vector is within radius 0 of itself
    Xr = np.random.RandomState(SEED).rand(20, 5)
    ind = (
        NearestNeighbors(radius=0.0, metric="cosine")
        .fit(Xr)
        .radius_neighbors(Xr, return_distance=False)
    )
    assert [i.tolist() for i in ind] == [[i] for i in range(20)]
    reg = RadiusNeighborsRegressor(radius=0.0).fit(X, y.astype(float))
    with pytest.warns(UserWarning, match="predicting NaN"):
        got = reg.predict(Q)
    np.testing.assert_array_equal(got, [0.5, 1.0, np.nan])
    # integer targets: NaN too (scikit-learn casts NaN to an integer there)
    with pytest.warns(UserWarning, match="predicting NaN"):
        got = RadiusNeighborsRegressor(radius=0.0).fit(X, y).predict(Q)
    assert got.dtype == np.float64 and np.isnan(got[2]) and got[0] == 0.5
    # multi-output regression keeps its columns, NaN on every column of an empty row
    Y = np.column_stack([y, -y]).astype(float)
    with pytest.warns(UserWarning, match="predicting NaN"):
        got = RadiusNeighborsRegressor(radius=0.5, weights="distance").fit(X, Y).predict(Q)
    np.testing.assert_array_equal(got, [[0.5, -0.5], [1.0, -1.0], [np.nan, np.nan]])


def test_outlier_label_variants_match_sklearn_general_path():
    rng = np.random.RandomState(SEED)
    X = rng.rand(40, 2)
    y = np.array(["ant", "bee", "cat"])[rng.randint(0, 3, 40)]
    Q = np.vstack([rng.rand(6, 2), [[5.0, 5.0], [-4.0, 0.0]]])  # two outliers
    for label in ("most_frequent", "bee", "zzz"):
        ours = RadiusNeighborsClassifier(radius=0.2, outlier_label=label).fit(X, y)
        theirs = skn.RadiusNeighborsClassifier(
            radius=0.2, outlier_label=label, algorithm="ball_tree"
        ).fit(X, y)
        if label == "zzz":
            # not a class: zero probabilities and a warning (the label is still predicted)
            with pytest.warns(UserWarning, match="Outlier label zzz is not in training classes"):
                proba = ours.predict_proba(Q)
            np.testing.assert_array_equal(proba[-2:], 0.0)
            expected = quiet(theirs.predict_proba, Q)
        else:
            proba = ours.predict_proba(Q)
            expected = theirs.predict_proba(Q)
            np.testing.assert_array_equal(proba[-2:].sum(axis=1), 1.0)
        np.testing.assert_allclose(proba, expected, rtol=1e-12)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            pred = ours.predict(Q)
        np.testing.assert_array_equal(pred, quiet(theirs.predict, Q))
        values, counts = np.unique(y, return_counts=True)
        expected_label = values[counts.argmax()] if label == "most_frequent" else label
        np.testing.assert_array_equal(pred[-2:], [expected_label] * 2)

    # None: outliers are an error naming them, with scikit-learn's message
    ours = RadiusNeighborsClassifier(radius=0.2).fit(X, y)
    theirs = skn.RadiusNeighborsClassifier(radius=0.2, algorithm="ball_tree").fit(X, y)
    with pytest.raises(ValueError) as err:
        ours.predict(Q)
    with pytest.raises(ValueError) as err_ref:
        theirs.predict(Q)
    assert str(err.value) == str(err_ref.value)
    assert "array([6, 7])" in str(err.value)

    # multi-output: one label per output; checks on the labels as scikit-learn
    Y = np.column_stack([rng.randint(0, 3, 40), rng.randint(5, 8, 40)])
    ours = RadiusNeighborsClassifier(radius=0.2, outlier_label=[1, 7]).fit(X, Y)
    theirs = skn.RadiusNeighborsClassifier(
        radius=0.2, outlier_label=[1, 7], algorithm="ball_tree"
    ).fit(X, Y)
    np.testing.assert_array_equal(ours.predict(Q), theirs.predict(Q))
    for a, b in zip(ours.predict_proba(Q), theirs.predict_proba(Q), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    np.testing.assert_array_equal(ours.predict(Q)[-1], [1, 7])
    with pytest.raises(ValueError, match="The length of outlier_label"):
        RadiusNeighborsClassifier(outlier_label=[1, 2, 3]).fit(X, Y)
    with pytest.raises(TypeError, match="supposed to be a scalar"):
        RadiusNeighborsClassifier(outlier_label=[[1, 2], 7]).fit(X, Y)
    with pytest.raises(TypeError, match="The dtype of outlier_label"):
        RadiusNeighborsClassifier(outlier_label="longer than any label").fit(X, y)


def test_callable_weights_get_sklearn_argument():
    """A callable sees one distance array per query (an object array), as in scikit-learn."""
    rng = np.random.RandomState(SEED)
    X, Q = rng.rand(30, 2), rng.rand(7, 2)
    y = rng.randint(0, 2, 30)
    seen = []

    def weights(dist):
        seen.append((dist.dtype, dist.shape))
        return 1.0 / (1.0 + dist)

    ours = RadiusNeighborsClassifier(radius=0.4, weights=weights, outlier_label=0).fit(X, y)
    theirs = skn.RadiusNeighborsClassifier(
        radius=0.4, weights=lambda d: 1.0 / (1.0 + d), outlier_label=0, algorithm="ball_tree"
    ).fit(X, y)
    np.testing.assert_allclose(ours.predict_proba(Q), theirs.predict_proba(Q), rtol=1e-12)
    assert seen == [(np.dtype(object), (7,))]
    reg = RadiusNeighborsRegressor(radius=0.4, weights=lambda d: d * 0).fit(X, y * 1.0)
    with pytest.raises(ZeroDivisionError, match="Weights sum to zero"):
        reg.predict(Q)


def test_blocks_bound_memory_without_changing_results():
    """A tiny working_memory splits predict into one query per block: same answers."""
    rng = np.random.RandomState(SEED)
    X, Q = rng.rand(200, 3), rng.rand(50, 3)
    y = rng.randint(0, 4, 200)
    clf = RadiusNeighborsClassifier(radius=0.5, weights="distance", outlier_label=0).fit(X, y)
    reg = RadiusNeighborsRegressor(radius=0.5, weights="distance").fit(X, y * 1.0)
    expected = [clf.predict_proba(Q), clf.predict_proba(None), reg.predict(Q), reg.predict(None)]
    seen = []
    original = clf._index.radius_neighbors

    def spy(*args, **kwargs):
        seen.append(1)
        return original(*args, **kwargs)

    clf._index.radius_neighbors = spy
    with config_context(working_memory=0.001):  # 1 kB: one query per block
        got = [clf.predict_proba(Q), clf.predict_proba(None), reg.predict(Q), reg.predict(None)]
    assert len(seen) == len(Q) + len(X)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_radius_estimator_errors_and_pickle():
    rng = np.random.RandomState(SEED)
    X = rng.rand(20, 3)
    y = rng.randint(0, 2, 20)
    for est in (RadiusNeighborsClassifier, RadiusNeighborsRegressor):
        with pytest.raises(ValueError, match="'radius' parameter"):
            est(radius=-1.0).fit(X, y)
        with pytest.raises(ValueError, match="'weights' parameter"):
            est(weights="bogus").fit(X, y)
        with pytest.raises(ValueError, match="Found input variables with inconsistent numbers"):
            est().fit(X, y[:-1])
        fitted = est(radius=0.5, metric="manhattan", weights="distance").fit(X, y)
        with pytest.raises(ValueError, match="X has 2 features"):
            fitted.predict(X[:, :2])
        restored = pickle.loads(pickle.dumps(fitted))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # empty neighbourhoods
            np.testing.assert_array_equal(restored.predict(X + 0.01), fitted.predict(X + 0.01))
        assert not hasattr(clone(fitted), "n_samples_fit_")


# -- graphs, transformers, sorting --------------------------------------------------------------


@pytest.mark.parametrize("include_self", [False, True, "auto"])
@pytest.mark.parametrize("mode", ["connectivity", "distance"])
def test_graph_functions_match_sklearn(mode, include_self):
    rng = np.random.RandomState(SEED)
    X = rng.rand(40, 3)
    X[30:] = X[:10]  # duplicates
    for ours, theirs, arg in (
        (kneighbors_graph, skn.kneighbors_graph, 4),
        (radius_neighbors_graph, skn.radius_neighbors_graph, 0.25),
    ):
        for metric in ("minkowski", "manhattan"):
            g = ours(X, arg, mode=mode, metric=metric, include_self=include_self)
            g_ref = theirs(X, arg, mode=mode, metric=metric, include_self=include_self)
            assert sp.issparse(g) and g.format == "csr" and g.shape == (40, 40)
            assert g.nnz == g_ref.nnz
            np.testing.assert_allclose(g.toarray(), g_ref.toarray(), rtol=1e-12, atol=1e-12)
    # a fitted estimator (ours or scikit-learn's) may be passed instead of data
    nn = NearestNeighbors(n_neighbors=4, radius=0.25).fit(X)
    sk_nn = skn.NearestNeighbors().fit(X)
    for fitted in (nn, sk_nn):
        g = kneighbors_graph(fitted, 4, mode=mode, include_self=include_self)
        np.testing.assert_allclose(
            g.toarray(), skn.kneighbors_graph(X, 4, mode=mode, include_self=include_self).toarray()
        )


def test_graph_function_errors():
    X = np.random.RandomState(SEED).rand(10, 2)
    nn = NearestNeighbors(metric="manhattan").fit(X)
    message = "Got minkowski for metric, while the estimator has manhattan for the same parameter."
    with pytest.raises(ValueError, match=re.escape(message)):
        kneighbors_graph(nn, 3)
    with pytest.raises(ValueError, match=re.escape(message)):
        radius_neighbors_graph(nn, 1.0)
    with pytest.raises(ValueError, match="'mode' parameter"):
        kneighbors_graph(X, 3, mode="bogus")
    with pytest.raises(ValueError, match="'n_neighbors' parameter"):
        kneighbors_graph(X, 0)
    with pytest.raises(ValueError, match="'radius' parameter"):
        radius_neighbors_graph(X, -1.0)


def test_transformers_match_sklearn_and_feed_precomputed_estimators():
    rng = np.random.RandomState(SEED)
    X, Q = rng.rand(50, 3), rng.rand(12, 3)
    y = rng.randint(0, 3, 50)
    cases = (
        (KNeighborsTransformer, skn.KNeighborsTransformer, {"n_neighbors": 5}),
        (RadiusNeighborsTransformer, skn.RadiusNeighborsTransformer, {"radius": 0.3}),
    )
    for ours_cls, their_cls, kwargs in cases:
        for mode in ("distance", "connectivity"):
            ours = ours_cls(mode=mode, **kwargs)
            theirs = their_cls(mode=mode, **kwargs)
            A, A_ref = ours.fit_transform(X), theirs.fit_transform(X)
            B, B_ref = ours.transform(Q), theirs.transform(Q)
            for g, g_ref in ((A, A_ref), (B, B_ref)):
                assert g.format == "csr" and g.shape == g_ref.shape and g.nnz == g_ref.nnz
                np.testing.assert_array_equal(g.indptr, g_ref.indptr)
                np.testing.assert_allclose(g.toarray(), g_ref.toarray(), rtol=1e-12)
            assert ours._n_features_out == 50
            np.testing.assert_array_equal(
                ours.get_feature_names_out(), theirs.get_feature_names_out()
            )
        # the diagonal is stored explicitly (a zero) in distance mode
        A = ours_cls(mode="distance", **kwargs).fit_transform(X)
        assert all(i in A.indices[A.indptr[i] : A.indptr[i + 1]] for i in range(50))
    # k distance mode keeps n_neighbors + 1 per row, each row sorted (as sklearn's checks need)
    A = KNeighborsTransformer(n_neighbors=5).fit_transform(X)
    assert np.all(np.diff(A.indptr) == 6)
    assert not _warns_unsorted(A)
    # a precomputed sparse graph feeds scikit-learn's estimators: same predictions as direct
    pipe = make_pipeline(
        KNeighborsTransformer(n_neighbors=7), skn.KNeighborsClassifier(5, metric="precomputed")
    ).fit(X, y)
    direct = skn.KNeighborsClassifier(5).fit(X, y)
    np.testing.assert_array_equal(pipe.predict(Q), direct.predict(Q))
    restored = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_array_equal(restored.predict(Q), direct.predict(Q))


def _warns_unsorted(graph):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sort_graph_by_row_values(graph.copy())
    return any(issubclass(w.category, EfficiencyWarning) for w in caught)


def test_sort_graph_by_row_values_matches_sklearn():
    rng = np.random.RandomState(SEED)
    dense = rng.rand(30, 30)
    dense[rng.rand(30, 30) < 0.7] = 0  # unequal row lengths
    dense[3] = 0  # an empty row
    dense[5, :4] = 0.5  # ties keep their stored (column) order
    for fmt in (sp.csr_matrix, sp.csr_array):
        g = fmt(dense)
        ref = skn.sort_graph_by_row_values(g.copy(), warn_when_not_sorted=False)
        with pytest.warns(EfficiencyWarning, match="not sorted by row values"):
            out = sort_graph_by_row_values(g)
        assert out is g  # sorted in place
        assert type(out) is type(g)
        np.testing.assert_array_equal(out.data, ref.data)
        np.testing.assert_array_equal(out.indices, ref.indices)
        np.testing.assert_array_equal(out.toarray(), dense)
        # already sorted: returned as is, silently
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert sort_graph_by_row_values(out) is out
    # equal row lengths
    g = sp.csr_matrix(KNeighborsTransformer(n_neighbors=3).fit_transform(rng.rand(20, 2)))
    g.data = g.data[::-1].copy()
    ref = skn.sort_graph_by_row_values(g.copy(), warn_when_not_sorted=False)
    out = sort_graph_by_row_values(g, copy=True, warn_when_not_sorted=False)
    assert out is not g
    np.testing.assert_array_equal(out.indices, ref.indices)
    # a first empty row makes scikit-learn's check miss a disorder in the last pair; not ours
    g = sp.csr_matrix(np.array([[0.0, 0.0], [3.0, 1.0]]))
    out = sort_graph_by_row_values(g, copy=True, warn_when_not_sorted=False)
    np.testing.assert_array_equal(out.data, [1.0, 3.0])
    # other formats need copy=True; formats without explicit zeros are refused
    with pytest.raises(ValueError, match="Use copy=True"):
        sort_graph_by_row_values(sp.csc_matrix(dense), warn_when_not_sorted=False)
    out = sort_graph_by_row_values(sp.coo_matrix(dense), copy=True, warn_when_not_sorted=False)
    assert out.format == "csr"
    with pytest.raises(TypeError, match="'dia' format is not supported"):
        sort_graph_by_row_values(sp.dia_matrix(dense), warn_when_not_sorted=False)
    with pytest.raises(TypeError, match="'graph' parameter"):
        sort_graph_by_row_values(dense)


def test_precomputed_distances_match_sklearn():
    rng = np.random.RandomState(SEED)
    X, Q = rng.rand(40, 3), rng.rand(10, 3)
    y = rng.randint(0, 3, 40)
    DX, DQ = cdist(X, X), cdist(Q, X)
    for weights in ("uniform", "distance"):
        ours = RadiusNeighborsClassifier(
            0.3, weights=weights, metric="precomputed", outlier_label=0
        )
        theirs = skn.RadiusNeighborsClassifier(
            0.3, weights=weights, metric="precomputed", outlier_label=0
        )
        ours.fit(DX, y)
        theirs.fit(DX, y)
        direct = RadiusNeighborsClassifier(0.3, weights=weights, outlier_label=0).fit(X, y)
        for query, direct_query in ((DQ, Q), (None, None)):
            proba = ours.predict_proba(query)
            np.testing.assert_allclose(proba, theirs.predict_proba(query), rtol=1e-12)
            np.testing.assert_allclose(proba, direct.predict_proba(direct_query), rtol=1e-12)
        reg = RadiusNeighborsRegressor(0.5, weights=weights, metric="precomputed").fit(DX, y * 1.0)
        reg_ref = skn.RadiusNeighborsRegressor(0.5, weights=weights, metric="precomputed")
        got = reg.predict(DQ)
        assert not np.isnan(got).any()
        np.testing.assert_allclose(got, reg_ref.fit(DX, y * 1.0).predict(DQ), rtol=1e-12)
    graph = RadiusNeighborsTransformer(radius=0.3, metric="precomputed").fit_transform(DX)
    graph_ref = skn.RadiusNeighborsTransformer(radius=0.3, metric="precomputed").fit_transform(DX)
    np.testing.assert_allclose(graph.toarray(), graph_ref.toarray(), rtol=1e-12)
    assert ours.__sklearn_tags__().input_tags.pairwise
