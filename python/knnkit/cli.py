"""``knnkit`` command line: ``knnkit demo``, ``knnkit info FILE``."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any


def _best_time(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def demo(args: argparse.Namespace) -> int:
    """The main job end to end on scikit-learn's handwritten digits."""
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    import knnkit
    from knnkit.model_selection import select_k
    from knnkit.neighbors import KNeighborsClassifier, NearestNeighbors
    from knnkit.patch import sklearn_original

    # scikit-learn's own class even when knnkit.patch_sklearn() is in effect
    SkKNeighborsClassifier = sklearn_original("KNeighborsClassifier")

    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    print(f"knnkit {knnkit.__version__} — kernels: {knnkit.simd_level()}")
    print(
        f"data: scikit-learn digits, {X_tr.shape[0]} train / {X_te.shape[0]} test, {X.shape[1]} features\n"
    )

    print("1. KNeighborsClassifier(n_neighbors=5), fit + predict (best of 3)")
    rows = []
    for name, cls in (("knnkit", KNeighborsClassifier), ("scikit-learn", SkKNeighborsClassifier)):
        t, pred = _best_time(lambda cls=cls: cls(n_neighbors=5).fit(X_tr, y_tr).predict(X_te))
        rows.append((name, t, float((pred == y_te).mean()), pred))
    for name, t, acc, _ in rows:
        print(f"   {name:<13} accuracy {acc:.4f}   time {t * 1e3:8.2f} ms")
    same = bool((rows[0][3] == rows[1][3]).all())
    print(f"   same predictions: {same};  speed-up {rows[1][1] / rows[0][1]:.1f}x\n")

    print("2. choose K by 5-fold cross-validation (one neighbour search per fold)")
    t0 = time.perf_counter()
    table = select_k(X_tr, y_tr, ks=range(1, 22, 2), cv=5)
    print("   " + str(table).replace("\n", "\n   "))
    print(f"   best K = {table.best_k} ({time.perf_counter() - t0:.2f} s)")
    clf = KNeighborsClassifier(n_neighbors=table.best_k).fit(X_tr, y_tr)
    print(f"   test accuracy with K={table.best_k}: {clf.score(X_te, y_te):.4f}\n")

    print("3. nearest-neighbour query: the 5 training digits closest to the first test digit")
    nn = NearestNeighbors(n_neighbors=5).fit(X_tr)
    dist, ind = nn.kneighbors(X_te[:1])
    print(f"   query label {y_te[0]}; neighbours' labels {y_tr[ind[0]].tolist()}")
    print(f"   distances {[round(float(d), 2) for d in dist[0]]}\n")

    # Digits is small enough that fixed costs dominate. At MNIST's shape the engine shows.
    n, nq = (60_000, 1_000) if not args.quick else (6_000, 200)
    print(f"4. MNIST shape: {n:,} x 784 training digits, {nq:,} queries, k=5")
    print("   (28x28 images: the train/test digits above upscaled from 8x8, with pixel noise)")
    big_tr, ybig_tr = _mnist_shaped(X_tr, y_tr, n, seed=0)
    big_te, ybig_te = _mnist_shaped(X_te, y_te, nq, seed=1)
    rows = []
    for name, cls in (("knnkit", KNeighborsClassifier), ("scikit-learn", SkKNeighborsClassifier)):
        clf = cls(n_neighbors=5, algorithm="brute").fit(big_tr, ybig_tr)
        t, pred = _best_time(lambda clf=clf: clf.predict(big_te), repeat=2)
        rows.append((name, t, float((pred == ybig_te).mean()), pred))
    for name, t, acc, _ in rows:
        print(f"   {name:<13} accuracy {acc:.4f}   predict {t * 1e3:8.1f} ms")
    same_big = bool((rows[0][3] == rows[1][3]).all())
    print(f"   same predictions: {same_big};  speed-up {rows[1][1] / rows[0][1]:.1f}x\n")
    recall = _approximate(big_tr, big_te)
    return 0 if same and same_big and recall >= 0.9 else 1


def _approximate(X, Q) -> float:
    """Section 5: an HNSW index on the MNIST-shaped set, one query per call, against exact."""
    import numpy as np

    import knnkit
    from knnkit.testing import recall_at_k

    print(f"5. approximate search: HNSW (m=16, SQ8 traversal) on the same {len(X):,} images")
    t = time.perf_counter()
    ix = knnkit.HNSWIndex(X.shape[1], m=16, ef_construction=100)
    ix.add(X)
    build = time.perf_counter() - t
    exact = knnkit.FlatIndex(X.shape[1])
    exact.add(X)
    rows = []
    for name, search in (
        ("exact FlatIndex", lambda q: exact.search(q, 10, n_jobs=1)),
        ("HNSWIndex ef=32", lambda q: ix.search(q, 10, ef_search=32, n_jobs=1)),
    ):
        t = time.perf_counter()
        ids = np.vstack([search(q[None]).ids for q in Q])
        rows.append((name, len(Q) / (time.perf_counter() - t), ids))
    recall = recall_at_k(rows[1][2], rows[0][2])
    print(f"   build {build:.1f} s; one query per call, 1 thread:")
    for name, qps, _ in rows:
        print(f"   {name:<16} {qps:9,.0f} queries/s")
    print(f"   recall@10 {recall:.3f};  speed-up {rows[1][1] / rows[0][1]:.0f}x")
    return recall


def _mnist_shaped(X, y, n: int, seed: int):
    """``n`` 784-feature float32 images: digits upscaled 8x8 -> 28x28 with pixel noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    pick = rng.integers(0, X.shape[0], size=n)
    imgs = X[pick].reshape(n, 8, 8)
    idx = np.minimum((np.arange(28) * 8) // 28, 7)
    up = imgs[:, idx][:, :, idx].reshape(n, 784)
    up = up + rng.normal(0, 2.0, size=up.shape).astype(np.float32)
    return np.clip(up, 0, 16).astype(np.float32), y[pick]


def info(args: argparse.Namespace) -> int:
    """Prints what an index file holds (validating it)."""
    import knnkit

    ix = knnkit.load(args.file, mmap=True)
    print(repr(ix))
    print(f"memory: {ix.memory_usage()} bytes")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="knnkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="fit, compare with scikit-learn, choose K, query (digits)")
    p_demo.add_argument("--quick", action="store_true", help="smaller MNIST-shaped section")
    p_info = sub.add_parser("info", help="describe an index file")
    p_info.add_argument("file")
    args = parser.parse_args(argv)
    return {"demo": demo, "info": info}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
