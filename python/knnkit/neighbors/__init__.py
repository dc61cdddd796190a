"""scikit-learn-identical neighbour estimators on knnkit's exact Rust engine.

``NearestNeighbors``, ``KNeighborsClassifier`` and ``KNeighborsRegressor`` take scikit-learn's
parameters (plus ``algo_params`` and ``device``), give the same answers, and pass
``sklearn.utils.estimator_checks``; searches run on ``knnkit._core`` with the GIL released, and
voting is vectorised.

Examples
--------
>>> from knnkit.neighbors import KNeighborsClassifier
>>> clf = KNeighborsClassifier(n_neighbors=1).fit([[0.0], [1.0]], ["a", "b"])
>>> clf.predict([[0.2], [0.9]]).tolist()
['a', 'b']
"""

from knnkit.neighbors._base import MAX_DENSE_BYTES
from knnkit.neighbors._classification import KNeighborsClassifier
from knnkit.neighbors._metrics import NATIVE_METRICS
from knnkit.neighbors._regression import KNeighborsRegressor
from knnkit.neighbors._tree import BallTree, KDTree
from knnkit.neighbors._unsupervised import NearestNeighbors

__all__ = [
    "MAX_DENSE_BYTES",
    "BallTree",
    "KDTree",
    "NATIVE_METRICS",
    "KNeighborsClassifier",
    "KNeighborsRegressor",
    "NearestNeighbors",
]
