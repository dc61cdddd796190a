"""``NearestCentroid``: scikit-learn's nearest (shrunken) centroid classifier.

Fitting is scikit-learn's arithmetic (class means or medians, within-class deviations, soft
thresholding). Prediction searches the centroids with knnkit's exact engine: one nearest
centroid per query for ``predict`` with uniform priors, every centroid for the discriminant
scores (``decision_function``, ``predict_proba``, and ``predict`` with other priors), so the
distances are the directly computed ones (scikit-learn's euclidean uses the expanded
``|x|^2 - 2 x.c + |c|^2`` form, which may differ in the last bits and, rarely, on near-ties).
"""

from __future__ import annotations

import warnings
from numbers import Real

import numpy as np
from scipy import sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.discriminant_analysis import DiscriminantAnalysisPredictionMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils._available_if import available_if
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from knnkit.neighbors._base import _densify
from knnkit.neighbors._metrics import NATIVE_METRICS, MetricPlan
from knnkit.neighbors._search import ExactSearch


def _centroid_search(centroids: np.ndarray, metric: str) -> ExactSearch:
    """The exact engine over the centroids (a handful of rows: built per call)."""
    return ExactSearch(MetricPlan("native", engine_metric=NATIVE_METRICS[metric]), centroids)


class NearestCentroid(DiscriminantAnalysisPredictionMixin, ClassifierMixin, BaseEstimator):
    """Nearest centroid classifier, predicting with knnkit's exact engine.

    Each class is represented by its centroid (mean for 'euclidean', feature-wise median for
    'manhattan'), optionally shrunk towards the overall centroid; test samples get the class of
    the nearest centroid. Same parameters, attributes and results as
    ``sklearn.neighbors.NearestCentroid``.

    Parameters
    ----------
    metric : {"euclidean", "manhattan"}, default="euclidean"
        Metric to use for distance computation (the centroid is the mean for "euclidean" and
        the median for "manhattan").

    shrink_threshold : float, default=None
        Threshold for shrinking centroids to remove features.

    priors : {"uniform", "empirical"} or array-like of shape (n_classes,), default="uniform"
        The class prior probabilities. "uniform": equal; "empirical": the class proportions
        of the training data; an array: given (normalised to sum to 1, with a warning).

    Attributes
    ----------
    centroids_ : array-like of shape (n_classes, n_features)
        Centroid of each class.

    classes_ : array of shape (n_classes,)
        The unique classes labels.

    n_features_in_ : int
        Number of features seen during :term:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit` (only when X has string column names).

    deviations_ : ndarray of shape (n_classes, n_features)
        Deviations (or shrinkages) of the centroids of each class from the overall centroid.

    within_class_std_dev_ : ndarray of shape (n_features,)
        Pooled or within-class standard deviation of input data.

    class_prior_ : ndarray of shape (n_classes,)
        The class prior probabilities.

    Notes
    -----
    Sparse input is densified (as knnkit's other estimators; refused above
    ``knnkit.neighbors.MAX_DENSE_BYTES``): scikit-learn's fit builds a dense
    (n_samples, n_features) array from it anyway.

    Examples
    --------
    >>> import numpy as np
    >>> from knnkit.neighbors import NearestCentroid
    >>> X = np.array([[-1, -1], [-2, -1], [-3, -2], [1, 1], [2, 1], [3, 2]])
    >>> y = np.array([1, 1, 1, 2, 2, 2])
    >>> clf = NearestCentroid().fit(X, y)
    >>> print(clf.predict([[-0.8, -1]]))
    [1]
    """

    _parameter_constraints: dict = {
        "metric": [StrOptions({"manhattan", "euclidean"})],
        "shrink_threshold": [Interval(Real, 0, None, closed="neither"), None],
        "priors": ["array-like", StrOptions({"empirical", "uniform"})],
    }

    def __init__(self, metric="euclidean", *, shrink_threshold=None, priors="uniform"):
        self.metric = metric
        self.shrink_threshold = shrink_threshold
        self.priors = priors

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fit the NearestCentroid model according to the given training data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training vector, where `n_samples` is the number of samples and
            `n_features` is the number of features.

        y : array-like of shape (n_samples,)
            Target values.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        if self.metric == "manhattan":
            X, y = validate_data(self, X, y, accept_sparse=["csc"])
        else:
            X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"])
        if sp.issparse(X):
            X = _densify(X, "X")
        check_classification_targets(y)

        n_samples, n_features = X.shape
        le = LabelEncoder()
        y_ind = le.fit_transform(y)
        self.classes_ = classes = le.classes_
        n_classes = classes.size
        if n_classes < 2:
            raise ValueError(
                f"The number of classes has to be greater than one; got {n_classes} class"
            )

        if isinstance(self.priors, str) and self.priors == "empirical":
            _, class_counts = np.unique(y, return_inverse=True)  # non-negative ints
            self.class_prior_ = np.bincount(class_counts) / float(len(y))
        elif isinstance(self.priors, str) and self.priors == "uniform":
            self.class_prior_ = np.asarray([1 / n_classes] * n_classes)
        else:
            self.class_prior_ = np.asarray(self.priors)

        if (self.class_prior_ < 0).any():
            raise ValueError("priors must be non-negative")
        if not np.isclose(self.class_prior_.sum(), 1.0):
            warnings.warn(
                "The priors do not sum to 1. Normalizing such that it sums to one.",
                UserWarning,
                stacklevel=2,
            )
            self.class_prior_ = self.class_prior_ / self.class_prior_.sum()

        self.centroids_ = np.empty((n_classes, n_features), dtype=np.float64)
        nk = np.zeros(n_classes)  # class sizes
        for cur_class in range(n_classes):
            center_mask = y_ind == cur_class
            nk[cur_class] = np.sum(center_mask)
            if self.metric == "manhattan":
                self.centroids_[cur_class] = np.median(X[center_mask], axis=0)
            else:
                self.centroids_[cur_class] = X[center_mask].mean(axis=0)

        # within-class std dev with unshrunk centroids
        variance = np.asarray(X - self.centroids_[y_ind]) ** 2
        self.within_class_std_dev_ = np.asarray(
            np.sqrt(variance.sum(axis=0) / (n_samples - n_classes))
        )
        if any(self.within_class_std_dev_ == 0):
            warnings.warn(
                "self.within_class_std_dev_ has at least 1 zero standard deviation."
                "Inputs within the same classes for at least 1 feature are identical.",
                stacklevel=2,
            )

        if np.all(np.ptp(X, axis=0) == 0):
            raise ValueError("All features have zero variance. Division by zero.")

        dataset_centroid_ = X.mean(axis=0)
        # m parameter for determining deviation
        m = np.sqrt((1.0 / nk) - (1.0 / n_samples))
        # deviation in units of the centroids' standard deviation, robust to outliers
        s = self.within_class_std_dev_ + np.median(self.within_class_std_dev_)
        mm = m.reshape(len(m), 1)
        ms = mm * s
        self.deviations_ = np.asarray((self.centroids_ - dataset_centroid_) / ms)
        # soft thresholding: a deviation that crosses 0 while shrinking becomes 0
        if self.shrink_threshold:
            signs = np.sign(self.deviations_)
            self.deviations_ = np.abs(self.deviations_) - self.shrink_threshold
            np.clip(self.deviations_, 0, None, out=self.deviations_)
            self.deviations_ *= signs
            msd = ms * self.deviations_
            self.centroids_ = np.asarray(dataset_centroid_ + msd)
        return self

    def predict(self, X):
        """Perform classification on an array of test vectors `X`.

        The predicted class `C` for each sample in `X` is returned.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            The predicted classes.
        """
        check_is_fitted(self)
        if np.isclose(self.class_prior_, 1 / len(self.classes_)).all():
            X = validate_data(self, X, accept_sparse="csr", reset=False)
            if sp.issparse(X):
                X = _densify(X, "X")
            search = _centroid_search(self.centroids_, self.metric)
            _, nearest = search.kneighbors(X, 1, None)
            return self.classes_[nearest[:, 0]]
        return super().predict(X)

    def _decision_function(self, X):
        # discriminant scores, eq. (18.2) p. 652 of the ESL
        check_is_fitted(self, "centroids_")
        X_normalized = validate_data(
            self, X, copy=True, reset=False, accept_sparse="csr", dtype=np.float64
        )
        if sp.issparse(X_normalized):
            X_normalized = _densify(X_normalized, "X")

        mask = self.within_class_std_dev_ != 0
        X_normalized[:, mask] /= self.within_class_std_dev_[mask]
        centroids_normalized = self.centroids_.copy()
        centroids_normalized[:, mask] /= self.within_class_std_dev_[mask]

        n_classes = self.classes_.size
        search = _centroid_search(centroids_normalized, self.metric)
        dist, ind = search.kneighbors(X_normalized, n_classes, None)
        distances = np.empty((X_normalized.shape[0], n_classes), dtype=np.float64)
        np.put_along_axis(distances, ind, dist, axis=1)
        distances **= 2
        return -distances + 2.0 * np.log(self.class_prior_)

    def _check_euclidean_metric(self):
        return self.metric == "euclidean"

    decision_function = available_if(_check_euclidean_metric)(
        DiscriminantAnalysisPredictionMixin.decision_function
    )

    predict_proba = available_if(_check_euclidean_metric)(
        DiscriminantAnalysisPredictionMixin.predict_proba
    )

    predict_log_proba = available_if(_check_euclidean_metric)(
        DiscriminantAnalysisPredictionMixin.predict_log_proba
    )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags
