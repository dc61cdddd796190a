"""k-means on a torch device: the coarse quantizer of ``IVFIndex(device=...)``.

Design. The algorithm of the Rust trainer (``crates/knnkit-core/src/kmeans.rs``), as tensor
operations: at most ``max_points_per_centroid * k`` rows are sampled (seeded, on the host, before
the copy to the device); k-means++ seeding (direct distances); Lloyd iterations whose assignment step is the nearest
centroid by squared euclidean distance in the expanded form ``|x|^2 - 2 x.c + |c|^2`` (one matrix
product per chunk of rows; ``|x|^2`` is the same for every centroid and left out of the argmin);
updates are ``index_add_`` sums and ``bincount`` counts. An empty cluster takes over half of the
largest one (its centroid copied and nudged apart by a relative 1e-4, random sign per
coordinate), as in Rust. ``spherical=True`` normalises the rows once and the centroids after
seeding and after every update (cosine: spherical k-means).

All randomness comes from one ``numpy.random.default_rng(seed)``, so a seed gives the same
sample and the same seeding choices on every device; the centroids are not bit for bit those of
the Rust trainer (other random stream, float32 sums), but of the same quality (the tests compare
the inertia).

Cost: seeding ``k`` matrix-vector products over at most ``32 k`` rows of the sample (``n * k * d`` multiply-adds, run
one centroid at a time, as in Rust), then ``iterations * n * k * d`` for the assignments.
Memory on the device: the sample (``n * d`` float32), the centroids, and one
``chunk x k`` float32 distance block sized from ``memory_budget``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from knnkit._validation import check_positive_int
from knnkit.backends.torch import _is_tensor, _torch, resolve_device

#: Rows per centroid k-means++ seeding draws from (at most), as the Rust trainer.
SEED_PER_CENTROID = 32

#: Default working memory (bytes) of one assignment block (``chunk x k`` distances).
DEFAULT_MEMORY_BUDGET = 256 * 2**20


def _normalize_rows(torch: Any, C: Any) -> Any:
    """Rows scaled to unit length; zero rows stay zero (as Rust's ``normalize``)."""
    n = torch.linalg.vector_norm(C, dim=1, keepdim=True)
    return torch.where(n > 0, C / torch.where(n > 0, n, torch.ones_like(n)), C)


def _assign(torch: Any, X: Any, C: Any, chunk: int) -> Any:
    """Index of the nearest row of ``C`` for every row of ``X`` (squared euclidean)."""
    cn = (C * C).sum(1)
    labels = torch.empty(X.shape[0], dtype=torch.int64, device=X.device)
    for a in range(0, X.shape[0], chunk):
        # |c|^2 - 2 x.c: the argmin of |x - c|^2 without the per-row constant |x|^2.
        D = torch.addmm(cn[None, :], X[a : a + chunk], C.T, beta=1.0, alpha=-2.0)
        labels[a : a + chunk] = D.argmin(1)
    return labels


def _plus_plus(torch: Any, X: Any, k: int, rng: np.random.Generator) -> Any:
    """k-means++ seeding: each next centroid drawn with probability proportional to the squared
    distance to the nearest one chosen so far (no host round trip per step)."""
    n = X.shape[0]
    u = torch.from_numpy(rng.random(k)).to(device=X.device, dtype=X.dtype)
    fallback = torch.from_numpy(rng.integers(0, n, size=k)).to(X.device)
    picks = torch.empty(k, dtype=torch.int64, device=X.device)
    picks[0] = fallback[0]
    best = torch.full((n,), float("inf"), dtype=X.dtype, device=X.device)
    for j in range(1, k):
        # Direct |x - c| (no BLAS matrix-vector product: on the CPU, alternating MKL and
        # ATen thread pools costs milliseconds of spin-waiting per step; exact, too).
        c = X[picks[j - 1]][None]
        d = torch.cdist(X, c, compute_mode="donot_use_mm_for_euclid_dist")[:, 0]
        torch.minimum(best, d.square_(), out=best)
        cum = torch.cumsum(best, 0)
        total = cum[-1]
        pick = torch.searchsorted(cum, (u[j] * total).reshape(1)).clamp_(max=n - 1)[0]
        picks[j] = torch.where(total > 0, pick, fallback[j])
    return X[picks].clone()


def kmeans(
    X: Any,
    k: int,
    *,
    seed: int = 0,
    spherical: bool = False,
    device: Any = "cpu",
    max_points_per_centroid: int = 256,
    iterations: int = 10,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> np.ndarray:
    """``k`` centroids of the rows of ``X`` trained on the torch ``device``.

    Parameters
    ----------
    X : array-like or torch.Tensor of shape (n, d)
        Training rows (``n >= k``); converted to float32.
    k : int
        Number of centroids.
    seed : int, default=0
        Seed of the sample and of the k-means++ choices.
    spherical : bool, default=False
        Normalise the rows, and the centroids after every update (spherical k-means, for
        cosine).
    device : str or torch.device, default="cpu"
        Where to run (checked with :func:`knnkit.backends.torch.resolve_device`).
    max_points_per_centroid : int, default=256
        At most ``k * max_points_per_centroid`` rows (a seeded sample) are used.
    iterations : int, default=10
        Lloyd iterations.
    memory_budget : int, default=256 MiB
        Bytes of one block of assignment distances.

    Returns
    -------
    numpy.ndarray of shape (k, d), float32
    """
    torch = _torch()
    dev = resolve_device(device)
    k = check_positive_int(k, "k")
    cap = check_positive_int(max_points_per_centroid, "max_points_per_centroid")
    if (
        isinstance(iterations, bool)
        or not isinstance(iterations, (int, np.integer))
        or iterations < 0
    ):
        raise ValueError(f"iterations: expected a non-negative integer, got {iterations!r}")
    rng = np.random.default_rng(seed)
    if _is_tensor(X):
        if X.ndim != 2:
            raise ValueError(f"X: expected a 2-d tensor, got shape {tuple(X.shape)}")
        n = X.shape[0]
    else:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2:
            raise ValueError(f"X: expected a 2-d array, got shape {X.shape}")
        n = X.shape[0]
    if n < k:
        raise ValueError(f"X: expected at least k={k} vectors (one per centroid), got {n}")
    if n > k * cap:
        rows = np.sort(rng.choice(n, size=k * cap, replace=False))
        X = X[torch.from_numpy(rows).to(X.device)] if _is_tensor(X) else X[rows]
    if _is_tensor(X):
        Xd = X.detach().to(device=dev, dtype=torch.float32).contiguous()
    else:
        Xd = torch.from_numpy(np.ascontiguousarray(X)).to(dev)
    if not bool(torch.isfinite(Xd).all()):
        raise ValueError("X: expected finite values")
    if spherical:
        Xd = _normalize_rows(torch, Xd)
    n, d = Xd.shape
    chunk = max(1, int(memory_budget) // (3 * 4 * k))
    with torch.no_grad():
        # k-means++ is k sequential passes: seed on at most SEED_PER_CENTROID rows per
        # centroid (as the Rust trainer); Lloyd runs on the whole sample
        seed_rows = Xd
        if n > k * SEED_PER_CENTROID:
            pick = np.sort(rng.choice(n, size=k * SEED_PER_CENTROID, replace=False))
            seed_rows = Xd[torch.from_numpy(pick).to(Xd.device)]
        C = _plus_plus(torch, seed_rows, k, rng)
        if spherical:
            C = _normalize_rows(torch, C)
        for _ in range(int(iterations)):
            labels = _assign(torch, Xd, C, chunk)
            sums = torch.zeros_like(C).index_add_(0, labels, Xd)
            counts = torch.bincount(labels, minlength=k)
            filled = counts > 0
            C = torch.where(filled[:, None], sums / counts.clamp_min(1)[:, None].to(C.dtype), C)
            empty = np.flatnonzero(~filled.cpu().numpy())
            if empty.size:
                C, counts = C.clone(), counts.cpu().numpy().copy()
                for j in empty:
                    # The largest cluster (lowest index among ties) gives half its points.
                    big = int(np.argmax(counts))
                    c = C[big].clone()
                    eps = torch.where(c == 0, torch.full_like(c, 1e-6), c.abs() * 1e-4)
                    sign = torch.from_numpy(
                        np.where(rng.integers(0, 2, size=d) == 0, 1.0, -1.0).astype(np.float32)
                    ).to(dev)
                    C[j] = c + sign * eps
                    C[big] = c - sign * eps
                    counts[j] = counts[big] // 2
                    counts[big] -= counts[j]
            if spherical:
                C = _normalize_rows(torch, C)
    return np.ascontiguousarray(C.cpu().numpy(), dtype=np.float32)


__all__ = ["DEFAULT_MEMORY_BUDGET", "kmeans"]
