"""Test-session settings shared by every test module."""

from __future__ import annotations

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(scope="session", autouse=True)
def _one_blas_and_openmp_thread():
    """scikit-learn's OpenMP and BLAS pools run one thread for the whole session.

    The tests compare knnkit (its own Rust thread pool, untouched here) with scikit-learn on
    small arrays, where results do not depend on these pools' thread counts; letting both pools
    start a thread per core oversubscribes small machines (TSNE's OpenMP loops, for one, run
    many times slower next to a busy pool).
    """
    with threadpool_limits(limits=1):
        yield
