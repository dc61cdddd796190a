"""Choosing K by cross-validation with one neighbour search per fold.

``GridSearchCV(KNeighborsClassifier(), {"n_neighbors": ks})`` refits and searches every fold once
per K. :func:`select_k` searches each fold once for ``max(ks)`` neighbours and scores every K from
those lists (the first K columns of a sorted neighbour list are the K-nearest list), so its cost
is one search per fold whatever ``len(ks)``; the scores are the same as the grid search's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import clone, is_classifier
from sklearn.model_selection import check_cv


@dataclass
class KSelection:
    """Cross-validated scores for each K (rows) and fold (columns)."""

    ks: np.ndarray
    fold_scores: np.ndarray
    scoring: str
    weights: str
    mean_scores: np.ndarray = field(init=False)
    std_scores: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.mean_scores = self.fold_scores.mean(axis=1)
        self.std_scores = self.fold_scores.std(axis=1)

    @property
    def best_k(self) -> int:
        """The K with the highest mean score (the smallest such K on a tie)."""
        return int(self.ks[int(np.argmax(self.mean_scores))])

    @property
    def best_score(self) -> float:
        return float(self.mean_scores.max())

    def as_dict(self) -> dict[str, np.ndarray]:
        """Columns of the table (``pandas.DataFrame(result.as_dict())`` makes a frame)."""
        return {"k": self.ks, "mean_score": self.mean_scores, "std_score": self.std_scores}

    def __str__(self) -> str:
        lines = [f"{'k':>5}  {'mean ' + self.scoring:>16}  {'std':>7}"]
        for k, m, s in zip(self.ks, self.mean_scores, self.std_scores, strict=True):
            mark = "  <- best" if k == self.best_k else ""
            lines.append(f"{k:>5}  {m:>16.4f}  {s:>7.4f}{mark}")
        return "\n".join(lines)


def select_k(
    X: Any,
    y: Any,
    ks: Any = range(1, 32, 2),
    cv: Any = 5,
    weights: str = "uniform",
    estimator: Any = None,
    n_jobs: int | None = None,
) -> KSelection:
    """Cross-validated score of a k-NN classifier or regressor for every K in ``ks``.

    Parameters
    ----------
    X, y : array-like
        Training data and targets (class labels for classification, numbers for regression).
    ks : iterable of int, default=range(1, 32, 2)
        Values of K to score.
    cv : int, cross-validation generator or iterable, default=5
        As in scikit-learn (stratified K-fold for classifiers).
    weights : {"uniform", "distance"}, default="uniform"
        Voting weights, as ``KNeighborsClassifier(weights=...)``.
    estimator : KNeighborsClassifier or KNeighborsRegressor, optional
        Carries the metric and search settings (its ``n_neighbors`` and ``weights`` are ignored).
        Default: a regressor for float ``y``, a classifier for any other labels.
    n_jobs : int, optional
        Threads for the neighbour searches.

    Returns
    -------
    KSelection
        ``ks``, ``fold_scores`` (len(ks) × folds), ``mean_scores``, ``std_scores``, ``best_k``.
        Scores are accuracy for classifiers and R² for regressors, as ``estimator.score``.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from knnkit.model_selection import select_k
    >>> X, y = load_iris(return_X_y=True)
    >>> table = select_k(X, y, ks=[1, 5, 15], cv=5)
    >>> table.best_k
    5
    >>> print(table)
        k     mean accuracy      std
        1            0.9600   0.0249
        5            0.9733   0.0249  <- best
       15            0.9667   0.0298
    """
    from knnkit.neighbors import KNeighborsClassifier, KNeighborsRegressor

    if weights not in ("uniform", "distance"):
        raise ValueError(f"weights: expected 'uniform' or 'distance', got {weights!r}")
    ks = np.asarray(sorted(set(int(k) for k in ks)))
    if ks.size == 0 or ks[0] < 1:
        raise ValueError(f"ks: expected positive integers, got {ks.tolist()}")
    y = np.asarray(y)
    if estimator is None:
        # float targets mean regression; integers, strings and booleans are class labels
        classify = y.dtype.kind != "f"
        estimator = KNeighborsClassifier() if classify else KNeighborsRegressor()
    classify = is_classifier(estimator)
    X_arr = X if hasattr(X, "shape") else np.asarray(X)
    splitter = check_cv(cv, y, classifier=classify)
    folds = list(splitter.split(X_arr, y))
    kmax = int(ks[-1])
    scores = np.empty((ks.size, len(folds)))
    for f, (train, test) in enumerate(folds):
        if kmax > train.size:
            raise ValueError(
                f"ks: the largest K ({kmax}) exceeds the {train.size} training samples of a fold"
            )
        est = clone(estimator).set_params(n_neighbors=kmax, n_jobs=n_jobs)
        est.fit(_rows(X_arr, train), y[train])
        dist, ind = est.kneighbors(_rows(X_arr, test), n_neighbors=kmax)
        w = _weights(dist, weights)
        if classify:
            scores[:, f] = _vote_scores(y[train], y[test], ind, w, ks)
        else:
            scores[:, f] = _regression_scores(y[train], y[test], ind, w, ks)
    return KSelection(ks, scores, "accuracy" if classify else "r2", weights)


def _rows(X: Any, idx: np.ndarray) -> Any:
    return X.iloc[idx] if hasattr(X, "iloc") else X[idx]


def _weights(dist: np.ndarray, weights: str) -> np.ndarray:
    """Per-neighbour weights for every K at once. scikit-learn's rule for ``distance``: where a
    query has neighbours at distance 0, only those vote — they sort first, so the rule does not
    depend on K."""
    if weights == "uniform":
        return np.ones(dist.shape)
    zero = dist == 0
    with np.errstate(divide="ignore"):
        inv = 1.0 / dist
    return np.where(zero.any(axis=1, keepdims=True), zero.astype(float), inv)


def _vote_scores(y_train, y_test, ind, w, ks) -> np.ndarray:
    classes, enc = np.unique(y_train, return_inverse=True)
    truth = np.searchsorted(classes, y_test)
    known = np.isin(y_test, classes)
    n, kmax = ind.shape
    # votes[i, j, c]: weight of class c among the first j+1 neighbours of query i.
    onehot = np.zeros((n, kmax, classes.size))
    np.put_along_axis(onehot, enc[ind][:, :, None], w[:, :, None], axis=2)
    votes = np.cumsum(onehot, axis=1)
    pred = votes[:, ks - 1, :].argmax(axis=2)  # ties: lowest class, as scikit-learn
    return ((pred == truth[:, None]) & known[:, None]).mean(axis=0)


def _regression_scores(y_train, y_test, ind, w, ks) -> np.ndarray:
    y_train = y_train.astype(float)
    y_test = y_test.astype(float)
    yt = y_train[ind]  # (n, kmax) or (n, kmax, outputs)
    ww = w if yt.ndim == 2 else w[:, :, None]
    num = np.cumsum(yt * ww, axis=1)[:, ks - 1]
    den = np.cumsum(ww, axis=1)[:, ks - 1]
    pred = num / den  # (n, len(ks)[, outputs])
    truth = y_test[:, None] if y_test.ndim == 1 else y_test[:, None, :]
    ss_res = ((truth - pred) ** 2).sum(axis=0)
    ss_tot = ((y_test - y_test.mean(axis=0)) ** 2).sum(axis=0)
    r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1), 0.0)
    return r2 if r2.ndim == 1 else r2.mean(axis=1)


__all__ = ["KSelection", "select_k"]
