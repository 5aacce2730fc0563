"""log Z estimation: importance sampling, AIS and grid quadrature against closed
forms."""

import numpy as np
import pytest
import torch

from skebm.bases import GaussianMixtureDensity, StandardNormalDensity
from skebm.energies import GaussianEnergy, MLPEnergy, ResidualEnergy
from skebm.partition import (
    MIN_IMPORTANCE_ESS,
    ais_log_partition,
    estimate_log_partition,
    grid_log_partition,
    importance_log_partition,
)


def gaussian_product_log_partition(base_means, base_covs, weights, mean, cov):
    """log ∫ Σ_k w_k N(x; m_k, S_k) · exp(-½(x-μ)ᵀΣ⁻¹(x-μ)) dx, in closed form.

    exp(-E) = (2π)^{d/2}|Σ|^{1/2} N(x; μ, Σ), and ∫N(x; m, S)N(x; μ, Σ)dx =
    N(m; μ, S + Σ).
    """
    d = len(mean)
    total = 0.0
    for w, m, s in zip(weights, base_means, base_covs):
        c = s + cov
        diff = m - mean
        log_n = -0.5 * (
            diff @ np.linalg.solve(c, diff)
            + np.linalg.slogdet(c)[1]
            + d * np.log(2 * np.pi)
        )
        total += w * np.exp(log_n)
    return np.log(total) + 0.5 * d * np.log(2 * np.pi) + 0.5 * np.linalg.slogdet(cov)[1]


CASES = {
    "standard-2d": (2, None),
    "gmm-2d": (2, 3),
    "standard-5d": (5, None),
}


def _case(name):
    d, k = CASES[name]
    rng = np.random.RandomState(1)
    mean = rng.normal(scale=0.5, size=d)
    a = rng.normal(size=(d, d))
    cov = a @ a.T / d + 0.5 * np.eye(d)
    energy = GaussianEnergy(d, mean=mean, covariance=cov, learnable=False).double()
    if k is None:
        base = StandardNormalDensity(d).double()
        weights, means, covs = [1.0], [np.zeros(d)], [np.eye(d)]
    else:
        weights = np.array([0.2, 0.5, 0.3])
        means = rng.normal(size=(k, d))
        covs = np.stack(
            [0.3 * np.eye(d) + 0.1 * np.diag(rng.uniform(size=d)) for _ in range(k)]
        )
        base = GaussianMixtureDensity(weights, means, covs)
    exact = gaussian_product_log_partition(means, covs, weights, mean, cov)
    return ResidualEnergy(energy, base), exact


SAMPLING = {
    "importance": lambda model, seed, size: importance_log_partition(
        model, generator=torch.Generator().manual_seed(seed), n_draws=size * 100
    ),
    "ais": lambda model, seed, size: ais_log_partition(
        model,
        generator=torch.Generator().manual_seed(seed),
        n_chains=size,
        n_temperatures=200 if size > 1000 else 20,
    ),
}


@pytest.mark.parametrize("method", list(SAMPLING))
@pytest.mark.parametrize("name", list(CASES))
def test_sampled_log_partition_matches_closed_form_within_0_02_nats(name, method):
    model, exact = _case(name)
    estimate = SAMPLING[method](model, 0, 2048)
    # The reported standard error is small enough for the 0.02 tolerance to mean
    # something, and the estimate lies within it.
    assert estimate.stderr < 0.02 / 3
    assert abs(estimate.log_partition - exact) < 0.02, (estimate, exact)


@pytest.mark.parametrize("name", ["standard-2d", "gmm-2d"])
def test_grid_matches_closed_form(name):
    model, exact = _case(name)
    estimate = grid_log_partition(model)
    assert abs(estimate.log_partition - exact) < 1e-4
    assert estimate.stderr < 1e-4


@pytest.mark.parametrize("method", list(SAMPLING))
def test_sampled_stderr_is_calibrated(method):
    """Across seeds, estimates scatter like their reported standard error."""
    model, exact = _case("standard-2d")
    estimates = [SAMPLING[method](model, seed, 256) for seed in range(30)]
    values = np.array([e.log_partition for e in estimates])
    stderr = np.mean([e.stderr for e in estimates])
    z = (values.mean() - exact) / (values.std(ddof=1) / np.sqrt(len(values)))
    assert abs(z) < 4, (values.mean(), exact)
    assert 0.5 < values.std(ddof=1) / stderr < 2.0


@pytest.mark.parametrize("method", list(SAMPLING))
def test_untrained_energy_has_log_partition_zero(method):
    model = ResidualEnergy(MLPEnergy(3, (8,)), StandardNormalDensity(3))
    estimate = SAMPLING[method](model, 0, 64)
    assert estimate.log_partition == 0.0 and estimate.stderr == 0.0


def test_auto_samples_by_importance_beyond_two_dimensions():
    model, _ = _case("standard-5d")
    params = {"n_draws": 4096, "n_chains": 64}
    auto = estimate_log_partition(
        model, "auto", params, generator=torch.Generator().manual_seed(3)
    )
    direct = importance_log_partition(
        model, generator=torch.Generator().manual_seed(3), n_draws=4096
    )
    assert auto == direct and auto.effective_sample_size >= MIN_IMPORTANCE_ESS


def test_auto_anneals_where_importance_weights_degenerate():
    """A narrow energy far out in the base's tail: base draws almost never land
    where the model's mass is, so plain importance sampling rests on a handful of
    draws (and misses by 0.5-0.8 nats on this case), and ``"auto"`` runs AIS,
    which is within its standard error of the closed form."""
    d = 6
    mean = np.zeros(d)
    mean[0] = 3.0
    cov = 0.04 * np.eye(d)
    energy = GaussianEnergy(d, mean=mean, covariance=cov, learnable=False).double()
    model = ResidualEnergy(energy, StandardNormalDensity(d).double())
    exact = gaussian_product_log_partition([np.zeros(d)], [np.eye(d)], [1.0], mean, cov)
    importance = importance_log_partition(
        model, generator=torch.Generator().manual_seed(0)
    )
    assert importance.effective_sample_size < MIN_IMPORTANCE_ESS
    auto = estimate_log_partition(
        model, "auto", None, generator=torch.Generator().manual_seed(0)
    )
    assert auto.acceptance_rate is not None  # an AIS estimate
    assert abs(auto.log_partition - exact) < 3 * auto.stderr, (auto, exact)


def test_an_unknown_method_is_a_clear_error():
    model, _ = _case("standard-2d")
    with pytest.raises(ValueError, match="'importance', 'ais', 'grid'"):
        estimate_log_partition(
            model, "bridge", None, generator=torch.Generator().manual_seed(0)
        )


def test_grid_refuses_more_than_two_dimensions():
    model = ResidualEnergy(MLPEnergy(3, (8,)), StandardNormalDensity(3))
    with pytest.raises(ValueError, match="d <= 2"):
        grid_log_partition(model)


@pytest.mark.parametrize("d", [1, 2])
def test_grid_widens_its_box_to_mass_beyond_the_base(d):
    """A model whose mass lies 8 base standard deviations out, beyond the base's
    box of ±6 (rows far in a heavy tail): N(0, I) times exp(-|x - μ|²/2) with
    μ = 16·e_d is a Gaussian of mean 8·e_d, whose log Z has a closed form."""
    mean = np.zeros(d)
    mean[-1] = 16.0
    energy = GaussianEnergy(d, mean=mean, learnable=False).double()
    model = ResidualEnergy(energy, StandardNormalDensity(d).double())
    exact = gaussian_product_log_partition(
        [np.zeros(d)], [np.eye(d)], [1.0], mean, np.eye(d)
    )
    estimate = grid_log_partition(model)
    assert abs(estimate.log_partition - exact) < 1e-4, (estimate, exact)
    assert estimate.stderr < 1e-4


def test_grid_keeps_the_base_box_when_the_mass_is_inside(monkeypatch):
    """The closed-form cases of ``test_grid_matches_closed_form`` evaluate one
    grid and one of half the resolution: no widening where nothing reaches the edge."""
    import skebm.partition as partition

    calls = []
    evaluate = partition.evaluate_in_chunks

    def counted(function, rows, **kwargs):
        calls.append(len(rows))
        return evaluate(function, rows, **kwargs)

    monkeypatch.setattr(partition, "evaluate_in_chunks", counted)
    for name in ("standard-2d", "gmm-2d"):
        calls.clear()
        model, _ = _case(name)
        grid_log_partition(model)
        assert calls == [401**2, 200**2], name
