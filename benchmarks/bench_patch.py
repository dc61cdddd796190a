"""``knnkit.patch_sklearn()`` benchmark: scikit-learn's own estimators (and imbalanced-learn's
SMOTE), unpatched and patched, in one process on the same data.

Each case runs unpatched then patched, alternately, R times (``--reps``); the best time of
each is kept, and the outputs of the two are checked to agree (labels equal, embeddings within
1e-7 of their scale) before any time is reported. Thread counts are left as each library sets
them (scikit-learn's trees run one thread, its brute force and knnkit all cores), as a user
would run them.

Prints a table of times and ratios (unpatched time / patched time: above 1 is faster
patched) and writes benchmarks/results/patch.json. Usage:
``python benchmarks/bench_patch.py [--quick] [--reps R]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
from sklearn import cluster, impute, manifold, neighbors
from sklearn.datasets import make_blobs, make_classification, make_swiss_roll

import knnkit

ROOT = Path(__file__).resolve().parent.parent


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cases(scale: float) -> list[tuple[str, str, callable, str]]:
    """(name, data description, run, how outputs are compared)."""
    n = int(20_000 * scale)
    Xb, _ = make_blobs(n, n_features=8, centers=10, cluster_std=2.0, random_state=0)
    Xs, _ = make_swiss_roll(int(4_000 * scale), random_state=0)
    Xt, _ = make_blobs(int(1_500 * scale), n_features=30, centers=8, random_state=0)
    Xi = Xb[: int(10_000 * scale)].copy()
    Xi[np.random.default_rng(0).uniform(size=Xi.shape) < 0.1] = np.nan
    Xc, yc = make_classification(n, n_features=12, weights=[0.9, 0.1], random_state=0)
    out = [
        (
            "DBSCAN(eps=2.5, min_samples=10)",
            f"blobs {n} x 8",
            lambda: cluster.DBSCAN(eps=2.5, min_samples=10).fit(Xb).labels_,
            "equal",
        ),
        (
            "OPTICS(min_samples=10, max_eps=3)",
            f"blobs {n // 4} x 8",
            lambda: cluster.OPTICS(min_samples=10, max_eps=3.0).fit(Xb[: n // 4]).reachability_,
            "equal",
        ),
        (
            "LocalOutlierFactor(n_neighbors=20)",
            f"blobs {n} x 8",
            lambda: neighbors.LocalOutlierFactor(n_neighbors=20).fit(Xb).negative_outlier_factor_,
            "close",
        ),
        (
            "Isomap(n_neighbors=10)",
            f"swiss roll {Xs.shape[0]} x 3",
            lambda: manifold.Isomap(n_neighbors=10).fit_transform(Xs),
            "close",
        ),
        (
            "SpectralEmbedding(affinity='nearest_neighbors')",
            f"swiss roll {Xs.shape[0]} x 3",
            lambda: (
                manifold.SpectralEmbedding(affinity="nearest_neighbors", random_state=0)
                .fit(Xs)
                .affinity_matrix_.toarray()
            ),
            "equal",
        ),
        (
            "TSNE(method='barnes_hut', max_iter=250)",
            f"blobs {Xt.shape[0]} x 30",
            lambda: manifold.TSNE(max_iter=250, random_state=0, init="pca").fit_transform(Xt),
            "close",
        ),
        (
            "KNNImputer(n_neighbors=5)",
            f"blobs {Xi.shape[0]} x 8, 10 % missing",
            lambda: impute.KNNImputer(n_neighbors=5).fit_transform(Xi),
            "close",
        ),
        (
            "KNeighborsClassifier(5).fit.predict",
            f"blobs {n} x 8",
            lambda: neighbors.KNeighborsClassifier(5).fit(Xb, np.arange(n) % 3).predict(Xb),
            "equal",
        ),
    ]
    try:
        from imblearn.over_sampling import SMOTE

        out.append(
            (
                "imblearn SMOTE(k_neighbors=5)",
                f"classification {n} x 12, 10 % minority",
                lambda: SMOTE(random_state=0).fit_resample(Xc, yc)[0],
                "equal",
            )
        )
    except ImportError:
        print("(imbalanced-learn is not installed: SMOTE skipped)")
    return out


def agree(a, b, how: str) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    if how == "equal":
        return bool(np.array_equal(a, b, equal_nan=True))
    scale = max(float(np.nanmax(np.abs(a))), 1.0)
    return bool(np.allclose(a, b, rtol=1e-7, atol=1e-7 * scale, equal_nan=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the data, one rep")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    reps = 1 if args.quick else args.reps
    warnings.simplefilter("ignore")
    env = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "simd": knnkit.simd_level(),
        "knnkit": knnkit.__version__,
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "quick": args.quick,
    }
    print(
        f"CPU: {env['cpu']} ({env['cores']} cores), knnkit kernels: {env['simd']}, "
        f"scikit-learn {env['scikit-learn']}"
    )
    rows = []
    header = f"{'estimator':48s} {'data':34s} {'unpatched s':>11s} {'patched s':>10s} {'ratio':>6s}"
    print(header)
    for name, data, run, how in cases(scale):
        best = {"unpatched": np.inf, "patched": np.inf}
        outputs = {}
        for _ in range(reps):
            for mode in ("unpatched", "patched"):
                if mode == "patched":
                    knnkit.patch_sklearn()
                try:
                    t0 = time.perf_counter()
                    outputs[mode] = run()
                    best[mode] = min(best[mode], time.perf_counter() - t0)
                finally:
                    knnkit.unpatch_sklearn()
        same = agree(outputs["unpatched"], outputs["patched"], how)
        if not same:
            raise SystemExit(f"{name}: patched and unpatched outputs differ ({how})")
        ratio = best["unpatched"] / best["patched"]
        rows.append(
            {
                "estimator": name,
                "data": data,
                "unpatched_s": best["unpatched"],
                "patched_s": best["patched"],
                "ratio": ratio,
                "outputs": how,
            }
        )
        print(
            f"{name:48s} {data:34s} {best['unpatched']:11.3f} {best['patched']:10.3f} {ratio:6.2f}"
        )
    out = ROOT / "benchmarks" / "results" / "patch.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"env": env, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
