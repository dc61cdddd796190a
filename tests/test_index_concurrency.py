"""Every index kind under concurrent use: searches from several threads while another thread
adds and removes; concurrent saves to one path; memory-mapped loads racing an atomic re-save.

What must hold: no crash, no exception, no deadlock (every thread is joined with a timeout), no
returned id that was not live at some point during the search call, and every (id, distance)
pair a search returns is that id's true distance. A save must leave one complete version at the
path; a load that succeeds must be self-consistent (its own vectors find themselves first).

Each of these failed before issue 11's index core (FlatIndex with a writer thread returned
wrong pairs and raised IndexError; saves shared the temporary name ``path.tmp``; a mapped load
opened every section from the path separately): they are its regression tests.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest
from _index_kinds import KINDS, Kind, clustered, distances, key, live_ids, tolerance

import knnkit
from knnkit.errors import CorruptIndexError

DIM = 8
#: Seconds a thread may take before the test calls it stuck (a deadlock), far above the
#: seconds these bounded loops take; not a timing assertion.
JOIN_TIMEOUT = 120.0
SEED = 0

#: One configuration per index kind and storage (one metric each keeps the file short).
CONCURRENT_KINDS = [
    "flat-euclidean-float32",
    "flat-manhattan-float64",
    "hnsw-flat-euclidean",
    "hnsw-sq8-cosine",
    "hnsw-sq4-euclidean",
    "ivf-flat-euclidean",
    "ivf-sq8-euclidean",
    "ivf-pq-euclidean",
]


def run_threads(targets: list[Callable[[], None]]) -> list[BaseException]:
    """Runs each target in its own daemon thread; returns what they raised. Fails the test if a
    thread is still running after :data:`JOIN_TIMEOUT` seconds (a deadlock or a hang)."""
    errors: list[BaseException] = []

    def wrap(f: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                f()
            except BaseException as e:  # noqa: BLE001 - reported to the main thread
                errors.append(e)

        return run

    threads = [threading.Thread(target=wrap(f), daemon=True) for f in targets]
    # Switch threads often, so Python-level races show up in a short run.
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + JOIN_TIMEOUT
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
    finally:
        sys.setswitchinterval(old)
    stuck = [t.name for t in threads if t.is_alive()]
    assert not stuck, f"threads still running after {JOIN_TIMEOUT} s (deadlock?): {stuck}"
    return errors


def built(kind: Kind, X: np.ndarray, ids: np.ndarray | None = None):
    ix = kind.make(DIM)
    if kind.train:  # IVF: train on kind.train rows near X's (PQ codebooks need 256)
        rows = np.arange(kind.train) % len(X)
        T = X[rows] + 0.1 * np.random.default_rng(SEED).normal(size=(kind.train, DIM))
        ix.train(T.astype(np.float32))
    ix.add(X.astype(kind.dtype), ids=ids)
    return ix


# -- searches while another thread writes --------------------------------------------------------


#: Scenarios (seeds) run per kind; the first that shows a problem fails the test. Races are
#: probabilistic: several short scenarios catch today's FlatIndex race reliably.
SCENARIOS = 20 if os.environ.get("KNNKIT_LONG_TESTS") == "1" else 4


def writer_scenario(kind: Kind, seed: int) -> tuple[list[BaseException], list[str]]:
    """One thread adds and removes (fresh ids) while three threads search; returns the
    exceptions raised and the wrong results seen (checked after the threads finish)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(6, DIM))
    n0, rounds, batch = 200, 40, 20
    total = n0 + rounds * batch
    V = clustered(rng, total, DIM, centers).astype(kind.dtype)  # vector of id i is V[i]
    Qs = clustered(rng, 64, DIM, centers).astype(kind.dtype)
    ix = built(kind, V[:n0], np.arange(n0))
    lock = threading.Lock()
    seq = [0]
    added = dict.fromkeys(range(n0), 0)  # id -> seq when its add began
    removed: dict[int, int] = {}  # id -> seq once its remove had finished
    done = threading.Event()
    seen: list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]] = []

    def writer() -> None:
        try:
            live = list(range(n0))
            wrng = np.random.default_rng(seed + 1)
            for r in range(rounds):
                new = np.arange(n0 + r * batch, n0 + (r + 1) * batch)
                with lock:
                    seq[0] += 1
                    for i in new.tolist():
                        added[i] = seq[0]
                ix.add(V[new], ids=new)
                live += new.tolist()
                gone = wrng.choice(live, size=batch // 2, replace=False)
                assert ix.remove(gone) == gone.size
                with lock:
                    seq[0] += 1
                    for i in gone.tolist():
                        removed[i] = seq[0]
                live = sorted(set(live) - set(gone.tolist()))
        finally:
            done.set()

    def searcher(tid: int) -> Callable[[], None]:
        def run() -> None:
            srng = np.random.default_rng(seed + 10 + tid)
            calls = 0
            while not done.is_set() or calls < 4:
                calls += 1
                nq = int(srng.choice([1, 2, 3, 20]))
                Q = Qs[srng.integers(0, len(Qs), nq)]
                filt = None
                if srng.random() < 0.3:
                    filt = srng.choice(total, size=total // 3, replace=False)
                with lock:
                    s0 = seq[0]
                res = ix.search(Q, 10, filter=filt)
                with lock:
                    s1 = seq[0]
                seen.append((s0, s1, Q, np.asarray(res.distances), np.asarray(res.ids), filt))

        return run

    errors = run_threads([writer] + [searcher(t) for t in range(3)])
    problems: list[str] = []
    for s0, s1, Q, D, I, filt in seen:
        allowed = None if filt is None else set(filt.tolist())
        for q in range(Q.shape[0]):
            for d, i in zip(D[q].tolist(), I[q].tolist(), strict=True):
                if i == -1:
                    continue
                if not 0 <= i < total or added.get(i, s1 + 1) > s1:
                    problems.append(f"id {i} was never added before the call ended")
                elif i in removed and removed[i] <= s0:
                    problems.append(f"id {i} was removed before the call began")
                elif allowed is not None and i not in allowed:
                    problems.append(f"id {i} is not allowed by the filter")
                else:
                    x, y = V[i : i + 1], Q[q : q + 1]
                    t = key(kind.metric, distances(kind.metric, x, y))[0, 0]
                    if (
                        abs(key(kind.metric, [d])[0] - t)
                        > tolerance(kind.metric, kind.dtype, x, y)[0]
                    ):
                        problems.append(f"id {i} came with distance {d} (key {t} expected)")
    if not errors and not problems:
        want = sorted(set(range(total)) - set(removed))
        if not np.array_equal(live_ids(ix), want):
            problems.append("the ids held after the writes are not the ones the writer left")
    return errors, problems


@pytest.mark.parametrize(
    "name",
    CONCURRENT_KINDS,
)
def test_searches_while_another_thread_adds_and_removes(name: str) -> None:
    kind = KINDS[name]
    for s in range(SCENARIOS):
        errors, problems = writer_scenario(kind, SEED + 100 * s)
        assert not errors, (
            f"{name} (seed {SEED + 100 * s}): {len(errors)} exceptions, first: {errors[0]!r}"
        )
        assert not problems, (
            f"{name} (seed {SEED + 100 * s}): {len(problems)} wrong results, e.g. {problems[:5]}"
        )


# -- concurrent saves to one path ----------------------------------------------------------------


@pytest.mark.parametrize("name", CONCURRENT_KINDS)
def test_concurrent_saves_to_one_path_leave_one_complete_version(tmp_path, name: str) -> None:
    kind = KINDS[name]
    rng = np.random.default_rng(SEED)
    centers = rng.normal(scale=3.0, size=(6, DIM))
    versions = []
    for v in range(4):  # version v holds 40 + 10 v vectors with ids from 1000 v
        X = clustered(rng, 40 + 10 * v, DIM, centers)
        versions.append((built(kind, X, 1000 * v + np.arange(len(X))), X.astype(kind.dtype)))
    path = tmp_path / "shared.knn"
    for _round in range(8):
        barrier = threading.Barrier(len(versions))

        def saver(ix, barrier: threading.Barrier = barrier) -> Callable[[], None]:
            def run() -> None:
                barrier.wait(timeout=JOIN_TIMEOUT)
                for _ in range(3):
                    ix.save(path)

            return run

        errors = run_threads([saver(ix) for ix, _ in versions])
        assert not errors, f"{name}: a concurrent save raised {errors[0]!r}"
        for mmap in (True, False):
            j = knnkit.load(path, mmap=mmap)
            ids = live_ids(j)
            matches = [
                v
                for v, (ix, X) in enumerate(versions)
                if ids.size == len(X) and (ids == 1000 * v + np.arange(len(X))).all()
            ]
            assert len(matches) == 1, f"{name}: the saved file is no complete version: {ids}"
            X = versions[matches[0]][1]
            np.testing.assert_array_equal(j.get(ids), X)
            del j
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name != "shared.knn")
    assert not leftovers, f"{name}: saves left temporary files behind: {leftovers}"


# -- memory-mapped loads racing an atomic re-save -------------------------------------------------


@pytest.mark.parametrize("name", CONCURRENT_KINDS)
def test_mmap_loads_while_another_thread_resaves_are_self_consistent(tmp_path, name: str) -> None:
    kind = KINDS[name]
    rng = np.random.default_rng(SEED)
    centers = rng.normal(scale=3.0, size=(6, DIM))
    # Two versions of different sizes and ids: a load mixing their sections cannot pass.
    versions = []
    for v, n in enumerate((120, 160)):
        X = clustered(rng, n, DIM, centers)
        versions.append(built(kind, X, 5000 * v + np.arange(n)))
    path = tmp_path / "hot.knn"
    versions[0].save(path)
    done = threading.Event()
    saves = 60
    outcomes: list[str] = []

    def resaver() -> None:
        try:
            for s in range(saves):
                versions[s % 2].save(path)
        finally:
            done.set()

    def loader() -> None:
        loads = 0
        while not done.is_set() or loads < 5:
            loads += 1
            try:
                j = knnkit.load(path, mmap=True)
            except CorruptIndexError as e:
                outcomes.append(f"spurious CorruptIndexError: {e}")
                continue
            ids = live_ids(j)
            if ids.size not in (120, 160) or not (
                (ids == np.arange(ids.size)).all() or (ids == 5000 + np.arange(ids.size)).all()
            ):
                outcomes.append(f"loaded ids of no saved version: {ids[:5]}... ({ids.size})")
                continue
            sample = ids[:: max(1, ids.size // 20)]
            res = j.search(j.get(sample), 1)
            self_match = float((np.asarray(res.ids)[:, 0] == sample).mean())
            if self_match < 1.0:
                outcomes.append(f"self-match {self_match:.2f} (sections of two files?)")

    errors = run_threads([resaver, loader, loader])
    assert not errors, f"{name}: {errors[0]!r}"
    assert not outcomes, f"{name}: {len(outcomes)} bad loads, e.g. {outcomes[:3]}"
