"""Type stubs for the Rust extension ``knnkit._core`` (glue over ``knnkit-core``)."""

from typing import Any

import numpy as np
import numpy.typing as npt

__version__: str

def knn_search(
    base: npt.ArrayLike,
    queries: npt.ArrayLike,
    k: int,
    metric: str = "euclidean",
    p: float = 2.0,
    base_norms: npt.ArrayLike | None = None,
    n_jobs: int | None = None,
    base_bf16: np.ndarray[Any, np.dtype[np.uint16]] | None = None,
    bf16: bool = True,
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, np.dtype[np.int64]]]: ...
def radius_search(
    base: npt.ArrayLike,
    queries: npt.ArrayLike,
    radius: float | npt.ArrayLike,
    metric: str = "euclidean",
    p: float = 2.0,
    base_norms: npt.ArrayLike | None = None,
    sort: bool = True,
    n_jobs: int | None = None,
) -> tuple[
    np.ndarray[Any, np.dtype[np.int64]],
    np.ndarray[Any, Any],
    np.ndarray[Any, np.dtype[np.int64]],
]: ...
def squared_norms(data: npt.ArrayLike) -> np.ndarray[Any, Any]: ...
def to_bf16(data: npt.ArrayLike) -> np.ndarray[Any, np.dtype[np.uint16]]: ...
def simd_level() -> str: ...
