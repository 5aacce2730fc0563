"""Analytic energies: exact log-normalisers (against quadrature and independent
closed forms) and exact samplers (moments within 5 standard errors, and a
Kolmogorov-Smirnov test against the quadrature CDF)."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import distributions

from skebm.energies import (
    DoubleWellEnergy,
    GaussianEnergy,
    GaussianMixtureEnergy,
    ResidualEnergy,
    RosenbrockEnergy,
)
from skebm.losses import MaximumLikelihood
from skebm.plugins import get_registry


def _grid_log_partition(energy, low, high, n_points):
    """Midpoint rule in float64 over a box holding all but a negligible mass."""
    axes = [
        torch.linspace(lo, hi, n_points + 1, dtype=torch.float64)[:-1]
        + 0.5 * (hi - lo) / n_points
        for lo, hi in zip(low, high)
    ]
    mesh = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(axes))
    with torch.no_grad():
        log_density = -energy.double()(mesh)
    cell = np.prod([(hi - lo) / n_points for lo, hi in zip(low, high)])
    return torch.logsumexp(log_density, 0).item() + math.log(cell), mesh, log_density


@pytest.mark.parametrize(
    "energy, low, high",
    [
        (DoubleWellEnergy(1, barrier=0.5), [-6], [6]),
        (DoubleWellEnergy(1, barrier=8.0), [-3], [3]),
        (DoubleWellEnergy(2, barrier=2.0), [-3, -3], [3, 3]),
        (RosenbrockEnergy(2, location=0.5, a=0.5, b=2.0), [-5, -4], [5, 30]),
        (RosenbrockEnergy(1, a=0.3), [-12], [14]),
        (
            GaussianMixtureEnergy(
                2,
                weights=[0.3, 0.7],
                means=[[-2.0, 0.0], [1.0, 1.0]],
                covariances=[[[1.0, 0.5], [0.5, 1.0]], [[0.3, 0.0], [0.0, 0.2]]],
            ),
            [-9, -7],
            [7, 7],
        ),
        (
            GaussianEnergy(2, mean=[1, 2], covariance=[[2, 0.3], [0.3, 0.5]]),
            [-9, -6],
            [11, 10],
        ),
    ],
    ids=[
        "double_well-1d-low",
        "double_well-1d-high",
        "double_well-2d",
        "rosenbrock-2d",
        "rosenbrock-1d",
        "gaussian_mixture-2d",
        "gaussian-2d",
    ],
)
def test_log_partition_matches_quadrature(energy, low, high):
    n_points = 200001 if len(low) == 1 else 1500
    log_z, _, _ = _grid_log_partition(energy, low, high, n_points)
    assert abs(energy.log_partition().item() - log_z) < 1e-4


def test_double_well_normaliser_factorises_over_coordinates():
    one = DoubleWellEnergy(1, barrier=3.0).log_partition().item()
    five = DoubleWellEnergy(5, barrier=3.0).log_partition().item()
    assert math.isclose(five, 5 * one, rel_tol=1e-6)


def test_rosenbrock_density_is_its_gaussian_chain_in_any_dimension():
    """-E - log Z equals log N(x₁; loc, 1/2a) + Σ log N(x_i; x_{i-1}², 1/2b)."""
    energy = RosenbrockEnergy(5, location=0.7, a=0.4, b=3.0).double()
    x = torch.as_tensor(np.random.RandomState(0).normal(size=(50, 5)))
    chain = distributions.Normal(0.7, math.sqrt(1 / 0.8)).log_prob(x[:, 0]) + (
        distributions.Normal(x[:, :-1] ** 2, math.sqrt(1 / 6.0))
        .log_prob(x[:, 1:])
        .sum(1)
    )
    with torch.no_grad():
        torch.testing.assert_close(-energy(x) - energy.log_partition(), chain)


def test_gaussian_mixture_energy_is_the_mixture_negative_log_density():
    weights = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    means = torch.tensor([[0.0, 1.0], [2.0, -1.0], [-1.0, -2.0]], dtype=torch.float64)
    covariances = torch.tensor(
        [
            [[1.0, 0.2], [0.2, 0.5]],
            [[0.4, -0.1], [-0.1, 0.3]],
            [[2.0, 0.0], [0.0, 1.0]],
        ],
        dtype=torch.float64,
    )
    energy = GaussianMixtureEnergy(
        2, weights=weights.numpy(), means=means.numpy(), covariances=covariances.numpy()
    ).double()
    mixture = distributions.MixtureSameFamily(
        distributions.Categorical(weights),
        distributions.MultivariateNormal(means, covariances),
    )
    x = torch.as_tensor(np.random.RandomState(0).normal(size=(100, 2)))
    with torch.no_grad():
        torch.testing.assert_close(-energy(x), mixture.log_prob(x))
    assert energy.log_partition().item() == 0.0


def _assert_moments(x, mean, cov, n_se=5.0):
    """Independent draws: a mean has standard error sqrt(var / n); a covariance
    entry the standard deviation of the centred products over sqrt(n)."""
    x = x.double().numpy()
    n = len(x)
    centred = x - mean
    assert np.all(np.abs(x.mean(0) - mean) < n_se * np.sqrt(np.diag(cov) / n))
    products = centred[:, :, None] * centred[:, None, :]
    se = products.std(0) / math.sqrt(n)
    assert np.all(np.abs(products.mean(0) - cov) < n_se * se)


def test_exact_samplers_have_the_known_moments():
    g = torch.Generator().manual_seed(0)
    n = 100_000
    cov = np.array([[2.0, 0.3], [0.3, 0.5]])
    _assert_moments(
        GaussianEnergy(2, mean=[1, 2], covariance=cov).sample(n, generator=g),
        np.array([1.0, 2.0]),
        cov,
    )
    weights = np.array([0.3, 0.7])
    means = np.array([[-2.0, 0.0], [1.0, 1.0]])
    covariances = np.array([[[1.0, 0.5], [0.5, 1.0]], [[0.3, 0.0], [0.0, 0.2]]])
    mixture_mean = weights @ means
    mixture_cov = sum(
        w * (c + np.outer(m - mixture_mean, m - mixture_mean))
        for w, m, c in zip(weights, means, covariances)
    )
    _assert_moments(
        GaussianMixtureEnergy(
            2, weights=weights, means=means, covariances=covariances
        ).sample(n, generator=g),
        mixture_mean,
        mixture_cov,
    )
    # Rosenbrock: x₁ ~ N(loc, 1/2a), x₂ | x₁ ~ N(x₁², 1/2b):
    # E x₂ = loc² + v, Var x₂ = 4 loc² v + 2v² + 1/2b, Cov = 2 loc v (v = 1/2a).
    loc, v, w = 0.5, 1.0, 0.25
    _assert_moments(
        RosenbrockEnergy(2, location=loc, a=0.5, b=2.0).sample(n, generator=g),
        np.array([loc, loc**2 + v]),
        np.array([[v, 2 * loc * v], [2 * loc * v, 4 * loc**2 * v + 2 * v**2 + w]]),
    )


@pytest.mark.parametrize("barrier", [0.5, 2.0, 8.0])
def test_double_well_sampler_passes_a_kolmogorov_smirnov_test(barrier):
    """Each coordinate against the quadrature CDF; coordinates independent."""
    energy = DoubleWellEnergy(2, barrier=barrier)
    x = energy.sample(20_000, generator=torch.Generator().manual_seed(1)).double()
    grid = np.linspace(-5, 5, 200_001)
    density = np.exp(-barrier * (grid**2 - 1) ** 2)
    cdf = np.cumsum(density)
    cdf /= cdf[-1]
    for column in x.T.numpy():
        assert stats.kstest(column, lambda t: np.interp(t, grid, cdf)).pvalue > 0.01
    assert abs(np.corrcoef(x.T.numpy())[0, 1]) < 5 / math.sqrt(len(x))


@pytest.mark.parametrize(
    "energy",
    [
        GaussianEnergy(3),
        GaussianMixtureEnergy(3, n_components=3),
        DoubleWellEnergy(3),
        RosenbrockEnergy(3),
    ],
    ids=lambda e: type(e).__name__,
)
def test_sample_contract(energy):
    """Same generator seed, same draws; dtype follows the module; the global RNG
    is untouched."""
    energy = energy.double()
    rng_state = torch.random.get_rng_state()
    a = energy.sample(33, generator=torch.Generator().manual_seed(4))
    b = energy.sample(33, generator=torch.Generator().manual_seed(4))
    assert a.shape == (33, 3) and a.dtype == torch.float64
    assert torch.equal(a, b)
    assert torch.equal(rng_state, torch.random.get_rng_state())
    assert energy.log_partition().dtype == torch.float64


@pytest.mark.parametrize(
    "name", ["gaussian", "gaussian_mixture", "double_well", "rosenbrock"]
)
def test_analytic_energies_are_registered(name):
    factory = get_registry().get("energy", name)
    energy = factory(2)
    assert energy(torch.zeros(5, 2)).shape == (5,)


def test_gaussian_mixture_energy_learns_by_maximum_likelihood():
    """Exact ML (closed form: log Z = 0) on 4,000 draws of a 1-D two-component
    mixture recovers its weights and means within 0.05 (their sampling errors are
    about 0.008 and 0.02)."""
    target = GaussianMixtureEnergy(
        1, weights=[0.3, 0.7], means=[[-2.0], [1.5]], covariances=[[[0.5]], [[1.0]]]
    )
    g = torch.Generator().manual_seed(0)
    X = target.sample(4000, generator=g)
    energy = GaussianMixtureEnergy(1, means=[[-1.0], [1.0]])
    model = ResidualEnergy(energy)
    optimizer = torch.optim.Adam(energy.parameters(), lr=0.05)
    for _ in range(40):
        for batch in X[torch.randperm(len(X), generator=g)].split(500):
            optimizer.zero_grad()
            MaximumLikelihood()(model, batch, generator=g).backward()
            optimizer.step()
    with torch.no_grad():
        np.testing.assert_allclose(energy.weights().numpy(), [0.3, 0.7], atol=0.05)
        np.testing.assert_allclose(energy.means.numpy().ravel(), [-2.0, 1.5], atol=0.05)


def test_invalid_arguments_explain_themselves():
    with pytest.raises(ValueError, match="means must have shape"):
        GaussianMixtureEnergy(2, means=[[0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="weights must be positive"):
        GaussianMixtureEnergy(1, weights=[1.0, 0.0], means=[[0.0], [1.0]])
    with pytest.raises(ValueError, match="barrier must be positive"):
        DoubleWellEnergy(1, barrier=0.0)
    with pytest.raises(ValueError, match="a and b must be positive"):
        RosenbrockEnergy(2, b=-1.0)
