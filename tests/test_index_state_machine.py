"""Every index kind driven by random sequences of add / remove / search (few and many queries,
filtered or not) / get / save + load (mmap or not) / pickle, against an exact numpy oracle of
the live id -> vector map.

Exact kinds (flat) must return the oracle's distances (within the rounding of their own
arithmetic) and its ids wherever distances are not tied. Approximate kinds (HNSW, IVF) must
never return a removed or unknown id, must return exactly ``min(k, live or allowed)`` results
with the exact distances of the ids they return, and keep recall@k >= :data:`MIN_RECALL` on
small data with a generous search width.

Before issue 11's index core these sequences found four defects (an empty FlatIndex could not
be saved; FlatIndex.remove left its bf16 copy stale for searches of fewer than 16 queries; an
empty HNSW index with codes could not be loaded; HNSW refused to re-add a removed id): they are
exercised on every run (empty saves, re-added ids, few-query searches after removals).

Hypothesis is derandomised (fixed seed, no example database) and bounded: the whole file runs in
well under a minute. ``KNNKIT_LONG_TESTS=1`` (``make fuzz``) runs many more, random, sequences.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile

import numpy as np
import pytest
from _index_kinds import KINDS, MAX_N, Kind, clustered, distances, key, live_ids, tolerance
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import knnkit

#: recall@k the approximate kinds keep, over a whole sequence and over each search of many
#: queries (distance-based: a result counts when it is as close as the true k-th neighbour).
MIN_RECALL = 0.9
DIM = 8
LONG = os.environ.get("KNNKIT_LONG_TESTS") == "1"
#: (sequences, steps per sequence): quick in CI, long behind ``make fuzz``.
EXAMPLES, STEPS = (200, 60) if LONG else (10, 40)


def machine_for(kind: Kind) -> type[RuleBasedStateMachine]:
    """A state machine over one index configuration."""

    class IndexMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.ix = kind.make(DIM)
            self.store: dict[int, np.ndarray] = {}  # id -> vector as the index's dtype
            self.ever: set[int] = set()  # every id ever added
            self.next_id = 0
            self.centers = np.random.default_rng(99).normal(scale=3.0, size=(6, DIM))
            self.tmp = tempfile.mkdtemp(prefix="knnkit-sm-")
            self.saves = 0
            self.hits = self.total = 0
            if kind.train:
                T = clustered(np.random.default_rng(7), kind.train, DIM, self.centers)
                self.ix.train(T.astype(np.float32))

        def teardown(self) -> None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            if self.total:
                r = self.hits / self.total
                assert r >= MIN_RECALL, (
                    f"{kind.name}: recall@k over the sequence {r:.3f} < {MIN_RECALL}"
                )

        # -- helpers ---------------------------------------------------------------------------

        def live(self) -> tuple[np.ndarray, np.ndarray]:
            ids = np.array(sorted(self.store), dtype=np.int64)
            X = np.array([self.store[i] for i in ids]).reshape(len(ids), DIM)
            return ids, X

        def vectors(self, seed: int, n: int, dup: bool) -> np.ndarray:
            rng = np.random.default_rng(seed)
            X = clustered(rng, n, DIM, self.centers)
            if dup and self.store:  # exact copies of live vectors: ties
                ids = list(self.store)
                for r in range(0, n, 3):
                    X[r] = self.store[ids[int(rng.integers(len(ids)))]]
            return X.astype(kind.dtype)

        # -- rules -----------------------------------------------------------------------------

        @precondition(lambda self: len(self.store) < MAX_N)
        @rule(
            n=st.integers(1, 50),
            seed=st.integers(0, 2**16),
            dup=st.booleans(),
            ids_mode=st.sampled_from(["auto", "fresh", "removed", "conflict"]),
            data=st.data(),
        )
        def add(self, n: int, seed: int, dup: bool, ids_mode: str, data: st.DataObject) -> None:
            """Adds 1..50 rows with ids assigned by the index ("auto") or given: never seen
            ("fresh"), some removed earlier ("removed"), or one still live ("conflict": refused
            with ValueError, index unchanged)."""
            n = min(n, MAX_N - len(self.store))
            X = self.vectors(seed, n, dup)
            removed = sorted(self.ever - set(self.store))
            if ids_mode == "removed" and not removed:
                ids_mode = "fresh"
            if ids_mode == "conflict" and not self.store:
                ids_mode = "fresh"
            if ids_mode == "auto":
                self.ix.add(X)
                ids = np.arange(self.next_id, self.next_id + n, dtype=np.int64)
            else:
                given: list[int] = []
                if ids_mode == "removed":
                    given = data.draw(
                        st.lists(st.sampled_from(removed), min_size=1, max_size=n, unique=True)
                    )
                elif ids_mode == "conflict":
                    given = [data.draw(st.sampled_from(sorted(self.store)))]
                fresh = [i for i in range(4 * MAX_N) if i not in self.ever]
                given += data.draw(
                    st.lists(
                        st.sampled_from(fresh),
                        min_size=n - len(given),
                        max_size=n - len(given),
                        unique=True,
                    )
                )
                ids = np.array(data.draw(st.permutations(given)), dtype=np.int64)
                if ids_mode == "conflict":
                    with pytest.raises(ValueError):
                        self.ix.add(X, ids=ids)
                    return  # nothing changed (the invariants check it)
                self.ix.add(X, ids=ids)
            for i, x in zip(ids.tolist(), X, strict=True):
                self.store[i] = x.copy()
            self.ever.update(ids.tolist())
            self.next_id = max(self.next_id, int(ids.max()) + 1)

        @rule(data=st.data())
        def remove(self, data: st.DataObject) -> None:
            present = sorted(self.store)
            # often a few (below HNSW's 10 % repair threshold), sometimes many
            size = data.draw(st.one_of(st.integers(0, 2), st.integers(0, 30)))
            some = (
                data.draw(st.lists(st.sampled_from(present), min_size=size, max_size=size))
                if present
                else []
            )
            absent = data.draw(st.lists(st.integers(-3, 4 * MAX_N), max_size=5))
            ids = np.array(some + absent, dtype=np.int64)
            if ids.size == 0:
                ids = np.array([4 * MAX_N + 1])
            want = len(set(ids.tolist()) & set(present))
            got = self.ix.remove(ids)
            assert got == want, f"remove returned {got}, {want} of those ids were present"
            for i in set(ids.tolist()) & set(present):
                del self.store[i]

        @precondition(lambda self: bool(self.store))
        @rule(seed=st.integers(0, 2**16), data=st.data())
        def upsert(self, seed: int, data: st.DataObject) -> None:
            """Replaces one live vector: remove its id, then add a new vector under that id."""
            i = data.draw(st.sampled_from(sorted(self.store)))
            assert self.ix.remove(np.array([i])) == 1
            del self.store[i]
            x = self.vectors(seed, 1, False)
            self.ix.add(x, ids=np.array([i]))
            self.store[i] = x[0].copy()

        @rule(
            nq=st.one_of(st.integers(1, 3), st.integers(20, 40)),
            k=st.integers(1, 40),
            seed=st.integers(0, 2**16),
            stored=st.booleans(),
            filt=st.sampled_from([None, "mask", "ids"]),
            data=st.data(),
        )
        def search(
            self, nq: int, k: int, seed: int, stored: bool, filt: str | None, data: st.DataObject
        ) -> None:
            rng = np.random.default_rng(seed)
            ids, X = self.live()
            if stored and len(ids):
                Q = X[rng.integers(0, len(ids), nq)] + 0.01 * rng.normal(size=(nq, DIM))
            else:
                Q = clustered(rng, nq, DIM, self.centers)
            Q = Q.astype(kind.dtype)
            fil = None
            allowed = np.ones(len(ids), bool)
            if filt is not None:
                chosen = np.array(
                    data.draw(st.lists(st.integers(0, 3 * MAX_N), max_size=60, unique=True)),
                    dtype=np.int64,
                )
                allowed = np.isin(ids, chosen)
                if filt == "mask":
                    size = data.draw(st.integers(0, 3 * MAX_N + 1))
                    fil = np.zeros(size, bool)
                    fil[chosen[chosen < size]] = True
                    allowed = np.isin(ids, chosen[chosen < size])
                else:
                    fil = chosen
            res = self.ix.search(Q, k, filter=fil)
            self.check(res, Q, k, ids[allowed], X[allowed])

        def check(self, res, Q, k, ids, X) -> None:
            D, I = np.asarray(res.distances), np.asarray(res.ids)
            nq = Q.shape[0]
            assert D.shape == (nq, k) and I.shape == (nq, k), (D.shape, I.shape)
            assert I.dtype == np.int64
            want_n = min(k, len(ids))
            fill = -np.inf if kind.metric == "inner_product" else np.inf
            assert (I[:, want_n:] == -1).all(), "padding holds id -1"
            assert (D[:, want_n:] == fill).all(), "padding holds the fill distance"
            assert (I[:, :want_n] >= 0).all(), (
                f"{kind.name}: expected exactly {want_n} results per query, got {(I >= 0).sum(1)}"
            )
            if want_n == 0:
                return
            found = I[:, :want_n]
            assert np.isin(found, ids).all(), (
                f"{kind.name}: returned ids {np.setdiff1d(found, ids)} that are not live/allowed"
            )
            for row in found:
                assert np.unique(row).size == want_n, f"duplicate ids in one result: {row}"
            truth = distances(kind.metric, X, Q)  # (nq, n)
            tol = tolerance(kind.metric, kind.dtype, X, Q)
            order = {int(i): j for j, i in enumerate(ids)}
            cols = np.vectorize(order.__getitem__)(found)
            got_true = np.take_along_axis(truth, cols, axis=1)
            kd, kt = key(kind.metric, D[:, :want_n]), key(kind.metric, got_true)
            bad = np.abs(kd - kt) > tol[:, None]
            assert not bad.any(), (
                f"{kind.name}: reported distances are not the returned ids' distances: "
                f"got {D[:, :want_n][bad][:5]}, true {got_true[bad][:5]}"
            )
            assert (np.diff(kd, axis=1) >= -tol[:, None]).all(), "results not sorted"
            kth = np.sort(key(kind.metric, truth), axis=1)[:, :want_n]
            if kind.exact:
                assert (np.abs(kd - kth) <= tol[:, None]).all(), (
                    f"{kind.name}: distances differ from the oracle's:\n{D[:, :want_n]}\n"
                    f"{kth if kind.metric != 'euclidean' else np.sqrt(kth)}"
                )
                # every id strictly closer than the k-th distance (beyond ties) is returned
                must = key(kind.metric, truth) < (kth[:, -1] - tol)[:, None]
                for q in range(nq):
                    missing = np.setdiff1d(ids[must[q]], found[q])
                    assert missing.size == 0, f"{kind.name}: missed nearer ids {missing}"
            else:
                hit = (kt <= kth[:, -1:] + tol[:, None]).sum()
                self.hits += int(hit)
                self.total += found.size
                if nq >= 20:
                    r = hit / found.size
                    assert r >= MIN_RECALL, f"{kind.name}: recall@{k} {r:.3f} < {MIN_RECALL}"

        @rule(data=st.data())
        def get(self, data: st.DataObject) -> None:
            present = sorted(self.store)
            if present:
                ids = data.draw(st.lists(st.sampled_from(present), min_size=1, max_size=10))
                got = self.ix.get(np.array(ids, dtype=np.int64))
                want = np.array([self.store[i] for i in ids])
                np.testing.assert_array_equal(got, want.astype(got.dtype))
                assert got.dtype == np.dtype(kind.dtype)
            absent = data.draw(st.integers(0, 4 * MAX_N).filter(lambda i: i not in self.store))
            with pytest.raises(KeyError):
                self.ix.get(np.array(present[:2] + [absent], dtype=np.int64))

        @rule(mmap=st.booleans(), slot=st.integers(0, 1))
        def save_load(self, mmap: bool, slot: int) -> None:
            # Two paths, reused: a save may replace the file an earlier load still maps.
            path = os.path.join(self.tmp, f"ix{slot}.knn")
            self.ix.save(path)
            self.ix = knnkit.load(path, mmap=mmap)
            self.saves += 1

        @rule()
        def pickle_round_trip(self) -> None:
            self.ix = pickle.loads(pickle.dumps(self.ix))

        @invariant()
        def same_ids_as_oracle(self) -> None:
            assert len(self.ix) == len(self.store)
            np.testing.assert_array_equal(live_ids(self.ix), np.array(sorted(self.store)))

    IndexMachine.__name__ = f"IndexMachine_{kind.name.replace('-', '_')}"
    return IndexMachine


@pytest.mark.parametrize("name", list(KINDS))
def test_index_state_machine(name: str) -> None:
    run_state_machine_as_test(machine_for(KINDS[name]), settings=machine_settings())


def machine_settings(shrink: bool = True) -> settings:
    """Bounded, derandomised settings (random and long with ``KNNKIT_LONG_TESTS=1``); an
    expected failure skips shrinking, which only costs time there."""
    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if shrink else [])
    return settings(
        max_examples=EXAMPLES,
        stateful_step_count=STEPS,
        deadline=None,
        derandomize=not LONG,
        database=None,
        phases=phases,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
