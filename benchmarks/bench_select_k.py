"""select_k against GridSearchCV over n_neighbors: same scores, one neighbour search per fold.

Data: scikit-learn's digits (1,797 × 64) and an MNIST-shaped set built from them (20,000 × 784,
digits upscaled to 28×28 with pixel noise). K = 1, 3, …, 31 (16 values), 5-fold stratified CV,
uniform weights. Same run, same threads (all cores) for both. Writes a table into
docs/benchmarks.md between the ``select_k`` markers and benchmarks/results/select_k.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier as SkClassifier

from knnkit.cli import _mnist_shaped
from knnkit.model_selection import select_k
from knnkit.neighbors import KNeighborsClassifier

ROOT = Path(__file__).resolve().parent.parent
KS = list(range(1, 32, 2))


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main():
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    big_X, big_y = _mnist_shaped(X, y, 20_000, seed=0)
    rows = []
    for name, (A, b) in {
        "digits 1,797 × 64": (X, y),
        "MNIST-shaped 20,000 × 784": (big_X, big_y),
    }.items():
        t_sel, table = timed(lambda A=A, b=b: select_k(A, b, ks=KS, cv=5))
        contenders = {
            "GridSearchCV(knnkit KNeighborsClassifier)": KNeighborsClassifier(),
            "GridSearchCV(scikit-learn KNeighborsClassifier, brute)": SkClassifier(
                algorithm="brute"
            ),
        }
        for cname, est in contenders.items():
            grid = GridSearchCV(est, {"n_neighbors": KS}, cv=5)
            t_grid, grid = timed(lambda grid=grid, A=A, b=b: grid.fit(A, b))
            same = np.allclose(table.mean_scores, grid.cv_results_["mean_test_score"])
            rows.append(
                {
                    "data": name,
                    "contender": cname,
                    "select_k_s": t_sel,
                    "grid_s": t_grid,
                    "speedup": t_grid / t_sel,
                    "same_scores": bool(same),
                    "best_k": table.best_k,
                }
            )
    lines = [
        f"`select_k(X, y, ks=range(1, 32, 2), cv=5)` against a grid search over the same {len(KS)} "
        "values of K (5-fold stratified CV, uniform weights, all cores):",
        "",
        "| data | grid search | grid time | select_k time | speed-up | same mean scores | best K |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['data']} | {r['contender']} | {r['grid_s']:.2f} s | {r['select_k_s']:.2f} s | "
            f"{r['speedup']:.1f}× | {r['same_scores']} | {r['best_k']} |"
        )
    table = "\n".join(lines)
    print(table)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "select_k.json").write_text(json.dumps(rows, indent=2))
    doc = ROOT / "docs" / "benchmarks.md"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    start, end = "<!-- select_k:start -->", "<!-- select_k:end -->"
    block = f"{start}\n{table}\n{end}"
    if start in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text += f"\n## Choosing K (`benchmarks/bench_select_k.py`)\n\n{block}\n"
    doc.write_text(text)


if __name__ == "__main__":
    main()
