"""knnkit.neighbors.KDTree / BallTree side by side with scikit-learn's.

float64 trees must equal scikit-learn's array for array (the build replays its median split) and
give bit-identical distances; float32 trees are compared with scikit-learn's float32 trees within
float32 precision. Indices are compared exactly except where distances tie.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import sklearn.neighbors as skn
from sklearn.neighbors._ball_tree import BallTree32
from sklearn.neighbors._kd_tree import KDTree32

from knnkit.neighbors import BallTree, KDTree

SEED = 0
TREES = [(KDTree, skn.KDTree, KDTree32), (BallTree, skn.BallTree, BallTree32)]
METRICS = [
    ("euclidean", {}),
    ("minkowski", {}),
    ("manhattan", {}),
    ("chebyshev", {}),
    ("minkowski", {"p": 3.0}),
]
KERNELS = ["gaussian", "tophat", "epanechnikov", "exponential", "linear", "cosine"]


def _data(n, d, dtype=np.float64, seed=SEED, duplicates=False):
    rng = np.random.RandomState(seed)
    X = rng.random_sample((n, d))
    if duplicates:
        X = np.round(X * 3) / 3  # a coarse grid: many equal points and tied distances
    return X.astype(dtype)


def _tol(dtype, metric, kw):
    if dtype == np.float32:
        return {"rtol": 2e-6, "atol": 1e-6}
    if metric == "minkowski" and kw.get("p", 2) not in (1, 2):
        # scikit-learn takes the p-th root with numpy's vectorised pow: 1 ulp apart.
        return {"rtol": 1e-15, "atol": 0}
    return {"rtol": 0, "atol": 0}


def _check_knn(dist, ind, dist_ref, ind_ref, tol):
    np.testing.assert_allclose(dist, dist_ref, **tol)
    # Indices equal wherever the distance is not tied with another candidate's.
    for row in range(dist.shape[0]):
        d = dist_ref[row]
        for j in range(len(d)):
            tied = np.sum(np.isclose(d, d[j], rtol=1e-6, atol=1e-12)) > 1
            if not tied and not (j == len(d) - 1 and np.isclose(d[j], d[j - 1] if j else -1)):
                assert ind[row, j] == ind_ref[row, j], (row, j)


@pytest.mark.parametrize("ours, theirs, _", TREES)
@pytest.mark.parametrize("metric, kw", METRICS)
@pytest.mark.parametrize("d", [1, 3, 16])
def test_float64_tree_equals_sklearn(ours, theirs, _, metric, kw, d):
    X = _data(600, d)
    Q = _data(60, d, seed=1)
    a = ours(X, leaf_size=10, metric=metric, **kw)
    b = theirs(X, leaf_size=10, metric=metric, **kw)
    for x, y in zip(a.get_arrays(), b.get_arrays(), strict=True):
        np.testing.assert_array_equal(x, y)
    tol = _tol(np.float64, metric, kw)
    for k in (1, 5, 600):
        for bf, dual in [(False, False), (True, False), (False, True)]:
            dist, ind = a.query(Q, k=k, breadth_first=bf, dualtree=dual)
            dist_ref, ind_ref = b.query(Q, k=k)
            np.testing.assert_allclose(dist, dist_ref, **tol)
            if metric != "minkowski" or "p" not in kw:
                np.testing.assert_array_equal(ind, ind_ref)
    # Radius: scalar, per query, zero; unsorted results in scikit-learn's (tree) order.
    for r in (0.0, 0.3, np.linspace(0.0, 0.6, len(Q))):
        got = a.query_radius(Q, r)
        ref = b.query_radius(Q, r)
        for g, e in zip(got, ref, strict=True):
            np.testing.assert_array_equal(g, e)
        np.testing.assert_array_equal(
            a.query_radius(Q, r, count_only=True), b.query_radius(Q, r, count_only=True)
        )
        gi, gd = a.query_radius(Q, r, return_distance=True, sort_results=True)
        ei, ed = b.query_radius(Q, r, return_distance=True, sort_results=True)
        for g1, g2, e1, e2 in zip(gi, gd, ei, ed, strict=True):
            np.testing.assert_allclose(g2, e2, **tol)
            assert set(g1) == set(e1)


@pytest.mark.parametrize("ours, _, theirs32", TREES)
@pytest.mark.parametrize("metric, kw", METRICS[:1] + METRICS[2:])
def test_float32_tree_stays_float32_and_matches(ours, _, theirs32, metric, kw):
    X = _data(500, 4, np.float32)
    Q = _data(50, 4, np.float32, seed=2)
    a = ours(X, leaf_size=8, metric=metric, **kw)
    b = theirs32(X, leaf_size=8, metric=metric, **kw)
    assert a.data.dtype == np.float32 and a.node_bounds.dtype == np.float32
    np.testing.assert_array_equal(a.idx_array, b.get_arrays()[1])
    dist, ind = a.query(Q, k=7)
    assert dist.dtype == np.float32
    dist_ref, ind_ref = b.query(Q, k=7)
    _check_knn(dist, ind, dist_ref, ind_ref, _tol(np.float32, metric, kw))
    counts = a.query_radius(Q, 0.35, count_only=True)
    ref = b.query_radius(Q, 0.35, count_only=True)
    assert np.abs(counts - ref).max() <= 1  # a point may sit on the sphere within float32
    dens = a.kernel_density(Q, 0.3)
    assert dens.dtype == np.float32
    np.testing.assert_allclose(dens, b.kernel_density(Q, 0.3), rtol=1e-4)


@pytest.mark.parametrize("ours, theirs, _", TREES)
@pytest.mark.parametrize("n, d", [(1, 1), (1, 5), (7, 2), (300, 8)])
def test_small_shapes_and_duplicates(ours, theirs, _, n, d):
    X = _data(n, d, duplicates=True)
    Q = _data(20, d, seed=3, duplicates=True)
    a, b = ours(X, leaf_size=3), theirs(X, leaf_size=3)
    for x, y in zip(a.get_arrays(), b.get_arrays(), strict=True):
        np.testing.assert_array_equal(x, y)
    k = min(n, 4)
    dist, ind = a.query(Q, k=k)
    dist_ref, ind_ref = b.query(Q, k=k)
    np.testing.assert_array_equal(dist, dist_ref)
    # Closest first, each neighbour once.
    assert np.all(np.diff(dist, axis=1) >= 0)
    assert all(len(set(row)) == k for row in ind)
    counts = a.query_radius(Q, 0.5, count_only=True)
    np.testing.assert_array_equal(counts, b.query_radius(Q, 0.5, count_only=True))
    np.testing.assert_array_equal(
        a.two_point_correlation(Q, [0.0, 0.4, 1.0]), b.two_point_correlation(Q, [0.0, 0.4, 1.0])
    )


@pytest.mark.parametrize("ours, theirs, _", TREES)
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("breadth_first", [True, False])
def test_kernel_density_within_tolerance(ours, theirs, _, kernel, breadth_first):
    X = _data(800, 3)
    Q = _data(40, 3, seed=4)
    w = np.random.RandomState(5).uniform(0.5, 2.0, len(X))
    h = 0.25
    for sample_weight in (None, w):
        a = ours(X, leaf_size=12, sample_weight=sample_weight)
        b = theirs(X, leaf_size=12, sample_weight=sample_weight)
        # exact reference: scikit-learn with rtol=0
        exact = b.kernel_density(Q, h, kernel=kernel, rtol=0)
        for atol, rtol in [(0.0, 1e-8), (1e-3, 0.0), (0.0, 1e-3)]:
            got = a.kernel_density(
                Q, h, kernel=kernel, atol=atol, rtol=rtol, breadth_first=breadth_first
            )
            assert np.all(np.abs(got - exact) <= 2 * (atol + rtol * exact) + 1e-12 * exact)
        log = a.kernel_density(Q, h, kernel=kernel, return_log=True)
        np.testing.assert_allclose(np.exp(log), exact, rtol=1e-6)


@pytest.mark.parametrize("ours, theirs, _", TREES)
def test_two_point_correlation(ours, theirs, _):
    X = _data(400, 3)
    Q = _data(100, 3, seed=6)
    a, b = ours(X, leaf_size=5), theirs(X, leaf_size=5)
    r = [0.5, 0.1, 0.0, 0.25]  # unsorted: both return counts for the sorted radii
    for dual in (False, True):
        np.testing.assert_array_equal(
            a.two_point_correlation(Q, r, dualtree=dual), b.two_point_correlation(Q, r)
        )


@pytest.mark.parametrize("ours, theirs, _", TREES)
def test_stats_and_calls_like_sklearn(ours, theirs, _):
    X = _data(2000, 4)
    a, b = ours(X), theirs(X)
    assert a.get_n_calls() == b.get_n_calls()
    a.query(X[:300], k=3)
    b.query(X[:300], k=3)
    assert a.get_tree_stats() == b.get_tree_stats()
    assert a.get_n_calls() == b.get_n_calls()
    a.reset_n_calls()
    assert a.get_n_calls() == 0


@pytest.mark.parametrize("ours, _, __", TREES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pickle_round_trip(ours, _, __, dtype):
    X = _data(500, 3, dtype)
    w = np.linspace(1, 2, 500)
    tree = ours(X, leaf_size=6, metric="manhattan", sample_weight=w)
    tree.query(X[:5], k=2)
    clone = pickle.loads(pickle.dumps(tree))
    for x, y in zip(tree.get_arrays(), clone.get_arrays(), strict=True):
        np.testing.assert_array_equal(x, y)
        assert x.dtype == y.dtype
    np.testing.assert_array_equal(tree.query(X[:50], k=4)[1], clone.query(X[:50], k=4)[1])
    np.testing.assert_array_equal(tree.kernel_density(X[:9], 0.5), clone.kernel_density(X[:9], 0.5))
    assert clone.get_n_calls() == tree.get_n_calls()


def test_ball_tree_other_metrics_via_sklearn():
    X = _data(300, 3)
    Q = _data(20, 3, seed=7)
    for metric, kw in [("seuclidean", {"V": np.ones(3) * 2}), ("canberra", {}), ("braycurtis", {})]:
        a = BallTree(X, metric=metric, **kw)
        b = skn.BallTree(X, metric=metric, **kw)
        np.testing.assert_array_equal(a.query(Q, k=3)[1], b.query(Q, k=3)[1])
        np.testing.assert_array_equal(a.idx_array, b.get_arrays()[1])
    latlon = np.deg2rad(_data(100, 2) * [90, 180])
    a = BallTree(latlon, metric="haversine")
    np.testing.assert_allclose(
        a.query(latlon[:5], k=3)[0],
        skn.BallTree(latlon, metric="haversine").query(latlon[:5], k=3)[0],
    )
    a = BallTree(X, metric=lambda u, v: np.abs(u - v).sum())
    np.testing.assert_array_equal(
        a.query(Q[:3], k=2)[1], skn.BallTree(X, metric="l1").query(Q[:3], k=2)[1]
    )
    assert pickle.loads(pickle.dumps(BallTree(X, metric="canberra"))).query(Q, k=1)[1].shape == (
        20,
        1,
    )
    # weighted minkowski: both trees, through scikit-learn
    kw = {"p": 3, "w": np.array([1.0, 2.0, 0.5])}
    np.testing.assert_array_equal(
        KDTree(X, metric="minkowski", **kw).query(Q, k=2)[1],
        skn.KDTree(X, metric="minkowski", **kw).query(Q, k=2)[1],
    )


def test_bad_input():
    X = _data(50, 3)
    tree = KDTree(X)
    with pytest.raises(ValueError, match="r must be broadcastable"):
        tree.query_radius(X[:4], r=np.ones(3))
    with pytest.raises(ValueError, match=r"not valid for KDTree.*'euclidean'"):
        KDTree(X, metric="seuclidean", V=np.ones(3))
    with pytest.raises(ValueError, match="Unrecognized metric 'cosine'.*not valid for BallTree"):
        BallTree(X, metric="cosine")
    with pytest.raises(ValueError, match="Unrecognized metric"):
        KDTree(X, metric="bogus")
    with pytest.raises(ValueError, match="k must be less than or equal"):
        tree.query(X, k=51)
    with pytest.raises(ValueError, match="kernel = 'box' not recognized"):
        tree.kernel_density(X, 0.1, kernel="box")
    with pytest.raises(ValueError, match="h: expected a positive bandwidth"):
        tree.kernel_density(X, 0.0)
    with pytest.raises(ValueError, match="query data dimension"):
        tree.query(X[:, :2])
    with pytest.raises(ValueError, match="leaf_size"):
        KDTree(X, leaf_size=0)
    with pytest.raises(ValueError, match="count_only and return_distance"):
        tree.query_radius(X, 0.1, count_only=True, return_distance=True)
    with pytest.raises(ValueError, match="return_distance must be True"):
        tree.query_radius(X, 0.1, sort_results=True)
    with pytest.raises(ValueError, match="1-dimensional"):
        tree.two_point_correlation(X, np.ones((2, 2)))
    with pytest.raises(ValueError):
        KDTree(np.zeros((0, 3)))
    with pytest.raises(ValueError):
        KDTree(np.array([[np.nan, 1.0]]))
    assert tree.query(X[:2], k=0)[0].shape == (2, 0)
    # A damaged state raises instead of crashing.
    state = KDTree(X, leaf_size=5).__getstate__()
    state["node_data"] = state["node_data"].copy()
    state["node_data"]["idx_end"][1] = 10**6
    broken = KDTree.__new__(KDTree)
    broken.__setstate__(state)
    with pytest.raises(ValueError, match="node_data"):
        broken.query(X[:1])


def test_n_jobs_and_valid_metrics():
    X = _data(3000, 4)
    tree = BallTree(X, n_jobs=1)
    d1, i1 = tree.query(X[:500], k=5)
    d2, i2 = tree.query(X[:500], k=5, n_jobs=-1)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(d1, d2)
    assert KDTree.valid_metrics == skn.KDTree.valid_metrics
    assert sorted(BallTree.valid_metrics) == sorted(skn.BallTree.valid_metrics)
