"""``KNeighborsRegressor``: scikit-learn's k-NN regression on knnkit's exact engine.

The averaging is scikit-learn's own expression (``np.mean`` of the neighbours' targets, or the
weighted sum over the weight sum), so results are bit-identical for the same neighbours.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import RegressorMixin, _fit_context
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_is_fitted

from knnkit.neighbors._base import KNeighborsMixin, NeighborsBase, _get_weights


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

    algorithm : {'auto', 'ball_tree', 'kd_tree', 'brute'}, default='auto'
        Accepted and validated as in scikit-learn; every value runs knnkit's exact engine, so
        ``_fit_method`` is ``'brute'``.

    leaf_size : int, default=30
        Accepted for compatibility; not used by the exact engine.

    p : float, default=2
        Power parameter for the Minkowski metric (p=1: manhattan, p=2: euclidean).

    metric : str, callable or DistanceMetric, default='minkowski'
        Any metric name scikit-learn's neighbours accept; see
        :class:`~knnkit.neighbors.KNeighborsClassifier` for which run natively.

    metric_params : dict, default=None
        Additional keyword arguments for the metric function.

    n_jobs : int, default=None
        Threads for the neighbour search. ``None`` and ``-1`` use every core.

    algo_params : dict, default=None
        Parameters of an approximate algorithm; must be None (or empty) for the exact one.

    device : None or 'cpu', default=None
        Where the search runs. Only the CPU engine exists yet; other values raise
        ``ValueError``.

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
        if self.weights == "uniform":
            neigh_ind = self.kneighbors(X, return_distance=False)
            neigh_dist = None
        else:
            neigh_dist, neigh_ind = self.kneighbors(X)

        weights = _get_weights(neigh_dist, self.weights)

        _y = self._y
        if _y.ndim == 1:
            _y = _y.reshape((-1, 1))

        if weights is None:
            y_pred = np.mean(_y[neigh_ind], axis=1)
        else:
            y_pred = np.empty((neigh_dist.shape[0], _y.shape[1]), dtype=np.float64)
            denom = np.sum(weights, axis=1)
            for j in range(_y.shape[1]):
                num = np.sum(_y[neigh_ind, j] * weights, axis=1)
                y_pred[:, j] = num / denom

        if self._y.ndim == 1:
            y_pred = y_pred.ravel()
        return y_pred
