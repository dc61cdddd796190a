"""``KNeighborsClassifier`` and ``RadiusNeighborsClassifier``: scikit-learn's neighbour votes on
knnkit's engines.

Voting is vectorised: labels are encoded at fit (``_y``, int) and counted by the engine's
``arrays`` (:mod:`._arrays`: one ``np.bincount`` over ``row * n_classes + label``, in blocks of
queries; on a torch device, ``scatter_add`` there), with scikit-learn's results exactly:
``predict_proba`` bit-identical for the same neighbours, ``predict`` resolving ties and near-ties
as scikit-learn's ``weighted_mode``.

``RadiusNeighborsClassifier`` counts the votes of the flat (CSR) radius result the same way, one
``np.bincount`` over ``row * n_classes + label`` per block of queries (blocks sized by
``working_memory``, whatever the number of neighbours), in neighbour order as scikit-learn's
per-row ``np.bincount``.
"""

from __future__ import annotations

import warnings
from numbers import Integral

import numpy as np
from sklearn.base import ClassifierMixin, _fit_context
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import _is_arraylike, check_is_fitted

from knnkit.neighbors._arrays import _vote  # noqa: F401  (the tests import it from here)
from knnkit.neighbors._base import (
    KNeighborsMixin,
    NeighborsBase,
    RadiusNeighborsMixin,
    _get_csr_weights,
)
from knnkit.neighbors._docs import shared_doc


@shared_doc
class KNeighborsClassifier(KNeighborsMixin, ClassifierMixin, NeighborsBase):
    """Classifier implementing the k-nearest neighbors vote, on knnkit's exact engine.

    Same parameters, attributes and results as ``sklearn.neighbors.KNeighborsClassifier``;
    ``predict`` and ``predict_proba`` vote vectorised (see the module docstring).

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

    {extra_params}
        ``KNeighborsClassifier`` votes on the device (scatter-add).

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
        """Neighbour indices and weights (None for uniform), with scikit-learn's checks, in the
        engine's arrays."""
        if self.weights == "uniform":
            neigh_ind = self._kneighbors(X, None, return_distance=False)
            neigh_dist = None
        else:
            neigh_dist, neigh_ind = self._kneighbors(X, None)
        weights = self._index.arrays.weights(neigh_dist, self.weights)
        if weights is not None and bool((weights == 0).all(1).any()):
            raise ValueError(
                "All neighbors of some sample is getting zero weights. "
                "Please modify 'weights' to avoid this case if you are "
                "using a user-defined function."
            )
        return neigh_ind, weights

    def _outputs(self):
        """``(labels, classes)`` per output: the encoded labels of the fitted rows where the
        engine votes, and the output's classes."""
        y = self._y_t if self.outputs_2d_ else self._y_t[:, None]
        classes = self.classes_ if self.outputs_2d_ else [self.classes_]
        return [(y[:, k], classes_k) for k, classes_k in enumerate(classes)]

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
        out = self._output(X)
        neigh_ind, weights = self._neighbour_weights(X)
        arrays = self._index.arrays
        y_pred = [
            arrays.take(classes, arrays.vote(labels[neigh_ind], weights, classes.size))
            for labels, classes in self._outputs()
        ]
        return out(arrays.columns(y_pred) if self.outputs_2d_ else y_pred[0])

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
        out = self._output(X)
        neigh_ind, weights = self._neighbour_weights(X)
        probabilities = [
            out(self._index.arrays.proba(labels[neigh_ind], weights, classes.size))
            for labels, classes in self._outputs()
        ]
        return probabilities if self.outputs_2d_ else probabilities[0]

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


@shared_doc
class RadiusNeighborsClassifier(RadiusNeighborsMixin, ClassifierMixin, NeighborsBase):
    """Classifier implementing a vote among neighbors within a given radius, on knnkit's
    exact engine.

    Same parameters, attributes and results as ``sklearn.neighbors.RadiusNeighborsClassifier``.
    The votes are counted from the engine's flat (CSR) radius result with one ``np.bincount``
    per block of queries (no Python object per query), and the blocks are sized so that even a
    radius that reaches every fitted row stays within scikit-learn's ``working_memory``.

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

    outlier_label : {manual label, 'most_frequent'}, default=None
        Label for outlier samples (samples with no neighbors in given radius).

        - manual label: str or int label (should be the same type as y)
          or list of manual labels if multi-output is used.
        - 'most_frequent' : assign the most frequent label of y to outliers.
        - None : when any outlier is detected, ValueError will be raised.

        The outlier label should be selected from among the unique 'Y' labels. If it is
        specified with a different value a warning will be raised and all class probabilities
        of outliers will be assigned to be 0.

    metric_params : dict, default=None
        Additional keyword arguments for the metric function.

    n_jobs : int, default=None
        Threads for the neighbour search. ``None`` and ``-1`` use every core.

    {extra_params}

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,) or list of such arrays
        Class labels known to the classifier (a list when ``y`` has several outputs).

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

    outlier_label_ : int or array-like of shape (n_class,)
        Label which is given for outlier samples (samples with no neighbors on given radius).

    outputs_2d_ : bool
        False when `y`'s shape is (n_samples, ) or (n_samples, 1) during fit, else True.

    Notes
    -----
    scikit-learn takes a separate code path (``RadiusNeighborsClassMode``) for uniform
    weights, single-output ``y`` and a few metrics when ``algorithm`` resolves to ``'brute'``;
    that path compares ``outlier_label`` with the *encoded* class indices, so it gives outliers
    the wrong class probabilities (and, for integer labels, sometimes the wrong class), and
    ignores ``outlier_label='most_frequent'`` in ``predict_proba``. knnkit always follows
    scikit-learn's general path, which behaves as documented.

    Examples
    --------
    >>> from knnkit.neighbors import RadiusNeighborsClassifier
    >>> X = [[0], [1], [2], [3]]
    >>> y = [0, 0, 1, 1]
    >>> neigh = RadiusNeighborsClassifier(radius=1.0).fit(X, y)
    >>> print(neigh.predict([[1.5]]))
    [0]
    >>> print(neigh.predict_proba([[1.0]]))
    [[0.66666667 0.33333333]]
    """

    _parameter_constraints: dict = {
        **NeighborsBase._parameter_constraints,
        "weights": [StrOptions({"uniform", "distance"}), callable, None],
        "outlier_label": [Integral, str, "array-like", None],
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
        outlier_label=None,
        metric_params=None,
        n_jobs=None,
        algo_params=None,
        device=None,
    ):
        super().__init__(
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
        self.weights = weights
        self.outlier_label = outlier_label

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Fit the radius neighbors classifier from the training dataset.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features) or \
                (n_samples, n_samples) if metric='precomputed'
            Training data.

        y : {array-like, sparse matrix} of shape (n_samples,) or (n_samples, n_outputs)
            Target values.

        Returns
        -------
        self : RadiusNeighborsClassifier
            The fitted radius neighbors classifier.
        """
        self._fit(X, y)

        classes_ = self.classes_
        _y = self._y
        if not self.outputs_2d_:
            _y = self._y.reshape((-1, 1))
            classes_ = [self.classes_]

        if self.outlier_label is None:
            outlier_label_ = None
        elif isinstance(self.outlier_label, str) and self.outlier_label == "most_frequent":
            # the most frequent label of each output
            outlier_label_ = []
            for k, classes_k in enumerate(classes_):
                label_count = np.bincount(_y[:, k])
                outlier_label_.append(classes_k[label_count.argmax()])
        else:
            if _is_arraylike(self.outlier_label) and not isinstance(self.outlier_label, str):
                if len(self.outlier_label) != len(classes_):
                    raise ValueError(
                        f"The length of outlier_label: {self.outlier_label} is "
                        "inconsistent with the output "
                        f"length: {len(classes_)}"
                    )
                outlier_label_ = self.outlier_label
            else:
                outlier_label_ = [self.outlier_label] * len(classes_)

            for classes, label in zip(classes_, outlier_label_, strict=False):
                if _is_arraylike(label) and not isinstance(label, str):
                    raise TypeError(
                        f"The outlier_label of classes {classes} is "
                        f"supposed to be a scalar, got {label}."
                    )
                if np.append(classes, label).dtype != classes.dtype:
                    raise TypeError(
                        f"The dtype of outlier_label {label} is "
                        f"inconsistent with classes {classes} in y."
                    )

        self.outlier_label_ = outlier_label_
        return self

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
        out = self._output(X)
        probs = self._proba(X)
        classes_ = self.classes_

        if not self.outputs_2d_:
            probs = [probs]
            classes_ = [self.classes_]

        n_outputs = len(classes_)
        n_queries = probs[0].shape[0]
        y_pred = np.empty((n_queries, n_outputs), dtype=classes_[0].dtype)

        for k, prob in enumerate(probs):
            max_prob_index = prob.argmax(axis=1)
            y_pred[:, k] = classes_[k].take(max_prob_index)

            outlier_zero_probs = (prob == 0).all(axis=1)
            if outlier_zero_probs.any():
                zero_prob_index = np.flatnonzero(outlier_zero_probs)
                y_pred[zero_prob_index, k] = self.outlier_label_[k]

        if not self.outputs_2d_:
            y_pred = y_pred.ravel()
        return out(y_pred)

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
        p : ndarray of shape (n_queries, n_classes), or a list of \
                n_outputs of such arrays if n_outputs > 1.
            The class probabilities of the input samples. Classes are ordered
            by lexicographic order.
        """
        out = self._output(X)
        probabilities = self._proba(X)
        if self.outputs_2d_:
            return [out(p) for p in probabilities]
        return out(probabilities)

    def _proba(self, X):
        """:meth:`predict_proba` as numpy arrays (the votes are counted on the host)."""
        check_is_fitted(self, "_fit_method")
        classes_ = self.classes_
        _y = self._y
        if not self.outputs_2d_:
            _y = self._y.reshape((-1, 1))
            classes_ = [self.classes_]

        n_queries, blocks = self._radius_blocks(X, None)
        outlier_mask = np.zeros(n_queries, dtype=bool)
        probabilities = [np.zeros((n_queries, classes_k.size)) for classes_k in classes_]
        for start, stop, lims, dist, ind in blocks:
            counts = np.diff(lims)
            outlier_mask[start:stop] = counts == 0
            weights = _get_csr_weights(dist, lims, self.weights)
            m = stop - start
            rows = np.repeat(np.arange(m, dtype=np.intp), counts)
            for k, classes_k in enumerate(classes_):
                n_classes = classes_k.size
                flat = rows * n_classes + _y[ind, k]
                votes = np.bincount(flat, weights=weights, minlength=m * n_classes)
                probabilities[k][start:stop] = votes.reshape(m, n_classes)

        outliers = np.flatnonzero(outlier_mask)
        if self.outlier_label_ is None and outliers.size > 0:
            raise ValueError(
                f"No neighbors found for test samples {outliers!r}, "
                "you can try using larger radius, "
                "giving a label for outliers, "
                "or considering removing them from your dataset."
            )

        for k, classes_k in enumerate(classes_):
            proba_k = probabilities[k]
            if outliers.size > 0:
                _outlier_label = self.outlier_label_[k]
                label_index = np.flatnonzero(classes_k == _outlier_label)
                if label_index.size == 1:
                    proba_k[outliers, label_index[0]] = 1.0
                else:
                    warnings.warn(
                        f"Outlier label {self.outlier_label_[k]} is not in training "
                        "classes. All class probabilities of "
                        "outliers will be assigned with 0.",
                        stacklevel=2,
                    )
            # normalize 'votes' into real [0,1] probabilities
            normalizer = proba_k.sum(axis=1)[:, np.newaxis]
            normalizer[normalizer == 0.0] = 1.0
            proba_k /= normalizer

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
            neighbors, so ``fit(X, y).score(None, y)`` is a leave-one-out estimate.

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
        return tags
