"""skebm's built-in samplers, registered through the same hook as plugins."""

from skebm.hookspecs import hookimpl
from skebm.samplers.hmc import HMC
from skebm.samplers.langevin import MALA, Langevin


@hookimpl
def skebm_register_samplers(register):
    register("langevin", Langevin)
    register("mala", MALA)
    register("hmc", HMC)
