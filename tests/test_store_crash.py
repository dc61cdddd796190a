"""Crash harness for knnkit.Store: a writer process doing random add/upsert/update/delete
batches (and snapshots) is killed with SIGKILL at random moments, again and again; after each
kill the store is reopened and checked:

- every acknowledged write is there, and nothing else (the one write in flight at the kill is
  either wholly there or wholly absent);
- no duplicate ids; the index holds exactly SQLite's records;
- queries equal a brute-force oracle over SQLite's rows (flat: the same distances; HNSW:
  recall measured by distance, and exactly min(k, records) results);
- the full-text index holds exactly the records with a document, with totals that agree with
  its rows, and a text query for a document finds exactly the records holding it;
- now and then the snapshot files are truncated or bit-flipped first: the reopen rebuilds.

The writers are forked by one long-lived launcher process that has imported knnkit but opened
no store (a fork costs milliseconds where a new interpreter costs a fifth of a second), so
the CI run makes ``KILLS`` kills in well under a minute. ``KNNKIT_LONG_TESTS=1`` (``make
crash``) makes ``LONG_KILLS``.
"""

from __future__ import annotations

import gc
import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

import knnkit

KILLS = 200
LONG_KILLS = 2000
SEED = int(os.environ.get("KNNKIT_CRASH_SEED", "1729"))
#: HNSW collections must find at least this share of the exact neighbours.
MIN_RECALL = 0.9
DIM = 4
KINDS = ("flat", "hnsw")

LAUNCHER = textwrap.dedent(
    """
    import json, os, random, signal, sys, time, traceback
    import knnkit

    PATH, DIM, KINDS = sys.argv[1], 4, ("flat", "hnsw")
    POOL = [f"i{j}" for j in range(150)]

    def writer(seed, log_path):
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        say = lambda line: os.write(fd, (line + "\\n").encode())
        try:
            rng = random.Random(seed)
            db = knnkit.Store(PATH, snapshot_every=int(sys.argv[2]))
            cols = {
                k: db.get_or_create_collection(k, dim=DIM, metric="euclidean", index=k)
                for k in KINDS
            }
            have = {k: set(c.get(include=()).ids) for k, c in cols.items()}
            vec = lambda n: [[rng.randint(-64, 64) / 64 for _ in range(DIM)] for _ in range(n)]
            meta = lambda n: [rng.choice([None, {"g": rng.randint(0, 4)}, {"t": ["a"]}])
                              for _ in range(n)]
            docs = lambda n: [rng.choice([None, "d" + str(rng.randint(0, 99))]) for _ in range(n)]
            while True:
                kind = rng.choice(KINDS)
                col, h = cols[kind], have[kind]
                op = rng.choice(["add", "add", "upsert", "update", "delete", "delete"])
                if rng.random() < 0.02:
                    op = "snapshot"
                n = rng.randint(1, 8)
                new = [i for i in POOL if i not in h]
                if op == "add" and not new or op == "update" and not h:
                    op = "upsert"
                rec = {"op": op, "col": kind, "vectors": None, "metadata": None,
                       "documents": None}
                if op == "add":
                    rec["ids"] = rng.sample(new, min(n, len(new)))
                elif op == "update":
                    rec["ids"] = rng.sample(sorted(h), min(n, len(h)))
                else:
                    rec["ids"] = rng.sample(POOL, n)
                m = len(rec["ids"])
                if op in ("add", "upsert") or op == "update" and rng.random() < 0.5:
                    rec["vectors"] = vec(m)
                if op != "delete" and rng.random() < 0.7:
                    rec["metadata"] = meta(m)
                if op != "delete" and rng.random() < 0.5:
                    rec["documents"] = docs(m)
                if op == "update" and rec["vectors"] is None and rec["metadata"] is None:
                    rec["metadata"] = meta(m)
                say("I " + json.dumps(rec))
                try:
                    if op == "snapshot":
                        col.snapshot()
                    elif op == "delete":
                        col.delete(rec["ids"])
                    else:
                        getattr(col, op)(rec["ids"], rec["vectors"], rec["metadata"],
                                         rec["documents"])
                except Exception as e:
                    say("E " + repr(e))
                    continue
                say("A")
                if op in ("add", "upsert"):
                    h.update(rec["ids"])
                elif op == "delete":
                    h.difference_update(rec["ids"])
        except BaseException:
            say("X " + json.dumps(traceback.format_exc()))
        finally:
            os._exit(1)

    for line in sys.stdin:
        seed, delay, log = line.split()
        pid = os.fork()
        if pid == 0:
            writer(int(seed), log)
        time.sleep(float(delay))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        print("killed", flush=True)
    """
)


Row = tuple  # (vector tuple, metadata JSON or None, document or None)


def apply(model: dict[str, dict[str, Row]], rec: dict) -> dict[str, dict[str, Row]]:
    """The model after one write, with the store's semantics."""
    out = {k: dict(v) for k, v in model.items()}
    rows = out[rec["col"]]
    op = rec["op"]
    if op == "snapshot":
        return out
    if op == "delete":
        for i in rec["ids"]:
            rows.pop(i, None)
        return out
    for j, i in enumerate(rec["ids"]):
        old = rows.get(i)
        vec = tuple(rec["vectors"][j]) if rec["vectors"] is not None else old[0]
        meta = None if rec["metadata"] is None or rec["metadata"][j] is None else rec["metadata"][j]
        meta = json.dumps(meta, sort_keys=True) if meta is not None else None
        doc = None if rec["documents"] is None else rec["documents"][j]
        if old is not None:
            meta = meta if rec["metadata"] is not None else old[1]
            doc = doc if rec["documents"] is not None else old[2]
        rows[i] = (vec, meta, doc)
    return out


def read_log(path: Path) -> tuple[list[dict], dict | None]:
    """The acknowledged writes of a writer's log, and the one in flight at the kill."""
    done, pending = [], None
    for line in path.read_text().splitlines():
        tag, _, rest = line.partition(" ")
        if tag == "I":
            pending = json.loads(rest)
        elif tag == "A":
            assert pending is not None, "an acknowledgement without a write"
            done.append(pending)
            pending = None
        else:
            raise AssertionError(f"the writer failed: {line[:2000]}")
    return done, pending


def state(store: knnkit.Store) -> dict[str, dict[str, Row]]:
    out = {}
    for kind in KINDS:
        try:
            col = store.get_collection(kind)
        except ValueError:
            out[kind] = {}
            continue
        r = col.get(include=("metadata", "documents", "vectors"))
        assert len(set(r.ids)) == len(r.ids), f"{kind}: duplicate ids"
        out[kind] = {
            i: (
                tuple(float(v) for v in r.vectors[j]),
                None if r.metadata[j] is None else json.dumps(r.metadata[j], sort_keys=True),
                r.documents[j],
            )
            for j, i in enumerate(r.ids)
        }
        n_index, _ = col._native.index_state()
        assert n_index == len(r.ids), f"{kind}: index holds {n_index}, SQLite {len(r.ids)}"
    return out


def check_queries(store: knnkit.Store, rows: dict[str, dict[str, Row]], rng) -> None:
    q = rng.uniform(-1, 1, (3, DIM)).astype(np.float32)
    for kind in KINDS:
        ids = sorted(rows[kind])
        if not ids:
            continue
        x = np.array([rows[kind][i][0] for i in ids], dtype=np.float64)
        d = ((q[:, None, :].astype(np.float64) - x[None]) ** 2).sum(-1)
        k = min(5, len(ids))
        got = store.get_collection(kind).query(q, k=5, include=("distances",))
        assert all(len(g) == k for g in got.ids), kind
        if kind == "flat":
            # Ties (equal distances) may order differently: compare the distances.
            want_d = np.sort(np.sqrt(d), axis=1)[:, :k]
            np.testing.assert_allclose(got.distances, want_d, rtol=1e-5, atol=1e-6)
        else:
            # Recall by distance (ties on the grid of values make ids ambiguous): a hit counts
            # when it is no farther than the exact k-th neighbour.
            kth = np.sort(np.sqrt(d), axis=1)[:, k - 1]
            good = sum(
                int((np.array(g) <= t + 1e-6).sum())
                for g, t in zip(got.distances, kth, strict=True)
            )
            recall = good / (k * len(q))
            assert recall >= MIN_RECALL, f"hnsw recall {recall} over {len(ids)} records"


def check_text(store: knnkit.Store, rows: dict[str, dict[str, Row]], rng) -> None:
    for kind in KINDS:
        if not rows[kind]:
            continue
        col = store.get_collection(kind)
        documented = {i: r[2] for i, r in rows[kind].items() if r[2] is not None}
        assert col._native.check_text_index() == len(documented), kind
        for doc in rng.sample(sorted(set(documented.values())), min(3, len(documented))):
            want = sorted(i for i, d in documented.items() if d == doc)
            got = col.query(texts=[doc], k=len(rows[kind]), mode="text", include=()).ids[0]
            assert sorted(got) == want, (kind, doc)


def damage(path: Path, rng: random.Random) -> None:
    for kind in KINDS:
        snap = path / f"{kind}.{kind}.knn"
        if not snap.exists() or rng.random() < 0.5:
            continue
        data = bytearray(snap.read_bytes())
        if data and rng.random() < 0.5:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        else:
            data = data[: rng.randrange(len(data) + 1)]
        snap.write_bytes(bytes(data))


def test_acknowledged_writes_survive_sigkill(tmp_path):
    kills = LONG_KILLS if os.environ.get("KNNKIT_LONG_TESTS") else KILLS
    rng = random.Random(SEED)
    nrng = np.random.default_rng(SEED)
    text_rng = random.Random(SEED + 1)  # its own stream: the kills stay those of SEED
    path = tmp_path / "db"
    env = dict(
        os.environ,
        PYTHONPATH=str(Path(knnkit.__file__).parents[1]),
        OPENBLAS_NUM_THREADS="1",
        OMP_NUM_THREADS="1",
    )
    model: dict[str, dict[str, Row]] = {k: {} for k in KINDS}
    stats = dict(acknowledged=0, in_flight_kept=0, in_flight_lost=0, damaged=0)
    with subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(path), "30"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as launcher:
        for cycle in range(kills):
            log = tmp_path / f"log{cycle % 2}.txt"
            log.unlink(missing_ok=True)
            delay = rng.choice([0.0, 0.005, 0.02]) if rng.random() < 0.2 else rng.uniform(0, 0.12)
            launcher.stdin.write(f"{rng.randrange(2**32)} {delay:.4f} {log}\n")
            launcher.stdin.flush()
            assert launcher.stdout.readline().strip() == "killed"
            where = f"(seed {SEED}, kill {cycle})"
            if not log.exists():
                continue  # killed before its first line
            done, pending = read_log(log)
            for rec in done:
                model = apply(model, rec)
            stats["acknowledged"] += len(done)
            if rng.random() < 0.1:
                damage(path, rng)
                stats["damaged"] += 1
            store = knnkit.Store(path)
            got = state(store)
            if got != model:
                assert pending is not None, (
                    f"the store differs from every acknowledged write {where}"
                )
                with_pending = apply(model, pending)
                assert got == with_pending, (
                    f"the store is neither with nor without the write in flight {where}"
                )
                model = with_pending
                stats["in_flight_kept"] += 1
            elif pending is not None and apply(model, pending) != model:
                stats["in_flight_lost"] += 1
            check_queries(store, model, nrng)
            check_text(store, model, text_rng)
            del store
            gc.collect()
        launcher.stdin.close()
        assert launcher.wait(timeout=60) == 0
    stats["records"] = sum(len(v) for v in model.values())
    print(f"crash harness, seed {SEED}, {kills} kills: {stats}")
    assert stats["acknowledged"] > kills, f"too few writes to test anything: {stats}"
