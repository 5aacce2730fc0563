"""MCMC samplers (stateless strategies) and step-size schedules."""

from skebm.fast_gradient import energy_and_grad, langevin_move, langevin_update
from skebm.samplers._base import BaseSampler
from skebm.samplers.hmc import HMC, hmc_step
from skebm.samplers.langevin import MALA, Langevin, mala_step
from skebm.samplers.schedules import (
    BaseSchedule,
    ConstantSchedule,
    CosineSchedule,
    ExponentialSchedule,
    LinearSchedule,
)

__all__ = [
    "HMC",
    "MALA",
    "BaseSampler",
    "BaseSchedule",
    "ConstantSchedule",
    "CosineSchedule",
    "ExponentialSchedule",
    "Langevin",
    "LinearSchedule",
    "energy_and_grad",
    "hmc_step",
    "langevin_move",
    "langevin_update",
    "mala_step",
]
