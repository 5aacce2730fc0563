"""Checks for plugin authors: strategy contracts and the density-estimator contract.

**The author kit.** :func:`check_sampler` and :func:`check_loss` verify that a
sampler or a loss keeps skebm's strategy contract (shapes, device and dtype,
generator-only randomness, statelessness, ``clone``), that it is statistically
right on a Gaussian target, and that an :class:`~skebm.EnergyDensityEstimator`
built with it passes scikit-learn's estimator checks and skebm's density checks.
In a pytest suite, :func:`parametrize_with_plugin_checks` makes each check a
separate test::

    from skebm.utils.estimator_checks import parametrize_with_plugin_checks

    @parametrize_with_plugin_checks([MySampler(), MySampler(step_size=0.1)])
    def test_skebm_contract(subject, check):
        check(subject)

**Density checks.** scikit-learn's ``check_estimator`` never calls ``sample`` and
only compares ``predict``-like methods for determinism, pickling and side effects,
so a density estimator can pass it while being non-reproducible or unnormalised.
The density checks cover that ground (:func:`parametrize_with_density_checks`).
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable, Iterator
from functools import partial
from unittest import SkipTest

import numpy as np
from joblib import hash as joblib_hash
from scipy.integrate import trapezoid
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import estimator_checks_generator

from skebm.losses import BaseLoss
from skebm.samplers import BaseSampler
from skebm.utils._strategy_checks import (
    check_loss_fits_gaussian,
    check_loss_in_estimator,
    check_loss_output,
    check_loss_reproducibility,
    check_sampler_gaussian_moments,
    check_sampler_in_estimator,
    check_sampler_output,
    check_sampler_reproducibility,
    check_strategy_parameters,
    kit_estimator,
    strategy_checks,
)

__all__ = [
    "check_density_integrates_to_one",
    "check_fit_is_deterministic",
    "check_loss",
    "check_loss_fits_gaussian",
    "check_loss_in_estimator",
    "check_loss_output",
    "check_loss_reproducibility",
    "check_methods_leave_state_unchanged",
    "check_non_finite_input_raises",
    "check_partial_fit_returns_self",
    "check_pickle_round_trip",
    "check_sample_arguments",
    "check_sample_is_reproducible",
    "check_sampler",
    "check_sampler_gaussian_moments",
    "check_sampler_in_estimator",
    "check_sampler_output",
    "check_sampler_reproducibility",
    "check_strategy_parameters",
    "check_unfitted_methods_raise",
    "density_checks",
    "kit_estimator",
    "parametrize_with_density_checks",
    "parametrize_with_plugin_checks",
    "plugin_checks",
    "strategy_checks",
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
    total = trapezoid(np.exp(est.score_samples(grid[:, None])), grid)
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


# -- the author kit ---------------------------------------------------------------


def plugin_checks(
    strategy,
    *,
    n_steps: int = 500,
    n_epochs: int = 30,
    sampler=None,
    estimator_params: dict | None = None,
    sklearn_checks: bool = True,
) -> Iterator[tuple[object, Callable]]:
    """Yield ``(subject, check)`` pairs verifying a sampler or a loss.

    The strategy's own contract checks (subject: the strategy), then
    scikit-learn's estimator checks and skebm's density checks (subject: an
    :class:`~skebm.EnergyDensityEstimator` built with the strategy by
    :func:`kit_estimator`). Run one with ``check(subject)``.

    Parameters
    ----------
    strategy : BaseSampler or BaseLoss
        An instance, configured as it should be checked.
    n_steps : int, default=500
        Samplers: steps of the Gaussian check (raise it for slowly mixing
        samplers).
    n_epochs : int, default=30
        Losses: training epochs of the Gaussian check.
    sampler : BaseSampler, default=None
        Losses: the sampler given to a loss that needs one (``None``: an exact
        MALA with step 0.05).
    estimator_params : dict, default=None
        Parameters of the estimator used by scikit-learn's and the density
        checks, overriding the small default configuration.
    sklearn_checks : bool, default=True
        Include scikit-learn's estimator checks (about 40 fits).

    Examples
    --------
    >>> from skebm.losses import NoiseContrastiveEstimation
    >>> from skebm.utils.estimator_checks import plugin_checks
    >>> pairs = list(plugin_checks(NoiseContrastiveEstimation()))
    >>> pairs[0][1].__name__
    'check_strategy_parameters'
    """
    for check in strategy_checks(
        strategy, n_steps=n_steps, n_epochs=n_epochs, sampler=sampler
    ):
        yield strategy, check
    estimator = kit_estimator(strategy, **(estimator_params or {}))
    if sklearn_checks:
        yield from estimator_checks_generator(estimator, legacy=True)
    for check in density_checks(estimator):
        yield estimator, check


def _check_name(check) -> str:
    if isinstance(check, partial):
        keywords = ",".join(
            f"{k}={v!r}" for k, v in check.keywords.items() if v is not None
        )
        name = _check_name(check.func)
        return f"{name}({keywords})" if keywords and name.startswith("check_") else name
    return getattr(check, "__name__", repr(check))


def _run_checks(strategy, kind: type, **options) -> None:
    if isinstance(strategy, type):
        raise TypeError(
            f"Pass an instance of {strategy.__name__} (e.g. {strategy.__name__}()), "
            "not the class."
        )
    if not isinstance(strategy, kind):
        raise TypeError(
            f"Expected a {kind.__name__} instance, got {type(strategy).__name__}."
        )
    for subject, check in plugin_checks(strategy, **options):
        try:
            check(subject)
        except SkipTest:
            continue
        except Exception as exc:
            raise AssertionError(
                f"{_check_name(check)} failed for {_compact_repr(subject)}: {exc}"
            ) from exc


def check_sampler(
    sampler,
    *,
    n_steps: int = 500,
    estimator_params: dict | None = None,
    sklearn_checks: bool = True,
) -> None:
    """Verify that a sampler keeps skebm's contract; raise on the first failure.

    Runs every check of :func:`plugin_checks`: parameters, ``clone`` and pickle;
    output shape, dtype and device (CUDA too when available); reproducibility
    from the generator with the global random state untouched; the mean and
    covariance of a correlated Gaussian within 5 standard errors; training and
    sampling inside ``EnergyDensityEstimator``; scikit-learn's estimator checks
    and skebm's density checks on that estimator.

    Parameters
    ----------
    sampler : BaseSampler
        An instance, configured as it should be checked.
    n_steps : int, default=500
        Steps of the Gaussian check.
    estimator_params : dict, default=None
        Overrides of the estimator configuration (see :func:`kit_estimator`).
    sklearn_checks : bool, default=True
        Include scikit-learn's estimator checks.

    Raises
    ------
    AssertionError
        Naming the failed check and what to fix.

    Examples
    --------
    >>> from skebm.samplers import MALA
    >>> from skebm.utils.estimator_checks import check_sampler
    >>> check_sampler(MALA(step_size=0.05), sklearn_checks=False)
    """
    _run_checks(
        sampler,
        BaseSampler,
        n_steps=n_steps,
        estimator_params=estimator_params,
        sklearn_checks=sklearn_checks,
    )


def check_loss(
    loss,
    *,
    sampler=None,
    n_epochs: int = 30,
    estimator_params: dict | None = None,
    sklearn_checks: bool = True,
) -> None:
    """Verify that a loss keeps skebm's contract; raise on the first failure.

    Runs every check of :func:`plugin_checks`: parameters, ``clone`` and pickle;
    a finite differentiable scalar on the batch's device and dtype (CUDA too when
    available) and a well-formed ``init_state``; reproducibility from the
    generator with the global random state untouched; recovery of a Gaussian's
    mean and covariance by training with the loss; training inside
    ``EnergyDensityEstimator``; scikit-learn's estimator checks and skebm's
    density checks on that estimator.

    Parameters
    ----------
    loss : BaseLoss
        An instance, configured as it should be checked.
    sampler : BaseSampler, default=None
        The sampler a loss that needs one runs (``None``: an exact MALA).
    n_epochs : int, default=30
        Training epochs of the Gaussian check.
    estimator_params : dict, default=None
        Overrides of the estimator configuration (see :func:`kit_estimator`).
    sklearn_checks : bool, default=True
        Include scikit-learn's estimator checks.

    Raises
    ------
    AssertionError
        Naming the failed check and what to fix.

    Examples
    --------
    >>> from skebm.losses import NoiseContrastiveEstimation
    >>> from skebm.utils.estimator_checks import check_loss
    >>> check_loss(NoiseContrastiveEstimation(), sklearn_checks=False)
    """
    _run_checks(
        loss,
        BaseLoss,
        sampler=sampler,
        n_epochs=n_epochs,
        estimator_params=estimator_params,
        sklearn_checks=sklearn_checks,
    )


def parametrize_with_plugin_checks(strategies, **options):
    """A ``pytest.mark.parametrize`` over the author kit's ``(subject, check)``.

    Parameters
    ----------
    strategies : list of BaseSampler or BaseLoss instances
    **options
        Passed to :func:`plugin_checks` (``n_steps``, ``n_epochs``,
        ``sampler``, ``estimator_params``, ``sklearn_checks``).

    Returns
    -------
    decorator
        Use it on a test taking ``subject`` and ``check`` and calling
        ``check(subject)``; every check is a separate test.

    Examples
    --------
    >>> from skebm.samplers import Langevin
    >>> from skebm.utils.estimator_checks import parametrize_with_plugin_checks
    >>> @parametrize_with_plugin_checks([Langevin(step_size=0.05)])
    ... def test_contract(subject, check):
    ...     check(subject)
    """
    import pytest

    pairs, ids = [], []
    for strategy in strategies:
        if isinstance(strategy, type):
            raise TypeError(f"Pass an instance of {strategy.__name__}, not the class.")
        for subject, check in plugin_checks(strategy, **options):
            pairs.append((subject, check))
            ids.append(f"{_compact_repr(strategy)}-{_check_name(check)}")
    return pytest.mark.parametrize("subject, check", pairs, ids=ids)
