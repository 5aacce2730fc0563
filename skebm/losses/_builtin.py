"""skebm's built-in losses, registered through the same hook as plugins."""

from skebm.hookspecs import hookimpl
from skebm.losses.contrastive import (
    ContrastiveDivergence,
    PersistentContrastiveDivergence,
)
from skebm.losses.likelihood import MaximumLikelihood
from skebm.losses.nce import NoiseContrastiveEstimation
from skebm.losses.score_matching import DenoisingScoreMatching, ScoreMatching


@hookimpl
def skebm_register_losses(register):
    register("nce", NoiseContrastiveEstimation)
    register("cd", ContrastiveDivergence)
    register("pcd", PersistentContrastiveDivergence)
    register("sm", ScoreMatching)
    register("dsm", DenoisingScoreMatching)
    register("ml", MaximumLikelihood)
