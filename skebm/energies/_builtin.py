"""skebm's built-in energies, registered through the same hook as plugins."""

from skebm.energies.analytic import (
    DoubleWellEnergy,
    GaussianEnergy,
    GaussianMixtureEnergy,
    RosenbrockEnergy,
)
from skebm.energies.mlp import MLPEnergy
from skebm.hookspecs import hookimpl


@hookimpl
def skebm_register_energies(register):
    register("mlp", MLPEnergy)
    register("gaussian", GaussianEnergy)
    register("gaussian_mixture", GaussianMixtureEnergy)
    register("double_well", DoubleWellEnergy)
    register("rosenbrock", RosenbrockEnergy)
