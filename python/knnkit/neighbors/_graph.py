"""Neighbour graphs: ``kneighbors_graph``, ``radius_neighbors_graph`` and their transformers.

Everything here is a thin layer over the fitted estimators' ``kneighbors_graph`` /
``radius_neighbors_graph`` (:mod:`._base`), which build the CSR arrays straight from the engine's
flat results: no Python object per row, memory O(number of edges).
"""

from __future__ import annotations

import itertools
from numbers import Integral, Real

from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin, _fit_context
from sklearn.metrics import DistanceMetric
from sklearn.neighbors import VALID_METRICS
from sklearn.neighbors._base import KNeighborsMixin as _SkKNeighborsMixin
from sklearn.neighbors._base import RadiusNeighborsMixin as _SkRadiusNeighborsMixin
from sklearn.utils._param_validation import Interval, StrOptions, validate_params
from sklearn.utils.validation import check_is_fitted

from knnkit.neighbors._base import KNeighborsMixin, NeighborsBase, RadiusNeighborsMixin
from knnkit.neighbors._docs import shared_doc
from knnkit.neighbors._unsupervised import NearestNeighbors

_METRIC_CONSTRAINT = [
    StrOptions(set(itertools.chain(*VALID_METRICS.values()))),
    callable,
    DistanceMetric,
]


def _check_params(X, metric, p, metric_params):
    """A fitted estimator passed as X must have been fitted with these metric parameters."""
    est_params = X.get_params()
    for param_name, func_param in zip(
        ["metric", "p", "metric_params"], [metric, p, metric_params], strict=True
    ):
        if func_param != est_params[param_name]:
            raise ValueError(
                f"Got {func_param} for {param_name}, while the estimator has "
                f"{est_params[param_name]} for the same parameter."
            )


def _query_include_self(X, include_self, mode):
    """The query: the fitted rows themselves (self included), or None (self left out)."""
    if include_self == "auto":
        include_self = mode == "connectivity"
    return X if include_self else None


@validate_params(
    {
        "X": ["array-like", "sparse matrix", KNeighborsMixin, _SkKNeighborsMixin],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "mode": [StrOptions({"connectivity", "distance"})],
        "metric": _METRIC_CONSTRAINT,
        "p": [Interval(Real, 0, None, closed="right"), None],
        "metric_params": [dict, None],
        "include_self": ["boolean", StrOptions({"auto"})],
        "n_jobs": [Integral, None],
    },
    prefer_skip_nested_validation=False,  # metric is not validated yet
)
def kneighbors_graph(
    X,
    n_neighbors,
    *,
    mode="connectivity",
    metric="minkowski",
    p=2,
    metric_params=None,
    include_self=False,
    n_jobs=None,
):
    """Compute the (weighted) graph of k-Neighbors for points in X.

    Same parameters and result as ``sklearn.neighbors.kneighbors_graph``, searched by
    :class:`~knnkit.neighbors.NearestNeighbors` (knnkit's exact engine).

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_samples, n_features) or a fitted \
            NearestNeighbors-like estimator
        Sample data (sparse input is densified), or an already fitted estimator.

    n_neighbors : int
        Number of neighbors for each sample.

    mode : {'connectivity', 'distance'}, default='connectivity'
        'connectivity' gives a matrix of ones; 'distance' the distances between neighbours.

    metric : str, callable or DistanceMetric, default='minkowski'
        The distance metric (see :class:`~knnkit.neighbors.NearestNeighbors`).

    p : float, default=2
        Power parameter for the Minkowski metric.

    metric_params : dict, default=None
        Additional keyword arguments for the metric function.

    include_self : bool or 'auto', default=False
        Whether or not to mark each sample as the first nearest neighbor to itself. If
        'auto', then True is used for mode='connectivity' and False for mode='distance'.

    n_jobs : int, default=None
        Threads for the neighbour search (``None`` and ``-1``: every core).

    Returns
    -------
    A : sparse matrix of shape (n_samples, n_samples)
        Graph where ``A[i, j]`` is the weight of the edge from i to j, in CSR format.

    Examples
    --------
    >>> from knnkit.neighbors import kneighbors_graph
    >>> A = kneighbors_graph([[0], [3], [1]], 2, mode='connectivity', include_self=True)
    >>> A.toarray()
    array([[1., 0., 1.],
           [0., 1., 1.],
           [1., 0., 1.]])
    """
    if not isinstance(X, (KNeighborsMixin, _SkKNeighborsMixin)):
        X = NearestNeighbors(
            n_neighbors=n_neighbors,
            metric=metric,
            p=p,
            metric_params=metric_params,
            n_jobs=n_jobs,
        ).fit(X)
    else:
        _check_params(X, metric, p, metric_params)
    query = _query_include_self(X._fit_X, include_self, mode)
    return X.kneighbors_graph(X=query, n_neighbors=n_neighbors, mode=mode)


@validate_params(
    {
        "X": ["array-like", "sparse matrix", RadiusNeighborsMixin, _SkRadiusNeighborsMixin],
        "radius": [Interval(Real, 0, None, closed="both")],
        "mode": [StrOptions({"connectivity", "distance"})],
        "metric": _METRIC_CONSTRAINT,
        "p": [Interval(Real, 0, None, closed="right"), None],
        "metric_params": [dict, None],
        "include_self": ["boolean", StrOptions({"auto"})],
        "n_jobs": [Integral, None],
    },
    prefer_skip_nested_validation=False,  # metric is not validated yet
)
def radius_neighbors_graph(
    X,
    radius,
    *,
    mode="connectivity",
    metric="minkowski",
    p=2,
    metric_params=None,
    include_self=False,
    n_jobs=None,
):
    """Compute the (weighted) graph of Neighbors for points in X.

    Neighborhoods are restricted the points at a distance lower than (or equal to) radius.
    Same parameters and result as ``sklearn.neighbors.radius_neighbors_graph``; the CSR
    arrays come straight from the engine's flat radius result.

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_samples, n_features) or a fitted \
            NearestNeighbors-like estimator
        Sample data (sparse input is densified), or an already fitted estimator.

    radius : float
        Radius of neighborhoods.

    mode : {'connectivity', 'distance'}, default='connectivity'
        'connectivity' gives a matrix of ones; 'distance' the distances between neighbours.

    metric : str, callable or DistanceMetric, default='minkowski'
        The distance metric (see :class:`~knnkit.neighbors.NearestNeighbors`).

    p : float, default=2
        Power parameter for the Minkowski metric.

    metric_params : dict, default=None
        Additional keyword arguments for the metric function.

    include_self : bool or 'auto', default=False
        Whether or not to mark each sample as the first nearest neighbor to itself. If
        'auto', then True is used for mode='connectivity' and False for mode='distance'.

    n_jobs : int, default=None
        Threads for the neighbour search (``None`` and ``-1``: every core).

    Returns
    -------
    A : sparse matrix of shape (n_samples, n_samples)
        Graph where ``A[i, j]`` is the weight of the edge from i to j, in CSR format.

    Examples
    --------
    >>> from knnkit.neighbors import radius_neighbors_graph
    >>> A = radius_neighbors_graph([[0], [3], [1]], 1.5, mode='connectivity', include_self=True)
    >>> A.toarray()
    array([[1., 0., 1.],
           [0., 1., 0.],
           [1., 0., 1.]])
    """
    if not isinstance(X, (RadiusNeighborsMixin, _SkRadiusNeighborsMixin)):
        X = NearestNeighbors(
            radius=radius,
            metric=metric,
            p=p,
            metric_params=metric_params,
            n_jobs=n_jobs,
        ).fit(X)
    else:
        _check_params(X, metric, p, metric_params)
    query = _query_include_self(X._fit_X, include_self, mode)
    return X.radius_neighbors_graph(query, radius, mode)


@shared_doc
class KNeighborsTransformer(
    ClassNamePrefixFeaturesOutMixin, KNeighborsMixin, TransformerMixin, NeighborsBase
):
    """Transform X into a (weighted) graph of k nearest neighbors, on knnkit's exact engine.

    The transformed data is a sparse graph as returned by ``kneighbors_graph``. Same
    parameters, attributes and results as ``sklearn.neighbors.KNeighborsTransformer``; use it
    to precompute neighbours once for estimators that take ``metric='precomputed'`` sparse
    graphs (``TSNE``, ``Isomap``, ``DBSCAN``, ...); with ``algorithm='hnsw'`` (or ``'ivf'``)
    that step is approximate, e.g.
    ``make_pipeline(KNeighborsTransformer(algorithm='hnsw'), TSNE(metric='precomputed'))``.

    Parameters
    ----------
    mode : {'distance', 'connectivity'}, default='distance'
        'connectivity' gives a matrix of ones; 'distance' the distances between neighbours.

    n_neighbors : int, default=5
        Number of neighbors for each sample in the transformed sparse graph. As each sample
        is its own neighbour, one extra neighbour is computed when mode == 'distance': the
        graph then holds (n_neighbors + 1) neighbours per row.

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

    metric : str, callable or DistanceMetric, default='minkowski'
        The distance metric (see :class:`~knnkit.neighbors.NearestNeighbors`).

    p : float, default=2
        Power parameter for the Minkowski metric.

    metric_params : dict, default=None
        Additional keyword arguments for the metric function.

    n_jobs : int, default=None
        Threads for the neighbour search (``None`` and ``-1``: every core).

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

    Examples
    --------
    >>> import numpy as np
    >>> from knnkit.neighbors import KNeighborsTransformer
    >>> X = np.array([[0.0], [1.0], [3.0]])
    >>> KNeighborsTransformer(n_neighbors=1).fit_transform(X).toarray()
    array([[0., 1., 0.],
           [1., 0., 0.],
           [0., 2., 0.]])
    """

    _parameter_constraints: dict = {
        **NeighborsBase._parameter_constraints,
        "mode": [StrOptions({"distance", "connectivity"})],
    }
    _parameter_constraints.pop("radius")

    def __init__(
        self,
        *,
        mode="distance",
        n_neighbors=5,
        algorithm="auto",
        leaf_size=30,
        metric="minkowski",
        p=2,
        metric_params=None,
        n_jobs=None,
        algo_params=None,
        device=None,
    ):
        super().__init__(
            n_neighbors=n_neighbors,
            radius=None,
            algorithm=algorithm,
            leaf_size=leaf_size,
            metric=metric,
            p=p,
            metric_params=metric_params,
            n_jobs=n_jobs,
            algo_params=algo_params,
            device=device,
        )
        self.mode = mode

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Fit the k-nearest neighbors transformer from the training dataset.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features) or \
                (n_samples, n_samples) if metric='precomputed'
            Training data.

        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        self : KNeighborsTransformer
            The fitted k-nearest neighbors transformer.
        """
        self._fit(X)
        self._n_features_out = self.n_samples_fit_
        return self

    def transform(self, X):
        """Compute the (weighted) graph of Neighbors for points in X.

        Parameters
        ----------
        X : array-like of shape (n_samples_transform, n_features)
            Sample data.

        Returns
        -------
        Xt : sparse matrix of shape (n_samples_transform, n_samples_fit)
            ``Xt[i, j]`` is the weight of the edge from i to j; only the neighbours are stored
            (the diagonal explicitly), in CSR format.
        """
        check_is_fitted(self)
        add_one = self.mode == "distance"
        return self.kneighbors_graph(X, mode=self.mode, n_neighbors=self.n_neighbors + add_one)

    def fit_transform(self, X, y=None):
        """Fit to data, then transform it.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training set.

        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        Xt : sparse matrix of shape (n_samples, n_samples)
            ``Xt[i, j]`` is the weight of the edge from i to j, in CSR format.
        """
        return self.fit(X).transform(X)


@shared_doc
class RadiusNeighborsTransformer(
    ClassNamePrefixFeaturesOutMixin, RadiusNeighborsMixin, TransformerMixin, NeighborsBase
):
    """Transform X into a (weighted) graph of neighbors nearer than a radius.

    The transformed data is a sparse graph as returned by ``radius_neighbors_graph`` (rows
    sorted by distance). Same parameters, attributes and results as
    ``sklearn.neighbors.RadiusNeighborsTransformer``, on knnkit's exact engine.

    Parameters
    ----------
    mode : {'distance', 'connectivity'}, default='distance'
        'connectivity' gives a matrix of ones; 'distance' the distances between neighbours.

    radius : float, default=1.0
        Radius of neighborhood in the transformed sparse graph.

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

    metric : str, callable or DistanceMetric, default='minkowski'
        The distance metric (see :class:`~knnkit.neighbors.NearestNeighbors`).

    p : float, default=2
        Power parameter for the Minkowski metric.

    metric_params : dict, default=None
        Additional keyword arguments for the metric function.

    n_jobs : int, default=None
        Threads for the neighbour search (``None`` and ``-1``: every core).

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

    Examples
    --------
    >>> import numpy as np
    >>> from knnkit.neighbors import RadiusNeighborsTransformer
    >>> X = np.array([[0.0], [1.0], [3.0]])
    >>> RadiusNeighborsTransformer(radius=1.5).fit_transform(X).toarray()
    array([[0., 1., 0.],
           [1., 0., 0.],
           [0., 0., 0.]])
    """

    _parameter_constraints: dict = {
        **NeighborsBase._parameter_constraints,
        "mode": [StrOptions({"distance", "connectivity"})],
    }
    _parameter_constraints.pop("n_neighbors")

    def __init__(
        self,
        *,
        mode="distance",
        radius=1.0,
        algorithm="auto",
        leaf_size=30,
        metric="minkowski",
        p=2,
        metric_params=None,
        n_jobs=None,
        algo_params=None,
        device=None,
    ):
        super().__init__(
            n_neighbors=None,
            radius=radius,
            algorithm=algorithm,
            leaf_size=leaf_size,
            metric=metric,
            p=p,
            metric_params=metric_params,
            n_jobs=n_jobs,
            algo_params=algo_params,
            device=device,
        )
        self.mode = mode

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Fit the radius neighbors transformer from the training dataset.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features) or \
                (n_samples, n_samples) if metric='precomputed'
            Training data.

        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        self : RadiusNeighborsTransformer
            The fitted radius neighbors transformer.
        """
        self._fit(X)
        self._n_features_out = self.n_samples_fit_
        return self

    def transform(self, X):
        """Compute the (weighted) graph of Neighbors for points in X.

        Parameters
        ----------
        X : array-like of shape (n_samples_transform, n_features)
            Sample data.

        Returns
        -------
        Xt : sparse matrix of shape (n_samples_transform, n_samples_fit)
            ``Xt[i, j]`` is the weight of the edge from i to j; only the neighbours are stored,
            each row sorted by distance, in CSR format.
        """
        check_is_fitted(self)
        return self.radius_neighbors_graph(X, mode=self.mode, sort_results=True)

    def fit_transform(self, X, y=None):
        """Fit to data, then transform it.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training set.

        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        Xt : sparse matrix of shape (n_samples, n_samples)
            ``Xt[i, j]`` is the weight of the edge from i to j, in CSR format.
        """
        return self.fit(X).transform(X)
