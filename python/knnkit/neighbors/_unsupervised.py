"""``NearestNeighbors``: scikit-learn's unsupervised neighbour searches on knnkit's engines."""

from __future__ import annotations

from sklearn.base import _fit_context

from knnkit.neighbors._base import KNeighborsMixin, NeighborsBase, RadiusNeighborsMixin
from knnkit.neighbors._docs import shared_doc


@shared_doc
class NearestNeighbors(KNeighborsMixin, RadiusNeighborsMixin, NeighborsBase):
    """Unsupervised learner for implementing neighbor searches, on knnkit's engines.

    Same parameters, attributes and results as ``sklearn.neighbors.NearestNeighbors``
    (``kneighbors``, ``radius_neighbors`` and their ``*_graph`` forms), computed by knnkit's
    trees or exact SIMD engine (as ``algorithm`` and scikit-learn's ``auto`` choose) with the
    GIL released.

    Parameters
    ----------
    n_neighbors : int, default=5
        Number of neighbors to use by default for :meth:`kneighbors` queries.

    radius : float, default=1.0
        Range of parameter space to use by default for :meth:`radius_neighbors` queries.

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
        Any metric name scikit-learn's neighbours accept. Native (fast) metrics: euclidean,
        sqeuclidean, manhattan, chebyshev, minkowski with p >= 1 (weights ``w`` included),
        cosine, hamming, seuclidean (``V`` needed) and mahalanobis (``VI`` or ``V`` needed).
        Other names, callables and ``DistanceMetric`` objects use a slower block-wise path
        (``DistanceMetric.pairwise`` or ``sklearn.metrics.pairwise_distances``, memory bounded
        by scikit-learn's ``working_memory``). ``'precomputed'`` takes a dense square distance
        matrix at fit and dense (n_queries, n_samples_fit) distances at query time.

    p : float (positive), default=2
        Power parameter for the Minkowski metric (p=1: manhattan, p=2: euclidean).

    metric_params : dict, default=None
        Additional keyword arguments for the metric function.

    n_jobs : int, default=None
        Threads for the neighbour search. ``None`` and ``-1`` use every core.

    {extra_params}

    Attributes
    ----------
    effective_metric_ : str or callable
        Metric used to compute distances to neighbors.

    effective_metric_params_ : dict
        Parameters for the metric used to compute distances to neighbors.

    n_features_in_ : int
        Number of features seen during :term:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit` (only when X has string column names).

    n_samples_fit_ : int
        Number of samples in the fitted data.

    Notes
    -----
    Differences from scikit-learn: distances keep the fitted dtype (float32 data gives float32
    distances); scipy sparse input is densified (refused above 2 GiB); ``precomputed`` is dense
    only; results are sorted with ties by index, and ``radius_neighbors`` without
    ``sort_results`` returns each query's neighbours in index order.

    Examples
    --------
    >>> import numpy as np
    >>> from knnkit.neighbors import NearestNeighbors
    >>> samples = [[0, 0, 2], [1, 0, 0], [0, 0, 1]]
    >>> neigh = NearestNeighbors(n_neighbors=2, radius=0.4).fit(samples)
    >>> neigh.kneighbors([[0, 0, 1.3]], 2, return_distance=False)
    array([[2, 0]])
    >>> nbrs = neigh.radius_neighbors([[0, 0, 1.3]], 0.4, return_distance=False)
    >>> np.asarray(nbrs[0][0])
    array(2)

    Approximate search on an HNSW graph, with its parameters in ``algo_params``:

    >>> ann = NearestNeighbors(n_neighbors=2, algorithm="hnsw", algo_params={"ef_search": 32})
    >>> ann.fit(samples).kneighbors([[0, 0, 1.3]], return_distance=False)
    array([[2, 0]])
    >>> ann._fit_method
    'hnsw'
    """

    def __init__(
        self,
        *,
        n_neighbors=5,
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
            n_neighbors=n_neighbors,
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

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Fit the nearest neighbors estimator from the training dataset.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features) or \
                (n_samples, n_samples) if metric='precomputed'
            Training data.

        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        self : NearestNeighbors
            The fitted nearest neighbors estimator.
        """
        return self._fit(X)
