"""select_k gives GridSearchCV's scores with one neighbour search per fold."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.neighbors import KNeighborsClassifier as SkClassifier
from sklearn.neighbors import KNeighborsRegressor as SkRegressor

from knnkit.model_selection import select_k


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_classifier_scores_equal_grid_search(weights):
    X, y = load_iris(return_X_y=True)
    ks = [1, 2, 5, 9, 20]
    table = select_k(X, y, ks=ks, cv=5, weights=weights)
    grid = GridSearchCV(SkClassifier(weights=weights), {"n_neighbors": ks}, cv=5).fit(X, y)
    np.testing.assert_allclose(table.mean_scores, grid.cv_results_["mean_test_score"])
    assert table.best_k == grid.best_params_["n_neighbors"]
    assert "best" in str(table)


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_regressor_scores_equal_grid_search(weights):
    X, y = load_diabetes(return_X_y=True)
    ks = [1, 3, 10]
    cv = KFold(4, shuffle=True, random_state=0)
    table = select_k(X, y, ks=ks, cv=cv, weights=weights)
    grid = GridSearchCV(SkRegressor(weights=weights), {"n_neighbors": ks}, cv=cv).fit(X, y)
    np.testing.assert_allclose(table.mean_scores, grid.cv_results_["mean_test_score"], rtol=1e-10)


def test_bad_arguments():
    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match="ks"):
        select_k(X, y, ks=[0, 1])
    with pytest.raises(ValueError, match="weights"):
        select_k(X, y, ks=[1], weights="bogus")
    with pytest.raises(ValueError, match="exceeds"):
        select_k(X[:20], y[:20], ks=[50], cv=2)
