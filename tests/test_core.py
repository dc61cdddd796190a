"""Tests of the extension module ``knnkit._core`` against a numpy/scipy oracle.

The oracle is ``scipy.spatial.distance.cdist`` in float64 (``q @ b.T`` for the inner product),
ranked by (distance, index). On small-integer data every metric but cosine is computed exactly on
both sides, so indices (ties included) must match exactly; on continuous data distances are
compared rank by rank within a tolerance.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from scipy.spatial.distance import cdist

from knnkit import _core

METRICS = [
    "sqeuclidean",
    "euclidean",
    "inner_product",
    "cosine",
    "manhattan",
    "chebyshev",
    "minkowski",
    "hamming",
]
DTYPES = [np.float32, np.float64]
P = 3.0  # p for minkowski (1, 2 and inf are rewritten to other metrics)

# ---------------------------------------------------------------------------------------------
# Oracle


def oracle(base: np.ndarray, queries: np.ndarray, metric: str, p: float = P) -> np.ndarray:
    """All query × base distances (similarities for inner product) in float64."""
    b = np.asarray(base, dtype=np.float64)
    q = np.asarray(queries, dtype=np.float64)
    if metric == "inner_product":
        return q @ b.T
    if metric == "cosine":
        # the core's convention: a zero vector is at distance 1 from everything
        qn = np.linalg.norm(q, axis=1)[:, None]
        bn = np.linalg.norm(b, axis=1)[None, :]
        zero = (qn == 0) | (bn == 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            cos = 1.0 - (q @ b.T) / (qn * bn)
        return np.where(zero, 1.0, np.maximum(cos, 0.0))
    if metric == "minkowski":
        return cdist(q, b, "minkowski", p=p)
    return cdist(q, b, {"manhattan": "cityblock"}.get(metric, metric))


def ranked(ref: np.ndarray, metric: str) -> np.ndarray:
    """Indices sorted closest first, ties by lower index."""
    key = -ref if metric == "inner_product" else ref
    return np.argsort(key, axis=1, kind="stable")


def tolerance(dtype, base, queries, metric) -> np.ndarray:
    """Absolute tolerance per (query, base) pair: relative to the magnitudes involved."""
    rtol = 2e-4 if np.dtype(dtype) == np.float32 else 1e-10
    b = np.asarray(base, dtype=np.float64)
    q = np.asarray(queries, dtype=np.float64)
    if metric == "inner_product":
        mag = np.abs(q) @ np.abs(b).T
    else:
        mag = np.abs(oracle(base, queries, metric))
    return rtol * np.maximum(mag, 1.0)


def check_knn(base, queries, k, metric, D, I, *, exact=False, p=P):
    """Checks a knn_search result against the oracle."""
    n, nq = base.shape[0], queries.shape[0]
    assert D.shape == (nq, k) and I.shape == (nq, k)
    assert I.dtype == np.int64
    ref = oracle(base, queries, metric, p)
    order = ranked(ref, metric)
    found = min(k, n)
    missing = -np.inf if metric == "inner_product" else np.inf
    assert_array_equal(I[:, found:], -1)
    assert_array_equal(D[:, found:], missing)
    I, D = I[:, :found], D[:, :found]
    assert ((I >= 0) & (I < n)).all()
    for row in I:
        assert len(set(row.tolist())) == found, "duplicate neighbour"
    atol = np.take_along_axis(tolerance(D.dtype, base, queries, metric), I, axis=1)
    want = np.take_along_axis(ref, order[:, :found], axis=1)
    assert_allclose(D, want, rtol=0, atol=atol.max(), err_msg="distances by rank")
    own = np.take_along_axis(ref, I, axis=1)
    assert (np.abs(D - own) <= atol).all(), "returned distance is not the row's distance"
    if exact:
        assert_array_equal(I, order[:, :found])


def check_radius(base, queries, radius, metric, lims, D, I, *, sort, p=P):
    """Checks a radius_search result against the oracle."""
    nq = queries.shape[0]
    assert lims.shape == (nq + 1,) and lims.dtype == np.int64
    assert lims[0] == 0 and lims[-1] == len(I) == len(D)
    assert (np.diff(lims) >= 0).all()
    ref = oracle(base, queries, metric, p)
    tol = tolerance(D.dtype, base, queries, metric)
    r = np.broadcast_to(np.asarray(radius, dtype=np.float64), (nq,))
    sim = metric == "inner_product"
    for i in range(nq):
        idx, dist = I[lims[i] : lims[i + 1]], D[lims[i] : lims[i + 1]]
        got = np.zeros(base.shape[0], dtype=bool)
        got[idx] = True
        assert got.sum() == len(idx), "duplicate index"
        inside = ref[i] - tol[i] >= r[i] if sim else ref[i] + tol[i] <= r[i]
        outside = ref[i] + tol[i] < r[i] if sim else ref[i] - tol[i] > r[i]
        assert not (inside & ~got).any(), f"query {i}: rows {np.flatnonzero(inside & ~got)} missing"
        assert not (outside & got).any(), f"query {i}: rows {np.flatnonzero(outside & got)} outside"
        assert (np.abs(dist - ref[i, idx]) <= tol[i, idx]).all()
        if sort:
            key = -dist if sim else dist
            assert (np.diff(key) >= 0).all(), f"query {i}: not closest first: {dist}"
            ties = np.diff(key) == 0
            assert (np.diff(idx)[ties] > 0).all(), f"query {i}: ties not in index order"
        else:
            assert (np.diff(idx) > 0).all(), f"query {i}: not in index order"


def gauss(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def ints(rng, shape, dtype, span=2):
    return rng.integers(-span, span + 1, shape).astype(dtype)


# ---------------------------------------------------------------------------------------------
# Results against the oracle


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("nq", [5, 40])  # direct path and tiled path
def test_knn_matches_cdist(metric, dtype, nq):
    rng = np.random.default_rng(0)
    base = gauss(rng, (300, 9), dtype)
    queries = gauss(rng, (nq, 9), dtype)
    queries[::4] = base[:nq:4]  # some queries are base rows
    for k in (1, 7, 300, 305):
        D, I = _core.knn_search(base, queries, k, metric, p=P, n_jobs=2)
        assert D.dtype == dtype
        check_knn(base, queries, k, metric, D, I)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", [m for m in METRICS if m != "cosine"])
def test_knn_ties_on_integer_data_match_exactly(metric, dtype):
    # Small integers: many exact ties and duplicates; the lower index must come first, on every
    # path (few queries split the base across threads, many queries use the tiled path).
    rng = np.random.default_rng(1)
    for n, nq, d in [(3000, 1, 3), (3000, 2, 5), (200, 50, 6), (4, 100, 2)]:
        base = ints(rng, (n, d), dtype)
        queries = ints(rng, (nq, d), dtype)
        for n_jobs in (1, 2, 4):
            D, I = _core.knn_search(base, queries, 10, metric, p=P, n_jobs=n_jobs)
            check_knn(base, queries, 10, metric, D, I, exact=True)


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
def test_self_query_is_zero_and_first_with_near_duplicates(metric):
    rng = np.random.default_rng(2)
    base = gauss(rng, (150, 32), np.float32)
    base = np.vstack([base, base + np.float32(1e-4) * gauss(rng, base.shape, np.float32)])
    D, I = _core.knn_search(base, base, 2, metric)
    assert (D[:, 0] == 0).all()
    if metric == "cosine":
        # cosine clamps at 0: a lower-index near-duplicate may tie with the point itself
        assert (I[:, 0] <= np.arange(len(base))).all()
    else:
        assert_array_equal(I[:, 0], np.arange(len(base)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("sort", [True, False])
def test_radius_matches_cdist(metric, dtype, sort):
    rng = np.random.default_rng(3)
    base = gauss(rng, (400, 6), dtype)
    for nq in (3, 30):
        queries = gauss(rng, (nq, 6), dtype)
        ref = oracle(base, queries, metric)
        per_query = np.quantile(ref, 0.9 if metric == "inner_product" else 0.1, axis=1)
        scalar = float(np.median(per_query))
        for radius in (scalar, per_query.astype(dtype)):
            lims, D, I = _core.radius_search(base, queries, radius, metric, p=P, sort=sort)
            assert D.dtype == dtype and I.dtype == np.int64
            check_radius(base, queries, radius, metric, lims, D, I, sort=sort)


def test_radius_zero_and_inner_product_semantics():
    base = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [-1.0, 0.0], [0.5, 0.5], [1.0, 0.0]])
    lims, D, I = _core.radius_search(base, base[:1], 0.0, "euclidean")
    assert_array_equal(I, [0, 5])
    assert_array_equal(D, [0.0, 0.0])
    # inner product: similarity >= radius, most similar first, ties by index
    q = np.array([[1.0, 1.0]])
    lims, D, I = _core.radius_search(base, q, 1.0, "inner_product")
    assert_array_equal(I, [2, 0, 1, 4, 5])
    assert_array_equal(D, [4.0, 1.0, 1.0, 1.0, 1.0])
    lims, D, I = _core.radius_search(base, q, -10.0, "inner_product", sort=False)
    assert_array_equal(I, np.arange(6))


def test_squared_norms_and_cached_norms():
    rng = np.random.default_rng(4)
    for dtype in DTYPES:
        X = gauss(rng, (50, 7), dtype)
        norms = _core.squared_norms(X)
        assert norms.dtype == dtype
        assert_allclose(norms, (X.astype(np.float64) ** 2).sum(1), rtol=1e-5)
        for metric in ("euclidean", "cosine", "inner_product"):
            a = _core.knn_search(X, X[:20], 3, metric, base_norms=norms)
            b = _core.knn_search(X, X[:20], 3, metric)
            assert_array_equal(a[0], b[0])
            assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean", "inner_product", "cosine"])
def test_bf16_copy_changes_nothing(metric):
    # float32 few-query searches stream the bf16 copy and re-score what its error bound keeps:
    # the answer must be exactly the float32 one, near-duplicates and self-queries included.
    rng = np.random.default_rng(10)
    X = gauss(rng, (3000, 24), np.float32)
    X[1500:] = X[:1500] + np.float32(1e-4) * gauss(rng, (1500, 24), np.float32)
    copy = _core.to_bf16(X)
    assert copy.dtype == np.uint16 and copy.shape == X.shape
    for nq in (1, 5, 40):
        Q = X[:nq].copy()
        Q[1::2] += np.float32(0.01) * gauss(rng, Q[1::2].shape, np.float32)
        for n_jobs in (1, 2):
            D, I = _core.knn_search(X, Q, 5, metric, base_bf16=copy, n_jobs=n_jobs)
            rD, rI = _core.knn_search(X, Q, 5, metric, n_jobs=n_jobs)
            assert_array_equal(D, rD)
            assert_array_equal(I, rI)
            check_knn(X, Q, 5, metric, D, I)
    with pytest.raises(ValueError, match=r"bf16 copy: expected 72000 values, got 71999"):
        _core.knn_search(X, X[:1], 1, metric, base_bf16=copy.ravel()[:-1])
    with pytest.raises(TypeError, match="expected a float32 array"):
        _core.to_bf16(X.astype(np.float64))


@pytest.mark.parametrize("scale", [1e-12, 1e-9, 1e9, 1e15])
def test_cosine_float32_at_extreme_scales(scale):
    # ‖x‖²‖y‖² leaves float32's range although every norm is representable.
    rng = np.random.default_rng(11)
    X = (gauss(rng, (200, 8), np.float64) * scale).astype(np.float32)
    copy = _core.to_bf16(X).ravel()
    for nq in (3, 40):  # direct / streamed and tiled paths
        for bf16 in (None, copy):
            D, I = _core.knn_search(X, X[:nq], 4, "cosine", base_bf16=bf16)
            check_knn(X, X[:nq], 4, "cosine", D, I)
            assert (D[:, 0] == 0).all()


def test_empty_inputs():
    base = np.ones((4, 3))
    D, I = _core.knn_search(base, np.empty((0, 3)), 2)
    assert D.shape == I.shape == (0, 2)
    D, I = _core.knn_search(np.empty((0, 3)), base, 2)
    assert_array_equal(I, -1)
    assert np.isinf(D).all()
    lims, D, I = _core.radius_search(np.empty((0, 3)), base, 1.0)
    assert_array_equal(lims, 0)
    assert D.shape == I.shape == (0,)


# ---------------------------------------------------------------------------------------------
# Dtypes and input forms


@pytest.mark.parametrize(
    ("dtype", "computed"),
    [
        (np.float32, np.float32),
        (np.float64, np.float64),
        (np.float16, np.float32),
        (np.int8, np.float64),
        (np.int32, np.float64),
        (np.int64, np.float64),
        (np.uint16, np.float64),
        (np.bool_, np.float64),
    ],
)
def test_result_dtype_follows_input(dtype, computed):
    rng = np.random.default_rng(5)
    X = rng.integers(0, 2, (30, 5)).astype(dtype)
    D, I = _core.knn_search(X, X, 3, "manhattan")
    assert D.dtype == computed and I.dtype == np.int64
    ref_D, ref_I = _core.knn_search(X.astype(computed), X.astype(computed), 3, "manhattan")
    assert_array_equal(D, ref_D)
    assert_array_equal(I, ref_I)
    lims, D, I = _core.radius_search(X, X, 1.0, "hamming")
    assert D.dtype == computed
    assert _core.squared_norms(X).dtype == computed


def test_queries_take_the_base_dtype():
    rng = np.random.default_rng(6)
    base = gauss(rng, (40, 4), np.float32)
    D, _ = _core.knn_search(base, base.astype(np.float64), 2)
    assert D.dtype == np.float32
    D, _ = _core.knn_search(base.astype(np.float64), base, 2)
    assert D.dtype == np.float64


def _unaligned(X: np.ndarray) -> np.ndarray:
    buf = bytearray(X.nbytes + 1)
    out = np.frombuffer(buf, dtype=X.dtype, count=X.size, offset=1).reshape(X.shape)
    out[...] = X
    assert not out.flags.aligned
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("form", ["readonly", "memmap", "fortran", "strided", "unaligned"])
def test_input_forms(form, dtype, tmp_path):
    rng = np.random.default_rng(7)
    big = gauss(rng, (120, 30), dtype)
    X = np.ascontiguousarray(big[::2, ::3])
    if form == "readonly":
        Y = X.copy()
        Y.setflags(write=False)
    elif form == "memmap":
        path = tmp_path / "x.dat"
        mm = np.memmap(path, dtype=dtype, mode="w+", shape=X.shape)
        mm[...] = X
        mm.flush()
        del mm
        Y = np.memmap(path, dtype=dtype, mode="r", shape=X.shape)
    elif form == "fortran":
        Y = np.asfortranarray(X)
    elif form == "strided":
        Y = big[::2, ::3]
        assert not Y.flags.c_contiguous
    else:
        Y = _unaligned(X)
    ref = _core.knn_search(X, X[:20], 4, "euclidean")
    for base, queries in ((Y, Y[:20]), (Y, X[:20]), (X, Y[:20])):
        D, I = _core.knn_search(base, queries, 4, "euclidean")
        assert_array_equal(D, ref[0])
        assert_array_equal(I, ref[1])
    lims, D, I = _core.radius_search(Y, Y[:20], 3.0, "manhattan")
    rl, rD, rI = _core.radius_search(X, X[:20], 3.0, "manhattan")
    assert_array_equal(lims, rl)
    assert_array_equal(D, rD)
    assert_array_equal(I, rI)
    assert_array_equal(_core.squared_norms(Y), _core.squared_norms(X))
    if form == "memmap":
        del Y  # release the file before tmp_path cleanup


def test_float16_and_byteswapped():
    rng = np.random.default_rng(8)
    X = gauss(rng, (50, 6), np.float16)
    D, I = _core.knn_search(X, X, 3)
    rD, rI = _core.knn_search(X.astype(np.float32), X.astype(np.float32), 3)
    assert D.dtype == np.float32
    assert_array_equal(D, rD)
    assert_array_equal(I, rI)
    Y = gauss(rng, (50, 6), np.float64)
    D, I = _core.knn_search(Y.astype(">f8"), Y, 3)
    rD, rI = _core.knn_search(Y, Y, 3)
    assert_array_equal(D, rD)
    assert_array_equal(I, rI)


# ---------------------------------------------------------------------------------------------
# Bad input: TypeError / ValueError naming what was expected


GOOD = np.ones((4, 3))


@pytest.mark.parametrize(
    "bad",
    [
        np.ones((4, 3), dtype=complex),
        np.array([[1, "a", None]], dtype=object),
        np.array([["a", "b", "c"]]),
        np.array([[b"a", b"b", b"c"]]),
        np.zeros((2, 3), dtype="datetime64[s]"),
        [[1.0, 2.0, 3.0]],
        "abc",
        None,
    ],
    ids=["complex", "object", "str", "bytes", "datetime", "list", "string", "none"],
)
def test_bad_dtype_or_type_is_type_error(bad):
    for args in ((bad, GOOD), (GOOD, bad)):
        with pytest.raises(TypeError, match=r"expected a (2-D numpy array|real numeric array)"):
            _core.knn_search(*args, 1)
        with pytest.raises(TypeError, match="expected"):
            _core.radius_search(*args, 1.0)
    with pytest.raises(TypeError, match="expected"):
        _core.squared_norms(bad)


@pytest.mark.parametrize("ndim", [0, 1, 3])
def test_wrong_ndim_is_value_error(ndim):
    bad = np.ones((3,) * ndim)
    with pytest.raises(ValueError, match=rf"expected a 2-D array, got {ndim} dimension"):
        _core.knn_search(bad, GOOD, 1)
    with pytest.raises(ValueError, match=rf"queries: expected a 2-D array, got {ndim} dimension"):
        _core.knn_search(GOOD, bad, 1)
    with pytest.raises(ValueError, match="expected a 2-D array"):
        _core.radius_search(GOOD, bad, 1.0)


def test_parameter_errors_name_expected_and_got():
    with pytest.raises(ValueError, match="expected 3 features, got 4"):
        _core.knn_search(GOOD, np.ones((2, 4)), 1)
    with pytest.raises(ValueError, match="expected 3 features, got 2"):
        _core.radius_search(GOOD, np.ones((2, 2)), 1.0)
    with pytest.raises(ValueError, match=r"unknown metric \"bogus\": expected one of .*euclidean"):
        _core.knn_search(GOOD, GOOD, 1, "bogus")
    for p in (0.5, 0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="expected p >= 1 for minkowski"):
            _core.knn_search(GOOD, GOOD, 1, "minkowski", p=p)
    with pytest.raises(ValueError, match="expected k >= 1, got 0"):
        _core.knn_search(GOOD, GOOD, 0)
    for r in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="expected a non-negative number"):
            _core.radius_search(GOOD, GOOD, r)
    with pytest.raises(ValueError, match="expected a non-negative number, got -1"):
        _core.radius_search(GOOD, GOOD, np.array([1.0, 1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="radius: expected 4 values, got 3"):
        _core.radius_search(GOOD, GOOD, np.ones(3))
    with pytest.raises(ValueError, match="radius"):
        _core.radius_search(GOOD, GOOD, np.ones((4, 1)))
    with pytest.raises(ValueError, match="base norms: expected 4 values, got 3"):
        _core.knn_search(GOOD, GOOD, 1, base_norms=np.ones(3))
    with pytest.raises(ValueError, match="base_norms: expected a 1-D"):
        _core.knn_search(GOOD, GOOD, 1, base_norms=np.ones((4, 1)))
    with pytest.raises(ValueError, match="at least 1 feature"):
        _core.knn_search(np.ones((4, 0)), np.ones((1, 0)), 1)


def test_negative_k_is_a_value_error():
    with pytest.raises(ValueError, match="expected k >= 1, got -1"):
        _core.knn_search(GOOD, GOOD, -1)


def test_huge_k_is_a_value_error_not_a_crash():
    # Runs in a child: an allocation failure would abort the whole process.
    code = (
        "import numpy as np\n"
        "from knnkit import _core\n"
        "X = np.ones((5, 3))\n"
        "for k in (2**50, 2**63):\n"
        "    try:\n"
        "        _core.knn_search(X, X, k)\n"
        "    except ValueError as e:\n"
        "        assert 'k' in str(e), e\n"
        "    else:\n"
        "        raise SystemExit('no error')\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


# ---------------------------------------------------------------------------------------------
# Ctrl-C


def test_keyboard_interrupt_stops_a_long_search():
    rng = np.random.default_rng(9)
    d = 64
    base = gauss(rng, (20_000, d), np.float32)
    # Calibrate, then size the search to take about four seconds on this machine.
    q = gauss(rng, (1024, d), np.float32)
    t0 = time.perf_counter()
    _core.knn_search(base, q, 1, "euclidean", n_jobs=1)
    per_query = (time.perf_counter() - t0) / len(q)
    full = 4.0
    nq = int(min(full / per_query, 400_000))
    queries = np.resize(q, (nq, d))

    main = threading.main_thread().ident
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.2, signal.pthread_kill, (main, signal.SIGINT))
    try:
        t0 = time.perf_counter()
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            _core.knn_search(base, queries, 1, "euclidean", n_jobs=1)
        elapsed = time.perf_counter() - t0
    finally:
        timer.cancel()
        timer.join()
        signal.signal(signal.SIGINT, previous)
    estimate = nq * per_query
    assert elapsed < 0.6 * estimate, f"interrupt took {elapsed:.2f} s of a ~{estimate:.1f} s search"


# ---------------------------------------------------------------------------------------------
# Scalar kernels (KNNKIT_SIMD=scalar, read once per process) against the default SIMD ones

_WORKER = r"""
import pickle, sys
from knnkit import _core
inp, out = sys.stdin.buffer, sys.stdout.buffer
pickle.dump(_core.simd_level(), out)
out.flush()
while True:
    try:
        name, args, kwargs = pickle.load(inp)
    except EOFError:
        break
    pickle.dump(getattr(_core, name)(*args, **kwargs), out)
    out.flush()
"""


class ScalarWorker:
    """A child process with the scalar kernels that runs ``_core`` calls sent to it."""

    def __init__(self):
        env = {**os.environ, "KNNKIT_SIMD": "scalar"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        self.level = pickle.load(self.proc.stdout)

    def __call__(self, name, *args, **kwargs):
        pickle.dump((name, args, kwargs), self.proc.stdin)
        self.proc.stdin.flush()
        return pickle.load(self.proc.stdout)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def scalar_worker():
    w = ScalarWorker()
    yield w
    w.close()


def test_scalar_worker_is_scalar(scalar_worker):
    assert scalar_worker.level in ("scalar", "neon")  # aarch64's portable build is NEON


@st.composite
def cases(draw):
    n = draw(st.integers(1, 60))
    return dict(
        n=n,
        d=draw(st.integers(1, 70)),
        nq=draw(st.integers(1, 40)),
        k=draw(st.integers(1, n + 2)),
        metric=draw(st.sampled_from(METRICS)),
        dtype=draw(st.sampled_from(DTYPES)),
        integer=draw(st.booleans()),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_scalar_kernels_match_simd(scalar_worker, case):
    rng = np.random.default_rng(case["seed"])
    make = ints if case["integer"] else gauss
    shape_b, shape_q = (case["n"], case["d"]), (case["nq"], case["d"])
    base, queries = make(rng, shape_b, case["dtype"]), make(rng, shape_q, case["dtype"])
    metric, k = case["metric"], case["k"]
    D, I = _core.knn_search(base, queries, k, metric, p=P)
    sD, sI = scalar_worker("knn_search", base, queries, k, metric, p=P)
    assert sD.dtype == D.dtype
    if case["integer"]:
        # small integers: every kernel is exact, whatever the summation order
        assert_array_equal(D, sD)
        assert_array_equal(I, sI)
    else:
        check_knn(base, queries, k, metric, sD, sI)
        tol = 2e-4 if case["dtype"] == np.float32 else 1e-10
        finite = np.isfinite(D)
        assert_allclose(sD[finite], D[finite], rtol=tol, atol=tol)
    radius = float(np.median(oracle(base, queries, metric)))
    lims, rD, rI = _core.radius_search(base, queries, radius, metric, p=P)
    slims, srD, srI = scalar_worker("radius_search", base, queries, radius, metric, p=P)
    if case["integer"]:
        assert_array_equal(lims, slims)
        assert_array_equal(rD, srD)
        assert_array_equal(rI, srI)
    else:
        check_radius(base, queries, radius, metric, slims, srD, srI, sort=True)
