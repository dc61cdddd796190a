"""Inputs, errors and types where knnkit once parted from scikit-learn (issue 13), side by side
with scikit-learn: ``fit`` on a fitted estimator or a tree, an indefinite Mahalanobis ``VI``,
sparse queries on trees, callable metrics on sparse rows, and ``isinstance`` on the trees."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn.neighbors as skn

from knnkit.neighbors import (
    BallTree,
    KDTree,
    KNeighborsClassifier,
    KNeighborsRegressor,
    LocalOutlierFactor,
    NearestNeighbors,
    RadiusNeighborsClassifier,
)


def _data(seed, n=80, d=3):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.standard_normal((7, d))


# -- fit(X) with X a fitted estimator or a tree (item 2) ------------------------------------------


def _sources(X):
    """(knnkit source, scikit-learn source) pairs of every kind scikit-learn's fit takes."""
    return [
        (NearestNeighbors(n_neighbors=3).fit(X), skn.NearestNeighbors(n_neighbors=3).fit(X)),
        (
            NearestNeighbors(algorithm="ball_tree", metric="manhattan").fit(X),
            skn.NearestNeighbors(algorithm="ball_tree", metric="manhattan").fit(X),
        ),
        (
            NearestNeighbors(algorithm="brute").fit(X),
            skn.NearestNeighbors(algorithm="brute").fit(X),
        ),
        (KDTree(X, leaf_size=5), skn.KDTree(X, leaf_size=5)),
        (BallTree(X, metric="chebyshev"), skn.BallTree(X, metric="chebyshev")),
    ]


@pytest.mark.parametrize("seed", range(3))
def test_fit_on_a_fitted_estimator_or_tree(seed):
    X, Q = _data(seed)
    y = (X[:, 0] > 0).astype(int)
    for ours_src, their_src in _sources(X):
        for cls in ("NearestNeighbors", "KNeighborsClassifier", "KNeighborsRegressor"):
            kw = {"n_neighbors": 4}
            theirs = getattr(skn, cls)(**kw)
            ours = {
                "NearestNeighbors": NearestNeighbors,
                "KNeighborsClassifier": KNeighborsClassifier,
                "KNeighborsRegressor": KNeighborsRegressor,
            }[cls](**kw)
            args = () if cls == "NearestNeighbors" else (y,)
            theirs.fit(their_src, *args)
            for src in (ours_src, their_src):  # knnkit's sources and scikit-learn's alike
                ours.fit(src, *args)
                assert ours._fit_method == theirs._fit_method
                assert ours.n_samples_fit_ == theirs.n_samples_fit_
                d1, i1 = ours.kneighbors(Q)
                d2, i2 = theirs.kneighbors(Q)
                np.testing.assert_array_equal(i1, i2)
                np.testing.assert_allclose(d1, d2, rtol=1e-12)
                if cls != "NearestNeighbors":
                    np.testing.assert_allclose(ours.predict(Q), theirs.predict(Q))
        # the tree itself is reused, as in scikit-learn
        if isinstance(ours_src, (KDTree, BallTree)):
            assert NearestNeighbors().fit(ours_src)._tree is ours_src


def test_fit_on_an_unfitted_estimator_is_scikit_learns_error():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        NearestNeighbors().fit(NearestNeighbors())


def test_radius_and_lof_on_a_tree():
    X, Q = _data(0)
    for ours_src, their_src in _sources(X):
        ours = NearestNeighbors(radius=1.5).fit(ours_src)
        theirs = skn.NearestNeighbors(radius=1.5).fit(their_src)
        a = ours.radius_neighbors(Q, sort_results=True)
        b = theirs.radius_neighbors(Q, sort_results=True)
        for ia, ib in zip(a[1], b[1], strict=True):
            np.testing.assert_array_equal(ia, ib)
    # (scikit-learn's own LocalOutlierFactor cannot be fitted on its KDTree: its _fit_X is then
    # a Cython memoryview without a dtype; knnkit's can, with the scores of the rows)
    lof = LocalOutlierFactor(n_neighbors=5).fit(KDTree(X))
    ref = skn.LocalOutlierFactor(n_neighbors=5).fit(X)
    np.testing.assert_allclose(lof.negative_outlier_factor_, ref.negative_outlier_factor_)
    clf = RadiusNeighborsClassifier(radius=2.0).fit(BallTree(X), X[:, 0] > 0)
    ref = skn.RadiusNeighborsClassifier(radius=2.0).fit(skn.BallTree(X), X[:, 0] > 0)
    np.testing.assert_array_equal(clf.predict(Q), ref.predict(Q))


# -- metric="mahalanobis" with a VI that is not positive semi-definite (item 2) -------------------


@pytest.mark.parametrize("seed", range(3))
def test_indefinite_mahalanobis_is_computed_as_scikit_learn_does(seed):
    X, Q = _data(seed, d=3)
    VI = np.diag([1.0, 1.0, -0.5]) + 0.1
    params = {"metric": "mahalanobis", "metric_params": {"VI": VI}}
    with pytest.warns(UserWarning, match="not positive semi-definite"):
        ours = NearestNeighbors(n_neighbors=5, algorithm="brute", **params).fit(X)
    theirs = skn.NearestNeighbors(n_neighbors=5, algorithm="brute", **params).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # sqrt of negative numbers, both sides
        d1, i1 = ours.kneighbors(Q)
        d2, i2 = theirs.kneighbors(Q)
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_allclose(d1, d2, rtol=1e-12)
        a = ours.radius_neighbors(Q, 0.6, sort_results=True)
        b = theirs.radius_neighbors(Q, 0.6, sort_results=True)
    for ia, ib in zip(a[1], b[1], strict=True):
        np.testing.assert_array_equal(ia, ib)
    # the ball tree is scikit-learn's own for this metric: the same answers as scikit-learn's
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        ours = NearestNeighbors(n_neighbors=5, algorithm="ball_tree", **params).fit(X)
        theirs = skn.NearestNeighbors(n_neighbors=5, algorithm="ball_tree", **params).fit(X)
        np.testing.assert_array_equal(ours.kneighbors(Q)[1], theirs.kneighbors(Q)[1])


# -- sparse queries on trees (item 3) --------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["kd_tree", "ball_tree", "auto"])
def test_sparse_queries_on_a_tree_raise_as_in_scikit_learn(algorithm):
    X, Q = _data(0)
    Qs = sp.csr_matrix(Q)
    y = (X[:, 0] > 0).astype(int)
    for ours, theirs in (
        (NearestNeighbors(algorithm=algorithm), skn.NearestNeighbors(algorithm=algorithm)),
        (
            KNeighborsClassifier(algorithm=algorithm),
            skn.KNeighborsClassifier(algorithm=algorithm),
        ),
    ):
        args = () if isinstance(ours, NearestNeighbors) else (y,)
        ours.fit(X, *args)
        theirs.fit(X, *args)
        calls = [lambda e: e.kneighbors(Qs), lambda e: e.kneighbors_graph(Qs)]
        if isinstance(ours, NearestNeighbors):
            calls += [lambda e: e.radius_neighbors(Qs, 1.0)]
        else:
            calls += [lambda e: e.predict(Qs)]
        for call in calls:
            with pytest.raises(ValueError) as theirs_error:
                call(theirs)
            with pytest.raises(ValueError) as ours_error:
                call(ours)
            assert str(ours_error.value) == str(theirs_error.value)
    # sparse fitted rows with a tree: scikit-learn's warning, then brute force (both)
    with pytest.warns(UserWarning, match="cannot use tree with sparse input"):
        nn = NearestNeighbors(n_neighbors=2, algorithm="kd_tree").fit(sp.csr_matrix(X))
    assert nn._fit_method == "brute"
    assert nn.kneighbors(Qs)[1].shape == (7, 2)


# -- callable metrics on sparse rows (item 4) ------------------------------------------------------


def _recording_l1(seen):
    def metric(a, b):
        seen.add((type(a).__name__, type(b).__name__, np.shape(a)))
        a = a.toarray().ravel() if sp.issparse(a) else a
        b = b.toarray().ravel() if sp.issparse(b) else b
        return float(np.abs(a - b).sum())

    return metric


@pytest.mark.parametrize("seed", range(2))
def test_callable_metrics_receive_sparse_rows_as_in_scikit_learn(seed):
    X = sp.random(40, 6, density=0.4, format="csr", random_state=seed)
    Q = sp.random(5, 6, density=0.4, format="csr", random_state=seed + 10)
    for fit_X, query in ((X, Q), (X, Q.toarray()), (X.toarray(), Q), (X, None)):
        results = []
        for cls in (skn.NearestNeighbors, NearestNeighbors):
            seen: set = set()
            nn = cls(n_neighbors=3, radius=1.0, algorithm="brute", metric=_recording_l1(seen))
            nn.fit(fit_X)
            d, i = nn.kneighbors(query)
            rd, ri = nn.radius_neighbors(query, sort_results=True)
            results.append((d, i, [r.tolist() for r in ri], seen))
        (d1, i1, r1, s1), (d2, i2, r2, s2) = results
        np.testing.assert_array_equal(i2, i1)
        np.testing.assert_allclose(d2, d1)
        assert r2 == r1
        assert s2 == s1  # the same row types (sparse where scikit-learn passes sparse)


# -- KDTree / BallTree are scikit-learn's (item 5) -------------------------------------------------


def test_trees_are_instances_of_scikit_learns():
    X, Q = _data(0)
    trees = [
        KDTree(X),
        BallTree(X),
        BallTree(X[:, :2], metric="haversine"),
        KDTree(X.astype(np.float32)),
    ]
    for tree in trees:
        sk_cls = skn.KDTree if isinstance(tree, KDTree) else skn.BallTree
        other = skn.BallTree if sk_cls is skn.KDTree else skn.KDTree
        assert isinstance(tree, sk_cls) and not isinstance(tree, other)
        q = Q[:, : tree.data.shape[1]]
        copy = pickle.loads(pickle.dumps(tree))
        assert type(copy) is type(tree)
        np.testing.assert_array_equal(copy.query(q, 3)[1], tree.query(q, 3)[1])
        d, i = tree.query(q, 3)
        ref = sk_cls(np.asarray(tree.data, dtype=np.float64), metric=tree_metric(tree))
        np.testing.assert_array_equal(i, ref.query(q, 3)[1])


def tree_metric(tree):
    return "haversine" if tree.data.shape[1] == 2 else "minkowski"
