"""scikit-learn-identical neighbour estimators on knnkit's exact Rust engine, with approximate
search (``algorithm="hnsw"`` or ``"ivf"``, parameters in ``algo_params``) as an option.

Every public name of ``sklearn.neighbors`` has a counterpart here (``KDTree`` and ``BallTree``
run in Rust; ``VALID_METRICS`` adds the approximate algorithms' metrics): the estimators take scikit-learn's parameters (plus ``algo_params`` and ``device`` where they take
``algorithm``), give the same answers, and pass ``sklearn.utils.estimator_checks``; searches run
on ``knnkit._core`` with the GIL released, votes and averages are vectorised, and radius results
stay in flat CSR form (no Python object per query) unless scikit-learn's arrays of arrays are
asked for.

Examples
--------
>>> from knnkit.neighbors import KNeighborsClassifier
>>> clf = KNeighborsClassifier(n_neighbors=1).fit([[0.0], [1.0]], ["a", "b"])
>>> clf.predict([[0.2], [0.9]]).tolist()
['a', 'b']
"""

import sklearn.neighbors as _skn

from knnkit.neighbors._base import MAX_DENSE_BYTES, sort_graph_by_row_values
from knnkit.neighbors._classification import KNeighborsClassifier, RadiusNeighborsClassifier
from knnkit.neighbors._graph import (
    KNeighborsTransformer,
    RadiusNeighborsTransformer,
    kneighbors_graph,
    radius_neighbors_graph,
)
from knnkit.neighbors._kde import KernelDensity
from knnkit.neighbors._lof import LocalOutlierFactor
from knnkit.neighbors._metrics import NATIVE_METRICS
from knnkit.neighbors._nca import NeighborhoodComponentsAnalysis
from knnkit.neighbors._nearest_centroid import NearestCentroid
from knnkit.neighbors._regression import KNeighborsRegressor, RadiusNeighborsRegressor
from knnkit.neighbors._tree import BallTree, KDTree
from knnkit.neighbors._unsupervised import NearestNeighbors

#: Metrics each ``algorithm`` accepts: scikit-learn's, plus the approximate indexes'.
VALID_METRICS: dict[str, list[str]] = {
    **{k: list(v) for k, v in _skn.VALID_METRICS.items()},
    "hnsw": ["cosine", "euclidean", "l2", "minkowski", "sqeuclidean"],
    "ivf": ["cosine", "euclidean", "l2", "minkowski", "sqeuclidean"],
}
#: Metrics each ``algorithm`` accepts with scipy sparse input (as scikit-learn).
VALID_METRICS_SPARSE: dict[str, list[str]] = {
    k: list(v) for k, v in _skn.VALID_METRICS_SPARSE.items()
}

__all__ = [
    "MAX_DENSE_BYTES",
    "NATIVE_METRICS",
    "VALID_METRICS",
    "VALID_METRICS_SPARSE",
    "BallTree",
    "KDTree",
    "KNeighborsClassifier",
    "KNeighborsRegressor",
    "KNeighborsTransformer",
    "KernelDensity",
    "LocalOutlierFactor",
    "NearestCentroid",
    "NearestNeighbors",
    "NeighborhoodComponentsAnalysis",
    "RadiusNeighborsClassifier",
    "RadiusNeighborsRegressor",
    "RadiusNeighborsTransformer",
    "kneighbors_graph",
    "radius_neighbors_graph",
    "sort_graph_by_row_values",
]
