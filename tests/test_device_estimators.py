"""The estimators with ``device=`` (the torch backend): the same answers as the native engines
and scikit-learn, tensors in and out, votes on the device, and clear errors.

CI has no GPU: everything runs on torch's CPU device, which goes through the same code as a
GPU; the tests marked ``gpu`` repeat the main checks on CUDA and skip without it."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import sklearn.neighbors as skn

from knnkit.neighbors import (
    KNeighborsClassifier,
    KNeighborsRegressor,
    KNeighborsTransformer,
    LocalOutlierFactor,
    NearestNeighbors,
    RadiusNeighborsClassifier,
    RadiusNeighborsRegressor,
)

torch = pytest.importorskip("torch")

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

METRICS = [
    ("minkowski", 2),
    ("euclidean", 2),
    ("sqeuclidean", 2),
    ("cosine", 2),
    ("manhattan", 2),
    ("chebyshev", 2),
    ("minkowski", 3),
    ("minkowski", 1.5),
]


def _data(seed: int, n: int = 300, nq: int = 40, d: int = 6, dtype=np.float64, grid=False):
    rng = np.random.default_rng(seed)
    if grid:  # many equal distances: ties must go to the lower index
        X = rng.integers(0, 3, size=(n, d)).astype(dtype)
        Q = rng.integers(0, 3, size=(nq, d)).astype(dtype)
    else:
        X = rng.standard_normal((n, d)).astype(dtype)
        Q = rng.standard_normal((nq, d)).astype(dtype)
    y = rng.integers(0, 4, size=n)
    return X, Q, y


# -- the same answers -----------------------------------------------------------------------------


@pytest.mark.parametrize("metric,p", METRICS)
@pytest.mark.parametrize("grid", [False, True])
def test_kneighbors_equals_native_engine(metric, p, grid):
    X, Q, _ = _data(1, grid=grid)
    ours = NearestNeighbors(metric=metric, p=p, device="cpu").fit(X)
    ref = NearestNeighbors(metric=metric, p=p).fit(X)
    for k in (1, 7, X.shape[0] - 1):
        for q in (Q, None):
            d1, i1 = ours.kneighbors(q, n_neighbors=k)
            d2, i2 = ref.kneighbors(q, n_neighbors=k)
            assert isinstance(d1, np.ndarray) and d1.dtype == d2.dtype
            np.testing.assert_allclose(d1, d2, rtol=1e-10, atol=1e-12)
            if not grid:  # with ties, equal distances may differ in their last bit
                np.testing.assert_array_equal(i1, i2)


@pytest.mark.parametrize("metric", ["euclidean", "manhattan", "cosine"])
def test_radius_neighbors_equals_native_engine(metric):
    X, Q, _ = _data(2)
    r = {"euclidean": 2.5, "manhattan": 5.0, "cosine": 0.5}[metric]
    ours = NearestNeighbors(radius=r, metric=metric, device="cpu").fit(X)
    ref = NearestNeighbors(radius=r, metric=metric).fit(X)
    for q in (Q, None):
        for sort in (False, True):
            l1, d1, i1 = ours.radius_neighbors(q, sort_results=sort, return_csr=True)
            l2, d2, i2 = ref.radius_neighbors(q, sort_results=sort, return_csr=True)
            np.testing.assert_array_equal(l1, l2)
            np.testing.assert_array_equal(i1, i2)
            np.testing.assert_allclose(d1, d2, rtol=1e-10, atol=1e-12)
        a = ours.radius_neighbors_graph(q, mode="distance")
        b = ref.radius_neighbors_graph(q, mode="distance")
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_allclose(a.data, b.data, rtol=1e-10, atol=1e-12)
    # one radius per query
    radii = np.linspace(0.5, 3.0, Q.shape[0])
    l1, _, i1 = ours.radius_neighbors(Q, radius=radii, return_csr=True)
    l2, _, i2 = ref.radius_neighbors(Q, radius=radii, return_csr=True)
    np.testing.assert_array_equal(l1, l2)
    np.testing.assert_array_equal(i1, i2)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_classifier_matches_scikit_learn(seed, weights):
    grid = seed % 2 == 1
    X, Q, y = _data(seed, grid=grid, dtype=np.float64)
    for k in (1, 4, 9):
        ours = KNeighborsClassifier(k, weights=weights, device="cpu").fit(X, y)
        # with tied distances scikit-learn's choice among equal neighbours is arbitrary; the
        # native engine's (lower index first) is the reference there
        theirs = (
            KNeighborsClassifier(k, weights=weights)
            if grid
            else skn.KNeighborsClassifier(k, weights=weights, algorithm="brute")
        ).fit(X, y)
        np.testing.assert_array_equal(ours.predict(Q), theirs.predict(Q))
        np.testing.assert_allclose(ours.predict_proba(Q), theirs.predict_proba(Q), rtol=1e-12)
        np.testing.assert_array_equal(ours.predict(None), theirs.predict(None))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_regressor_matches_scikit_learn(seed, weights):
    X, Q, y = _data(seed)
    Y = np.column_stack([y, np.sin(X[:, 0])])  # multi-output too
    for target in (y.astype(float), Y):
        ours = KNeighborsRegressor(5, weights=weights, device="cpu").fit(X, target)
        theirs = skn.KNeighborsRegressor(5, weights=weights, algorithm="brute").fit(X, target)
        np.testing.assert_allclose(ours.predict(Q), theirs.predict(Q), rtol=1e-12)


def test_radius_estimators_and_lof_match_native_engine():
    X, Q, y = _data(3)
    for cls, kw in (
        (RadiusNeighborsClassifier, {"radius": 2.0, "outlier_label": "most_frequent"}),
        (RadiusNeighborsRegressor, {"radius": 2.5}),
    ):
        a = cls(device="cpu", **kw).fit(X, y)
        b = cls(**kw).fit(X, y)
        with np.errstate(all="ignore"):
            np.testing.assert_allclose(a.predict(Q), b.predict(Q))
    a = LocalOutlierFactor(n_neighbors=10, novelty=True, device="cpu").fit(X)
    b = LocalOutlierFactor(n_neighbors=10, novelty=True).fit(X)
    np.testing.assert_allclose(a.score_samples(Q), b.score_samples(Q), rtol=1e-10)
    np.testing.assert_allclose(a.negative_outlier_factor_, b.negative_outlier_factor_, rtol=1e-10)
    t = torch.from_numpy(Q)
    np.testing.assert_allclose(a.score_samples(t), b.score_samples(Q), rtol=1e-10)
    g1 = KNeighborsTransformer(n_neighbors=5, device="cpu").fit_transform(X)
    g2 = KNeighborsTransformer(n_neighbors=5).fit_transform(X)
    np.testing.assert_array_equal(g1.indices, g2.indices)
    np.testing.assert_allclose(g1.data, g2.data, rtol=1e-10)


def test_multi_output_classifier_and_string_labels():
    X, Q, y = _data(4)
    Y = np.column_stack([y, (y + 1) % 3])
    ours = KNeighborsClassifier(5, weights="distance", device="cpu").fit(X, Y)
    theirs = skn.KNeighborsClassifier(5, weights="distance").fit(X, Y)
    np.testing.assert_array_equal(ours.predict(Q), theirs.predict(Q))
    for a, b in zip(ours.predict_proba(Q), theirs.predict_proba(Q), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    names = np.array(["ant", "bee", "cat", "dog"])[y]
    clf = KNeighborsClassifier(3, device="cpu").fit(torch.from_numpy(X), names)
    pred = clf.predict(torch.from_numpy(Q))  # labels a tensor cannot hold come back as numpy
    assert isinstance(pred, np.ndarray) and pred.dtype.kind == "U"
    np.testing.assert_array_equal(pred, skn.KNeighborsClassifier(3).fit(X, names).predict(Q))
    assert isinstance(clf.predict_proba(torch.from_numpy(Q)), torch.Tensor)


# -- tensors in and out ---------------------------------------------------------------------------


@pytest.mark.parametrize("device", [None, "cpu"])
def test_tensors_in_tensors_out(device):
    X, Q, y = _data(5, dtype=np.float32)
    Xt, Qt, yt = torch.from_numpy(X), torch.from_numpy(Q), torch.from_numpy(y)
    nn = NearestNeighbors(n_neighbors=3, device=device).fit(Xt)
    D, I = nn.kneighbors(Qt)
    assert isinstance(D, torch.Tensor) and D.dtype == torch.float32 and I.dtype == torch.int64
    D2, I2 = nn.kneighbors(Q)  # numpy in: numpy out
    assert isinstance(D2, np.ndarray)
    np.testing.assert_array_equal(I.numpy(), I2)
    assert isinstance(nn.kneighbors()[1], torch.Tensor)  # X=None: the fitted tensor's kind
    lims, dist, ind = nn.radius_neighbors(Qt, radius=2.0, return_csr=True)
    assert all(isinstance(a, torch.Tensor) for a in (lims, dist, ind))
    dist_list, _ = nn.radius_neighbors(Qt, radius=2.0)  # arrays of arrays: numpy objects
    assert dist_list.dtype == object

    clf = KNeighborsClassifier(5, weights="distance", device=device).fit(Xt, yt)
    pred, proba = clf.predict(Qt), clf.predict_proba(Qt)
    assert isinstance(pred, torch.Tensor) and pred.dtype == torch.int64
    assert isinstance(proba, torch.Tensor) and proba.shape == (Q.shape[0], 4)
    ref = KNeighborsClassifier(5, weights="distance").fit(X, y)
    np.testing.assert_array_equal(pred.numpy(), ref.predict(Q))
    np.testing.assert_allclose(proba.numpy(), ref.predict_proba(Q), rtol=1e-6)
    assert clf.score(Qt, torch.from_numpy(ref.predict(Q))) == 1.0

    reg = KNeighborsRegressor(4, device=device).fit(Xt, yt.double())
    out = reg.predict(Qt)
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), KNeighborsRegressor(4).fit(X, y).predict(Q))
    assert isinstance(
        RadiusNeighborsRegressor(radius=3.0, device=device).fit(Xt, y).predict(Qt), torch.Tensor
    )


def test_query_tensor_dtype_follows_the_fitted_data():
    X, Q, _ = _data(6, dtype=np.float32)
    nn = NearestNeighbors(n_neighbors=2, device="cpu").fit(X)
    D, _ = nn.kneighbors(torch.from_numpy(Q.astype(np.float64)))
    assert D.dtype == torch.float32  # float32 fitted: float32 search, as the native engine
    nn64 = NearestNeighbors(n_neighbors=2, device="cpu").fit(X.astype(np.float64))
    assert nn64.kneighbors(Q)[0].dtype == np.float64
    ints = NearestNeighbors(n_neighbors=2, device="cpu").fit(torch.arange(12).reshape(6, 2))
    assert ints.kneighbors(torch.tensor([[0, 1]]))[1].tolist() == [[0, 1]]


def test_distance_weights_with_exact_matches_and_callables():
    X = np.array([[0.0], [0.0], [1.0], [2.0], [3.0]])
    y = np.array([0, 1, 1, 1, 1])
    Q = np.array([[0.0], [2.5]])
    ours = KNeighborsClassifier(4, weights="distance", device="cpu").fit(X, y)
    theirs = skn.KNeighborsClassifier(4, weights="distance").fit(X, y)
    np.testing.assert_array_equal(ours.predict(Q), theirs.predict(Q))
    np.testing.assert_allclose(ours.predict_proba(Q), theirs.predict_proba(Q))
    seen = []

    def gauss(d):
        seen.append(type(d))
        return torch.exp(-d * d) if isinstance(d, torch.Tensor) else np.exp(-d * d)

    ours = KNeighborsRegressor(3, weights=gauss, device="cpu").fit(X, y.astype(float))
    theirs = skn.KNeighborsRegressor(3, weights=gauss).fit(X, y.astype(float))
    np.testing.assert_allclose(ours.predict(Q), theirs.predict(Q), rtol=1e-12)
    assert seen[0] is torch.Tensor  # a callable gets the distances where they are
    zero = KNeighborsClassifier(2, weights=lambda d: d * 0, device="cpu").fit(X, y)
    with pytest.raises(ValueError, match="zero weights"):
        zero.predict(Q)


def test_pickle_and_clone():
    from sklearn.base import clone

    X, Q, y = _data(7)
    clf = KNeighborsClassifier(3, device="cpu").fit(torch.from_numpy(X), y)
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(back.predict(Q), clf.predict(Q))
    assert isinstance(back._y_t, torch.Tensor) and isinstance(back._fit_X, np.ndarray)
    assert isinstance(back.predict(torch.from_numpy(Q)), torch.Tensor)
    reg = KNeighborsRegressor(3, device="cpu").fit(X, y.astype(float))
    np.testing.assert_allclose(pickle.loads(pickle.dumps(reg)).predict(Q), reg.predict(Q))
    assert clone(clf).get_params()["device"] == "cpu"
    dev = torch.device("cpu")
    assert KNeighborsClassifier(device=dev).fit(X, y).predict(Q).shape == (Q.shape[0],)


# -- bad input ------------------------------------------------------------------------------------


def test_bad_input_is_a_clear_error():
    X, Q, y = _data(8)
    with pytest.raises(ValueError, match="'cuda:99' is not available"):
        KNeighborsClassifier(device="cuda:99").fit(X, y)
    with pytest.raises(ValueError, match="expected a torch device"):
        NearestNeighbors(device="nosuchdevice").fit(X)
    for algorithm in ("kd_tree", "ball_tree", "hnsw", "ivf"):
        with pytest.raises(ValueError, match="brute-force"):
            NearestNeighbors(algorithm=algorithm, device="cpu").fit(X)
    for kw in (
        {"metric": "hamming"},
        {"metric": lambda a, b: float(np.abs(a - b).sum())},
        {"metric": "minkowski", "p": 3, "metric_params": {"w": np.ones(6)}},
    ):
        with pytest.raises(ValueError, match="not available on device='cpu'"):
            NearestNeighbors(device="cpu", **kw).fit(X)
    with pytest.raises(ValueError, match="not available on device='cpu'"):
        NearestNeighbors(metric="precomputed", device="cpu").fit(X @ X.T)
    with pytest.raises(ValueError, match="p >= 1"):
        NearestNeighbors(p=0.5, device="cpu").fit(X)
    nn = NearestNeighbors(n_neighbors=3, device="cpu").fit(torch.from_numpy(X))
    bad = torch.from_numpy(Q.copy())
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinity"):
        nn.kneighbors(bad)
    with pytest.raises(ValueError, match="NaN"):
        nn.kneighbors(bad.numpy())
    with pytest.raises(ValueError, match="X has 2 features, but NearestNeighbors is expecting 6"):
        nn.kneighbors(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="2D"):
        nn.kneighbors(torch.zeros(6))
    with pytest.raises(TypeError, match="real tensor"):
        nn.kneighbors(torch.zeros(2, 6, dtype=torch.complex64))
    with pytest.raises(ValueError, match="n_neighbors <= n_samples_fit"):
        nn.kneighbors(Q, n_neighbors=X.shape[0] + 1)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        KNeighborsClassifier(device="cpu").fit(torch.from_numpy(X), y[:-1])
    with pytest.raises(ValueError, match="NaN or infinity"):
        NearestNeighbors(device="cpu").fit(torch.full((3, 2), float("inf")))


# -- on a GPU -------------------------------------------------------------------------------------


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_classifier_on_cuda(weights):
    X, Q, y = _data(9, n=5000, nq=500, d=32, dtype=np.float32)
    dev = torch.device("cuda")
    Xt, Qt = torch.from_numpy(X).to(dev), torch.from_numpy(Q).to(dev)
    clf = KNeighborsClassifier(7, weights=weights, device="cuda").fit(Xt, torch.from_numpy(y))
    pred, proba = clf.predict(Qt), clf.predict_proba(Qt)
    assert pred.device.type == "cuda" and proba.device.type == "cuda"
    ref = KNeighborsClassifier(7, weights=weights).fit(X, y)
    np.testing.assert_array_equal(pred.cpu().numpy(), ref.predict(Q))
    np.testing.assert_allclose(proba.cpu().numpy(), ref.predict_proba(Q), rtol=1e-5)
    D, I = clf.kneighbors(Qt)
    D2, I2 = ref.kneighbors(Q)
    np.testing.assert_array_equal(I.cpu().numpy(), I2)
    np.testing.assert_allclose(D.cpu().numpy(), D2, rtol=1e-5, atol=1e-5)
    # numpy queries against a CUDA fit: numpy out
    assert isinstance(clf.predict(Q), np.ndarray)


@pytest.mark.gpu
@needs_cuda
def test_regressor_and_radius_on_cuda():
    X, Q, y = _data(10, n=3000, nq=300, d=16, dtype=np.float32)
    dev = torch.device("cuda")
    reg = KNeighborsRegressor(5, weights="distance", device=dev).fit(X, y.astype(float))
    out = reg.predict(torch.from_numpy(Q).to(dev))
    assert out.device.type == "cuda"
    ref = KNeighborsRegressor(5, weights="distance").fit(X, y.astype(float))
    np.testing.assert_allclose(out.cpu().numpy(), ref.predict(Q), rtol=1e-5)
    nn = NearestNeighbors(radius=4.0, device="cuda").fit(X)
    l1, _, i1 = nn.radius_neighbors(Q, return_csr=True)
    l2, _, i2 = NearestNeighbors(radius=4.0).fit(X).radius_neighbors(Q, return_csr=True)
    assert abs(len(i1) - len(i2)) <= 2  # float32 rounding at the boundary only
