"""IVFIndex(device=...): the coarse k-means through torch (knnkit.backends._kmeans) on the CPU
device in CI, CUDA tests marked ``gpu``. Recall and inertia against the Rust trainer, files and
pickles of a device-trained index, bad devices, the k-means itself."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import knnkit  # noqa: E402
from knnkit import io as kio  # noqa: E402
from knnkit.backends._kmeans import kmeans  # noqa: E402
from knnkit.testing import recall_at_k  # noqa: E402

#: recall@10 of a torch-trained index may trail the Rust-trained one by at most this much.
MAX_RECALL_GAP = 0.03
#: torch k-means inertia may exceed the Rust k-means inertia by at most this fraction.
MAX_INERTIA_EXCESS = 0.03
SEED = 0
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def centroids(ix):
    """The coarse centroids an IVF index (or its native core) holds, read from its file."""
    native = getattr(ix, "_native", ix)
    return kio.from_bytes(native.encode("{}"))[1].array("centroids")


def clustered(n: int, d: int = 32, seed: int = SEED, centers: int = 60) -> np.ndarray:
    rng = np.random.default_rng(seed)
    C = np.random.default_rng(1234).normal(scale=1.0, size=(centers, d))
    return (C[rng.integers(0, centers, n)] + rng.normal(size=(n, d))).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    return clustered(4000), clustered(200, seed=SEED + 1)


def ivf(metric: str, codes: str, device=None, d: int = 32):
    return knnkit.IVFIndex(
        d, metric=metric, nlist=32, nprobe=4, codes=codes, pq_m=8, nbits=6, device=device
    )


def exact_ids(X, Q, metric, k=10):
    flat = knnkit.FlatIndex(X.shape[1], metric=metric)
    flat.add(X)
    return flat.search(Q, k).ids


def inertia(X: np.ndarray, C: np.ndarray) -> float:
    X, C = X.astype(np.float64), C.astype(np.float64)
    d2 = (X * X).sum(1)[:, None] - 2 * X @ C.T + (C * C).sum(1)[None, :]
    return float(np.maximum(d2.min(1), 0).sum())


@pytest.mark.parametrize("codes", ["flat", "sq8", "pq"])
@pytest.mark.parametrize("metric", ["euclidean", "cosine", "inner_product"])
def test_recall_matches_rust_training(data, metric, codes):
    X, Q = data
    truth = exact_ids(X, Q, metric)
    recall = {}
    for device in (None, "cpu"):
        ix = ivf(metric, codes, device)
        ix.add(X, n_jobs=2)
        assert ix.is_trained and len(ix) == len(X)
        recall[device] = recall_at_k(ix.search(Q, 10).ids, truth)
    print(
        f"seed={SEED} {metric} {codes}: recall@10 rust {recall[None]:.3f} torch {recall['cpu']:.3f}"
    )
    assert recall["cpu"] >= recall[None] - MAX_RECALL_GAP, (
        f"{metric}/{codes}: torch-trained recall@10 {recall['cpu']:.3f} trails the Rust-trained "
        f"{recall[None]:.3f} by more than {MAX_RECALL_GAP} (seed {SEED})"
    )


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_kmeans_inertia_close_to_rust(metric):
    X = clustered(20000, d=32, centers=200)
    nlist = 64
    ix = knnkit.IVFIndex(32, metric=metric, nlist=nlist, seed=SEED)
    ix.train(X, n_jobs=2)
    rust = centroids(ix).reshape(nlist, 32)
    spherical = metric == "cosine"
    ours = kmeans(X, nlist, seed=SEED, spherical=spherical, device="cpu")
    assert ours.shape == (nlist, 32) and ours.dtype == np.float32
    Xo = X / np.linalg.norm(X, axis=1, keepdims=True) if spherical else X
    a, b = inertia(Xo, ours), inertia(Xo, rust)
    print(f"seed={SEED} {metric}: inertia torch {a:.6g} rust {b:.6g} ratio {a / b:.4f}")
    assert a <= b * (1 + MAX_INERTIA_EXCESS), (
        f"{metric}: torch k-means inertia {a:.6g} exceeds Rust's {b:.6g} by more than "
        f"{MAX_INERTIA_EXCESS:.0%} (seed {SEED})"
    )
    if spherical:
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=1e-5)


def test_device_trained_index_saves_and_pickles(data, tmp_path):
    X, Q = data
    ix = ivf("cosine", "pq", "cpu")
    ix.add(X)
    assert "device='cpu'" in repr(ix)
    want = ix.search(Q, 10)
    path = tmp_path / "ivf.knn"
    ix.save(path)
    for back in (knnkit.load(path), pickle.loads(pickle.dumps(ix))):
        assert isinstance(back, knnkit.IVFIndex) and back.device is None
        got = back.search(Q, 10)
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_array_equal(got.distances, want.distances)
    # A loaded index needs no torch.
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np, knnkit\n"
        f"ix = knnkit.load({str(path)!r})\n"
        f"Q = np.load({str(tmp_path / 'q.npy')!r})\n"
        "print(ix.search(Q, 10).ids[0].tolist())\n"
    )
    np.save(tmp_path / "q.npy", Q)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(want.ids[0].tolist())


def test_device_is_kept_by_reset_and_the_factory(data):
    X, _ = data
    ix = knnkit.index_factory(32, "IVF16,SQ8", device="cpu")
    assert isinstance(ix, knnkit.IVFIndex) and ix.device == torch.device("cpu")
    ix.add(X[:500])
    ix.reset()
    assert ix.device == torch.device("cpu") and not ix.is_trained
    ix.add(X[:500])
    assert ix.is_trained and len(ix) == 500
    with pytest.raises(ValueError, match="trained"):
        ix.train(X[:500])


@pytest.mark.parametrize("device", ["nonsense-device", "cuda:63"])
def test_bad_device_is_named(device):
    if device.startswith("cuda") and torch.cuda.device_count() > 63:
        pytest.skip("a machine with 64 CUDA devices")
    with pytest.raises(ValueError, match=device):
        knnkit.IVFIndex(8, nlist=4, device=device)


def test_default_index_does_not_import_torch():
    code = (
        "import sys, numpy as np, knnkit\n"
        "ix = knnkit.IVFIndex(8, nlist=4)\n"
        "ix.add(np.random.default_rng(0).random((64, 8), dtype=np.float32))\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_native_train_checks_given_centroids(data):
    X, _ = data
    ix = knnkit._core.Ivf(32, "euclidean", 8, "flat")
    with pytest.raises(ValueError, match="centroids"):
        ix.train(X, 1, np.zeros((7, 32), np.float32))
    with pytest.raises(ValueError, match="features|dimension"):
        ix.train(X, 1, np.zeros((8, 31), np.float32))
    bad = np.zeros((8, 32), np.float32)
    bad[3, 4] = np.inf
    with pytest.raises(ValueError, match="finite"):
        ix.train(X, 1, bad)
    assert not ix.is_trained()
    C = kmeans(X, 8, seed=1, device="cpu")
    ix.train(X, 1, C)
    np.testing.assert_array_equal(centroids(ix), C.ravel())


def test_kmeans_edge_cases():
    rng = np.random.default_rng(0)
    # Five distinct points, eight centroids: empty clusters split the largest ones.
    X = np.repeat(rng.normal(size=(5, 4)).astype(np.float32), 20, axis=0)
    C = kmeans(X, 8, seed=0, device="cpu")
    assert C.shape == (8, 4) and np.isfinite(C).all()
    assert len({tuple(r) for r in C}) == 8, "split centroids are nudged apart"
    # Seeded; tensors accepted; sampling down to k * max_points_per_centroid rows.
    Y = rng.normal(size=(3000, 6)).astype(np.float32)
    a = kmeans(Y, 10, seed=3, device="cpu", max_points_per_centroid=50)
    b = kmeans(
        torch.from_numpy(Y), 10, seed=3, device=torch.device("cpu"), max_points_per_centroid=50
    )
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, kmeans(Y, 10, seed=4, device="cpu", max_points_per_centroid=50))
    # Zero rows stay zero under spherical normalisation; no NaN.
    Z = np.vstack([np.zeros((10, 6), np.float32), Y[:100]])
    assert np.isfinite(kmeans(Z, 4, seed=0, spherical=True, device="cpu")).all()
    with pytest.raises(ValueError, match="at least k=10"):
        kmeans(Y[:5], 10, device="cpu")
    with pytest.raises(ValueError, match="finite"):
        kmeans(np.full((20, 3), np.nan, np.float32), 2, device="cpu")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_cuda_training_gives_a_cpu_index(data, metric):
    X, Q = data
    truth = exact_ids(X, Q, metric)
    rust = ivf(metric, "sq8")
    rust.add(X)
    ix = ivf(metric, "sq8", "cuda")
    ix.add(X)
    r_rust = recall_at_k(rust.search(Q, 10).ids, truth)
    r_cuda = recall_at_k(ix.search(Q, 10).ids, truth)
    assert r_cuda >= r_rust - MAX_RECALL_GAP, (
        f"{metric}: cuda-trained recall@10 {r_cuda:.3f} vs Rust-trained {r_rust:.3f}"
    )
    back = pickle.loads(pickle.dumps(ix))
    assert back.device is None
    np.testing.assert_array_equal(back.search(Q, 10).ids, ix.search(Q, 10).ids)
    C_cpu = kmeans(X, 32, seed=0, device="cpu")
    C_gpu = kmeans(torch.from_numpy(X).cuda(), 32, seed=0, device="cuda")
    assert inertia(X, C_gpu) <= inertia(X, C_cpu) * (1 + MAX_INERTIA_EXCESS)
