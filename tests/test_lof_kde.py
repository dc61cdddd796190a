"""LocalOutlierFactor and KernelDensity against scikit-learn, side by side.

LOF: same scores on the same neighbour lists (data without ties at the k-th neighbour, or with
exact duplicates, which both engines put at distance 0). KDE: knnkit sums every kernel exactly,
scikit-learn's tree with atol = rtol = 0 is exact up to rounding, so log densities agree to
~1e-12, and ``sample`` draws the same points from the same seed.
"""

from __future__ import annotations

import pickle
import re
import warnings
from contextlib import nullcontext

import numpy as np
import pytest
import sklearn.neighbors as skn
from sklearn import config_context
from sklearn.base import clone
from threadpoolctl import threadpool_limits

from knnkit.neighbors import KernelDensity, LocalOutlierFactor

SEED = 0


@pytest.fixture(autouse=True)
def _sklearn_on_one_openmp_thread():
    """scikit-learn's OpenMP threads spin-wait after each call and, on a small machine, fight
    knnkit's own pool as the two alternate; the reference runs on one thread (same results)."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


KERNELS = ["gaussian", "tophat", "epanechnikov", "exponential", "linear", "cosine"]


def data(rng, n=60, d=3, duplicates=False):
    X = rng.randn(n, d)
    X[:3] += 8.0 * np.eye(3, d) - 3.0 * np.eye(3, d, 1)  # three isolated outliers
    if duplicates:
        X[10:15] = X[20]
    return X, rng.randn(15, d) * 2


# -- LocalOutlierFactor -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("duplicates", [False, True], ids=["random", "duplicates"])
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"metric": "manhattan"}, {"p": 3}, {"metric": "cosine"}, {"metric": "braycurtis"}],
    ids=["euclidean", "manhattan", "minkowski3", "cosine", "braycurtis"],
)
def test_lof_matches_sklearn(kwargs, duplicates, dtype):
    rng = np.random.RandomState(SEED)
    X, Q = data(rng, duplicates=duplicates)
    X, Q = X.astype(dtype), Q.astype(dtype)
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    atol = 1e-5 if dtype == np.float32 else 1e-12  # decision_function: scores minus offset
    for n_neighbors, contamination in ((5, "auto"), (20, 0.1), (59, 0.5)):
        ours = LocalOutlierFactor(n_neighbors, contamination=contamination, **kwargs)
        theirs = skn.LocalOutlierFactor(
            n_neighbors, contamination=contamination, algorithm="brute", **kwargs
        )
        # six identical rows and 5 neighbours: scikit-learn's warning, from both
        warns = duplicates and n_neighbors == 5
        with pytest.warns(UserWarning, match="Duplicate values") if warns else nullcontext():
            labels = ours.fit_predict(X)
        with pytest.warns(UserWarning, match="Duplicate values") if warns else nullcontext():
            labels_ref = theirs.fit_predict(X)
        # labels agree except for scores within rounding of the threshold (float32)
        clear = np.abs(theirs.negative_outlier_factor_ - theirs.offset_) > 10 * rtol
        clear |= (ours.negative_outlier_factor_ == theirs.negative_outlier_factor_) & (
            ours.offset_ == theirs.offset_
        )
        np.testing.assert_array_equal(labels[clear], labels_ref[clear])
        if n_neighbors < 59:  # (with 59 of 60 neighbours every score is close to -1)
            assert clear.sum() >= len(X) // 2
        np.testing.assert_array_equal(
            labels, np.where(ours.negative_outlier_factor_ < ours.offset_, -1, 1)
        )
        np.testing.assert_allclose(
            ours.negative_outlier_factor_, theirs.negative_outlier_factor_, rtol=rtol
        )
        np.testing.assert_allclose(ours.offset_, theirs.offset_, rtol=rtol)
        assert ours.n_neighbors_ == theirs.n_neighbors_
        assert ours._distances_fit_X_.dtype == dtype
        if contamination == 0.1 and kwargs.get("metric") != "cosine":
            assert labels[:3].tolist() == [-1, -1, -1]  # the planted outliers

        novel = LocalOutlierFactor(n_neighbors, novelty=True, contamination=contamination, **kwargs)
        novel_ref = skn.LocalOutlierFactor(
            n_neighbors, novelty=True, contamination=contamination, algorithm="brute", **kwargs
        )
        novel.fit(X)  # no duplicate warning in novelty mode, as scikit-learn
        novel_ref.fit(X)
        queries = [Q, X[:5], Q.astype(np.float32)]
        if kwargs.get("metric") == "braycurtis" and dtype == np.float64:
            # scikit-learn computes float32 queries against float64 data with scipy's
            # braycurtis, which differs from its own (DistanceMetric's) on negative data
            queries.pop()
        for query in queries:
            scores = novel.score_samples(query)
            np.testing.assert_allclose(scores, novel_ref.score_samples(query), rtol=rtol)
            np.testing.assert_allclose(
                novel.decision_function(query),
                novel_ref.decision_function(query),
                rtol=rtol,
                atol=atol,
            )
            clear = np.abs(novel_ref.decision_function(query)) > 10 * atol
            np.testing.assert_array_equal(
                novel.predict(query)[clear], novel_ref.predict(query)[clear]
            )


def test_lof_novelty_misuse_raises_like_sklearn():
    X = np.random.RandomState(SEED).randn(30, 2)
    outlier = LocalOutlierFactor(n_neighbors=5).fit(X)
    outlier_ref = skn.LocalOutlierFactor(n_neighbors=5).fit(X)
    novelty = LocalOutlierFactor(n_neighbors=5, novelty=True).fit(X)
    novelty_ref = skn.LocalOutlierFactor(n_neighbors=5, novelty=True).fit(X)
    for method in ("predict", "decision_function", "score_samples"):
        assert not hasattr(outlier, method) and hasattr(novelty, method)
        with pytest.raises(AttributeError) as err:
            getattr(outlier, method)(X)
        with pytest.raises(AttributeError) as err_ref:
            getattr(outlier_ref, method)(X)
        assert str(err.value) == str(err_ref.value)
        # available_if: "has no attribute", caused by scikit-learn's explanation
        assert f"{method} is not available when novelty=False" in str(err.value.__cause__)
        assert str(err.value.__cause__) == str(err_ref.value.__cause__)
    assert not hasattr(novelty, "fit_predict") and hasattr(outlier, "fit_predict")
    with pytest.raises(AttributeError) as err:
        novelty.fit_predict(X)
    with pytest.raises(AttributeError) as err_ref:
        novelty_ref.fit_predict(X)
    assert str(err.value) == str(err_ref.value)
    assert "fit_predict is not available when novelty=True" in str(err.value.__cause__)
    assert str(err.value.__cause__) == str(err_ref.value.__cause__)
    # the training scores stay available in both modes
    np.testing.assert_allclose(
        novelty.negative_outlier_factor_, outlier.negative_outlier_factor_, rtol=1e-12
    )


def test_lof_edge_cases_and_errors():
    rng = np.random.RandomState(SEED)
    X = rng.randn(10, 2)
    with pytest.warns(UserWarning, match=re.escape("n_neighbors (20) is greater than the total")):
        lof = LocalOutlierFactor().fit(X)
    assert lof.n_neighbors_ == 9
    with pytest.raises(ValueError, match="n_neighbors < n_samples_fit"):
        LocalOutlierFactor(n_neighbors=1).fit(X[:1])
    with pytest.raises(ValueError, match="'contamination' parameter"):
        LocalOutlierFactor(contamination=0.7).fit(X)
    with pytest.raises(ValueError, match="'novelty' parameter"):
        LocalOutlierFactor(novelty="yes").fit(X)
    # more duplicates than neighbours: scikit-learn's warning, finite scores
    Xd = np.vstack([np.zeros((6, 2)), rng.randn(10, 2)])
    with pytest.warns(UserWarning, match="Duplicate values are leading to incorrect results"):
        lof = LocalOutlierFactor(n_neighbors=3).fit(Xd)
    with pytest.warns(UserWarning, match="Duplicate values"):
        ref = skn.LocalOutlierFactor(n_neighbors=3, algorithm="brute").fit(Xd)
    np.testing.assert_allclose(lof.negative_outlier_factor_, ref.negative_outlier_factor_)
    # pickle and clone
    novel = LocalOutlierFactor(n_neighbors=4, novelty=True, metric="chebyshev").fit(X)
    restored = pickle.loads(pickle.dumps(novel))
    np.testing.assert_array_equal(restored.score_samples(X + 0.1), novel.score_samples(X + 0.1))
    assert not hasattr(clone(novel), "offset_")


# -- KernelDensity ------------------------------------------------------------------------------


def sk_scores(kde, X):
    """scikit-learn's tree warns (log of atol=0) on the way; knnkit must not."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return kde.score_samples(X)


def assert_same_log_density(got, expected, rtol=1e-11):
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(np.isfinite(got), finite)
    np.testing.assert_array_equal(got[~finite], expected[~finite])  # -inf where no kernel reaches
    np.testing.assert_allclose(got[finite], expected[finite], rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"metric": "manhattan"},
        {"metric": "chebyshev", "algorithm": "ball_tree"},
        {"metric": "minkowski", "metric_params": {"p": 3}},
        {"metric": "braycurtis"},
    ],
    ids=["euclidean", "manhattan", "chebyshev", "minkowski3", "braycurtis"],
)
def test_kde_matches_sklearn(kernel, kwargs):
    rng = np.random.RandomState(SEED)
    X, Q = data(rng, n=80)
    weights = rng.rand(80)
    weights[:5] = 0.0
    for bandwidth in (0.3, 1.5, "scott", "silverman"):
        for sample_weight in (None, weights):
            ours = KernelDensity(kernel=kernel, bandwidth=bandwidth, **kwargs)
            theirs = skn.KernelDensity(kernel=kernel, bandwidth=bandwidth, **kwargs)
            ours.fit(X, sample_weight=sample_weight)
            theirs.fit(X, sample_weight=sample_weight)
            assert ours.bandwidth_ == theirs.bandwidth_
            got = ours.score_samples(Q)
            assert_same_log_density(got, sk_scores(theirs, Q))
            assert_same_log_density(ours.score_samples(X[:10]), sk_scores(theirs, X[:10]))
            if np.isfinite(got).all():
                np.testing.assert_allclose(ours.score(Q), sk_scores(theirs, Q).sum(), rtol=1e-11)


def test_kde_is_a_density_and_exact_for_narrow_kernels():
    rng = np.random.RandomState(SEED)
    X = rng.randn(50, 1)
    grid = np.linspace(-8, 8, 4001)[:, None]
    for kernel in KERNELS:
        density = np.exp(KernelDensity(kernel=kernel, bandwidth=0.7).fit(X).score_samples(grid))
        assert abs(np.trapezoid(density, grid[:, 0]) - 1.0) < 1e-3, kernel
    # a very narrow Gaussian far from the data: no underflow to -inf (log-space sums)
    kde = KernelDensity(bandwidth=1e-3).fit(X)
    far = np.array([[100.0]])
    got = kde.score_samples(far)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, sk_scores(skn.KernelDensity(bandwidth=1e-3).fit(X), far))
    # compact kernels: exactly -inf beyond the bandwidth, as scikit-learn
    assert KernelDensity(kernel="tophat", bandwidth=0.5).fit(X).score_samples(far)[0] == -np.inf


def test_kde_blocks_float32_and_tolerances():
    rng = np.random.RandomState(SEED)
    X, Q = rng.rand(100, 2), rng.rand(40, 2)
    kde = KernelDensity(bandwidth=0.2, kernel="epanechnikov").fit(X)
    expected = kde.score_samples(Q)
    with config_context(working_memory=0.001):  # one query per block
        np.testing.assert_array_equal(kde.score_samples(Q), expected)
    # float32 data is scored in float64, as scikit-learn
    got = KernelDensity(bandwidth=0.2, kernel="epanechnikov").fit(X.astype(np.float32))
    ref = skn.KernelDensity(bandwidth=0.2, kernel="epanechnikov").fit(X.astype(np.float32))
    out = got.score_samples(Q.astype(np.float32))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, sk_scores(ref, Q.astype(np.float32)), rtol=1e-11)
    # the tree honours atol/rtol (on the density divided by N, as scikit-learn)
    loose = KernelDensity(
        bandwidth=0.2, kernel="epanechnikov", atol=0.1, rtol=0.5, breadth_first=False
    ).fit(X)
    got, exact = np.exp(loose.score_samples(Q)), np.exp(expected)
    assert np.all(np.abs(got - exact) <= 0.1 + 0.5 * exact + 1e-12)


def test_kde_sample_matches_sklearn():
    rng = np.random.RandomState(SEED)
    X = rng.randn(40, 3)
    weights = rng.rand(40)
    for kernel in ("gaussian", "tophat"):
        for sample_weight in (None, weights):
            ours = KernelDensity(kernel=kernel, bandwidth=0.5).fit(X, sample_weight=sample_weight)
            theirs = skn.KernelDensity(kernel=kernel, bandwidth=0.5).fit(
                X, sample_weight=sample_weight
            )
            got = ours.sample(25, random_state=3)
            assert got.shape == (25, 3)
            np.testing.assert_array_equal(got, theirs.sample(25, random_state=3))
    tophat = KernelDensity(kernel="tophat", bandwidth=0.5).fit(X).sample(200, random_state=0)
    nearest = np.min(np.linalg.norm(tophat[:, None, :] - X[None], axis=2), axis=1)
    assert nearest.max() <= 0.5  # every tophat draw lies within the bandwidth of a point
    for kernel in ("epanechnikov", "exponential", "linear", "cosine"):
        with pytest.raises(NotImplementedError):
            KernelDensity(kernel=kernel).fit(X).sample()


def test_kde_bad_input():
    X = np.random.RandomState(SEED).randn(20, 2)
    for bad in (0, -1.0, "bogus", None):
        with pytest.raises(ValueError, match="'bandwidth' parameter"):
            KernelDensity(bandwidth=bad).fit(X)
    with pytest.raises(ValueError, match="'kernel' parameter"):
        KernelDensity(kernel="triangle").fit(X)
    with pytest.raises(ValueError, match="'metric' parameter"):
        KernelDensity(metric="cosine").fit(X)  # not a tree metric, as in scikit-learn
    with pytest.raises(ValueError, match="'algorithm' parameter"):
        KernelDensity(algorithm="brute").fit(X)
    with pytest.raises(ValueError, match="invalid metric for kd_tree: 'braycurtis'"):
        KernelDensity(algorithm="kd_tree", metric="braycurtis").fit(X)
    with pytest.raises(ValueError, match="'atol' parameter"):
        KernelDensity(atol=-1).fit(X)
    with pytest.raises(ValueError, match="Negative values in data passed to `sample_weight`"):
        KernelDensity().fit(X, sample_weight=-np.ones(20))
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(3,\), expected \(20,\)"):
        KernelDensity().fit(X, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="Input X contains NaN"):
        KernelDensity().fit(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="X has 3 features"):
        KernelDensity().fit(X).score_samples(np.ones((2, 3)))
    with pytest.raises(ValueError, match="KernelDensity runs on knnkit's CPU engines only"):
        KernelDensity(device="cpu").fit(X)
    # the rules of thumb work on lists too (scikit-learn reads X.shape before validating)
    kde = KernelDensity(bandwidth="scott").fit(X.tolist())
    assert kde.bandwidth_ == pytest.approx(20 ** (-1 / 6))
    restored = pickle.loads(pickle.dumps(kde))
    np.testing.assert_array_equal(restored.score_samples(X), kde.score_samples(X))
    assert not hasattr(clone(kde), "bandwidth_")


def test_lof_precomputed_matches_direct():
    rng = np.random.RandomState(SEED)
    X, Q = data(rng)
    D = np.sqrt(((X[:, None, :] - X[None]) ** 2).sum(axis=2))
    DQ = np.sqrt(((Q[:, None, :] - X[None]) ** 2).sum(axis=2))
    direct = LocalOutlierFactor(n_neighbors=7, novelty=True).fit(X)
    pre = LocalOutlierFactor(n_neighbors=7, novelty=True, metric="precomputed").fit(D)
    ref = skn.LocalOutlierFactor(n_neighbors=7, novelty=True, metric="precomputed").fit(D)
    np.testing.assert_allclose(pre.negative_outlier_factor_, direct.negative_outlier_factor_)
    np.testing.assert_allclose(pre.negative_outlier_factor_, ref.negative_outlier_factor_)
    np.testing.assert_allclose(pre.score_samples(DQ), direct.score_samples(Q), rtol=1e-10)
    np.testing.assert_allclose(pre.score_samples(DQ), ref.score_samples(DQ), rtol=1e-10)
