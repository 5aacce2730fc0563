"""Losses recover a Gaussian: training a learnable Gaussian energy on 5,000 draws of
a 3-d Gaussian must give its mean and covariance within 0.05 (the sampling error of
the MLE itself is about 0.015 per entry here). Loss values are checked against
closed forms on quadratic energies."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import distributions

from skebm.bases import StandardNormalDensity
from skebm.energies import GaussianEnergy, MLPEnergy, ResidualEnergy
from skebm.losses import (
    ContrastiveDivergence,
    DenoisingScoreMatching,
    MaximumLikelihood,
    NoiseContrastiveEstimation,
    ScoreMatching,
)
from skebm.samplers import MALA
from tests._helpers import small_estimator

MEAN = np.array([0.5, -1.0, 0.0])
COV = np.array([[1.0, 0.4, 0.2], [0.4, 0.8, -0.1], [0.2, -0.1, 0.5]])


def _data(n=5000, seed=0):
    rng = np.random.RandomState(seed)
    return torch.as_tensor(
        rng.multivariate_normal(MEAN, COV, size=n), dtype=torch.float32
    )


def train(loss, *, n_epochs, lr, batch_size=500, sampler=None, seed=0):
    """Adam with the learning rate decayed linearly to 5% (stochastic losses need a
    decaying step for the final iterate to settle at the optimum)."""
    X = _data()
    energy = GaussianEnergy(3)
    model = ResidualEnergy(energy)
    g = torch.Generator().manual_seed(seed)
    state = loss.init_state(model, X, generator=g)
    params = list(energy.parameters()) + (list(state.parameters()) if state else [])
    optimizer = torch.optim.Adam(params, lr=lr)
    n_steps = n_epochs * -(-len(X) // batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda t: max(0.05, 1.0 - t / n_steps)
    )
    for _ in range(n_epochs):
        for batch in X[torch.randperm(len(X), generator=g)].split(batch_size):
            optimizer.zero_grad()
            loss(model, batch, sampler=sampler, generator=g, state=state).backward()
            optimizer.step()
            schedule.step()
    return energy, X


def _assert_recovers(energy, X, tol=0.05):
    empirical_mean = X.double().mean(0).numpy()
    empirical_cov = np.cov(X.double().numpy().T)
    with torch.no_grad():
        mean = energy.mean.double().numpy()
        cov = energy.covariance().double().numpy()
    assert np.abs(mean - MEAN).max() < tol, mean
    assert np.abs(cov - COV).max() < tol, cov
    # The estimate sits closer to the sample's own moments (the MLE) than the tol.
    assert np.abs(cov - empirical_cov).max() < tol
    assert np.abs(mean - empirical_mean).max() < tol


def test_nce_recovers_gaussian():
    noise = distributions.MultivariateNormal(torch.zeros(3), 3.0 * torch.eye(3))
    energy, X = train(
        NoiseContrastiveEstimation(noise_ratio=10, noise=noise), n_epochs=60, lr=0.05
    )
    _assert_recovers(energy, X)


def test_persistent_cd_recovers_gaussian():
    loss = ContrastiveDivergence(
        n_steps=5, persistent=True, buffer_size=5000, reinit_prob=0.0, alpha=0.0
    )
    energy, X = train(
        loss, n_epochs=60, lr=0.02, sampler=MALA(0.05, target_accept=None)
    )
    _assert_recovers(energy, X)


@pytest.mark.parametrize("method", ["exact", "hutchinson"])
def test_score_matching_recovers_gaussian(method):
    energy, X = train(ScoreMatching(method=method), n_epochs=60, lr=0.05)
    _assert_recovers(energy, X)


def test_maximum_likelihood_recovers_gaussian():
    """Closed form: a flat base and an energy with ``log_partition()``."""
    energy, X = train(MaximumLikelihood(), n_epochs=60, lr=0.05)
    _assert_recovers(energy, X)


def test_dsm_learns_the_smoothed_gaussian_and_its_bias_shrinks_with_sigma():
    """DSM's optimum is the data smoothed by N(0, σ²I): for a Gaussian model the
    covariance Σ̂ + σ²I (Σ̂ the sample covariance); several levels weighted by σ²
    give Σ̂ + (Σσ⁴/Σσ²) I. Within 0.05 of that target, and the bias |cov - Σ̂|
    is about σ², so it shrinks when σ does."""
    bias = {}
    for sigma in [0.5, 0.25, (0.25, 0.5)]:
        energy, X = train(DenoisingScoreMatching(sigma), n_epochs=100, lr=0.02)
        sigmas = np.atleast_1d(sigma)
        inflation = (sigmas**4).sum() / (sigmas**2).sum()
        empirical_cov = np.cov(X.double().numpy().T)
        with torch.no_grad():
            cov = energy.covariance().double().numpy()
            mean = energy.mean.double().numpy()
        assert np.abs(cov - empirical_cov - inflation * np.eye(3)).max() < 0.05, cov
        assert np.abs(mean - X.double().mean(0).numpy()).max() < 0.05, mean
        bias[sigma] = np.abs(np.diag(cov - empirical_cov)).mean()
    assert bias[0.25] < 0.5 * bias[0.5], bias
    assert bias[0.25] < bias[(0.25, 0.5)] < bias[0.5], bias


def _quadratic_d8(dtype=torch.float64):
    rng = np.random.RandomState(1)
    a = rng.normal(size=(8, 8))
    precision = a @ a.T / 8 + np.eye(8)
    mean = rng.normal(size=8)
    energy = GaussianEnergy(8, mean=mean, covariance=np.linalg.inv(precision))
    energy = energy.to(dtype)
    x = torch.as_tensor(rng.normal(size=(4000, 8)), dtype=dtype)
    with torch.no_grad():  # the parameters as stored (rounded to float32 at init)
        precision = energy.precision().double().numpy()
        mean = energy.mean.double().numpy()
    return energy, x, precision, mean


def _score_matching_closed_form(x, precision, mean):
    """``mean ½|P(x - μ)|² - tr P`` for ``U = ½ (x - μ)ᵀ P (x - μ)``."""
    gradient = (x.numpy() - mean) @ precision
    return 0.5 * (gradient**2).sum(1).mean() - np.trace(precision)


def test_exact_score_matching_matches_the_closed_form_in_d8():
    energy, x, precision, mean = _quadratic_d8()
    value = ScoreMatching()(energy, x).item()
    assert math.isclose(
        value, _score_matching_closed_form(x, precision, mean), rel_tol=1e-9
    )


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_score_matching_is_unbiased_in_d8(probe):
    """The Hutchinson trace ``vᵀPv`` has mean tr P and per-row variance
    2 Σ_{i≠j} P_ij² (Rademacher) or 2 |P|_F² (Gaussian); the mean over 4,000 rows
    must be within 5 standard errors of the closed form. Dividing the trace by d
    (torchebm's "approx" bug) moves it by 7/8 tr P ≈ 250 standard errors."""
    energy, x, precision, mean = _quadratic_d8()
    loss = ScoreMatching(method="hutchinson", n_projections=2, probe=probe)
    value = loss(energy, x, generator=torch.Generator().manual_seed(0)).item()
    off_diagonal = precision - np.diag(np.diag(precision))
    per_probe = 2 * (
        (off_diagonal**2).sum() if probe == "rademacher" else (precision**2).sum()
    )
    se = math.sqrt(per_probe / (2 * len(x)))
    assert abs(value - _score_matching_closed_form(x, precision, mean)) < 5 * se
    assert 0.875 * np.trace(precision) > 100 * se


@pytest.mark.parametrize("method", ["exact", "hutchinson"])
def test_score_matching_acts_on_the_total_energy(method):
    """With a standard normal base, U = E - log q has gradient P(x - μ) + x and
    Hessian P + I: the loss must use these, not those of E alone."""
    energy, x, precision, mean = _quadratic_d8()
    x = x[:64]
    model = ResidualEnergy(energy, StandardNormalDensity(8).double())
    loss = ScoreMatching(method=method, n_projections=8)
    value = loss(model, x, generator=torch.Generator().manual_seed(0)).item()
    total = precision + np.eye(8)
    shifted_mean = np.linalg.solve(total, precision @ mean)
    expected = _score_matching_closed_form(x, total, shifted_mean)
    # Hutchinson: 64 rows x 8 Rademacher probes of variance 2 Σ_{i≠j} P_ij².
    off_diagonal = total - np.diag(np.diag(total))
    se = math.sqrt(2 * (off_diagonal**2).sum() / (64 * 8))
    tolerance = 1e-9 * abs(expected) if method == "exact" else 5 * se
    assert abs(value - expected) < tolerance
    ignoring_the_base = _score_matching_closed_form(x, precision, mean)
    assert abs(ignoring_the_base - expected) > 10 * tolerance


def _gaussian_over_standard_base():
    """A 2-D Gaussian energy times N(0, I): Z = ∫ N(x; 0, I) exp(-½(x-m)ᵀP(x-m))
    = (2π)^{d/2} |P|^{-1/2} N(0; m, I + P⁻¹)."""
    mean = np.array([0.3, -0.2])
    covariance = np.array([[0.8, 0.3], [0.3, 0.5]])
    energy = GaussianEnergy(2, mean=mean, covariance=covariance).double()
    model = ResidualEnergy(energy, StandardNormalDensity(2).double())
    joint = distributions.MultivariateNormal(
        torch.as_tensor(mean), torch.as_tensor(np.eye(2) + covariance)
    )
    log_z = (
        math.log(2 * math.pi)
        + 0.5 * math.log(np.linalg.det(covariance))
        + joint.log_prob(torch.zeros(2, dtype=torch.float64)).item()
    )
    return model, log_z


def test_maximum_likelihood_grid_matches_the_exact_normaliser():
    """The shifted 64x64 midpoint rule on the box ±4 (the base's bounds) is exact
    to the quadrature error of a smooth integrand plus the base mass outside the
    box (< 1e-4), whatever the shift."""
    model, log_z = _gaussian_over_standard_base()
    x = torch.zeros(3, 2, dtype=torch.float64)
    loss = MaximumLikelihood()
    g = torch.Generator().manual_seed(0)
    state = loss.init_state(model, x, generator=g)
    for _ in range(5):
        value = loss(model, x, generator=g, state=state)
        assert abs(value.item() - model(x).mean().item() - log_z) < 1e-3


def test_maximum_likelihood_grid_recovers_gaussian_over_a_base():
    """ML with the in-loss grid on a standard normal base: the model's total
    density N(·)·exp(-E) is Gaussian with precision P + I; it must match the
    data's mean and covariance within 0.05 (data covariance below I so P > 0)."""
    mean = np.array([0.3, -0.4])
    cov = np.array([[0.5, 0.2], [0.2, 0.4]])
    X = torch.as_tensor(
        np.random.RandomState(0).multivariate_normal(mean, cov, size=5000),
        dtype=torch.float32,
    )
    energy = GaussianEnergy(2)
    model = ResidualEnergy(energy, StandardNormalDensity(2))
    loss = MaximumLikelihood()
    g = torch.Generator().manual_seed(0)
    state = loss.init_state(model, X, generator=g)
    optimizer = torch.optim.Adam(energy.parameters(), lr=0.05)
    n_epochs = 30
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda t: max(0.05, 1.0 - t / (n_epochs * 10))
    )
    for _ in range(n_epochs):
        for batch in X[torch.randperm(len(X), generator=g)].split(500):
            optimizer.zero_grad()
            loss(model, batch, generator=g, state=state).backward()
            optimizer.step()
            schedule.step()
    with torch.no_grad():
        precision = energy.precision().double().numpy() + np.eye(2)
        total_cov = np.linalg.inv(precision)
        total_mean = total_cov @ (
            energy.precision().double().numpy() @ energy.mean.double().numpy()
        )
    assert np.abs(total_mean - mean).max() < 0.05, total_mean
    assert np.abs(total_cov - cov).max() < 0.05, total_cov


def test_maximum_likelihood_without_a_tractable_normaliser_is_an_error():
    model = ResidualEnergy(
        MLPEnergy(3, hidden_layer_sizes=(4,)), StandardNormalDensity(3)
    )
    with pytest.raises(ValueError, match="tractable normaliser.*d=3.*loss='nce'"):
        MaximumLikelihood()(model, _data(10))
    with pytest.raises(ValueError, match="no base density"):
        MaximumLikelihood()(MLPEnergy(2, hidden_layer_sizes=(4,)), torch.zeros(4, 2))


def test_dsm_rejects_bad_sigmas():
    with pytest.raises(ValueError, match="non-empty tuple of positive"):
        DenoisingScoreMatching(sigma=(0.1, -1.0))(GaussianEnergy(3), _data(4))


def test_nce_without_noise_or_base_is_an_error():
    with pytest.raises(ValueError, match="needs noise="):
        NoiseContrastiveEstimation()(
            GaussianEnergy(3), _data(10), generator=torch.Generator()
        )


def test_cd_requires_a_sampler():
    with pytest.raises(ValueError, match="needs a sampler"):
        ContrastiveDivergence()(GaussianEnergy(3), _data(10))


@pytest.mark.parametrize(
    "loss",
    [
        NoiseContrastiveEstimation(
            noise=distributions.MultivariateNormal(torch.zeros(3), torch.eye(3))
        ),
        ContrastiveDivergence(n_steps=2),
        ContrastiveDivergence(n_steps=2, init="data"),
        ContrastiveDivergence(n_steps=2, persistent=True, buffer_size=50),
        ScoreMatching(),
        ScoreMatching(method="hutchinson", probe="gaussian"),
        DenoisingScoreMatching(sigma=(0.1, 0.2)),
        MaximumLikelihood(),
    ],
    ids=repr,
)
def test_loss_contract(loss):
    X = _data(64)
    model = ResidualEnergy(GaussianEnergy(3))
    rng_state = torch.random.get_rng_state()
    values = []
    for _ in range(2):
        g = torch.Generator().manual_seed(5)
        state = loss.init_state(model, X, generator=g)
        values.append(loss(model, X[:16], sampler=MALA(0.05), generator=g, state=state))
    assert values[0].shape == () and torch.isfinite(values[0])
    assert torch.equal(values[0], values[1])
    assert torch.equal(rng_state, torch.random.get_rng_state())


def test_loss_benchmark_runs_quickly():
    """``benchmarks/losses.py --quick``: every stage, a few seconds."""
    root = Path(__file__).parents[2]
    path = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    script = str(root / "benchmarks" / "losses.py")
    result = subprocess.run(
        [sys.executable, script, "--quick", "--jobs", "2", "--threads", "1"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": path},
    )
    assert "## Final" in result.stdout and "Recommended default:" in result.stdout
    assert "KernelDensity, CV bandwidth" in result.stdout


@pytest.mark.parametrize("loss", ["nce", "cd", "pcd", "sm", "dsm", "ml"])
def test_every_builtin_loss_trains_the_estimator(loss, moons):
    est = small_estimator(loss=loss, random_state=0).fit(moons)
    assert np.isfinite(est.score(moons))
    assert est.loss_curve_ and np.all(np.isfinite(est.loss_curve_))


def test_maximum_likelihood_in_the_estimator_explains_its_limit():
    X = np.random.RandomState(0).normal(size=(50, 3))
    with pytest.raises(ValueError, match="tractable normaliser"):
        small_estimator(loss="ml").fit(X)
