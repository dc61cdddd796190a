"""knnkit.impute.KNNImputer against scikit-learn's, side by side.

The data are random floats, so there are no ties between donors (where scikit-learn's
``argpartition`` may pick any of the tied rows and knnkit picks the lowest index). knnkit's
distances are the exact ``nan_euclidean`` ones; scikit-learn's expanded formula agrees to
~1e-12 here, so the imputed values do too.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn import config_context
from sklearn.base import clone
from sklearn.impute import KNNImputer as SkKNNImputer
from sklearn.metrics.pairwise import nan_euclidean_distances
from threadpoolctl import threadpool_limits

from knnkit.impute import KNNImputer, nan_euclidean_chunk

SEED = 0


@pytest.fixture(autouse=True)
def _sklearn_on_one_openmp_thread():
    """scikit-learn's OpenMP threads spin-wait after each call and, on a small machine, fight
    knnkit's own pool as the two alternate; the reference runs on one thread (same results)."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def with_missing(rng, n, d, rate, missing_values=np.nan):
    X = rng.randn(n, d)
    X[rng.rand(n, d) < rate] = missing_values
    return X


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("weights", ["uniform", "distance"])
@pytest.mark.parametrize("n_neighbors", [1, 3, 10, 200])
def test_matches_sklearn(n_neighbors, weights, dtype):
    rng = np.random.RandomState(SEED)
    X = with_missing(rng, 80, 5, 0.2).astype(dtype)
    X[5] = np.nan  # a row with nothing: imputed with the column means
    X[6, :4] = np.nan
    X[7, 1:] = np.nan  # shares few coordinates with others
    Q = with_missing(rng, 30, 5, 0.4).astype(dtype)
    rtol = 1e-5 if dtype == np.float32 else 1e-10
    ours = KNNImputer(n_neighbors=n_neighbors, weights=weights).fit(X)
    # knnkit computes float32 distances in float64 (scikit-learn's float32 expanded formula
    # can round a small distance to 0, which then takes all the weight): the reference is
    # scikit-learn on the same values in float64
    theirs = SkKNNImputer(n_neighbors=n_neighbors, weights=weights).fit(X.astype(np.float64))
    for data in (X, Q):
        got = ours.transform(data)
        assert got.dtype == dtype and not np.isnan(got).any()
        expected = theirs.transform(data.astype(np.float64))
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol)
        present = ~np.isnan(data)
        np.testing.assert_array_equal(got[present], data[present])  # only holes are filled


def test_options_match_sklearn():
    rng = np.random.RandomState(SEED)
    X = with_missing(rng, 60, 4, 0.25)
    X[:, 2] = np.nan  # a feature missing everywhere at fit
    Q = with_missing(rng, 20, 4, 0.3)
    for kwargs in (
        {"add_indicator": True},
        {"keep_empty_features": True},
        {"add_indicator": True, "keep_empty_features": True, "weights": "distance"},
        {"weights": lambda d: np.exp(-d)},
    ):
        ours = KNNImputer(n_neighbors=4, **kwargs).fit(X)
        theirs = SkKNNImputer(n_neighbors=4, **kwargs).fit(X)
        for data in (X, Q, Q[~np.isnan(Q).any(axis=1)]):  # the last: nothing to impute
            got, expected = ours.transform(data), theirs.transform(data)
            assert got.shape == expected.shape
            np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(ours.get_feature_names_out(), theirs.get_feature_names_out())
    # another placeholder than NaN (and then NaN is refused, as scikit-learn)
    Xm = rng.rand(50, 3) * 10  # no ties (see the module docstring)
    Xm[rng.rand(50, 3) < 0.2] = -1
    ours = KNNImputer(missing_values=-1, n_neighbors=3).fit(Xm)
    theirs = SkKNNImputer(missing_values=-1, n_neighbors=3).fit(Xm)
    np.testing.assert_allclose(ours.transform(Xm), theirs.transform(Xm), rtol=1e-12)
    assert not (ours.transform(Xm) == -1).any()
    with pytest.raises(ValueError, match="Input X contains NaN"):
        ours.transform(np.full((2, 3), np.nan))
    # a callable metric gets missing_values, as in scikit-learn
    seen = []

    def metric(a, b, missing_values=None):
        seen.append(missing_values)
        both = ~(np.isnan(a) | np.isnan(b))
        return float(np.abs(a[both] - b[both]).sum()) if both.any() else np.nan

    ours = KNNImputer(n_neighbors=3, metric=metric).fit(X[:20])
    theirs = SkKNNImputer(n_neighbors=3, metric=metric).fit(X[:20])
    np.testing.assert_allclose(ours.transform(Q[:5]), theirs.transform(Q[:5]), rtol=1e-12)
    assert seen and all(np.isnan(v) for v in seen)


def test_exact_distances_and_chunks():
    rng = np.random.RandomState(SEED)
    X = with_missing(rng, 40, 6, 0.3)
    X[3] = np.nan
    mask = np.isnan(X)
    D = nan_euclidean_chunk(X, mask, X, mask)
    expected = nan_euclidean_distances(X, X)
    np.testing.assert_array_equal(np.isnan(D), np.isnan(expected))
    np.testing.assert_allclose(D[~np.isnan(D)], expected[~np.isnan(D)], rtol=1e-7, atol=1e-7)
    np.testing.assert_array_equal(np.diag(D)[~np.isnan(np.diag(D))], 0.0)  # exact zeros
    # the direct formula, by hand, on one pair
    a, b = X[0], X[1]
    both = ~(np.isnan(a) | np.isnan(b))
    by_hand = np.sqrt(6 / both.sum() * ((a[both] - b[both]) ** 2).sum())
    assert D[0, 1] == pytest.approx(by_hand, rel=1e-15)
    # one receiving row per chunk: same result
    imputer = KNNImputer(n_neighbors=3, weights="distance").fit(X)
    expected = imputer.transform(X)
    with config_context(working_memory=0.001):
        np.testing.assert_array_equal(imputer.transform(X), expected)


def test_duplicates_and_ties():
    # an exact duplicate donor takes all the weight (distance 0), as it should
    X = np.array([[1.0, 2.0, 10.0], [1.0, 2.0, 20.0], [1.5, 2.5, 30.0], [9.0, 9.0, 40.0]])
    Q = np.array([[1.0, 2.0, np.nan]])
    got = KNNImputer(n_neighbors=3, weights="distance").fit(X).transform(Q)
    assert got[0, 2] == 15.0
    # tied donors: the lower index wins, deterministically
    X = np.array([[0.0, 1.0], [2.0, 2.0], [0.0, 3.0], [5.0, 4.0]])
    Q = np.array([[1.0, np.nan]])
    assert KNNImputer(n_neighbors=1).fit(X).transform(Q)[0, 1] == 1.0
    assert KNNImputer(n_neighbors=2).fit(X).transform(Q)[0, 1] == 1.5


def test_bad_input_and_pickle():
    X = with_missing(np.random.RandomState(SEED), 20, 3, 0.2)
    with pytest.raises(ValueError, match="'n_neighbors' parameter"):
        KNNImputer(n_neighbors=0).fit(X)
    with pytest.raises(ValueError, match="'weights' parameter"):
        KNNImputer(weights="bogus").fit(X)
    with pytest.raises(ValueError, match="'metric' parameter"):
        KNNImputer(metric="euclidean").fit(X)
    with pytest.raises(ValueError, match="Input X contains infinity"):
        KNNImputer().fit(np.array([[np.inf, 1.0], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="X has 2 features, but KNNImputer is expecting 3"):
        KNNImputer().fit(X).transform(X[:, :2])
    with pytest.raises(TypeError, match="Sparse data was passed"):
        KNNImputer().fit(sp.csr_matrix(np.nan_to_num(X)))
    imputer = KNNImputer(n_neighbors=2, add_indicator=True).fit(X)
    restored = pickle.loads(pickle.dumps(imputer))
    np.testing.assert_array_equal(restored.transform(X), imputer.transform(X))
    assert not hasattr(clone(imputer), "n_features_in_")
    # copy=False imputes in place
    Y = X.copy()
    out = KNNImputer(copy=False).fit_transform(Y)
    assert not np.isnan(Y).any()
    np.testing.assert_array_equal(out, Y)
    np.testing.assert_allclose(out, SkKNNImputer().fit_transform(X), rtol=1e-10)
