"""The residual form: a learned energy on top of a fixed base density."""

from __future__ import annotations

import torch
from torch import nn

from skebm.bases import BaseDensity

__all__ = ["ResidualEnergy"]


class ResidualEnergy(nn.Module):
    """The total energy ``U(x) = E(x) - log q(x)`` of the model ``q·exp(-E)``.

    Samplers see the total energy ``U`` (through ``forward``); losses also use its
    parts: the learned energy :attr:`energy` and the base density :attr:`base`.
    With ``base=None`` the base is flat (``log q = 0``) and ``U = E``, which is how
    a plain energy module is trained on its own.

    Parameters
    ----------
    energy : nn.Module
        The learned energy ``E``, mapping ``(batch, d)`` to ``(batch,)``.
    base : BaseDensity or None
        The fixed, normalised base density ``q``.

    Examples
    --------
    >>> import torch
    >>> from skebm.bases import StandardNormalDensity
    >>> from skebm.energies import MLPEnergy, ResidualEnergy
    >>> model = ResidualEnergy(MLPEnergy(2), StandardNormalDensity(2))
    >>> x = torch.zeros(1, 2)
    >>> torch.allclose(model(x), -model.base.log_prob(x))  # untrained: U = -log q
    True
    """

    def __init__(self, energy: nn.Module, base: BaseDensity | None = None):
        super().__init__()
        self.energy = energy
        self.base = base

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.base is None:
            return self.energy(x)
        return self.energy(x) - self.base.log_prob(x)

    def sample_base(
        self, n_samples: int, *, generator: torch.Generator, like: torch.Tensor
    ) -> torch.Tensor:
        """Exact draws from the base (standard normal when the base is flat)."""
        if self.base is not None:
            return self.base.sample(n_samples, generator=generator)
        return torch.randn(
            (n_samples, like.shape[-1]),
            generator=generator,
            device=like.device,
            dtype=like.dtype,
        )


def as_residual(energy: nn.Module) -> ResidualEnergy:
    """Wrap a plain energy module as a flat-base :class:`ResidualEnergy`."""
    return energy if isinstance(energy, ResidualEnergy) else ResidualEnergy(energy)
