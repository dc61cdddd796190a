"""Prints digests of knnkit's results on data full of near-ties, one line per engine family, so
that tests/test_cpu_independence.py can compare runs under different ``KNNKIT_SIMD`` and
``ATEN_CPU_CAPABILITY`` settings (run as a script in a subprocess)."""

from __future__ import annotations

import hashlib
import sys

import numpy as np


def datasets():
    rng = np.random.default_rng(13)
    grid = rng.integers(0, 3, size=(240, 6)) + 0.1 * rng.integers(0, 2, size=(240, 6))
    yield "grid.1", grid  # ties in the reals, near-ties after rounding
    yield "uniform", rng.uniform(size=(150, 40))
    yield "int", rng.integers(0, 3, size=(200, 5)).astype(float)  # exact ties
    # far from the origin (the euclidean tiles shift it by its mean) and 8-bit pixels
    yield "offset", 1000 + grid[:160]
    yield "pixels", rng.integers(0, 256, size=(160, 64)).astype(float)


def digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()[:16]


def native() -> str:
    from knnkit.neighbors import KNeighborsClassifier, LocalOutlierFactor, NearestNeighbors

    out = []
    for _name, X in datasets():
        y = np.arange(len(X)) % 4
        for dtype in (np.float32, np.float64):
            Xd = X.astype(dtype)
            for algorithm in ("brute", "kd_tree", "ball_tree"):
                for metric in ("euclidean", "manhattan", "chebyshev", "minkowski", "cosine"):
                    if metric == "cosine" and algorithm != "brute":
                        continue
                    nn = NearestNeighbors(
                        n_neighbors=12, radius=1.5, algorithm=algorithm, metric=metric, p=3
                    ).fit(Xd)
                    d, i = nn.kneighbors(Xd[:40])
                    dn, iN = nn.kneighbors()
                    lims, rd, ri = nn.radius_neighbors(Xd[:40], return_csr=True, sort_results=True)
                    out.append(digest(d, i, dn, iN, lims, rd, ri))
            clf = KNeighborsClassifier(9, weights="distance").fit(Xd, y)
            lof = LocalOutlierFactor(n_neighbors=10).fit(Xd)
            out.append(
                digest(clf.predict(None), clf.predict_proba(Xd[:30]), lof.negative_outlier_factor_)
            )
    return digest(np.frombuffer("".join(out).encode(), dtype=np.uint8))


def torch_engine() -> str:
    from knnkit.neighbors import KNeighborsClassifier, KNeighborsRegressor, NearestNeighbors

    out = []
    for _name, X in datasets():
        y = np.arange(len(X)) % 4
        for dtype in (np.float32, np.float64):
            Xd = X.astype(dtype)
            for metric in ("euclidean", "manhattan", "chebyshev", "minkowski", "cosine"):
                nn = NearestNeighbors(n_neighbors=12, radius=1.5, metric=metric, p=3, device="cpu")
                nn.fit(Xd)
                d, i = nn.kneighbors(Xd[:40])
                dn, iN = nn.kneighbors()
                lims, rd, ri = nn.radius_neighbors(Xd[:40], return_csr=True, sort_results=True)
                out.append(digest(d, i, dn, iN, lims, rd, ri))
            clf = KNeighborsClassifier(9, weights="distance", device="cpu").fit(Xd, y)
            reg = KNeighborsRegressor(9, weights="distance", device="cpu").fit(Xd, y * 0.1)
            out.append(digest(clf.predict(None), clf.predict_proba(Xd[:30]), reg.predict(Xd[:30])))
    return digest(np.frombuffer("".join(out).encode(), dtype=np.uint8))


if __name__ == "__main__":
    import knnkit

    print("simd", knnkit.simd_level())
    if "--native" in sys.argv:
        print("native", native())
    if "--torch" in sys.argv:
        import torch

        print("torch", torch.backends.cpu.get_cpu_capability())
        print("torch_engine", torch_engine())
