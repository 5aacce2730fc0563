"""Samplers against targets with known moments; contracts of the strategy API.

Tolerances: the final states of independent chains are independent draws, so a
mean has standard error sqrt(Σ_ii / n) and a covariance entry
sqrt((Σ_ii Σ_jj + Σ_ij²) / n); tests allow 5 standard errors.
"""

import numpy as np
import pytest
import torch

from skebm.energies import GaussianEnergy
from skebm.samplers import (
    MALA,
    CosineSchedule,
    ExponentialSchedule,
    Langevin,
    LinearSchedule,
)

COV = np.array([[1.0, 0.95], [0.95, 1.0]])
MEAN = np.array([1.0, -2.0])


def _gaussian_target(dtype=torch.float32):
    return GaussianEnergy(2, mean=MEAN, covariance=COV, learnable=False).to(dtype)


def _assert_moments(x, mean, cov, n_se=5.0):
    x = x.double().numpy()
    n = len(x)
    se_mean = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(x.mean(0) - mean) < n_se * se_mean), (x.mean(0), mean)
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    assert np.all(np.abs(np.cov(x.T) - cov) < n_se * se_cov), (np.cov(x.T), cov)


def test_mala_samples_correlated_gaussian_exactly():
    g = torch.Generator().manual_seed(0)
    x, info = MALA(step_size=0.05).sample(
        _gaussian_target(),
        torch.zeros(4000, 2),
        n_steps=600,
        generator=g,
        return_info=True,
    )
    _assert_moments(x, MEAN, COV)
    assert 0.4 < float(info["acceptance_rate"]) < 0.75


@pytest.mark.parametrize("step", [0.2, 0.02])
def test_langevin_matches_its_known_discretisation_bias(step):
    """ULA on N(0, 1) has stationary variance 1 / (1 - ε/2): the bias shrinks with
    ε, and a wrong noise scale (e.g. sqrt(ε) instead of sqrt(2ε)) would halve it."""
    g = torch.Generator().manual_seed(0)
    x = Langevin(step_size=step).sample(
        lambda x: 0.5 * x.pow(2).sum(-1),
        torch.zeros(20000, 1),
        n_steps=int(8 / step),
        generator=g,
    )
    expected = 1.0 / (1.0 - step / 2)
    se = expected * np.sqrt(2.0 / len(x))
    assert abs(float(x.var()) - expected) < 5 * se


@pytest.mark.parametrize("sampler", [Langevin(0.01), MALA(0.01)], ids=repr)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sampler_contract(sampler, dtype):
    energy = _gaussian_target(dtype)
    x0 = torch.zeros(16, 2, dtype=dtype)
    rng_state = torch.random.get_rng_state()
    a = sampler.sample(
        energy, x0, n_steps=5, generator=torch.Generator().manual_seed(3)
    )
    b = sampler.sample(
        energy, x0, n_steps=5, generator=torch.Generator().manual_seed(3)
    )
    assert a.shape == x0.shape and a.dtype == dtype
    assert torch.equal(a, b)
    assert torch.equal(rng_state, torch.random.get_rng_state())
    assert torch.equal(x0, torch.zeros(16, 2, dtype=dtype))
    unchanged = sampler.sample(energy, x0, n_steps=0)
    assert torch.equal(unchanged, x0)
    assert unchanged.data_ptr() != x0.data_ptr()  # a copy, never an alias


def test_sampler_freezes_and_restores_parameters():
    energy = GaussianEnergy(2)
    Langevin().sample(energy, torch.zeros(4, 2), n_steps=2)
    assert all(p.requires_grad for p in energy.parameters())
    assert all(p.grad is None for p in energy.parameters())


@pytest.mark.parametrize(
    "schedule, values",
    [
        (LinearSchedule(start=1.0, end=0.0), [1.0, 0.5, 0.0]),
        (ExponentialSchedule(start=1.0, end=0.01), [1.0, 0.1, 0.01]),
        (CosineSchedule(start=1.0, end=0.0), [1.0, 0.5, 0.0]),
        (LinearSchedule(start=1.0, end=0.0, n_steps=2), [1.0, 0.0, 0.0]),
    ],
)
def test_schedules(schedule, values):
    np.testing.assert_allclose([schedule(t, 3) for t in range(3)], values, atol=1e-12)


def test_langevin_accepts_a_step_size_schedule():
    g = torch.Generator().manual_seed(0)
    x = Langevin(step_size=LinearSchedule(start=0.1, end=0.001)).sample(
        lambda x: 0.5 * x.pow(2).sum(-1), torch.zeros(5000, 1), n_steps=300, generator=g
    )
    assert abs(float(x.var()) - 1.0) < 0.1
