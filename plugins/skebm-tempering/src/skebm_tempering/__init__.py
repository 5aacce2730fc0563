"""skebm-tempering: a parallel tempering (replica exchange) sampler for skebm.

Installing this distribution registers the sampler ``"tempering"``::

    from skebm import EnergyDensityEstimator
    est = EnergyDensityEstimator(sampler="tempering",
                                 sampler_params={"n_temperatures": 8})
"""

from skebm_tempering.tempering import ParallelTempering, geometric_ladder

__version__ = "0.1.0"

__all__ = ["ParallelTempering", "__version__", "geometric_ladder"]
