"""``knnkit serve`` as processes: two workers sharing one store (every acknowledged write is seen
by the next read, whichever worker serves it), a SIGKILL of the server while clients write (after
a restart, every write that got a 2xx is there), and a short bounded load test (zero errors)."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from _server import Server, needs_server

import knnkit
from knnkit.server import loadgen

pytestmark = needs_server


def _pid(url: str) -> int:
    # a new connection each time: uvicorn's workers share the listening socket
    with urllib.request.urlopen(url + "/healthz", timeout=10) as r:
        return json.load(r)["pid"]


def test_two_workers_share_one_store(tmp_path):
    path = tmp_path / "db"
    with Server(path, "--workers", "2") as s:
        setup = knnkit.Client(s.url)
        setup.create_collection("c", dim=4, index="flat")
        setup.close()
        # both workers answer (the second may still be starting: rounds of parallel requests)
        seen: set[int] = set()
        for _ in range(100):
            with ThreadPoolExecutor(8) as pool:
                seen.update(pool.map(lambda _: _pid(s.url), range(16)))
            if len(seen) == 2:
                break
            time.sleep(0.1)
        assert len(seen) == 2, "both workers should answer"
        rng = np.random.default_rng(0)
        errors: list[str] = []

        def writer(w: int) -> None:
            # fresh connections, so the writes and the reads land on either worker
            for i in range(15):
                with knnkit.Client(s.url) as a, knnkit.Client(s.url) as b:
                    ids = [f"w{w}-{i}-{j}" for j in range(3)]
                    try:
                        a.get_collection("c").add(ids, rng.standard_normal((3, 4)), [{"w": w}] * 3)
                        got = b.get_collection("c").get(ids, include=())
                        if got.ids != ids:
                            errors.append(f"{ids} read back as {got.ids}")
                    except Exception as e:
                        errors.append(repr(e))

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        with knnkit.Client(s.url) as c:
            col = c.get_collection("c")
            assert len(col) == 3 * 15 * 3
            assert col.count({"w": 2}) == 45
            q = col.query(np.zeros((1, 4)), k=5, where={"w": 1}, include=())
            assert len(q.ids[0]) == 5
            metrics = urllib.request.Request(s.url + "/metrics")
            with urllib.request.urlopen(metrics) as r:
                text = r.read().decode()
            assert 'knnkit_collection_records{collection="c"} 135.0' in text


def test_sigkill_under_writes_loses_no_acknowledged_write(tmp_path):
    path = tmp_path / "db"
    s = Server(path).start()
    with knnkit.Client(s.url) as c:
        c.create_collection("c", dim=8, index="hnsw")
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    started = threading.Barrier(5)

    def writer(w: int) -> None:
        rng = np.random.default_rng(w)
        client = knnkit.Client(s.url, timeout=10)
        col = client.get_collection("c")
        started.wait()
        i = 0
        while not stop.is_set():
            ids = [f"{w}-{i}-{j}" for j in range(5)]
            try:
                col.add(ids, rng.standard_normal((5, 8)), [{"w": w, "i": i}] * 5)
            except (OSError, ValueError):
                break  # the server is gone
            with lock:
                acked.extend(ids)
            i += 1
        client.close()

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    started.wait()
    # kill once the writers have had some writes acknowledged (counted, not timed)
    while True:
        with lock:
            if len(acked) >= 200:
                break
        threading.Event().wait(0.01)
    s.kill()
    stop.set()
    for t in threads:
        t.join(30)
    assert len(acked) >= 200
    with Server(path) as s2, knnkit.Client(s2.url) as c:
        col = c.get_collection("c")
        got = set()
        for i in range(0, len(acked), 1000):
            got.update(col.get(acked[i : i + 1000], include=()).ids)
        assert got == set(acked), f"{len(set(acked) - got)} acknowledged writes missing"
        n = len(col)
        assert n >= len(acked)
        assert len(col.get(limit=n + 10, include=()).ids) == n
        # the index answers over everything written (exact count under a filter)
        assert len(col.query(np.zeros((1, 8)), k=n, include=()).ids[0]) == n


def test_bounded_load_has_no_errors(tmp_path):
    dim, n = 16, 2000
    with Server(tmp_path / "db") as s:
        with knnkit.Client(s.url) as c:
            col = c.create_collection("load", dim=dim, index="hnsw")
            x = np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)
            col.add([str(i) for i in range(n)], x)
        res = loadgen.run(
            lambda: loadgen.KnnkitOps(s.url, "load"),
            dim=dim,
            n_existing=n,
            clients=6,
            requests=600,
            batch=5,
            seed=1,
            max_seconds=60,
        )
        print("load:", res.summary())
        assert res.errors == []
        assert res.requests == 600
        with knnkit.Client(s.url) as c:
            col = c.get_collection("load")
            assert set(col.get(res.written, include=()).ids) == set(res.written)
            assert len(col) == n + len(res.written)
