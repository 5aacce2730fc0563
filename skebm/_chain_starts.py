"""Where the chains of :meth:`EnergyDensityEstimator.sample` start.

A chain started at a draw of the base ``q`` far in its tail, where the model
``q·exp(-E)/Z`` has almost no mass, can settle in a shallow basin of the total
energy there and stay for the whole of ``sample_steps`` local (Langevin, MALA,
HMC) moves: the rows it returns are far from the model's mass. Before the local
moves, every chain therefore takes independence Metropolis-Hastings steps with
fresh base draws as proposals. Their acceptance ratio is the ratio of the
importance weights ``exp(-E)``, so the model is their stationary distribution
(the local moves that follow keep it so), each chain jumps out of a region the
model does not favour in one accepted step, and the chains stay distinct (each
has its own proposals, unlike resampling them by weight).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["independence_starts"]


def independence_starts(
    energy: nn.Module,
    base: nn.Module,
    n_chains: int,
    *,
    n_steps: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """``n_chains`` base draws, each moved by ``n_steps`` independence
    Metropolis-Hastings steps towards ``q·exp(-E)``.

    Parameters
    ----------
    energy : nn.Module
        The learned energy ``E`` (the base's log-density is not part of it).
    base : BaseDensity
        The base density ``q``, which proposes.
    n_chains : int
    n_steps : int
        Proposals per chain; 0 returns the base draws themselves.
    generator : torch.Generator

    Returns
    -------
    Tensor of shape (n_chains, n_features)
    """
    with torch.no_grad():
        z = base.sample(n_chains, generator=generator)
        if n_steps == 0:
            return z
        log_weight = -energy(z)
        for _ in range(n_steps):
            proposal = base.sample(n_chains, generator=generator)
            proposed = -energy(proposal)
            u = torch.rand(
                n_chains, generator=generator, device=z.device, dtype=z.dtype
            )
            accept = torch.log(u) < proposed - log_weight
            z = torch.where(accept.unsqueeze(-1), proposal, z)
            log_weight = torch.where(accept, proposed, log_weight)
    return z
