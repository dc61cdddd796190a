"""The engines behind the neighbour estimators (``knnkit.neighbors._engine``): every engine
satisfies ``SearchEngine`` (and its results' arithmetic ``ResultArrays``), pickles, and every
estimator gets its engine from the one chooser, for each algorithm and device."""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pickle

import numpy as np
import pytest

import knnkit.neighbors._base as base_module
from knnkit.neighbors import (
    KNeighborsClassifier,
    KNeighborsRegressor,
    KNeighborsTransformer,
    LocalOutlierFactor,
    NearestNeighbors,
    RadiusNeighborsClassifier,
    RadiusNeighborsRegressor,
)
from knnkit.neighbors._ann import ApproximateSearch
from knnkit.neighbors._arrays import NUMPY
from knnkit.neighbors._device import TorchSearch
from knnkit.neighbors._engine import ResultArrays, SearchEngine, choose_engine
from knnkit.neighbors._search import ExactSearch
from knnkit.neighbors._tree_search import TreeSearch

needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="the torch engine needs torch"
)

#: (algorithm, device) -> the engine and scikit-learn's ``_fit_method`` on 3-D data.
CASES = [
    ("auto", None, TreeSearch, "kd_tree"),  # scikit-learn's auto picks the KD-tree here
    ("brute", None, ExactSearch, "brute"),
    ("kd_tree", None, TreeSearch, "kd_tree"),
    ("ball_tree", None, TreeSearch, "ball_tree"),
    ("hnsw", None, ApproximateSearch, "hnsw"),
    ("ivf", None, ApproximateSearch, "ivf"),
    pytest.param("auto", "cpu", TorchSearch, "brute", marks=needs_torch),
    pytest.param("brute", "cpu", TorchSearch, "brute", marks=needs_torch),
]

ESTIMATORS = [
    NearestNeighbors,
    KNeighborsClassifier,
    KNeighborsRegressor,
    RadiusNeighborsClassifier,
    RadiusNeighborsRegressor,
    KNeighborsTransformer,
    LocalOutlierFactor,
]


def _data(n=60, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.integers(0, 3, n)


def test_choose_engine():
    assert choose_engine("brute") is ExactSearch
    assert choose_engine("kd_tree") is choose_engine("ball_tree") is TreeSearch
    assert choose_engine("hnsw") is choose_engine("ivf") is ApproximateSearch
    for fit_method in ("brute", "kd_tree"):  # a device means the torch engine
        assert choose_engine(fit_method, "cpu") is TorchSearch


@pytest.mark.parametrize("algorithm,device,engine,fit_method", CASES)
def test_every_engine_satisfies_the_protocol(algorithm, device, engine, fit_method):
    X, _ = _data()
    nn = NearestNeighbors(n_neighbors=3, radius=1.0, algorithm=algorithm, device=device).fit(X)
    index = nn._index
    assert type(index) is engine and isinstance(index, SearchEngine)
    assert isinstance(index.arrays, ResultArrays)
    assert nn._fit_method == index.fit_method == fit_method
    for flag in ("approximate", "sparse_queries", "sparse_fit", "query_blocks", "tensor_queries"):
        assert isinstance(getattr(index, flag), bool), flag
    assert index.label in (f"algorithm={fit_method!r}", f"device={device!r}")
    D, I = index.kneighbors(None, 3, None)
    lims, dist, ind = index.radius_neighbors(None, 1.0, True, None)
    assert tuple(D.shape) == tuple(I.shape) == (X.shape[0], 3) and lims.shape == (X.shape[0] + 1,)
    # pickles with the estimators (the torch engine through the host)
    back = pickle.loads(pickle.dumps(index))
    assert type(back) is engine and isinstance(back, SearchEngine)
    np.testing.assert_array_equal(np.asarray(back.kneighbors(None, 3, None)[1]), np.asarray(I))


@pytest.mark.parametrize("algorithm,device,engine,fit_method", CASES)
@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_estimators_dispatch_through_the_one_chooser(
    monkeypatch, estimator, algorithm, device, engine, fit_method
):
    chosen = []

    def spy(fit_method, device):
        chosen.append(choose_engine(fit_method, device))
        return chosen[-1]

    monkeypatch.setattr(base_module, "choose_engine", spy)
    X, y = _data()
    kw = {"radius": 1.5} if estimator.__name__.startswith("Radius") else {"n_neighbors": 3}
    if estimator is RadiusNeighborsClassifier:
        kw["outlier_label"] = "most_frequent"
    est = estimator(algorithm=algorithm, device=device, **kw).fit(X, y)
    assert chosen == [engine] and type(est._index) is engine
    assert est._fit_method == fit_method


@needs_torch
def test_numpy_and_torch_arithmetic_agree():
    import torch

    from knnkit.neighbors._device import TorchArrays

    rng = np.random.default_rng(1)
    t = TorchArrays(torch.device("cpu"))
    labels = rng.integers(0, 4, (30, 5))
    dist = np.abs(rng.standard_normal((30, 5)))
    dist[0, 1] = 0.0  # a row with an exact match
    assert isinstance(NUMPY, ResultArrays) and isinstance(t, ResultArrays)
    w = NUMPY.weights(dist, "distance")
    wt = t.weights(torch.from_numpy(dist), "distance")
    np.testing.assert_allclose(wt.numpy(), w)
    lt = torch.from_numpy(labels)
    for weights, weights_t in ((None, None), (w, wt)):
        np.testing.assert_array_equal(
            t.vote(lt, weights_t, 4).numpy(), NUMPY.vote(labels, weights, 4)
        )
        np.testing.assert_allclose(
            t.proba(lt, weights_t, 4).numpy(), NUMPY.proba(labels, weights, 4)
        )
    y = rng.standard_normal((40, 2))
    ind = rng.integers(0, 40, (30, 5))
    np.testing.assert_allclose(
        t.average(t.targets(y, False), torch.from_numpy(ind), wt).numpy(),
        NUMPY.average(NUMPY.targets(y, False), ind, w),
    )
    lims = np.array([0, 2, 2, 5])
    ind = np.array([0, 3, 1, 2, 4])
    expected = NUMPY.drop_self(lims, ind * 1.0, ind, 0)
    got = t.drop_self(torch.from_numpy(lims), torch.from_numpy(ind * 1.0), torch.from_numpy(ind), 0)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a.numpy(), b)


@pytest.mark.parametrize("module", ["knnkit.neighbors._engine", "knnkit.neighbors._arrays"])
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
