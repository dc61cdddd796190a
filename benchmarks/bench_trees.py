"""Tree benchmark: knnkit KDTree/BallTree against scikit-learn's, build and k=10 query time.

Same machine, same process, same data. scikit-learn's tree build and queries are single-threaded,
so knnkit is measured twice: with one thread (the like-for-like ratio) and with every core. The
contenders of each case run interleaved, R times; the best time of each is kept. Results are
checked against scikit-learn's (distances equal) before they are timed.

Data: uniform in [0, 1)^d, and clustered (50 Gaussian blobs, sigma 0.02, centres uniform), seed 0;
n = 100,000 points (and 1,000,000 for d = 2, 4 with ``--large``), 10,000 queries from the same
distribution, k = 10, leaf_size = 40, euclidean.

Prints a table with ratios (scikit-learn time / knnkit time: above 1 is faster) and writes
benchmarks/results/trees.json and trees.txt; a full run (not ``--quick``) also writes the table
into docs/benchmarks.md between the ``trees`` markers (``make bench-trees``).
Usage: ``python benchmarks/bench_trees.py [--quick] [--large] [--dims 2 4]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import sklearn
import sklearn.neighbors as skn

import knnkit
from knnkit.neighbors import BallTree, KDTree

ROOT = Path(__file__).resolve().parent.parent
K = 10
TREES = {"KDTree": (KDTree, skn.KDTree), "BallTree": (BallTree, skn.BallTree)}


def make_data(kind: str, n: int, nq: int, d: int):
    rng = np.random.default_rng(0)
    if kind == "uniform":
        return rng.random((n, d)), rng.random((nq, d))
    centres = rng.random((50, d))

    def draw(m):
        return centres[rng.integers(0, 50, m)] + 0.02 * rng.standard_normal((m, d))

    return draw(n), draw(nq)


def timed(f):
    t0 = time.perf_counter()
    out = f()
    return time.perf_counter() - t0, out


def run_case(tree: str, data_kind: str, n: int, d: int, nq: int, reps: int, cores: int) -> dict:
    ours, theirs = TREES[tree]
    X, Q = make_data(data_kind, n, nq, d)
    builds = {
        "scikit-learn": lambda: theirs(X),
        "knnkit 1 thread": lambda: ours(X, n_jobs=1),
        f"knnkit {cores} threads": lambda: ours(X, n_jobs=-1),
    }
    sk_tree, kk_tree = theirs(X), ours(X)
    # Same answers before timing anything.
    d_ref, _ = sk_tree.query(Q[:500], k=K)
    d_got, _ = kk_tree.query(Q[:500], k=K)
    np.testing.assert_allclose(d_got, d_ref, rtol=1e-12)
    queries = {
        "scikit-learn": lambda: sk_tree.query(Q, k=K),
        "knnkit 1 thread": lambda: kk_tree.query(Q, k=K, n_jobs=1),
        f"knnkit {cores} threads": lambda: kk_tree.query(Q, k=K, n_jobs=-1),
    }
    build_t = {name: float("inf") for name in builds}
    query_t = {name: float("inf") for name in queries}
    for _ in range(reps):  # interleaved: every contender once per round
        for name, f in builds.items():
            build_t[name] = min(build_t[name], timed(f)[0])
        for name, f in queries.items():
            query_t[name] = min(query_t[name], timed(f)[0])
    return {
        "tree": tree,
        "data": data_kind,
        "n": n,
        "d": d,
        "n_queries": nq,
        "k": K,
        "build_s": build_t,
        "query_s": query_t,
    }


def header() -> None:
    head = (
        f"{'tree':9} {'data':9} {'n':>9} {'d':>3} | {'build sk':>9} {'1 thr':>7} {'all':>7} "
        f"{'x1':>6} {'xall':>6} | {'query sk':>9} {'1 thr':>8} {'all':>8} {'x1':>6} {'xall':>6}"
    )
    print(head)
    print("-" * len(head))


def report(results: list[dict], cores: int) -> None:
    one, many = "knnkit 1 thread", f"knnkit {cores} threads"
    for r in results:
        b, q = r["build_s"], r["query_s"]
        sk_b, sk_q = b["scikit-learn"], q["scikit-learn"]
        print(
            f"{r['tree']:9} {r['data']:9} {r['n']:>9} {r['d']:>3} | "
            f"{sk_b * 1e3:8.1f}m {b[one] * 1e3:6.1f}m {b[many] * 1e3:6.1f}m "
            f"{sk_b / b[one]:5.2f}x {sk_b / b[many]:5.2f}x | "
            f"{sk_q * 1e3:8.0f}m {q[one] * 1e3:7.0f}m {q[many] * 1e3:7.0f}m "
            f"{sk_q / q[one]:5.2f}x {sk_q / q[many]:5.2f}x",
            flush=True,
        )


def markdown(results: list[dict], cores: int, meta: dict) -> str:
    """The docs table: times in ms, ratios = scikit-learn time / knnkit time."""
    one, many = "knnkit 1 thread", f"knnkit {cores} threads"
    lines = [
        f"KD-tree and ball tree against scikit-learn {meta['scikit_learn']}'s, euclidean, "
        f"k = {K}, leaf_size = 40, {meta['n_queries']:,} queries from the data's distribution "
        f"(uniform in [0, 1)^d, or 50 Gaussian clusters, sigma 0.02; seed 0). knnkit kernels: "
        f"**{meta['simd']}**; {cores} cores. scikit-learn's trees are single-threaded: the "
        f"x1 columns compare one knnkit thread with it, the x{cores} columns all {cores} "
        f"threads. Times in ms, best of {meta['repeats']} interleaved repeats; ratios = "
        "scikit-learn time / knnkit time (above 1: knnkit is faster).",
        "",
        "| tree | data | n | d | build sklearn | build x1 | build "
        f"x{cores} | query sklearn | query knnkit 1 thread | query x1 | query "
        f"knnkit {cores} threads | query x{cores} |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        b, q = r["build_s"], r["query_s"]
        lines.append(
            f"| {r['tree']} | {r['data']} | {r['n']:,} | {r['d']} | "
            f"{b['scikit-learn'] * 1e3:.1f} | {b['scikit-learn'] / b[one]:.2f}× | "
            f"{b['scikit-learn'] / b[many]:.2f}× | {q['scikit-learn'] * 1e3:.1f} | "
            f"{q[one] * 1e3:.1f} | **{q['scikit-learn'] / q[one]:.2f}×** | "
            f"{q[many] * 1e3:.1f} | {q['scikit-learn'] / q[many]:.2f}× |"
        )
    low = [
        r["query_s"]["scikit-learn"] / r["query_s"][one]
        for r in results
        if r["n"] == 100_000 and r["d"] in (2, 4)
    ]
    if low:
        met = "met" if min(low) >= 3.0 else "NOT met"
        lines += [
            "",
            f"Target: single-thread queries at d = 2 and 4 (n = 100,000) ≥ 3× scikit-learn: "
            f"**{min(low):.2f}×–{max(low):.2f}×** — {met}.",
        ]
    return "\n".join(lines)


def write_doc(table: str) -> None:
    doc = ROOT / "docs" / "benchmarks.md"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    start, end = "<!-- trees:start -->", "<!-- trees:end -->"
    block = f"{start}\n{table}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + (
            f"\n\n## KD-tree and ball tree (`make bench-trees`)\n\n{block}\n"
        )
    doc.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2,000 queries, 2 rounds")
    ap.add_argument("--large", action="store_true", help="also n = 1,000,000 for d = 2, 4")
    ap.add_argument("--dims", type=int, nargs="*", default=[2, 4, 8, 16])
    args = ap.parse_args()
    nq, reps = (2_000, 2) if args.quick else (10_000, 3)
    cores = os.cpu_count() or 1
    cases = [(n, d) for d in args.dims for n in [100_000]]
    if args.large:
        cases += [(1_000_000, d) for d in args.dims if d <= 4]
    results = []
    title = (
        f"knnkit {knnkit.__version__} (SIMD: {knnkit.simd_level()}), scikit-learn "
        f"{sklearn.__version__}, {cores} cores, {platform.processor() or platform.machine()}; "
        f"k={K}, {nq} queries, best of {reps}; times in ms ('m'); ratios = sklearn / knnkit\n"
    )
    print(title)
    header()
    for n, d in cases:
        for data_kind in ("uniform", "clustered"):
            for tree in TREES:
                results.append(run_case(tree, data_kind, n, d, nq, reps, cores))
                report(results[-1:], cores)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "knnkit": knnkit.__version__,
        "simd": knnkit.simd_level(),
        "scikit_learn": sklearn.__version__,
        "cores": cores,
        "machine": platform.machine(),
        "n_queries": nq,
        "repeats": reps,
        "note": "scikit-learn's trees are single-threaded; x1 compares at one thread each",
    }
    (out / "trees.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        print(title)
        header()
        report(results, cores)
    (out / "trees.txt").write_text(buf.getvalue())
    if not args.quick:
        write_doc(markdown(results, cores, meta))


if __name__ == "__main__":
    main()
