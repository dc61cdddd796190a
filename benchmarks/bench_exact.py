"""Exact k-NN benchmark: knnkit against scikit-learn brute force and faiss-cpu IndexFlatL2.

Same run, same data, same thread count for every contender; each is timed best-of-R with the
contenders interleaved. Prints a table with ratios and writes it into docs/benchmarks.md (between
the ``exact`` markers) and benchmarks/results/exact.json.

Data: 60,000 × 784 float32 base of MNIST shape (uniform random in [0, 1), seed 0), 10,000 queries
from the same distribution, k = 10. Usage: ``python benchmarks/bench_exact.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
N, D, NQ, K = 60_000, 784, 10_000, 10


def data(n=N, nq=NQ, d=D):
    rng = np.random.default_rng(0)
    return rng.random((n, d), dtype=np.float32), rng.random((nq, d), dtype=np.float32)


def best_of(fn, repeat):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def contenders(X, threads):
    """name -> (batch search fn(Q) -> (D, I), single-query fn(q) -> (D, I))."""
    import faiss
    from sklearn.neighbors import NearestNeighbors as SkNN
    from threadpoolctl import threadpool_limits

    import knnkit

    faiss.omp_set_num_threads(threads)
    fx = faiss.IndexFlatL2(X.shape[1])
    fx.add(X)
    kx = knnkit.FlatIndex(X.shape[1], metric="sqeuclidean")
    kx.add(X)
    sk = SkNN(n_neighbors=K, algorithm="brute", n_jobs=threads).fit(X)

    def sk_search(Q):
        with threadpool_limits(threads):
            return sk.kneighbors(Q)

    return {
        "knnkit FlatIndex": (lambda Q: kx.search(Q, K, n_jobs=threads), kx),
        "faiss-cpu IndexFlatL2": (lambda Q: fx.search(Q, K), fx),
        "scikit-learn brute": (sk_search, sk),
    }


def predict_speed(X, Q, threads, repeat):
    """KNeighborsClassifier.predict, knnkit vs scikit-learn (10 random classes, k = 10)."""
    from sklearn.neighbors import KNeighborsClassifier as SkClassifier
    from threadpoolctl import threadpool_limits

    from knnkit.neighbors import KNeighborsClassifier

    y = np.random.default_rng(1).integers(0, 10, size=X.shape[0])
    out = {}
    for name, cls in (("knnkit", KNeighborsClassifier), ("scikit-learn", SkClassifier)):
        clf = cls(n_neighbors=K, n_jobs=threads).fit(X, y)
        with threadpool_limits(threads):
            t, pred = best_of(
                lambda clf=clf: clf.predict(Q), 1 if name == "scikit-learn" else repeat
            )
        out[name] = {"qps": Q.shape[0] / t, "pred": pred}
    agree = float((out["knnkit"]["pred"] == out["scikit-learn"]["pred"]).mean())
    return {name: v["qps"] for name, v in out.items()} | {"agreement": agree}


def same_neighbours(I, ref):
    return float(np.mean([len(np.intersect1d(a, b)) / K for a, b in zip(I, ref, strict=True)]))


def peak_memory_child(which: str, threads: int) -> None:
    """Runs one 10k-query call in this (child) process; prints base size and peak RSS growth."""
    X, Q = data()
    search = contenders(X, threads)[which][0]
    search(Q[:16])  # warm-up: pools, lazy allocations
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    search(Q)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"extra_bytes": after - before}))


def peak_memory(which, threads):
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", which, "--threads", str(threads)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["extra_bytes"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="2,000 queries, 1 repeat (smoke run)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--memory-child")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.memory_child:
        return peak_memory_child(args.memory_child, args.threads)

    import knnkit

    nq = 2_000 if args.quick else NQ
    repeat = 1 if args.quick else args.repeat
    X, Q = data(nq=nq)
    from knnkit.testing import exact_knn

    _, truth = exact_knn(X, Q[:200], K)
    results = {
        "simd": knnkit.simd_level(),
        "cpu": platform.processor() or platform.machine(),
        "n": N,
        "d": D,
        "queries": nq,
        "k": K,
        "rows": [],
    }
    cores = os.cpu_count() or 1
    for threads in sorted({1, min(2, cores)}):
        cs = contenders(X, threads)
        batch = {name: float("inf") for name in cs}
        single = {name: float("inf") for name in cs}
        agree = {}
        n_single = 20 if args.quick else 100
        for r in range(repeat):
            for name, (search, _) in cs.items():
                if name.startswith("scikit") and r > 0 and not args.quick:
                    continue  # ~1 minute a run; one run is enough to place it
                t, (_, I) = best_of(lambda search=search: search(Q), 1)
                batch[name] = min(batch[name], t)
                agree[name] = same_neighbours(np.asarray(I)[:200], truth)
                m = n_single if not name.startswith("scikit") else 10
                t0 = time.perf_counter()
                for q in Q[:m]:
                    search(q[None, :])
                single[name] = min(single[name], (time.perf_counter() - t0) / m)
        pq = predict_speed(X, Q[:2000], threads, repeat)
        results.setdefault("predict", []).append({"threads": threads, **pq})
        for name in cs:
            mem = peak_memory(name, threads) if not args.quick else None
            results["rows"].append(
                {
                    "threads": threads,
                    "contender": name,
                    "batch_qps": nq / batch[name],
                    "single_qps": 1 / single[name],
                    "recall_vs_exact": agree[name],
                    "peak_extra_mb": None if mem is None else mem / 2**20,
                }
            )
    report(results)


def report(res):
    rows = res["rows"]
    lines = [
        f"Exact search, {res['n']:,} × {res['d']} float32 base, {res['queries']:,} queries, "
        f"k = {res['k']} (uniform random data, seed 0). CPU: {res['cpu']}; knnkit kernels: "
        f"**{res['simd']}**. Best of the repeats, contenders interleaved in one run.",
        "",
        "| threads | contender | batch QPS | vs faiss | vs sklearn | one query/call QPS | vs faiss "
        "| recall@10 vs exact | peak extra memory (10k-query call) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        peers = {x["contender"]: x for x in rows if x["threads"] == r["threads"]}
        f, s = peers["faiss-cpu IndexFlatL2"], peers["scikit-learn brute"]
        mem = "—" if r["peak_extra_mb"] is None else f"{r['peak_extra_mb']:.0f} MB"
        lines.append(
            f"| {r['threads']} | {r['contender']} | {r['batch_qps']:,.0f} | "
            f"{r['batch_qps'] / f['batch_qps']:.2f}× | {r['batch_qps'] / s['batch_qps']:.2f}× | "
            f"{r['single_qps']:,.0f} | {r['single_qps'] / f['single_qps']:.2f}× | "
            f"{r['recall_vs_exact']:.4f} | {mem} |"
        )
    lines += [
        "",
        "`KNeighborsClassifier(n_neighbors=10).predict` on the same base (10 random classes), "
        "2,000 queries:",
        "",
        "| threads | knnkit QPS | scikit-learn QPS | ratio | same predictions |",
        "|---|---|---|---|---|",
    ]
    for p in res.get("predict", []):
        lines.append(
            f"| {p['threads']} | {p['knnkit']:,.0f} | {p['scikit-learn']:,.0f} | "
            f"{p['knnkit'] / p['scikit-learn']:.2f}× | {p['agreement']:.4f} |"
        )
    table = "\n".join(lines)
    print(table)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "exact.json").write_text(json.dumps(res, indent=2))
    doc = ROOT / "docs" / "benchmarks.md"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    start, end = "<!-- exact:start -->", "<!-- exact:end -->"
    block = f"{start}\n{table}\n{end}"
    if start in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text += f"\n## Exact search (`make bench`)\n\n{block}\n"
    doc.write_text(text)


if __name__ == "__main__":
    main()
