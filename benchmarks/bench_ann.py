"""Approximate search benchmark: knnkit HNSW and IVF against hnswlib and faiss-cpu, recall@10 vs QPS.

Same machine, same data, same threads for every contender, in one process:

- build with 2 threads (every library's parallel build), timed;
- search single-threaded, one query per call (as ann-benchmarks does), sweeping each library's
  search width (HNSW: ``ef_search`` / ``efSearch``; IVF: ``nprobe``); contenders are
  interleaved at every step of the sweep and the best of ``--repeat`` runs is kept;
- recall@10 against exact ground truth (the file's for words, knnkit's exact FlatIndex for the
  MNIST-shaped set); "QPS @ recall 0.95" interpolates each curve (log QPS, linear in recall);
- memory per vector: what the index holds (knnkit ``memory_usage``, hnswlib and faiss: the
  serialised index size).

Data: (a) ``../shared/data/words_minilm.npz`` (100,000 MiniLM word embeddings, 384-d, cosine,
2,000 queries with exact top-100), read in place; (b) 60,000 × 784 MNIST-shaped images (digits
upscaled with pixel noise, euclidean), 1,000 queries.

Writes benchmarks/results/ann.json, docs/ann.png and the table between the ``ann`` markers of
docs/benchmarks.md. Usage: ``python benchmarks/bench_ann.py [--quick] [--report-only]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_exact import cpu_description  # noqa: E402

import knnkit  # noqa: E402
from knnkit.testing import recall_at_k  # noqa: E402

M, EF_CONSTRUCTION, K, BUILD_THREADS = 16, 200, 10, 2
EFS = [10, 16, 24, 32, 48, 64, 96, 128, 192, 256]
NLIST = 1024
NPROBES = [4, 8, 16, 32, 64, 128, 192, 256, 384, 512]
TARGET_RECALL = 0.95
RESULTS = ROOT / "benchmarks" / "results" / "ann.json"


def shared_data() -> Path:
    for c in (os.environ.get("KNNKIT_SHARED_DATA"), ROOT.parent / "shared" / "data"):
        if c and (Path(c) / "words_minilm.npz").exists():
            return Path(c) / "words_minilm.npz"
    raise SystemExit("words_minilm.npz not found: set KNNKIT_SHARED_DATA to ../shared/data")


def datasets(quick: bool, which=("words", "mnist")):
    if "words" in which:
        z = np.load(shared_data())
        n = 20_000 if quick else len(z["base"])
        X, Q = z["base"][:n].astype(np.float32), z["queries"].astype(np.float32)
        nq = 500 if quick else len(Q)
        if quick:
            flat = knnkit.FlatIndex(X.shape[1], metric="cosine")
            flat.add(X)
            gt = flat.search(Q[:nq], K).ids
        else:
            gt = z["gt"][:, :K]
        name = "words_minilm 20k" if quick else "words_minilm (100k × 384, cosine)"
        yield name, "cosine", X, Q[:nq], gt
    if "mnist" in which:
        from sklearn.datasets import load_digits

        from knnkit.cli import _mnist_shaped

        digits = load_digits()
        Xd, yd = digits.data.astype(np.float32), digits.target
        n = 10_000 if quick else 60_000
        X, _ = _mnist_shaped(Xd, yd, n, seed=0)
        Q, _ = _mnist_shaped(Xd, yd, 200 if quick else 1000, seed=1)
        flat = knnkit.FlatIndex(784)
        flat.add(X)
        gt = flat.search(Q, K).ids
        yield f"MNIST-shaped ({n // 1000}k × 784, euclidean)", "euclidean", X, Q, gt


class Knnkit:
    sweep = EFS

    def __init__(self, codes):
        self.codes = codes
        self.name = f"knnkit HNSW ({codes})"

    def build(self, X, metric):
        self.ix = knnkit.HNSWIndex(
            X.shape[1], metric=metric, m=M, ef_construction=EF_CONSTRUCTION, codes=self.codes
        )
        self.ix.add(X, n_jobs=BUILD_THREADS)

    def set_ef(self, ef):
        self.ef = ef

    def query(self, q):
        return self.ix.search(q, K, ef_search=self.ef, n_jobs=1).ids

    def memory(self):
        return self.ix.memory_usage()


class Hnswlib:
    name = "hnswlib"
    sweep = EFS

    def build(self, X, metric):
        import hnswlib

        self.ix = hnswlib.Index(space="cosine" if metric == "cosine" else "l2", dim=X.shape[1])
        self.ix.init_index(len(X), M=M, ef_construction=EF_CONSTRUCTION, random_seed=0)
        self.ix.set_num_threads(BUILD_THREADS)
        self.ix.add_items(X)
        self.ix.set_num_threads(1)

    def set_ef(self, ef):
        self.ix.set_ef(ef)

    def query(self, q):
        return self.ix.knn_query(q, K)[0]

    def memory(self):
        with tempfile.TemporaryDirectory() as d:
            self.ix.save_index(f"{d}/i")
            return os.path.getsize(f"{d}/i")


class FaissHnsw:
    name = "faiss-cpu HNSWFlat"
    sweep = EFS

    def build(self, X, metric):
        import faiss

        faiss.omp_set_num_threads(BUILD_THREADS)
        self.cos = metric == "cosine"
        if self.cos:
            X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-30)
            self.ix = faiss.IndexHNSWFlat(X.shape[1], M, faiss.METRIC_INNER_PRODUCT)
        else:
            self.ix = faiss.IndexHNSWFlat(X.shape[1], M)
        self.ix.hnsw.efConstruction = EF_CONSTRUCTION
        self.ix.add(np.ascontiguousarray(X, dtype=np.float32))
        faiss.omp_set_num_threads(1)

    def set_ef(self, ef):
        self.ix.hnsw.efSearch = ef

    def query(self, q):
        if self.cos:
            q = q / max(float(np.linalg.norm(q)), 1e-30)
        return self.ix.search(q, K)[1]

    def memory(self):
        import faiss

        return int(faiss.serialize_index(self.ix).size)


class KnnkitIvf:
    sweep = NPROBES

    def __init__(self, codes, nlist=NLIST):
        self.codes, self.nlist = codes, nlist
        self.name = f"knnkit IVF{nlist},{'PQ' if codes == 'pq' else 'Flat'}" + (
            " + refine" if codes == "pq" else ""
        )

    def build(self, X, metric):
        self.ix = knnkit.IVFIndex(
            X.shape[1], metric=metric, nlist=self.nlist, codes=self.codes, pq_m=X.shape[1] // 8
        )
        self.ix.add(X, n_jobs=BUILD_THREADS)

    def set_ef(self, nprobe):
        self.nprobe = nprobe

    def query(self, q):
        return self.ix.search(q, K, nprobe=self.nprobe, n_jobs=1).ids

    def memory(self):
        return self.ix.memory_usage()


class FaissIvf:
    sweep = NPROBES

    def __init__(self, codes, nlist=NLIST):
        self.codes, self.nlist = codes, nlist
        self.name = f"faiss-cpu IVF{nlist},{'PQ' if codes == 'pq' else 'Flat'}" + (
            " + refine" if codes == "pq" else ""
        )

    def build(self, X, metric):
        import faiss

        faiss.omp_set_num_threads(BUILD_THREADS)
        self.cos = metric == "cosine"
        d = X.shape[1]
        if self.cos:
            X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-30)
        mt = faiss.METRIC_INNER_PRODUCT if self.cos else faiss.METRIC_L2
        quantizer = faiss.IndexFlat(d, mt)
        if self.codes == "pq":
            self.ivf = faiss.IndexIVFPQ(quantizer, d, self.nlist, d // 8, 8, mt)
            self.ix = faiss.IndexRefineFlat(self.ivf)
            self.ix.k_factor = 4
        else:
            self.ivf = self.ix = faiss.IndexIVFFlat(quantizer, d, self.nlist, mt)
        self.quantizer = quantizer
        X = np.ascontiguousarray(X, dtype=np.float32)
        self.ix.train(X)
        self.ix.add(X)
        faiss.omp_set_num_threads(1)

    def set_ef(self, nprobe):
        self.ivf.nprobe = nprobe

    def query(self, q):
        if self.cos:
            q = q / max(float(np.linalg.norm(q)), 1e-30)
        return self.ix.search(q, K)[1]

    def memory(self):
        import faiss

        return int(faiss.serialize_index(self.ix).size)


def sweep(contenders, Q, gt, repeat):
    """Step i of every contender's own sweep, contenders interleaved; best of ``repeat``."""
    curves = {c.name: [] for c in contenders}
    for step in range(len(EFS)):
        best = {c.name: np.inf for c in contenders}
        found = {}
        for _ in range(repeat):
            for c in contenders:
                c.set_ef(c.sweep[step])
                t = time.perf_counter()
                ids = np.vstack([c.query(q[None]) for q in Q])
                best[c.name] = min(best[c.name], time.perf_counter() - t)
                found[c.name] = ids
        for c in contenders:
            r = recall_at_k(found[c.name], gt, K)
            curves[c.name].append(
                {"param": c.sweep[step], "recall": r, "qps": len(Q) / best[c.name]}
            )
        print(
            f"  step {step}: "
            + "  ".join(
                f"{c.name}@{c.sweep[step]}: r={curves[c.name][-1]['recall']:.3f} "
                f"{curves[c.name][-1]['qps']:7.0f}"
                for c in contenders
            ),
            flush=True,
        )
    return curves


def qps_at(curve, target=TARGET_RECALL):
    """QPS at ``target`` recall, interpolating log QPS linearly between the bracketing points.
    When every point of the curve is already above the target (the sweep starts too wide),
    the fastest such point is returned with ``saturated`` set: a lower bound."""
    pts = sorted((p["recall"], p["qps"]) for p in curve)
    for (r0, q0), (r1, q1) in zip(pts, pts[1:], strict=False):
        if r0 <= target <= r1 and r1 > r0:
            f = (target - r0) / (r1 - r0)
            return float(np.exp(np.log(q0) + f * (np.log(q1) - np.log(q0)))), False
    if pts and pts[0][0] >= target:
        return float(max(q for _, q in pts)), True
    return None, False


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small subsets, one repeat")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--report-only", action="store_true", help="rewrite docs from the JSON")
    ap.add_argument(
        "--only",
        choices=["hnsw", "ivf"],
        help="run one family of contenders (results merge into the saved JSON by name)",
    )
    ap.add_argument("--datasets", default="words,mnist", help="comma-separated: words, mnist")
    args = ap.parse_args()
    if args.report_only:
        report(json.loads(RESULTS.read_text()))
        return
    results = {
        "cpu": cpu_description(),
        "simd": knnkit.simd_level(),
        "m": M,
        "ef_construction": EF_CONSTRUCTION,
        "build_threads": BUILD_THREADS,
        "datasets": [],
    }
    saved = json.loads(RESULTS.read_text()) if RESULTS.exists() and args.only else None
    for name, metric, X, Q, gt in datasets(args.quick, args.datasets.split(",")):
        print(f"{name}: {len(X)} vectors, {len(Q)} queries", flush=True)
        nlist = NLIST if len(X) >= 50_000 else 128
        contenders = [
            Knnkit("sq8"),
            Knnkit("sq4"),
            Knnkit("flat"),
            Hnswlib(),
            FaissHnsw(),
            KnnkitIvf("flat", nlist),
            FaissIvf("flat", nlist),
            KnnkitIvf("pq", nlist),
            FaissIvf("pq", nlist),
        ]
        if args.only:
            ivf = args.only == "ivf"
            contenders = [c for c in contenders if (c.sweep is NPROBES) == ivf]
        entry = {"name": name, "n": len(X), "dim": X.shape[1], "contenders": {}}
        for c in contenders:
            t = time.perf_counter()
            c.build(X, metric)
            build = time.perf_counter() - t
            entry["contenders"][c.name] = {
                "build_s": build,
                "bytes_per_vector": c.memory() / len(X),
            }
            print(f"  build {c.name}: {build:.1f} s", flush=True)
        curves = sweep(contenders, Q, gt, 1 if args.quick else args.repeat)
        for c in contenders:
            e = entry["contenders"][c.name]
            e["curve"] = curves[c.name]
            e["qps_at_target"], e["saturated"] = qps_at(curves[c.name])
        if saved is not None:
            # Merge with the other family's earlier run of the same data set.
            old = next((d for d in saved["datasets"] if d["name"] == name), None)
            if old is not None:
                entry["contenders"] = {**old["contenders"], **entry["contenders"]}
        results["datasets"].append(entry)
        del contenders
    if saved is not None:
        names = {d["name"] for d in results["datasets"]}
        results["datasets"] += [d for d in saved["datasets"] if d["name"] not in names]
    if not args.quick:
        RESULTS.write_text(json.dumps(results, indent=1))
    report(results, write=not args.quick)


def report(res, write=True):
    lines = [
        f"HNSW: M = {res['m']}, ef_construction = {res['ef_construction']}; IVF: nlist = "
        f"{NLIST} (128 below 50k vectors), PQ with dim/8 bytes and a 4×k float32 re-rank; build with "
        f"{res['build_threads']} threads, search on 1 thread, one query per call, k = {K}. "
        f"CPU: {res['cpu']}; knnkit kernels: **{res['simd']}**. Best of interleaved repeats.",
        "",
        'QPS @ recall: interpolated on each curve; "≥" when even the narrowest setting is '
        'above the target (a lower bound), "not reached" when the widest is below it.',
        "",
        f"| data | contender | QPS @ recall {TARGET_RECALL} | vs hnswlib | build (s) | build vs "
        "hnswlib | bytes / vector |",
        "|---|---|---|---|---|---|---|",
    ]
    for ds in res["datasets"]:
        ref = ds["contenders"].get("hnswlib")
        rq, ref_sat = qps_at(ref["curve"]) if ref else (None, False)
        for name, c in ds["contenders"].items():
            q, sat = qps_at(c["curve"])
            qtxt = ("≥ " if sat else "") + f"{q:,.0f}" if q else "not reached"
            ratio = f"{q / rq:.2f}×" if q and rq and not (sat or ref_sat) else "n/a"
            build = f"{c['build_s'] / ref['build_s']:.2f}×" if ref else "n/a"
            lines.append(
                f"| {ds['name']} | {name} | {qtxt} | {ratio} | {c['build_s']:.1f} | {build} | "
                f"{c['bytes_per_vector']:,.0f} |"
            )
    first = res["datasets"][0]["contenders"]
    sweeps = {
        family: next(
            ([p["param"] for p in c["curve"]] for n, c in first.items() if family in n), []
        )
        for family in ("HNSW", "IVF")
    }
    lines += [
        "",
        "Full curves: recall@10 / QPS at each step of each sweep (HNSW: ef_search "
        f"{sweeps['HNSW']}; IVF: nprobe {sweeps['IVF']}):",
        "",
    ]
    for ds in res["datasets"]:
        names = list(ds["contenders"])
        lines.append(f"**{ds['name']}**")
        lines.append("")
        lines.append("| step | " + " | ".join(names) + " |")
        lines.append("|---|" + "---|" * len(names))
        for i in range(len(EFS)):
            cells = [
                f"{ds['contenders'][n]['curve'][i]['recall']:.3f} / "
                f"{ds['contenders'][n]['curve'][i]['qps']:,.0f}"
                for n in names
            ]
            lines.append(f"| {i} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append("![recall vs QPS](ann.png)")
    text = "\n".join(lines)
    print(text)
    if not write:
        return
    plot(res)
    doc = ROOT / "docs" / "benchmarks.md"
    body = doc.read_text()
    start, end = "<!-- ann:start -->", "<!-- ann:end -->"
    if start not in body:
        body += f"\n## Approximate search (`make bench-ann`)\n\n{start}\n{end}\n"
    a, b = body.index(start) + len(start), body.index(end)
    doc.write_text(body[:a] + "\n" + text + "\n" + body[b:])


def plot(res):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(res["datasets"]), figsize=(6 * len(res["datasets"]), 4.5))
    for ax, ds in zip(np.atleast_1d(axes), res["datasets"], strict=True):
        for name, c in ds["contenders"].items():
            ax.plot(
                [p["recall"] for p in c["curve"]],
                [p["qps"] for p in c["curve"]],
                "o-",
                ms=3,
                label=name,
            )
        ax.axvline(TARGET_RECALL, color="grey", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_xlabel("recall@10")
        ax.set_ylabel("queries per second (1 thread)")
        ax.set_title(ds["name"])
        ax.set_xlim(0.8, 1.0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "ann.png", dpi=110)


if __name__ == "__main__":
    main()
