"""The entry point of skebm-tempering: registers the sampler ``"tempering"``."""

import skebm
from skebm_tempering.tempering import ParallelTempering


@skebm.hookimpl
def skebm_register_samplers(register):
    register("tempering", ParallelTempering)
