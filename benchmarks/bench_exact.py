"""Exact k-NN benchmark on every shape of data: knnkit against faiss-cpu (IndexFlatL2 /
IndexFlatIP) and scikit-learn brute force.

Same machine, same data, same thread count for every contender (``--threads``, default the
machine's cores up to 2). Each measurement runs in a fresh child process (no state shared between
contenders), repeated R times with the contenders interleaved; the best of the repeats is kept.
No environment variable is set for any contender: each runs the BLAS it finds, and the table
names it (threadpoolctl: library, version, the kernels it chose). ``--coretype`` adds a row for
faiss with ``OPENBLAS_CORETYPE`` forced, for CPUs its bundled OpenBLAS mis-detects (report both).

Data shapes (k = 10, float32, queries never in the base unless said):

- ``uniform``: 60,000 × 784, uniform in [0, 1) (non-centred, full rank).
- ``gaussian``: 60,000 × 784 standard normal (centred: the easy case for expanded-form bounds).
- ``low-rank``: 60,000 × 784, all-positive features spanning a 16-dimensional subspace (pixels,
  counts, TF-IDF and un-centred embeddings look like this; far from the origin relative to their
  spread).
- ``pixels``: the low-rank data scaled to 0..255 and rounded (uint8-valued floats, many ties).
- ``minilm-l2`` / ``minilm-cos``: the 100,000 × 384 MiniLM word embeddings of
  ``../shared/data/words_minilm.npz`` and their 2,000 query words, L2 and cosine (faiss:
  IndexFlatIP on the unit vectors).
- ``digits``: scikit-learn's digits (1,797 × 64), every row queried against all (a tiny call).

Writes the tables into docs/benchmarks.md (between the ``exact`` markers) and
benchmarks/results/exact.json. Usage: ``python benchmarks/bench_exact.py [--quick] [--shapes a,b]``.
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
N, D, NQ, K = 60_000, 784, 2_000, 10
MINILM = ROOT.parent / "shared" / "data" / "words_minilm.npz"
SHAPES = ["uniform", "gaussian", "low-rank", "pixels", "minilm-l2", "minilm-cos", "digits"]
CONTENDERS = [
    "knnkit FlatIndex",
    "knnkit FlatIndex, f32 passes (bf16=False)",
    "faiss-cpu",
    "scikit-learn brute",
]
FAISS_CORETYPE = "faiss-cpu, OPENBLAS_CORETYPE={}"


def data(n=N, nq=NQ, d=D):
    """The uniform shape (kept for the other benchmarks that quote it)."""
    rng = np.random.default_rng(0)
    return rng.random((n, d), dtype=np.float32), rng.random((nq, d), dtype=np.float32)


def shape_data(shape: str, nq: int = NQ):
    """(base, queries, metric) of a shape; float32, C-contiguous."""
    rng = np.random.default_rng(0)
    if shape == "uniform":
        X, Q = data(nq=nq)
        return X, Q, "sqeuclidean"
    if shape == "gaussian":
        A = rng.standard_normal((N + nq, D), dtype=np.float32)
        return A[:N], A[N:], "sqeuclidean"
    if shape in ("low-rank", "pixels"):
        # non-negative mixtures of 16 non-negative patterns: all-positive, rank 16
        W = rng.random((16, D), dtype=np.float32) ** 3
        C = np.abs(rng.standard_normal((N + nq, 16), dtype=np.float32))
        A = C @ W
        if shape == "pixels":
            A = np.clip(np.rint(A * (255.0 / np.quantile(A, 0.99))), 0, 255)
        A = np.ascontiguousarray(A, dtype=np.float32)
        return A[:N], A[N:], "sqeuclidean"
    if shape.startswith("minilm"):
        f = np.load(MINILM)
        X = np.ascontiguousarray(f["base"], dtype=np.float32)
        Q = np.ascontiguousarray(f["queries"][:nq], dtype=np.float32)
        return X, Q, ("cosine" if shape == "minilm-cos" else "sqeuclidean")
    if shape == "digits":
        from sklearn.datasets import load_digits

        X = np.ascontiguousarray(load_digits().data, dtype=np.float32)
        return X, X.copy(), "sqeuclidean"
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def cpu_description() -> str:
    """CPU model and the SIMD features that matter here, from /proc/cpuinfo."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()
    lines = info.splitlines()
    model = next((ln.split(":", 1)[1].strip() for ln in lines if "model name" in ln), "")
    flags = next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), [])
    wanted = [
        "avx2",
        "fma",
        "avx512f",
        "avx512_bf16",
        "avx512_vnni",
        "avx512_vp2intersect",
        "amx_bf16",
    ]
    return f"{model or platform.machine()} ({', '.join(f for f in wanted if f in flags)})"


def build(name, X, metric, threads):
    """The contender's search function, fn(Q) -> (D, I)."""
    if name.startswith("knnkit"):
        import knnkit

        kx = knnkit.FlatIndex(X.shape[1], metric=metric, bf16="f32" not in name)
        kx.add(X)
        return lambda Q: kx.search(Q, K, n_jobs=threads)
    if name.startswith("faiss"):
        import faiss

        faiss.omp_set_num_threads(threads)
        if metric == "cosine":
            fx = faiss.IndexFlatIP(X.shape[1])
            Xn = X.copy()
            faiss.normalize_L2(Xn)
            fx.add(Xn)

            def search(Q):
                Qn = Q.copy()
                faiss.normalize_L2(Qn)
                return fx.search(Qn, K)

            return search
        fx = faiss.IndexFlatL2(X.shape[1])
        fx.add(X)
        return lambda Q: fx.search(Q, K)
    from sklearn.neighbors import NearestNeighbors
    from threadpoolctl import threadpool_limits

    sk_metric = "cosine" if metric == "cosine" else "euclidean"
    sk = NearestNeighbors(n_neighbors=K, algorithm="brute", metric=sk_metric, n_jobs=threads)
    sk.fit(X)

    def search(Q):
        with threadpool_limits(threads):
            return sk.kneighbors(Q)

    return search


def blas_used(name: str) -> str:
    """The BLAS the contender runs (threadpoolctl), or knnkit's own kernels."""
    if name.startswith("knnkit"):
        import knnkit

        return f"own kernels ({knnkit.simd_level()}; gemm crate tiles)"
    from threadpoolctl import threadpool_info

    libs = []
    for i in threadpool_info():
        if i["internal_api"] not in ("openblas", "mkl", "blis"):
            continue
        path = i.get("filepath") or ""
        owner = "faiss" if "faiss" in path else ("numpy" if "numpy" in path else "scipy")
        if name.startswith("faiss") and owner != "faiss":
            continue
        if name.startswith("scikit") and owner == "faiss":
            continue
        libs.append(f"{i['prefix']} {i.get('version')} {i.get('architecture') or ''}".strip())
    return "; ".join(sorted(set(libs))) or "—"


def _vm(field: str) -> int:
    """A field of /proc/self/status in bytes (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(name: str, shape: str, threads: int, nq: int, n_single: int) -> dict:
    """One measurement of one contender on one shape (runs in its own process)."""
    from knnkit.testing import exact_knn

    X, Q, metric = shape_data(shape, nq)
    search = build(name, X, metric, threads)
    search(Q[:16])  # warm-up: pools, lazy allocations
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    before = _vm("VmRSS")
    t0 = time.perf_counter()
    _, I = search(Q)
    batch = time.perf_counter() - t0
    extra = _vm("VmHWM") - before
    t0 = time.perf_counter()
    for q in Q[:n_single]:
        search(q[None, :])
    single = (time.perf_counter() - t0) / max(n_single, 1)
    m = 100
    _, truth = exact_knn(X, Q[:m], K, metric="cosine" if metric == "cosine" else "euclidean")
    recall = float(
        np.mean(
            [len(np.intersect1d(a, b)) / K for a, b in zip(np.asarray(I)[:m], truth, strict=True)]
        )
    )
    return {
        "batch_s": batch,
        "single_s": single,
        "extra_bytes": extra,
        "recall": recall,
        "blas": blas_used(name),
        "nq": len(Q),
    }


def predict_child(name: str, shape: str, threads: int, nq: int) -> dict:
    """KNeighborsClassifier(n_neighbors=K).predict (10 random classes; digits: its labels)."""
    from threadpoolctl import threadpool_limits

    if name == "knnkit":
        from knnkit.neighbors import KNeighborsClassifier
    else:
        from sklearn.neighbors import KNeighborsClassifier
    X, Q, metric = shape_data(shape, nq)
    if shape == "digits":
        from sklearn.datasets import load_digits

        y = load_digits().target
    else:
        y = np.random.default_rng(1).integers(0, 10, size=X.shape[0])
    sk_metric = "cosine" if metric == "cosine" else "euclidean"
    clf = KNeighborsClassifier(n_neighbors=K, n_jobs=threads, metric=sk_metric).fit(X, y)
    clf.predict(Q[:16])
    with threadpool_limits(threads):
        t0 = time.perf_counter()
        pred = clf.predict(Q)
        t = time.perf_counter() - t0
    return {
        "s": t,
        "nq": len(Q),
        "pred": np.asarray(pred).tolist(),
    }


def run_child(args_list, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    out = subprocess.run(
        [sys.executable, __file__, *args_list], capture_output=True, text=True, env=env, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"child {args_list} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="500 queries, 1 repeat (smoke run)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--coretype", help="also run faiss with OPENBLAS_CORETYPE set to this")
    ap.add_argument("--child")
    ap.add_argument("--predict-child")
    ap.add_argument("--shape", default="uniform")
    ap.add_argument("--nq", type=int, default=NQ)
    ap.add_argument("--single", type=int, default=100)
    ap.add_argument("--report-only", action="store_true", help="rewrite the table from the JSON")
    args = ap.parse_args()
    if args.child:
        m = child(args.child, args.shape, args.threads, args.nq, args.single)
        return print(json.dumps(m))
    if args.predict_child:
        return print(
            json.dumps(predict_child(args.predict_child, args.shape, args.threads, args.nq))
        )
    if args.report_only:
        return report(json.loads((ROOT / "benchmarks" / "results" / "exact.json").read_text()))

    import knnkit

    nq = 500 if args.quick else NQ
    repeat = 1 if args.quick else args.repeat
    threads = args.threads
    shapes = [s for s in args.shapes.split(",") if s]
    if not MINILM.exists():
        shapes = [s for s in shapes if not s.startswith("minilm")]
        print(f"{MINILM} not found: MiniLM shapes skipped", file=sys.stderr)
    contenders = [(c, None) for c in CONTENDERS]
    if args.coretype:
        contenders.insert(3, (FAISS_CORETYPE.format(args.coretype), args.coretype))
    results = {
        "simd": knnkit.simd_level(),
        "cpu": cpu_description(),
        "threads": threads,
        "queries": nq,
        "k": K,
        "repeat": repeat,
        "shapes": [],
    }
    for shape in shapes:
        X, Q, metric = shape_data(shape, nq)
        entry = {
            "shape": shape,
            "n": X.shape[0],
            "d": X.shape[1],
            "queries": len(Q),
            "metric": metric,
            "rows": [],
            "predict": {},
        }
        del X, Q
        best = {}
        for r in range(repeat):
            for name, coretype in contenders:
                # scikit-learn is the slowest by far: one run places it well enough
                if name.startswith("scikit") and r > 0:
                    continue
                single = 10 if name.startswith("scikit") else (20 if args.quick else 100)
                env = {"OPENBLAS_CORETYPE": coretype} if coretype else None
                m = run_child(
                    ["--child", name.split(",")[0] if coretype else name, "--shape", shape]
                    + ["--threads", str(threads), "--nq", str(nq), "--single", str(single)],
                    env,
                )
                b = best.setdefault(name, m)
                for key in ("batch_s", "single_s", "extra_bytes"):
                    b[key] = min(b[key], m[key])
                print(f"{shape:10s} {name:45s} {m['nq'] / m['batch_s']:9.0f} QPS", file=sys.stderr)
        for name, _ in contenders:
            m = best[name]
            entry["rows"].append(
                {
                    "contender": name,
                    "batch_qps": m["nq"] / m["batch_s"],
                    "single_qps": 1 / m["single_s"],
                    "recall_vs_exact": m["recall"],
                    "peak_extra_mb": m["extra_bytes"] / 2**20,
                    "blas": m["blas"],
                }
            )
        runs = {"knnkit": [], "scikit-learn": []}
        for r in range(repeat):
            for name in runs:
                if name == "scikit-learn" and r > 0:
                    continue
                a = ["--predict-child", name, "--shape", shape, "--threads", str(threads)]
                runs[name].append(run_child([*a, "--nq", str(nq)]))
        entry["predict"] = {
            name: runs[name][0]["nq"] / min(x["s"] for x in runs[name]) for name in runs
        }
        a, b = (np.asarray(runs[name][0]["pred"]) for name in runs)
        entry["predict"]["agreement"] = float(np.mean(a == b))
        results["shapes"].append(entry)
    report(results)


def report(res):
    lines = [
        f"Exact search, k = {res['k']}, {res['threads']} threads for every contender. CPU: "
        f"{res['cpu']}; knnkit kernels: **{res['simd']}**. Each measurement in a fresh process, "
        f"best of {res.get('repeat', 1)} interleaved repeats (scikit-learn: one run). No "
        "environment override for any contender; the BLAS column is what threadpoolctl saw loaded.",
        "",
        "| data | n × d, queries | contender | batch QPS | vs faiss | vs sklearn "
        "| one query/call QPS | vs faiss | recall@10 | peak extra memory | BLAS |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    summary = []
    for e in res["shapes"]:
        rows = {r["contender"]: r for r in e["rows"]}
        fa, sk = rows["faiss-cpu"], rows["scikit-learn brute"]
        shape = f"{e['n']:,} × {e['d']}, {e['queries']:,}"
        for r in e["rows"]:
            lines.append(
                f"| {e['shape']} ({e['metric']}) | {shape} | {r['contender']} | "
                f"{r['batch_qps']:,.0f} | {r['batch_qps'] / fa['batch_qps']:.2f}× | "
                f"{r['batch_qps'] / sk['batch_qps']:.2f}× | {r['single_qps']:,.0f} | "
                f"{r['single_qps'] / fa['single_qps']:.2f}× | {r['recall_vs_exact']:.4f} | "
                f"{r['peak_extra_mb']:.0f} MB | {r['blas']} |"
            )
        f32 = rows["knnkit FlatIndex, f32 passes (bf16=False)"]
        fast = rows["knnkit FlatIndex"]
        p = e["predict"]
        summary.append(
            (
                e["shape"],
                f32["batch_qps"] / fa["batch_qps"],
                fast["batch_qps"] / fa["batch_qps"],
                fast["single_qps"] / fa["single_qps"],
                p["knnkit"] / p["scikit-learn"],
                p,
            )
        )
    lines += [
        "",
        "`KNeighborsClassifier(n_neighbors=10).predict` on the same data (10 random classes; "
        "digits: its labels), and the ratios the targets name:",
        "",
        "| data | f32 batch vs faiss (≥ 1.0×) | default batch vs faiss (≥ 1.0× without "
        "AVX-512 BF16/AMX) | one query/call vs faiss (≥ 1.3×) | predict knnkit QPS | predict "
        "scikit-learn QPS | predict ratio (≥ 2×) | same predictions as scikit-learn |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def mark(x, goal):
        return f"**{x:.2f}×**" + ("" if x >= goal else " (missed)")

    for shape, f32, fast, single, pred, p in summary:
        lines.append(
            f"| {shape} | {mark(f32, 1.0)} | {mark(fast, 1.0)} | {mark(single, 1.3)} | "
            f"{p['knnkit']:,.0f} | {p['scikit-learn']:,.0f} | {mark(pred, 2.0)} | "
            f"{p['agreement']:.2%} |"
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
