"""Energy networks ``E: R^d -> R`` and the residual form ``E - log q``."""

from skebm.energies.analytic import (
    DoubleWellEnergy,
    GaussianEnergy,
    GaussianMixtureEnergy,
    RosenbrockEnergy,
)
from skebm.energies.mlp import MLPEnergy
from skebm.energies.residual import ResidualEnergy, as_residual

__all__ = [
    "DoubleWellEnergy",
    "GaussianEnergy",
    "GaussianMixtureEnergy",
    "MLPEnergy",
    "ResidualEnergy",
    "RosenbrockEnergy",
    "as_residual",
]
