"""``KNeighborsRegressor`` and ``RadiusNeighborsRegressor`` on knnkit's engines.

k-NN: the averaging (the engine's ``arrays.average``: numpy, or tensors on a torch device) is
scikit-learn's own expression (``np.mean`` of the neighbours' targets, or
the weighted sum over the weight sum), so results are bit-identical for the same neighbours.
Radius: the sums come from the flat (CSR) radius result with ``np.bincount`` (float64, in
neighbour order), so they agree with scikit-learn's per-row ``np.mean`` / ``np.average`` to
rounding.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import RegressorMixin, _fit_context
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_is_fitted

from knnkit.neighbors._base import (
    KNeighborsMixin,
    NeighborsBase,
    RadiusNeighborsMixin,
    _get_csr_weights,
)
from knnkit.neighbors._docs import shared_doc


@shared_doc
class KNeighborsRegressor(KNeighborsMixin, RegressorMixin, NeighborsBase):
    """Regression based on k-nearest neighbors, on knnkit's exact engine.

    The target is predicted by local interpolation of the targets associated with the nearest
    neighbours in the training set. Same parameters, attributes and results as
    ``sklearn.neighbors.KNeighborsRegressor``.

    Parameters
    ----------
    n_neighbors : int, default=5
        Number of neighbors to use by default for :meth:`kneighbors` queries.

    weights : {'uniform', 'distance'}, callable or None, default='uniform'
        Weight function used in prediction. 'uniform': all neighbours count the same;
        'distance': weight by the inverse of the distance (a query with neighbours at distance 0
        gives weight 1 to those and 0 to the others); a callable receives the distance array
        and returns weights of the same shape.

    algorithm : {'auto', 'ball_tree', 'kd_tree', 'brute', 'hnsw', 'ivf'}, default='auto'
        'auto', 'ball_tree', 'kd_tree' and 'brute' behave as in scikit-learn (``_fit_method``
        is scikit-learn's choice): 'kd_tree' and 'ball_tree' run knnkit's ``KDTree`` /
        ``BallTree`` (``_tree``), 'brute' its exact engine. 'hnsw' (a graph,
        ``knnkit.HNSWIndex``) and 'ivf' (k-means cells, ``knnkit.IVFIndex``) are approximate:
        faster on large data, but some true neighbours may be missed, in radius queries too
        (knnkit's tests measure their recall against the exact engine). They serve euclidean
        (also minkowski with p=2, seuclidean, mahalanobis), sqeuclidean and cosine.

    leaf_size : int, default=30
        Leaf size of the KD-tree or ball tree (speed and memory only, never the results).

    p : float, default=2
        Power parameter for the Minkowski metric (p=1: manhattan, p=2: euclidean).

    metric : str, callable or DistanceMetric, default='minkowski'
        Any metric name scikit-learn's neighbours accept; see
        :class:`~knnkit.neighbors.KNeighborsClassifier` for which run natively.

    metric_params : dict, default=None
        Additional keyword arguments for the metric function.

    n_jobs : int, default=None
        Threads for the neighbour search. ``None`` and ``-1`` use every core.

    {extra_params}
        ``KNeighborsRegressor`` averages on the device.

    Attributes
    ----------
    effective_metric_ : str or callable
        The distance metric used.

    effective_metric_params_ : dict
        Additional keyword arguments for the metric function.

    n_features_in_ : int
        Number of features seen during :term:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit` (only when X has string column names).

    n_samples_fit_ : int
        Number of samples in the fitted data.

    Notes
    -----
    Distances keep the fitted dtype (float32 data: float32 distances). Sparse input is
    densified. Neighbours at equal distance are ordered by index.

    Examples
    --------
    >>> from knnkit.neighbors import KNeighborsRegressor
    >>> X = [[0], [1], [2], [3]]
    >>> y = [0, 0, 1, 1]
    >>> neigh = KNeighborsRegressor(n_neighbors=2).fit(X, y)
    >>> print(neigh.predict([[1.5]]))
    [0.5]
    """

    _parameter_constraints: dict = {
        **NeighborsBase._parameter_constraints,
        "weights": [StrOptions({"uniform", "distance"}), callable, None],
    }
    _parameter_constraints.pop("radius")

    def __init__(
        self,
        n_neighbors=5,
        *,
        weights="uniform",
        algorithm="auto",
        leaf_size=30,
        p=2,
        metric="minkowski",
        metric_params=None,
        n_jobs=None,
        algo_params=None,
        device=None,
    ):
        super().__init__(
            n_neighbors=n_neighbors,
            algorithm=algorithm,
            leaf_size=leaf_size,
            metric=metric,
            p=p,
            metric_params=metric_params,
            n_jobs=n_jobs,
            algo_params=algo_params,
            device=device,
        )
        self.weights = weights

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.pairwise = self._is_precomputed()
        return tags

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Fit the k-nearest neighbors regressor from the training dataset.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features) or \
                (n_samples, n_samples) if metric='precomputed'
            Training data.

        y : {array-like, sparse matrix} of shape (n_samples,) or (n_samples, n_outputs)
            Target values.

        Returns
        -------
        self : KNeighborsRegressor
            The fitted k-nearest neighbors regressor.
        """
        return self._fit(X, y)

    def predict(self, X):
        """Predict the target for the provided data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_queries, n_features), \
                or (n_queries, n_indexed) if metric == 'precomputed', or None
            Test samples. If `None`, predictions for all indexed points are
            returned; in this case, points are not considered their own
            neighbors.

        Returns
        -------
        y : ndarray of shape (n_queries,) or (n_queries, n_outputs)
            Target values.
        """
        check_is_fitted(self, "_fit_method")
        out = self._output(X)
        if self.weights == "uniform":
            neigh_ind = self._kneighbors(X, None, return_distance=False)
            neigh_dist = None
        else:
            neigh_dist, neigh_ind = self._kneighbors(X, None)
        arrays = self._index.arrays
        weights = arrays.weights(neigh_dist, self.weights)
        y = self._y_t if self._y_t.ndim == 2 else self._y_t[:, None]
        y_pred = arrays.average(y, neigh_ind, weights)
        return out(y_pred.ravel() if self._y_t.ndim == 1 else y_pred)


@shared_doc
class RadiusNeighborsRegressor(RadiusNeighborsMixin, RegressorMixin, NeighborsBase):
    """Regression based on neighbors within a fixed radius, on knnkit's exact engine.

    The target is predicted by local interpolation of the targets associated with the
    neighbours within ``radius`` in the training set. Same parameters, attributes and results
    as ``sklearn.neighbors.RadiusNeighborsRegressor``; the averages are taken from the engine's
    flat (CSR) radius result with ``np.bincount``, block by block of queries (memory bounded by
    ``working_memory`` whatever the radius).

    Parameters
    ----------
    radius : float, default=1.0
        Range of parameter space to use by default for :meth:`radius_neighbors` queries.

    weights : {'uniform', 'distance'}, callable or None, default='uniform'
        Weight function used in prediction. 'uniform': all neighbours count the same;
        'distance': weight by the inverse of the distance (a query with neighbours at distance 0
        gives weight 1 to those and 0 to the others); a callable receives an object array with
        one distance array per query and returns the weights in the same form.

    algorithm : {'auto', 'ball_tree', 'kd_tree', 'brute', 'hnsw', 'ivf'}, default='auto'
        'auto', 'ball_tree', 'kd_tree' and 'brute' behave as in scikit-learn (``_fit_method``
        is scikit-learn's choice): 'kd_tree' and 'ball_tree' run knnkit's ``KDTree`` /
        ``BallTree`` (``_tree``), 'brute' its exact engine. 'hnsw' (a graph,
        ``knnkit.HNSWIndex``) and 'ivf' (k-means cells, ``knnkit.IVFIndex``) are approximate:
        faster on large data, but some true neighbours may be missed, in radius queries too
        (knnkit's tests measure their recall against the exact engine). They serve euclidean
        (also minkowski with p=2, seuclidean, mahalanobis), sqeuclidean and cosine.

    leaf_size : int, default=30
        Leaf size of the KD-tree or ball tree (speed and memory only, never the results).

    p : float, default=2
        Power parameter for the Minkowski metric (p=1: manhattan, p=2: euclidean).

    metric : str, callable or DistanceMetric, default='minkowski'
        Any metric name scikit-learn's neighbours accept; see
        :class:`~knnkit.neighbors.KNeighborsClassifier` for which run natively.

    metric_params : dict, default=None
        Additional keyword arguments for the metric function.

    n_jobs : int, default=None
        Threads for the neighbour search. ``None`` and ``-1`` use every core.

    {extra_params}

    Attributes
    ----------
    effective_metric_ : str or callable
        The distance metric used.

    effective_metric_params_ : dict
        Additional keyword arguments for the metric function.

    n_features_in_ : int
        Number of features seen during :term:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit` (only when X has string column names).

    n_samples_fit_ : int
        Number of samples in the fitted data.

    Notes
    -----
    A query without neighbours is predicted as NaN, with a warning, as in scikit-learn. For
    integer targets scikit-learn fills such rows with an integer cast of NaN (a large negative
    number, after a ``RuntimeWarning``); knnkit predicts NaN for every target dtype.

    Examples
    --------
    >>> from knnkit.neighbors import RadiusNeighborsRegressor
    >>> X = [[0], [1], [2], [3]]
    >>> y = [0, 0, 1, 1]
    >>> neigh = RadiusNeighborsRegressor(radius=1.0).fit(X, y)
    >>> print(neigh.predict([[1.5]]))
    [0.5]
    """

    _parameter_constraints: dict = {
        **NeighborsBase._parameter_constraints,
        "weights": [StrOptions({"uniform", "distance"}), callable, None],
    }
    _parameter_constraints.pop("n_neighbors")

    def __init__(
        self,
        radius=1.0,
        *,
        weights="uniform",
        algorithm="auto",
        leaf_size=30,
        p=2,
        metric="minkowski",
        metric_params=None,
        n_jobs=None,
        algo_params=None,
        device=None,
    ):
        super().__init__(
            radius=radius,
            algorithm=algorithm,
            leaf_size=leaf_size,
            p=p,
            metric=metric,
            metric_params=metric_params,
            n_jobs=n_jobs,
            algo_params=algo_params,
            device=device,
        )
        self.weights = weights

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Fit the radius neighbors regressor from the training dataset.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features) or \
                (n_samples, n_samples) if metric='precomputed'
            Training data.

        y : {array-like, sparse matrix} of shape (n_samples,) or (n_samples, n_outputs)
            Target values.

        Returns
        -------
        self : RadiusNeighborsRegressor
            The fitted radius neighbors regressor.
        """
        return self._fit(X, y)

    def predict(self, X):
        """Predict the target for the provided data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_queries, n_features), \
                or (n_queries, n_indexed) if metric == 'precomputed', or None
            Test samples. If `None`, predictions for all indexed points are
            returned; in this case, points are not considered their own
            neighbors.

        Returns
        -------
        y : ndarray of shape (n_queries,) or (n_queries, n_outputs), dtype=double
            Target values (NaN for a query with no neighbour within the radius).
        """
        check_is_fitted(self, "_fit_method")
        out = self._output(X)
        _y = self._y
        if _y.ndim == 1:
            _y = _y.reshape((-1, 1))
        uniform = self.weights in (None, "uniform")
        # np.mean keeps float32 targets in float32; everything else averages in float64
        dtype = _y.dtype if uniform and _y.dtype == np.float32 else np.float64

        n_queries, blocks = self._radius_blocks(X, None)
        y_pred = np.empty((n_queries, _y.shape[1]), dtype=dtype)
        for start, stop, lims, dist, ind in blocks:
            counts = np.diff(lims)
            m = stop - start
            rows = np.repeat(np.arange(m, dtype=np.intp), counts)
            weights = _get_csr_weights(dist, lims, self.weights)
            if weights is None:
                denom = counts.astype(np.float64)
            else:
                weights = np.asarray(weights, dtype=np.float64)
                denom = np.bincount(rows, weights=weights, minlength=m)
                if np.any((denom == 0) & (counts > 0)):
                    raise ZeroDivisionError("Weights sum to zero, can't be normalized")
            empty = counts == 0
            denom[empty] = 1.0
            for j in range(_y.shape[1]):
                values = np.asarray(_y[ind, j], dtype=np.float64)
                if weights is not None:
                    values = values * weights
                y_pred[start:stop, j] = np.bincount(rows, weights=values, minlength=m) / denom
            y_pred[start:stop][empty] = np.nan

        if np.any(np.isnan(y_pred)):
            warnings.warn(
                "One or more samples have no neighbors within specified radius; predicting NaN.",
                stacklevel=2,
            )

        if self._y.ndim == 1:
            y_pred = y_pred.ravel()
        return out(y_pred)
