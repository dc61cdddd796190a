"""FlatIndex on its Rust core against the numpy-backed façade it replaced (issue 11): same engine,
same data, same run, interleaved; reports the ratio of the best of several repeats.

The previous façade is read from git (``--before`` commit, default the last commit before the
move) and runs on the current extension, whose ``knn_search`` it called; so the comparison is of
the index layer alone (storage, id mapping, filters, locking), not of the engine.

Usage: ``python benchmarks/bench_flat_core.py [--before cbd9b32] [--repeats 7]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import knnkit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_exact import cpu_description  # noqa: E402


def old_flat(commit: str):
    src = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{commit}:python/knnkit/index/flat.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "old_flat.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("old_flat", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.FlatIndex


def datasets(rng):
    g = rng.normal(size=(50_000, 128)).astype(np.float32)
    lowrank = (rng.random((20_000, 16)) @ rng.random((16, 784)) * 30).astype(np.float32)
    out = {"gaussian 50k x 128 (l2)": (g, "euclidean")}
    out["non-centred low-rank 20k x 784 (l2)"] = (lowrank, "euclidean")
    words = ROOT.parent / "shared" / "data" / "words_minilm.npz"
    if words.exists():
        out["words_minilm 100k x 384 (cosine)"] = (
            np.load(words)["base"].astype(np.float32),
            "cosine",
        )
    return out


def best(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def interleaved(f, old, new, repeats):
    """Best times of ``f(old)`` and ``f(new)``, run alternately."""
    to, tn = [], []
    for _ in range(repeats):
        to.append(best(lambda: f(old), 1))
        tn.append(best(lambda: f(new), 1))
    return min(to), min(tn)


def run(name, X, metric, Old, repeats, rng) -> None:
    Q = X[rng.choice(len(X), 200, replace=False)] + 0.01
    dim = X.shape[1]
    t_old, t_new = interleaved(lambda cls: cls(dim, metric).add(X), Old, knnkit.FlatIndex, 3)
    rows = [("add all rows", t_old, t_new)]
    new, old = knnkit.FlatIndex(dim, metric), Old(dim, metric)
    new.add(X)
    old.add(X)
    allowed = np.arange(0, len(X), 3)
    cases = {
        "search 1 query, k=10": lambda ix: ix.search(Q[:1], 10, n_jobs=2),
        "search 10 queries, k=10": lambda ix: ix.search(Q[:10], 10, n_jobs=2),
        "search 200 queries, k=10": lambda ix: ix.search(Q, 10, n_jobs=2),
        "filtered (1/3 of ids), 10 queries": lambda ix: ix.search(
            Q[:10], 10, filter=allowed, n_jobs=2
        ),
    }
    for label, f in cases.items():
        np.testing.assert_array_equal(f(old)[1], f(new)[1])
        rows.append((label, *interleaved(f, old, new, repeats)))
    for label, to, tn in rows:
        print(f"| {name} | {label} | {to * 1e3:.2f} | {tn * 1e3:.2f} | {tn / to:.2f} |")
    sys.stdout.flush()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", default="cbd9b32")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    Old = old_flat(args.before)
    rng = np.random.default_rng(0)
    print(f"CPU: {cpu_description()}; SIMD level {knnkit.simd_level()}; threads 2")
    print("| data | operation | before (ms) | now (ms) | now / before |")
    print("|---|---|---|---|---|")
    for name, (X, metric) in datasets(rng).items():
        run(name, X, metric, Old, args.repeats, rng)


if __name__ == "__main__":
    main()
