"""``KernelDensity``: scikit-learn's kernel density estimator on knnkit's trees.

Design: as scikit-learn, ``fit`` builds a tree (``tree_``: a knnkit
:class:`~knnkit.neighbors.KDTree` or :class:`~knnkit.neighbors.BallTree`, chosen as scikit-learn
chooses: ``kd_tree`` for its metrics under ``algorithm="auto"``, else ``ball_tree``) and
``score_samples`` asks it for ``kernel_density`` with ``atol * N`` and ``rtol``, so nodes whose
contribution is known within the tolerance are not opened (the Rust trees, in parallel over
queries).

Where knnkit's trees would only wrap scikit-learn's own (metrics outside the minkowski family,
weighted minkowski), the sums are taken exactly by knnkit's native exact engine instead
(:class:`~knnkit.neighbors._search.ExactSearch`): the distances come as a flat radius result,
block by block of queries so a block holds at most ``working_memory`` worth of (query, sample)
pairs, and each query's sum is taken in log space (max-shifted, so narrow Gaussian kernels do
not underflow). Compact kernels (tophat, epanechnikov, linear, cosine) only ask the engine for
the samples within the bandwidth. An exact sum meets any ``atol``/``rtol``.

Cost: the tree's, O(n log n d) to build and sub-linear per query for loose tolerances; the exact
path O(n_queries * n_samples * n_features), memory bounded by ``working_memory``.
"""

from __future__ import annotations

import itertools
import math
from numbers import Integral, Real

import numpy as np
from scipy.special import gammainc
from sklearn import get_config
from sklearn.base import BaseEstimator, _fit_context
from sklearn.neighbors import VALID_METRICS
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.extmath import row_norms
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from knnkit.neighbors._base import check_extra_params
from knnkit.neighbors._metrics import effective_metric, resolve
from knnkit.neighbors._search import ExactSearch
from knnkit.neighbors._tree_search import TREES

VALID_KERNELS = ["gaussian", "tophat", "epanechnikov", "exponential", "linear", "cosine"]

#: Kernels that vanish at and beyond the bandwidth (only samples within it are searched).
_COMPACT_KERNELS = frozenset({"tophat", "epanechnikov", "linear", "cosine"})

_TREE_METRICS = {"kd_tree": VALID_METRICS["kd_tree"], "ball_tree": VALID_METRICS["ball_tree"]}

#: Bytes held per (query, sample) pair while a block is summed.
_BYTES_PER_PAIR = 64


def _log_vn(n: int) -> float:
    """log of the volume of the unit n-ball."""
    return 0.5 * n * math.log(math.pi) - math.lgamma(0.5 * n + 1)


def _log_sn(n: int) -> float:
    """log of the surface of the unit n-sphere."""
    return math.log(2 * math.pi) + _log_vn(n - 1)


def log_kernel_norm(h: float, d: int, kernel: str) -> float:
    """log of the factor that makes ``kernel`` (with ``K(0) = 1``) integrate to 1 in ``d``
    dimensions with bandwidth ``h`` (scikit-learn's ``kernel_norm(..., return_log=True)``).

    Examples
    --------
    >>> round(float(np.exp(log_kernel_norm(1.0, 1, "gaussian"))), 6)  # 1 / sqrt(2 pi)
    0.398942
    >>> round(float(np.exp(log_kernel_norm(2.0, 1, "tophat"))), 12)  # 1 / (2 h)
    0.25
    """
    if kernel == "gaussian":
        factor = 0.5 * d * math.log(2 * math.pi)
    elif kernel == "tophat":
        factor = _log_vn(d)
    elif kernel == "epanechnikov":
        factor = _log_vn(d) + math.log(2.0 / (d + 2.0))
    elif kernel == "exponential":
        factor = _log_sn(d - 1) + math.lgamma(d)
    elif kernel == "linear":
        factor = _log_vn(d) - math.log(d + 1.0)
    elif kernel == "cosine":
        # from a chain-rule integration, as scikit-learn
        total = 0.0
        tmp = 2.0 / math.pi
        for k in range(1, d + 1, 2):
            total += tmp
            tmp *= -(d - k) * (d - k - 1) * (2.0 / math.pi) ** 2
        factor = (math.log(total) if total > 0 else math.nan) + _log_sn(d - 1)
    else:
        raise ValueError(f"kernel = '{kernel}' not recognized")
    return -factor - d * math.log(h)


def log_kernel(dist: np.ndarray, h: float, kernel: str) -> np.ndarray:
    """log of the unnormalised kernel (``K(0) = 1``) at distances ``dist``, float64.

    Examples
    --------
    >>> log_kernel(np.array([0.0, 1.0, 2.0]), 2.0, "linear")
    array([ 0.        , -0.69314718,        -inf])
    """
    dist = np.asarray(dist, dtype=np.float64)
    if kernel == "gaussian":
        return -0.5 * (dist * dist) / (h * h)
    if kernel == "exponential":
        return -dist / h
    out = np.full(dist.shape, -np.inf)
    inside = dist < h
    d = dist[inside]
    if kernel == "tophat":
        out[inside] = 0.0
    elif kernel == "epanechnikov":
        out[inside] = np.log(1.0 - (d * d) / (h * h))
    elif kernel == "linear":
        out[inside] = np.log(1 - d / h)
    elif kernel == "cosine":
        out[inside] = np.log(np.cos(0.5 * np.pi * d / h))
    else:
        raise ValueError(f"kernel = '{kernel}' not recognized")
    return out


def _row_logsumexp(values: np.ndarray, lims: np.ndarray) -> np.ndarray:
    """``log(sum(exp(values[lims[i]:lims[i+1]])))`` for every row; -inf for an empty row."""
    n_rows = len(lims) - 1
    counts = np.diff(lims)
    top = np.full(n_rows, -np.inf)
    nonempty = counts > 0
    if values.size:
        top[nonempty] = np.maximum.reduceat(values, lims[:-1][nonempty])
    shift = np.where(np.isfinite(top), top, 0.0)
    rows = np.repeat(np.arange(n_rows), counts)
    sums = np.bincount(rows, weights=np.exp(values - shift[rows]), minlength=n_rows)
    with np.errstate(divide="ignore"):
        return np.log(sums) + shift


class KernelDensity(BaseEstimator):
    """Kernel Density Estimation on knnkit's KD-tree and ball tree.

    Same parameters, results and errors as ``sklearn.neighbors.KernelDensity``: six kernels,
    a number or ``'scott'`` / ``'silverman'`` for the bandwidth, sample weights,
    ``score_samples``, ``score`` and ``sample``; the tree's sums meet ``atol`` / ``rtol`` (see
    the module docstring).

    Parameters
    ----------
    bandwidth : float or {"scott", "silverman"}, default=1.0
        The bandwidth of the kernel: a positive number, or the rule of thumb of Scott
        (``n ** (-1 / (d + 4))``) or Silverman (``(n * (d + 2) / 4) ** (-1 / (d + 4))``).

    algorithm : {'kd_tree', 'ball_tree', 'auto'}, default='auto'
        The tree (``auto``: the KD-tree when it supports the metric, else the ball tree), as
        in scikit-learn.

    kernel : {'gaussian', 'tophat', 'epanechnikov', 'exponential', 'linear', \
            'cosine'}, default='gaussian'
        The kernel to use.

    metric : str, default='euclidean'
        A metric of scikit-learn's KD or ball tree (``sklearn.neighbors.VALID_METRICS``). The
        normalisation assumes the euclidean metric, as in scikit-learn.

    atol : float, default=0
        Absolute tolerance of the result (>= 0): a larger one lets the tree prune more.

    rtol : float, default=0
        Relative tolerance of the result (>= 0).

    breadth_first : bool, default=True
        Visit the tree's nodes nearest first (True) or depth first.

    leaf_size : int, default=40
        Leaf size of the tree.

    metric_params : dict, default=None
        Additional parameters to be passed to the metric (e.g. ``{'p': 3}`` for minkowski).

    algo_params : dict, default=None
        Parameters of an approximate algorithm; must be None (or empty) for the exact one.

    device : None, default=None
        Where the sums run: knnkit's CPU engines (the torch backend has no kernel sums); any
        other value raises ``ValueError``.

    Attributes
    ----------
    n_features_in_ : int
        Number of features seen during :term:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit` (only when X has string column names).

    bandwidth_ : float
        Value of the bandwidth, given directly by the bandwidth parameter or estimated using
        the 'scott' or 'silverman' method.

    tree_ : KDTree or BallTree
        The knnkit tree the density is computed on (scikit-learn's attribute).

    Notes
    -----
    The bandwidth rules are computed after validating X, so a list works with ``'scott'`` and
    ``'silverman'`` too (scikit-learn reads ``X.shape`` first). For metrics outside the
    minkowski family the sums are exact, from knnkit's native exact engine (see the module
    docstring).

    Examples
    --------
    >>> import numpy as np
    >>> from knnkit.neighbors import KernelDensity
    >>> rng = np.random.RandomState(42)
    >>> X = rng.random_sample((100, 3))
    >>> kde = KernelDensity(kernel='gaussian', bandwidth=0.5).fit(X)
    >>> kde.score_samples(X[:3])
    array([-1.5295..., -1.5146..., -1.6024...])
    """

    _parameter_constraints: dict = {
        "bandwidth": [
            Interval(Real, 0, None, closed="neither"),
            StrOptions({"scott", "silverman"}),
        ],
        "algorithm": [StrOptions({"kd_tree", "ball_tree", "auto"})],
        "kernel": [StrOptions(set(VALID_KERNELS))],
        "metric": [StrOptions(set(itertools.chain(*_TREE_METRICS.values())))],
        "atol": [Interval(Real, 0, None, closed="left")],
        "rtol": [Interval(Real, 0, None, closed="left")],
        "breadth_first": ["boolean"],
        "leaf_size": [Interval(Integral, 1, None, closed="left")],
        "metric_params": [None, dict],
        "algo_params": [dict, None],
        "device": "no_validation",  # checked in fit: only None
    }

    def __init__(
        self,
        *,
        bandwidth=1.0,
        algorithm="auto",
        kernel="gaussian",
        metric="euclidean",
        atol=0,
        rtol=0,
        breadth_first=True,
        leaf_size=40,
        metric_params=None,
        algo_params=None,
        device=None,
    ):
        self.algorithm = algorithm
        self.bandwidth = bandwidth
        self.kernel = kernel
        self.metric = metric
        self.atol = atol
        self.rtol = rtol
        self.breadth_first = breadth_first
        self.leaf_size = leaf_size
        self.metric_params = metric_params
        self.algo_params = algo_params
        self.device = device

    def _choose_algorithm(self, algorithm, metric):
        """scikit-learn's tree choice, kept for its validation of (algorithm, metric)."""
        if algorithm == "auto":
            return "kd_tree" if metric in _TREE_METRICS["kd_tree"] else "ball_tree"
        if metric not in _TREE_METRICS[algorithm]:
            raise ValueError(f"invalid metric for {algorithm}: '{metric}'")
        return algorithm

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None, sample_weight=None):
        """Fit the Kernel Density model on the data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            List of n_features-dimensional data points. Each row corresponds to a single data
            point.

        y : None
            Ignored. This parameter exists only for compatibility with
            :class:`~sklearn.pipeline.Pipeline`.

        sample_weight : array-like of shape (n_samples,), default=None
            List of sample weights attached to the data X (non-negative).

        Returns
        -------
        self : object
            Returns the instance itself.
        """
        if self.device is not None:
            raise ValueError(
                f"device={self.device!r}: KernelDensity runs on knnkit's CPU engines only (the "
                "torch backend has no kernel sums); use device=None"
            )
        check_extra_params(None, self.algo_params, self.algorithm)
        algorithm = self._choose_algorithm(self.algorithm, self.metric)

        X = validate_data(self, X, order="C", dtype=np.float64)
        n, d = X.shape
        if isinstance(self.bandwidth, str):
            if self.bandwidth == "scott":
                self.bandwidth_ = n ** (-1 / (d + 4))
            else:  # silverman
                self.bandwidth_ = (n * (d + 2) / 4) ** (-1 / (d + 4))
        else:
            self.bandwidth_ = self.bandwidth

        if sample_weight is not None:
            sample_weight = _check_sample_weight(
                sample_weight, X, dtype=np.float64, ensure_non_negative=True
            )

        kwargs = {} if self.metric_params is None else self.metric_params
        self.tree_ = TREES[algorithm](
            X,
            metric=self.metric,
            leaf_size=self.leaf_size,
            sample_weight=sample_weight,
            **kwargs,
        )
        self._index = None
        if self.tree_._fallback is not None:
            # scikit-learn's tree, wrapped: knnkit's exact engine is native (and exact) here.
            metric, params = effective_metric(self.metric, 2, self.metric_params)
            self._index = ExactSearch(resolve(metric, params, d), X)
        self._fit_X = X
        self._sample_weight = sample_weight
        return self

    def _log_kernel_sums(self, X: np.ndarray) -> np.ndarray:
        """``log(sum_j w_j K(d(x, x_j)))`` for every row of X (unnormalised kernel)."""
        n_queries = X.shape[0]
        h = float(self.bandwidth_)
        radius = h if self.kernel in _COMPACT_KERNELS else np.inf
        log_w = None
        if self._sample_weight is not None:
            with np.errstate(divide="ignore"):
                log_w = np.log(self._sample_weight)
        budget = int(get_config()["working_memory"] * 2**20)
        step = max(1, budget // (_BYTES_PER_PAIR * self._fit_X.shape[0]))
        out = np.empty(n_queries)
        for start in range(0, n_queries, step):
            stop = min(start + step, n_queries)
            lims, dist, ind = self._index.radius_neighbors(X[start:stop], radius, False, None)
            values = log_kernel(dist, h, self.kernel)
            if log_w is not None:
                values += log_w[ind]
            out[start:stop] = _row_logsumexp(values, lims)
        return out

    def score_samples(self, X):
        """Compute the log-likelihood of each sample under the model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            An array of points to query. Last dimension should match dimension of training
            data (n_features).

        Returns
        -------
        density : ndarray of shape (n_samples,)
            Log-likelihood of each sample in `X`. These are normalized to be probability
            densities, so values will be low for high-dimensional data.
        """
        check_is_fitted(self)
        X = validate_data(self, X, order="C", dtype=np.float64, reset=False)
        if self._sample_weight is None:
            N = self._fit_X.shape[0]
        else:
            N = self._sample_weight.sum()
        if self._index is None:
            log_density = self.tree_.kernel_density(
                X,
                h=self.bandwidth_,
                kernel=self.kernel,
                atol=self.atol * N,
                rtol=self.rtol,
                breadth_first=self.breadth_first,
                return_log=True,
            )
            return np.asarray(log_density, dtype=np.float64) - np.log(N)
        log_density = self._log_kernel_sums(X)
        log_density += log_kernel_norm(
            float(self.bandwidth_), self._fit_X.shape[1], self.kernel
        ) - np.log(N)
        return log_density

    def score(self, X, y=None):
        """Compute the total log-likelihood under the model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            List of n_features-dimensional data points. Each row corresponds to a single data
            point.

        y : None
            Ignored. This parameter exists only for compatibility with
            :class:`~sklearn.pipeline.Pipeline`.

        Returns
        -------
        logprob : float
            Total log-likelihood of the data in X. This is normalized to be a probability
            density, so the value will be low for high-dimensional data.
        """
        return np.sum(self.score_samples(X))

    def sample(self, n_samples=1, random_state=None):
        """Generate random samples from the model.

        Implemented for the gaussian and tophat kernels (``NotImplementedError`` otherwise,
        as scikit-learn); the same ``random_state`` gives the same samples as scikit-learn.

        Parameters
        ----------
        n_samples : int, default=1
            Number of samples to generate.

        random_state : int, RandomState instance or None, default=None
            Determines random number generation used to generate random samples. Pass an int
            for reproducible results across multiple function calls.

        Returns
        -------
        X : array-like of shape (n_samples, n_features)
            List of samples.
        """
        check_is_fitted(self)
        if self.kernel not in ["gaussian", "tophat"]:
            raise NotImplementedError()

        data = self._fit_X
        rng = check_random_state(random_state)
        u = rng.uniform(0, 1, size=n_samples)
        if self._sample_weight is None:
            i = (u * data.shape[0]).astype(np.int64)
        else:
            cumsum_weight = np.cumsum(self._sample_weight)
            sum_weight = cumsum_weight[-1]
            i = np.searchsorted(cumsum_weight, u * sum_weight)
        if self.kernel == "gaussian":
            return np.atleast_2d(rng.normal(data[i], self.bandwidth_))

        # tophat: points from a d-dimensional normal distribution, mapped to a uniform
        # d-dimensional ball with the incomplete gamma function
        dim = data.shape[1]
        X = rng.normal(size=(n_samples, dim))
        s_sq = row_norms(X, squared=True)
        correction = (
            gammainc(0.5 * dim, 0.5 * s_sq) ** (1.0 / dim) * self.bandwidth_ / np.sqrt(s_sq)
        )
        return data[i] + X * correction[:, np.newaxis]
