"""``KNNImputer``: scikit-learn's k-nearest-neighbour imputation with exact, chunked distances.

Design: as ``sklearn.impute.KNNImputer``, each missing entry ``(i, f)`` is the (weighted) mean
of feature ``f`` over the ``n_neighbors`` nearest training rows that have ``f``, by the
``nan_euclidean`` distance ``sqrt(n_features / n_common * sum over common coordinates of
(x - y)^2)``. The distances are computed by that direct formula (the Rust core, in float64, on every
core), for one chunk of receiving rows at a time (chunks sized by scikit-learn's ``working_memory``),
so memory stays O(chunk * n_samples_fit): exact zeros for duplicates (scikit-learn's expanded
formula leaves ~1e-8 there) and no cancellation for close rows. Donors are the ``n_neighbors``
smallest distances with ties broken by the lower row index (scikit-learn's ``argpartition``
picks among ties in an unspecified way).

Cost: O(n_receivers * n_samples_fit * n_features) per ``transform``, in the Rust core; the
donor selection per column is numpy, as scikit-learn's.

Examples
--------
>>> import numpy as np
>>> from knnkit.impute import KNNImputer
>>> X = [[1, 2, np.nan], [3, 4, 3], [np.nan, 6, 5], [8, 8, 7]]
>>> KNNImputer(n_neighbors=2).fit_transform(X)
array([[1. , 2. , 4. ],
       [3. , 4. , 3. ],
       [5.5, 6. , 5. ],
       [8. , 8. , 7. ]])
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn import get_config
from sklearn.base import _fit_context
from sklearn.impute._base import _BaseImputer
from sklearn.metrics import pairwise_distances
from sklearn.utils._mask import _get_mask
from sklearn.utils._missing import is_scalar_nan
from sklearn.utils._param_validation import Hidden, Interval, StrOptions
from sklearn.utils.validation import (
    FLOAT_DTYPES,
    _check_feature_names_in,
    check_is_fitted,
    validate_data,
)

from knnkit import _core
from knnkit.neighbors._arrays import _get_weights
from knnkit.neighbors._search import topk_rows

#: float64 (chunk x n_samples_fit) arrays alive at once while a chunk is processed.
_CHUNK_ARRAYS = 6


def nan_euclidean_chunk(
    X: np.ndarray, missing_X: np.ndarray, Y: np.ndarray, missing_Y: np.ndarray
) -> np.ndarray:
    """Exact ``nan_euclidean`` distances between the rows of X and Y (float64, NaN where two
    rows share no present coordinate), by the direct formula, summed in feature order in
    float64 (the Rust core, on every core).

    Missing entries (``missing_X``, ``missing_Y``: boolean masks) are ignored whatever their
    value. Memory: a few (len(X), len(Y)) arrays.

    Examples
    --------
    >>> X = np.array([[0.0, np.nan], [3.0, 4.0]])
    >>> nan_euclidean_chunk(X, np.isnan(X), X, np.isnan(X))
    array([[0.        , 4.24264069],
           [4.24264069, 0.        ]])
    """
    return _core.nan_euclidean_distances(
        np.ascontiguousarray(X, dtype=np.float64),
        np.ascontiguousarray(missing_X, dtype=bool),
        np.ascontiguousarray(Y, dtype=np.float64),
        np.ascontiguousarray(missing_Y, dtype=bool),
    )


class KNNImputer(_BaseImputer):
    """Imputation for completing missing values using k-Nearest Neighbors, with exact distances.

    Each sample's missing values are imputed using the mean value from ``n_neighbors`` nearest
    neighbors found in the training set. Two samples are close if the features that neither
    is missing are close. Same parameters, attributes and results as
    ``sklearn.impute.KNNImputer`` (see the module docstring for how the distances are
    computed and ties broken).

    Parameters
    ----------
    missing_values : int, float, str, np.nan or None, default=np.nan
        The placeholder for the missing values. All occurrences of `missing_values` will be
        imputed.

    n_neighbors : int, default=5
        Number of neighboring samples to use for imputation.

    weights : {'uniform', 'distance'} or callable, default='uniform'
        Weight function used in prediction: 'uniform' (equal weights), 'distance' (inverse
        of the distance; donors at distance 0 take all the weight), or a callable that takes
        an array of distances and returns an array of weights of the same shape.

    metric : {'nan_euclidean'} or callable, default='nan_euclidean'
        Distance metric for searching neighbors. A callable takes two rows and
        ``missing_values`` as a keyword, as in scikit-learn (computed chunk by chunk with
        ``sklearn.metrics.pairwise_distances``).

    copy : bool, default=True
        If True, a copy of X will be created. If False, imputation will be done in-place
        whenever possible.

    add_indicator : bool, default=False
        If True, a :class:`~sklearn.impute.MissingIndicator` transform will stack onto the
        output of the imputer's transform.

    keep_empty_features : bool, default=False
        If True, features that consist exclusively of missing values when `fit` is called are
        returned in results when `transform` is called. The imputed value is always `0`.

    Attributes
    ----------
    indicator_ : :class:`~sklearn.impute.MissingIndicator`
        Indicator used to add binary indicators for missing values. ``None`` if add_indicator
        is False.

    n_features_in_ : int
        Number of features seen during :term:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit` (only when X has string column names).

    Examples
    --------
    >>> import numpy as np
    >>> from knnkit.impute import KNNImputer
    >>> X = [[1, 2, np.nan], [3, 4, 3], [np.nan, 6, 5], [8, 8, 7]]
    >>> KNNImputer(n_neighbors=2).fit_transform(X)[0]
    array([1., 2., 4.])
    """

    _parameter_constraints: dict = {
        **_BaseImputer._parameter_constraints,
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "weights": [StrOptions({"uniform", "distance"}), callable, Hidden(None)],
        "metric": [StrOptions({"nan_euclidean"}), callable],
        "copy": ["boolean"],
    }

    def __init__(
        self,
        *,
        missing_values=np.nan,
        n_neighbors=5,
        weights="uniform",
        metric="nan_euclidean",
        copy=True,
        add_indicator=False,
        keep_empty_features=False,
    ):
        super().__init__(
            missing_values=missing_values,
            add_indicator=add_indicator,
            keep_empty_features=keep_empty_features,
        )
        self.n_neighbors = n_neighbors
        self.weights = weights
        self.metric = metric
        self.copy = copy

    def _calc_impute(self, dist_pot_donors, n_neighbors, fit_X_col, mask_fit_X_col):
        """Imputed values of one column for some receivers (one row of distances each)."""
        donors_dist, donors_idx = topk_rows(dist_pot_donors, n_neighbors)
        weight_matrix = _get_weights(donors_dist, self.weights)
        if weight_matrix is not None:
            weight_matrix[np.isnan(weight_matrix)] = 0.0
        else:
            weight_matrix = np.ones_like(donors_dist)
            weight_matrix[np.isnan(donors_dist)] = 0.0
        donors = fit_X_col.take(donors_idx)
        donors_mask = mask_fit_X_col.take(donors_idx)
        donors = np.ma.array(donors, mask=donors_mask)
        return np.ma.average(donors, axis=1, weights=weight_matrix).data

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit the imputer on X.

        Parameters
        ----------
        X : array-like shape of (n_samples, n_features)
            Input data, where `n_samples` is the number of samples and `n_features` is the
            number of features.

        y : Ignored
            Not used, present here for API consistency by convention.

        Returns
        -------
        self : object
            The fitted `KNNImputer` class instance.
        """
        ensure_all_finite = "allow-nan" if is_scalar_nan(self.missing_values) else True
        X = validate_data(
            self,
            X,
            accept_sparse=False,
            dtype=FLOAT_DTYPES,
            ensure_all_finite=ensure_all_finite,
            copy=self.copy,
        )
        self._fit_X = X
        self._mask_fit_X = _get_mask(self._fit_X, self.missing_values)
        self._valid_mask = ~np.all(self._mask_fit_X, axis=0)
        super()._fit_indicator(self._mask_fit_X)
        return self

    def _distances(self, rows, mask_rows, ensure_all_finite):
        """Distances of some rows of X to every fitted row (float64, NaN: nothing in common)."""
        if callable(self.metric):
            return np.asarray(
                pairwise_distances(
                    rows,
                    self._fit_X,
                    metric=self.metric,
                    ensure_all_finite=ensure_all_finite,
                    missing_values=self.missing_values,
                ),
                dtype=np.float64,
            )
        return nan_euclidean_chunk(rows, mask_rows, self._fit_X, self._mask_fit_X)

    def transform(self, X):
        """Impute all missing values in X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data to complete.

        Returns
        -------
        X : array-like of shape (n_samples, n_output_features)
            The imputed dataset. `n_output_features` is the number of features that is not
            always missing during `fit`.
        """
        check_is_fitted(self)
        ensure_all_finite = "allow-nan" if is_scalar_nan(self.missing_values) else True
        X = validate_data(
            self,
            X,
            accept_sparse=False,
            dtype=FLOAT_DTYPES,
            force_writeable=True,
            ensure_all_finite=ensure_all_finite,
            copy=self.copy,
            reset=False,
        )

        mask = _get_mask(X, self.missing_values)
        mask_fit_X = self._mask_fit_X
        valid_mask = self._valid_mask

        X_indicator = super()._transform_indicator(mask)

        if not np.any(mask[:, valid_mask]):
            # nothing to impute
            if self.keep_empty_features:
                Xc = X
                Xc[:, ~valid_mask] = 0
            else:
                Xc = X[:, valid_mask]
            return super()._concatenate_indicator(Xc, X_indicator)

        row_missing_idx = np.flatnonzero(mask[:, valid_mask].any(axis=1))
        non_missing_fix_X = np.logical_not(mask_fit_X)
        budget = int(get_config()["working_memory"] * 2**20)
        step = max(1, budget // (8 * _CHUNK_ARRAYS * self._fit_X.shape[0]))

        for start in range(0, row_missing_idx.shape[0], step):
            row_missing_chunk = row_missing_idx[start : start + step]
            dist_chunk = self._distances(
                X[row_missing_chunk], mask[row_missing_chunk], ensure_all_finite
            )
            for col in range(X.shape[1]):
                if not valid_mask[col]:
                    continue  # all missing at fit
                col_mask = mask[row_missing_chunk, col]
                if not np.any(col_mask):
                    continue  # nothing missing in this column
                (potential_donors_idx,) = np.nonzero(non_missing_fix_X[:, col])
                local = np.flatnonzero(col_mask)  # receivers, as rows of dist_chunk
                receivers_idx = row_missing_chunk[local]
                dist_subset = dist_chunk[local][:, potential_donors_idx]

                # receivers with all distances NaN get the column mean
                all_nan_dist_mask = np.isnan(dist_subset).all(axis=1)
                all_nan_receivers_idx = receivers_idx[all_nan_dist_mask]
                if all_nan_receivers_idx.size:
                    col_mean = np.ma.array(self._fit_X[:, col], mask=mask_fit_X[:, col]).mean()
                    X[all_nan_receivers_idx, col] = col_mean
                    if len(all_nan_receivers_idx) == len(receivers_idx):
                        continue
                    receivers_idx = receivers_idx[~all_nan_dist_mask]
                    dist_subset = dist_subset[~all_nan_dist_mask]

                n_neighbors = min(self.n_neighbors, len(potential_donors_idx))
                X[receivers_idx, col] = self._calc_impute(
                    dist_subset,
                    n_neighbors,
                    self._fit_X[potential_donors_idx, col],
                    mask_fit_X[potential_donors_idx, col],
                )

        if self.keep_empty_features:
            Xc = X
            Xc[:, ~valid_mask] = 0
        else:
            Xc = X[:, valid_mask]
        return super()._concatenate_indicator(Xc, X_indicator)

    def get_feature_names_out(self, input_features=None):
        """Get output feature names for transformation.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Input features. If `None`, `feature_names_in_` is used if defined, else
            ``["x0", "x1", ..., "x(n_features_in_ - 1)"]``; an array-like must match
            `feature_names_in_` if that is defined.

        Returns
        -------
        feature_names_out : ndarray of str objects
            Transformed feature names.
        """
        check_is_fitted(self, "n_features_in_")
        input_features = _check_feature_names_in(self, input_features)
        names = input_features[self._valid_mask]
        return self._concatenate_indicator_feature_names_out(names, input_features)


__all__ = ["KNNImputer"]
