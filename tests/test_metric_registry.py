"""The metric registry (``knnkit._metrics``, read from the Rust core): names, aliases, which
engines serve which metric, and the tables of every engine reading it."""

import numpy as np
import pytest

import knnkit
from knnkit import _core, _metrics
from knnkit.backends import torch as torch_backend
from knnkit.index import _native
from knnkit.neighbors import _ann

#: The tables each engine had before the registry (the registry must reproduce them).
HISTORIC = {
    "exact": (
        "euclidean",
        "sqeuclidean",
        "inner_product",
        "cosine",
        "manhattan",
        "chebyshev",
        "minkowski",
        "hamming",
    ),
    "tree": ("euclidean", "manhattan", "chebyshev", "minkowski"),
    "approximate": ("euclidean", "sqeuclidean", "inner_product", "cosine"),
    "torch": (
        "euclidean",
        "sqeuclidean",
        "inner_product",
        "cosine",
        "manhattan",
        "chebyshev",
        "minkowski",
    ),
}


@pytest.mark.parametrize("engine", sorted(HISTORIC))
def test_engines_serve_the_historic_metrics(engine):
    assert _metrics.names(engine) == HISTORIC[engine]


def test_aliases():
    assert dict(_metrics.ALIASES) == {
        "l2": "euclidean",
        "ip": "inner_product",
        "cityblock": "manhattan",
        "l1": "manhattan",
        "infinity": "chebyshev",
    }
    assert _metrics.aliases("approximate") == {"l2": "euclidean", "ip": "inner_product"}


def test_every_table_reads_the_registry():
    assert _native.METRICS == _metrics.names("approximate")
    assert knnkit.HNSWIndex(4).metric == "euclidean"
    assert torch_backend.METRICS == _metrics.names("torch")
    assert torch_backend._DOT == {"euclidean", "sqeuclidean", "inner_product", "cosine"}
    assert _ann._INDEX_METRICS == {"euclidean", "sqeuclidean", "cosine"}
    assert _ann._PLAIN_METRICS == {"euclidean", "l2", "sqeuclidean", "cosine"}


def test_resolve():
    assert _metrics.resolve("l2", "approximate") == "euclidean"
    assert _metrics.resolve("ip", "torch") == "inner_product"
    assert _metrics.resolve("cosine", "exact") == "cosine"
    with pytest.raises(ValueError, match=r"metric: expected one of \('euclidean'.*got 'manhattan'"):
        _metrics.resolve("manhattan", "approximate")
    with pytest.raises(ValueError, match=r"metric: expected one of .*'minkowski'\), got 'hamming'"):
        _metrics.resolve("hamming", "torch")
    for bad in ("bogus", None, 3, ["euclidean"]):
        with pytest.raises(ValueError, match=r"metric: expected one of"):
            _metrics.resolve(bad, "exact")
    with pytest.raises(ValueError, match=r"engine: expected one of"):
        _metrics.names("gpu")


def test_unknown_metric_messages_stay_clear():
    with pytest.raises(ValueError, match=r"metric: expected one of \('euclidean'.*got 'manhattan'"):
        knnkit.HNSWIndex(4, metric="manhattan")
    with pytest.raises(ValueError, match=r"metric: expected one of .*got 'bogus'"):
        knnkit.IVFIndex(4, metric="bogus")
    X = np.eye(3, dtype=np.float32)
    with pytest.raises(
        ValueError, match=r"unknown metric \"bogus\": expected one of euclidean, l2"
    ):
        _core.knn_search(X, X, 1, "bogus")


def test_rust_accepts_every_registered_name():
    """Every name and alias of the registry parses in the exact engine to the same metric."""
    rng = np.random.default_rng(0)
    X = rng.random((20, 4)).astype(np.float64)
    for name, info in _metrics.REGISTRY.items():
        want = _core.knn_search(X, X[:3], 2, name, 3.0)
        for alias in info["aliases"]:
            got = _core.knn_search(X, X[:3], 2, alias, 3.0)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("metric", HISTORIC["approximate"])
def test_approximate_keys_convert_to_the_exact_distances(metric):
    """HNSW and IVF (one index key, −cos for cosine) return the exact engine's distances."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((60, 8)).astype(np.float32)
    D0, I0 = _core.knn_search(X, X[:5], 3, metric)
    for index in (knnkit.HNSWIndex(8, metric=metric), knnkit.IVFIndex(8, metric=metric, nlist=1)):
        index.add(X)
        D, I = index.search(X[:5], 3)
        np.testing.assert_array_equal(I, I0)
        np.testing.assert_allclose(D, D0, rtol=1e-5, atol=1e-5)


def test_key_maps():
    keys = {
        name: (info["exact_key"], info["index_key"]) for name, info in _metrics.REGISTRY.items()
    }
    assert keys["euclidean"] == ("square", "square")
    assert keys["cosine"] == ("identity", "minus_one")
    assert keys["inner_product"] == ("negate", "negate")
    assert keys["minkowski"] == ("power", None)
    assert all(
        (info["index_key"] is not None) == ("approximate" in info["engines"])
        for info in _metrics.REGISTRY.values()
    )
