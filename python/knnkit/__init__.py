"""knnkit: k-nearest neighbours for Python on a Rust core.

- ``knnkit.neighbors``: scikit-learn-compatible estimators (``NearestNeighbors``,
  ``KNeighborsClassifier``, ``KNeighborsRegressor``), same answers, faster.
- ``knnkit.FlatIndex`` (exact) and ``knnkit.HNSWIndex`` (approximate graph): one faiss-like
  API (``add``, ``search`` with filters, ``range_search``, ``remove``, ``save``/``load``).
- ``knnkit.Store``: an embedded vector database (SQLite the truth, indexes derived), with
  Mongo-style metadata filters; ``knnkit.embed`` embeds text for it (offline MiniLM, or any
  callable).
- ``knnkit.Client(url, api_key=...)``: a store served by ``knnkit serve`` (the ``server`` extra),
  with the embedded store's API.
- ``knnkit.model_selection.select_k``: choose K by cross-validation with one neighbour search per
  fold.
- ``knnkit.patch_sklearn()`` / ``unpatch_sklearn()`` / ``with knnkit.sklearn_patched():``: run
  code written for ``sklearn.neighbors`` (scikit-learn's own ``DBSCAN``, ``Isomap``, ``TSNE``, …)
  on knnkit unchanged; ``python -m knnkit.patch script.py`` runs a script patched.
"""

from __future__ import annotations

from knnkit import _core, embed
from knnkit.client import Client
from knnkit.errors import CorruptIndexError, DimensionMismatchError
from knnkit.index import FlatIndex, HNSWIndex, IVFIndex, index_factory, load
from knnkit.index._result import SearchResult
from knnkit.patch import patch_sklearn, sklearn_patched, unpatch_sklearn
from knnkit.store import Store

__version__: str = _core.__version__


def _register_gate_hooks() -> None:
    """No native call may be in flight when the interpreter exits (a daemon thread would take
    the GIL back during finalisation and abort the process) or across ``os.fork()`` (a lock it
    holds would stay held in the child): these hooks close the native core's gate and wait,
    bounded, for the calls in flight (see ``crates/knnkit-py/src/error.rs``)."""
    import atexit
    import os

    atexit.register(_core._gate_at_exit)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(
            before=_core._gate_before_fork,
            after_in_parent=_core._gate_after_fork_parent,
            after_in_child=_core._gate_after_fork_child,
        )


_register_gate_hooks()


def simd_level() -> str:
    """The SIMD instruction set the distance kernels use on this CPU (e.g. ``"avx512f"``)."""
    return _core.simd_level()


__all__ = [
    "Client",
    "CorruptIndexError",
    "DimensionMismatchError",
    "FlatIndex",
    "HNSWIndex",
    "IVFIndex",
    "SearchResult",
    "Store",
    "__version__",
    "embed",
    "index_factory",
    "load",
    "patch_sklearn",
    "simd_level",
    "sklearn_patched",
    "unpatch_sklearn",
]
