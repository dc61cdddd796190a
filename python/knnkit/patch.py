"""Drop-in patching: scikit-learn's neighbour classes replaced by knnkit's, process-wide.

``patch_sklearn()`` puts knnkit's estimators where code looks scikit-learn's up, so code that
already works — scikit-learn's own ``Isomap``, ``TSNE``, ``SpectralEmbedding``, ``DBSCAN``,
``OPTICS``, ``LocalOutlierFactor``, third-party packages such as imbalanced-learn — runs its
neighbour searches on knnkit without a change. ``unpatch_sklearn()`` puts scikit-learn's back;
``with sklearn_patched(): ...`` does both; ``python -m knnkit.patch script.py [args]`` (or
``python -m knnkit.patch -m package.module [args]``) runs a program patched.

Design. What is replaced is one table, :data:`REPLACEMENTS`: each public name of
``sklearn.neighbors`` (and ``sklearn.impute.KNNImputer``) with the knnkit object that stands in
for it. A name is bound in more than one place: the public module (``sklearn.neighbors``), and
every module that did ``from sklearn.neighbors import NearestNeighbors`` before the patch — e.g.
``sklearn.manifold._isomap``, ``sklearn.cluster._dbscan``, ``imblearn.utils._validation`` —
which holds its own reference and never looks the name up again. So the patch sets the public
attribute *and* rebinds every module global that holds the original object (found by identity
in ``sys.modules``), recording each change; modules imported later read the public attribute
and get knnkit's. ``unpatch_sklearn()`` restores every recorded binding, and also rebinds the
knnkit objects that modules imported while patched took (except knnkit's own modules).

Never touched: knnkit's own modules, and the modules that define the originals (scikit-learn's
private ``sklearn.neighbors._*`` modules and ``sklearn.impute._knn``), so scikit-learn's
original classes keep working inside (knnkit's trees hand the metrics they do not compute to
scikit-learn's ``BallTree`` / ``KDTree``, bound from those modules at import time) and
:func:`sklearn_original` can always hand them out.

Results: the knnkit estimators give scikit-learn's answers (same neighbours, same distances
where the arithmetic is the same; see the user guide's "Patching scikit-learn" for the cases
where scikit-learn's own choice among tied neighbours differs between its algorithms).

Thread safety: patching and unpatching hold one lock; they are process-wide, like the module
attributes they change — do not patch in one thread while another runs scikit-learn code that
must see the originals.

Examples
--------
>>> import sklearn.neighbors
>>> import knnkit
>>> with knnkit.sklearn_patched():
...     sklearn.neighbors.NearestNeighbors.__module__
'knnkit.neighbors._unsupervised'
>>> sklearn.neighbors.NearestNeighbors.__module__
'sklearn.neighbors._unsupervised'
"""

from __future__ import annotations

import contextlib
import importlib
import runpy
import sys
import threading
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

#: What ``patch_sklearn()`` replaces: ``(scikit-learn module, name, knnkit module)``; the knnkit
#: object is ``knnkit_module.name``. The originals are read from the scikit-learn module the
#: first time the table is resolved (before any patch).
REPLACEMENTS: tuple[tuple[str, str, str], ...] = (
    ("sklearn.neighbors", "NearestNeighbors", "knnkit.neighbors"),
    ("sklearn.neighbors", "KNeighborsClassifier", "knnkit.neighbors"),
    ("sklearn.neighbors", "KNeighborsRegressor", "knnkit.neighbors"),
    ("sklearn.neighbors", "KNeighborsTransformer", "knnkit.neighbors"),
    ("sklearn.neighbors", "RadiusNeighborsClassifier", "knnkit.neighbors"),
    ("sklearn.neighbors", "RadiusNeighborsRegressor", "knnkit.neighbors"),
    ("sklearn.neighbors", "RadiusNeighborsTransformer", "knnkit.neighbors"),
    ("sklearn.neighbors", "LocalOutlierFactor", "knnkit.neighbors"),
    ("sklearn.neighbors", "KernelDensity", "knnkit.neighbors"),
    ("sklearn.neighbors", "NearestCentroid", "knnkit.neighbors"),
    ("sklearn.neighbors", "NeighborhoodComponentsAnalysis", "knnkit.neighbors"),
    ("sklearn.neighbors", "KDTree", "knnkit.neighbors"),
    ("sklearn.neighbors", "BallTree", "knnkit.neighbors"),
    ("sklearn.neighbors", "kneighbors_graph", "knnkit.neighbors"),
    ("sklearn.neighbors", "radius_neighbors_graph", "knnkit.neighbors"),
    ("sklearn.neighbors", "sort_graph_by_row_values", "knnkit.neighbors"),
    ("sklearn.impute", "KNNImputer", "knnkit.impute"),
)

#: scikit-learn modules known to bind names of :data:`REPLACEMENTS` at import time (the patch
#: finds them, and any other module, by identity; this list documents them and the tests check
#: each one).
KNOWN_CONSUMERS: tuple[str, ...] = (
    "sklearn.cluster._dbscan",
    "sklearn.cluster._optics",
    "sklearn.cluster._spectral",
    "sklearn.cluster._mean_shift",
    "sklearn.cluster._hdbscan.hdbscan",
    "sklearn.manifold._isomap",
    "sklearn.manifold._t_sne",
    "sklearn.manifold._spectral_embedding",
    "sklearn.manifold._locally_linear",
    "sklearn.feature_selection._mutual_info",
    "sklearn.semi_supervised._label_propagation",
)

_LOCK = threading.RLock()
_originals: dict[str, Any] | None = None  # "module:name" -> scikit-learn's object
_replacements: dict[str, Any] | None = None  # "module:name" -> knnkit's object
#: Bindings changed by the active patch: (module name, attribute, original object).
_changed: list[tuple[str, str, Any]] = []
#: Modules present when the active patch was applied (``None``: not patched).
_modules_at_patch: set[str] | None = None


def _resolve() -> tuple[dict[str, Any], dict[str, Any]]:
    """The originals and their replacements, read once (scikit-learn's before any patch)."""
    global _originals, _replacements
    if _originals is None or _replacements is None:
        originals, replacements = {}, {}
        for sk_module, name, kk_module in REPLACEMENTS:
            key = f"{sk_module}:{name}"
            originals[key] = getattr(importlib.import_module(sk_module), name)
            replacements[key] = getattr(importlib.import_module(kk_module), name)
        _originals, _replacements = originals, replacements
    return _originals, _replacements


def _protected(module_name: str, defining: set[str]) -> bool:
    """Modules the patch never rebinds: knnkit's and the originals' own."""
    return (
        module_name == "knnkit"
        or module_name.startswith("knnkit.")
        or module_name.startswith("sklearn.neighbors._")
        or module_name in defining
    )


def _rebind(old_to_new: dict[int, Any], skip: set[str]) -> list[tuple[str, str, Any]]:
    """Rebinds, in every loaded module outside ``skip``, each global that *is* one of the
    objects of ``old_to_new`` (keys: ``id`` of objects the caller keeps alive); returns
    ``(module, name, old)`` per change."""
    changed = []
    for module_name, module in list(sys.modules.items()):
        if not isinstance(module, ModuleType) or _protected(module_name, skip):
            continue
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for attr, value in list(namespace.items()):
            new = old_to_new.get(id(value))
            if new is not None:
                namespace[attr] = new
                changed.append((module_name, attr, value))
    return changed


def patch_sklearn() -> None:
    """Replaces scikit-learn's neighbour estimators, trees and graph functions (and
    ``KNNImputer``) with knnkit's, wherever they are bound (see the module docstring).

    Idempotent: patching a patched process does nothing. Undo with :func:`unpatch_sklearn`.

    Examples
    --------
    >>> import knnkit
    >>> knnkit.patch_sklearn()
    >>> from sklearn.cluster import DBSCAN
    >>> DBSCAN(eps=0.5, min_samples=2).fit([[0.0], [0.1], [5.0], [5.1]]).labels_.tolist()
    [0, 0, 1, 1]
    >>> knnkit.unpatch_sklearn()
    """
    global _modules_at_patch
    with _LOCK:
        if _modules_at_patch is not None:
            return
        originals, replacements = _resolve()
        defining = {obj.__module__ for obj in originals.values()}
        old_to_new = {id(originals[key]): replacements[key] for key in originals}
        _modules_at_patch = set(sys.modules)
        changed = _rebind(old_to_new, defining)
        # the public modules themselves (found above too, unless already rebound)
        for key, new in replacements.items():
            module_name, name = key.split(":")
            module = sys.modules[module_name]
            if getattr(module, name) is not new:
                changed.append((module_name, name, getattr(module, name)))
                setattr(module, name, new)
        _changed[:] = changed


def unpatch_sklearn() -> None:
    """Puts scikit-learn's objects back everywhere :func:`patch_sklearn` changed them, and in
    the modules imported while patched that took knnkit's (knnkit's own modules excepted).

    Does nothing when not patched.
    """
    global _modules_at_patch
    with _LOCK:
        if _modules_at_patch is None:
            return
        for module_name, attr, old in reversed(_changed):
            module = sys.modules.get(module_name)
            if module is not None:
                setattr(module, attr, old)
        originals, replacements = _resolve()
        new_to_old = {id(replacements[key]): originals[key] for key in replacements}
        imported_since = set(sys.modules) - _modules_at_patch
        defining = {obj.__module__ for obj in originals.values()}
        skip = defining | (set(sys.modules) - imported_since)
        _rebind(new_to_old, skip)
        _changed.clear()
        _modules_at_patch = None


def is_patched() -> bool:
    """Whether :func:`patch_sklearn` is in effect."""
    return _modules_at_patch is not None


@contextlib.contextmanager
def sklearn_patched() -> Iterator[None]:
    """Patched inside the ``with`` block (see :func:`patch_sklearn`); on leaving it, unpatched
    again unless the process was already patched on entering.

    Examples
    --------
    >>> import knnkit
    >>> from sklearn.manifold import Isomap
    >>> with knnkit.sklearn_patched():
    ...     emb = Isomap(n_neighbors=2, n_components=1).fit_transform([[0.0], [1.0], [3.0]])
    >>> emb.shape
    (3, 1)
    """
    with _LOCK:
        was_patched = is_patched()
        patch_sklearn()
    try:
        yield
    finally:
        if not was_patched:
            unpatch_sklearn()


def sklearn_original(name: str, module: str = "sklearn.neighbors") -> Any:
    """scikit-learn's own object for a name of :data:`REPLACEMENTS`, patched or not (what
    knnkit's comparisons and benchmarks use).

    Examples
    --------
    >>> sklearn_original("NearestNeighbors").__module__
    'sklearn.neighbors._unsupervised'
    """
    originals, _ = _resolve()
    key = f"{module}:{name}"
    if key not in originals:
        known = sorted(k.split(":")[1] for k in originals)
        raise ValueError(f"name: expected one of {known} (module {module!r}), got {name!r}")
    return originals[key]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m knnkit.patch script.py [args]`` or ``python -m knnkit.patch -m module
    [args]``: runs the program as ``__main__`` with scikit-learn patched."""
    args = list(sys.argv[1:] if argv is None else argv)
    usage = (
        "usage: python -m knnkit.patch script.py [args ...]\n"
        "       python -m knnkit.patch -m module [args ...]\n"
        "Runs a Python program with scikit-learn's neighbour estimators replaced by knnkit's."
    )
    if not args or args[0] in ("-h", "--help"):
        print(usage, file=sys.stderr if not args else sys.stdout)
        return 2 if not args else 0
    patch_sklearn()
    if args[0] == "-m":
        if len(args) < 2:
            print(usage, file=sys.stderr)
            return 2
        sys.argv = args[1:]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = args
        sys.path.insert(0, _script_dir(args[0]))
        runpy.run_path(args[0], run_name="__main__")
    return 0


def _script_dir(path: str) -> str:
    import os

    return os.path.dirname(os.path.abspath(path))


__all__ = [
    "KNOWN_CONSUMERS",
    "REPLACEMENTS",
    "is_patched",
    "main",
    "patch_sklearn",
    "sklearn_original",
    "sklearn_patched",
    "unpatch_sklearn",
]


if __name__ == "__main__":
    raise SystemExit(main())
