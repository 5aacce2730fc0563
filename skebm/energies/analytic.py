"""Analytic energies with exact log-normalisers.

They serve as test targets with known moments and densities, and as ``energy=``
for users who want to sample, or fit by maximum likelihood, a known family.
Each energy ``E`` has a method ``log_partition()`` returning the exact
``log ∫ exp(-E(x)) dx``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

__all__ = ["GaussianEnergy"]

_LOG_2PI = math.log(2.0 * math.pi)


class GaussianEnergy(nn.Module):
    """The quadratic energy ``E(x) = ½ (x - μ)ᵀ P (x - μ)`` of a Gaussian.

    ``exp(-E)`` is an unnormalised ``N(μ, P⁻¹)``. The precision is parametrised as
    ``P = L Lᵀ`` with ``L`` lower triangular with a positive diagonal, so any
    parameter value is valid.

    Parameters
    ----------
    n_features : int
        Dimension.
    mean : array-like of shape (n_features,), default=None
        Initial mean (zeros).
    covariance : array-like of shape (n_features, n_features), default=None
        Initial covariance (identity).
    learnable : bool, default=True
        Whether the mean and precision are trainable parameters.

    Examples
    --------
    >>> import torch
    >>> from skebm.energies import GaussianEnergy
    >>> energy = GaussianEnergy(2, covariance=[[2.0, 0.0], [0.0, 0.5]])
    >>> round(energy.log_partition().item(), 4)  # log(2π · sqrt(det Σ))
    1.8379
    """

    def __init__(self, n_features, mean=None, covariance=None, learnable=True):
        super().__init__()
        d = int(n_features)
        mean = np.zeros(d) if mean is None else np.asarray(mean, dtype=np.float64)
        covariance = (
            np.eye(d)
            if covariance is None
            else np.asarray(covariance, dtype=np.float64)
        )
        if mean.shape != (d,) or covariance.shape != (d, d):
            raise ValueError(
                f"mean must have shape ({d},) and covariance ({d}, {d}); got "
                f"{mean.shape} and {covariance.shape}."
            )
        precision_chol = np.linalg.cholesky(np.linalg.inv(covariance))
        mean_t = torch.as_tensor(mean, dtype=torch.get_default_dtype())
        log_diag = torch.as_tensor(
            np.log(np.diag(precision_chol)), dtype=torch.get_default_dtype()
        )
        off_diag = torch.as_tensor(
            np.tril(precision_chol, -1), dtype=torch.get_default_dtype()
        )
        self.n_features = d
        self.mean = nn.Parameter(mean_t, requires_grad=learnable)
        self.log_diag = nn.Parameter(log_diag, requires_grad=learnable)
        self.off_diag = nn.Parameter(off_diag, requires_grad=learnable)

    def precision_cholesky(self) -> torch.Tensor:
        """The lower-triangular ``L`` with ``P = L Lᵀ``."""
        return torch.tril(self.off_diag, -1) + torch.diag(self.log_diag.exp())

    def precision(self) -> torch.Tensor:
        chol = self.precision_cholesky()
        return chol @ chol.T

    def covariance(self) -> torch.Tensor:
        return torch.linalg.inv(self.precision())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (x - self.mean) @ self.precision_cholesky()
        return 0.5 * (y * y).sum(-1)

    def log_partition(self) -> torch.Tensor:
        """``log ∫ exp(-E) = d/2 log 2π - log det L``."""
        return 0.5 * self.n_features * _LOG_2PI - self.log_diag.sum()
