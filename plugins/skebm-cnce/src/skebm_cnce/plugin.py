"""The entry point of skebm-cnce: registers the loss ``"cnce"``."""

import skebm
from skebm_cnce.cnce import ConditionalNCE


@skebm.hookimpl
def skebm_register_losses(register):
    register("cnce", ConditionalNCE)
