"""``knnkit.patch_sklearn()``: scikit-learn's own estimators (and imbalanced-learn's) give the
same results patched as unpatched, every binding is restored, and knnkit keeps working while
scikit-learn is patched.

Exact equality is asserted where the neighbour searches feed discrete results (labels,
orderings, graphs); embeddings and densities that go through eigen-solvers or iterative
optimisation are compared to a tolerance of a few ulps of their scale. The data are continuous
(no tied distances): with ties, scikit-learn's own algorithms choose different neighbours from
one another (see docs/guide.md, "Patching scikit-learn")."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import sklearn.impute
import sklearn.neighbors
from sklearn import cluster, feature_selection, manifold, semi_supervised
from sklearn.datasets import make_blobs, make_classification, make_swiss_roll

import knnkit
import knnkit.neighbors
from knnkit.patch import KNOWN_CONSUMERS, REPLACEMENTS, is_patched, sklearn_original

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _both(fn):
    """``fn()`` unpatched, then patched (and unpatched again afterwards)."""
    assert not is_patched()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's own warnings, the same both times
        before = fn()
        with knnkit.sklearn_patched():
            after = fn()
    assert not is_patched()
    return before, after


def _assert_same(before, after):
    np.testing.assert_array_equal(np.asarray(after), np.asarray(before))


def _assert_close(before, after, rtol=1e-9):
    before, after = np.asarray(before), np.asarray(after)
    scale = max(float(np.nanmax(np.abs(before))), 1.0)
    np.testing.assert_allclose(after, before, rtol=rtol, atol=rtol * scale)


def _blobs(seed, n=300, d=3):
    return make_blobs(n, n_features=d, centers=4, cluster_std=1.5, random_state=seed)


# -- the bindings ---------------------------------------------------------------------------------


def test_every_binding_is_replaced_and_restored():
    consumers = [importlib.import_module(name) for name in KNOWN_CONSUMERS]
    originals = {}
    for sk_module, name, _ in REPLACEMENTS:
        originals[(sk_module, name)] = getattr(sys.modules[sk_module], name)
    bound = [
        (m, attr, value)
        for m in consumers
        for attr, value in vars(m).items()
        if any(value is o for o in originals.values())
    ]
    assert {m.__name__ for m, _, _ in bound} == set(KNOWN_CONSUMERS)
    with knnkit.sklearn_patched():
        assert is_patched()
        for (sk_module, name), original in originals.items():
            replacement = getattr(sys.modules[sk_module], name)
            assert replacement is not original
            assert replacement.__module__.startswith("knnkit.")
        for m, attr, _ in bound:
            assert getattr(m, attr).__module__.startswith("knnkit."), (m.__name__, attr)
        # scikit-learn's originals stay where they are defined, and at hand
        assert (
            sklearn.neighbors._unsupervised.NearestNeighbors
            is originals[("sklearn.neighbors", "NearestNeighbors")]
        )
        assert sklearn_original("KDTree") is originals[("sklearn.neighbors", "KDTree")]
    for (sk_module, name), original in originals.items():
        assert getattr(sys.modules[sk_module], name) is original
    for m, attr, value in bound:
        assert getattr(m, attr) is value


def test_patch_is_idempotent_and_nests():
    knnkit.patch_sklearn()
    try:
        knnkit.patch_sklearn()
        with knnkit.sklearn_patched():
            assert is_patched()
        assert is_patched()  # the context did not undo the outer patch
    finally:
        knnkit.unpatch_sklearn()
    assert not is_patched()
    knnkit.unpatch_sklearn()  # unpatching twice does nothing
    assert sklearn.neighbors.NearestNeighbors is sklearn_original("NearestNeighbors")


def test_modules_imported_while_patched_are_restored(tmp_path, monkeypatch):
    (tmp_path / "uses_sklearn_nn.py").write_text(
        "from sklearn.neighbors import NearestNeighbors, KDTree\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with knnkit.sklearn_patched():
        mod = importlib.import_module("uses_sklearn_nn")
        assert mod.NearestNeighbors is knnkit.neighbors.NearestNeighbors
    assert mod.NearestNeighbors is sklearn_original("NearestNeighbors")
    assert mod.KDTree is sklearn_original("KDTree")
    sys.modules.pop("uses_sklearn_nn")


def test_replacements_take_scikit_learns_parameters():
    for sk_module, name, kk_module in REPLACEMENTS:
        original = sklearn_original(name, sk_module)
        ours = getattr(importlib.import_module(kk_module), name)
        if hasattr(original, "_get_param_names"):
            assert set(original._get_param_names()) <= set(ours._get_param_names()), name
        else:
            assert callable(ours), name


def test_sklearn_original_names_what_it_knows():
    with pytest.raises(ValueError, match="expected one of"):
        sklearn_original("NoSuchEstimator")


# -- knnkit keeps working while patched -----------------------------------------------------------


def test_knnkit_works_while_patched():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(60, 2))
    ref_haversine = knnkit.neighbors.BallTree(X, metric="haversine").query(X[:5], k=3)
    ref_nn = knnkit.neighbors.NearestNeighbors(n_neighbors=3).fit(X).kneighbors(X[:5])
    with knnkit.sklearn_patched():
        # the ball tree's non-native metrics go to scikit-learn's own BallTree, not to itself
        got = knnkit.neighbors.BallTree(X, metric="haversine").query(X[:5], k=3)
        for a, b in zip(got, ref_haversine, strict=True):
            np.testing.assert_array_equal(a, b)
        got = sklearn.neighbors.NearestNeighbors(n_neighbors=3).fit(X).kneighbors(X[:5])
        for a, b in zip(got, ref_nn, strict=True):
            np.testing.assert_array_equal(a, b)
        y = (X[:, 0] > 0).astype(int)
        nca = sklearn.neighbors.NeighborhoodComponentsAnalysis(random_state=0, max_iter=5)
        assert nca.fit(X, y).transform(X).shape == (60, 2)
        from knnkit.model_selection import select_k

        assert select_k(X, y, ks=[1, 3], cv=3).best_k in (1, 3)


# -- scikit-learn's estimators, patched and not ----------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("algorithm", ["auto", "kd_tree", "ball_tree", "brute"])
def test_dbscan_labels(seed, algorithm):
    X, _ = _blobs(seed)
    w = np.random.default_rng(seed).uniform(0.5, 2.0, X.shape[0])
    for eps in (0.5, 1.0):

        def labels(eps=eps, sample_weight=None):
            dbscan = cluster.DBSCAN(eps=eps, min_samples=5, algorithm=algorithm)
            return dbscan.fit(X, sample_weight=sample_weight).labels_

        _assert_same(*_both(labels))
        _assert_same(*_both(lambda labels=labels: labels(sample_weight=w)))


@pytest.mark.parametrize("seed", range(2))
def test_optics_ordering_and_reachability(seed):
    X, _ = _blobs(seed, n=150)
    before, after = _both(lambda: cluster.OPTICS(min_samples=8).fit(X))
    _assert_same(before.ordering_, after.ordering_)
    _assert_same(before.labels_, after.labels_)
    _assert_same(before.core_distances_, after.core_distances_)
    _assert_same(before.reachability_, after.reachability_)
    _assert_same(before.predecessor_, after.predecessor_)


@pytest.mark.parametrize("seed", range(2))
def test_isomap_embedding(seed):
    X, _ = make_swiss_roll(300, random_state=seed)
    for kw in ({"n_neighbors": 8}, {"n_neighbors": None, "radius": 4.0}):
        before, after = _both(lambda kw=kw: manifold.Isomap(**kw).fit(X))
        graph = "kneighbors_graph" if kw["n_neighbors"] else "radius_neighbors_graph"
        # (unsorted radius rows come in tree order from scikit-learn, index order from knnkit)
        a, b = (
            getattr(e.nbrs_, graph)(X, mode="distance").sorted_indices() for e in (before, after)
        )
        _assert_same(a.indices, b.indices)
        _assert_close(a.data, b.data)
        _assert_close(before.dist_matrix_, after.dist_matrix_)
        _assert_close(before.embedding_, after.embedding_, rtol=1e-7)


def test_tsne():
    X, _ = make_swiss_roll(120, random_state=0)
    for method in ("barnes_hut", "exact"):
        before, after = _both(
            lambda method=method: manifold.TSNE(
                method=method, random_state=0, max_iter=250, init="pca", perplexity=10
            ).fit_transform(X)
        )
        # same neighbours and distances, so the same joint probabilities and gradient steps
        _assert_close(before, after, rtol=1e-7)


@pytest.mark.parametrize("seed", range(3))
def test_spectral_embedding_affinity(seed):
    X, _ = make_swiss_roll(200, random_state=seed)
    before, after = _both(
        lambda: manifold.SpectralEmbedding(
            affinity="nearest_neighbors", n_neighbors=7, random_state=0
        ).fit(X)
    )
    _assert_same(before.affinity_matrix_.toarray(), after.affinity_matrix_.toarray())
    _assert_close(np.abs(before.embedding_), np.abs(after.embedding_), rtol=1e-6)


def test_other_scikit_learn_consumers():
    X, y = _blobs(0, n=200)
    Xs, _ = make_swiss_roll(200, random_state=0)
    _assert_same(*_both(lambda: cluster.HDBSCAN(min_cluster_size=10).fit(X).labels_))
    _assert_same(
        *_both(
            lambda: (
                cluster.SpectralClustering(4, affinity="nearest_neighbors", random_state=0)
                .fit(X)
                .labels_
            )
        )
    )
    _assert_close(*_both(lambda: cluster.MeanShift(bandwidth=2.0).fit(X).cluster_centers_))
    _assert_close(
        *_both(
            lambda: manifold.LocallyLinearEmbedding(n_neighbors=10, random_state=0).fit_transform(
                Xs
            )
        ),
        rtol=1e-7,
    )
    labels = np.where(np.arange(200) % 5 == 0, y, -1)
    _assert_same(
        *_both(lambda: semi_supervised.LabelSpreading(kernel="knn").fit(X, labels).transduction_)
    )
    _assert_same(
        *_both(lambda: feature_selection.mutual_info_regression(X, X[:, 0], random_state=0))
    )


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_knn_imputer(seed, weights):
    rng = np.random.default_rng(seed)
    X, _ = _blobs(seed, n=150, d=4)
    X[rng.uniform(size=X.shape) < 0.15] = np.nan
    before, after = _both(
        lambda: sklearn.impute.KNNImputer(n_neighbors=5, weights=weights).fit_transform(X)
    )
    # knnkit's nan_euclidean distances are the direct formula, scikit-learn's the expanded one
    _assert_close(before, after, rtol=1e-8)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("algorithm", ["auto", "brute", "ball_tree"])
def test_local_outlier_factor(seed, algorithm):
    X, _ = _blobs(seed, n=200)
    Q = X[:20] + 0.3
    before, after = _both(
        lambda: sklearn.neighbors.LocalOutlierFactor(
            n_neighbors=15, algorithm=algorithm, novelty=True
        ).fit(X)
    )
    _assert_close(before.negative_outlier_factor_, after.negative_outlier_factor_, rtol=1e-12)
    _assert_close(before.score_samples(Q), after.score_samples(Q), rtol=1e-12)
    _assert_same(before.predict(Q), after.predict(Q))


@pytest.mark.parametrize("seed", range(2))
def test_imbalanced_learn(seed):
    imblearn = pytest.importorskip("imblearn")
    from imblearn.over_sampling import ADASYN, SMOTE, BorderlineSMOTE
    from imblearn.under_sampling import EditedNearestNeighbours, NearMiss, TomekLinks

    assert imblearn is not None
    X, y = make_classification(400, n_features=6, weights=[0.85, 0.15], random_state=seed)
    for sampler in (
        lambda: SMOTE(random_state=seed),
        lambda: ADASYN(random_state=seed),
        lambda: BorderlineSMOTE(random_state=seed),
        lambda: EditedNearestNeighbours(),
        lambda: TomekLinks(),
        lambda: NearMiss(),
        lambda: SMOTE(
            k_neighbors=sklearn.neighbors.NearestNeighbors(n_neighbors=6), random_state=seed
        ),
    ):
        (Xa, ya), (Xb, yb) = _both(lambda sampler=sampler: sampler().fit_resample(X, y))
        _assert_same(Xa, Xb)
        _assert_same(ya, yb)


# -- python -m knnkit.patch -----------------------------------------------------------------------


def _run(args, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "python")}
    return subprocess.run(
        [sys.executable, "-m", "knnkit.patch", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )


def test_python_m_knnkit_patch_runs_a_script_patched(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            from sklearn.cluster import DBSCAN
            from sklearn.neighbors import NearestNeighbors
            import sklearn.cluster._dbscan as dbscan_module
            print(NearestNeighbors.__module__, dbscan_module.NearestNeighbors.__module__)
            print(DBSCAN(eps=0.5, min_samples=2).fit([[0.0], [0.1], [5.0], [5.1]]).labels_.tolist())
            print(sys.argv[1:], __name__)
            """
        )
    )
    out = _run([str(script), "a", "--b"], tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "knnkit.neighbors._unsupervised knnkit.neighbors._unsupervised"
    assert lines[1] == "[0, 0, 1, 1]"
    assert lines[2] == "['a', '--b'] __main__"


def test_python_m_knnkit_patch_runs_a_module_and_explains_itself(tmp_path):
    (tmp_path / "patched_mod.py").write_text(
        "import sklearn.neighbors\nprint(sklearn.neighbors.KDTree.__module__)\n"
    )
    out = _run(["-m", "patched_mod"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "knnkit.neighbors._tree"
    out = _run([], tmp_path)
    assert out.returncode == 2 and "usage: python -m knnkit.patch" in out.stderr


def test_docstring_examples_run():
    import doctest

    import knnkit.patch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = doctest.testmod(knnkit.patch, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
    assert not is_patched()
