"""Training losses (stateless strategies)."""

from skebm.losses._base import BaseLoss
from skebm.losses.contrastive import (
    ContrastiveDivergence,
    PersistentContrastiveDivergence,
    ReplayBuffer,
)
from skebm.losses.likelihood import MaximumLikelihood
from skebm.losses.nce import NoiseContrastiveEstimation
from skebm.losses.score_matching import DenoisingScoreMatching, ScoreMatching

__all__ = [
    "BaseLoss",
    "ContrastiveDivergence",
    "DenoisingScoreMatching",
    "MaximumLikelihood",
    "NoiseContrastiveEstimation",
    "PersistentContrastiveDivergence",
    "ReplayBuffer",
    "ScoreMatching",
]
