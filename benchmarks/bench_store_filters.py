"""Filtered ``Store`` queries and counts before and after issue 14's columnar mirror: the same
store (100k MiniLM word vectors, float32, cosine; one flat and one HNSW collection) opened by two
builds of knnkit, each in its own process, alternating rounds.

Metadata: ``bucket = i % 10000`` (int; ``$lt`` gives 50/10/1/0.1/0.01 %), ``score`` (a uniform
float in [0, 1): ranges), ``cat = f"c{i % 10}"`` (str: equality 10 %, ``$in`` 50 %).
Reported per filter: one query per call (k=10, ``include=()``, mean ms over up to 100 queries
or 1.5 s), and ``count(where)`` (median ms). Ingest uses ``durability="normal"`` to keep the
one-time build of the store short; it does not change what is measured.

Usage: ``python benchmarks/bench_store_filters.py --before DIR`` where ``DIR`` is the
``python/`` folder of the earlier build, extension in place (the current checkout is "after").
The store is written by the earlier build (a later one may upgrade a store's schema, which an
earlier one refuses), and each run opens a fresh copy of it; the open time is measured after
one untimed open (which does any upgrade).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_exact import cpu_description  # noqa: E402

SHARES = [0.5, 0.1, 0.01, 0.001, 0.0001]


def filters() -> list[tuple[str, float, dict | None]]:
    out: list[tuple[str, float, dict | None]] = [("none", 1.0, None)]
    for s in SHARES:
        out.append(("bucket $lt (int)", s, {"bucket": {"$lt": int(round(s * 10_000))}}))
    for s in SHARES:
        out.append(("score $lt (float)", s, {"score": {"$lt": s}}))
    out.append(("cat $eq (str)", 0.1, {"cat": "c3"}))
    out.append(("cat $in (str)", 0.5, {"cat": {"$in": ["c0", "c1", "c2", "c3", "c4"]}}))
    out.append(
        (
            "$and cat $ne, bucket $lt",
            0.009,
            {"$and": [{"cat": {"$ne": "c3"}}, {"bucket": {"$lt": 100}}]},
        )
    )
    return out


PREPARE = r"""
import sys
sys.path.insert(0, sys.argv[4])
from bench_store_filters import prepare
prepare(sys.argv[1], sys.argv[2], int(sys.argv[3]))
"""


def prepare(path: str, data: str, n: int) -> None:
    import numpy as np

    import knnkit

    d = np.load(data)
    x = d["base"][:n].astype(np.float32)
    rng = np.random.default_rng(0)
    score = rng.random(n)
    meta = [{"bucket": i % 10_000, "score": float(score[i]), "cat": f"c{i % 10}"} for i in range(n)]
    ids = [f"w{i}" for i in range(n)]
    db = knnkit.Store(path, durability="normal", snapshot_every=0)
    for kind in ["flat", "hnsw"]:
        t = time.perf_counter()
        params = {"m": 16, "ef_construction": 100} if kind == "hnsw" else {}
        c = db.create_collection(kind, dim=x.shape[1], metric="cosine", index=kind, **params)
        for s in range(0, n, 10_000):
            c.add(ids[s : s + 10_000], x[s : s + 10_000], meta[s : s + 10_000])
        c.snapshot()
        print(f"ingest {kind}: {time.perf_counter() - t:.1f} s", file=sys.stderr)


CHILD = r"""
import json, statistics, sys, time
import numpy as np
import knnkit
path, data, specs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
q = np.load(data)["queries"][:100].astype(np.float32)
knnkit.Store(path)  # opening upgrades the schema if needed: untimed
out = {}
for kind in ["flat", "hnsw"]:
    t = time.perf_counter()
    db = knnkit.Store(path)
    c = db.get_collection(kind)
    c.count()
    out[f"{kind} open"] = {"open_s": time.perf_counter() - t}
    for name, share, where in specs:
        counts = []
        for _ in range(7):
            t = time.perf_counter(); m = c.count(where); counts.append(time.perf_counter() - t)
        c.query(q[:1], k=10, where=where, include=())
        n, t0, first = 0, time.perf_counter(), []
        while n < len(q) and (n < 5 or time.perf_counter() - t0 < 1.5):
            r = c.query(q[n:n + 1], k=10, where=where, include=())
            if n < 5:
                first.append(r.ids[0])
            n += 1
        per = (time.perf_counter() - t0) / n
        out[f"{kind} {name} {share}"] = {"kind": kind, "filter": name, "share": share,
            "matches": m, "count_ms": statistics.median(counts) * 1e3, "query_ms": per * 1e3,
            "ids": first}
print(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--store", default=None, help="an existing benchmark store to reuse")
    args = ap.parse_args()
    data = ROOT.parent / "shared" / "data" / "words_minilm.npz"
    tmp = None
    if args.store is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_store_filters_")
        store = Path(tmp.name) / "db"
    else:
        store = Path(args.store)
    builds = {"before": args.before, "after": str(ROOT / "python")}
    if not (store / "store.sqlite3").exists():
        subprocess.run(
            [
                sys.executable,
                "-c",
                PREPARE,
                str(store),
                str(data),
                str(args.n),
                str(ROOT / "benchmarks"),
            ],
            env={**os.environ, "PYTHONPATH": builds["before"]},
            check=True,
        )
    specs = json.dumps(filters())
    best: dict[str, dict[str, dict]] = {"before": {}, "after": {}}
    for _ in range(args.rounds):
        for label, path in builds.items():
            env = {**os.environ, "PYTHONPATH": path}
            copy = store.parent / f"{store.name}.run"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(store, copy)
            try:
                r = subprocess.run(
                    [sys.executable, "-c", CHILD, str(copy), str(data), specs],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
            finally:
                shutil.rmtree(copy, ignore_errors=True)
            for key, m in json.loads(r.stdout.strip().splitlines()[-1]).items():
                b = best[label].setdefault(key, dict(m))
                for f in ["count_ms", "query_ms", "open_s"]:
                    if f in m:
                        b[f] = min(b[f], m[f])
    simd = subprocess.run(
        [sys.executable, "-c", "import knnkit; print(knnkit.simd_level())"],
        env={**os.environ, "PYTHONPATH": builds["after"]},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(
        f"CPU: {cpu_description()}; knnkit kernels: {simd}. {args.n:,} × 384 words_minilm "
        f"(float32, cosine), k = 10, one query per call, best of {args.rounds} alternating "
        "rounds (each build in its own process)."
    )
    for kind in ["flat", "hnsw"]:
        b, a = best["before"][f"{kind} open"], best["after"][f"{kind} open"]
        print(f"{kind}: open {b['open_s']:.2f} s → {a['open_s']:.2f} s")
    print()
    print(
        "| index | filter | matches | query ms before | query ms after | speed-up | "
        "count ms before | count ms after | speed-up | same ids |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key, b in best["before"].items():
        if "filter" not in b:
            continue
        a = best["after"][key]
        assert a["matches"] == b["matches"], key
        print(
            f"| {b['kind']} | {b['filter']} | {b['matches']:,} ({100 * b['share']:g} %) | "
            f"{b['query_ms']:.2f} | {a['query_ms']:.2f} | {b['query_ms'] / a['query_ms']:.1f}× | "
            f"{b['count_ms']:.3f} | {a['count_ms']:.3f} | {b['count_ms'] / a['count_ms']:.0f}× | "
            f"{'yes' if a['ids'] == b['ids'] else 'no'} |"
        )
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
