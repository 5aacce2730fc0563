"""Energies written the way a user writes them, in an importable module.

``GridSearchCV(n_jobs=2)`` fits in loky worker processes, which unpickle the
estimator and so must import the energy's class by its module path; a class
defined inside a test function could not be found there.
"""

import torch
from torch import nn


class SoftplusFeatureEnergy(nn.Module):
    """A plain ``nn.Module`` subclass: softplus features, summed with learned weights.

    Written without any skebm base class or convention (its output layer is not
    zero-initialised), so the estimator takes it exactly as a user would write it.
    """

    def __init__(self, n_features, width=8):
        super().__init__()
        self.hidden = nn.Linear(n_features, width)
        self.output = nn.Linear(width, 1)

    def forward(self, x):
        return self.output(nn.functional.softplus(self.hidden(x))).squeeze(-1)


class NegativeLogDensity(nn.Module):
    """The analytic energy ``-log q(x)`` of a fixed density ``q`` (a BaseDensity)."""

    def __init__(self, density):
        super().__init__()
        self.density = density

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.density.log_prob(x)
