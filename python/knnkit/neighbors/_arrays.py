"""Arithmetic on neighbour results in numpy: weights, votes, averages and self-exclusion, as the
estimators compute them for the native engines (:class:`NumpyArrays`, every native engine's
``arrays``; the torch engine has the same methods on its tensors, ``_device.TorchArrays``).

Agreement with scikit-learn, exactly:

- weights are scikit-learn's ``_get_weights``: ``1 / dist``, or, in a row with neighbours at
  distance 0, 1 for those and 0 for the others;
- votes are vectorised: every query's neighbour labels are offset by ``row * n_classes`` and
  counted with one ``np.bincount`` (weighted for ``"distance"`` and callables), in blocks of
  queries so the (queries x classes) table stays small; ``proba`` adds the weights in neighbour
  order (as scikit-learn's loop) and divides by the row sum: bit-identical for the same
  neighbours;
- ``vote`` with uniform weights takes the first class with the highest count (scikit-learn's
  mode: the smallest class index wins a tie). With weights, scikit-learn's ``weighted_mode``
  sums per class in its own order; where the winner is not clear by more than the possible
  rounding difference (near-ties, non-positive or non-finite totals) those rows are recomputed
  with ``weighted_mode``'s exact arithmetic, so ties resolve as in scikit-learn;
- ``average`` is scikit-learn's own expression (``np.mean`` of the neighbours' targets, or the
  weighted sum over the weight sum).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Cells of the (queries x classes) vote table built at once by :func:`_vote`.
_VOTE_CELLS = 1 << 21


def _get_weights(dist: np.ndarray | None, weights: Any) -> np.ndarray | None:
    """Neighbour weights from distances, as ``sklearn.neighbors._base._get_weights``.

    ``"distance"`` weights are ``1 / dist``; a query with a neighbour at distance 0 gives weight
    1 to its zero-distance neighbours and 0 to the others.

    Examples
    --------
    >>> _get_weights(np.array([[0.0, 2.0], [1.0, 4.0]]), "distance")
    array([[1.  , 0.  ],
           [1.  , 0.25]])
    """
    if weights in (None, "uniform"):
        return None
    if weights == "distance":
        with np.errstate(divide="ignore"):
            dist = 1.0 / dist
        inf_mask = np.isinf(dist)
        inf_row = np.any(inf_mask, axis=1)
        dist[inf_row] = inf_mask[inf_row]
        return dist
    if callable(weights):
        return weights(dist)
    return None


def _drop_self(
    lims: np.ndarray, dist: np.ndarray, ind: np.ndarray, offset: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Removes each query's own row from a CSR radius result over fitted rows ``offset:``."""
    n_queries = len(lims) - 1
    rows = np.repeat(np.arange(n_queries), np.diff(lims))
    keep = ind != rows + offset
    lims = np.zeros(n_queries + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows[keep], minlength=n_queries), out=lims[1:])
    return lims, dist[keep], ind[keep]


def _class_scores(labels: np.ndarray, weights: np.ndarray | None, n_classes: int) -> np.ndarray:
    """(m, n_classes) vote table: counts (int) or weight sums (float64, neighbour order)."""
    m = labels.shape[0]
    flat = (labels + (np.arange(m, dtype=np.intp) * n_classes)[:, None]).ravel()
    w = None if weights is None else np.ravel(weights)
    return np.bincount(flat, weights=w, minlength=m * n_classes).reshape(m, n_classes)


def _weighted_mode_rows(labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``sklearn.utils.extmath.weighted_mode(labels, weights, axis=1)``'s mode, same arithmetic."""
    old_most = np.zeros((labels.shape[0], 1))
    old_counts = np.zeros((labels.shape[0], 1))
    for score in np.unique(labels):
        template = np.zeros(labels.shape)
        ind = labels == score
        template[ind] = weights[ind]
        counts = np.expand_dims(np.sum(template, 1), 1)
        old_most = np.where(counts > old_counts, score, old_most)
        old_counts = np.maximum(counts, old_counts)
    return np.asarray(old_most.ravel(), dtype=np.intp)


def _vote(labels: np.ndarray, weights: np.ndarray | None, n_classes: int) -> np.ndarray:
    """Index of the winning class of each row of ``labels`` (n_queries, k)."""
    m, k = labels.shape
    out = np.empty(m, dtype=np.intp)
    step = max(1, _VOTE_CELLS // max(n_classes, 1))
    eps = np.finfo(np.float64).eps
    for start in range(0, m, step):
        stop = min(start + step, m)
        lab = labels[start:stop]
        if weights is None:
            out[start:stop] = _class_scores(lab, None, n_classes).argmax(axis=1)
            continue
        w = np.asarray(weights[start:stop], dtype=np.float64)
        scores = _class_scores(lab, w, n_classes)
        rows = np.arange(stop - start)
        best = scores.argmax(axis=1)
        top = scores[rows, best]
        if n_classes > 1:
            scores[rows, best] = -np.inf
            second = scores.max(axis=1)
        else:
            second = np.full(stop - start, -np.inf)
        # Bound on how far two summation orders of these weights can disagree.
        tol = 4.0 * k * eps * np.abs(w).sum(axis=1)
        clear = (top > tol) & (top - second > tol)
        unsure = ~clear
        if unsure.any():
            best[unsure] = _weighted_mode_rows(lab[unsure], w[unsure])
        out[start:stop] = best
    return out


class NumpyArrays:
    """The estimators' arithmetic on numpy neighbour results: the methods of
    :class:`~knnkit.neighbors._engine.ResultArrays`, computed as the module docstring says."""

    @staticmethod
    def arange(n: int) -> np.ndarray:
        return np.arange(n)

    drop_self = staticmethod(_drop_self)

    @staticmethod
    def targets(y: np.ndarray, classes: bool) -> np.ndarray:
        return y

    @staticmethod
    def weights(dist: np.ndarray | None, weights: Any) -> np.ndarray | None:
        w = _get_weights(dist, weights)
        return None if w is None else np.asarray(w)

    vote = staticmethod(_vote)

    @staticmethod
    def proba(labels: np.ndarray, weights: np.ndarray | None, n_classes: int) -> np.ndarray:
        proba = _class_scores(labels, weights, n_classes).astype(np.float64, copy=False)
        proba /= proba.sum(axis=1)[:, np.newaxis]
        return proba

    @staticmethod
    def take(classes: np.ndarray, modes: np.ndarray) -> np.ndarray:
        return classes.take(modes)

    @staticmethod
    def columns(cols: list[np.ndarray]) -> np.ndarray:
        # in the first output's dtype, as scikit-learn
        out = np.empty((cols[0].shape[0], len(cols)), dtype=cols[0].dtype)
        for k, col in enumerate(cols):
            out[:, k] = col
        return out

    @staticmethod
    def average(y: np.ndarray, ind: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        if weights is None:
            return np.mean(y[ind], axis=1)
        out = np.empty((ind.shape[0], y.shape[1]), dtype=np.float64)
        denom = np.sum(weights, axis=1)
        for j in range(y.shape[1]):
            out[:, j] = np.sum(y[ind, j] * weights, axis=1) / denom
        return out


#: The one instance the native engines share.
NUMPY = NumpyArrays()
