"""``NeighborhoodComponentsAnalysis``: scikit-learn's NCA with a loss computed in row blocks.

scikit-learn's NCA builds three (n_samples x n_samples) matrices per L-BFGS step (the class
mask, the softmax of the embedded distances, and the gradient weights), so its memory grows as
n². Here the loss and its gradient are accumulated one block of rows at a time, with the
block sized by ``working_memory``:

- ``p_ij = softmax_j(-|L x_i - L x_j|²)`` (``p_ii = 0``) for the block's rows;
- ``p_i = sum_j p_ij [y_i = y_j]``, ``loss = sum_i p_i``;
- with ``A = p_ij [y_i = y_j] - p_ij p_i`` and ``W = A + Aᵀ - diag(colsum A)``, the gradient
  ``2 (X L)ᵀ W X`` splits into ``sum_b (X_b L)ᵀ (A_b X) + (A_b X L)ᵀ X_b`` and a diagonal term.

Same arithmetic as scikit-learn up to summation order, so the optimiser follows the same path
(the components agree to rounding); memory is O(block * n_samples). Validation,
initialisation (auto/pca/lda/identity/random/array), callbacks, verbosity and ``transform`` are
scikit-learn's (this class extends it).
"""

from __future__ import annotations

import sys
import time
from warnings import warn

import numpy as np
from scipy.optimize import minimize
from sklearn import get_config
from sklearn.base import _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics.pairwise import euclidean_distances
from sklearn.neighbors._nca import NeighborhoodComponentsAnalysis as _SkNCA
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.extmath import row_norms, softmax
from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.random import check_random_state
from sklearn.utils.validation import check_array, validate_data

#: float64 (block x n_samples) arrays alive at once while a block's loss is computed.
_BLOCK_ARRAYS = 6


class NeighborhoodComponentsAnalysis(_SkNCA):
    """Neighborhood Components Analysis, with memory linear in the number of samples.

    Learns a linear transformation that maximises the expected leave-one-out accuracy of a
    stochastic nearest-neighbour rule in the transformed space. Same parameters, attributes
    and results as ``sklearn.neighbors.NeighborhoodComponentsAnalysis``, whose n² matrices
    are replaced by a row-blocked loss (see the module docstring).

    Parameters
    ----------
    n_components : int, default=None
        Preferred dimensionality of the projected space. If None it will be set to
        ``n_features``.

    init : {'auto', 'pca', 'lda', 'identity', 'random'} or ndarray of shape \
            (n_features_a, n_features_b), default='auto'
        Initialization of the linear transformation ('auto': 'lda' if possible, else 'pca',
        else 'identity'; or an array whose rows are the initial components).

    warm_start : bool, default=False
        If True and :meth:`fit` has been called before, start from the previous solution.

    max_iter : int, default=50
        Maximum number of iterations in the optimization.

    tol : float, default=1e-5
        Convergence tolerance for the optimization.

    callback : callable, default=None
        Called after each iteration as ``callback(transformation, n_iter)``.

    verbose : int, default=0
        Progress messages are printed to stdout when > 0 (and the optimiser's when > 1).

    random_state : int or numpy.RandomState, default=None
        Seeds the 'random' and 'pca' initialisations.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        The linear transformation learned during fitting.

    n_features_in_ : int
        Number of features seen during :term:`fit`.

    n_iter_ : int
        Counts the number of iterations performed by the optimizer.

    random_state_ : numpy.RandomState
        Pseudo random number generator object used during initialization.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit` (only when X has string column names).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from knnkit.neighbors import KNeighborsClassifier, NeighborhoodComponentsAnalysis
    >>> X, y = load_iris(return_X_y=True)
    >>> nca = NeighborhoodComponentsAnalysis(n_components=2, random_state=0).fit(X, y)
    >>> nca.transform(X).shape
    (150, 2)
    >>> knn = KNeighborsClassifier(n_neighbors=3).fit(nca.transform(X), y)
    >>> round(knn.score(nca.transform(X), y), 2)
    1.0
    """

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fit the model according to the given training data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The training samples.

        y : array-like of shape (n_samples,)
            The corresponding training labels.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        X, y = validate_data(self, X, y, ensure_min_samples=2)
        check_classification_targets(y)
        y = LabelEncoder().fit_transform(y)

        if self.n_components is not None and self.n_components > X.shape[1]:
            raise ValueError(
                "The preferred dimensionality of the "
                f"projected space `n_components` ({self.n_components}) cannot "
                "be greater than the given data "
                f"dimensionality ({X.shape[1]})!"
            )
        if (
            self.warm_start
            and hasattr(self, "components_")
            and self.components_.shape[1] != X.shape[1]
        ):
            raise ValueError(
                f"The new inputs dimensionality ({X.shape[1]}) does not "
                "match the input dimensionality of the "
                f"previously learned transformation ({self.components_.shape[1]})."
            )

        init = self.init
        if isinstance(init, np.ndarray):
            init = check_array(init)
            if init.shape[1] != X.shape[1]:
                raise ValueError(
                    f"The input dimensionality ({init.shape[1]}) of the given "
                    "linear transformation `init` must match the "
                    f"dimensionality of the given inputs `X` ({X.shape[1]})."
                )
            if init.shape[0] > init.shape[1]:
                raise ValueError(
                    f"The output dimensionality ({init.shape[0]}) of the given "
                    "linear transformation `init` cannot be "
                    f"greater than its input dimensionality ({init.shape[1]})."
                )
            if self.n_components is not None and self.n_components != init.shape[0]:
                raise ValueError(
                    "The preferred dimensionality of the "
                    f"projected space `n_components` ({self.n_components}) does"
                    " not match the output dimensionality of "
                    "the given linear transformation "
                    f"`init` ({init.shape[0]})!"
                )

        self.random_state_ = check_random_state(self.random_state)
        t_train = time.time()
        transformation = np.ravel(self._initialize(X, y, init))

        disp = self.verbose - 2 if self.verbose > 1 else -1
        self.n_iter_ = 0
        opt_result = minimize(
            method="L-BFGS-B",
            fun=self._loss_grad_lbfgs,
            args=(X, y, -1.0),
            jac=True,
            x0=transformation,
            tol=self.tol,
            options=dict(maxiter=self.max_iter, **_get_additional_lbfgs_options_dict("disp", disp)),
            callback=self._callback,
        )
        self.components_ = opt_result.x.reshape(-1, X.shape[1])

        t_train = time.time() - t_train
        if self.verbose:
            cls_name = self.__class__.__name__
            if not opt_result.success:
                warn(
                    f"[{cls_name}] NCA did not converge: {opt_result.message}",
                    ConvergenceWarning,
                    stacklevel=2,
                )
            print(f"[{cls_name}] Training took {t_train:8.2f}s.")
        return self

    def _loss_grad_lbfgs(self, transformation, X, y, sign=1.0):
        """The loss and its gradient w.r.t. the raveled ``transformation``, in row blocks.

        Parameters
        ----------
        transformation : ndarray of shape (n_components * n_features,)
            The raveled linear transformation.
        X : ndarray of shape (n_samples, n_features)
            The training samples.
        y : ndarray of shape (n_samples,)
            The encoded training labels (scikit-learn passes the n² mask of equal labels).
        sign : float, default=1.0
            Multiplies the loss and gradient (-1 to maximise with a minimiser).

        Returns
        -------
        loss : float
        gradient : ndarray of shape (n_components * n_features,)
        """
        if self.n_iter_ == 0:
            self.n_iter_ += 1
            if self.verbose:
                header_fields = ["Iteration", "Objective Value", "Time(s)"]
                header_fmt = "{:>10} {:>20} {:>10}"
                header = header_fmt.format(*header_fields)
                cls_name = self.__class__.__name__
                print(f"[{cls_name}]")
                print(f"[{cls_name}] {header}\n[{cls_name}] {'-' * len(header)}")

        t_funcall = time.time()
        n_samples = X.shape[0]
        transformation = transformation.reshape(-1, X.shape[1])
        X_embedded = np.dot(X, transformation.T)  # (n_samples, n_components)
        sq_norms = row_norms(X_embedded, squared=True)

        budget = int(get_config()["working_memory"] * 2**20)
        step = max(1, budget // (8 * _BLOCK_ARRAYS * n_samples))
        loss = 0.0
        col_sums = np.zeros(n_samples)
        gradient = np.zeros((X_embedded.shape[1], X.shape[1]))
        for start in range(0, n_samples, step):
            stop = min(start + step, n_samples)
            block = slice(start, stop)
            p_ij = euclidean_distances(
                X_embedded[block],
                X_embedded,
                X_norm_squared=sq_norms[block, None],
                Y_norm_squared=sq_norms[None, :],
                squared=True,
            )
            p_ij[np.arange(stop - start), np.arange(start, stop)] = np.inf
            p_ij = softmax(-p_ij)  # (block, n_samples)
            masked_p_ij = p_ij * (y[block, None] == y[None, :])
            p = np.sum(masked_p_ij, axis=1, keepdims=True)  # (block, 1)
            loss += np.sum(p)
            weighted_p_ij = masked_p_ij - p_ij * p
            col_sums += weighted_p_ij.sum(axis=0)
            gradient += X_embedded[block].T.dot(weighted_p_ij.dot(X))
            gradient += weighted_p_ij.dot(X_embedded).T.dot(X[block])
        gradient -= (X_embedded * col_sums[:, None]).T.dot(X)
        gradient *= 2

        if self.verbose:
            t_funcall = time.time() - t_funcall
            values_fmt = "[{}] {:>10} {:>20.6e} {:>10.2f}"
            print(values_fmt.format(self.__class__.__name__, self.n_iter_, loss, t_funcall))
            sys.stdout.flush()

        return sign * loss, sign * gradient.ravel()
