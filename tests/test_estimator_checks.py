"""scikit-learn's own estimator checks on the knnkit neighbour estimators (no expected failures)."""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from knnkit.neighbors import KNeighborsClassifier, KNeighborsRegressor, NearestNeighbors

ESTIMATORS = [
    NearestNeighbors(),
    KNeighborsClassifier(),
    KNeighborsRegressor(),
    # Other engine paths: weighted votes, another native metric, the block-wise slow path.
    KNeighborsClassifier(weights="distance", metric="cosine"),
    KNeighborsRegressor(weights="distance", metric="manhattan"),
    NearestNeighbors(metric="braycurtis"),
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
