"""Contrastive divergence: CD-k from noise or data, and persistent CD."""

from __future__ import annotations

from numbers import Integral, Real

import torch
from torch import nn

from skebm.losses._base import BaseLoss
from skebm.utils._sklearn_compat import Interval, StrOptions

__all__ = ["ContrastiveDivergence", "PersistentContrastiveDivergence", "ReplayBuffer"]


class ReplayBuffer(nn.Module):
    """Persistent chains, kept on the training device (a buffer of the module)."""

    def __init__(self, samples: torch.Tensor):
        super().__init__()
        self.register_buffer("samples", samples)


class ContrastiveDivergence(BaseLoss):
    """Contrastive divergence: lower the energy of data, raise it at model samples.

    The loss is ``mean E(x⁺) - mean E(x⁻) + α·mean(E(x⁺)² + E(x⁻)²)`` where ``x⁻``
    are negatives from ``n_steps`` steps of the estimator's sampler (no gradient
    flows through the chains; the parameters are frozen while sampling). ``E`` is
    the learned energy; the base term of the model cancels in the gradient, and the
    regulariser acts on the learned part only.

    Parameters
    ----------
    n_steps : int, default=10
        MCMC steps per negative batch (the ``k`` of CD-k).
    persistent : bool, default=False
        Keep a replay buffer of chains between batches and epochs (persistent CD,
        Tieleman 2008; Du & Mordatch 2019). Chains are drawn from the buffer without
        replacement and written back; each is restarted from an exact base draw with
        probability ``reinit_prob``.
    init : {"noise", "data"}, default="noise"
        Start of non-persistent chains: exact draws of the base density, or the
        data batch itself (classic CD-k).
    buffer_size : int, default=10000
        Chains in the replay buffer (persistent only).
    reinit_prob : float, default=0.05
        Restart probability of a buffer chain (persistent only).
    alpha : float, default=0.01
        Weight of the energy-magnitude regulariser.

    Examples
    --------
    >>> from skebm import EnergyDensityEstimator
    >>> from skebm.losses import ContrastiveDivergence
    >>> est = EnergyDensityEstimator(loss=ContrastiveDivergence(n_steps=20))
    """

    requires_sampler = True

    _parameter_constraints: dict = {
        "n_steps": [Interval(Integral, 1, None, closed="left")],
        "persistent": ["boolean"],
        "init": [StrOptions({"noise", "data"})],
        "buffer_size": [Interval(Integral, 1, None, closed="left")],
        "reinit_prob": [Interval(Real, 0, 1, closed="both")],
        "alpha": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        n_steps=10,
        persistent=False,
        init="noise",
        buffer_size=10000,
        reinit_prob=0.05,
        alpha=0.01,
    ):
        self.n_steps = n_steps
        self.persistent = persistent
        self.init = init
        self.buffer_size = buffer_size
        self.reinit_prob = reinit_prob
        self.alpha = alpha

    def init_state(self, model, X, *, generator):
        if not self.persistent:
            return None
        return ReplayBuffer(
            model.sample_base(self.buffer_size, generator=generator, like=X)
        )

    def _loss(self, model, x, *, sampler, generator, state):
        batch = x.shape[0]
        if self.persistent:
            if state is None:
                raise ValueError("Persistent CD needs the state from init_state().")
            size = state.samples.shape[0]
            index = torch.randperm(size, generator=generator, device=x.device)[:batch]
            x0 = state.samples[index]
            fresh = model.sample_base(index.shape[0], generator=generator, like=x)
            restart = (
                torch.rand(
                    (index.shape[0], 1),
                    generator=generator,
                    device=x.device,
                    dtype=x.dtype,
                )
                < self.reinit_prob
            )
            x0 = torch.where(restart, fresh, x0)
        elif self.init == "noise":
            x0 = model.sample_base(batch, generator=generator, like=x)
        else:
            x0 = x
        negatives = sampler.sample(
            model, x0, n_steps=self.n_steps, generator=generator
        ).detach()
        if self.persistent:
            state.samples[index] = negatives
        energies = model.energy(torch.cat([x, negatives]))
        positive, negative = energies[:batch], energies[batch:]
        return (
            positive.mean()
            - negative.mean()
            + self.alpha * (positive.square().mean() + negative.square().mean())
        )


class PersistentContrastiveDivergence(ContrastiveDivergence):
    """Persistent contrastive divergence: :class:`ContrastiveDivergence` with
    ``persistent=True`` by default (registered as ``"pcd"``).

    Examples
    --------
    >>> from skebm import EnergyDensityEstimator
    >>> est = EnergyDensityEstimator(loss="pcd", loss_params={"n_steps": 20})
    """

    def __init__(
        self,
        n_steps=10,
        persistent=True,
        init="noise",
        buffer_size=10000,
        reinit_prob=0.05,
        alpha=0.01,
    ):
        super().__init__(
            n_steps=n_steps,
            persistent=persistent,
            init=init,
            buffer_size=buffer_size,
            reinit_prob=reinit_prob,
            alpha=alpha,
        )
