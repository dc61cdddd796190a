"""Plots for teaching and tuning k-NN: decision boundaries, choosing K, the curse of dimensionality.

matplotlib is optional: it is imported when a function is called (``pip install matplotlib``).
Every function draws on the ``ax`` it is given (or on a new figure's axes) and returns the
matplotlib ``Axes``, so plots compose and can be saved with ``ax.figure.savefig(...)``.

Examples
--------
>>> import matplotlib
>>> matplotlib.use("Agg")
>>> from knnkit import plot
>>> ax = plot.curse_of_dimensionality(dims=[1, 10, 100], n=200)
>>> ax.get_xlabel()
'dimension'
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import clone, is_classifier
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

__all__ = ["curse_of_dimensionality", "decision_boundary", "k_curve"]


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - exercised only without matplotlib
        raise ImportError(
            "knnkit.plot needs matplotlib, which is not installed: pip install matplotlib"
        ) from exc
    return plt


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    _, ax = _pyplot().subplots()
    return ax


def decision_boundary(
    estimator: Any,
    X: Any,
    y: Any,
    ax: Any = None,
    *,
    grid_resolution: int = 200,
    eps: float = 0.5,
    alpha: float = 0.4,
    cmap: Any = None,
    title: str | None = None,
) -> Any:
    """Draw what a fitted estimator predicts over the plane of 2-D data, with the data on top.

    Classifiers: each class's region in its own colour (with a legend); regressors: a filled
    contour of the prediction (with a colour bar).

    Parameters
    ----------
    estimator : estimator with ``predict``
        A classifier or regressor for 2 features. An unfitted one is fitted on ``(X, y)``
        (a clone: the one passed is not changed).
    X : array-like of shape (n_samples, 2)
        The data, drawn as points.
    y : array-like of shape (n_samples,)
        Class labels (colour of each point) or targets.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.
    grid_resolution : int, default=200
        Grid points per axis (``grid_resolution ** 2`` predictions, one exact batch search).
    eps : float, default=0.5
        Margin around the data's bounding box.
    alpha : float, default=0.4
        Opacity of the regions.
    cmap : str or Colormap, default=None
        Colours ('tab10' / 'tab20' for classes, 'viridis' for regression).
    title : str, default=None
        The title; default: the estimator's class name.

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from knnkit import plot
    >>> from knnkit.neighbors import KNeighborsClassifier
    >>> X = [[0, 0], [1, 0], [0, 1], [3, 3], [4, 3], [3, 4]]
    >>> ax = plot.decision_boundary(KNeighborsClassifier(3), X, [0, 0, 0, 1, 1, 1])
    >>> ax.get_title()
    'KNeighborsClassifier'
    """
    plt = _pyplot()
    X_arr = np.asarray(X, dtype=np.float64)
    y_arr = np.asarray(y)
    if X_arr.ndim != 2 or X_arr.shape[1] != 2:
        raise ValueError(
            f"decision_boundary draws 2-D data: X must have shape (n_samples, 2), got {X_arr.shape}"
        )
    if y_arr.shape != (X_arr.shape[0],):
        raise ValueError(
            f"y must have shape ({X_arr.shape[0]},) (one label per row of X), got {y_arr.shape}"
        )
    if int(grid_resolution) < 2:
        raise ValueError(f"grid_resolution must be an integer >= 2, got {grid_resolution!r}")
    try:
        check_is_fitted(estimator)
    except NotFittedError:
        estimator = clone(estimator).fit(X, y)

    n_grid = int(grid_resolution)
    x0 = np.linspace(X_arr[:, 0].min() - eps, X_arr[:, 0].max() + eps, n_grid)
    x1 = np.linspace(X_arr[:, 1].min() - eps, X_arr[:, 1].max() + eps, n_grid)
    xx, yy = np.meshgrid(x0, x1)
    grid = np.column_stack([xx.ravel(), yy.ravel()])
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:  # fitted on a frame: predict on one, without a feature-name warning
        import pandas as pd

        grid = pd.DataFrame(grid, columns=names)
    Z = np.asarray(estimator.predict(grid))

    ax = _axes(ax)
    if is_classifier(estimator):
        classes = np.unique(np.concatenate([y_arr.ravel(), Z.ravel()]))
        n_classes = classes.size
        cmap = plt.get_cmap(cmap or ("tab10" if n_classes <= 10 else "tab20"))
        colours = [cmap(i % cmap.N) for i in range(n_classes)]
        from matplotlib.colors import BoundaryNorm, ListedColormap

        region_cmap = ListedColormap(colours)
        norm = BoundaryNorm(np.arange(n_classes + 1) - 0.5, n_classes)
        codes = np.searchsorted(classes, Z).reshape(xx.shape)
        ax.contourf(
            xx,
            yy,
            codes,
            levels=np.arange(n_classes + 1) - 0.5,
            cmap=region_cmap,
            norm=norm,
            alpha=alpha,
        )
        for i, label in enumerate(classes):
            mine = y_arr == label
            if mine.any():
                ax.scatter(
                    X_arr[mine, 0],
                    X_arr[mine, 1],
                    color=colours[i],
                    edgecolor="k",
                    s=25,
                    label=str(label),
                )
        ax.legend(title="class", loc="best", fontsize="small")
    else:
        cmap = cmap or "viridis"
        values = Z.astype(np.float64).reshape(xx.shape)
        contour = ax.contourf(xx, yy, values, levels=20, cmap=cmap, alpha=alpha)
        ax.scatter(
            X_arr[:, 0],
            X_arr[:, 1],
            c=y_arr.astype(np.float64),
            cmap=cmap,
            norm=contour.norm,
            edgecolor="k",
            s=25,
        )
        ax.figure.colorbar(contour, ax=ax, label="prediction")
    ax.set_xlim(x0[0], x0[-1])
    ax.set_ylim(x1[0], x1[-1])
    ax.set_xlabel("feature 0")
    ax.set_ylabel("feature 1")
    ax.set_title(type(estimator).__name__ if title is None else title)
    return ax


def k_curve(selection: Any, ax: Any = None, *, title: str | None = None) -> Any:
    """Plot the cross-validated score against K, from :func:`knnkit.model_selection.select_k`.

    The mean score of each K is drawn with a band of one standard deviation across folds, the
    best K is marked, and the two ends are labelled with the bias/variance trade-off: a small
    K follows single training points (high variance: it overfits), a large K averages over
    wide neighbourhoods (high bias: it underfits).

    Parameters
    ----------
    selection : KSelection
        The result of ``select_k`` (``ks``, ``mean_scores``, ``std_scores``, ``best_k``,
        ``scoring``).
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.
    title : str, default=None
        The title; default: "Choosing K (best K = ...)".

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_iris
    >>> from knnkit import plot
    >>> from knnkit.model_selection import select_k
    >>> X, y = load_iris(return_X_y=True)
    >>> ax = plot.k_curve(select_k(X, y, ks=[1, 5, 15, 45]))
    >>> ax.get_title()
    'Choosing K (best K = 5)'
    """
    ks = np.asarray(getattr(selection, "ks", None))
    mean = np.asarray(getattr(selection, "mean_scores", None))
    if ks.ndim != 1 or mean.shape != ks.shape or ks.size == 0:
        raise TypeError(
            "k_curve expects the result of knnkit.model_selection.select_k (a KSelection with "
            f"ks and mean_scores), got {type(selection).__name__}"
        )
    std = np.asarray(selection.std_scores)
    best_k = int(selection.best_k)
    scoring = str(getattr(selection, "scoring", "score"))

    ax = _axes(ax)
    ax.plot(ks, mean, marker="o", label=f"mean {scoring}")
    ax.fill_between(ks, mean - std, mean + std, alpha=0.2, label="± 1 std (folds)")
    best = int(np.flatnonzero(ks == best_k)[0])
    ax.axvline(best_k, color="grey", linestyle="--", linewidth=1)
    ax.scatter([best_k], [mean[best]], color="red", zorder=3, label=f"best K = {best_k}")
    text = {"fontsize": "small", "va": "bottom", "transform": ax.transAxes}
    ax.text(0.01, 0.01, "small K:\nhigh variance\n(overfits)", ha="left", **text)
    ax.text(0.99, 0.01, "large K:\nhigh bias\n(underfits)", ha="right", **text)
    ax.set_xlabel("K (number of neighbours)")
    ax.set_ylabel(f"cross-validated {scoring}")
    ax.set_title(f"Choosing K (best K = {best_k})" if title is None else title)
    ax.legend(loc="best", fontsize="small")
    return ax


def curse_of_dimensionality(
    dims: Any = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
    n: int = 1000,
    seed: int = 0,
    ax: Any = None,
    *,
    n_queries: int = 100,
) -> Any:
    """Plot how the nearest and the farthest neighbour become alike as the dimension grows.

    For each dimension ``d``, ``n`` points and ``n_queries`` queries are drawn uniformly from
    the unit cube; the exact engine finds each query's nearest and farthest point, and the mean
    ratio ``nearest / farthest`` is plotted against ``d``. In low dimension the ratio is near 0
    (the nearest point is much nearer); it climbs towards 1 as distances concentrate, which is
    why plain k-NN loses its meaning in high dimension without structure in the data.

    Parameters
    ----------
    dims : sequence of int, default=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
        Dimensions to try (positive).
    n : int, default=1000
        Points per dimension (at least 2).
    seed : int, default=0
        Seed of the random points.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.
    n_queries : int, default=100
        Query points per dimension.

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from knnkit import plot
    >>> ax = plot.curse_of_dimensionality(dims=[2, 200], n=300)
    >>> ratios = ax.lines[0].get_ydata()
    >>> bool(ratios[0] < 0.1 < 0.5 < ratios[1] < 1.0)
    True
    """
    from knnkit.neighbors import NearestNeighbors

    dims = np.asarray(list(dims))
    if dims.ndim != 1 or dims.size == 0 or dims.dtype.kind not in "iu" or (dims < 1).any():
        raise ValueError(f"dims must be a non-empty sequence of positive integers, got {dims!r}")
    if int(n) < 2:
        raise ValueError(f"n must be at least 2 (a nearest and a farthest point), got {n!r}")
    if int(n_queries) < 1:
        raise ValueError(f"n_queries must be a positive integer, got {n_queries!r}")
    n, n_queries = int(n), int(n_queries)

    rng = np.random.default_rng(seed)
    ratios = np.empty(dims.size)
    for i, d in enumerate(dims):
        points = rng.random((n, int(d)))
        queries = rng.random((n_queries, int(d)))
        dist, _ = NearestNeighbors(n_neighbors=n).fit(points).kneighbors(queries)
        ratios[i] = float(np.mean(dist[:, 0] / dist[:, -1]))

    ax = _axes(ax)
    ax.plot(dims, ratios, marker="o", label="nearest / farthest distance")
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="all points equally far")
    ax.set_xscale("log")
    ax.set_ylim(0.0, 1.05)
    ax.set_xlabel("dimension")
    ax.set_ylabel("mean nearest / farthest distance")
    ax.set_title(f"Curse of dimensionality ({n} uniform points)")
    ax.legend(loc="lower right", fontsize="small")
    return ax
