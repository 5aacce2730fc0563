"""skebm's built-in energies, registered through the same hook as plugins."""

from skebm.energies.analytic import (
    DoubleWellEnergy,
    GaussianEnergy,
    GaussianMixtureEnergy,
    RosenbrockEnergy,
)
from skebm.energies.composite import CompositeEnergy, HybridEnergy
from skebm.energies.conv import ConvEnergy
from skebm.energies.mlp import MLPEnergy
from skebm.hookspecs import hookimpl


@hookimpl
def skebm_register_energies(register):
    register("mlp", MLPEnergy)
    register("gaussian", GaussianEnergy)
    register("gaussian_mixture", GaussianMixtureEnergy)
    register("double_well", DoubleWellEnergy)
    register("rosenbrock", RosenbrockEnergy)
    register("composite", CompositeEnergy)
    register("hybrid", HybridEnergy)
    register("conv", ConvEnergy)
