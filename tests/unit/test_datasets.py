"""Toy data generators: shapes, determinism, and their defining geometry."""

import functools

import numpy as np
import pytest

from skebm.datasets import (
    TOY_DATASETS,
    make_checkerboard,
    make_eight_gaussians,
    make_funnel,
    make_rings,
    make_two_moons,
    make_uneven_mixture,
)


@pytest.mark.parametrize("name", sorted(TOY_DATASETS))
def test_shape_and_determinism(name):
    make = TOY_DATASETS[name]
    X = make(300, random_state=0)
    assert X.shape == (300, 2) and X.dtype == np.float64
    np.testing.assert_array_equal(X, make(300, random_state=0))
    assert not np.array_equal(X, make(300, random_state=1))


def test_eight_gaussians_sit_on_their_circle():
    X = make_eight_gaussians(4000, radius=2.0, std=0.01, random_state=0)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 2.0, atol=0.05)
    angles = np.round(np.arctan2(X[:, 1], X[:, 0]) / (np.pi / 4)) % 8
    assert set(angles) == set(range(8))


def test_rings_radii():
    X = make_rings(3000, radii=(1.0, 3.0), noise=0.0, random_state=0)
    r = np.linalg.norm(X, axis=1)
    assert set(np.round(r, 6)) == {1.0, 3.0}
    assert abs(np.mean(np.isclose(r, 3.0)) - 0.75) < 0.05


# -- exact log-densities -------------------------------------------------------------


def _grid(low, high, n):
    axes = [lo + (np.arange(n) + 0.5) * (hi - lo) / n for lo, hi in zip(low, high)]
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
    return mesh, np.prod((np.asarray(high) - np.asarray(low)) / n)


#: A box holding all but a negligible part of each shape's mass.
BOXES = {
    "two_moons": ((-1.7, -1.2), (2.7, 1.7)),
    "eight_gaussians": ((-3.2, -3.2), (3.2, 3.2)),
    "pinwheel": ((-4.5, -4.5), (4.5, 4.5)),
    "swiss_roll_2d": ((-3.3, -3.3), (3.3, 3.3)),
    "rings": ((-3.6, -3.6), (3.6, 3.6)),
    "checkerboard": ((-2.0, -2.0), (2.0, 2.0)),
    "gaussian_grid": ((-2.7, -2.7), (2.7, 2.7)),
    "banana": ((-5.0, -2.5), (5.0, 26.0)),
}


@pytest.mark.parametrize("name", sorted(TOY_DATASETS))
def test_log_density_integrates_to_one(name):
    _, log_density = TOY_DATASETS[name](10, random_state=0, return_log_density=True)
    mesh, cell = _grid(*BOXES[name], 240)
    integral = np.exp(log_density(mesh)).sum() * cell
    # Midpoint rule on a 240 x 240 grid: the quadrature error is below 1e-3 for
    # these shapes (the checkerboard's cells align with its squares: exact).
    assert abs(integral - 1.0) < 1e-3, integral


@pytest.mark.parametrize("name", sorted(TOY_DATASETS))
def test_samples_follow_the_log_density(name):
    """A chi-square test of the generator's draws against the density's bin masses:
    the two are independent implementations of one distribution."""
    from scipy.stats import chi2

    n = 20000
    X, log_density = TOY_DATASETS[name](n, random_state=1, return_log_density=True)
    (low, high), bins, fine = BOXES[name], 10, 12
    mesh, cell = _grid(low, high, bins * fine)
    mass = np.exp(log_density(mesh)).reshape(bins, fine, bins, fine).sum((1, 3)) * cell
    counts, _, _ = np.histogram2d(
        X[:, 0], X[:, 1], bins=bins, range=list(zip(low, high))
    )
    expected = n * mass
    used = expected > 5
    statistic = ((counts[used] - expected[used]) ** 2 / expected[used]).sum()
    # Rows outside the box (a negligible mass) and low-mass bins are left out.
    assert statistic < chi2.ppf(1 - 1e-4, used.sum() - 1), (statistic, used.sum())


def test_funnel_log_density_is_the_product_of_its_conditionals():
    from scipy.stats import norm

    X, log_density = make_funnel(
        50, n_features=4, scale=2.0, random_state=0, return_log_density=True
    )
    v = X[:, 0]
    expected = norm.logpdf(v, scale=2.0) + norm.logpdf(
        X[:, 1:], scale=np.exp(v / 2)[:, None]
    ).sum(1)
    np.testing.assert_allclose(log_density(X), expected, rtol=1e-12)
    # The first column is N(0, scale²): a Kolmogorov-Smirnov test of the draws.
    from scipy.stats import kstest

    v = make_funnel(4000, n_features=4, scale=2.0, random_state=1)[:, 0]
    assert kstest(v, norm(scale=2.0).cdf).pvalue > 1e-3


def test_uneven_mixture_log_density_matches_scipy():
    from scipy.stats import multivariate_normal

    X, log_density = make_uneven_mixture(
        30, n_features=5, weights=(0.7, 0.3), random_state=0, return_log_density=True
    )
    density = functools.partial(log_density)
    weights, means, trils = (
        density.keywords["weights"],
        density.keywords["means"],
        density.keywords["scale_trils"],
    )
    expected = np.log(
        sum(
            w * multivariate_normal(m, L @ L.T).pdf(X)
            for w, m, L in zip(weights, means, trils)
        )
    )
    np.testing.assert_allclose(log_density(X), expected, rtol=1e-10)
    # The layout is fixed by layout_seed, not by random_state.
    _, other = make_uneven_mixture(
        5, n_features=5, weights=(0.7, 0.3), random_state=9, return_log_density=True
    )
    np.testing.assert_array_equal(other(X), log_density(X))


def test_checkerboard_density_is_flat_on_the_dark_squares():
    X, log_density = make_checkerboard(500, random_state=0, return_log_density=True)
    np.testing.assert_array_equal(log_density(X), np.log(1 / 8))
    assert (
        log_density(np.array([[-1.5, -0.5], [0.5, -0.5], [3.0, 0.0]])).tolist()
        == [-np.inf] * 3
    )


def test_two_moons_are_independent_draws():
    """Unlike scikit-learn's make_moons (evenly spaced angles), a subset of the rows is
    as random as the whole: two halves do not interleave exactly."""
    X = make_two_moons(2000, noise=0.0, random_state=0)
    upper = X[X[:, 1] > 0.25]
    angles = np.sort(np.arctan2(upper[:, 1], upper[:, 0]))
    gaps = np.diff(angles)
    assert gaps.std() > 0.5 * gaps.mean()  # exponential-like gaps, not a lattice


def test_log_density_needs_noise():
    with pytest.raises(ValueError, match="noise > 0"):
        make_two_moons(10, noise=0.0, random_state=0, return_log_density=True)
