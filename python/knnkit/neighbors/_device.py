"""The torch engine (``device=``): :class:`TorchSearch`, one more engine behind
:class:`~knnkit.neighbors._engine.SearchEngine`, with its checks, tensor inputs, and the votes
and averages computed where the neighbours are (:class:`TorchArrays`).

Design. ``device=None`` keeps the native CPU engines. Any other value (``"cuda"``, ``"mps"``,
``"cpu"``, a ``torch.device``) is resolved once at ``fit`` (an unavailable device is a
``ValueError`` naming it, never a silent fallback) and the fitted rows live on that device as one
tensor; :class:`TorchSearch`, the estimator's ``_index``, searches them with
:mod:`knnkit.backends.torch` (exact, fp32 or fp64 as the data) and returns tensors on the device.

Inputs and outputs. Every estimator accepts torch tensors as well as arrays, whatever the
engine. The public results follow the query (:func:`query_output`): a tensor in gives tensors on
that tensor's device (``X=None``: the fitted tensor's device), anything else gives numpy. With a
device engine a tensor is checked and used where it is (:func:`validate_tensor_fit`,
:func:`check_tensor`; no copy to the host); with the native engines a tensor is read through the
host. Class labels that are not numbers (strings, objects) cannot be tensors and come back as
numpy arrays.

Votes and averages (:class:`TorchArrays`) run on the device with ``scatter_add``, in float64
(float32 on devices without float64). ``predict`` takes the first class with the largest score,
as scikit-learn; the rare distance-weighted votes whose two best classes are closer than the
rounding of the sums are settled on the host with scikit-learn's ``weighted_mode`` arithmetic, as
the native engines do, so ties resolve as in scikit-learn. The engine pickles through the host:
its state holds a numpy copy of the rows and the device's name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.utils import check_array

from knnkit.neighbors._arrays import _weighted_mode_rows

if TYPE_CHECKING:
    from knnkit.neighbors._engine import EngineSpec

#: scikit-learn metric names (after ``effective_metric_``) the torch backend computes, mapped to
#: the backend's names.
TORCH_METRICS = {
    "euclidean": "euclidean",
    "l2": "euclidean",
    "sqeuclidean": "sqeuclidean",
    "cosine": "cosine",
    "manhattan": "manhattan",
    "cityblock": "manhattan",
    "l1": "manhattan",
    "chebyshev": "chebyshev",
    "infinity": "chebyshev",
    "minkowski": "minkowski",
}


def is_tensor(x: Any) -> bool:
    """Whether ``x`` is a torch tensor (without importing torch)."""
    return type(x).__module__.startswith("torch") and hasattr(x, "device") and hasattr(x, "dtype")


def from_numpy(arr: Any) -> Any:
    """A CPU tensor sharing ``arr``'s memory when it is C-contiguous and writable (torch has no
    read-only tensors: a read-only array, e.g. a memory map, is copied)."""
    import torch

    arr = np.ascontiguousarray(arr)
    return torch.from_numpy(arr if arr.flags.writeable else arr.copy())


def host(x: Any) -> Any:
    """A tensor as a numpy array (copied from its device); anything else as it is."""
    return x.detach().cpu().numpy() if is_tensor(x) else x


def check_device(device: Any, algorithm: Any) -> Any:
    """``None`` for the native engines, else the resolved, available ``torch.device``.

    The torch backend is exact brute force: ``algorithm`` must be ``"auto"`` or ``"brute"``.
    """
    if device is None:
        return None
    from knnkit.backends.torch import resolve_device

    dev = resolve_device(device)
    if algorithm not in ("auto", "brute"):
        raise ValueError(
            f"algorithm={algorithm!r} with device={device!r}: the torch backend runs the exact "
            "brute-force search; use algorithm='auto' or 'brute' with a device, or device=None "
            f"for algorithm={algorithm!r} on the CPU"
        )
    return dev


def torch_metric(metric: Any, params: dict[str, Any], device: Any) -> tuple[str, float]:
    """The backend's ``(metric, p)`` for an estimator's effective metric; ``ValueError`` naming
    the supported metrics otherwise."""
    name = TORCH_METRICS.get(metric) if isinstance(metric, str) else None
    extra = {key for key, value in params.items() if value is not None and key != "p"}
    if name is None or extra:
        what = f"metric={metric!r}" + (f" with metric_params {sorted(extra)}" if extra else "")
        raise ValueError(
            f"{what} is not available on device={str(device)!r}: the torch backend computes "
            f"{sorted(TORCH_METRICS)} (minkowski with p >= 1, no weights); use device=None "
            "for the other metrics"
        )
    p = float(params.get("p", 2.0)) if name == "minkowski" else 2.0
    if name == "minkowski" and not p >= 1:
        raise ValueError(f"p={p!r}: the torch backend computes minkowski for p >= 1")
    return name, p


def check_device_metric(device: Any, metric: Any, params: dict[str, Any]) -> None:
    """:func:`torch_metric`'s check for a resolved device; nothing to check for ``None``."""
    if device is not None:
        torch_metric(metric, params, device)


def float_dtype_t(torch: Any, dtype: Any, device: Any) -> Any:
    """The torch float type a search runs in: float32 for 32-bit and smaller floats, float64
    otherwise (float32 on devices without float64)."""
    if device.type == "mps":
        return torch.float32
    if is_tensor(dtype):
        dtype = dtype.dtype
    if dtype in (torch.float32, torch.float16, torch.bfloat16):
        return torch.float32
    if isinstance(dtype, np.dtype) and dtype.kind == "f" and dtype.itemsize <= 4:
        return torch.float32
    return torch.float64


def check_tensor(X: Any, name: str = "X") -> Any:
    """A 2-D real tensor with finite values (detached), or a ``ValueError``/``TypeError``
    naming what was expected."""
    import torch

    X = X.detach()
    if X.is_complex():
        raise TypeError(f"{name}: expected a real tensor, got {X.dtype}")
    if X.ndim != 2:
        raise ValueError(
            f"Expected 2D array, got {X.ndim}D tensor instead: {name} must have shape "
            "(n_samples, n_features)"
        )
    if X.shape[0] == 0:
        raise ValueError(f"{name}: found a tensor with 0 sample(s) (shape={tuple(X.shape)})")
    if X.shape[1] == 0:
        raise ValueError(f"{name}: found a tensor with 0 feature(s) (shape={tuple(X.shape)})")
    if X.is_floating_point() and not bool(torch.isfinite(X).all()):
        raise ValueError(f"Input {name} contains NaN or infinity.")
    return X


def validate_tensor_fit(estimator: Any, X: Any, y: Any, target: bool) -> tuple[Any, Any]:
    """``fit``'s ``validate_data`` for a tensor ``X`` kept on its device: the tensor checked
    (2-D, real, finite), ``y`` read through the host (labels are small) and checked as
    scikit-learn checks it."""
    X = check_tensor(X)
    if hasattr(estimator, "feature_names_in_"):  # a tensor has no column names
        del estimator.feature_names_in_
    estimator.n_features_in_ = X.shape[1]
    if not target:
        return X, y
    y = check_array(host(y), ensure_2d=False, dtype=None, input_name="y")
    if y.shape[0] != X.shape[0]:
        raise ValueError(
            "Found input variables with inconsistent numbers of samples: "
            f"[{X.shape[0]}, {y.shape[0]}]"
        )
    return X, y


def query_output(X: Any, fit_home: Any) -> tuple[Any, Any]:
    """``(home, to_output)``: where results should live (a torch device, or ``None`` for numpy)
    and a converter taking a tensor or an array there."""
    home = X.device if is_tensor(X) else (fit_home if X is None else None)
    return home, (lambda r: to_home(r, home))


def to_home(r: Any, home: Any) -> Any:
    """``r`` (tensor or array) as a tensor on ``home``, or as numpy when ``home`` is None."""
    if r is None:
        return None
    if home is None:
        return host(r)
    if is_tensor(r):
        return r.to(home)
    arr = np.asarray(r)
    if arr.dtype.kind not in "biuf":  # labels that are not numbers stay numpy
        return arr
    return from_numpy(arr).to(home)


class TorchSearch:
    """The fitted exact search on a torch device: the fitted rows as one tensor there.

    ``kneighbors`` returns ``(distances, indices)`` tensors on the device and
    ``radius_neighbors`` CSR ``(lims, distances, indices)`` tensors, in index order within each
    query unless ``sort`` (then by distance, ties to the lower index). Queries are tensors there
    or validated numpy rows (moved there, in the fitted dtype). Pickles through the host: the
    state holds a numpy copy and the device's name.
    """

    fit_method = "brute"
    approximate = False
    sparse_queries = False
    sparse_fit = False
    query_blocks = False
    tensor_queries = True

    def __init__(self, base: Any, metric: str, p: float) -> None:
        self.base = base
        self.metric = metric
        self.p = p
        self._prepared = None
        self.arrays = TorchArrays(base.device)

    @classmethod
    def build(cls, X: Any, spec: EngineSpec) -> TorchSearch:
        """The fitted rows (a tensor anywhere, or a dense array) on ``spec.device``, as floats."""
        import torch

        metric, p = torch_metric(spec.metric, spec.metric_params, spec.device)
        dtype = float_dtype_t(torch, X if is_tensor(X) else X.dtype, spec.device)
        base = X if is_tensor(X) else from_numpy(X)
        return cls(base.to(device=spec.device, dtype=dtype).contiguous(), metric, p)

    @property
    def prepared(self) -> Any:
        """The base prepared once (norms, normalised copy) for every search."""
        if self._prepared is None:
            from knnkit.backends.torch import PreparedBase

            self._prepared = PreparedBase(self.base, self.metric, self.p)
        return self._prepared

    @property
    def device(self) -> Any:
        return self.base.device

    @property
    def label(self) -> str:
        return f"device={str(self.device)!r}"

    def _queries(self, X: Any, rows: Any = None) -> Any:
        if X is None:
            return self.base if rows is None else self.base[rows]
        X = X if is_tensor(X) else from_numpy(X)
        return X.to(device=self.base.device, dtype=self.base.dtype)

    def kneighbors(self, X: Any, k: int, n_jobs: Any = None) -> tuple[Any, Any]:
        return self.prepared.knn(self._queries(X), k)

    def radius_neighbors(
        self, X: Any, radius: Any, sort: bool, n_jobs: Any = None, rows: Any = None
    ) -> tuple[Any, Any, Any]:
        import torch

        Q = self._queries(X, rows)
        lims, dist, ind = self.prepared.radius(Q, radius)
        if not sort and ind.numel():  # index order within each query
            q = torch.repeat_interleave(torch.arange(Q.shape[0], device=ind.device), lims.diff())
            order = torch.argsort(q * self.base.shape[0] + ind)
            dist, ind = dist[order], ind[order]
        return lims, dist, ind

    def __getstate__(self) -> dict[str, Any]:
        return {
            "base": host(self.base),
            "device": str(self.device),
            "metric": self.metric,
            "p": self.p,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        from knnkit.backends.torch import resolve_device

        self.__init__(
            from_numpy(state["base"]).to(resolve_device(state["device"])),
            state["metric"],
            state["p"],
        )


class TorchArrays:
    """:class:`~knnkit.neighbors._arrays.NumpyArrays` on tensors on one device: the fitted
    targets live there, and weights, votes and averages run there (see the module docstring)."""

    def __init__(self, device: Any) -> None:
        import torch

        self.device = device
        self.dtype = score_dtype(torch, device)

    def arange(self, n: int) -> Any:
        import torch

        return torch.arange(n, device=self.device)

    @staticmethod
    def drop_self(lims: Any, dist: Any, ind: Any, offset: int) -> tuple[Any, Any, Any]:
        import torch

        n_queries = lims.shape[0] - 1
        rows = torch.repeat_interleave(torch.arange(n_queries, device=ind.device), lims.diff())
        keep = ind != rows + offset
        out = torch.zeros_like(lims)
        out[1:] = torch.cumsum(torch.bincount(rows[keep], minlength=n_queries), 0)
        return out, dist[keep], ind[keep]

    def targets(self, y: Any, classes: bool) -> Any:
        """Class codes as they are, values in the score dtype, on the device."""
        import torch

        if classes:
            return torch.as_tensor(y, device=self.device)
        return torch.as_tensor(np.asarray(y, dtype=np.float64)).to(self.device, self.dtype)

    def weights(self, dist: Any, weights: Any) -> Any:
        """:func:`knnkit.neighbors._arrays._get_weights` on tensors (``None`` for uniform
        weights); a callable receives the distance tensor on the device."""
        import torch

        if weights in (None, "uniform"):
            return None
        if weights == "distance":
            w = 1.0 / dist.to(self.dtype)
            inf = torch.isinf(w)
            inf_row = inf.any(dim=1)
            return torch.where(inf_row[:, None], inf.to(self.dtype), w)
        w = weights(dist)
        if not is_tensor(w):
            w = torch.as_tensor(np.asarray(w), device=dist.device)
        return w.to(self.dtype)

    def _scores(self, labels: Any, weights: Any, n_classes: int) -> Any:
        """(m, n_classes) vote table: per-class counts, or weight sums (scatter-add)."""
        import torch

        if weights is None:
            weights = torch.ones(labels.shape, dtype=self.dtype, device=labels.device)
        out = torch.zeros((labels.shape[0], n_classes), dtype=self.dtype, device=labels.device)
        return out.scatter_add_(1, labels, weights)

    def vote(self, labels: Any, weights: Any, n_classes: int) -> Any:
        """The first class with the largest score; near-ties settled as on the host."""
        import torch

        scores = self._scores(labels, weights, n_classes)
        best = scores.argmax(dim=1)
        if weights is not None:
            top = scores.gather(1, best[:, None])[:, 0]
            second = scores.scatter(1, best[:, None], -torch.inf).max(dim=1).values
            eps = torch.finfo(scores.dtype).eps
            tol = 4.0 * labels.shape[1] * eps * weights.abs().sum(dim=1)
            unsure = torch.nonzero(~((top > tol) & (top - second > tol)))[:, 0]
            if unsure.numel():
                w = host(weights[unsure]).astype(np.float64)
                redo = _weighted_mode_rows(host(labels[unsure]), w)
                best[unsure] = torch.as_tensor(redo, device=best.device)
        return best

    def proba(self, labels: Any, weights: Any, n_classes: int) -> Any:
        scores = self._scores(labels, weights, n_classes)
        return scores / scores.sum(dim=1, keepdim=True)

    @staticmethod
    def take(classes: np.ndarray, modes: Any) -> Any:
        """Numeric labels as a tensor on the device; others (strings, objects) as numpy."""
        import torch

        if classes.dtype.kind in "biuf":
            return torch.as_tensor(classes).to(modes.device)[modes]
        return classes.take(host(modes))

    @staticmethod
    def columns(cols: list[Any]) -> Any:
        import torch

        if all(is_tensor(c) for c in cols):
            return torch.stack(cols, dim=1)
        return np.stack([host(c) for c in cols], axis=1)

    @staticmethod
    def average(y: Any, ind: Any, weights: Any) -> Any:
        """Sums in one fixed order (:func:`knnkit.backends.torch._fixed_sum`), so predictions
        have the same bits on every CPU and device."""
        from knnkit.backends.torch import _fixed_sum

        values = y[ind].transpose(1, 2)  # (n_queries, n_outputs, k)
        if weights is None:
            return _fixed_sum(values) / ind.shape[1]
        return _fixed_sum(values * weights[:, None, :]) / _fixed_sum(weights)[:, None]


def score_dtype(torch: Any, device: Any) -> Any:
    """The float type of votes and averages: float64, or float32 where the device has none."""
    return torch.float32 if device.type == "mps" else torch.float64
