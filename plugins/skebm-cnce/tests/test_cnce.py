"""Tests of skebm-cnce: the loss's algebra, Gaussian recovery, the author kit.

They import the installed package (CI installs it with pip, non-editable, and sets
SKEBM_REQUIRE_PLUGIN_PACKAGES=1 so a missing package is an error); on a machine
where it is not installed they import the source next to this folder.
"""

import doctest
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch

try:
    import skebm_cnce
except ImportError:  # not installed: test the source (never in CI)
    if os.environ.get("SKEBM_REQUIRE_PLUGIN_PACKAGES") == "1":
        raise
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import skebm_cnce

from skebm_cnce import ConditionalNCE

from skebm.energies import GaussianEnergy, ResidualEnergy
from skebm.utils.estimator_checks import parametrize_with_plugin_checks

MEAN = np.array([0.5, -1.0, 0.0])
COV = np.array([[1.0, 0.4, 0.2], [0.4, 0.8, -0.1], [0.2, -0.1, 0.5]])


def quadratic(x):
    return 0.5 * (x * x).sum(-1)


def test_a_flat_model_cannot_tell_data_from_noise():
    """With a constant energy both points of every pair look alike: loss = log 2."""
    loss = ConditionalNCE(n_noise=3)
    value = loss(
        lambda x: torch.zeros(x.shape[0]),
        torch.randn(50, 2),
        generator=torch.Generator().manual_seed(0),
    )
    assert math.isclose(float(value), math.log(2.0), rel_tol=1e-6)


def test_the_normaliser_cancels():
    """Adding a constant to the energy (rescaling the density) changes nothing."""
    x = torch.randn(40, 2, generator=torch.Generator().manual_seed(1))
    loss = ConditionalNCE(noise_scale=0.3, n_noise=2)
    values = [
        loss(
            lambda u, c=c: quadratic(u) + c,
            x,
            generator=torch.Generator().manual_seed(0),
        )
        for c in (0.0, 7.5)
    ]
    assert torch.allclose(values[0], values[1])


def test_the_loss_matches_its_definition():
    """mean softplus(U(x) - U(y)) over κ noisy copies y = x + σε, drawn in order."""
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(2))
    sigma, kappa = 0.4, 3
    value = ConditionalNCE(noise_scale=sigma, n_noise=kappa)(
        quadratic, x, generator=torch.Generator().manual_seed(0)
    )
    eps = torch.randn((kappa * 8, 2), generator=torch.Generator().manual_seed(0))
    y = x.repeat(kappa, 1) + sigma * eps
    expected = torch.nn.functional.softplus(quadratic(x).repeat(kappa) - quadratic(y))
    assert torch.allclose(value, expected.mean())


def test_cnce_recovers_a_gaussian():
    """Acceptance: training a learnable Gaussian energy with loss="cnce" (defaults) on
    5,000 draws of a 3-d Gaussian recovers its mean and covariance within 0.05. The
    maximum-likelihood estimate itself is 0.019 / 0.027 from the truth on this sample;
    Adam's learning rate decays linearly to 5% so the final iterate settles."""
    rng = np.random.RandomState(0)
    X = torch.as_tensor(
        rng.multivariate_normal(MEAN, COV, size=5000), dtype=torch.float32
    )
    energy = GaussianEnergy(3)
    model = ResidualEnergy(energy)
    loss = ConditionalNCE()
    g = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(energy.parameters(), lr=0.05)
    n_epochs, batch_size = 40, 500
    n_updates = n_epochs * len(X) // batch_size
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda t: max(0.05, 1.0 - t / n_updates)
    )
    for _ in range(n_epochs):
        for batch in X[torch.randperm(len(X), generator=g)].split(batch_size):
            optimizer.zero_grad()
            loss(model, batch, generator=g).backward()
            optimizer.step()
            schedule.step()
    with torch.no_grad():
        mean = energy.mean.double().numpy()
        cov = energy.covariance().double().numpy()
    assert np.abs(mean - MEAN).max() < 0.05, mean
    assert np.abs(cov - COV).max() < 0.05, cov


@parametrize_with_plugin_checks([ConditionalNCE()])
def test_author_kit(subject, check):
    check(subject)


def test_docstring_examples():
    for module in (skebm_cnce, skebm_cnce.cnce):
        assert doctest.testmod(module).failed == 0
