"""scikit-learn's own estimator checks on the knnkit neighbour estimators and the imputer
(no expected failures), on the native engines and on the torch backend's CPU device.

scikit-learn marks ``check_methods_sample_order_invariance`` "not applicable" to its own
neighbour transformers; knnkit's pass it, so it is not skipped here.
"""

from __future__ import annotations

import importlib.util

from sklearn.utils.estimator_checks import parametrize_with_checks

from knnkit.impute import KNNImputer
from knnkit.neighbors import (
    KernelDensity,
    KNeighborsClassifier,
    KNeighborsRegressor,
    KNeighborsTransformer,
    LocalOutlierFactor,
    NearestCentroid,
    NearestNeighbors,
    NeighborhoodComponentsAnalysis,
    RadiusNeighborsClassifier,
    RadiusNeighborsRegressor,
    RadiusNeighborsTransformer,
)

ESTIMATORS = [
    NearestNeighbors(),
    KNeighborsClassifier(),
    KNeighborsRegressor(),
    # Other engine paths: weighted votes, another native metric, the block-wise slow path.
    KNeighborsClassifier(weights="distance", metric="cosine"),
    KNeighborsRegressor(weights="distance", metric="manhattan"),
    NearestNeighbors(metric="braycurtis"),
    RadiusNeighborsClassifier(),
    RadiusNeighborsClassifier(weights="distance", outlier_label="most_frequent"),
    RadiusNeighborsRegressor(),
    RadiusNeighborsRegressor(weights="distance", metric="manhattan"),
    KNeighborsTransformer(),
    RadiusNeighborsTransformer(),
    # the checks fit on as few as 15 samples, where n_neighbors=20 warns (as scikit-learn)
    LocalOutlierFactor(n_neighbors=10),
    LocalOutlierFactor(n_neighbors=5, novelty=True, metric="chebyshev"),
    KernelDensity(),
    KernelDensity(kernel="epanechnikov", bandwidth="scott"),
    NearestCentroid(),
    NearestCentroid(metric="manhattan", priors="empirical"),
    NeighborhoodComponentsAnalysis(max_iter=5),
    KNNImputer(),
]
if importlib.util.find_spec("torch") is not None:
    # the torch backend (device=): the same checks through the device engine
    ESTIMATORS += [
        NearestNeighbors(device="cpu"),
        KNeighborsClassifier(weights="distance", device="cpu"),
        KNeighborsRegressor(device="cpu", metric="cosine"),
        RadiusNeighborsClassifier(outlier_label="most_frequent", device="cpu"),
        KNeighborsTransformer(device="cpu"),
        LocalOutlierFactor(n_neighbors=5, novelty=True, device="cpu"),
    ]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
