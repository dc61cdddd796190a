"""NearestCentroid and NeighborhoodComponentsAnalysis against scikit-learn, side by side."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn.neighbors as skn
from sklearn import config_context
from sklearn.base import clone
from sklearn.datasets import load_iris, make_blobs
from threadpoolctl import threadpool_limits

from knnkit.neighbors import KNeighborsClassifier, NearestCentroid, NeighborhoodComponentsAnalysis

SEED = 0


@pytest.fixture(autouse=True)
def _sklearn_on_one_openmp_thread():
    """scikit-learn's OpenMP threads spin-wait after each call and, on a small machine, fight
    knnkit's own pool as the two alternate; the reference runs on one thread (same results)."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


# -- NearestCentroid ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64], ids=["f32", "f64", "i64"])
@pytest.mark.parametrize("metric", ["euclidean", "manhattan"])
def test_nearest_centroid_matches_sklearn(metric, dtype):
    X, y = make_blobs(90, n_features=4, centers=3, cluster_std=3.0, random_state=SEED)
    Q, _ = make_blobs(40, n_features=4, centers=3, cluster_std=4.0, random_state=SEED + 1)
    X, Q = (X * 10).astype(dtype), (Q * 10).astype(dtype)
    labels = np.array(["a", "b", "c"])[y]
    for priors in ("uniform", "empirical", [0.2, 0.3, 0.5]):
        for shrink in (None, 0.3, 5.0):
            ours = NearestCentroid(metric=metric, priors=priors, shrink_threshold=shrink)
            theirs = skn.NearestCentroid(metric=metric, priors=priors, shrink_threshold=shrink)
            ours.fit(X, labels)
            theirs.fit(X, labels)
            for name in ("centroids_", "deviations_", "within_class_std_dev_", "class_prior_"):
                np.testing.assert_allclose(
                    getattr(ours, name), getattr(theirs, name), rtol=1e-12, err_msg=name
                )
            np.testing.assert_array_equal(ours.classes_, theirs.classes_)
            np.testing.assert_array_equal(ours.predict(Q), theirs.predict(Q))
            if metric == "euclidean":
                np.testing.assert_allclose(
                    ours.decision_function(Q), theirs.decision_function(Q), rtol=1e-9
                )
                np.testing.assert_allclose(
                    ours.predict_proba(Q), theirs.predict_proba(Q), rtol=1e-9, atol=1e-12
                )
                np.testing.assert_allclose(
                    ours.predict_log_proba(Q), theirs.predict_log_proba(Q), rtol=1e-9
                )
            else:  # as scikit-learn: the discriminant scores assume the euclidean metric
                assert not hasattr(ours, "decision_function")
                assert not hasattr(ours, "predict_proba")
    # two classes: decision_function is the log-likelihood ratio, shape (n,)
    ours = NearestCentroid().fit(X[y < 2], y[y < 2])
    theirs = skn.NearestCentroid().fit(X[y < 2], y[y < 2])
    assert ours.decision_function(Q).shape == (40,)
    np.testing.assert_allclose(ours.decision_function(Q), theirs.decision_function(Q), rtol=1e-9)


def test_nearest_centroid_sparse_warnings_and_errors():
    X, y = make_blobs(60, n_features=5, centers=3, random_state=SEED)
    X[X < 0] = 0
    dense = NearestCentroid(metric="manhattan").fit(X, y)
    for fmt in (sp.csr_matrix, sp.csc_array):
        sparse = NearestCentroid(metric="manhattan").fit(fmt(X), y)
        np.testing.assert_array_equal(sparse.centroids_, dense.centroids_)
        np.testing.assert_array_equal(sparse.predict(sp.csr_matrix(X)), dense.predict(X))
        ref = skn.NearestCentroid(metric="manhattan").fit(fmt(X), y)
        np.testing.assert_allclose(sparse.centroids_, ref.centroids_)
    with pytest.raises(ValueError, match="The number of classes has to be greater than one"):
        NearestCentroid().fit(X, np.zeros(60))
    with pytest.raises(ValueError, match="priors must be non-negative"):
        NearestCentroid(priors=[-0.5, 1.0, 0.5]).fit(X, y)
    with pytest.warns(UserWarning, match="The priors do not sum to 1"):
        clf = NearestCentroid(priors=[1.0, 1.0, 2.0]).fit(X, y)
    np.testing.assert_allclose(clf.class_prior_, [0.25, 0.25, 0.5])
    with pytest.raises(ValueError, match="All features have zero variance"):
        with pytest.warns(UserWarning, match="zero standard deviation"):
            NearestCentroid().fit(np.ones((6, 2)), [0, 0, 0, 1, 1, 1])
    with pytest.raises(ValueError, match="'shrink_threshold' parameter"):
        NearestCentroid(shrink_threshold=0).fit(X, y)
    with pytest.raises(ValueError, match="'metric' parameter"):
        NearestCentroid(metric="cosine").fit(X, y)
    with pytest.raises(ValueError, match="Unknown label type"):
        NearestCentroid().fit(X, np.linspace(0, 1, 60))
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict(X), clf.predict(X))
    assert not hasattr(clone(clf), "centroids_")


# -- NeighborhoodComponentsAnalysis -------------------------------------------------------------


def test_nca_loss_and_gradient_equal_sklearn_in_any_block_size():
    rng = np.random.RandomState(SEED)
    X, y = rng.randn(70, 5), rng.randint(0, 3, 70)
    L = rng.randn(3, 5)
    ours = NeighborhoodComponentsAnalysis()
    theirs = skn.NeighborhoodComponentsAnalysis()
    ours.n_iter_ = theirs.n_iter_ = 1
    expected = theirs._loss_grad_lbfgs(L.ravel(), X, y[:, None] == y[None, :])
    for memory in (None, 0.001):  # one block, or one row per block
        with config_context(working_memory=memory or 1024):
            loss, grad = ours._loss_grad_lbfgs(L.ravel(), X, y)
        np.testing.assert_allclose(loss, expected[0], rtol=1e-12)
        np.testing.assert_allclose(grad, expected[1], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("init", ["auto", "pca", "lda", "identity", "random", "array"])
def test_nca_matches_sklearn(init):
    X, y = load_iris(return_X_y=True)
    rng = np.random.RandomState(SEED)
    init_value = rng.randn(2, 4) if init == "array" else init
    n_components = 2 if init in ("lda", "array") else None
    kwargs = {"n_components": n_components, "init": init_value, "random_state": 0}
    ours = NeighborhoodComponentsAnalysis(max_iter=30, **kwargs).fit(X, y)
    theirs = skn.NeighborhoodComponentsAnalysis(max_iter=30, **kwargs).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(ours.components_, theirs.components_, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.transform(X), theirs.transform(X), rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(ours.get_feature_names_out(), theirs.get_feature_names_out())


def test_nca_helps_knn_warm_start_callback_and_errors(capsys):
    rng = np.random.RandomState(SEED)
    n = 120
    y = rng.randint(0, 2, n)
    signal = y[:, None] + 0.3 * rng.randn(n, 1)
    X = np.hstack([signal, 20 * rng.randn(n, 4)])  # one useful feature among loud noise
    knn = KNeighborsClassifier(5)
    before = knn.fit(X[:80], y[:80]).score(X[80:], y[80:])
    seen = []
    nca = NeighborhoodComponentsAnalysis(
        n_components=1, callback=lambda L, i: seen.append(i), verbose=1, random_state=0
    ).fit(X[:80], y[:80])
    after = knn.fit(nca.transform(X[:80]), y[:80]).score(nca.transform(X[80:]), y[80:])
    assert after > before + 0.2, (before, after)
    assert seen == list(range(1, nca.n_iter_))  # as scikit-learn: n_iter_ counts from 1
    assert "Training took" in capsys.readouterr().out
    # warm start continues from the previous components
    warm = NeighborhoodComponentsAnalysis(n_components=1, warm_start=True, max_iter=1)
    warm.fit(X[:80], y[:80])
    first = warm.components_.copy()
    warm.fit(X[:80], y[:80])
    assert not np.array_equal(first, warm.components_)
    with pytest.raises(ValueError, match="cannot be greater than the given data dimensionality"):
        NeighborhoodComponentsAnalysis(n_components=9).fit(X, y)
    with pytest.raises(ValueError, match="must match the dimensionality of the given inputs"):
        NeighborhoodComponentsAnalysis(init=np.eye(2)).fit(X, y)
    with pytest.raises(ValueError, match="The new inputs dimensionality"):
        warm.fit(X[:, :3], y)
    with pytest.raises(ValueError, match="minimum of 2 is required"):
        NeighborhoodComponentsAnalysis().fit(X[:1], y[:1])
    restored = pickle.loads(pickle.dumps(nca.set_params(callback=None)))
    np.testing.assert_array_equal(restored.transform(X), nca.transform(X))
