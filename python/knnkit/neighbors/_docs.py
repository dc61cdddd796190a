"""Docstring fragments the estimators share, written once and filled in by :func:`shared_doc`."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T", bound=type)

#: The ``algo_params`` and ``device`` entries of the estimators' parameter lists.
EXTRA_PARAMS = """    algo_params : dict, default=None
        Parameters of 'hnsw' (``m``, ``ef_construction``, ``ef_search``, ``codes``, ``seed``)
        or 'ivf' (``nlist``, default about sqrt(n_samples); ``nprobe``, default
        max(8, nlist / 8); ``codes``, ``pq_m``, ``nbits``, ``refine``, ``seed``), with the
        meanings of the index classes. Unknown keys raise ``ValueError``; must be None (or
        empty) for the exact algorithms.

    device : None, str or torch.device, default=None
        Where the search runs. ``None``: knnkit's native CPU engines. ``"cuda"``, ``"mps"``,
        ``"cpu"`` or a ``torch.device``: exact brute force on that torch device (needs
        PyTorch; ``algorithm`` must be ``"auto"`` or ``"brute"``; metrics euclidean,
        sqeuclidean, cosine, manhattan, chebyshev and minkowski with p >= 1). An unavailable
        device raises ``ValueError`` naming it. Torch tensors are accepted as input by every
        engine (used in place on the device); results are tensors on the input's device when
        the input was a tensor, numpy otherwise.
"""

_PLACEHOLDER = "    {extra_params}\n"


def shared_doc(cls: T) -> T:
    """Fills the ``{extra_params}`` line of ``cls``'s docstring with :data:`EXTRA_PARAMS`."""
    if cls.__doc__ is not None:
        if _PLACEHOLDER not in cls.__doc__:
            raise ValueError(f"{cls.__name__}: no {{extra_params}} line in the docstring")
        cls.__doc__ = cls.__doc__.replace(_PLACEHOLDER, EXTRA_PARAMS)
    return cls
