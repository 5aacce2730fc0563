"""Training losses (stateless strategies)."""

from skebm.losses._base import BaseLoss
from skebm.losses.contrastive import (
    ContrastiveDivergence,
    PersistentContrastiveDivergence,
    ReplayBuffer,
)
from skebm.losses.nce import NoiseContrastiveEstimation

__all__ = [
    "BaseLoss",
    "ContrastiveDivergence",
    "NoiseContrastiveEstimation",
    "PersistentContrastiveDivergence",
    "ReplayBuffer",
]
