"""Store benchmark: knnkit.Store against Chroma, LanceDB, Milvus Lite, sqlite-vec and Qdrant local.

Same data, same machine, same run, same thread count for every contender (issue 14):

- data: ``../shared/data/words_minilm.npz`` (``base``: 100,000 × 384 MiniLM embeddings, float16
  read as float32; queries from ``queries``), cosine; one int metadata field ``bucket`` in
  [0, 1000) spread evenly and at random over the records, so ``bucket < 500 / 100 / 10 / 1``
  matches exactly 50 / 10 / 1 / 0.1 % of them (a range filter, in each peer's own filter form:
  knnkit and Chroma ``where``, LanceDB SQL ``where`` with prefilter, Milvus filter expression,
  sqlite-vec metadata column in the KNN query's WHERE, Qdrant ``Filter`` with a ``Range``);
- each contender runs in its own processes: one ingests (batches of 1,000 records, each batch
  one call, durable as the peer is by default or as said in the table), then a new process
  opens the store, answers a first query (the reopen time), and answers the measured queries;
  peak RSS is each process's own (``getrusage``, plus the peak of any helper process it started);
- threads: every child is pinned to ``--threads`` CPUs (``sched_setaffinity``, which knnkit,
  Lance and Milvus size their pools by), BLAS pools are limited with threadpoolctl (the child
  records what it found), and peers with a thread setting get the same number;
- queries: k = 10, one query per call, ``--queries`` measured after warm-up queries (others from
  the same set), unfiltered and at each selectivity; p50 / p99 latency of single calls;
- recall@10 against the exact filtered answer (numpy over the same float32 vectors; a result
  counts when it matches the filter and is within the k-th exact distance, so ties count);
  results returned against the expected ``min(k, matches)``;
- disk bytes per record (the store's directory after the ingest process ended).

Writes benchmarks/results/store.json (store-quick.json with ``--quick``) and prints the markdown
tables; ``--doc`` also writes them into docs/benchmarks.md between the ``store`` markers.

Usage: ``python benchmarks/bench_store.py [--quick] [--n N] [--queries Q] [--only a,b]``
(``make bench-store`` installs the peers into ``.venv-bench`` and runs it there).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_exact import cpu_description  # noqa: E402

K = 10
BATCH = 1000
THRESHOLDS = [None, 500, 100, 10, 1]  # bucket < t: all, 50 %, 10 %, 1 %, 0.1 %
LEVELS = ["unfiltered", "50 %", "10 %", "1 %", "0.1 %"]
WARMUP = 10  # warm-up queries per level (not measured)
#: Contenders run on fewer records / queries than asked, and why. Qdrant's local mode writes
#: one SQLite transaction per point (≈ 36 points/s here: a 100k ingest would take ~45 min),
#: scans in Python for filters (≈ 0.3 s a filtered query at 5k), and warns above 20,000 points
#: ("Local mode is not recommended for collections with more than 20,000 points").
CAPS = {
    "qdrant": (
        20_000,
        50,
        "20k records and 50 queries: local mode's own limit (it warns above "
        "20,000 points), one transaction per point and filters scanned in Python",
    ),
}

CONTENDERS = {
    "knnkit-hnsw": "knnkit.Store (hnsw)",
    "knnkit-flat": "knnkit.Store (flat)",
    "chroma": "Chroma",
    "lancedb": "LanceDB (IVF_PQ)",
    "lancedb-hnsw": "LanceDB (IVF_HNSW_SQ)",
    "lancedb-flat": "LanceDB (no index)",
    "milvus": "Milvus Lite (HNSW)",
    "sqlite-vec": "sqlite-vec",
    "qdrant": "Qdrant local",
}


def shared_data() -> Path:
    for c in (os.environ.get("KNNKIT_SHARED_DATA"), ROOT.parent / "shared" / "data"):
        if c and (Path(c) / "words_minilm.npz").exists():
            return Path(c) / "words_minilm.npz"
    raise SystemExit("words_minilm.npz not found: set KNNKIT_SHARED_DATA to ../shared/data")


# --------------------------------------------------------------------------------------------
# Contenders. Each: create(dir), add(ids, X, buckets), finish() (steps a peer needs before it
# answers at full speed: index builds, flushes), open(dir), query(q, t) -> list of int ids,
# close(). ``durability`` says what a returned write means.
# --------------------------------------------------------------------------------------------


class KnnkitStore:
    durability = (
        'SQLite WAL, synchronous=FULL (knnkit\'s default `durability="full"`): each add is one '
        "transaction, fsynced before it returns"
    )

    def __init__(self, index):
        self.kind = index

    def create(self, d):
        import knnkit

        self.db = knnkit.Store(d)
        self.col = self.db.create_collection("bench", dim=384, metric="cosine", index=self.kind)

    def add(self, ids, X, b):
        self.col.add([str(i) for i in ids], vectors=X, metadata=[{"bucket": int(v)} for v in b])

    def finish(self):
        pass

    def open(self, d):
        import knnkit

        self.db = knnkit.Store(d)
        self.col = self.db.get_collection("bench")

    def query(self, q, t):
        where = None if t is None else {"bucket": {"$lt": t}}
        res = self.col.query(q[None], k=K, where=where, include=())
        return [int(i) for i in res["ids"][0]]

    def close(self):
        del self.col, self.db

    def info(self):
        import knnkit

        size, from_snapshot = self.col._native.index_state()
        return {
            "simd": knnkit.simd_level(),
            "params": dict(self.col.params),
            "index_size": size,
            "loaded_from_snapshot": from_snapshot,
        }


class Chroma:
    durability = (
        "its SQLite (WAL) holds the write log and metadata and is fsynced on each add; the HNSW "
        "files are written by Chroma's own policy and rebuilt from the log"
    )

    def __init__(self, threads):
        self.threads = threads

    def _client(self, d):
        import chromadb
        from chromadb.config import Settings

        return chromadb.PersistentClient(path=d, settings=Settings(anonymized_telemetry=False))

    def create(self, d):
        self.client = self._client(d)
        self.col = self.client.create_collection(
            "bench", configuration={"hnsw": {"space": "cosine", "num_threads": self.threads}}
        )

    def add(self, ids, X, b):
        self.col.add(
            ids=[str(i) for i in ids], embeddings=X, metadatas=[{"bucket": int(v)} for v in b]
        )

    def finish(self):
        pass

    def open(self, d):
        self.client = self._client(d)
        self.col = self.client.get_collection("bench")

    def query(self, q, t):
        where = None if t is None else {"bucket": {"$lt": t}}
        res = self.col.query(query_embeddings=q[None], n_results=K, where=where, include=[])
        return [int(i) for i in res["ids"][0]]

    def close(self):
        del self.col, self.client

    def info(self):
        import chromadb

        return {
            "version": chromadb.__version__,
            "hnsw": "defaults (M 16, ef_construction 100, ef_search 100)",
        }


class Lance:
    durability = (
        "each add writes a new data file and table version, with no fsync at all (see the fsync "
        "column): safe against a process crash, not against an OS crash or a power cut"
    )

    def __init__(self, index):
        self.index = index  # "ivf_pq", "hnsw_sq" or None

    def create(self, d):
        import lancedb
        import pyarrow as pa

        self.db = lancedb.connect(d)
        self.schema = pa.schema(
            [
                pa.field("id", pa.int64()),
                pa.field("vector", pa.list_(pa.float32(), 384)),
                pa.field("bucket", pa.int64()),
            ]
        )
        self.tbl = self.db.create_table("bench", schema=self.schema)

    def add(self, ids, X, b):
        import pyarrow as pa

        vec = pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1), pa.float32()), 384)
        self.tbl.add(
            pa.Table.from_arrays(
                [pa.array(ids, pa.int64()), vec, pa.array(b, pa.int64())], schema=self.schema
            )
        )

    def finish(self):
        from lancedb.index import BTree, HnswSq, IvfPq

        if self.index == "ivf_pq":
            self.tbl.create_index("vector", config=IvfPq(distance_type="cosine"))
        elif self.index == "hnsw_sq":
            self.tbl.create_index("vector", config=HnswSq(distance_type="cosine"))
        self.tbl.create_index("bucket", config=BTree())  # the scalar index its docs advise

    def open(self, d):
        import lancedb

        self.db = lancedb.connect(d)
        self.tbl = self.db.open_table("bench")

    def query(self, q, t):
        s = self.tbl.search(q, vector_column_name="vector").distance_type("cosine").limit(K)
        if t is not None:
            s = s.where(f"bucket < {t}", prefilter=True)
        return s.select(["id"]).to_arrow()["id"].to_pylist()

    def close(self):
        del self.tbl, self.db

    def info(self):
        import lancedb

        return {"version": lancedb.__version__, "index": self.index or "none (exact scan)"}


class Milvus:
    durability = (
        "inserts are acknowledged by its embedded server without an fsync (see the fsync "
        "column); flush() at the end of the ingest seals the segments (counted in the ingest)"
    )
    params = {"M": 16, "efConstruction": 200, "ef": 64}

    def create(self, d):
        from pymilvus import DataType, MilvusClient

        self.client = MilvusClient(str(Path(d) / "milvus.db"))
        s = MilvusClient.create_schema(auto_id=False)
        s.add_field("id", DataType.INT64, is_primary=True)
        s.add_field("vector", DataType.FLOAT_VECTOR, dim=384)
        s.add_field("bucket", DataType.INT64)
        ip = self.client.prepare_index_params()
        ip.add_index(
            field_name="vector",
            index_type="HNSW",
            metric_type="COSINE",
            params={"M": self.params["M"], "efConstruction": self.params["efConstruction"]},
        )
        self.client.create_collection("bench", schema=s, index_params=ip)

    def add(self, ids, X, b):
        rows = [
            {"id": int(i), "vector": v, "bucket": int(c)}
            for i, v, c in zip(ids, X.tolist(), b, strict=True)
        ]
        self.client.insert("bench", rows)

    def finish(self):
        self.client.flush("bench")
        # wait for the index to cover every row
        for _ in range(600):
            d = self.client.describe_index("bench", "vector")
            if int(d.get("pending_index_rows", 0)) == 0:
                break
            time.sleep(0.1)

    def open(self, d):
        from pymilvus import MilvusClient

        self.client = MilvusClient(str(Path(d) / "milvus.db"))
        self.client.load_collection("bench")

    def query(self, q, t):
        res = self.client.search(
            "bench",
            data=[q.tolist()],
            limit=K,
            filter="" if t is None else f"bucket < {t}",
            output_fields=["id"],
            search_params={"metric_type": "COSINE", "params": {"ef": self.params["ef"]}},
        )
        return [int(h["id"]) for h in res[0]]

    def close(self):
        self.client.close()
        del self.client

    def info(self):
        import importlib.metadata as md

        return {
            "pymilvus": md.version("pymilvus"),
            "milvus-lite": md.version("milvus-lite"),
            "index": self.client.describe_index("bench", "vector")
            if hasattr(self, "client")
            else None,
            "params": self.params,
        }


def _sqlite():
    """Python's sqlite3 when it can load extensions, else pysqlite3 (its own SQLite copy)."""
    import sqlite3

    if hasattr(sqlite3.Connection, "enable_load_extension"):
        return sqlite3
    import pysqlite3.dbapi2 as sqlite3  # noqa: PLC0415

    return sqlite3


class SqliteVec:
    durability = "SQLite WAL, synchronous=FULL (set here, as knnkit's): each batch one transaction"

    def _connect(self, d):
        import sqlite_vec

        sq = _sqlite()
        con = sq.connect(str(Path(d) / "vec.db"), isolation_level=None)
        con.enable_load_extension(True)
        sqlite_vec.load(con)
        con.enable_load_extension(False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        return con

    def create(self, d):
        self.con = self._connect(d)
        self.con.execute(
            "CREATE VIRTUAL TABLE items USING vec0("
            "embedding float[384] distance_metric=cosine, bucket integer)"
        )

    def add(self, ids, X, b):
        rows = [
            (int(i) + 1, x.tobytes(), int(c)) for i, x, c in zip(ids, X, b, strict=True)
        ]  # rowid 0 is avoided
        self.con.execute("BEGIN")
        self.con.executemany("INSERT INTO items(rowid, embedding, bucket) VALUES (?, ?, ?)", rows)
        self.con.execute("COMMIT")

    def finish(self):
        pass

    def open(self, d):
        self.con = self._connect(d)

    def query(self, q, t):
        if t is None:
            cur = self.con.execute(
                "SELECT rowid FROM items WHERE embedding MATCH ? AND k = ? ORDER BY distance",
                (q.tobytes(), K),
            )
        else:
            cur = self.con.execute(
                "SELECT rowid FROM items WHERE embedding MATCH ? AND k = ? AND bucket < ? "
                "ORDER BY distance",
                (q.tobytes(), K, t),
            )
        return [r[0] - 1 for r in cur.fetchall()]

    def close(self):
        self.con.close()

    def info(self):
        import importlib.metadata as md

        sq = _sqlite()
        return {
            "sqlite-vec": md.version("sqlite-vec"),
            "sqlite": sq.sqlite_version,
            "driver": sq.__name__,
        }


class Qdrant:
    durability = (
        "local mode persists each point as its own transaction in a SQLite file (Python's "
        "sqlite3: rollback journal, synchronous=FULL by default) and answers by a numpy scan in "
        "memory (local mode has no HNSW and evaluates filters in Python)"
    )

    def create(self, d):
        from qdrant_client import QdrantClient, models

        self.client = QdrantClient(path=d)
        self.client.create_collection(
            "bench",
            vectors_config=models.VectorParams(size=384, distance=models.Distance.COSINE),
        )

    def add(self, ids, X, b):
        from qdrant_client import models

        self.client.upsert(
            "bench",
            points=models.Batch(
                ids=[int(i) for i in ids],
                vectors=X.tolist(),
                payloads=[{"bucket": int(c)} for c in b],
            ),
            wait=True,
        )

    def finish(self):
        pass

    def open(self, d):
        from qdrant_client import QdrantClient

        self.client = QdrantClient(path=d)

    def query(self, q, t):
        from qdrant_client import models

        flt = (
            None
            if t is None
            else models.Filter(must=[models.FieldCondition(key="bucket", range=models.Range(lt=t))])
        )
        res = self.client.query_points(
            "bench", query=q.tolist(), limit=K, query_filter=flt, with_payload=False
        )
        return [int(p.id) for p in res.points]

    def close(self):
        self.client.close()

    def info(self):
        import importlib.metadata as md

        return {"qdrant-client": md.version("qdrant-client")}


def make(name: str, threads: int):
    return {
        "knnkit-hnsw": lambda: KnnkitStore("hnsw"),
        "knnkit-flat": lambda: KnnkitStore("flat"),
        "chroma": lambda: Chroma(threads),
        "lancedb": lambda: Lance("ivf_pq"),
        "lancedb-hnsw": lambda: Lance("hnsw_sq"),
        "lancedb-flat": lambda: Lance(None),
        "milvus": Milvus,
        "sqlite-vec": SqliteVec,
        "qdrant": Qdrant,
    }[name]()


# --------------------------------------------------------------------------------------------
# Child processes
# --------------------------------------------------------------------------------------------


def _descendants_hwm() -> int:
    """Peak RSS (VmHWM) of the live processes this one started (Milvus Lite's server, ...)."""
    me, total = os.getpid(), 0
    parents = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
            parents[int(p.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    mine, grew = {me}, True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in mine and pid not in mine:
                mine.add(pid)
                grew = True
    for pid in mine - {me}:
        total += _vm("VmHWM", str(pid))
    return total


def _vm(field: str, pid: str = "self") -> int:
    """A field of /proc/PID/status in bytes (VmRSS, VmHWM); 0 when unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def peak_rss(helpers: int = 0) -> int:
    """This process's peak RSS (VmHWM: its own since exec, unlike getrusage's ru_maxrss, which
    Linux carries over from the parent through fork and exec) plus ``helpers``, the peak of the
    processes it started, taken while they ran."""
    return _vm("VmHWM") + helpers


def threads_seen(threads: int) -> list[dict]:
    from threadpoolctl import threadpool_info

    return [{"api": i["internal_api"], "num_threads": i["num_threads"]} for i in threadpool_info()]


def child(args) -> dict:
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, cpus[: args.threads])
    import importlib

    from threadpoolctl import threadpool_limits

    for m in MODULES[args.child]:
        importlib.import_module(m)
    if args.child == "sqlite-vec":
        _sqlite()
    work = Path(args.work)
    cfg = json.loads((work / "config.json").read_text())
    n = args.n_override or cfg["n"].get(args.child, cfg["n"]["default"])
    store_dir = work / args.child
    store_dir.mkdir(exist_ok=True)
    store_dir = str(store_dir)
    out: dict = {"phase": args.phase}
    with threadpool_limits(args.threads):
        if args.phase == "ingest":
            X = np.load(work / "X.npy")[:n]
            b = np.load(work / "bucket.npy")[:n]
            out["data_bytes"] = int(X.nbytes + b.nbytes)
            t0 = time.perf_counter()
            c = make(args.child, args.threads)
            c.create(store_dir)
            batch_s = []
            for s in range(0, len(X), BATCH):
                tb = time.perf_counter()
                c.add(np.arange(s, min(s + BATCH, len(X))), X[s : s + BATCH], b[s : s + BATCH])
                batch_s.append(time.perf_counter() - tb)
            t1 = time.perf_counter()
            out["batch_s"] = batch_s
            c.finish()
            t2 = time.perf_counter()
            out.update(add_s=t1 - t0, finish_s=t2 - t1, info=c.info())
            helpers = _descendants_hwm()
            c.close()
            out["close_s"] = time.perf_counter() - t2
        else:
            Q = np.load(work / "Q.npy")
            t0 = time.perf_counter()
            c = make(args.child, args.threads)
            c.open(store_dir)
            first = c.query(Q[0], None)
            out["reopen_s"] = time.perf_counter() - t0
            out["first_query_n"] = len(first)
            nq = cfg["nq"].get(args.child, cfg["nq"]["default"])
            warm = Q[cfg["nq"]["default"] :]
            out["levels"] = []
            for t in cfg["thresholds"]:
                for q in warm[:WARMUP]:
                    c.query(q, t)
                ids, lat = [], []
                for q in Q[:nq]:
                    s = time.perf_counter()
                    r = c.query(q, t)
                    lat.append(time.perf_counter() - s)
                    ids.append(r)
                out["levels"].append({"threshold": t, "lat": lat, "ids": ids})
            out["info"] = c.info()
            helpers = _descendants_hwm()
            c.close()
        out["threads"] = threads_seen(args.threads)
        out["cpus"] = len(os.sched_getaffinity(0))
    out["rss"] = peak_rss(helpers)
    out["helpers_rss"] = helpers
    return out


#: The modules each contender needs; imported before any timing starts (import time is
#: measured apart, in a fresh process).
MODULES = {
    "knnkit-hnsw": ["knnkit"],
    "knnkit-flat": ["knnkit"],
    "chroma": ["chromadb"],
    "lancedb": ["lancedb", "pyarrow", "lancedb.index"],
    "lancedb-hnsw": ["lancedb", "pyarrow", "lancedb.index"],
    "lancedb-flat": ["lancedb", "pyarrow", "lancedb.index"],
    "milvus": ["pymilvus", "milvus_lite"],
    "sqlite-vec": ["sqlite_vec"],
    "qdrant": ["qdrant_client", "qdrant_client.models"],
}


def import_time(name: str, threads: int) -> float:
    """Seconds to import the peer's package in a fresh process (part of a cold start, reported
    apart from the reopen time)."""
    mods = ", ".join(MODULES[name])
    code = f"import time; t=time.perf_counter(); import {mods}; print(time.perf_counter()-t)"
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=child_env(threads)
    )
    try:
        return float(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return float("nan")


def child_env(threads: int) -> dict:
    env = dict(os.environ)
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
        env[v] = str(threads)
    env["ANONYMIZED_TELEMETRY"] = "False"
    env["HF_HUB_OFFLINE"] = "1"
    env.setdefault("PYTHONPATH", str(ROOT / "python"))
    return env


AUDIT_BATCHES = (2, 4)
SYNC_CALLS = ("fsync", "fdatasync", "sync_file_range", "msync", "syncfs", "sync")


def fsync_audit(name: str, work: Path, threads: int, timeout: float) -> dict:
    """fsync-family system calls per 1,000-record batch, under ``strace -f -c``: ingests of 2
    and of 4 batches, the difference halved (so creating and closing the store do not count).
    Whether an acknowledged write has reached the disk, measured rather than read from docs."""
    totals = []
    for batches in AUDIT_BATCHES:
        out = work / f"{name}.strace"
        out.unlink(missing_ok=True)
        res = run_child(
            name,
            "ingest",
            work,
            threads,
            timeout,
            prefix=["strace", "-f", "-c", "-o", str(out), "-e", "trace=" + ",".join(SYNC_CALLS)],
            extra=["--n-override", str(batches * BATCH)],
        )
        shutil.rmtree(work / name, ignore_errors=True)
        if "error" in res or not out.exists():
            return {"error": res.get("error", "no strace output")}
        calls = {}
        for line in out.read_text().splitlines():
            parts = line.split()
            if parts and parts[-1] in SYNC_CALLS and len(parts) >= 5:
                calls[parts[-1]] = int(parts[3])
        totals.append(calls)
    lo, hi = (sum(c.values()) for c in totals)
    return {
        "batches": list(AUDIT_BATCHES),
        "calls": totals,
        "per_batch": (hi - lo) / (AUDIT_BATCHES[1] - AUDIT_BATCHES[0]),
    }


def run_child(
    name: str,
    phase: str,
    work: Path,
    threads: int,
    timeout: float,
    prefix: list[str] | None = None,
    extra: list[str] | None = None,
) -> dict:
    cmd = (prefix or []) + [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        name,
        "--phase",
        phase,
        "--work",
        str(work),
        "--threads",
        str(threads),
    ]
    res = work / f"{name}.{phase}.json"
    res.unlink(missing_ok=True)
    try:
        p = subprocess.run(
            cmd + ["--result", str(res)] + (extra or []),
            env=child_env(threads),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"{phase}: timed out after {timeout:.0f} s"}
    if p.returncode != 0 or not res.exists():
        tail = (p.stderr or p.stdout).strip().splitlines()[-6:]
        return {"error": f"{phase} failed (exit {p.returncode}): " + " | ".join(tail)}
    return json.loads(res.read_text())


def importable(name: str) -> str | None:
    import importlib.util

    missing = [m for m in MODULES[name] if "." not in m and importlib.util.find_spec(m) is None]
    if name == "sqlite-vec" and not missing:
        try:
            _sqlite()
        except ImportError:
            missing.append("an sqlite3 that loads extensions (pysqlite3)")
    return f"not installed: {', '.join(missing)}" if missing else None


# --------------------------------------------------------------------------------------------
# Scoring (parent)
# --------------------------------------------------------------------------------------------


def dir_bytes(d: Path) -> int:
    return sum(f.stat().st_size for f in d.rglob("*") if f.is_file())


def score(levels, S, bucket):
    """Recall and counts of each level's answers against the exact filtered answer."""
    out = []
    n = S.shape[1]
    for lv in levels:
        t = lv["threshold"]
        mask = np.ones(n, bool) if t is None else bucket < t
        m = int(mask.sum())
        e = min(K, m)
        Sm = np.where(mask[None, :], S, -np.inf)
        # e-th largest similarity among the matches, per query
        kth = -np.partition(-Sm, e - 1, axis=1)[:, e - 1]
        recalls, counts, wrong = [], [], 0
        for qi, ids in enumerate(lv["ids"]):
            got = [i for i in dict.fromkeys(ids) if 0 <= i < n]
            wrong += sum(1 for i in got if not mask[i]) + (len(ids) - len(got))
            hits = sum(1 for i in got if mask[i] and S[qi, i] >= kth[qi] - 1e-5)
            recalls.append(min(hits, e) / e)
            counts.append(len(ids))
        lat = np.asarray(lv["lat"]) * 1e3
        out.append(
            {
                "level": LEVELS[THRESHOLDS.index(t)],
                "matches": m,
                "expected": e,
                "recall": float(np.mean(recalls)),
                "returned_min": int(min(counts)),
                "returned_max": int(max(counts)),
                "exact_count_share": float(np.mean([c == e for c in counts])),
                "wrong": int(wrong),
                "p50_ms": float(np.percentile(lat, 50)),
                "p99_ms": float(np.percentile(lat, 99)),
                "mean_ms": float(lat.mean()),
            }
        )
    return out


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def fmt_rate(x):
    return f"{x:,.0f}" if x else "—"


PACKAGES = ("chromadb", "lancedb", "pymilvus", "milvus-lite", "sqlite-vec", "qdrant-client")


def versions() -> dict:
    import importlib.metadata as md

    out = {}
    for p in PACKAGES:
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            out[p] = None
    return out


def report(res) -> str:
    rows = res["contenders"]
    n = res["n"]
    lines = [
        f"{n:,} × 384 MiniLM word embeddings (`words_minilm.npz`), cosine, k = {K}, "
        f"{res['nq']} measured queries per level (one per call, after {WARMUP} warm-up ones); "
        f"metadata `bucket` in [0, 1000), filter `bucket < t` for 50 / 10 / 1 / 0.1 %. "
        f"Every contender in its own processes, pinned to {res['threads']} CPUs. "
        f"CPU: {res['cpu']}; knnkit kernels: **{res['simd']}**. {res.get('note', '')}",
        *(
            [
                "",
                "Versions: "
                + ", ".join(f"{p} {v}" for p, v in res["versions"].items() if v)
                + f"; Python {res.get('python', '?')}.",
            ]
            if res.get("versions")
            else []
        ),
        "",
        "| contender | ingest (records/s) | of which index build (s) | reopen + first query (s) "
        "| import (s) | disk (bytes/record) | peak RSS ingest / serve (MiB) "
        "| fsyncs per batch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        label = CONTENDERS[name]
        if "skipped" in r or "error" in r:
            why = r.get("skipped") or r.get("error")
            lines.append(f"| {label} | skipped: {why} | | | | | | |")
            continue
        ing = r["ingest"]
        total = ing["add_s"] + ing["finish_s"]
        serve = r.get("serve", {})
        reopen = f"{serve['reopen_s']:.2f}" if "reopen_s" in serve else "—"
        au = r.get("fsync_audit", {})
        audit = f"{au['per_batch']:,.1f}" if "per_batch" in au else "—"
        nc = r.get("n", n)
        if nc != n:
            label += f" ({nc // 1000}k records)"
        lines.append(
            f"| {label} | {nc / total:,.0f} | {ing['finish_s']:.1f} | {reopen} | "
            f"{r.get('import_s', float('nan')):.2f} | {r['disk_bytes'] / nc:,.0f} | "
            f"{ing['rss'] / 2**20:,.0f} / "
            f"{serve['rss'] / 2**20 if 'rss' in serve else float('nan'):,.0f} | {audit} |"
        )
    lines += [
        "",
        "Ingest: batches of 1,000 records (vector + metadata), one call each, plus the steps a "
        "peer needs before it answers at full speed (index build, flush), over the total time. "
        "Reopen: a new process opens the store and answers a first query (imports done "
        "before; import time apart). Disk: the store's directory after the ingest process "
        "ended. Peak RSS: each process's own (VmHWM), plus any helper process it started; the "
        "ingest figure includes the input arrays the benchmark holds "
        f"({res['n'] * 1544 / 2**20:,.0f} MiB for {res['n']:,} records). fsyncs per batch: "
        "fsync-family system calls per 1,000-record batch under strace (ingests of 2 and of 4 batches, the difference halved).",
        "",
        "Query latency, p50 / p99 in ms (one query per call):",
        "",
        "| contender | " + " | ".join(LEVELS) + " |",
        "|---|" + "---|" * len(LEVELS),
    ]
    for name, r in rows.items():
        if "scores" not in r:
            continue
        cells = [f"{s['p50_ms']:.2f} / {s['p99_ms']:.2f}" for s in r["scores"]]
        lines.append(f"| {CONTENDERS[name]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Recall@10 against the exact filtered answer, and results returned (min–max per query; "
        "expected `min(k, matches)`; ✓ when every query returned exactly that many; wrong = "
        "results that do not match the filter):",
        "",
        "| contender | " + " | ".join(LEVELS) + " |",
        "|---|" + "---|" * len(LEVELS),
    ]
    for name, r in rows.items():
        if "scores" not in r:
            continue
        cells = []
        for s in r["scores"]:
            rng = (
                f"{s['returned_min']}"
                if s["returned_min"] == s["returned_max"]
                else f"{s['returned_min']}–{s['returned_max']}"
            )
            ok = " ✓" if s["exact_count_share"] == 1.0 else f" of {s['expected']}"
            bad = f", {s['wrong']} wrong" if s["wrong"] else ""
            cells.append(f"{s['recall']:.3f} ({rng}{ok}{bad})")
        lines.append(f"| {CONTENDERS[name]} | " + " | ".join(cells) + " |")
    lines += ["", "Durability of an acknowledged write, per contender:", ""]
    for name, r in rows.items():
        if "durability" in r:
            lines.append(f"- {CONTENDERS[name]}: {r['durability']}.")
    capped = [(CONTENDERS[c], r["capped"]) for c, r in rows.items() if "capped" in r]
    if capped:
        lines += ["", "Run on less than the others:", ""]
        lines += [f"- {label}: {why}." for label, why in capped]
    lines += targets(res)
    return "\n".join(lines)


def targets(res) -> list[str]:
    rows = res["contenders"]
    kk, ch = rows.get("knnkit-hnsw", {}), rows.get("chroma", {})
    if "scores" not in kk or "scores" not in ch:
        return []
    n = res["n"]

    def rate(r):
        return n / (r["ingest"]["add_s"] + r["ingest"]["finish_s"])

    out = [
        "",
        "Targets of issue 14 (knnkit.Store with HNSW against Chroma, same run):",
        "",
        "| target | knnkit | Chroma | ratio | met |",
        "|---|---|---|---|---|",
    ]
    r = rate(kk) / rate(ch)
    out.append(
        f"| durable ingest ≥ 3× Chroma | {rate(kk):,.0f} /s | {rate(ch):,.0f} /s | {r:.2f}× | "
        f"{'yes' if r >= 3 else 'no'} |"
    )
    for i, lv in enumerate(LEVELS):
        a, b = kk["scores"][i]["p50_ms"], ch["scores"][i]["p50_ms"]
        need = 5 if i == 0 else 10
        out.append(
            f"| p50 {lv} ≤ 1/{need} of Chroma's | {a:.2f} ms | {b:.2f} ms | 1/{b / a:.1f} | "
            f"{'yes' if b / a >= need else 'no'} |"
        )
    worst = min(s["recall"] for s in kk["scores"])
    exact = all(s["exact_count_share"] == 1.0 for s in kk["scores"])
    out.append(
        f"| recall ≥ 0.95 and exactly min(k, matches), every level | {worst:.3f} (worst); "
        f"{'exact counts' if exact else 'counts short'} | "
        f"{min(s['recall'] for s in ch['scores']):.3f} (worst) | | "
        f"{'yes' if worst >= 0.95 and exact else 'no'} |"
    )
    ro = kk["serve"]["reopen_s"]
    out.append(
        f"| reopen of {n:,} records ≤ 1 s | {ro:.2f} s | {ch['serve']['reopen_s']:.2f} s | | "
        f"{'yes' if ro <= 1 else 'no'}{' (target is for 100k)' if n != 100_000 else ''} |"
    )
    return out


def write_doc(text: str) -> None:
    doc = ROOT / "docs" / "benchmarks.md"
    body = doc.read_text()
    start, end = "<!-- store:start -->", "<!-- store:end -->"
    if start not in body:
        body += (
            "\n## Store vs Chroma, LanceDB, Milvus Lite, sqlite-vec and Qdrant (issue 14)\n\n"
            f"`make bench-store` (benchmarks/bench_store.py).\n\n{start}\n{end}\n"
        )
    a, b = body.index(start) + len(start), body.index(end)
    doc.write_text(body[:a] + "\n" + text + "\n" + body[b:])


# --------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="records (default 100,000)")
    ap.add_argument("--queries", type=int, default=200, help="measured queries per level")
    ap.add_argument(
        "--only", default="", help="comma-separated contenders: " + ", ".join(CONTENDERS)
    )
    ap.add_argument("--quick", action="store_true", help="smoke run: 5,000 records, 50 queries")
    ap.add_argument("--threads", type=int, default=2, help="CPUs for every contender (default 2)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per child process")
    ap.add_argument("--workdir", default=None, help="where the stores are made (default: tmp)")
    ap.add_argument("--note", default="", help="a sentence added to the table's caption")
    ap.add_argument(
        "--fsync-audit",
        action="store_true",
        help="also count each contender's fsync calls per batch under strace (3 batches)",
    )
    ap.add_argument("--doc", action="store_true", help="write the tables into docs/benchmarks.md")
    ap.add_argument("--report-only", action="store_true", help="print/write from the saved JSON")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--n-override", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        out = child(args)
        Path(args.result).write_text(json.dumps(out))
        return

    results_path = (
        ROOT / "benchmarks" / "results" / ("store-quick.json" if args.quick else "store.json")
    )
    if args.report_only:
        res = json.loads(results_path.read_text())
        text = report(res)
        print(text)
        if args.doc:
            write_doc(text)
        return

    if args.quick:
        args.n, args.queries = min(args.n, 5_000), min(args.queries, 50)
    if args.fsync_audit and not shutil.which("strace"):
        print("--fsync-audit: strace not found (apt-get install strace); no audit")
        args.fsync_audit = False
    names = [s for s in args.only.split(",") if s] or list(CONTENDERS)
    unknown = set(names) - set(CONTENDERS)
    if unknown:
        raise SystemExit(f"--only: unknown {sorted(unknown)}; expected some of {list(CONTENDERS)}")

    z = np.load(shared_data())
    n = min(args.n, len(z["base"]))
    X = np.ascontiguousarray(z["base"][:n].astype(np.float32))
    Qall = z["queries"].astype(np.float32)
    nq = min(args.queries, len(Qall) - WARMUP)
    Q = np.ascontiguousarray(Qall[: nq + WARMUP])
    rng = np.random.default_rng(0)
    bucket = (rng.permutation(n) * 1000 // n).astype(np.int64)

    import knnkit

    res = {
        "cpu": cpu_description(),
        "simd": knnkit.simd_level(),
        "n": n,
        "nq": nq,
        "k": K,
        "threads": args.threads,
        "python": platform.python_version(),
        "note": args.note,
        "versions": versions(),
        "contenders": {},
    }
    Xn = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-30)
    Qn = Q[:nq] / np.maximum(np.linalg.norm(Q[:nq], axis=1, keepdims=True), 1e-30)
    S = Qn @ Xn.T  # cosine similarity of every measured query to every record

    base = Path(args.workdir) if args.workdir else None
    work = Path(tempfile.mkdtemp(prefix="knnkit-bench-store-", dir=base))
    try:
        np.save(work / "X.npy", X)
        np.save(work / "Q.npy", Q)
        np.save(work / "bucket.npy", bucket)
        caps = {c: (min(n, v[0]), min(nq, v[1])) for c, v in CAPS.items()}
        cfg = {
            "n": {"default": n, **{c: v[0] for c, v in caps.items()}},
            "nq": {"default": nq, **{c: v[1] for c, v in caps.items()}},
            "thresholds": THRESHOLDS,
        }
        (work / "config.json").write_text(json.dumps(cfg))
        print(f"{n} records, {nq} queries per level, {args.threads} threads; work dir {work}")
        for name in names:
            why = importable(name)
            if why:
                print(f"{CONTENDERS[name]}: skipped ({why})", flush=True)
                res["contenders"][name] = {"skipped": why}
                continue
            entry: dict = {"durability": make(name, args.threads).durability}
            nc, nqc = caps.get(name, (n, nq))
            entry["n"], entry["nq"] = nc, nqc
            if (nc, nqc) != (n, nq):
                entry["capped"] = CAPS[name][2]
            t = time.perf_counter()
            ing = run_child(name, "ingest", work, args.threads, args.timeout)
            if "error" in ing:
                print(f"{CONTENDERS[name]}: {ing['error']}", flush=True)
                res["contenders"][name] = {**entry, **ing}
                shutil.rmtree(work / name, ignore_errors=True)
                continue
            entry["ingest"] = ing
            entry["disk_bytes"] = dir_bytes(work / name)
            if name.startswith("knnkit"):
                entry["files"] = {
                    f.name: f.stat().st_size for f in (work / name).iterdir() if f.is_file()
                }
            print(
                f"{CONTENDERS[name]}: ingest {nc / (ing['add_s'] + ing['finish_s']):,.0f} rec/s "
                f"(build {ing['finish_s']:.1f} s, slowest batch {max(ing['batch_s']):.2f} s), "
                f"disk {entry['disk_bytes'] / nc:,.0f} B/rec",
                flush=True,
            )
            serve = run_child(name, "serve", work, args.threads, args.timeout)
            if "error" in serve:
                print(f"{CONTENDERS[name]}: {serve['error']}", flush=True)
                entry["error"] = serve["error"]
            else:
                entry["scores"] = score(serve.pop("levels"), S[:nqc, :nc], bucket[:nc])
                entry["serve"] = serve
                print(
                    f"  reopen {serve['reopen_s']:.2f} s; "
                    + "; ".join(
                        f"{s['level']}: p50 {s['p50_ms']:.2f} ms r={s['recall']:.3f} "
                        f"n={s['returned_min']}/{s['expected']}"
                        for s in entry["scores"]
                    ),
                    flush=True,
                )
            entry["import_s"] = import_time(name, args.threads)
            shutil.rmtree(work / name, ignore_errors=True)
            if args.fsync_audit:
                entry["fsync_audit"] = fsync_audit(name, work, args.threads, args.timeout)
                print(f"  fsync audit: {entry['fsync_audit']}", flush=True)
            entry["wall_s"] = time.perf_counter() - t
            res["contenders"][name] = entry
            shutil.rmtree(work / name, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    if args.only and results_path.exists():
        # merge into an earlier run of the same size
        old = json.loads(results_path.read_text())
        if old.get("n") == n and old.get("nq") == nq:
            res["contenders"] = {**old["contenders"], **res["contenders"]}
    results_path.write_text(json.dumps(res, indent=1))
    text = report(res)
    print()
    print(text)
    if args.doc:
        write_doc(text)


if __name__ == "__main__":
    main()
