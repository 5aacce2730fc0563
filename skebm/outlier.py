"""EnergyOutlierDetector: flag the rows a fitted density finds least likely."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from skebm.estimator import EnergyDensityEstimator
from skebm.utils._sklearn_compat import (
    HasMethods,
    Interval,
    _fit_context,
    validate_data,
)

__all__ = ["EnergyOutlierDetector"]


class EnergyOutlierDetector(OutlierMixin, BaseEstimator):
    """Outlier detection by thresholding a density estimator's log-density.

    The wrapped density estimator (an :class:`~skebm.EnergyDensityEstimator` by
    default) is fitted to ``X``; a row is an outlier when its log-density is
    below the ``contamination`` quantile of the training rows' log-densities.
    Because skebm's ``score_samples`` is a normalised log-likelihood, the scores
    of detectors built on different models are on one scale.

    This is a meta-estimator: the density model is configured on the estimator
    it wraps (``EnergyOutlierDetector(EnergyDensityEstimator(loss="pcd"))``), so
    every option of :class:`~skebm.EnergyDensityEstimator` is available without
    being repeated here, grid searches reach them as ``estimator__<name>``, and
    any density estimator with ``fit`` and ``score_samples`` (``KernelDensity``,
    ``GaussianMixture``) can be thresholded the same way.

    Parameters
    ----------
    estimator : estimator object, default=None
        The density estimator; it is cloned, never fitted in place. ``None``
        means ``EnergyDensityEstimator()`` with its defaults.
    contamination : float, default=0.1
        The expected proportion of outliers in the training data, in
        ``(0, 0.5]``: it sets :attr:`offset_`. A density has no natural
        threshold, so there is no ``"auto"``.
    random_state : int, RandomState instance or None, default=None
        When not ``None``, it replaces the wrapped estimator's ``random_state``
        (an int is passed on as it is, a ``RandomState`` draws one), so fits are
        reproducible from the detector alone. ``None`` leaves it as configured.

    Attributes
    ----------
    estimator_ : estimator object
        The fitted density estimator.
    offset_ : float
        The ``contamination`` quantile of the training rows' ``score_samples``;
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of features seen during :term:`fit`.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during :term:`fit`. Defined only when ``X`` has
        feature names that are all strings.

    See Also
    --------
    sklearn.ensemble.IsolationForest : Tree-based outlier detection.
    sklearn.neighbors.LocalOutlierFactor : Local-density outlier detection.
    sklearn.covariance.EllipticEnvelope : Gaussian outlier detection.

    Examples
    --------
    >>> import numpy as np
    >>> from skebm import EnergyDensityEstimator
    >>> from skebm.outlier import EnergyOutlierDetector
    >>> rng = np.random.RandomState(0)
    >>> X = np.vstack([rng.normal(size=(190, 2)), rng.uniform(-8, 8, size=(10, 2))])
    >>> detector = EnergyOutlierDetector(
    ...     EnergyDensityEstimator(max_iter=5, random_state=0), contamination=0.05
    ... ).fit(X)
    >>> labels = detector.predict(X)
    >>> int((labels == -1).sum())
    10
    >>> detector.predict([[0.0, 0.0], [7.0, -7.0]])
    array([ 1, -1])
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "score_samples"]), None],
        "contamination": [Interval(Real, 0, 0.5, closed="right")],
        "random_state": ["random_state"],
    }

    def __init__(self, estimator=None, *, contamination=0.1, random_state=None):
        self.estimator = estimator
        self.contamination = contamination
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Fit the density estimator on ``X`` and set the threshold.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data, which may contain outliers.
        y : None
            Ignored. This parameter exists only for compatibility with
            :class:`~sklearn.pipeline.Pipeline`.

        Returns
        -------
        self : EnergyOutlierDetector
            The fitted detector.
        """
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
        self.estimator_ = (
            EnergyDensityEstimator()
            if self.estimator is None
            else clone(self.estimator)
        )
        if self.random_state is not None:
            self._seed_estimator()
        self.estimator_.fit(X)
        scores = np.asarray(self.estimator_.score_samples(X), dtype=np.float64)
        self.offset_ = float(np.percentile(scores, 100.0 * self.contamination))
        return self

    def _seed_estimator(self) -> None:
        if "random_state" not in self.estimator_.get_params():
            raise ValueError(
                f"random_state={self.random_state!r} was given but "
                f"{type(self.estimator_).__name__} has no random_state parameter; "
                "leave random_state=None."
            )
        seed = self.random_state
        if not isinstance(seed, Integral):
            seed = int(check_random_state(seed).randint(np.iinfo(np.int32).max))
        self.estimator_.set_params(random_state=seed)

    def score_samples(self, X):
        """Log-density of each row under the fitted model; low means abnormal.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,), float64
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return np.asarray(self.estimator_.score_samples(X), dtype=np.float64)

    def decision_function(self, X):
        """``score_samples(X) - offset_``: negative for outliers.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        decision : ndarray of shape (n_samples,), float64
        """
        return self.score_samples(X) - self.offset_

    def predict(self, X):
        """``+1`` for inliers and ``-1`` for outliers.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,), int
        """
        return np.where(self.decision_function(X) >= 0, 1, -1)
