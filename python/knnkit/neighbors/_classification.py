"""``KNeighborsClassifier``: scikit-learn's k-NN vote on knnkit's exact engine.

Voting is vectorised: labels are encoded at fit (``_y``, int), every query's neighbour labels are
offset by ``row * n_classes`` and counted with one ``np.bincount`` (weighted for ``"distance"``
and callables), in blocks of queries so the (queries x classes) table stays small.

Agreement with scikit-learn, exactly:

- ``predict_proba`` adds the weights of each query's neighbours in neighbour order (as
  scikit-learn's loop does), then divides by the row sum: bit-identical for the same neighbours.
- ``predict`` with uniform weights takes the first class with the highest count (scikit-learn's
  mode: smallest class index wins a tie). With weights, scikit-learn's ``weighted_mode`` sums
  per class in its own order; where the winner is not clear by more than the possible rounding
  difference (near-ties, non-positive or non-finite totals) those rows are recomputed with
  ``weighted_mode``'s exact arithmetic, so ties resolve as in scikit-learn.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin, _fit_context
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_is_fitted

from knnkit.neighbors._base import KNeighborsMixin, NeighborsBase, _get_weights

#: Cells of the (queries x classes) vote table built at once by ``predict``.
_VOTE_CELLS = 1 << 21


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


class KNeighborsClassifier(KNeighborsMixin, ClassifierMixin, NeighborsBase):
    """Classifier implementing the k-nearest neighbors vote, on knnkit's exact engine.

    Same parameters, attributes and results as ``sklearn.neighbors.KNeighborsClassifier``;
    ``predict`` and ``predict_proba`` vote with vectorised numpy (see the module docstring).

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
        Accepted and validated as in scikit-learn (e.g. ``kd_tree`` rejects metrics a KD-tree
        cannot use); every value runs knnkit's exact engine, so ``_fit_method`` is ``'brute'``.

    leaf_size : int, default=30
        Accepted for compatibility; not used by the exact engine.

    p : float, default=2
        Power parameter for the Minkowski metric (p=1: manhattan, p=2: euclidean).

    metric : str, callable or DistanceMetric, default='minkowski'
        Any metric name scikit-learn's neighbours accept. Native (fast) metrics: euclidean,
        sqeuclidean, manhattan, chebyshev, minkowski with p >= 1 (weights ``w`` included),
        cosine, hamming, seuclidean (``V`` needed) and mahalanobis (``VI`` or ``V`` needed).
        Other names, callables and ``DistanceMetric`` objects use a slower block-wise path
        (``DistanceMetric.pairwise`` or ``sklearn.metrics.pairwise_distances``).
        ``'precomputed'`` takes a dense square distance matrix at fit and dense
        (n_queries, n_samples_fit) distances at query time.

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
    classes_ : array of shape (n_classes,) or list of such arrays
        Class labels known to the classifier (a list when ``y`` has several outputs).

    effective_metric_ : str or callable
        The distance metric used (e.g. 'euclidean' for metric='minkowski', p=2).

    effective_metric_params_ : dict
        Additional keyword arguments for the metric function.

    n_features_in_ : int
        Number of features seen during :term:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit` (only when X has string column names).

    n_samples_fit_ : int
        Number of samples in the fitted data.

    outputs_2d_ : bool
        False when `y`'s shape is (n_samples, ) or (n_samples, 1) during fit, else True.

    Notes
    -----
    Distances keep the fitted dtype (float32 data: float32 distances, and "distance" weights
    computed from them). Sparse input is densified. Neighbours at equal distance are ordered
    by index, so results are deterministic.

    Examples
    --------
    >>> from knnkit.neighbors import KNeighborsClassifier
    >>> X = [[0], [1], [2], [3]]
    >>> y = [0, 0, 1, 1]
    >>> neigh = KNeighborsClassifier(n_neighbors=3).fit(X, y)
    >>> print(neigh.predict([[1.1]]))
    [0]
    >>> print(neigh.predict_proba([[0.9]]))
    [[0.666... 0.333...]]
    """

    _parameter_constraints: dict = {**NeighborsBase._parameter_constraints}
    _parameter_constraints.pop("radius")
    _parameter_constraints.update(
        {"weights": [StrOptions({"uniform", "distance"}), callable, None]}
    )

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

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Fit the k-nearest neighbors classifier from the training dataset.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features) or \
                (n_samples, n_samples) if metric='precomputed'
            Training data.

        y : {array-like, sparse matrix} of shape (n_samples,) or (n_samples, n_outputs)
            Target values.

        Returns
        -------
        self : KNeighborsClassifier
            The fitted k-nearest neighbors classifier.
        """
        return self._fit(X, y)

    def _neighbour_weights(self, X):
        """Neighbour indices and weights (None for uniform), with scikit-learn's checks."""
        if self.weights == "uniform":
            neigh_ind = self.kneighbors(X, return_distance=False)
            neigh_dist = None
        else:
            neigh_dist, neigh_ind = self.kneighbors(X)
        weights = _get_weights(neigh_dist, self.weights)
        if weights is not None and np.any(np.all(np.asarray(weights) == 0, axis=1)):
            raise ValueError(
                "All neighbors of some sample is getting zero weights. "
                "Please modify 'weights' to avoid this case if you are "
                "using a user-defined function."
            )
        return neigh_ind, weights

    def predict(self, X):
        """Predict the class labels for the provided data.

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
            Class labels for each data sample.
        """
        check_is_fitted(self, "_fit_method")
        neigh_ind, weights = self._neighbour_weights(X)

        classes_ = self.classes_
        _y = self._y
        if not self.outputs_2d_:
            _y = self._y.reshape((-1, 1))
            classes_ = [self.classes_]

        n_queries = neigh_ind.shape[0]
        y_pred = np.empty((n_queries, len(classes_)), dtype=classes_[0].dtype)
        for k, classes_k in enumerate(classes_):
            mode = _vote(_y[:, k][neigh_ind], weights, classes_k.size)
            y_pred[:, k] = classes_k.take(mode)

        if not self.outputs_2d_:
            y_pred = y_pred.ravel()
        return y_pred

    def predict_proba(self, X):
        """Return probability estimates for the test data X.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_queries, n_features), \
                or (n_queries, n_indexed) if metric == 'precomputed', or None
            Test samples. If `None`, predictions for all indexed points are
            returned; in this case, points are not considered their own
            neighbors.

        Returns
        -------
        p : ndarray of shape (n_queries, n_classes), or a list of n_outputs \
                of such arrays if n_outputs > 1.
            The class probabilities of the input samples. Classes are ordered
            by lexicographic order.
        """
        check_is_fitted(self, "_fit_method")
        neigh_ind, weights = self._neighbour_weights(X)

        classes_ = self.classes_
        _y = self._y
        if not self.outputs_2d_:
            _y = self._y.reshape((-1, 1))
            classes_ = [self.classes_]

        probabilities = []
        for k, classes_k in enumerate(classes_):
            proba_k = _class_scores(_y[:, k][neigh_ind], weights, classes_k.size)
            proba_k = proba_k.astype(np.float64, copy=False)
            normalizer = proba_k.sum(axis=1)[:, np.newaxis]
            proba_k /= normalizer
            probabilities.append(proba_k)

        if not self.outputs_2d_:
            probabilities = probabilities[0]
        return probabilities

    def score(self, X, y, sample_weight=None):
        """Return the mean accuracy on the given test data and labels.

        In multi-label classification, this is the subset accuracy.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or None
            Test samples. If `None`, predictions for all indexed points are
            used; in this case, points are not considered their own
            neighbors, so ``knn.fit(X, y).score(None, y)`` is a leave-one-out estimate.

        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            True labels for `X`.

        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        score : float
            Mean accuracy of ``self.predict(X)`` w.r.t. `y`.
        """
        return super().score(X, y, sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        tags.input_tags.pairwise = self._is_precomputed()
        return tags
