"""Checks of the density-estimator contract that scikit-learn's suite does not make.

scikit-learn's ``check_estimator`` never calls ``sample`` and only compares
``predict``-like methods for determinism, pickling and side effects, so a density
estimator can pass it while being non-reproducible or unnormalised. These checks
cover that ground; plugin authors run them on an estimator built with their
strategy::

    from skebm.utils.estimator_checks import parametrize_with_density_checks

    @parametrize_with_density_checks([EnergyDensityEstimator(sampler=MySampler())])
    def test_density_contract(estimator, check):
        check(estimator)
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable, Iterator

import numpy as np
from joblib import hash as joblib_hash
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

__all__ = [
    "check_density_integrates_to_one",
    "check_fit_is_deterministic",
    "check_methods_leave_state_unchanged",
    "check_non_finite_input_raises",
    "check_partial_fit_returns_self",
    "check_pickle_round_trip",
    "check_sample_arguments",
    "check_sample_is_reproducible",
    "check_unfitted_methods_raise",
    "density_checks",
    "parametrize_with_density_checks",
]


def _data(n_samples=200, n_features=2, seed=0) -> np.ndarray:
    rng = np.random.RandomState(seed)
    return rng.normal(size=(n_samples, n_features)) * [1.0, 0.5][:n_features] + 3.0


def _fitted(estimator, X=None):
    est = clone(estimator).set_params(random_state=0)
    return est.fit(_data() if X is None else X)


def check_fit_is_deterministic(estimator) -> None:
    """Two fits with the same int ``random_state`` give identical ``score_samples``."""
    X = _data()
    first = _fitted(estimator, X).score_samples(X)
    second = _fitted(estimator, X).score_samples(X)
    np.testing.assert_array_equal(
        first, second, err_msg="fits with the same random_state differ"
    )


def check_sample_is_reproducible(estimator) -> None:
    """``sample(n, random_state=0)`` repeats, is float64 of shape ``(n, d)``,
    and a different seed gives different rows."""
    est = _fitted(estimator)
    a = est.sample(7, random_state=0)
    b = est.sample(7, random_state=0)
    c = est.sample(7, random_state=1)
    assert a.shape == (7, est.n_features_in_), a.shape
    assert a.dtype == np.float64, a.dtype
    assert np.all(np.isfinite(a)), "sample returned non-finite values"
    np.testing.assert_array_equal(a, b, err_msg="sample is not reproducible")
    assert not np.array_equal(a, c), "different random_state gave identical samples"


def check_methods_leave_state_unchanged(estimator) -> None:
    """``score_samples``, ``score`` and ``sample`` do not modify the estimator."""
    est = _fitted(estimator)
    X = _data(50, seed=1)
    before = joblib_hash(est.__dict__)
    est.score_samples(X)
    est.score(X)
    est.sample(5, random_state=0)
    assert joblib_hash(est.__dict__) == before, "a method changed the fitted state"


def check_unfitted_methods_raise(estimator) -> None:
    """``score_samples``, ``score`` and ``sample`` raise ``NotFittedError`` unfitted."""
    est = clone(estimator)
    X = _data(5)
    for name, call in [
        ("score_samples", lambda: est.score_samples(X)),
        ("score", lambda: est.score(X)),
        ("sample", lambda: est.sample(2)),
    ]:
        try:
            call()
        except NotFittedError:
            continue
        raise AssertionError(f"{name} did not raise NotFittedError before fit")


def check_non_finite_input_raises(estimator) -> None:
    """NaN or inf in ``X`` raises ``ValueError`` from every method taking ``X``."""
    fitted = _fitted(estimator)
    for bad in (np.nan, np.inf, -np.inf):
        X = _data(20)
        X[3, 1] = bad
        calls = {
            "fit": lambda X=X: clone(estimator).fit(X),
            "score_samples": lambda X=X: fitted.score_samples(X),
            "score": lambda X=X: fitted.score(X),
        }
        if hasattr(estimator, "partial_fit"):
            calls["partial_fit"] = lambda X=X: clone(estimator).partial_fit(X)
        for name, call in calls.items():
            try:
                call()
            except ValueError:
                continue
            raise AssertionError(f"{name} accepted X containing {bad}")


def check_partial_fit_returns_self(estimator) -> None:
    """``partial_fit`` returns the estimator (BernoulliRBM's does not)."""
    if not hasattr(estimator, "partial_fit"):
        return
    est = clone(estimator).set_params(random_state=0)
    X = _data()
    assert est.partial_fit(X) is est
    assert est.partial_fit(X) is est


def check_pickle_round_trip(estimator) -> None:
    """A pickle round trip gives identical ``score_samples`` and ``sample``."""
    est = _fitted(estimator)
    X = _data(50, seed=2)
    loaded = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(est.score_samples(X), loaded.score_samples(X))
    np.testing.assert_array_equal(
        est.sample(5, random_state=0), loaded.sample(5, random_state=0)
    )


def check_sample_arguments(estimator) -> None:
    """``sample(0)``, ``sample(-1)`` raise ValueError; ``sample(2.5)`` TypeError."""
    est = _fitted(estimator)
    for bad, error in [(0, ValueError), (-1, ValueError), (2.5, TypeError)]:
        try:
            est.sample(bad)
        except error:
            continue
        raise AssertionError(f"sample({bad!r}) did not raise {error.__name__}")


def check_density_integrates_to_one(estimator, *, tolerance: float = 0.05) -> None:
    """``exp(score_samples)`` of a model fitted in 1-D integrates to 1 ± tolerance.

    The integral is a trapezoid rule over ±10 standard deviations of the data on
    20,001 points, so its own error is negligible.
    """
    rng = np.random.RandomState(0)
    X = np.concatenate([rng.normal(-2, 0.5, 150), rng.normal(1.5, 1.0, 250)])[:, None]
    est = _fitted(estimator, X)
    grid = np.linspace(X.mean() - 10 * X.std(), X.mean() + 10 * X.std(), 20001)
    total = np.trapezoid(np.exp(est.score_samples(grid[:, None])), grid)
    assert abs(total - 1.0) < tolerance, f"density integrates to {total:.4f}"


def density_checks(estimator) -> Iterator[Callable]:
    """Yield every density check (each takes the estimator)."""
    yield check_unfitted_methods_raise
    yield check_fit_is_deterministic
    yield check_sample_is_reproducible
    yield check_sample_arguments
    yield check_methods_leave_state_unchanged
    yield check_non_finite_input_raises
    yield check_partial_fit_returns_self
    yield check_pickle_round_trip
    yield check_density_integrates_to_one


def _compact_repr(estimator) -> str:
    return re.sub(r"\s+", "", repr(estimator))


def parametrize_with_density_checks(estimators):
    """A ``pytest.mark.parametrize`` over (estimator, check) pairs.

    Parameters
    ----------
    estimators : list of estimators
        Unfitted density estimators.

    Returns
    -------
    decorator
        Use it on a test taking ``estimator`` and ``check`` and calling
        ``check(estimator)``.
    """
    import pytest

    pairs = [(est, check) for est in estimators for check in density_checks(est)]
    ids = [f"{_compact_repr(est)}-{check.__name__}" for est, check in pairs]
    return pytest.mark.parametrize("estimator, check", pairs, ids=ids)
