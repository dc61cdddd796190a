"""knnkit.backends.torch: equality with the Rust exact engine on the CPU device (CI), GPU-only
tests marked ``gpu``; ties, huge k, chunk merges, radius, fast mode, bad input."""

from __future__ import annotations

import doctest
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import knnkit  # noqa: E402
from knnkit.backends import torch as kt  # noqa: E402
from knnkit.errors import DimensionMismatchError  # noqa: E402
from knnkit.testing import exact_knn  # noqa: E402

METRICS = [
    "euclidean",
    "sqeuclidean",
    "inner_product",
    "cosine",
    "manhattan",
    "chebyshev",
    "minkowski",
]
P = 3.0
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _rust(X, Q, k, metric, dtype, p=P):
    ix = knnkit.FlatIndex(X.shape[1], metric=metric, dtype=dtype, p=p)
    ix.add(X)
    return ix.search(Q, k)


def _true(X, Q, I, metric, p=P):
    """float64 distances of the pairs (query row, I[row, j])."""
    X, Q = np.asarray(X, np.float64), np.asarray(Q, np.float64)
    x, q = X[I], Q[:, None, :]
    if metric == "inner_product":
        return (q * x).sum(-1)
    if metric == "cosine":
        nq, nx = np.linalg.norm(q, axis=-1), np.linalg.norm(x, axis=-1)
        return 1 - (q * x).sum(-1) / np.where(nq * nx > 0, nq * nx, 1)
    diff = np.abs(q - x)
    return {
        "euclidean": np.sqrt((diff**2).sum(-1)),
        "sqeuclidean": (diff**2).sum(-1),
        "manhattan": diff.sum(-1),
        "chebyshev": diff.max(-1, initial=0.0),
        "minkowski": (diff**p).sum(-1) ** (1 / p),
    }[metric]


def assert_same_neighbours(D, I, D0, I0, X, Q, metric, dtype):
    """Distances equal to rounding; indices equal except where the true distances tie."""
    D, I, D0, I0 = (np.asarray(a.cpu() if hasattr(a, "cpu") else a) for a in (D, I, D0, I0))
    tol = 2e-5 if np.dtype(dtype) == np.float32 else 1e-11
    scale = max(1.0, float(np.abs(D0).max()))
    np.testing.assert_allclose(D, D0, rtol=tol, atol=tol * scale)
    diff = I != I0
    if diff.any():
        t, t0 = _true(X, Q, I, metric), _true(X, Q, I0, metric)
        np.testing.assert_allclose(t[diff], t0[diff], rtol=tol, atol=tol * scale)
    assert ((I >= 0) & (I < len(X))).all()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    return rng.normal(size=(900, 24)), rng.normal(size=(37, 24))


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_knn_equals_rust_engine(data, metric, dtype):
    X, Q = (a.astype(dtype) for a in data)
    for k in (1, 10, 100):
        D0, I0 = _rust(X, Q, k, metric, dtype)
        D, I = kt.knn(X, Q, k, metric=metric, p=P)
        assert isinstance(D, np.ndarray) and D.dtype == np.dtype(dtype) and I.dtype == np.int64
        assert D.shape == I.shape == (len(Q), k)
        assert_same_neighbours(D, I, D0, I0, X, Q, metric, dtype)
        # small chunks force the running merge across base chunks and several query chunks
        Dc, Ic = kt.knn(X, Q, k, metric=metric, p=P, chunk_queries=5, chunk_base=37)
        np.testing.assert_array_equal(Ic, I)
        np.testing.assert_array_equal(Dc, D)


@pytest.mark.parametrize("shape", [(1, 3), (2, 1), (50, 2), (333, 7), (1500, 64)])
@pytest.mark.parametrize("metric", ["euclidean", "cosine", "manhattan"])
def test_shapes(shape, metric):
    rng = np.random.default_rng(shape[0])
    X = rng.normal(size=shape).astype(np.float32)
    Q = rng.normal(size=(9, shape[1])).astype(np.float32)
    for k in sorted({1, min(5, shape[0]), shape[0]}):
        D0, I0 = _rust(X, Q, k, metric, "float32")
        D, I = kt.knn(X, Q, k, metric=metric, chunk_base=max(1, shape[0] // 3))
        assert_same_neighbours(D, I, D0, I0, X, Q, metric, "float32")


@pytest.mark.parametrize("metric", ["euclidean", "inner_product", "manhattan"])
def test_k_beyond_2048_and_k_equal_n(metric):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(2600, 8)).astype(np.float32)
    Q = rng.normal(size=(6, 8)).astype(np.float32)
    for k in (2049, 2600):
        D0, I0 = _rust(X, Q, k, metric, "float32")
        D, I = kt.knn(X, Q, k, metric=metric, chunk_base=1000)
        assert_same_neighbours(D, I, D0, I0, X, Q, metric, "float32")
    # k = n returns every row exactly once
    assert (np.sort(I, axis=1) == np.arange(len(X))).all()


@pytest.mark.parametrize("metric", METRICS)
def test_ties_go_to_the_lower_index(metric):
    """Small-integer data: distances are exact in float32, so indices must equal the oracle's
    (stable sort by distance, then index) exactly, even with many duplicates at the boundary."""
    rng = np.random.default_rng(2)
    X = rng.integers(-2, 3, size=(400, 5)).astype(np.float32)
    X[100:160] = X[3]  # 61 copies of one row: more than the first candidate list holds
    Q = np.concatenate([X[:20], rng.integers(-2, 3, size=(20, 5)).astype(np.float32)])
    for k in (1, 7, 70):
        D, I = kt.knn(X, Q, k, metric=metric, p=P, chunk_base=64)
        if metric in ("euclidean", "sqeuclidean", "manhattan", "chebyshev", "inner_product"):
            D0, I0 = exact_knn(X, Q, k, metric)
            np.testing.assert_array_equal(I, I0)
            np.testing.assert_allclose(D, D0, rtol=1e-6)
        else:
            D0, I0 = _rust(X, Q, k, metric, "float32")
            assert_same_neighbours(D, I, D0, I0, X, Q, metric, "float32")
        # within equal distances, indices increase
        same = np.diff(D, axis=1) == 0
        assert (np.diff(I, axis=1)[same] > 0).all()
    # the duplicated row's neighbours are its copies, lowest indices first
    _, I = kt.knn(X, X[3:4], 5, metric="euclidean")
    assert I[0].tolist() == [3, 100, 101, 102, 103]


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "inner_product"])
def test_certification_catches_expanded_form_cancellation(metric, monkeypatch):
    """A large common offset ruins the expanded form |q|^2 + |x|^2 - 2 q.x in float32: the
    error bound must send those queries back for more candidates, ending exact."""
    rng = np.random.default_rng(8)
    X = (1e3 + rng.normal(size=(1500, 16))).astype(np.float32)
    Q = (1e3 + rng.normal(size=(12, 16))).astype(np.float32)
    searched = []
    real = kt._candidates

    def counting(eng, Qc, Qt, m, cb, mode):
        searched.append((Qc.shape[0], m))
        return real(eng, Qc, Qt, m, cb, mode)

    monkeypatch.setattr(kt, "_candidates", counting)
    D, I = kt.knn(X, Q, 5, metric=metric, chunk_base=400)
    if metric != "inner_product":
        assert len(searched) > 1 and searched[-1][1] > searched[0][1]
    D0, I0 = exact_knn(X, Q, 5, metric)
    assert_same_neighbours(D, I, D0, I0, X, Q, metric, "float32")


def test_tiny_memory_budget_gives_the_same_answer():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(300, 5)).astype(np.float32)
    Q = rng.normal(size=(17, 5)).astype(np.float32)
    for metric in ("euclidean", "chebyshev"):
        for k in (3, 300):
            D, I = kt.knn(X, Q, k, metric=metric)
            Ds, Is = kt.knn(X, Q, k, metric=metric, memory_budget=2000)
            np.testing.assert_array_equal(Is, I)
            np.testing.assert_array_equal(Ds, D)
        lims, D, I = kt.radius(X, Q, 1.0, metric=metric)
        lims_s, Ds, Is = kt.radius(X, Q, 1.0, metric=metric, memory_budget=2000)
        np.testing.assert_array_equal(lims_s, lims)
        np.testing.assert_array_equal(Is, I)
    with pytest.raises(ValueError, match="memory_budget"):
        kt.knn(X, Q, 1, memory_budget=0)


def test_single_row_base_and_empty_queries():
    D, I = kt.knn(np.ones((1, 4)), np.zeros((3, 4)), 1)
    assert I.tolist() == [[0], [0], [0]] and np.allclose(D, 2.0)
    D, I = kt.knn(np.ones((5, 4)), np.zeros((0, 4)), 2)
    assert D.shape == I.shape == (0, 2)
    lims, D, I = kt.radius(np.ones((5, 4)), np.zeros((0, 4)), 1.0)
    assert lims.tolist() == [0] and D.size == I.size == 0
    lims, D, I = kt.radius(np.ones((0, 4)), np.zeros((2, 4)), 1.0)
    assert lims.tolist() == [0, 0, 0] and D.size == I.size == 0
    # integer numpy input computes in float32
    D, I = kt.knn(np.arange(12).reshape(4, 3), np.zeros((1, 3), dtype=np.int64), 2)
    assert D.dtype == np.float32 and I.tolist() == [[0, 1]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tensor_in_tensor_out(data, dtype):
    X, Q = (torch.as_tensor(a, dtype=dtype) for a in data)
    D, I = kt.knn(X, Q, 4)
    assert isinstance(D, torch.Tensor) and D.dtype == dtype and D.device == X.device
    assert I.dtype == torch.int64
    D0, I0 = kt.knn(X.numpy(), Q.numpy(), 4)
    np.testing.assert_array_equal(I.numpy(), I0)
    np.testing.assert_array_equal(D.numpy(), D0)
    # a numpy array beside a tensor takes the tensor's dtype and device
    D1, I1 = kt.knn(X, data[1], 4)
    assert isinstance(I1, torch.Tensor) and D1.dtype == dtype
    np.testing.assert_array_equal(I1.numpy(), I0)
    # one query as a vector
    _, I2 = kt.knn(X, Q[0], 4)
    assert I2.shape == (1, 4) and I2[0].tolist() == I0[0].tolist()
    # gradients are not tracked, and the inputs are not modified
    Xg = X.clone().requires_grad_(True)
    Dg, _ = kt.knn(Xg, Q, 2)
    assert not Dg.requires_grad


@pytest.mark.parametrize("metric", METRICS)
def test_radius_equals_rust_engine(data, metric):
    X, Q = data
    X, Q = X.astype(np.float64), Q.astype(np.float64)
    D0, _ = _rust(X, Q, 30, metric, "float64")
    r = (D0[:, 10] + D0[:, 11]) / 2  # between two neighbours: no boundary rounding question
    lims, D, I = kt.radius(X, Q, r, metric=metric, p=P, chunk_base=100, chunk_queries=8)
    ix = knnkit.FlatIndex(X.shape[1], metric=metric, dtype="float64", p=P)
    ix.add(X)
    lims0, Dr, Ir = ix.range_search(Q, r)
    np.testing.assert_array_equal(lims, lims0)
    np.testing.assert_allclose(D, Dr, rtol=1e-11, atol=1e-11)
    assert lims.dtype == I.dtype == np.int64 and D.dtype == np.float64
    for i in range(len(Q)):
        a, b = I[lims[i] : lims[i + 1]], Ir[lims0[i] : lims0[i + 1]]
        assert set(a.tolist()) == set(b.tolist())
        d = D[lims[i] : lims[i + 1]]
        assert (np.diff(-d if metric == "inner_product" else d) >= 0).all()


def test_radius_scalar_tensor_and_empty():
    X = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    lims, D, I = kt.radius(X, X[:2], 1.0)
    assert isinstance(lims, torch.Tensor)
    assert lims.tolist() == [0, 3, 6] and I.tolist() == [0, 3, 1, 1, 0, 3]
    assert D.tolist() == [0.0, 0.0, 1.0, 0.0, 1.0, 1.0]
    lims, D, I = kt.radius(X, X[:2] + 100, 1.0)
    assert lims.tolist() == [0, 0, 0] and D.numel() == I.numel() == 0
    lims, _, I = kt.radius(X.numpy(), X[:2].numpy(), [0.0, 1.0], metric="manhattan")
    assert lims.tolist() == [0, 2, 5] and I.tolist() == [0, 3, 1, 0, 3]


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "inner_product", "cosine"])
@pytest.mark.parametrize("fast", [True, "bf16"])
def test_fast_mode_is_exact(metric, fast):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(3000, 48)).astype(np.float32)
    X[1000:1010] = X[7]
    Q = np.concatenate([rng.normal(size=(30, 48)), X[5:9]]).astype(np.float32)
    for k in (1, 10, 50):
        D, I = kt.knn(X, Q, k, metric=metric, chunk_base=700)
        Df, If = kt.knn(X, Q, k, metric=metric, chunk_base=700, fast=fast)
        np.testing.assert_array_equal(If, I)
        np.testing.assert_array_equal(Df, D)
    Dd, Id = kt.knn(X.astype(np.float64), Q.astype(np.float64), 10, metric=metric, fast=fast)
    D0, I0 = _rust(X.astype(np.float64), Q.astype(np.float64), 10, metric, "float64")
    assert Dd.dtype == np.float64
    assert_same_neighbours(Dd, Id, D0, I0, X, Q, metric, "float64")


def test_matmul_precision_is_restored():
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("high")
        kt.knn(np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32), 2)
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(before)


def test_bad_input_is_rejected_clearly():
    X = torch.zeros((5, 3))
    with pytest.raises(ValueError, match="same device"):
        kt.knn(X, torch.zeros((2, 3), device="meta"), 1)
    with pytest.raises(TypeError, match="same dtype"):
        kt.knn(X, torch.zeros((2, 3), dtype=torch.float64), 1)
    with pytest.raises(TypeError, match="float32 or float64"):
        kt.knn(X.half(), X.half(), 1)
    with pytest.raises(ValueError, match="finite"):
        kt.knn(X, torch.tensor([[0.0, float("nan"), 0.0]]), 1)
    with pytest.raises(ValueError, match="finite"):
        kt.radius(np.array([[np.inf, 0, 0]]), np.zeros((1, 3)), 1.0)
    with pytest.raises(ValueError, match=r"at most the number of base rows \(5\), got 6"):
        kt.knn(X, X, 6)
    with pytest.raises(ValueError, match="positive"):
        kt.knn(X, X, 0)
    with pytest.raises(DimensionMismatchError, match="expected 3"):
        kt.knn(X, torch.zeros((2, 4)), 1)
    with pytest.raises(ValueError, match="metric"):
        kt.knn(X, X, 1, metric="nope")
    with pytest.raises(ValueError, match="p: expected"):
        kt.knn(X, X, 1, metric="minkowski", p=0.5)
    with pytest.raises(ValueError, match="fast"):
        kt.knn(X, X, 1, fast="fp8")
    with pytest.raises(ValueError, match="fast"):
        kt.knn(X, X, 1, metric="manhattan", fast="fp8")
    with pytest.raises(ValueError, match="tf32"):
        kt.knn(X, X, 1, fast="tf32")
    with pytest.raises(ValueError, match="radius"):
        kt.radius(X, X, -1.0)
    with pytest.raises(ValueError, match="radius"):
        kt.radius(X, X, [1.0, 2.0])
    with pytest.raises(ValueError, match="chunk_base|positive"):
        kt.knn(X, X, 1, chunk_base=0)
    with pytest.raises(TypeError, match="dtype"):
        kt.knn(np.zeros((2, 3), dtype=complex), np.zeros((2, 3)), 1)
    with pytest.raises(ValueError, match="device"):
        kt.knn(X, X, 1, device="not-a-device")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_unavailable_device_names_it():
    with pytest.raises(ValueError, match="'cuda'.*not available"):
        kt.knn(np.zeros((3, 2)), np.zeros((1, 2)), 1, device="cuda")
    with pytest.raises(ValueError, match="'cuda:3'.*not available"):
        kt.resolve_device("cuda:3")


@pytest.mark.parametrize("metric", METRICS)
def test_prepared_base_equals_knn_and_radius(data, metric):
    X, Q = (torch.from_numpy(a.astype("float32")) for a in data)
    pb = kt.PreparedBase(X, metric=metric, p=P)
    for k in (1, 10, X.shape[0]):
        D, I = pb.knn(Q, k)
        D2, I2 = kt.knn(X, Q, k, metric=metric, p=P)
        assert torch.equal(I, I2) and torch.equal(D, D2)
    r = float(kt.knn(X, Q, 20, metric=metric, p=P)[0][:, -1].median())
    for a, b in zip(pb.radius(Q, r), kt.radius(X, Q, r, metric=metric, p=P), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(pb.knn(Q.double(), 3)[1], I2[:, :3])  # queries take the base's dtype


def test_prepared_base_rejects_bad_input():
    X = torch.zeros((5, 3))
    with pytest.raises(TypeError, match="torch tensor"):
        kt.PreparedBase(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="finite"):
        kt.PreparedBase(torch.full((2, 3), float("nan")))
    pb = kt.PreparedBase(X)
    with pytest.raises(TypeError, match="torch tensor"):
        pb.knn(np.zeros((1, 3)), 1)
    with pytest.raises(DimensionMismatchError, match=r"\(nq, 3\)"):
        pb.knn(torch.zeros((1, 4)), 1)
    with pytest.raises(ValueError, match="at most the number of base rows"):
        pb.knn(torch.zeros((1, 3)), 6)
    with pytest.raises(ValueError, match="finite"):
        pb.knn(torch.full((1, 3), float("inf")), 1)


def test_docstring_examples():
    result = doctest.testmod(kt, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0 and result.attempted > 0


def test_knnkit_imports_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import knnkit, knnkit.backends, knnkit.backends.torch as kt, numpy as np\n"
        "try:\n    kt.knn(np.zeros((2, 2)), np.zeros((1, 2)), 1)\n"
        "except ImportError as e:\n    assert 'knnkit[torch]' in str(e)\n"
        "else:\n    raise SystemExit('no ImportError')\n"
        "ix = knnkit.FlatIndex(2); ix.add(np.zeros((2, 2))); print(ix.search(np.zeros((1, 2)), 1).ids)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


# -- GPU only -------------------------------------------------------------------------------------


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("metric", METRICS)
def test_cuda_equals_cpu(metric):
    rng = np.random.default_rng(9)
    X = torch.as_tensor(rng.normal(size=(20_000, 96)), dtype=torch.float32)
    Q = torch.as_tensor(rng.normal(size=(300, 96)), dtype=torch.float32)
    Xc, Qc = X.cuda(), Q.cuda()
    for k in (10, 3000):
        D, I = kt.knn(Xc, Qc, k, metric=metric, p=P)
        assert D.device.type == "cuda" and I.device.type == "cuda"
        D0, I0 = _rust(X.numpy(), Q.numpy(), k, metric, "float32")
        assert_same_neighbours(D.cpu(), I.cpu(), D0, I0, X.numpy(), Q.numpy(), metric, "float32")
        if metric in ("euclidean", "sqeuclidean", "inner_product", "cosine"):
            for fast in (True, "bf16"):
                Df, If = kt.knn(Xc, Qc, k, metric=metric, fast=fast)
                assert_same_neighbours(
                    Df.cpu(), If.cpu(), D0, I0, X.numpy(), Q.numpy(), metric, "float32"
                )
    # numpy in with device="cuda": computed there, numpy out
    D2, I2 = kt.knn(X.numpy(), Q.numpy(), 5, metric=metric, p=P, device="cuda")
    assert isinstance(D2, np.ndarray)
    lims, Dr, Ir = kt.radius(Xc, Qc[:20], D[:20, 4].cpu().numpy(), metric=metric, p=P)
    assert lims.device.type == "cuda" and int(lims[-1]) >= 5 * 20


@pytest.mark.gpu
@needs_cuda
def test_cuda_cpu_mix_is_rejected():
    with pytest.raises(ValueError, match="same device"):
        kt.knn(torch.zeros((3, 2), device="cuda"), torch.zeros((1, 2)), 1)


def test_torch_settings_are_never_changed(monkeypatch):
    """Each call reads the matmul precision the process allows and never sets it (item 7 of
    issue 13): another thread's setting stays as it was, and TF32/BF16 products the user allows
    cost re-scoring, not exactness."""
    calls = []
    monkeypatch.setattr(torch, "set_float32_matmul_precision", lambda *a: calls.append(a))
    rng = np.random.default_rng(5)
    X = rng.normal(size=(400, 16)).astype(np.float32)
    Q = rng.normal(size=(30, 16)).astype(np.float32)
    ref = kt.knn(X, Q, 7)
    before = torch.get_float32_matmul_precision()
    for precision in ("high", "medium", "highest"):
        monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda p=precision: p)
        assert kt._settings_rounding(torch, torch.device("cpu"), torch.float32) == (
            0.0 if precision == "highest" else kt._U_BF16
        )
        got = kt.knn(X, Q, 7)
        np.testing.assert_array_equal(got[1], ref[1])
        np.testing.assert_array_equal(got[0], ref[0])
        lims, D, I = kt.radius(X, Q, 4.0)
        lims0, D0, I0 = kt.radius(X.astype(np.float64), Q.astype(np.float64), 4.0)
        np.testing.assert_array_equal(lims, lims0)
    assert calls == []
    monkeypatch.undo()
    assert torch.get_float32_matmul_precision() == before
    # float64 products are never rounded by the fp32 settings
    assert kt._settings_rounding(torch, torch.device("cpu"), torch.float64) == 0.0


def test_fixed_sum_order_does_not_depend_on_layout():
    rng = np.random.default_rng(0)
    t = torch.from_numpy(rng.normal(size=(13, 7, 37)))
    whole = kt._fixed_sum(t)
    parts = torch.stack(
        [kt._fixed_sum(t[i : i + 1, j : j + 1]) for i in range(13) for j in range(7)]
    )
    np.testing.assert_array_equal(whole.reshape(-1).numpy(), parts.reshape(-1).numpy())
    np.testing.assert_allclose(whole.numpy(), t.sum(-1).numpy(), rtol=1e-13)
    x = torch.from_numpy(rng.uniform(0.1, 9.0, size=1001))
    single = torch.cat([kt._scalar_pow(x[i : i + 1], 1 / 3) for i in range(1001)])
    np.testing.assert_array_equal(kt._scalar_pow(x, 1 / 3).numpy(), single.numpy())
