"""Where ``sample``'s chains start: independence Metropolis-Hastings from the base,
tested against targets with known moments."""

import numpy as np
import pytest
import torch
from torch import nn

import skebm.estimator
from skebm._chain_starts import independence_starts
from skebm.bases import StandardNormalDensity
from tests._helpers import small_estimator


class _TiltToGaussian(nn.Module):
    """The energy that turns the base N(0, 1) into N(mean, std²):
    ``-E(z) = -(z - mean)² / (2 std²) + z² / 2``."""

    def __init__(self, mean: float, std: float):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, z):
        z = z[:, 0]
        return (z - self.mean) ** 2 / (2 * self.std**2) - z**2 / 2


N_CHAINS = 20_000


@pytest.mark.parametrize(("mean", "std"), [(1.0, 1.0), (2.0, 0.5)])
def test_chains_reach_the_model_from_the_base(mean, std):
    # With M = sup p/q (at most 29 here), the chains' law is within (1 - 1/M)^n
    # of the target in total variation: below 1e-3 after 200 steps.
    z = independence_starts(
        _TiltToGaussian(mean, std),
        StandardNormalDensity(1).double(),
        N_CHAINS,
        n_steps=200,
        generator=torch.Generator().manual_seed(0),
    )[:, 0].numpy()
    mean_stderr = std / np.sqrt(N_CHAINS)
    std_stderr = std / np.sqrt(2 * N_CHAINS)
    assert abs(z.mean() - mean) < 5 * mean_stderr + 1e-3
    assert abs(z.std() - std) < 5 * std_stderr + 1e-3


def test_zero_steps_are_the_base_draws():
    base = StandardNormalDensity(1).double()
    z = independence_starts(
        _TiltToGaussian(2.0, 0.5),
        base,
        N_CHAINS,
        n_steps=0,
        generator=torch.Generator().manual_seed(0),
    )
    expected = base.sample(N_CHAINS, generator=torch.Generator().manual_seed(0))
    assert torch.equal(z, expected)


def test_sample_starts_its_chains_there(moons, monkeypatch):
    est = small_estimator(random_state=0).fit(moons)
    calls = []

    def spy(energy, base, n_chains, *, n_steps, generator):
        calls.append((energy, base, n_chains, n_steps))
        return independence_starts(
            energy, base, n_chains, n_steps=n_steps, generator=generator
        )

    monkeypatch.setattr(skebm.estimator, "independence_starts", spy)
    est.sample(7, random_state=0)
    assert calls == [(est.energy_, est.base_, 7, skebm.estimator._START_STEPS)]
