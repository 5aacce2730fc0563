"""Training faults and resumption: gradient clipping, exact partial_fit resumes."""

import numpy as np
import pytest
import torch
from torch import nn

from skebm._training import run_epochs
from skebm.energies import ResidualEnergy
from skebm.losses import BaseLoss
from tests._helpers import small_estimator


class _LinearEnergy(nn.Module):
    def __init__(self, n_features):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_features, dtype=torch.float64))

    def forward(self, x):
        return x @ self.weight


class _ScaledEnergyLoss(BaseLoss):
    """``factor · mean E(x)``: its gradient is ``factor · mean(x)`` for a linear E."""

    def __init__(self, factor=1000.0):
        self.factor = factor

    def _loss(self, model, x, *, sampler, generator, state):
        return self.factor * model.energy(x).mean()


def _one_sgd_step(X, max_grad_norm):
    energy = _LinearEnergy(X.shape[1])
    optimizer = torch.optim.SGD(energy.parameters(), lr=1.0)
    run_epochs(
        model=ResidualEnergy(energy),
        loss=_ScaledEnergyLoss(),
        sampler=None,
        loss_state=None,
        optimizer=optimizer,
        X=X,
        batch_size=X.shape[0],  # one step
        n_epochs=1,
        generator=torch.Generator().manual_seed(0),
        max_grad_norm=max_grad_norm,
    )
    return energy.weight.detach()


def test_gradient_clipping_caps_the_step_norm():
    """With SGD at lr=1 the step is minus the (clipped) gradient, whose norm is
    known exactly: 1000·|mean x| unclipped, ``max_grad_norm`` clipped."""
    X = torch.tensor([[1.0, 2.0], [3.0, -1.0], [2.0, 5.0]], dtype=torch.float64)
    gradient = 1000.0 * X.mean(0)
    unclipped = _one_sgd_step(X, max_grad_norm=None)
    torch.testing.assert_close(unclipped, -gradient)
    clipped = _one_sgd_step(X, max_grad_norm=0.5)
    # clip_grad_norm_ scales by max_norm / (norm + 1e-6): relative error < 1e-8.
    assert clipped.norm().item() == pytest.approx(0.5, rel=1e-8)
    torch.testing.assert_close(clipped / clipped.norm(), -gradient / gradient.norm())
    loose = _one_sgd_step(X, max_grad_norm=1e9)  # above the norm: no change
    assert torch.equal(loose, unclipped)


def test_gradient_clipping_is_wired_into_the_estimator(moons):
    plain = small_estimator(random_state=0).fit(moons)
    loose = small_estimator(max_grad_norm=1e9, random_state=0).fit(moons)
    tight = small_estimator(max_grad_norm=1e-7, random_state=0).fit(moons)
    np.testing.assert_array_equal(
        loose.score_samples(moons), plain.score_samples(moons)
    )
    assert not np.array_equal(tight.loss_curve_, plain.loss_curve_)


@pytest.mark.parametrize("loss", ["nce", "pcd"])
def test_partial_fit_equals_one_longer_fit(moons, loss):
    """Five partial_fit epochs, or two fit epochs then three partial_fit, give the
    model of one five-epoch fit: same losses, same scores, same samples."""
    params = dict(loss=loss, sampler="langevin", random_state=0)
    if loss == "pcd":
        params["loss_params"] = {"n_steps": 2, "buffer_size": 200}
    # partial_fit neither holds rows out nor averages the weights; nor may fit here.
    long = small_estimator(max_iter=5, early_stopping=False, ema_decay=0.0, **params)
    long.fit(moons)
    incremental = small_estimator(**params)
    for _ in range(5):
        incremental.partial_fit(moons)
    mixed = small_estimator(max_iter=2, early_stopping=False, ema_decay=0.0, **params)
    mixed.fit(moons)
    for _ in range(3):
        mixed.partial_fit(moons)
    for resumed in (incremental, mixed):
        np.testing.assert_array_equal(resumed.loss_curve_, long.loss_curve_)
        np.testing.assert_array_equal(
            resumed.score_samples(moons), long.score_samples(moons)
        )
        np.testing.assert_array_equal(
            resumed.sample(20, random_state=3), long.sample(20, random_state=3)
        )
