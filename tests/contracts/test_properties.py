"""Property tests of every built-in sampler and loss (hypothesis).

For any dimension d in 1..8, batch size 1..64 and dtype float32/float64, on every
available device: shapes, dtype and device are preserved, the same generator seed
gives the same output, and torch's global random state is never touched.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import distributions

from skebm.bases import StandardNormalDensity
from skebm.energies import GaussianEnergy, ResidualEnergy
from skebm.losses import (
    ContrastiveDivergence,
    DenoisingScoreMatching,
    MaximumLikelihood,
    NoiseContrastiveEstimation,
    PersistentContrastiveDivergence,
    ScoreMatching,
)
from skebm.samplers import HMC, MALA, ExponentialSchedule, Langevin
from tests._helpers import cuda

DEVICES = ["cpu", pytest.param("cuda", marks=cuda)]

SAMPLERS = [
    Langevin(step_size=0.05),
    Langevin(step_size=ExponentialSchedule(start=0.1, end=0.01), noise_scale=0.5),
    MALA(step_size=0.05),
    MALA(step_size=0.05, target_accept=None),
    HMC(step_size=0.1, n_leapfrog=3),
    HMC(step_size=0.1, n_leapfrog=2, mass=2.0),
]


def _mvn_noise(d, dtype, device):
    return distributions.MultivariateNormal(
        torch.zeros(d, device=device, dtype=dtype),
        2.0 * torch.eye(d, device=device, dtype=dtype),
    )


#: id -> factory(d, dtype, device) of a loss.
LOSSES = {
    "nce-base-noise": lambda *_: NoiseContrastiveEstimation(),
    "nce-torch-noise": lambda *a: NoiseContrastiveEstimation(noise=_mvn_noise(*a)),
    "cd-noise": lambda *_: ContrastiveDivergence(n_steps=2),
    "cd-data": lambda *_: ContrastiveDivergence(n_steps=2, init="data"),
    "pcd": lambda *_: PersistentContrastiveDivergence(n_steps=2, buffer_size=32),
    "sm-exact": lambda *_: ScoreMatching(),
    "sm-hutchinson": lambda *_: ScoreMatching(
        method="hutchinson", n_projections=2, probe="gaussian"
    ),
    "dsm": lambda *_: DenoisingScoreMatching(sigma=0.1),
    "dsm-levels": lambda *_: DenoisingScoreMatching(sigma=(0.05, 0.2)),
    "ml": lambda *_: MaximumLikelihood(),
}

CASES = settings(max_examples=15, deadline=None, derandomize=True)
dimensions = st.integers(1, 8)
batches = st.integers(1, 64)
dtypes = st.sampled_from([torch.float32, torch.float64])
seeds = st.integers(0, 2**31 - 1)


def _model(d, dtype, device, *, base=True):
    """A Gaussian energy (mean 0.3, identity covariance) over a N(0, I) base."""
    energy = GaussianEnergy(d, mean=[0.3] * d).to(device, dtype)
    return ResidualEnergy(
        energy, StandardNormalDensity(d).to(device, dtype) if base else None
    )


def _generator(device, seed):
    return torch.Generator(device=device).manual_seed(seed)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("sampler", SAMPLERS, ids=repr)
@CASES
@given(d=dimensions, batch=batches, dtype=dtypes, seed=seeds)
def test_sampler_properties(sampler, device, d, batch, dtype, seed):
    model = _model(d, dtype, device)
    x0 = torch.randn(batch, d, generator=_generator(device, seed), device=device).to(
        dtype
    )
    start = x0.clone()
    rng_state = torch.random.get_rng_state()
    runs = [
        sampler.sample(
            model,
            x0,
            n_steps=3,
            generator=_generator(device, seed),
            return_info=True,
        )
        for _ in range(2)
    ]
    (x, info), (again, _) = runs
    assert x.shape == (batch, d) and x.dtype == dtype and x.device == x0.device
    assert torch.equal(x, again)
    assert torch.equal(x0, start)
    assert torch.equal(rng_state, torch.random.get_rng_state())
    for value in info.values():
        assert value.device == x0.device and value.dtype == dtype


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", LOSSES)
@CASES
@given(d=dimensions, batch=batches, dtype=dtypes, seed=seeds)
def test_loss_properties(name, device, d, batch, dtype, seed):
    loss = LOSSES[name](d, dtype, device)
    # Maximum likelihood: closed form with a flat base in any d, grid for d <= 2.
    model = _model(
        d, dtype, device, base=not isinstance(loss, MaximumLikelihood) or d <= 2
    )
    x = torch.randn(batch, d, generator=_generator(device, seed + 1), device=device).to(
        dtype
    )
    sampler = MALA(step_size=0.05)
    rng_state = torch.random.get_rng_state()
    values = []
    for _ in range(2):
        generator = _generator(device, seed)
        state = loss.init_state(model, x, generator=generator)
        values.append(loss(model, x, sampler=sampler, generator=generator, state=state))
    value = values[0]
    assert value.shape == () and value.dtype == dtype and value.device == x.device
    assert torch.isfinite(value)
    assert torch.equal(values[0], values[1])
    assert torch.equal(rng_state, torch.random.get_rng_state())
    value.backward()
    gradients = [p.grad for p in model.energy.parameters()]
    assert all(g is not None and g.dtype == dtype for g in gradients)
