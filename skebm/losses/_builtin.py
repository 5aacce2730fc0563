"""skebm's built-in losses, registered through the same hook as plugins."""

from skebm.hookspecs import hookimpl
from skebm.losses.contrastive import (
    ContrastiveDivergence,
    PersistentContrastiveDivergence,
)
from skebm.losses.nce import NoiseContrastiveEstimation


@hookimpl
def skebm_register_losses(register):
    register("nce", NoiseContrastiveEstimation)
    register("cd", ContrastiveDivergence)
    register("pcd", PersistentContrastiveDivergence)
