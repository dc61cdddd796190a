"""A bounded load generator for vector stores over HTTP (the tests' load test and
``benchmarks/bench_server.py``): ``clients`` threads, each with its own connection, send a fixed
number of requests, a seeded mix of queries, upserts and gets, and stop by themselves.

The store is reached through an adapter with ``query(vectors, k)``, ``upsert(ids, vectors,
metadata)`` and ``get(ids)`` (``KnnkitOps`` for ``knnkit.Client``; the benchmark brings one for
Chroma), so two servers meet the same load. Every exception is counted as an error, and every
upsert that returned is listed (so a caller can check that it is there).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["KnnkitOps", "LoadResult", "run"]


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies: dict[str, list[float]]
    errors: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else float("nan")

    def percentile(self, q: float, kind: str | None = None) -> float:
        """Latency percentile in milliseconds (all kinds, or one of query/upsert/get)."""
        lat = (
            [x for v in self.latencies.values() for x in v]
            if kind is None
            else self.latencies.get(kind, [])
        )
        return float(np.percentile(lat, q) * 1e3) if lat else float("nan")

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": len(self.errors),
            "seconds": round(self.seconds, 3),
            "throughput_rps": round(self.throughput, 1),
            "p50_ms": round(self.percentile(50), 2),
            "p99_ms": round(self.percentile(99), 2),
            **{
                f"{k}_p50_ms": round(self.percentile(50, k), 2)
                for k in sorted(self.latencies)
                if self.latencies[k]
            },
        }


class KnnkitOps:
    """The load generator's adapter for a ``knnkit.Client`` collection."""

    def __init__(self, url: str, collection: str, api_key: str | None = None) -> None:
        import knnkit

        self.client = knnkit.Client(url, api_key=api_key)
        self.col = self.client.get_collection(collection)

    def query(self, vectors: np.ndarray, k: int) -> Any:
        return self.col.query(vectors, k=k, include=("distances",))

    def upsert(self, ids: list[str], vectors: np.ndarray, metadata: list[dict]) -> None:
        self.col.upsert(ids, vectors, metadata)

    def get(self, ids: list[str]) -> Any:
        return self.col.get(ids)

    def close(self) -> None:
        self.client.close()


def run(
    make_ops: Callable[[], Any],
    *,
    dim: int,
    n_existing: int,
    clients: int = 8,
    requests: int = 2000,
    mix: tuple[float, float, float] = (0.7, 0.2, 0.1),
    k: int = 10,
    batch: int = 10,
    seed: int = 0,
    queries: np.ndarray | None = None,
    max_seconds: float | None = None,
    prefix: str = "load",
) -> LoadResult:
    """Sends ``requests`` requests from ``clients`` threads (query, upsert, get in the
    proportions of ``mix``); upserts write ``batch`` new records each (ids ``prefix-t-i``), gets
    ask for ``batch`` distinct ids of the ``n_existing`` ``"0".."n-1"``. Stops early after
    ``max_seconds`` if given."""
    per = [requests // clients + (1 if t < requests % clients else 0) for t in range(clients)]
    lat: dict[str, list[float]] = {"query": [], "upsert": [], "get": []}
    errors: list[str] = []
    written: list[str] = []
    lock = threading.Lock()
    start_gate = threading.Barrier(clients + 1)
    gate_timeout = 600.0
    deadline = [float("inf")]

    def worker(t: int) -> None:
        mine: dict[str, list[float]] = {"query": [], "upsert": [], "get": []}
        done: list[str] = []
        errs: list[str] = []
        waited = False
        ops = None
        try:
            rng = np.random.default_rng(seed * 1000 + t)
            try:
                ops = make_ops()
            except Exception as e:  # counted; the thread still meets the barrier
                errs.append(f"connect: {type(e).__name__}: {str(e)[:200]}")
            waited = True
            start_gate.wait(timeout=gate_timeout)
            for i in range(per[t] if ops is not None else 0):
                if time.perf_counter() > deadline[0]:
                    break
                r = rng.random()
                kind = "query" if r < mix[0] else "upsert" if r < mix[0] + mix[1] else "get"
                t0 = time.perf_counter()
                try:
                    if kind == "query":
                        if queries is not None:
                            q = queries[rng.integers(0, len(queries), 1)]
                        else:
                            q = rng.standard_normal((1, dim)).astype(np.float32)
                        ops.query(q, k)
                    elif kind == "upsert":
                        ids = [f"{prefix}-{t}-{i}-{j}" for j in range(batch)]
                        vec = rng.standard_normal((batch, dim)).astype(np.float32)
                        ops.upsert(ids, vec, [{"t": t, "i": i} for _ in ids])
                        done.extend(ids)
                    else:
                        # distinct ids: some servers refuse a repeated id in one get
                        pick = rng.choice(max(n_existing, 1), min(batch, n_existing), replace=False)
                        ops.get([str(int(p)) for p in pick])
                except Exception as e:
                    errs.append(f"{kind}: {type(e).__name__}: {str(e)[:200]}")
                    continue
                mine[kind].append(time.perf_counter() - t0)
        except BaseException as e:  # never a silent thread death (it would hang the barrier)
            errs.append(f"worker {t}: {type(e).__name__}: {str(e)[:200]}")
            if not waited:
                try:
                    start_gate.wait(timeout=gate_timeout)
                except threading.BrokenBarrierError:
                    pass
        finally:
            if ops is not None:
                try:
                    ops.close()
                except Exception:
                    pass
            with lock:
                for key, v in mine.items():
                    lat[key].extend(v)
                errors.extend(errs)
                written.extend(done)

    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(clients)]
    for th in threads:
        th.start()
    try:
        start_gate.wait(timeout=gate_timeout)
    except threading.BrokenBarrierError:
        errors.append("the client threads did not all start")
    t0 = time.perf_counter()
    if max_seconds is not None:
        deadline[0] = t0 + max_seconds
    for th in threads:
        th.join()
    seconds = time.perf_counter() - t0
    total = sum(len(v) for v in lat.values()) + len(errors)
    return LoadResult(total, seconds, lat, errors, written)
