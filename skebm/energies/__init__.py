"""Energies ``E: R^d -> R``: networks, analytic, composite, residual ``E - log q``."""

from skebm.energies.analytic import (
    DoubleWellEnergy,
    GaussianEnergy,
    GaussianMixtureEnergy,
    RosenbrockEnergy,
)
from skebm.energies.composite import CompositeEnergy, HybridEnergy
from skebm.energies.conv import ConvEnergy
from skebm.energies.mlp import MLPEnergy
from skebm.energies.residual import ResidualEnergy, as_residual

__all__ = [
    "CompositeEnergy",
    "ConvEnergy",
    "DoubleWellEnergy",
    "GaussianEnergy",
    "GaussianMixtureEnergy",
    "HybridEnergy",
    "MLPEnergy",
    "ResidualEnergy",
    "RosenbrockEnergy",
    "as_residual",
]
