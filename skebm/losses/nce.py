"""Noise-contrastive estimation (Gutmann & Hyvärinen, 2010)."""

from __future__ import annotations

import math
from numbers import Real

import torch
import torch.nn.functional as F
from torch import distributions, nn

from skebm.bases import DefensiveMixture
from skebm.losses._base import BaseLoss
from skebm.utils._sklearn_compat import HasMethods, Interval
from skebm.utils._torch import seeded_global_rng

__all__ = ["NoiseContrastiveEstimation"]


class _LogNormalizer(nn.Module):
    """NCE's learnable estimate ``c`` of ``log Z``."""

    def __init__(self, like: torch.Tensor):
        super().__init__()
        self.log_normalizer = nn.Parameter(
            torch.zeros((), dtype=like.dtype, device=like.device)
        )


def draw(
    noise: distributions.Distribution,
    n: int,
    generator: torch.Generator,
    like: torch.Tensor,
) -> torch.Tensor:
    """``n`` draws from a torch distribution, using only ``generator``.

    Gaussians are drawn by reparametrisation; other distributions are sampled
    inside a forked RNG seeded from ``generator``, leaving the global RNG as it was.
    """
    if isinstance(noise, distributions.MultivariateNormal):
        eps = torch.randn(
            (n, noise.event_shape[0]),
            generator=generator,
            device=like.device,
            dtype=like.dtype,
        )
        return noise.loc + eps @ noise.scale_tril.T
    if isinstance(noise, distributions.Normal) or (
        isinstance(noise, distributions.Independent)
        and isinstance(noise.base_dist, distributions.Normal)
    ):
        base = (
            noise.base_dist if isinstance(noise, distributions.Independent) else noise
        )
        eps = torch.randn(
            (n, *noise.batch_shape, *noise.event_shape),
            generator=generator,
            device=like.device,
            dtype=like.dtype,
        )
        return base.loc + base.scale * eps
    seed = int(torch.randint(2**62, (), generator=generator, device=generator.device))
    with seeded_global_rng(seed, like.device):
        return noise.sample((n,)).to(like)


class NoiseContrastiveEstimation(BaseLoss):
    """Noise-contrastive estimation: classify data against noise.

    For a batch of ``B`` rows, ``noise_ratio · B`` noise rows are drawn and the
    logistic loss of the classifier ``G(u) - log ν`` is minimised, with
    ``G(u) = log p̃(u) - c - log p_n(u)``, ``p̃`` the model's unnormalised density and
    ``c`` a learned estimate of ``log Z`` (kept in the loss state). The noise is by
    default the model's base density ``q`` with a share ``defensive_fraction`` of a
    wide Gaussian mixed in (:class:`~skebm.bases.DefensiveMixture`), so noise also
    falls where ``q`` is tiny and the energy cannot put unseen mass there; with
    ``defensive_fraction=0`` the noise is ``q`` itself and ``G(u) = -E(u) - c``
    exactly, the base cancelling. Any ``torch.distributions`` object with
    ``log_prob`` and ``sample`` is accepted as ``noise`` instead.

    Parameters
    ----------
    noise_ratio : float, default=5
        ``ν``, noise rows per data row.
    noise : torch.distributions.Distribution or None, default=None
        The noise density, in the estimator's standardised space; ``None`` uses
        the base density (with the defensive share).
    defensive_fraction : float, default=0.1
        With ``noise=None``: the share of noise drawn from ``N(0, 4·I)`` rather
        than the base.

    References
    ----------
    Gutmann, M. and Hyvärinen, A. (2010). Noise-contrastive estimation: a new
    estimation principle for unnormalized statistical models. AISTATS.

    Examples
    --------
    >>> from skebm import EnergyDensityEstimator
    >>> from skebm.losses import NoiseContrastiveEstimation
    >>> est = EnergyDensityEstimator(loss=NoiseContrastiveEstimation(noise_ratio=10))
    """

    _parameter_constraints: dict = {
        "noise_ratio": [Interval(Real, 0, None, closed="neither")],
        "noise": [HasMethods(["log_prob", "sample"]), None],
        "defensive_fraction": [Interval(Real, 0, 1, closed="left")],
    }

    def __init__(self, noise_ratio=5, noise=None, defensive_fraction=0.1):
        self.noise_ratio = noise_ratio
        self.noise = noise
        self.defensive_fraction = defensive_fraction

    def init_state(self, model, X, *, generator):
        return _LogNormalizer(X)

    def _loss(self, model, x, *, sampler, generator, state):
        batch = x.shape[0]
        n_noise = max(1, round(self.noise_ratio * batch))
        c = state.log_normalizer if state is not None else 0.0
        if self.noise is None:
            if model.base is None:
                raise ValueError(
                    "NoiseContrastiveEstimation needs noise= when the model has no "
                    "base density."
                )
            if self.defensive_fraction:
                noise = DefensiveMixture(model.base, self.defensive_fraction)
                u = torch.cat([x, noise.sample(n_noise, generator=generator)])
                log_noise, log_base = noise.log_probs(u)
                log_ratio = log_base - model.energy(u) - c - log_noise
            else:
                y = model.base.sample(n_noise, generator=generator)
                log_ratio = -model.energy(torch.cat([x, y])) - c
        else:
            y = draw(self.noise, n_noise, generator, like=x)
            u = torch.cat([x, y])
            log_ratio = -model(u) - c - self.noise.log_prob(u)
        logits = log_ratio - math.log(n_noise / batch)
        return (
            F.softplus(-logits[:batch]).sum() + F.softplus(logits[batch:]).sum()
        ) / (batch)
