"""Losses recover a Gaussian: training a learnable Gaussian energy on 5,000 draws of
a 3-d Gaussian must give its mean and covariance within 0.05 (the sampling error of
the MLE itself is about 0.015 per entry here)."""

import numpy as np
import pytest
import torch
from torch import distributions

from skebm.energies import GaussianEnergy, ResidualEnergy
from skebm.losses import ContrastiveDivergence, NoiseContrastiveEstimation
from skebm.samplers import MALA

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
