"""Exact k-nearest-neighbour and radius search as PyTorch tensor operations, on any torch device.

Design. Queries are cut into chunks of ``chunk_queries`` rows and the base into chunks of
``chunk_base`` rows (both chosen from a memory budget unless given), so at most one
``chunk_queries x chunk_base`` distance tile lives at a time. Each tile goes through
``torch.topk`` and is merged into a running best-``m`` list, with ``m`` a few times ``k``.

Exactness. The dot-product metrics (sqeuclidean, euclidean, inner_product, cosine) compute the
tile with one matrix product (the expanded form ``|q|^2 + |x|^2 - 2 q.x``), the others
(manhattan, chebyshev, minkowski) with ``torch.cdist``; both round in an order that depends on
the device, the CPU's vector width and the BLAS kernel. So the ``m`` candidates are re-scored
with the direct formula (``sum((q - x)^2)``, ``sum(q * x)``, ``sum(|q - x|^p)``) in one fixed
order on every device and CPU (:func:`_fixed_sum`: elementwise operations only, summed by
pairwise halves), sorted by (key, index) — ties go to the lower index — and the first ``k``
kept. Then each query is *certified*: a proven bound ``E`` on the tile's error says that every
non-candidate is at least ``a_m - E`` away, where ``a_m`` is the largest candidate value; when
that is not strictly beyond the ``k``-th re-scored key the query is searched again with four
times as many candidates, up to the whole base, where the result is exact by construction.
Results therefore equal the fixed-order direct computation in the input's precision, whatever
the device, CPU or BLAS (minkowski's ``|q - x|^p`` for a ``p`` other than 1, 2, 3, 4 and its
root are the platform's ``pow``, computed element by element, :func:`_scalar_pow`); float32
stays float32 and float64 stays float64.

``fast=True`` computes the candidate tiles in reduced precision (BF16 inputs; or TF32 where the
process has enabled TF32 for fp32 products), which is several times faster on tensor-core GPUs;
the re-rank and certification above keep the returned neighbours and distances exact (queries
the looser bound cannot certify are redone in the data's precision).

Cost: ``nq * n * d`` multiply-adds for the tiles, plus ``nq * m * d`` for the re-rank; memory
about ``memory_budget`` bytes on the device beyond the inputs (plus, for cosine, a normalised
copy of the base, and for BF16 a half-size copy).

Thread safety: nothing here changes torch's process-wide settings. The fp32 matrix-product
precision (``torch.set_float32_matmul_precision``, ``torch.backends.cuda.matmul.allow_tf32``,
oneDNN's on the CPU) is the user's: each call reads what it allows before and after computing
its tiles and certifies with the bound of the loosest (:func:`_settings_rounding`), so a TF32
product — chosen by the user, or by another thread meanwhile — costs re-scoring, never
exactness.

Examples
--------
>>> import numpy as np
>>> from knnkit.backends import torch as kt
>>> X = np.array([[0, 0], [3, 4], [1, 1], [0, 0]], dtype=np.float32)
>>> D, I = kt.knn(X, X[:2], k=2)
>>> I.tolist(), D.astype(float).round(3).tolist()
([[0, 3], [1, 2]], [[0.0, 0.0], [0.0, 3.606]])
>>> lims, D, I = kt.radius(X, X[:1], 1.5)
>>> lims.tolist(), I.tolist()
([0, 3], [0, 3, 2])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from knnkit import _metrics
from knnkit._validation import check_positive_int
from knnkit.errors import DimensionMismatchError

#: Metric names the backend accepts (from :mod:`knnkit._metrics`; aliases resolve as in
#: :class:`knnkit.FlatIndex`).
METRICS = _metrics.names("torch")
#: The metrics computed from dot products and norms.
_DOT = frozenset(m for m in METRICS if _metrics.info(m)["dot_based"])
_FAST_MODES = (False, True, "tf32", "bf16")
#: Default working-memory budget per call, in bytes (CUDA: at most a quarter of free memory).
DEFAULT_MEMORY_BUDGET = 256 * 2**20
_GPU_MEMORY_BUDGET = 4 * 2**30


def _torch() -> Any:
    try:
        import torch
    except ImportError as e:  # pragma: no cover - exercised only without torch
        raise ImportError(
            "knnkit.backends.torch needs PyTorch: install it with `pip install knnkit[torch]` "
            "(or `pip install torch`)"
        ) from e
    return torch


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "device") and hasattr(x, "dtype")


# -- input checks ---------------------------------------------------------------------------------


def resolve_device(device: Any) -> Any:
    """The ``torch.device`` for ``device`` (a string or a ``torch.device``), checked available.

    Raises ``ValueError`` naming the device when it is malformed or not available on this
    machine (no silent fallback to the CPU).
    """
    torch = _torch()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as e:
        raise ValueError(
            f"device: expected a torch device such as 'cpu', 'cuda' or 'cuda:1', got {device!r}"
        ) from e
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device: {str(dev)!r} is not available (torch.cuda.is_available() is False; "
                f"torch {torch.__version__}); use device='cpu' or a machine with a CUDA GPU"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(
                f"device: {str(dev)!r} is not available: this machine has {count} CUDA device(s)"
            )
        return dev
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(
                f"device: {str(dev)!r} is not available (torch.backends.mps.is_available() is "
                "False)"
            )
        return dev
    try:
        torch.empty(0, device=dev)
    except (RuntimeError, AssertionError, AttributeError) as e:
        raise ValueError(f"device: {str(dev)!r} is not available ({e})") from e
    return dev


def _metric(metric: Any, p: Any) -> tuple[str, float]:
    name = _metrics.resolve(metric, "torch")
    if name == "minkowski":
        if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
            raise ValueError(f"p: expected a number >= 1 for minkowski, got {p!r}")
        p = float(p)
        if not p >= 1:
            raise ValueError(f"p: expected a number >= 1 for minkowski, got {p!r}")
        if p == 1:
            return "manhattan", p
        if p == 2:
            return "euclidean", p
        if math.isinf(p):
            return "chebyshev", p
        return name, p
    return name, 2.0


def _as_tensor(torch: Any, x: Any, name: str, like: Any | None) -> Any:
    """``x`` as a 2-D floating tensor (numpy arrays are wrapped; ints become ``like``'s dtype or
    float32)."""
    if _is_tensor(x):
        if x.dtype not in (torch.float32, torch.float64):
            raise TypeError(
                f"{name}: expected a float32 or float64 tensor, got {x.dtype} "
                "(convert it with .float() or .double())"
            )
        t = x.detach()
    else:
        arr = np.asarray(x)
        if arr.dtype.kind not in "fiub":
            raise TypeError(
                f"{name}: expected a real numeric array (float, int or bool), got dtype {arr.dtype}"
            )
        if like is not None:
            target = np.float64 if like.dtype == torch.float64 else np.float32
        else:
            target = np.float64 if arr.dtype == np.float64 else np.float32
        arr = np.ascontiguousarray(arr, dtype=target)
        t = torch.from_numpy(arr if arr.flags.writeable else arr.copy())  # torch: no read-only
        if like is not None:
            t = t.to(like.device)
    return t


def _inputs(
    base: Any, queries: Any, device: Any
) -> tuple[Any, Any, Callable[[Any], Any], Callable[[Any], Any]]:
    """Checked ``(X, Q, out, out_index)``: tensors on the compute device, and converters that
    return results as tensors on the input's device (tensor input) or numpy arrays."""
    torch = _torch()
    tb, tq = _is_tensor(base), _is_tensor(queries)
    if tb and tq:
        if base.device != queries.device:
            raise ValueError(
                f"base and queries: expected tensors on the same device, got base on "
                f"{base.device} and queries on {queries.device}"
            )
        if base.dtype != queries.dtype:
            raise TypeError(
                f"base and queries: expected tensors of the same dtype, got base {base.dtype} "
                f"and queries {queries.dtype}"
            )
    first = base if tb else (queries if tq else None)
    X = _as_tensor(torch, base, "base", first if not tb else None)
    Q = _as_tensor(torch, queries, "queries", first if not tq else None)
    if not (tb or tq) and X.dtype != Q.dtype:  # numpy: float32 with float64 computes in float64
        X, Q = X.double(), Q.double()
    if X.ndim != 2:
        raise ValueError(f"base: expected a 2-D array (n, dim), got shape {tuple(X.shape)}")
    if Q.ndim == 1 and Q.shape[0] == X.shape[1]:
        Q = Q[None, :]
    if Q.ndim != 2:
        raise ValueError(f"queries: expected a 2-D array (n, dim), got shape {tuple(Q.shape)}")
    if Q.shape[1] != X.shape[1]:
        raise DimensionMismatchError(
            f"queries: expected {X.shape[1]} features per row (as base), got {Q.shape[1]}"
        )
    home = first.device if first is not None else torch.device("cpu")
    dev = resolve_device(device) if device is not None else home
    if dev.type == "mps" and X.dtype == torch.float64:
        raise TypeError(f"device: {str(dev)!r} has no float64; pass float32 inputs")
    X, Q = X.to(dev).contiguous(), Q.to(dev).contiguous()
    for t, name in ((X, "base"), (Q, "queries")):
        if t.numel() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name}: expected finite values, got NaN or infinity")
    if first is not None:
        return X, Q, lambda t: t.to(home), lambda t: t.to(home)
    return X, Q, lambda t: t.cpu().numpy(), lambda t: t.cpu().numpy()


def _fast_mode(fast: Any, dev: Any) -> str | None:
    torch = _torch()
    if not any(fast is m or (isinstance(m, str) and fast == m) for m in _FAST_MODES):
        raise ValueError(f"fast: expected one of {_FAST_MODES}, got {fast!r}")
    if fast is False:
        return None
    tf32_ok = dev.type == "cuda" and torch.cuda.get_device_capability(dev)[0] >= 8
    if fast is True:  # TF32 only where the process has turned it on (knnkit never does)
        return "tf32" if tf32_ok and _tf32_enabled(torch) else "bf16"
    if fast == "tf32" and not tf32_ok:
        raise ValueError(
            f"fast: 'tf32' needs a CUDA device of compute capability 8.0 or newer, got {dev}; "
            "use fast=True or fast='bf16'"
        )
    return str(fast)


def _check_chunk(value: Any, name: str) -> int | None:
    return None if value is None else check_positive_int(value, name)


# -- the engine ------------------------------------------------------------------------------------


#: Unit roundoff of the inputs of a product in TF32 and in BF16.
_U_TF32 = 2.0**-10
_U_BF16 = 2.0**-8


def _getattr_chain(obj: Any, *names: str) -> Any:
    for name in names:
        try:
            obj = getattr(obj, name)
        except (AttributeError, RuntimeError):
            return None
    return obj


def _tf32_enabled(torch: Any) -> bool:
    """Whether fp32 products on CUDA may run in TF32 under the process's current settings."""
    if torch.get_float32_matmul_precision() != "highest":
        return True
    cuda_mm = torch.backends.cuda.matmul
    if bool(_getattr_chain(cuda_mm, "allow_tf32")):
        return True
    return _getattr_chain(cuda_mm, "fp32_precision") == "tf32"


def _settings_rounding(torch: Any, device: Any, dtype: Any) -> float:
    """The unit roundoff that fp32 matrix products on ``device`` may apply to their inputs under
    the process's current settings (read, never changed): 0 for IEEE fp32 (and for float64),
    TF32's or BF16's where the user's settings allow them."""
    if dtype != torch.float32:
        return 0.0
    precision = torch.get_float32_matmul_precision()
    if device.type == "cuda":
        if precision == "medium":
            return _U_BF16
        return _U_TF32 if _tf32_enabled(torch) else 0.0
    if device.type == "cpu":  # oneDNN may use BF16 (AMX) or TF32 when allowed
        onednn = _getattr_chain(torch.backends, "mkldnn", "matmul", "fp32_precision")
        if precision != "highest" or onednn in ("bf16", "tf32"):
            return _U_BF16
        return 0.0
    return _U_BF16 if precision != "highest" else 0.0


def _fixed_sum(t: Any) -> Any:
    """The sum over the last axis in one fixed order on every device and CPU: pairwise halves,
    elementwise additions only (no reduction kernel, whose order depends on the vector width);
    an odd length is padded with an exact zero.

    Examples
    --------
    >>> import torch
    >>> _fixed_sum(torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.25, 0.25]])).tolist()
    [6.0, 1.0]
    """
    torch = _torch()
    d = t.shape[-1]
    if d == 0:
        return torch.zeros(t.shape[:-1], dtype=t.dtype, device=t.device)
    while d > 1:
        if d % 2:
            t = torch.nn.functional.pad(t, (0, 1))
            d += 1
        h = d // 2
        t = t[..., :h] + t[..., h:]
        d = h
    return t[..., 0]


def _scalar_pow(x: Any, e: float) -> Any:
    """``x ** e`` with torch's element-at-a-time ``pow`` for every element: on the CPU, torch's
    vectorised kernel (SLEEF) and its scalar loop for the leftover elements can differ in the
    last bit, so a value's bits would depend on where it sits in the tensor; a strided view is
    computed by the scalar loop throughout (on a GPU there is one kernel)."""
    torch = _torch()
    if x.device.type != "cpu" or x.numel() == 0:
        return x.pow(e)
    return torch.stack([x, x], dim=-1)[..., 0].pow(e)


def _int_power(x: Any, p: float) -> Any | None:
    """``x ** p`` by exact-order products for p in {1, 2, 3, 4} (the same bits everywhere),
    else ``None``."""
    if p == 1:
        return x
    if p == 2:
        return x * x
    if p == 3:
        return (x * x) * x
    if p == 4:
        x2 = x * x
        return x2 * x2
    return None


def _unit_roundoff(torch: Any, dtype: Any) -> float:
    return 2.0**-53 if dtype == torch.float64 else 2.0**-24


class _Engine:
    """Precomputed per-base state and the two ways of scoring pairs (tile and direct)."""

    def __init__(self, torch: Any, X: Any, metric: str, p: float, budget: int | None) -> None:
        self.torch, self.X, self.metric, self.p = torch, X, metric, p
        self.n, self.d = X.shape
        self.dot = metric in _DOT
        self.itemsize = X.element_size()
        self.u = _unit_roundoff(torch, X.dtype)
        if budget is None:
            budget = DEFAULT_MEMORY_BUDGET
            if X.device.type == "cuda":
                free, _ = torch.cuda.mem_get_info(X.device)
                budget = int(min(_GPU_MEMORY_BUDGET, max(DEFAULT_MEMORY_BUDGET, free // 4)))
        self.budget = check_positive_int(budget, "memory_budget")
        self.xn2 = _fixed_sum(X * X) if self.dot else None
        self.xmax = float(self.xn2.max().sqrt()) if self.dot and self.n else 0.0
        self.Xc = X
        if metric == "cosine":
            norms = self.xn2.sqrt()
            self.Xc = X / torch.where(norms > 0, norms, torch.ones_like(norms))[:, None]
        self._low: dict[str, Any] = {}

    # chunk sizes
    def chunks(self, nq: int, m: int, cq: int | None, cb: int | None) -> tuple[int, int]:
        """Query and base rows per tile: a tile and its top-k temporaries fill about half the
        budget; a query chunk's running candidate lists (m per row) at most a quarter."""
        gpu = self.X.device.type != "cpu"
        if cq is None:
            cq = min(max(nq, 1), 8192 if gpu else 1024, self.rows_for(m))
        if cb is None:
            cb = (self.budget // 2) // max(1, cq * self.itemsize * 2)
            cb = max(cb, 256)
        return cq, max(1, min(cb, self.n))

    def rows_for(self, m: int) -> int:
        """Query rows whose candidate lists (values and indices, merged: about 48 bytes per
        candidate) fit in a quarter of the budget."""
        return max(1, (self.budget // 4) // max(1, m * 48))

    def _low_precision(self, mode: str) -> Any:
        if mode not in self._low:
            Xc = self.Xc
            self._low[mode] = Xc.to(self.torch.bfloat16) if mode == "bf16" else Xc.float()
        return self._low[mode]

    def tile(self, Qc: Any, b0: int, b1: int, mode: str | None) -> Any:
        """Candidate keys (smaller is closer) of the query chunk against base rows b0:b1."""
        torch = self.torch
        if not self.dot:
            xb = self.X[b0:b1]
            pp = (
                1.0
                if self.metric == "manhattan"
                else (math.inf if self.metric == "chebyshev" else self.p)
            )
            return torch.cdist(Qc[None], xb[None], p=pp)[0]
        if mode is None:
            xb = self.Xc[b0:b1]
            q = Qc
        else:
            xb = self._low_precision(mode)[b0:b1]
            q = Qc.to(xb.dtype)
        euclid = self.metric in ("euclidean", "sqeuclidean")
        if euclid and q.dtype == self.X.dtype:  # one fused pass: |x|^2 - 2 q.x
            return torch.addmm(self.xn2[b0:b1][None, :], q, xb.T, alpha=-2)
        prod = self._bf16_product(q, xb) if mode == "bf16" else (q @ xb.T)
        prod = prod.to(self.X.dtype)
        return self.xn2[b0:b1][None, :] - 2 * prod if euclid else prod.neg_()

    def _bf16_product(self, q: Any, xb: Any) -> Any:
        """BF16 inputs, products accumulated in fp32 without touching torch's settings: on CUDA
        with an fp32 output where torch has it, or, where cuBLAS may reduce in BF16, as an fp32
        product of the BF16-rounded values (exact products); elsewhere (CPU) BF16 out."""
        torch = self.torch
        if q.device.type != "cuda":
            return q @ xb.T
        try:
            return torch.mm(q, xb.T, out_dtype=torch.float32)
        except (TypeError, RuntimeError):
            pass
        if _getattr_chain(torch.backends.cuda.matmul, "allow_bf16_reduced_precision_reduction"):
            return q.float() @ xb.float().T
        return q @ xb.T

    def prepare_queries(self, Q: Any) -> Any:
        if self.metric != "cosine":
            return Q
        norms = (Q * Q).sum(1).sqrt()
        return Q / self.torch.where(norms > 0, norms, self.torch.ones_like(norms))[:, None]

    def bound(self, Q: Any, mode: str | None, u_settings: float = 0.0) -> Any:
        """Per-query bound on |candidate key - direct key| (0 for the direct metrics).

        A dot product of length d summed in any order with unit roundoff u is off by at most
        ``g * sum|q_i x_i| <= g |q| |x|`` with ``g = d u / (1 - d u)``; rounding the inputs to
        TF32 / BF16 (``u_in``) and a BF16 output (``u_out``) add ``2 u_in + u_in^2 + u_out``
        times the same. The direct re-scoring of the k-th candidate and of any other row
        adds ``g`` times their sizes again. The sum is doubled for safety.
        """
        torch = self.torch
        if not self.dot:
            return torch.zeros(Q.shape[0], dtype=Q.dtype, device=Q.device)
        u_in = max({None: 0.0, "tf32": _U_TF32, "bf16": _U_BF16}[mode], u_settings)
        u_out = _U_BF16 if mode == "bf16" else 0.0  # (a BF16 output, where one is made)
        u_acc = self.u if mode is None else max(self.u, 2.0**-24)
        g = 1.01 * (self.d + 4) * u_acc
        low = 2.0 * u_in + u_in * u_in + u_out
        if self.metric == "cosine":  # unit vectors; normalising costs about 2 g more
            return torch.full((Q.shape[0],), 2.0 * (low + 8.0 * g), dtype=Q.dtype, device=Q.device)
        qn = (Q * Q).sum(1).sqrt()
        if self.metric == "inner_product":
            return 2.0 * (low + 3.0 * g) * qn * self.xmax
        return 2.0 * (2.0 * low * qn * self.xmax + 3.0 * g * (qn + self.xmax) ** 2)

    def cdist_rel(self) -> float:
        """Relative bound on how far ``torch.cdist``'s distance (any summation order, its
        ``pow``) and the fixed-order re-scored one can be from the exact value, together."""
        return 4.0 * (self.d + 8) * self.u

    def lower_key(self, Q: Any, a_m: Any, E: Any) -> Any:
        """The smallest direct key any non-candidate can have, from the largest candidate key."""
        if self.metric in ("euclidean", "sqeuclidean"):
            return (Q * Q).sum(1) + a_m - E
        if self.metric == "cosine":
            return 1.0 + a_m - E
        if not self.dot:  # a_m is cdist's distance; keys are reduced (minkowski: sum |d|^p)
            low = (a_m * (1.0 - self.cdist_rel())).clamp_min(0.0)
            return low.pow(self.p) if self.metric == "minkowski" else low
        return a_m - E

    def direct(self, Q: Any, idx: Any) -> Any:
        """Direct keys of query rows against their candidate base rows ``idx`` (rows, m)."""
        torch = self.torch
        out = torch.empty(idx.shape, dtype=self.X.dtype, device=self.X.device)
        # the gathered (rows, m, d) block and its temporaries: about half the budget
        rr = max(1, (self.budget // 2) // max(1, idx.shape[1] * self.d * self.itemsize * 3))
        for s in range(0, idx.shape[0], rr):
            q = Q[s : s + rr, None, :]
            x = self.X[idx[s : s + rr]]
            out[s : s + rr] = self._pair_keys(q, x, idx[s : s + rr])
        return out

    def _pair_keys(self, q: Any, x: Any, idx: Any) -> Any:
        """Direct keys of query rows ``q`` (rows, 1, d) against ``x`` (rows, m, d), summed by
        :func:`_fixed_sum` (the same bits on every device and CPU)."""
        torch = self.torch
        m = self.metric
        if m in ("euclidean", "sqeuclidean"):
            diff = q - x
            return _fixed_sum(diff * diff)
        if m == "inner_product":
            return -_fixed_sum(q * x)
        if m == "cosine":
            dot = _fixed_sum(q * x)
            denom = (_fixed_sum(q * q) * self.xn2[idx]).sqrt()
            safe = torch.where(denom > 0, denom, torch.ones_like(denom))
            v = (1.0 - dot / safe).clamp_min(0.0)
            return torch.where(denom > 0, v, torch.ones_like(v))
        diff = (q - x).abs()
        if m == "manhattan":
            return _fixed_sum(diff)
        if m == "chebyshev":
            return diff.amax(-1)  # a maximum is exact in any order
        powered = _int_power(diff, self.p)
        return _fixed_sum(_scalar_pow(diff, self.p) if powered is None else powered)

    def to_distance(self, key: Any) -> Any:
        if self.metric == "euclidean":
            return key.sqrt()
        if self.metric == "inner_product":
            return -key
        if self.metric == "minkowski":
            return _scalar_pow(key, 1.0 / self.p)
        return key


def _candidates(
    eng: _Engine, Qc: Any, Qt: Any, m: int, cb: int, mode: str | None
) -> tuple[Any, Any]:
    """Running best-``m`` (unordered) candidate keys and indices over all base chunks."""
    torch = eng.torch
    best_v = best_i = None
    for b0 in range(0, eng.n, cb):
        b1 = min(eng.n, b0 + cb)
        t = eng.tile(Qt, b0, b1, mode)
        v, i = torch.topk(t, min(m, b1 - b0), dim=1, largest=False, sorted=False)
        i = i + b0
        if best_v is not None:
            v, i = torch.cat([best_v, v], 1), torch.cat([best_i, i], 1)
            if v.shape[1] > m:
                v, sel = torch.topk(v, m, dim=1, largest=False, sorted=False)
                i = torch.gather(i, 1, sel)
        best_v, best_i = v, i
    return best_v, best_i


def _rank(eng: _Engine, Qc: Any, cand_v: Any, cand_i: Any, k: int) -> tuple[Any, Any]:
    """Candidates re-scored directly and sorted by (key, index); the first ``k``."""
    torch = eng.torch
    cand_i, _ = torch.sort(cand_i, dim=1)
    keys = eng.direct(Qc, cand_i)  # fixed-order keys, whatever produced the candidates
    keys, order = torch.sort(keys, dim=1, stable=True)
    return keys[:, :k], torch.gather(cand_i, 1, order[:, :k])


def _knn_chunk(eng: _Engine, Qc: Any, k: int, m: int, cb: int, mode: str | None) -> tuple[Any, Any]:
    """Certified top-k of one query chunk: candidates, exact re-rank, and the queries the
    error bound cannot certify again with 4x the candidates in full precision (at most the
    whole base, where the answer is exact by construction)."""
    torch = eng.torch
    Qt = eng.prepare_queries(Qc)
    keys = torch.empty((Qc.shape[0], k), dtype=eng.X.dtype, device=Qc.device)
    idx = torch.empty((Qc.shape[0], k), dtype=torch.int64, device=Qc.device)
    rows = torch.arange(Qc.shape[0], device=Qc.device)
    while rows.numel():
        step, failed = eng.rows_for(m), []
        for s in range(0, rows.numel(), step):
            r = rows[s : s + step]
            q, qt = Qc[r], Qt[r]
            u_before = _settings_rounding(eng.torch, eng.X.device, eng.X.dtype)
            cand_v, cand_i = _candidates(eng, q, qt, m, cb, mode)
            u_settings = max(u_before, _settings_rounding(eng.torch, eng.X.device, eng.X.dtype))
            kk, ii = _rank(eng, q, cand_v, cand_i, k)
            keys[r], idx[r] = kk, ii
            if m < eng.n:
                low = eng.lower_key(q, cand_v.amax(1), eng.bound(q, mode, u_settings))
                failed.append(r[~(low > kk[:, -1])])
        if m >= eng.n or not failed:
            break
        rows, m, mode = torch.cat(failed), min(eng.n, 4 * m), None
    return keys, idx


def knn(
    base: Any,
    queries: Any,
    k: int,
    metric: str = "euclidean",
    p: float = 2.0,
    chunk_queries: int | None = None,
    chunk_base: int | None = None,
    fast: bool | str = False,
    device: Any = None,
    memory_budget: int | None = None,
) -> tuple[Any, Any]:
    """Exact ``k`` nearest rows of ``base`` for each row of ``queries``, on a torch device.

    Parameters
    ----------
    base : array-like or torch.Tensor of shape (n, dim)
        The vectors searched. Float32 and float64 keep their type; integer numpy arrays become
        float32. Tensors must be float32 or float64.
    queries : array-like or torch.Tensor of shape (nq, dim)
        The query vectors (one vector of shape (dim,) is one query). When both inputs are
        tensors they must share device and dtype.
    k : int
        Neighbours per query, ``1 <= k <= n`` (no other cap: ``k = n`` sorts the whole base).
    metric : str, default="euclidean"
        One of :data:`METRICS`. Distances come back in the metric's own units, closest first;
        ``inner_product`` returns the similarity itself, largest first; ``cosine`` is
        ``1 - cos``.
    p : float, default=2.0
        Exponent for ``metric="minkowski"`` (``>= 1``).
    chunk_queries, chunk_base : int, optional
        Rows of queries and of base per distance tile; chosen from ``memory_budget`` when
        omitted (small values force the running merge, for tests).
    fast : {False, True, "tf32", "bf16"}, default=False
        Candidate tiles in reduced precision (``True``: TF32 on CUDA devices of compute
        capability >= 8.0, BF16 elsewhere), then the exact re-rank: the returned neighbours and
        distances are still exact. No effect on manhattan, chebyshev and minkowski. Meant for
        GPUs: on the CPU, torch's BF16 products are usually slower than fp32. Queries whose
        neighbours are too close together for the reduced-precision error bound are redone in
        fp32, so on such data fast mode costs more than it saves.
    device : str or torch.device, optional
        Where to compute. Default: the input tensor's device, or the CPU for numpy inputs. An
        unavailable device raises ``ValueError`` naming it.
    memory_budget : int, optional
        Bytes of working memory to aim for (default 256 MiB; on CUDA a quarter of the free
        memory, at most 4 GiB).

    Returns
    -------
    distances : ndarray or torch.Tensor of shape (nq, k)
        In the dtype of the inputs.
    indices : ndarray or torch.Tensor of shape (nq, k), int64
        Row numbers in ``base``; ties go to the lower index. Tensors on the input's device
        when an input was a tensor, numpy arrays otherwise.

    Raises
    ------
    ValueError
        ``k`` larger than ``n``, non-finite values, mismatched devices, an unknown metric or
        an unavailable device.
    TypeError
        Mismatched or non-floating tensor dtypes, non-numeric arrays.

    Examples
    --------
    >>> import torch
    >>> from knnkit.backends.torch import knn
    >>> X = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    >>> D, I = knn(X, torch.tensor([[0.1, 0.0]]), k=3, metric="manhattan")
    >>> I.tolist(), [round(v, 3) for v in D[0].tolist()]
    ([[0, 1, 2]], [0.1, 0.9, 2.1])
    """
    torch = _torch()
    k = check_positive_int(k, "k")
    name, p = _metric(metric, p)
    cq, cb = _check_chunk(chunk_queries, "chunk_queries"), _check_chunk(chunk_base, "chunk_base")
    X, Q, out, out_i = _inputs(base, queries, device)
    n = X.shape[0]
    if k > n:
        raise ValueError(f"k: expected at most the number of base rows ({n}), got {k}")
    with torch.no_grad():
        eng = _Engine(torch, X, name, p, memory_budget)
    D, I = _knn_engine(eng, Q, k, fast, cq, cb)
    return out(D), out_i(I)


def _knn_engine(
    eng: _Engine, Q: Any, k: int, fast: Any, cq: int | None, cb: int | None
) -> tuple[Any, Any]:
    """:func:`knn` on a prepared base and checked queries (tensors on its device and dtype)."""
    torch, X, n = eng.torch, eng.X, eng.n
    mode = _fast_mode(fast, X.device)
    mode = mode if eng.dot else None  # the direct metrics have no product to speed up
    m = min(n, max(2 * k, k + 32) if mode is None else max(4 * k, k + 64))
    with torch.no_grad():
        cq, cb = eng.chunks(Q.shape[0], m, cq, cb)
        D = torch.empty((Q.shape[0], k), dtype=X.dtype, device=X.device)
        I = torch.empty((Q.shape[0], k), dtype=torch.int64, device=X.device)
        for s in range(0, Q.shape[0], cq):
            keys, idx = _knn_chunk(eng, Q[s : s + cq], k, m, cb, mode)
            D[s : s + cq], I[s : s + cq] = eng.to_distance(keys), idx
    return D, I


def radius(
    base: Any,
    queries: Any,
    radius: Any,
    metric: str = "euclidean",
    p: float = 2.0,
    chunk_queries: int | None = None,
    chunk_base: int | None = None,
    device: Any = None,
    memory_budget: int | None = None,
) -> tuple[Any, Any, Any]:
    """Every row of ``base`` within ``radius`` of each query, as CSR ``(lims, D, I)``.

    Like :meth:`knnkit.FlatIndex.range_search`: the matches of query ``i`` are
    ``D[lims[i]:lims[i + 1]]`` and ``I[lims[i]:lims[i + 1]]``, closest first, ties to the lower
    index. For ``inner_product``, the rows whose similarity is at least ``radius`` (largest
    first). The test ``distance <= radius`` is made on the directly computed distance, so the
    result is exact.

    Parameters
    ----------
    base, queries, metric, p, chunk_queries, chunk_base, device, memory_budget
        As in :func:`knn`.
    radius : float or array-like of shape (nq,)
        One radius for all queries or one per query; finite, and non-negative except for
        ``inner_product``.

    Returns
    -------
    lims : ndarray or torch.Tensor of shape (nq + 1,), int64
    distances : ndarray or torch.Tensor of shape (lims[-1],), the inputs' dtype
    indices : ndarray or torch.Tensor of shape (lims[-1],), int64

    Examples
    --------
    >>> import numpy as np
    >>> from knnkit.backends.torch import radius
    >>> X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    >>> lims, D, I = radius(X, X[:2], 1.0)
    >>> lims.tolist(), I.tolist(), D.tolist()
    ([0, 2, 4], [0, 1, 1, 0], [0.0, 1.0, 0.0, 1.0])
    """
    torch = _torch()
    name, p = _metric(metric, p)
    cq, cb = _check_chunk(chunk_queries, "chunk_queries"), _check_chunk(chunk_base, "chunk_base")
    X, Q, out, out_i = _inputs(base, queries, device)
    with torch.no_grad():
        eng = _Engine(torch, X, name, p, memory_budget)
    lims, dist, xi = _radius_engine(eng, Q, radius, cq, cb)
    return out_i(lims), out(dist), out_i(xi)


def _radius_engine(
    eng: _Engine, Q: Any, radius: Any, cq: int | None, cb: int | None
) -> tuple[Any, Any, Any]:
    """:func:`radius` on a prepared base and checked queries (tensors on its device and dtype)."""
    torch, X, name = eng.torch, eng.X, eng.metric
    nq = Q.shape[0]
    r = radius.detach().cpu().numpy() if _is_tensor(radius) else np.asarray(radius)
    if r.dtype.kind not in "fiu":
        raise TypeError(f"radius: expected a number or an array of numbers, got {radius!r}")
    r = r.astype(np.float64)
    if r.ndim > 1 or (r.ndim == 1 and r.shape[0] != nq):
        raise ValueError(f"radius: expected a number or {nq} numbers, got shape {r.shape}")
    if not np.isfinite(r).all() or (name != "inner_product" and (r < 0).any()):
        raise ValueError(f"radius: expected finite non-negative values, got {radius!r}")
    rt = torch.as_tensor(np.broadcast_to(r, (nq,)).copy(), dtype=X.dtype, device=X.device)
    rows_out, cols_out, dist_out = [], [], []
    with torch.no_grad():
        cq, cb = eng.chunks(nq, 1, cq, cb)
        pair_batch = max(1, (eng.budget // 2) // max(1, X.shape[1] * eng.itemsize * 2))
        for s in range(0, nq if X.shape[0] else 0, cq):
            Qc, rc = Q[s : s + cq], rt[s : s + cq]
            u_settings = _settings_rounding(torch, X.device, X.dtype)
            while True:  # again with the looser bound if the settings changed meanwhile
                part = _radius_chunk(eng, Qc, rc, cb, pair_batch, u_settings)
                u_after = _settings_rounding(torch, X.device, X.dtype)
                if u_after <= u_settings:
                    break
                u_settings = u_after
            qi, xi, dist = part
            rows_out.append(qi + s)
            cols_out.append(xi)
            dist_out.append(dist)
        if rows_out:
            qi, xi, dist = torch.cat(rows_out), torch.cat(cols_out), torch.cat(dist_out)
        else:
            qi = torch.empty(0, dtype=torch.int64, device=X.device)
            xi = torch.empty(0, dtype=torch.int64, device=X.device)
            dist = torch.empty(0, dtype=X.dtype, device=X.device)
        # order by (query, distance, index): stable sorts from the last key to the first
        order = torch.sort(xi, stable=True).indices
        qi, xi, dist = qi[order], xi[order], dist[order]
        order = torch.sort(-dist if name == "inner_product" else dist, stable=True).indices
        qi, xi, dist = qi[order], xi[order], dist[order]
        order = torch.sort(qi, stable=True).indices
        qi, xi, dist = qi[order], xi[order], dist[order]
        lims = torch.zeros(nq + 1, dtype=torch.int64, device=X.device)
        lims[1:] = torch.cumsum(torch.bincount(qi, minlength=nq), 0)
    return lims, dist, xi


def _radius_chunk(
    eng: _Engine, Qc: Any, rc: Any, cb: int, pair_batch: int, u_settings: float
) -> tuple[Any, Any, Any]:
    """``(query row, base row, distance)`` of the pairs within radius of one query chunk: the
    tile's candidates (threshold widened by the tile's error bound), re-scored in fixed order."""
    torch, X, name = eng.torch, eng.X, eng.metric
    Qt = eng.prepare_queries(Qc)
    key_r = eng.to_distance(rc) if name == "inner_product" else rc
    if name == "euclidean":
        key_r = rc * rc
    # candidate threshold in tile units: the key radius, widened by the error bound
    thr = key_r + eng.bound(Qc, None, u_settings)
    if name in ("euclidean", "sqeuclidean"):
        thr = thr - (Qc * Qc).sum(1)
    elif name == "cosine":
        thr = thr - 1.0
    elif not eng.dot:  # cdist's distances: widened by their relative bound
        thr = rc * (1.0 + eng.cdist_rel())
    rows, cols, dists = [], [], []
    for b0 in range(0, X.shape[0], cb):
        b1 = min(X.shape[0], b0 + cb)
        t = eng.tile(Qt, b0, b1, None)
        qi, xi = torch.nonzero(t <= thr[:, None], as_tuple=True)
        if qi.numel() == 0:
            continue
        xi = xi + b0
        keys = torch.cat(
            [
                eng._pair_keys(
                    Qc[qi[j : j + pair_batch]], X[xi[j : j + pair_batch]], xi[j : j + pair_batch]
                )
                for j in range(0, qi.numel(), pair_batch)
            ]
        )
        dist = eng.to_distance(keys)
        ok = dist >= rc[qi] if name == "inner_product" else dist <= rc[qi]
        rows.append(qi[ok])
        cols.append(xi[ok])
        dists.append(dist[ok])
    if not rows:
        empty = torch.empty(0, dtype=torch.int64, device=X.device)
        return empty, empty, torch.empty(0, dtype=X.dtype, device=X.device)
    return torch.cat(rows), torch.cat(cols), torch.cat(dists)


class PreparedBase:
    """A base tensor prepared once for many exact searches on its device.

    :func:`knn` and :func:`radius` check the base and compute its norms (and, for cosine, a
    normalised copy) on every call; for repeated searches of one base (an index, a fitted
    estimator) this does it once, and keeps the reduced-precision copy of ``fast`` mode. Queries
    must be tensors on the base's device; they are cast to its dtype and checked finite.

    Parameters
    ----------
    base : torch.Tensor of shape (n, dim)
        Float32 or float64, on the device to search on (not copied; do not modify it while
        prepared).
    metric, p, memory_budget
        As in :func:`knn`.

    Examples
    --------
    >>> import torch
    >>> from knnkit.backends.torch import PreparedBase
    >>> pb = PreparedBase(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]]))
    >>> pb.knn(torch.tensor([[0.9, 0.0]]), k=2)[1].tolist()
    [[1, 0]]
    """

    def __init__(
        self, base: Any, metric: str = "euclidean", p: float = 2.0, memory_budget: Any = None
    ) -> None:
        torch = _torch()
        name, p = _metric(metric, p)
        if not _is_tensor(base):
            raise TypeError(f"base: expected a torch tensor, got {type(base).__name__}")
        X = _as_tensor(torch, base, "base", None)
        if X.ndim != 2:
            raise ValueError(f"base: expected a 2-D tensor (n, dim), got shape {tuple(X.shape)}")
        if X.numel() and not bool(torch.isfinite(X).all()):
            raise ValueError("base: expected finite values, got NaN or infinity")
        with torch.no_grad():
            self._eng = _Engine(torch, X.contiguous(), name, p, memory_budget)

    @property
    def n(self) -> int:
        return self._eng.n

    def _queries(self, Q: Any) -> Any:
        torch, X = self._eng.torch, self._eng.X
        if not _is_tensor(Q):
            raise TypeError(f"queries: expected a torch tensor, got {type(Q).__name__}")
        if Q.ndim != 2 or Q.shape[1] != self._eng.d:
            raise DimensionMismatchError(
                f"queries: expected shape (nq, {self._eng.d}), got {tuple(Q.shape)}"
            )
        if Q.device != X.device:
            raise ValueError(f"queries: expected a tensor on {X.device}, got {Q.device}")
        Q = Q.detach().to(X.dtype).contiguous()
        if Q.numel() and not bool(torch.isfinite(Q).all()):
            raise ValueError("queries: expected finite values, got NaN or infinity")
        return Q

    def knn(
        self,
        queries: Any,
        k: int,
        fast: bool | str = False,
        chunk_queries: int | None = None,
        chunk_base: int | None = None,
    ) -> tuple[Any, Any]:
        """:func:`knn` against the prepared base: ``(distances, indices)`` tensors."""
        k = check_positive_int(k, "k")
        if k > self.n:
            raise ValueError(f"k: expected at most the number of base rows ({self.n}), got {k}")
        cq, cb = (
            _check_chunk(chunk_queries, "chunk_queries"),
            _check_chunk(chunk_base, "chunk_base"),
        )
        return _knn_engine(self._eng, self._queries(queries), k, fast, cq, cb)

    def radius(
        self,
        queries: Any,
        radius: Any,
        chunk_queries: int | None = None,
        chunk_base: int | None = None,
    ) -> tuple[Any, Any, Any]:
        """:func:`radius` against the prepared base: CSR ``(lims, distances, indices)``."""
        cq, cb = (
            _check_chunk(chunk_queries, "chunk_queries"),
            _check_chunk(chunk_base, "chunk_base"),
        )
        return _radius_engine(self._eng, self._queries(queries), radius, cq, cb)


__all__ = ["DEFAULT_MEMORY_BUDGET", "METRICS", "PreparedBase", "knn", "radius", "resolve_device"]
