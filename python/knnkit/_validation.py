"""Input checks shared by the index API: clear errors naming what was expected and what came."""

from __future__ import annotations

from typing import Any

import numpy as np

from knnkit.errors import DimensionMismatchError

FLOAT_DTYPES = ("float32", "float64")


def as_matrix(
    x: Any, name: str, dtype: np.dtype, dim: int | None = None, check_finite: bool = True
) -> np.ndarray:
    """Returns ``x`` as a finite 2-D C-contiguous array of ``dtype`` (copying only when needed).

    ``check_finite=False`` leaves the finiteness check to the caller (the Rust core checks the
    queries it searches). An array that is already right is returned at once (the per-call cost
    matters for one-query searches)."""
    if (
        type(x) is np.ndarray
        and x.dtype == dtype
        and x.ndim == 2
        and (dim is None or x.shape[1] == dim)
        and x.flags.c_contiguous
        and x.flags.aligned
        and (not check_finite or not x.size or np.isfinite(x).all())
    ):
        return x
    if hasattr(x, "__array__") and not isinstance(x, np.ndarray) and type(x).__module__ == "torch":
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise TypeError(
            f"{name}: expected a real numeric array (float, int or bool), got dtype {arr.dtype}"
        )
    if arr.ndim == 1 and dim is not None and arr.shape[0] == dim:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (n, dim), got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise DimensionMismatchError(f"{name}: expected {dim} features per row, got {arr.shape[1]}")
    arr = np.require(arr, dtype=dtype, requirements=["C", "A"])
    if check_finite and arr.size and not np.isfinite(arr).all():
        raise ValueError(f"{name}: expected finite values, got NaN or infinity")
    return arr


def check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value}")
    return int(value)


def check_dtype(dtype: Any) -> np.dtype:
    dt = np.dtype(dtype)
    if dt.name not in FLOAT_DTYPES:
        raise ValueError(f"dtype: expected one of {FLOAT_DTYPES}, got {dt.name}")
    return dt
