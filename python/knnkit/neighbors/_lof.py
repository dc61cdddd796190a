"""``LocalOutlierFactor``: scikit-learn's LOF (outlier and novelty modes) on knnkit's exact engine.

The scores are scikit-learn's expressions on the k-nearest-neighbour lists: the reachability
distance ``max(d(x, o), k-distance(o))``, the local reachability density (inverse mean
reachability distance, plus 1e-10 as scikit-learn), and the LOF as the mean density ratio. Only
the neighbour search changes, so the scores agree to rounding, and memory is O(n * k).
"""

from __future__ import annotations

import warnings
from numbers import Real

import numpy as np
from sklearn.base import OutlierMixin, _fit_context
from sklearn.utils import check_array
from sklearn.utils._available_if import available_if
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from knnkit.neighbors._base import KNeighborsMixin, NeighborsBase
from knnkit.neighbors._device import host, is_tensor
from knnkit.neighbors._docs import shared_doc


@shared_doc
class LocalOutlierFactor(KNeighborsMixin, OutlierMixin, NeighborsBase):
    """Unsupervised Outlier Detection using the Local Outlier Factor (LOF), on knnkit's exact
    engine.

    Same parameters, attributes, results and errors as ``sklearn.neighbors.LocalOutlierFactor``:
    with ``novelty=False`` (outlier detection) only ``fit_predict`` and
    ``negative_outlier_factor_`` are available; with ``novelty=True`` (novelty detection on new
    data) ``predict``, ``decision_function`` and ``score_samples`` are, and ``fit_predict`` is
    not. Calling a method of the other mode raises ``AttributeError`` with scikit-learn's message
    (and ``hasattr`` is False).

    Parameters
    ----------
    n_neighbors : int, default=20
        Number of neighbors to use by default for :meth:`kneighbors` queries. If n_neighbors is
        larger than the number of samples provided, all samples will be used.

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
        Power parameter for the Minkowski metric (p=1: manhattan, p=2: euclidean).

    metric_params : dict, default=None
        Additional keyword arguments for the metric function.

    contamination : 'auto' or float, default='auto'
        The proportion of outliers in the data set, used to define the threshold on the
        scores: 'auto' uses scikit-learn's offset of -1.5; a float must be in (0, 0.5].

    novelty : bool, default=False
        False: outlier detection on the training set (``fit_predict``). True: novelty detection
        on new, unseen data (``predict``, ``decision_function``, ``score_samples``).

    n_jobs : int, default=None
        Threads for the neighbour search. ``None`` and ``-1`` use every core.

    {extra_params}
        The scores and labels of LOF are numpy arrays (computed on the host from the
        neighbours found on the device).

    Attributes
    ----------
    negative_outlier_factor_ : ndarray of shape (n_samples,)
        The opposite LOF of the training samples (around -1 for inliers; the lower, the more
        abnormal).

    n_neighbors_ : int
        The actual number of neighbors used for :meth:`kneighbors` queries.

    offset_ : float
        Offset used to obtain binary labels from the raw scores: -1.5 for
        ``contamination='auto'``, else the ``contamination`` percentile of the training scores.

    effective_metric_ : str or callable
        The effective metric used for the distance computation.

    effective_metric_params_ : dict
        The effective additional keyword arguments for the metric function.

    n_features_in_ : int
        Number of features seen during :term:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit` (only when X has string column names).

    n_samples_fit_ : int
        The number of samples in the fitted data.

    Examples
    --------
    >>> import numpy as np
    >>> from knnkit.neighbors import LocalOutlierFactor
    >>> X = [[-1.1], [0.2], [101.1], [0.3]]
    >>> clf = LocalOutlierFactor(n_neighbors=2)
    >>> clf.fit_predict(X)
    array([ 1,  1, -1,  1])
    >>> clf.negative_outlier_factor_
    array([ -0.9821...,  -1.0370..., -73.3697...,  -0.9821...])
    """

    _parameter_constraints: dict = {
        **NeighborsBase._parameter_constraints,
        "contamination": [
            StrOptions({"auto"}),
            Interval(Real, 0, 0.5, closed="right"),
        ],
        "novelty": ["boolean"],
    }
    _parameter_constraints.pop("radius")

    def __init__(
        self,
        n_neighbors=20,
        *,
        algorithm="auto",
        leaf_size=30,
        metric="minkowski",
        p=2,
        metric_params=None,
        contamination="auto",
        novelty=False,
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
        self.contamination = contamination
        self.novelty = novelty

    def _check_novelty_fit_predict(self):
        if self.novelty:
            msg = (
                "fit_predict is not available when novelty=True. Use "
                "novelty=False if you want to predict on the training set."
            )
            raise AttributeError(msg)
        return True

    @available_if(_check_novelty_fit_predict)
    def fit_predict(self, X, y=None):
        """Fit the model to the training set X and return the labels.

        **Not available for novelty detection (when novelty is set to True).**
        Label is 1 for an inlier and -1 for an outlier according to the LOF
        score and the contamination parameter.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features), default=None
            The query sample or samples to compute the Local Outlier Factor
            w.r.t. the training samples.

        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        is_inlier : ndarray of shape (n_samples,)
            Returns -1 for anomalies/outliers and 1 for inliers.
        """
        return self.fit(X)._predict()

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Fit the local outlier factor detector from the training dataset.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features) or \
                (n_samples, n_samples) if metric='precomputed'
            Training data.

        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        self : LocalOutlierFactor
            The fitted local outlier factor detector.
        """
        self._fit(X)

        n_samples = self.n_samples_fit_
        if self.n_neighbors > n_samples:
            warnings.warn(
                f"n_neighbors ({self.n_neighbors}) is greater than the "
                f"total number of samples ({n_samples}). n_neighbors "
                "will be set to (n_samples - 1) for estimation.",
                stacklevel=2,
            )
        self.n_neighbors_ = max(1, min(self.n_neighbors, n_samples - 1))

        self._distances_fit_X_, _neighbors_indices_fit_X_ = map(
            host, self._kneighbors(None, self.n_neighbors_)
        )

        if self._fit_X.dtype == np.float32:
            self._distances_fit_X_ = self._distances_fit_X_.astype(
                self._fit_X.dtype,
                copy=False,
            )

        self._lrd = self._local_reachability_density(
            self._distances_fit_X_, _neighbors_indices_fit_X_
        )

        # LOF of the training samples, to define offset_
        lrd_ratios_array = self._lrd[_neighbors_indices_fit_X_] / self._lrd[:, np.newaxis]
        self.negative_outlier_factor_ = -np.mean(lrd_ratios_array, axis=1)

        if self.contamination == "auto":
            # inliers score around -1 (the higher, the less abnormal).
            self.offset_ = -1.5
        else:
            self.offset_ = np.percentile(self.negative_outlier_factor_, 100.0 * self.contamination)

        if np.min(self.negative_outlier_factor_) < -1e7 and not self.novelty:
            warnings.warn(
                "Duplicate values are leading to incorrect results. "
                "Increase the number of neighbors for more accurate results.",
                stacklevel=2,
            )

        return self

    def _check_novelty_predict(self):
        if not self.novelty:
            msg = (
                "predict is not available when novelty=False, use "
                "fit_predict if you want to predict on training data. Use "
                "novelty=True if you want to use LOF for novelty detection "
                "and predict on new unseen data."
            )
            raise AttributeError(msg)
        return True

    @available_if(_check_novelty_predict)
    def predict(self, X=None):
        """Predict the labels (1 inlier, -1 outlier) of X according to LOF.

        **Only available for novelty detection (when novelty is set to True).**
        The result of ``fit(X).predict(X)`` with ``novelty=True`` may differ from
        ``fit_predict(X)`` with ``novelty=False``: new data is not part of any neighbourhood.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The query sample or samples to compute the Local Outlier Factor
            w.r.t. the training samples.

        Returns
        -------
        is_inlier : ndarray of shape (n_samples,)
            Returns -1 for anomalies/outliers and +1 for inliers.
        """
        return self._predict(X)

    def _predict(self, X=None):
        """Labels (1 inlier, -1 outlier) of X, or of the training set (self excluded) if None."""
        check_is_fitted(self)

        if X is not None:
            shifted_opposite_lof_scores = self.decision_function(X)
            is_inlier = np.ones(shifted_opposite_lof_scores.shape[0], dtype=int)
            is_inlier[shifted_opposite_lof_scores < 0] = -1
        else:
            is_inlier = np.ones(self.n_samples_fit_, dtype=int)
            is_inlier[self.negative_outlier_factor_ < self.offset_] = -1

        return is_inlier

    def _check_novelty_decision_function(self):
        if not self.novelty:
            msg = (
                "decision_function is not available when novelty=False. "
                "Use novelty=True if you want to use LOF for novelty "
                "detection and compute decision_function for new unseen "
                "data. Note that the opposite LOF of the training samples "
                "is always available by considering the "
                "negative_outlier_factor_ attribute."
            )
            raise AttributeError(msg)
        return True

    @available_if(_check_novelty_decision_function)
    def decision_function(self, X):
        """Shifted opposite of the Local Outlier Factor of X.

        Bigger is better, i.e. large values correspond to inliers. **Only available for
        novelty detection (when novelty is set to True).** Negative scores are outliers.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The query sample or samples to compute the Local Outlier Factor
            w.r.t. the training samples.

        Returns
        -------
        shifted_opposite_lof_scores : ndarray of shape (n_samples,)
            ``score_samples(X) - offset_``.
        """
        return self.score_samples(X) - self.offset_

    def _check_novelty_score_samples(self):
        if not self.novelty:
            msg = (
                "score_samples is not available when novelty=False. The "
                "scores of the training samples are always available "
                "through the negative_outlier_factor_ attribute. Use "
                "novelty=True if you want to use LOF for novelty detection "
                "and compute score_samples for new unseen data."
            )
            raise AttributeError(msg)
        return True

    @available_if(_check_novelty_score_samples)
    def score_samples(self, X):
        """Opposite of the Local Outlier Factor of X.

        Bigger is better. **Only available for novelty detection (when novelty is set to
        True).** X is new data: a training point in X counts itself as a neighbour, and the
        samples of X are not part of any neighbourhood, so these scores may differ from
        ``negative_outlier_factor_``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The query sample or samples to compute the Local Outlier Factor
            w.r.t. the training samples.

        Returns
        -------
        opposite_lof_scores : ndarray of shape (n_samples,)
            The opposite of the Local Outlier Factor of each input samples.
            The lower, the more abnormal.
        """
        check_is_fitted(self)
        if not is_tensor(X):  # a tensor is checked by the engine's query validation instead
            X = check_array(X, accept_sparse="csr")

        distances_X, neighbors_indices_X = map(host, self._kneighbors(X, self.n_neighbors_))

        if X.dtype == np.float32:
            distances_X = distances_X.astype(X.dtype, copy=False)

        X_lrd = self._local_reachability_density(distances_X, neighbors_indices_X)

        lrd_ratios_array = self._lrd[neighbors_indices_X] / X_lrd[:, np.newaxis]

        # as bigger is better:
        return -np.mean(lrd_ratios_array, axis=1)

    def _local_reachability_density(self, distances_X, neighbors_indices):
        """Inverse of the mean reachability distance of each query to its k neighbours."""
        dist_k = self._distances_fit_X_[neighbors_indices, self.n_neighbors_ - 1]
        reach_dist_array = np.maximum(distances_X, dist_k)

        # 1e-10 to avoid `nan' when nb of duplicates > n_neighbors_:
        return 1.0 / (np.mean(reach_dist_array, axis=1) + 1e-10)
