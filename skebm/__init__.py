"""skebm: scikit-learn compatible energy-based density estimation on PyTorch.

The model is ``p(x) ∝ q(x) exp(-E(x))`` with a fitted base density ``q`` and a
neural energy ``E``; :class:`EnergyDensityEstimator` fits, scores (normalised
log-likelihood) and samples it with scikit-learn semantics. Losses, samplers and
energies are strategies looked up by name in a registry filled through pluggy
hooks (see :mod:`skebm.hookspecs`).
"""

from skebm._version import __version__
from skebm.estimator import EnergyDensityEstimator
from skebm.hookspecs import hookimpl
from skebm.outlier import EnergyOutlierDetector
from skebm.persistence import load, save
from skebm.plugins import list_energies, list_losses, list_samplers

__all__ = [
    "EnergyDensityEstimator",
    "EnergyOutlierDetector",
    "__version__",
    "hookimpl",
    "list_energies",
    "list_losses",
    "list_samplers",
    "load",
    "save",
]
