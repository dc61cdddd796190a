"""HNSW and IVF before and after issue 11's index core (limits, capped work, rollback, codes
that follow the data, the exit/fork gate): the same script run alternately on two builds of
knnkit, same data, same threads; reports build time, one-query search speed, batch speed and
recall@10.

Usage: ``python benchmarks/bench_index_core.py --before DIR`` where ``DIR`` is the ``python/``
folder of a checkout of the earlier commit with its extension built in place (the current
checkout is "after"). Each contender runs in its own process, ``--rounds`` times, alternating.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_exact import cpu_description  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))

CHILD = r"""
import json, sys, time
import numpy as np
import knnkit
from knnkit.testing import recall_at_k
d = np.load(sys.argv[1])
n = int(sys.argv[2])
X = d["base"][:n].astype(np.float32)
Q = d["queries"][:500].astype(np.float32)
sims = Q @ X.T
gt = np.argsort(-sims, axis=1, kind="stable")[:, :10]
out = {}
for name, make, kw in [
    ("hnsw sq8", lambda: knnkit.HNSWIndex(384, metric="cosine", m=16, ef_construction=100), {"ef_search": 64}),
    ("hnsw flat", lambda: knnkit.HNSWIndex(384, metric="cosine", m=16, ef_construction=100, codes="flat"), {"ef_search": 64}),
    ("ivf flat", lambda: knnkit.IVFIndex(384, metric="cosine", nlist=256), {"nprobe": 16}),
    ("ivf pq", lambda: knnkit.IVFIndex(384, metric="cosine", nlist=256, codes="pq", pq_m=48, nbits=8), {"nprobe": 16}),
]:
    t = time.perf_counter(); ix = make(); ix.add(X, n_jobs=2); build = time.perf_counter() - t
    one = []
    for rep in range(3):
        t = time.perf_counter()
        for q in Q:
            ix.search(q[None], 10, n_jobs=1, **kw)
        one.append(time.perf_counter() - t)
    batch = []
    for rep in range(3):
        t = time.perf_counter(); D, I = ix.search(Q, 10, n_jobs=2, **kw); batch.append(time.perf_counter() - t)
    out[name] = {"build_s": build, "one_qps": len(Q) / min(one), "batch_qps": len(Q) / min(batch),
                 "recall": float(recall_at_k(I, gt))}
# the exact engine and the KD-tree (their SIMD dispatch moved to one token in this change)
from knnkit.neighbors import KDTree, NearestNeighbors
Xs = X[:20000]
nn = NearestNeighbors(n_neighbors=10, algorithm="brute", metric="cosine", n_jobs=2).fit(Xs)
t0 = time.perf_counter(); nn.fit(Xs); build = time.perf_counter() - t0
one, batch = [], []
for rep in range(3):
    t0 = time.perf_counter()
    for q in Q[:100]:
        nn.kneighbors(q[None])
    one.append((time.perf_counter() - t0) * 5)
    t0 = time.perf_counter(); nn.kneighbors(Q); batch.append(time.perf_counter() - t0)
out["exact (estimator, brute)"] = {"build_s": build, "one_qps": len(Q) / min(one),
                                    "batch_qps": len(Q) / min(batch), "recall": 1.0}
rng = np.random.default_rng(0)
L = rng.normal(size=(50000, 8)); LQ = rng.normal(size=(500, 8))
t0 = time.perf_counter(); tree = KDTree(L, leaf_size=40); build = time.perf_counter() - t0
one, batch = [], []
for rep in range(3):
    t0 = time.perf_counter()
    for q in LQ[:100]:
        tree.query(q[None], k=10)
    one.append((time.perf_counter() - t0) * 5)
    t0 = time.perf_counter(); tree.query(LQ, k=10); batch.append(time.perf_counter() - t0)
out["kd_tree 50k x 8 (float64)"] = {"build_s": build, "one_qps": len(LQ) / min(one),
                                     "batch_qps": len(LQ) / min(batch), "recall": 1.0}
print(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--n", type=int, default=30_000)
    args = ap.parse_args()
    data = ROOT.parent / "shared" / "data" / "words_minilm.npz"
    builds = {"before": args.before, "after": str(ROOT / "python")}
    best: dict[str, dict[str, dict[str, float]]] = {"before": {}, "after": {}}
    for _ in range(args.rounds):
        for label, path in builds.items():
            env = {**os.environ, "PYTHONPATH": path}
            r = subprocess.run(
                [sys.executable, "-c", CHILD, str(data), str(args.n)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            for name, m in json.loads(r.stdout.strip().splitlines()[-1]).items():
                b = best[label].setdefault(name, dict(m))
                b["build_s"] = min(b["build_s"], m["build_s"])
                b["one_qps"] = max(b["one_qps"], m["one_qps"])
                b["batch_qps"] = max(b["batch_qps"], m["batch_qps"])
    print(
        f"CPU: {cpu_description()}; words_minilm first {args.n} x 384, cosine, 500 queries, k=10; "
        f"build 2 threads, one-query 1 thread, batch 2 threads; best of {args.rounds}"
    )
    print(
        "| index | build s (before → after) | one-query QPS (before → after, ratio) | "
        "batch QPS (before → after, ratio) | recall@10 (before / after) |"
    )
    print("|---|---|---|---|---|")
    for name, b in best["before"].items():
        a = best["after"][name]
        print(
            f"| {name} | {b['build_s']:.2f} → {a['build_s']:.2f} | "
            f"{b['one_qps']:.0f} → {a['one_qps']:.0f} ({a['one_qps'] / b['one_qps']:.2f}) | "
            f"{b['batch_qps']:.0f} → {a['batch_qps']:.0f} ({a['batch_qps'] / b['batch_qps']:.2f}) | "
            f"{b['recall']:.3f} / {a['recall']:.3f} |"
        )


if __name__ == "__main__":
    main()
