"""skebm-cnce: conditional noise-contrastive estimation for skebm.

Installing this distribution registers the loss ``"cnce"``::

    from skebm import EnergyDensityEstimator
    est = EnergyDensityEstimator(loss="cnce", loss_params={"noise_scale": 0.3})
"""

from skebm_cnce.cnce import ConditionalNCE

__version__ = "0.1.0"

__all__ = ["ConditionalNCE", "__version__"]
