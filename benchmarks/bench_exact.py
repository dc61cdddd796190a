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


def cpu_description() -> str:
    """CPU model and the SIMD features that matter here, from /proc/cpuinfo."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()
    model = next(
        (ln.split(":", 1)[1].strip() for ln in info.splitlines() if "model name" in ln), ""
    )
    flags = next(
        (ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), []
    )
    wanted = ["avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx512_vp2intersect"]
    return f"{model or platform.machine()} ({', '.join(f for f in wanted if f in flags)})"


def best_of(fn, repeat):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def contenders(X, threads, only=None):
    """name -> search fn(Q) -> (D, I); ``only`` builds just that contender."""
    import faiss
    from sklearn.neighbors import NearestNeighbors as SkNN
    from threadpoolctl import threadpool_limits

    import knnkit

    faiss.omp_set_num_threads(threads)

    def build_knnkit(bf16=True):
        kx = knnkit.FlatIndex(X.shape[1], metric="sqeuclidean", bf16=bf16)
        kx.add(X)
        return lambda Q: kx.search(Q, K, n_jobs=threads)

    def build_faiss():
        fx = faiss.IndexFlatL2(X.shape[1])
        fx.add(X)
        return lambda Q: fx.search(Q, K)

    def build_sklearn():
        sk = SkNN(n_neighbors=K, algorithm="brute", n_jobs=threads).fit(X)

        def search(Q):
            with threadpool_limits(threads):
                return sk.kneighbors(Q)

        return search

    builders = {
        "knnkit FlatIndex": build_knnkit,
        "knnkit FlatIndex, f32 passes (bf16=False)": lambda: build_knnkit(bf16=False),
        "faiss-cpu IndexFlatL2": build_faiss,
        "scikit-learn brute": build_sklearn,
    }
    return {name: b() for name, b in builders.items() if only in (None, name)}


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


def _vm(field: str) -> int:
    """A field of /proc/self/status in bytes (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_memory_child(which: str, threads: int) -> None:
    """Runs one 10k-query call in this (child) process, with only that contender built; prints
    how far the peak resident memory rose above the resident memory before the call."""
    X, Q = data()
    search = contenders(X, threads, only=which)[which]
    search(Q[:16])  # warm-up: pools, lazy allocations
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    before = _vm("VmRSS")
    search(Q)
    print(json.dumps({"extra_bytes": _vm("VmHWM") - before, "base_bytes": X.nbytes}))


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
    ap.add_argument("--report-only", action="store_true", help="rewrite the table from the JSON")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.memory_child:
        return peak_memory_child(args.memory_child, args.threads)
    if args.report_only:
        return report(json.loads((ROOT / "benchmarks" / "results" / "exact.json").read_text()))

    import knnkit

    nq = 2_000 if args.quick else NQ
    repeat = 1 if args.quick else args.repeat
    X, Q = data(nq=nq)
    from knnkit.testing import exact_knn

    _, truth = exact_knn(X, Q[:200], K)
    results = {
        "simd": knnkit.simd_level(),
        "cpu": cpu_description(),
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
            for name, search in cs.items():
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
    lines += ["", "Targets (each contender at its best thread count on this machine):", ""]
    best = {}
    for r in rows:
        b = best.setdefault(r["contender"], {"batch_qps": 0.0, "single_qps": 0.0})
        b["batch_qps"] = max(b["batch_qps"], r["batch_qps"])
        b["single_qps"] = max(b["single_qps"], r["single_qps"])
    fa, sk = best["faiss-cpu IndexFlatL2"], best["scikit-learn brute"]
    f32 = best["knnkit FlatIndex, f32 passes (bf16=False)"]
    fast = best["knnkit FlatIndex"]
    pred = max(res.get("predict", []), key=lambda p: p["knnkit"] / p["scikit-learn"], default=None)
    checks = [
        ("exact f32 batch ≥ 1.0× faiss-cpu", f32["batch_qps"] / fa["batch_qps"], 1.0),
        ("exact f32 batch ≥ 2.2× scikit-learn", f32["batch_qps"] / sk["batch_qps"], 2.2),
        (
            "exact fast path (bf16 + f32 re-score) ≥ 1.5× faiss-cpu",
            fast["batch_qps"] / fa["batch_qps"],
            1.5,
        ),
        ("one query per call ≥ 1.3× faiss-cpu's best", fast["single_qps"] / fa["single_qps"], 1.3),
    ]
    if pred:
        checks.append(
            (
                "KNeighborsClassifier.predict ≥ 2× scikit-learn",
                pred["knnkit"] / pred["scikit-learn"],
                2.0,
            )
        )
    for name, ratio, goal in checks:
        lines.append(f"- {name}: **{ratio:.2f}×** — {'met' if ratio >= goal else 'NOT met'}")
    mems = [
        r["peak_extra_mb"]
        for r in rows
        if r["contender"] == "knnkit FlatIndex" and r["peak_extra_mb"] is not None
    ]
    if mems:
        lines.append(
            f"- peak memory of a 10k-query call ≤ base size + 100 MB: base + **{max(mems):.0f} MB** — "
            f"{'met' if max(mems) <= 100 else 'NOT met'}"
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
