"""Energy networks ``E: R^d -> R`` and the residual form ``E - log q``."""

from skebm.energies.analytic import GaussianEnergy
from skebm.energies.mlp import MLPEnergy
from skebm.energies.residual import ResidualEnergy, as_residual

__all__ = ["GaussianEnergy", "MLPEnergy", "ResidualEnergy", "as_residual"]
